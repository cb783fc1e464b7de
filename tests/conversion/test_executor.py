"""The CG executor: every op, every family, the reference networks; round trips and proxies."""

from __future__ import annotations

import math

import pytest
import refnets
import token_nets
import torch
from golden_ops import CASES
from torch import nn

from napbench.conversion import from_torch, to_torch
from napbench.conversion.executor import INITS, OP_BUILDERS, GraphNet, supported_ops
from napbench.conversion.graph import CompGraph, Node
from napbench.conversion.vocab import OPS
from napbench.errors import InvalidArgumentError, InvalidGraphError

#: families whose networks are small enough for a real CPU forward in a unit test
_REAL_FORWARD_MAX_PIXELS = 64 * 64


def _out_shape(g: CompGraph) -> tuple[int, ...]:
    return g.nodes[g.outputs[0]].output_shape


def _n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _roundtrip_hash(g: CompGraph) -> str:
    return from_torch(to_torch(g, device="meta", init="none"), g.input_shape).canonical_hash


def _check(g: CompGraph, *, real: bool = True) -> None:
    net = to_torch(g, seed=1)
    assert isinstance(net, GraphNet)
    assert _n_params(net) == g.params
    if real:
        net.eval()
        with torch.no_grad():
            y = net(torch.randn(2, *g.input_shape))
        assert tuple(y.shape) == (2, *_out_shape(g))
        assert torch.isfinite(y).all()
    else:
        meta = to_torch(g, device="meta", init="none")
        with torch.no_grad():
            y = meta(torch.empty(2, *g.input_shape, device="meta"))
        assert tuple(y.shape) == (2, *_out_shape(g))
    assert _roundtrip_hash(g) == g.canonical_hash


def test_every_vocabulary_op_has_a_builder_except_input_and_unknown() -> None:
    assert set(OPS) - set(OP_BUILDERS) == {"input", "unknown"}
    assert supported_ops() == sorted(OP_BUILDERS)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_op_cases(case) -> None:
    g = from_torch(case.torch(), case.input_shape)
    _check(g)


@pytest.mark.parametrize("name", refnets.REFNETS)
def test_reference_networks(name: str) -> None:
    g = from_torch(getattr(refnets, f"torch_{name}")(), refnets.INPUT_SHAPE_CHW)
    _check(g)


@pytest.mark.parametrize("name", token_nets.TOKEN_NETS)
def test_token_reference_networks(name: str) -> None:
    """ViT, ConvNeXt, Swin, MobileViT, SE hybrid: parameters, output shape and the hash round trip.

    Every op of vocabulary 2.0 that these networks use (param, matmul with heads/windows folded
    into the batch, softmax over the keys, layernorm/linear on tokens and on channels-last maps,
    position concat, q/k/v slices, reduce_mean/reduce_max, tiled relative-position bias) comes
    back as the same node: the hash holds for all five.
    """
    g = from_torch(token_nets.torch_net(name), token_nets.INPUT_SHAPE)
    _check(g)


