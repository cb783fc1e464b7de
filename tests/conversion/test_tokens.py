"""Token tensors, attention and exact counts (vocabulary 2.0): one regression test per finding.

Each test reproduces one item of "What was seen" in issue 8 (and findings 2, 6 and 11 of
issue 7) with a small network written here. Counts are checked against torch itself:
``sum(p.numel())`` and ``FlopCounterMode`` (halved), never against numbers written down.
"""

from __future__ import annotations

import math
import time

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from onnx_export import torch_to_onnx
from token_nets import Attention, torch_macs, torch_params
from torch import nn

from napbench.conversion import CompGraph, Node, from_onnx, from_torch
from napbench.errors import ConversionError, InvalidGraphError, NapbenchError


class _Fn(nn.Module):
    def __init__(self, fn, **mods: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        for k, m in mods.items():
            self.add_module(k, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self, x)


def _exact(m: nn.Module, shape: tuple[int, ...], *, onnx_too: bool = True) -> CompGraph:
    """Convert ``m``; assert params and MACs equal torch's and (optionally) the ONNX export's graph equals it."""
    m = m.eval()
    g = from_torch(m, shape)
    assert g.params == torch_params(m)
    assert g.flops == torch_macs(m, shape)
    if onnx_too:
        o = from_onnx(torch_to_onnx(m, shape, keep_bn=True))
        assert (o.params, o.flops) == (g.params, g.flops)
        assert o.canonical_hash == g.canonical_hash
    return g


# -- from_torch: ops that were missing ------------------------------------------------------------
class _Tokens(nn.Module):
    """Patch embedding to (B, N, C), then ``body``; ends in a linear head on the mean token."""

    def __init__(self, body, **mods: nn.Module) -> None:
        super().__init__()
        self.embed, self.head, self.body = nn.Conv2d(3, 8, 4, 4), nn.Linear(8, 5), body
        for k, m in mods.items():
            self.add_module(k, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)  # (B, 16, 8)
        return self.head(self.body(self, t).mean(1))


def _cat_halves(m: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat([m.fc0(a), m.fc1(b)], 1)


@pytest.mark.parametrize(
    ("body", "widths"),
    [
        pytest.param(lambda m, t: m.fc0(t.permute(0, 2, 1).transpose(1, 2)), [8], id="transpose_permute"),
        pytest.param(lambda m, t: m.fc0(torch.roll(t.view(1, 4, 4, 8), (1, 1), (1, 2)).reshape(1, 16, 8)), [8], id="roll"),
        pytest.param(lambda m, t: _cat_halves(m, *t.split(8, dim=1)), [8, 8], id="split_cat_tokens"),
        pytest.param(lambda m, t: m.fc1(torch.cat([m.fc0(t), t], -1)), [8, 16], id="cat_last_dim"),
        pytest.param(lambda m, t: m.fc0(t / torch.linalg.vector_norm(t, dim=-1, keepdim=True)), [8], id="vector_norm"),
        pytest.param(lambda m, t: m.fc0(F.normalize(t, dim=-1)), [8], id="normalize"),
    ],
)
def test_torch_token_plumbing_and_ops(body, widths: list[int]) -> None:
    g = _exact(_Tokens(body, **{f"fc{i}": nn.Linear(w, 8) for i, w in enumerate(widths)}), (3, 16, 16))
    assert "unknown" not in g.op_counts()


def test_torch_class_token_cat_and_mean_over_tokens() -> None:
    class Cls(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.fc = nn.Conv2d(3, 8, 4, 4), nn.Linear(8, 8)
            self.cls = nn.Parameter(torch.rand(1, 1, 8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = torch.cat([self.cls.expand(1, -1, -1), self.embed(x).flatten(2).transpose(1, 2)], 1)
            y = self.fc(t)
            return y.mean(dim=1) + y[:, 0]

    g = _exact(Cls(), (3, 16, 16))
    params = [n for n in g.nodes if n.op == "param"]
    assert [(n.weight_shape, n.output_shape) for n in params] == [((8,), (8,))]
    assert [n.output_shape for n in g.nodes if n.op == "concat"] == [(8, 17)]
    assert [n.output_shape for n in g.nodes if n.op == "global_avgpool"] == [(8,)]


@pytest.mark.parametrize("sdpa", [False, True], ids=["by_hand", "sdpa"])
def test_attention_head_split_macs(sdpa: bool) -> None:
    """(a) the head-split matmul's inner dimension is the head size: 4 heads do not multiply the MACs by 4."""
    m = _Tokens(lambda m, t: m.attn(t), attn=Attention(8, 4, sdpa=sdpa))
    g = _exact(m, (3, 16, 16))
    mm = [n for n in g.nodes if n.op == "matmul"]
    assert [n.inner for n in mm] == [2, 16]  # q @ k^T over the head size 8/4, attn @ v over 16 tokens
    assert sum(n.flops for n in mm) == 2 * 4 * 16 * 16 * 2  # two matmuls, 4 heads, 16x16 scores, head size 2


def test_attention_module_and_primitive_nodes() -> None:
    m = _Tokens(lambda m, t: m.attn(t, t, t, need_weights=False)[0], attn=nn.MultiheadAttention(8, 2, batch_first=True))
    g = _exact(m, (3, 16, 16))
    assert [n.op for n in g.nodes if n.op in ("matmul", "softmax")] == ["matmul", "softmax", "matmul"]


def test_folded_batch_keeps_its_factor() -> None:
    """(b) tensors that fold patches into the batch, (B*P, N, C), keep the factor P in their shapes."""

    class Fold(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.attn, self.fc = nn.Conv2d(3, 8, 1), Attention(8, 2), nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)  # (1, 8, 8, 8) -> 4 pixels per 2x2 patch, 16 patches
            y = y.reshape(1, 8, 4, 2, 4, 2).permute(0, 3, 5, 2, 4, 1).reshape(4, 16, 8)
            y = self.fc(self.attn(y))
            return y.reshape(1, 2, 2, 4, 4, 8).permute(0, 5, 3, 1, 4, 2).reshape(1, 8, 8, 8)

    g = _exact(Fold(), (3, 8, 8))
    # q, k, v (the fused qkv, canonically three projections), proj and fc: 8 features at all 4 * 16 positions
    assert sorted(math.prod(n.output_shape) for n in g.nodes if n.op == "linear") == [8 * 64] * 5


def test_norm_bias_sized_by_its_weight() -> None:
    """(c) LayerNorm(4) over 10 tokens has 8 parameters (the linear before it 16): 24, not 30."""
    g = _exact(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)), (10, 3))
    assert g.params == 24


def test_onnx_batchnorm_on_flattened_tokens() -> None:
    """(d) BatchNorm1d on a (B*N, C) view: ONNX gives it a (C,) weight, as torch does."""

    class BNTokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.bn, self.head = nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.bn(self.fc(x).reshape(-1, 8)).reshape(1, 10, 8)
            return self.head(y)

    g = _exact(BNTokens(), (10, 6))
    (bn,) = [n for n in g.nodes if n.op == "bn"]
    assert bn.weight_shape == (8,) and bn.params == 16 and g.param_count(include_buffers=True) == g.params + 16


def test_learned_tensors_outside_layers_are_counted() -> None:
    """(e) layer scale, position embedding, attention bias: counted, and ``w*x + b`` agrees with ONNX."""

    class Learned(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.qkv = nn.Conv2d(3, 8, 4, 4), nn.Linear(8, 24)
            self.pos = nn.Parameter(torch.rand(1, 16, 8))
            self.w, self.b = nn.Parameter(torch.rand(8) + 0.5), nn.Parameter(torch.rand(8) + 0.5)
            self.bias_table = nn.Parameter(torch.rand(2, 16, 16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.embed(x).flatten(2).transpose(1, 2) + self.pos
            t = self.w * t + self.b
            q, k, v = self.qkv(t).reshape(1, 16, 3, 2, 4).permute(2, 0, 3, 1, 4).unbind(0)
            return (q @ k.transpose(-2, -1) + self.bias_table).softmax(-1) @ v

    g = _exact(Learned(), (3, 16, 16))
    params = sorted(n.weight_shape for n in g.nodes if n.op == "param")
    assert params == [(2, 16, 16), (16, 8)]
    # w * x + b with per-channel w, b is an inference affine: 'bn' in every frontend (ONNX cannot tell them apart)
    assert [(n.weight_shape, n.bias) for n in g.nodes if n.op == "bn"] == [((8,), True)]


def test_is_bn_folded_false_without_batchnorm() -> None:
    """(f) a network without BatchNorm is not "BN-folded"; a folded view is."""
    g = from_torch(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)), (3, 8, 8))
    assert not g.is_bn_folded and g.bn_folded().is_bn_folded
    vit_like = from_onnx(torch_to_onnx(_Tokens(lambda m, t: m.ln(t), ln=nn.LayerNorm(8)), (3, 16, 16)))
    assert vit_like.meta["bn_folded"] is False and not vit_like.is_bn_folded


# -- from_onnx: ops that were rejected ------------------------------------------------------------
def test_onnx_concat_constant_gather_reduce_l2_windows() -> None:
    """Concat with a class token, Gather of it, ReduceMean over tokens and channels, ReduceL2, roll's Slice+Concat."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.fc = nn.Conv2d(3, 8, 4, 4), nn.Linear(8, 8)
            self.cls = nn.Parameter(torch.rand(1, 1, 8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = self.embed(x)
            f = f * f.mean(1, keepdim=True)  # ReduceMean over channels
            t = f.flatten(2).transpose(1, 2).reshape(1, 4, 4, 8)
            t = torch.roll(t, (2, 2), (1, 2)).reshape(1, 16, 8)  # Slice + Concat(axis=1/2)
            t = torch.cat([self.cls, F.normalize(t, dim=-1)], 1)  # Concat with a learned constant, ReduceL2
            t = self.fc(t)
            return t[:, 0] + t.mean(1)  # Gather, ReduceMean over tokens

    onnx_ops = {n.op_type for n in torch_to_onnx(Net(), (3, 16, 16)).graph.node}
    assert {"Concat", "Gather", "ReduceMean", "ReduceL2", "Slice"} <= onnx_ops
    g = _exact(Net(), (3, 16, 16))
    assert {"param", "reduce_mean", "reduce_l2", "global_avgpool", "slice"} <= set(g.op_counts())


# -- issue 7: validation and bad input --------------------------------------------------------------
def _onnx_conv(w_shape: tuple[int, ...], x_shape: list) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones(w_shape, np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_onnx_conv_weight_must_fit_its_input() -> None:
    """Issue 7 finding 2: a 4x5x3x3 kernel on a 3-channel tensor is refused with one line."""
    with pytest.raises(ConversionError, match=r"reads 5 channels.*shape \(1, 3, 8, 8\)") as exc:
        from_onnx(_onnx_conv((4, 5, 3, 3), ["N", 3, 8, 8]))
    assert "\n" not in str(exc.value)
    from_onnx(_onnx_conv((4, 3, 3, 3), ["N", 3, 8, 8]))  # the fitting kernel converts


@pytest.mark.parametrize(
    ("node", "match"),
    [
        (Node("conv", (0,), ((3, 8, 8),), (4, 8, 8), (4, 5, 3, 3), False, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)), "reads 5 channels"),
        (Node("conv", (0,), ((3, 8, 8),), (4, 8, 8), (4, 1, 3, 3), False, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 3), "not divisible"),
        (Node("linear", (0,), ((3, 8, 8),), (5, 8, 8), (5, 4)), "does not map"),
        (Node("matmul", (0, 0), ((3, 8, 8),) * 2, (3, 8, 8)), "inner"),
        (Node("layernorm", (0,), ((3, 8, 8),), (3, 8, 8), (5,), True), "does not divide"),
    ],
    ids=["conv_channels", "conv_groups", "linear", "matmul_inner", "norm"],
)
def test_compgraph_validates_weights(node: Node, match: str) -> None:
    """Issue 7 finding 2, in CompGraph itself: weights must fit the recorded input shapes."""
    with pytest.raises(InvalidGraphError, match=match):
        CompGraph((Node("input", output_shape=(3, 8, 8)), node), (1,))


@pytest.mark.parametrize("shape", [(3, -4, 32), (3, 0, 8), (), (3, 2.5, 8), (99999999999, 1, 1)])
def test_torch_bad_input_shape_is_a_napbench_error(shape: tuple) -> None:
    """Issue 7 findings 6 and 11: a negative, zero, fractional or absurd shape is one ConversionError line."""
    with pytest.raises(ConversionError) as exc:
        from_torch(nn.Sequential(nn.Conv2d(3, 4, 3)), shape)
    assert isinstance(exc.value, NapbenchError) and "\n" not in str(exc.value) and "expected" in str(exc.value)


def test_torch_traces_a_huge_input_on_meta() -> None:
    """Issue 7 finding 6: 3x20000x20000 on a tiny model is traced without materialising the tensors."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    g = from_torch(nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)), (3, 20000, 20000))
    assert time.perf_counter() - t0 < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: far below the 4.8 GB of a real run
    assert g.nodes[1].output_shape == (4, 10000, 10000) and g.flops == 4 * 10000 * 10000 * 27
    assert math.prod(g.input_shape) == 3 * 20000 * 20000


# -- one canonical form for attention projections (pass rule 10) ----------------------------------
class _Projections(nn.Module):
    """Self-attention over 16 tokens of 16 features, 2 heads, written three ways."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how, self.embed, self.head = how, nn.Conv2d(3, 16, 1), nn.Linear(16, 5)
        if how == "fused":
            self.qkv, self.proj = nn.Linear(16, 48), nn.Linear(16, 16)
        elif how == "separate":
            self.q, self.k, self.v, self.proj = (nn.Linear(16, 16) for _ in range(4))
        else:
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)  # (B, 16, 16)
        b, n, c = t.shape
        if self.how == "mha":
            y = self.mha(t, t, t, need_weights=False)[0]
        else:
            if self.how == "fused":
                q, k, v = self.qkv(t).reshape(b, n, 3, 2, c // 2).permute(2, 0, 3, 1, 4).unbind(0)
            else:
                q, k, v = (f(t).reshape(b, n, 2, c // 2).transpose(1, 2) for f in (self.q, self.k, self.v))
            a = (q @ k.transpose(-2, -1) * (c // 2) ** -0.5).softmax(-1)
            y = self.proj((a @ v).transpose(1, 2).reshape(b, n, c))
        return self.head((t + y).mean(1))


def test_fused_and_separate_attention_projections_are_one_graph() -> None:
    """A fused ``qkv`` Linear, ``nn.MultiheadAttention``'s packed ``in_proj`` and separate q/k/v Linears give one
    graph (three ``linear`` s), with exact counts, through torch and ONNX (pass rule 10)."""
    gs = {how: _exact(_Projections(how), (3, 4, 4)) for how in ("fused", "separate", "mha")}
    assert len({g.canonical_hash for g in gs.values()}) == 1
    g = gs["fused"]
    assert [n.weight_shape for n in g.nodes if n.op == "linear"][:3] == [(16, 16)] * 3
    assert "slice" not in g.op_counts()


def test_fused_projection_read_elsewhere_is_kept() -> None:
    """Rule 10 splits only a projection whose slices all feed matmuls: a linear split into two halves that
    are added stays one linear and two slices."""
    g = _exact(_Tokens(lambda m, t: m.head2(sum(m.fc0(t).chunk(2, -1))), fc0=nn.Linear(8, 16), head2=nn.Linear(8, 8)),
               (3, 16, 16))
    assert g.op_counts()["slice"] == 2 and next(n.weight_shape for n in g.nodes if n.op == "linear") == (16, 8)


# -- Keras ---------------------------------------------------------------------------------------
@pytest.mark.tf
def test_keras_multi_head_attention_is_torch_attention() -> None:
    """Keras' MultiHeadAttention (separate q/k/v projections) has torch's canonical graph, whether torch fuses
    the projections or not, with Keras' ``count_params()``."""
    keras = pytest.importorskip("keras")
    from napbench.conversion import from_keras

    inp = keras.Input((4, 4, 3))
    t = keras.layers.Reshape((16, 16))(keras.layers.Conv2D(16, 1)(inp))
    y = keras.layers.Add()([t, keras.layers.MultiHeadAttention(2, 8)(t, t)])
    model = keras.Model(inp, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling1D()(y)))
    g = from_keras(model)
    assert g.param_count(include_buffers=True) == model.count_params() == torch_params(_Projections("fused"))
    for how in ("fused", "mha"):
        assert g.canonical_hash == from_torch(_Projections(how).eval(), (3, 4, 4)).canonical_hash


@pytest.mark.tf
def test_keras_multi_head_attention_counts() -> None:
    """``from_keras`` maps MultiHeadAttention: exact count_params and the MACs of its projections and matmuls."""
    keras = pytest.importorskip("keras")
    from napbench.conversion import from_keras

    inp = keras.Input((16, 8))
    x = keras.layers.LayerNormalization()(inp)
    x = keras.layers.Add()([inp, keras.layers.MultiHeadAttention(num_heads=4, key_dim=2)(x, x)])
    model = keras.Model(inp, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling1D()(x)))
    g = from_keras(model)
    assert g.param_count(include_buffers=True) == model.count_params()
    ops = [n.op for n in g.nodes]
    assert ops.count("matmul") == 2 and ops.count("softmax") == 1 and "scale" not in ops
    n, c, heads, d = 16, 8, 4, 2
    attention = 4 * n * c * heads * d + 2 * heads * n * n * d  # q, k, v, output projections + two matmuls
    assert g.flops == attention + 8 * 5


@pytest.mark.tf
@pytest.mark.parametrize("faithful", [True, False], ids=["faithful", "tf2onnx_defaults"])
def test_keras_exact_gelu_through_tf2onnx(faithful: bool) -> None:
    """tf2onnx writes Keras' exact GELU as ``0.5 * x * Erfc(-x / sqrt 2)`` (``Erfc`` is no ONNX op): read as ``gelu``."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    from onnx_export import keras_to_onnx, randomize_keras

    from napbench.conversion import from_keras

    inp = keras.Input((4,))
    model = randomize_keras(keras.Model(inp, keras.layers.Dense(3)(keras.layers.Activation("gelu")(keras.layers.Dense(4)(inp)))))
    proto = keras_to_onnx(model, faithful=faithful)
    assert "Erfc" in {n.op_type for n in proto.graph.node}
    g = from_onnx(proto)
    assert [n.op for n in g.nodes] == ["input", "linear", "gelu", "linear"]
    assert g.canonical_hash == from_keras(model).canonical_hash


@pytest.mark.tf
@pytest.mark.parametrize("faithful", [True, False], ids=["faithful", "tf2onnx_defaults"])
def test_keras_layer_norm_on_tokens_through_tf2onnx(faithful: bool) -> None:
    """tf2onnx writes Keras' LayerNormalization as ``tf.nn.moments`` arithmetic (mean, ``Sub``, ``Mul``, ``Sqrt``,
    ``Reciprocal``, ``Neg``) and a Dense on tokens after exact GELU as a Tensordot that reads ``Shape``: read as
    ``layernorm``, ``gelu`` and ``linear`` nodes, the graph ``from_keras`` gives."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    from onnx_export import keras_to_onnx, randomize_keras

    from napbench.conversion import from_keras

    L = keras.layers
    inp = keras.Input((16, 8))
    x = L.Dense(6, activation="gelu")(L.LayerNormalization(epsilon=1e-5)(inp))
    model = randomize_keras(keras.Model(inp, L.Dense(4)(L.LayerNormalization(epsilon=1e-5)(x))))
    proto = keras_to_onnx(model, faithful=faithful)
    assert {"Neg", "Reciprocal", "Shape"} <= {n.op_type for n in proto.graph.node}
    g = from_onnx(proto)
    assert [n.op for n in g.nodes] == ["input", "layernorm", "linear", "gelu", "layernorm", "linear"]
    assert g.canonical_hash == from_keras(model).canonical_hash and g.params == model.count_params()


def test_unused_and_shared_parameters_are_reported() -> None:
    """Any torch model: ``g.params - shared_params + unused_params == sum(p.numel())``."""

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.unused = nn.Linear(4, 4), nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.fc(x)))  # one layer called twice: two nodes, one set of weights

    m = M()
    g = from_torch(m, (4,))
    assert (g.meta["shared_params"], g.meta["unused_params"]) == (20, 15)
    assert g.params - g.meta["shared_params"] + g.meta["unused_params"] == torch_params(m)


def test_einsum_stack_and_masked_fill_attention() -> None:
    """Attention written with ``torch.einsum``, ``torch.stack`` and ``masked_fill``; ONNX ``Einsum`` and ``Where``."""

    class E(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv, self.w = nn.Linear(8, 24), nn.Parameter(torch.rand(8, 6))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = x.flatten(2).transpose(1, 2)
            q, k, v = torch.stack(self.qkv(t).chunk(3, -1), 0).unbind(0)
            mask = torch.zeros(16, 16, dtype=torch.bool, device=x.device)
            a = torch.einsum("bnc,bmc->bnm", q, k).masked_fill(mask, -1e4).softmax(-1)
            return torch.einsum("bnc,cd->bnd", torch.einsum("bnm,bmc->bnc", a, v), self.w)

    g = _exact(E(), (8, 4, 4))
    assert [n.inner for n in g.nodes if n.op == "matmul"] == [8, 16]