class _V2Ops(nn.Module):
    """The v2 ops the token networks do not use, on tokens: reduce_l2 (F.normalize), groupnorm and
    batch norm over the feature axis of tokens, softmax and a channel max over tokens, a learned
    (F, M) matrix as a matmul operand."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 12)
        self.gn = nn.GroupNorm(3, 12)
        self.bn = nn.BatchNorm1d(12)
        self.keys = nn.Parameter(torch.randn(5, 12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.proj(x.flatten(2).transpose(1, 2))  # (B, 16, 12)
        t = self.gn(t.transpose(1, 2)).transpose(1, 2)
        t = self.bn(t.transpose(1, 2)).transpose(1, 2)
        t = nn.functional.normalize(t, dim=-1)
        s = (t @ self.keys.T).softmax(dim=-1)  # (B, 16, 5)
        return s * torch.amax(t, dim=-1, keepdim=True)


def test_v2_ops_on_tokens() -> None:
    g = from_torch(_V2Ops(), (8, 4, 4))
    ops = g.op_counts()
    assert {"reduce_l2", "reduce_max", "groupnorm", "bn", "softmax", "param", "matmul"} <= set(ops)
    _check(g)


class _Tokens(nn.Module):
    """Patch embedding to (B, 16, 8) tokens, then ``body``, then a head on the mean token."""

    def __init__(self, body, widths: list[int]) -> None:
        super().__init__()
        self.embed, self.head, self.body = nn.Conv2d(3, 8, 4, 4), nn.Linear(8, 5), body
        for i, w in enumerate(widths):
            self.add_module(f"fc{i}", nn.Linear(w, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.body(self, t).mean(1))


@pytest.mark.parametrize(
    ("body", "widths"),
    [
        pytest.param(lambda m, t: torch.cat([m.fc0(t[:, :8]), m.fc1(t[:, 8:])], 1), [8, 8], id="split_cat_positions_square"),
        pytest.param(lambda m, t: m.fc0(torch.roll(t.view(-1, 4, 4, 8), (1, 1), (1, 2)).reshape(-1, 16, 8)), [8], id="roll"),
        pytest.param(lambda m, t: m.fc1(torch.cat([m.fc0(t), t], -1)), [8, 16], id="cat_features"),
        pytest.param(lambda m, t: m.fc0(t.softmax(-1) * t.mean(-1, keepdim=True)), [8], id="softmax_reduce_mean"),
    ],
)
def test_token_plumbing(body, widths: list[int]) -> None:
    """Token layouts the frontend resolves, including square (M == F) tokens, whose layout the
    frontend must not re-guess from a no-op reshape in the executor."""
    _check(from_torch(_Tokens(body, widths).eval(), (3, 16, 16)))


def test_matmul_folds_groups_into_the_batch() -> None:
    """matmul(q, k) of heads: a (K, B*M) times b (K, B*N) -> (N, B*M), B = prod(b) / (K * N)."""
    h, n, d = 4, 5, 8  # heads, tokens, head size
    q_shape, out_shape = (d, h * n), (n, h * n)
    nodes = (
        Node("input", output_shape=q_shape),
        Node("relu", inputs=(0,), input_shapes=(q_shape,), output_shape=q_shape),
        Node("matmul", inputs=(0, 1), input_shapes=(q_shape, q_shape), output_shape=out_shape, inner=d),
    )
    g = CompGraph(nodes, (2,))
    assert g.flops == math.prod(out_shape) * d
    x = torch.randn(2, *q_shape)
    y = to_torch(g)(x)
    assert tuple(y.shape) == (2, *out_shape)
    # held layout (M, F): q as (batch, heads, tokens, d); the product of each head with the ReLU'd one
    qh = x.transpose(1, 2).reshape(2, h, n, d)
    kh = torch.relu(qh).reshape(2, h, d, n)  # b read as (B, K, N): the CG does not record k's transpose
    want = (qh @ kh).reshape(2, h * n, n).transpose(1, 2)
    assert torch.allclose(y, want, atol=1e-6)
    bad = CompGraph((*nodes[:2], Node("matmul", inputs=(0, 1), input_shapes=(q_shape, q_shape), output_shape=(7, h * n),
                                      inner=d)), (2,))
    with pytest.raises(InvalidGraphError, match="matmul.*inner 8 do not give"):
        to_torch(bad)


def test_param_node_is_a_parameter_of_the_recorded_shape() -> None:
    """A param source node: weight_shape elements (its params), used as output_shape (a bias table
    with fewer elements fills the output by repetition)."""
    nodes = (
        Node("input", output_shape=(16, 32)),
        Node("param", output_shape=(16, 32), weight_shape=(49, 2)),
        Node("add", inputs=(0, 1), input_shapes=((16, 32), (16, 32)), output_shape=(16, 32)),
    )
    g = CompGraph(nodes, (2,))
    net = to_torch(g)
    (w,) = list(net.parameters())
    assert tuple(w.shape) == (49, 2) and g.params == 98
    x = torch.zeros(3, 16, 32)
    y = net(x)
    assert tuple(y.shape) == (3, 16, 32)
    assert torch.equal(y[0], y[2]) and not torch.equal(y[0], torch.zeros_like(y[0]))
    assert _roundtrip_hash(g) == g.canonical_hash


@pytest.mark.tf
def test_keras_convnext_twin() -> None:
    """The Keras ConvNeXt twin (channels-last Dense, LayerScale) runs, counts and round-trips too."""
    pytest.importorskip("keras")
    from napbench.conversion import from_keras

    g = from_keras(token_nets.keras_convnext())
    _check(g)


def _families() -> list[str]:
    from napbench.datasets import list_families

    return list_families()


@pytest.mark.parametrize("family", _families())
def test_every_family(family: str) -> None:
    from napbench.datasets import get_family

    fam = get_family(family)
    for arch in fam.sample(2 if family == "nb201" else 1, seed=3):
        g = fam.build_cg(arch)
        _, h, w = g.input_shape
        _check(g, real=h * w <= _REAL_FORWARD_MAX_PIXELS)


def test_same_seed_same_weights_and_caller_rng_untouched() -> None:
    g = from_torch(refnets.torch_residual(), refnets.INPUT_SHAPE_CHW)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = to_torch(g, seed=5), to_torch(g, seed=5), to_torch(g, seed=6)
    assert torch.equal(torch.rand(3), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if k.endswith("weight"))


def test_kaiming_init() -> None:
    g = from_torch(refnets.torch_conv_bn_relu(), refnets.INPUT_SHAPE_CHW)
    net = to_torch(g, init="kaiming", seed=0)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    w = convs[-1].weight  # 64 x 32 x 3 x 3: std sqrt(2 / fan_out)
    assert abs(float(w.detach().std()) - math.sqrt(2.0 / (64 * 9))) < 0.01
    assert set(INITS) >= {"default", "kaiming", "none"}
    with pytest.raises(InvalidArgumentError, match="expected one of"):
        to_torch(g, init="xavier")


def test_functional_ops_match_torch_semantics() -> None:
    """Asymmetric ('same', stride 2) conv padding and ceil-mode pooling compute what torch computes."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(nn.functional.pad(x, (0, 1, 0, 1)))
            return nn.functional.max_pool2d(y, 2, 2, ceil_mode=True)

    m = Net().eval()
    g = from_torch(m, (3, 9, 9))
    net = to_torch(g).eval()
    with torch.no_grad():
        net.nodes["1"].conv.weight.copy_(m.conv.weight)
        net.nodes["1"].conv.bias.copy_(m.conv.bias)
        x = torch.randn(2, 3, 9, 9)
        assert torch.allclose(net(x), m(x), atol=1e-6)


def test_an_op_that_cannot_run_raises_one_clear_error() -> None:
    nodes = (
        Node("input", output_shape=(3, 8, 8)),
        Node("unknown", inputs=(0,), input_shapes=((3, 8, 8),), output_shape=(3, 8, 8), detail="aten::frobnicate"),
    )
    g = CompGraph(nodes, (1,))
    with pytest.raises(InvalidGraphError, match=r"cannot run op\(s\) \['unknown'\].*frobnicate.*expected only ops among: add, "):
        to_torch(g)


def test_a_node_whose_shapes_no_layer_reproduces_is_rejected() -> None:
    nodes = (
        Node("input", output_shape=(3, 8, 8)),
        Node("conv", inputs=(0,), input_shapes=((3, 8, 8),), output_shape=(4, 5, 5), weight_shape=(4, 3, 3, 3),
             kernel=(3, 3), stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1)),
    )
    with pytest.raises(InvalidGraphError, match=r"node 1 \(conv\) computes shape \(4, 8, 8\).*records \(4, 5, 5\)"):
        to_torch(CompGraph(nodes, (1,)))


@pytest.mark.parametrize(
    ("op", "shapes", "out", "match"),
    [
        ("concat", ((4, 6), (3, 5)), (7, 6), r"concat 'bad': inputs \[\(4, 6\), \(3, 5\)\] concatenate to neither"),
        ("slice", ((4, 6),), (5, 7), r"slice 'bad': output \(5, 7\) does not fit in input \(4, 6\)"),
    ],
)
def test_v2_shapes_no_op_reproduces_are_rejected(op: str, shapes: tuple, out: tuple, match: str) -> None:
    nodes = [Node("input", output_shape=shapes[0])]
    if len(shapes) > 1:
        nodes.append(Node("param", output_shape=shapes[1], weight_shape=shapes[1]))
    nodes.append(Node(op, inputs=tuple(range(len(shapes))), input_shapes=shapes, output_shape=out, name="bad"))
    with pytest.raises(InvalidGraphError, match=match):
        to_torch(CompGraph(tuple(nodes), (len(nodes) - 1,)))


def test_not_a_graph() -> None:
    with pytest.raises(InvalidArgumentError, match="expected a CompGraph"):
        to_torch("model.onnx")  # type: ignore[arg-type]


# -- proxies: the executor's network and the family's own builder agree ---------------------
def _transfer(net: GraphNet, model: nn.Module) -> None:
    """Copy the family network's weights into the executor's (node names are module paths)."""
    with torch.no_grad():
        for i, node in enumerate(net.graph.nodes):
            if node.op not in ("conv", "linear", "bn"):
                continue
            src = model.get_submodule(node.name)
            dst = net.nodes[str(i)]
            dst = getattr(dst, node.op, dst)
            for k, t in [*src.named_parameters(recurse=False), *src.named_buffers(recurse=False)]:
                getattr(dst, k).copy_(t)


def test_proxies_on_executor_agree_with_family_builder() -> None:
    """Same weights, same batch: every proxy but NASWOT agrees to float round-off.

    NASWOT differs by design: the CG merges identical activations of one tensor (two edges
    ReLU-ing the same node are one ``relu``), so the executor calls that ReLU once and NASWOT
    counts its codes once, where the family network calls it once per edge.
    """
    from napbench.datasets import get_family
    from napbench.zoo._base import torch_threads
    from napbench.zoo.proxies import compute_proxies

    family, arch = "nb201", "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"

    fam = get_family(family)
    torch.manual_seed(0)
    model = fam.build_torch(arch)
    g = from_torch(model, fam.input_shape)
    assert g.canonical_hash == fam.build_cg(arch).canonical_hash
    net = to_torch(g)
    _transfer(net, model)
    names = ["synflow", "snip", "grad_norm", "grasp", "fisher", "jacob_cov", "nasi"]
    kw = {"batch_size": 8, "seed": 0}
    with torch_threads(1):
        a = compute_proxies(names, model, fam.input_shape, fam.num_classes, **kw)
        b = compute_proxies(names, net, fam.input_shape, fam.num_classes, **kw)
    for n in names:
        assert b[n] == pytest.approx(a[n], rel=1e-3, abs=1e-6), n


def test_executor_networks_trace_with_torch_fx_for_overflow_safe_synflow() -> None:
    """synflow's log-scaled fallback (torch.fx) runs on executor networks and agrees with the float64 pass."""
    import copy

    from napbench.zoo.proxies import _synflow_log_scaled, compute_proxy

    g = from_torch(refnets.torch_residual(), refnets.INPUT_SHAPE_CHW)
    net = to_torch(g)
    direct = compute_proxy("synflow", net, refnets.INPUT_SHAPE_CHW, 10, batch_size=2)
    absnet = copy.deepcopy(net).double().eval()
    with torch.no_grad():
        for t in [*absnet.parameters(), *absnet.buffers()]:
            t.abs_()
    logged = _synflow_log_scaled(absnet, torch.ones(1, *refnets.INPUT_SHAPE_CHW, dtype=torch.float64))
    assert logged == pytest.approx(direct, rel=1e-9)


class _FactorisedReduce(nn.Module):
    """DARTS' factorised reduction: two stride-2 1x1 convs, one on the map shifted by a pad-then-crop."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 4, 1, stride=2), nn.Conv2d(4, 4, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return torch.cat([self.a(x), self.b(y)], dim=1)


@pytest.mark.parametrize("side", [16, 10, 8])
def test_a_crop_after_a_pad_runs_at_other_input_sizes(side: int) -> None:
    m = _FactorisedReduce()
    g = from_torch(m, (4, 32, 32))
    net = to_torch(g, seed=0)
    assert net(torch.randn(2, 4, 32, 32)).shape == (2, 8, 16, 16)
    # the crop drops the padded trailing row and column at any size, so both branches agree again
    assert net(torch.randn(2, 4, side, side)).shape == m(torch.randn(2, 4, side, side)).shape


class _HalfSlice(nn.Module):
    """A branch that keeps the leading half of each spatial axis, added to a stride-2 conv's output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x[:, :, :16, :16]


@pytest.mark.parametrize("side", [16, 8])
def test_a_leading_half_slice_keeps_half_at_other_input_sizes(side: int) -> None:
    g = from_torch(_HalfSlice(), (4, 32, 32))
    net = to_torch(g, seed=0)
    assert net(torch.randn(2, 4, 32, 32)).shape == (2, 4, 16, 16)
    assert net(torch.randn(2, 4, side, side)).shape == (2, 4, side // 2, side // 2)
