"""Golden per-op conversion cases shared by the torch, ONNX and Keras frontends.

Each :class:`GoldenCase` is one vocabulary op in a tiny network: a torch module factory, the
input shape (channel-first, no batch), optionally a Keras model factory computing the same
thing, and the nodes every frontend must produce after ``input``, in run order. A frontend
test walks :data:`CASES` and checks its graph against ``expected``; nothing here depends on
one frontend, so a new frontend gets the whole suite for free (the ONNX backend test pattern).

Keras factories import Keras lazily, so this module imports without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Expect:
    """One expected node: its op, output shape and any further attributes (``weight_shape``, ``bias``...)."""

    op: str
    output_shape: Shape
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GoldenCase:
    """A vocabulary op in a tiny network, with the nodes every frontend must produce.

    Attributes:
        name: case id (pytest parameter id).
        torch: factory of the torch module.
        input_shape: channel-first input shape without batch.
        expected: the nodes after ``input``, in run order.
        keras: factory of an equivalent Keras model (``None`` where Keras has no such layer).
        keras_onnx: whether tf2onnx can export the Keras model to an ONNX graph we can read
            (``False`` e.g. for exact GELU, which tf2onnx emits as the non-ONNX op ``Erfc``).
    """

    name: str
    torch: Callable[[], nn.Module]
    input_shape: Shape
    expected: tuple[Expect, ...]
    keras: Callable[[], Any] | None = None
    keras_onnx: bool = True


def check_graph(g: Any, case: GoldenCase) -> None:
    """Assert that graph ``g`` has exactly the nodes ``case.expected`` after its input.

    ``expected`` must be *a* run order of ``g``: frameworks may order independent branches
    differently (tf2onnx runs a residual's ReLU before its conv), so each expected node is
    matched to an unused graph node with the same op, shape and attributes whose inputs are
    already matched.
    """
    got = [(n.op, n.output_shape) for n in g.nodes[1:]]
    want = [(e.op, e.output_shape) for e in case.expected]
    assert g.nodes[0].output_shape == _canon(case.input_shape), f"{case.name}: input {g.nodes[0].output_shape}"
    assert sorted(got) == sorted(want), f"{case.name}: got {got}, expected {want}"
    done = {0}
    for e in case.expected:
        match = [
            i for i, n in enumerate(g.nodes)
            if i not in done and (n.op, n.output_shape) == (e.op, e.output_shape) and set(n.inputs) <= done
            and all(getattr(n, k) == v for k, v in e.attrs.items())
        ]
        assert match, (
            f"{case.name}: no node for {e} after {sorted(done)}; graph: "
            + "; ".join(f"{i}:{n.op}{n.output_shape}<-{list(n.inputs)} {dict((k, getattr(n, k)) for k in e.attrs)}" for i, n in enumerate(g.nodes))
        )
        done.add(match[0])


def _canon(shape: Sequence[int]) -> Shape:
    s = tuple(shape)
    return s[:1] if len(s) > 1 and all(d == 1 for d in s[1:]) else s


# -- small torch modules ------------------------------------------------------------------
class _Fn(nn.Module):
    """A module computing ``fn(x)`` (with optional sub-modules for branches)."""

    def __init__(self, fn: Callable[..., torch.Tensor], **mods: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        for k, m in mods.items():
            self.add_module(k, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self, x)


def _seq(*layers: nn.Module) -> Callable[[], nn.Module]:
    return lambda: nn.Sequential(*layers)


def _fn(fn: Callable[..., torch.Tensor], **mods: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    return lambda: _Fn(fn, **{k: f() for k, f in mods.items()})


def _conv1x1_4() -> nn.Module:
    return nn.Conv2d(3, 4, 1)


def _conv1x1_3() -> nn.Module:
    return nn.Conv2d(3, 3, 1)


# -- Keras factories (lazy import) ---------------------------------------------------------
def _keras(build: Callable[[Any, Any], Any], input_shape: Shape) -> Callable[[], Any]:
    """A factory of a functional Keras model ``build(layers, input)`` on a channel-last input."""

    def make() -> Any:
        import keras

        shp = tuple(input_shape[1:]) + tuple(input_shape[:1]) if len(input_shape) > 1 else tuple(input_shape)
        inp = keras.Input(shp)
        return keras.Model(inp, build(keras.layers, inp))

    return make


C3 = (3, 8, 8)
C4 = (4, 8, 8)


def _k(build: Callable[[Any, Any], Any], shape: Shape = C3) -> Callable[[], Any]:
    return _keras(build, shape)


CASES: tuple[GoldenCase, ...] = (
    GoldenCase(
        "conv", _seq(nn.Conv2d(3, 8, 3, padding=1)), C3,
        (Expect("conv", (8, 8, 8), {"weight_shape": (8, 3, 3, 3), "bias": True, "stride": (1, 1), "groups": 1}),),
        keras=_k(lambda L, x: L.Conv2D(8, 3, padding="same")(x)),
    ),
    GoldenCase(
        "conv_stride2_nobias", _seq(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)), C3,
        (Expect("conv", (8, 4, 4), {"weight_shape": (8, 3, 3, 3), "bias": False, "stride": (2, 2)}),),
        keras=_k(lambda L, x: L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)),
    ),
    GoldenCase(
        "conv_valid_rect", _seq(nn.Conv2d(3, 4, (3, 1))), C3,
        (Expect("conv", (4, 6, 8), {"weight_shape": (4, 3, 3, 1), "kernel": (3, 1)}),),
        keras=_k(lambda L, x: L.Conv2D(4, (3, 1))(x)),
    ),
    GoldenCase(
        "conv_grouped", _seq(nn.Conv2d(4, 8, 3, padding=1, groups=2)), C4,
        (Expect("conv", (8, 8, 8), {"weight_shape": (8, 2, 3, 3), "groups": 2}),),
        # tf2onnx cannot export Keras 3's grouped Conv2D (it stays a StatefulPartitionedCall)
        keras=_k(lambda L, x: L.Conv2D(8, 3, padding="same", groups=2)(x), C4), keras_onnx=False,
    ),
    GoldenCase(
        "conv_depthwise", _seq(nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)), C4,
        (Expect("conv", (4, 8, 8), {"weight_shape": (4, 1, 3, 3), "groups": 4, "bias": False}),),
        keras=_k(lambda L, x: L.DepthwiseConv2D(3, padding="same", use_bias=False)(x), C4),
    ),
    GoldenCase(
        "conv_dilated", _seq(nn.Conv2d(3, 4, 3, padding=2, dilation=2)), C3,
        (Expect("conv", (4, 8, 8), {"weight_shape": (4, 3, 3, 3), "dilation": (2, 2)}),),
        keras=_k(lambda L, x: L.Conv2D(4, 3, padding="same", dilation_rate=2)(x)),
    ),
    GoldenCase(
        "conv_transpose", _seq(nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)), C4,
        (Expect("conv_transpose", (2, 16, 16), {"weight_shape": (4, 2, 3, 3), "bias": True, "stride": (2, 2)}),),
        keras=_k(lambda L, x: L.Conv2DTranspose(2, 3, strides=2, padding="same")(x), C4),
    ),
    GoldenCase(
        "linear", _seq(nn.Linear(12, 5)), (12,),
        (Expect("linear", (5,), {"weight_shape": (5, 12), "bias": True}),),
        keras=_k(lambda L, x: L.Dense(5)(x), (12,)),
    ),
    GoldenCase(
        "linear_nobias", _seq(nn.Linear(12, 5, bias=False)), (12,),
        (Expect("linear", (5,), {"weight_shape": (5, 12), "bias": False}),),
        keras=_k(lambda L, x: L.Dense(5, use_bias=False)(x), (12,)),
    ),
    GoldenCase(
        "flatten_linear", _seq(nn.Flatten(), nn.Linear(3 * 8 * 8, 5)), C3,
        (Expect("linear", (5,), {"weight_shape": (5, 192), "bias": True}),),
        # Keras flattens channel-last, so the weight rows are permuted, but the node is the same
        keras=_k(lambda L, x: L.Dense(5)(L.Flatten()(x))),
    ),
    GoldenCase(
        "bn", _seq(nn.BatchNorm2d(3)), C3,
        (Expect("bn", (3, 8, 8), {"weight_shape": (3,), "bias": True}),),
        keras=_k(lambda L, x: L.BatchNormalization()(x)),
    ),
    GoldenCase(
        "layernorm", _seq(nn.LayerNorm(12)), (12,),
        (Expect("layernorm", (12,), {"weight_shape": (12,), "bias": True}),),
        # tf2onnx writes Keras' LayerNormalization as mean/variance arithmetic, not one op
        keras=_k(lambda L, x: L.LayerNormalization()(x), (12,)), keras_onnx=False,
    ),
    GoldenCase(
        "groupnorm", _seq(nn.GroupNorm(2, 4)), C4,
        (Expect("groupnorm", C4, {"weight_shape": (4,), "bias": True}),),
        keras=_k(lambda L, x: L.GroupNormalization(2)(x), C4), keras_onnx=False,
    ),
    GoldenCase(
        "relu", _seq(nn.ReLU()), C3, (Expect("relu", C3),),
        keras=_k(lambda L, x: L.ReLU()(x)),
    ),
    GoldenCase(
        "relu6", _seq(nn.ReLU6()), C3, (Expect("relu6", C3),),
        keras=_k(lambda L, x: L.ReLU(max_value=6.0)(x)),
    ),
    GoldenCase(
        "leaky_relu", _seq(nn.LeakyReLU(0.1)), C3, (Expect("leaky_relu", C3),),
        keras=_k(lambda L, x: L.LeakyReLU(negative_slope=0.1)(x)),
    ),
    GoldenCase(
        "elu", _seq(nn.ELU()), C3, (Expect("elu", C3),),
        keras=_k(lambda L, x: L.ELU()(x)),
    ),
    GoldenCase(
        "gelu", _seq(nn.GELU()), C3, (Expect("gelu", C3),),
        # tf2onnx writes Keras' exact GELU with 'Erfc', which is not an ONNX op
        keras=_k(lambda L, x: L.Activation("gelu")(x)), keras_onnx=False,
    ),
    GoldenCase(
        "silu", _seq(nn.SiLU()), C3, (Expect("silu", C3),),
        keras=_k(lambda L, x: L.Activation("silu")(x)),
    ),
    GoldenCase(
        "sigmoid", _seq(nn.Sigmoid()), C3, (Expect("sigmoid", C3),),
        keras=_k(lambda L, x: L.Activation("sigmoid")(x)),
    ),
    GoldenCase(
        "hardsigmoid", _seq(nn.Hardsigmoid()), C3, (Expect("hardsigmoid", C3),),
        # tf2onnx writes relu6(x + 3) / 6, read as written (relu6, scale) like that formula in torch
        keras=_k(lambda L, x: L.Activation("hard_sigmoid")(x)), keras_onnx=False,
    ),
    GoldenCase(
        "hardswish", _seq(nn.Hardswish()), C3, (Expect("hardswish", C3),),
        keras=_k(lambda L, x: L.Activation("hard_swish")(x)),
    ),
    GoldenCase(
        "tanh", _seq(nn.Tanh()), C3, (Expect("tanh", C3),),
        keras=_k(lambda L, x: L.Activation("tanh")(x)),
    ),
    GoldenCase(
        "softmax", _seq(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Softmax(dim=1)), C3,
        (Expect("global_avgpool", (3,)), Expect("softmax", (3,))),
        keras=_k(lambda L, x: L.Softmax()(L.GlobalAveragePooling2D()(x))),
    ),
    GoldenCase(
        "add", _fn(lambda m, x: m.c(x) + x, c=_conv1x1_3), C3,
        (Expect("conv", C3), Expect("add", C3)),
        keras=_k(lambda L, x: L.Add()([L.Conv2D(3, 1)(x), x])),
    ),
    GoldenCase(
        "add3", _fn(lambda m, x: m.c(x) + x + torch.relu(x), c=_conv1x1_3), C3,
        (Expect("conv", C3), Expect("relu", C3), Expect("add", C3, {"input_shapes": (C3, C3, C3)})),
        keras=_k(lambda L, x: L.Add()([L.Conv2D(3, 1)(x), x, L.ReLU()(x)])),
    ),
    GoldenCase(
        "mul", _fn(lambda m, x: m.c(x) * x, c=_conv1x1_3), C3,
        (Expect("conv", C3), Expect("mul", C3)),
        keras=_k(lambda L, x: L.Multiply()([L.Conv2D(3, 1)(x), x])),
    ),
    GoldenCase(
        "mul_gate", _fn(lambda m, x: x * torch.sigmoid(m.c(x.mean((2, 3), keepdim=True))), c=_conv1x1_3), C3,
        (Expect("global_avgpool", (3,)), Expect("linear", (3,), {"weight_shape": (3, 3)}), Expect("sigmoid", (3,)),
         Expect("mul", C3)),
        keras=_k(lambda L, x: L.Multiply()([x, L.Activation("sigmoid")(L.Conv2D(3, 1)(L.GlobalAveragePooling2D(keepdims=True)(x)))])),
    ),
    GoldenCase(
        "sub", _fn(lambda m, x: m.c(x) - x, c=_conv1x1_3), C3,
        (Expect("conv", C3), Expect("sub", C3)),
        keras=_k(lambda L, x: L.Subtract()([L.Conv2D(3, 1)(x), x])),
    ),
    GoldenCase(
        "div", _fn(lambda m, x: x / torch.sigmoid(x)), C3, (Expect("sigmoid", C3), Expect("div", C3)),
    ),
    GoldenCase(
        "concat", _fn(lambda m, x: torch.cat([m.c(x), x], 1), c=_conv1x1_4), C3,
        (Expect("conv", C4), Expect("concat", (7, 8, 8))),
        keras=_k(lambda L, x: L.Concatenate()([L.Conv2D(4, 1)(x), x])),
    ),
    GoldenCase(
        "avgpool", _seq(nn.AvgPool2d(2)), C3,
        (Expect("avgpool", (3, 4, 4), {"kernel": (2, 2), "stride": (2, 2)}),),
        keras=_k(lambda L, x: L.AveragePooling2D(2)(x)),
    ),
    GoldenCase(
        "maxpool", _seq(nn.MaxPool2d(3, 2, 1)), C3,
        (Expect("maxpool", (3, 4, 4), {"kernel": (3, 3), "stride": (2, 2)}),),
        keras=_k(lambda L, x: L.MaxPooling2D(3, 2, padding="same")(x)),
    ),
    GoldenCase(
        "global_avgpool", _seq(nn.AdaptiveAvgPool2d(1)), C3, (Expect("global_avgpool", (3,)),),
        keras=_k(lambda L, x: L.GlobalAveragePooling2D()(x)),
    ),
    GoldenCase(
        "global_avgpool_mean", _fn(lambda m, x: x.mean((2, 3))), C3, (Expect("global_avgpool", (3,)),),
        keras=_k(lambda L, x: L.GlobalAveragePooling2D(keepdims=True)(x)),
    ),
    GoldenCase(
        "global_maxpool", _seq(nn.AdaptiveMaxPool2d(1)), C3, (Expect("global_maxpool", (3,)),),
        keras=_k(lambda L, x: L.GlobalMaxPooling2D()(x)),
    ),
    GoldenCase(
        "pad", _fn(lambda m, x: F.pad(x, (0, 1, 1, 2))), C3,
        (Expect("pad", (3, 11, 9), {"padding": (1, 0, 2, 1)}),),
        keras=_k(lambda L, x: L.ZeroPadding2D(((1, 2), (0, 1)))(x)),
    ),
    GoldenCase(
        "pad_folded_into_conv", _seq(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 4, 3, stride=2)), C3,
        (Expect("conv", (4, 4, 4), {"padding": (0, 0, 1, 1)}),),
        keras=_k(lambda L, x: L.Conv2D(4, 3, strides=2)(L.ZeroPadding2D(((0, 1), (0, 1)))(x))),
    ),
    GoldenCase(
        "slice_spatial", _fn(lambda m, x: x[:, :, 1:-2, 2:]), C3, (Expect("slice", (3, 5, 6)),),
        keras=_k(lambda L, x: L.Cropping2D(((1, 2), (2, 0)))(x)),
    ),
    GoldenCase(
        "slice_channels", _fn(lambda m, x: m.c(x)[:, :2], c=_conv1x1_4), C3, (Expect("conv", C4), Expect("slice", (2, 8, 8))),
    ),
    GoldenCase(
        "upsample_nearest", _seq(nn.Upsample(scale_factor=2, mode="nearest")), C3, (Expect("upsample", (3, 16, 16)),),
        keras=_k(lambda L, x: L.UpSampling2D(2)(x)),
    ),
    GoldenCase(
        "upsample_bilinear", _seq(nn.Upsample(scale_factor=2, mode="bilinear")), C3, (Expect("upsample", (3, 16, 16)),),
        keras=_k(lambda L, x: L.UpSampling2D(2, interpolation="bilinear")(x)),
    ),
    GoldenCase("zero", _fn(lambda m, x: x * 0.0), C3, (Expect("zero", C3),)),
    GoldenCase("scale", _fn(lambda m, x: x * 0.5), C3, (Expect("scale", C3),)),
    GoldenCase(
        "add_const_pruned", _fn(lambda m, x: torch.relu(x + 1.0)), C3, (Expect("relu", C3),),
    ),
    GoldenCase(
        "matmul", _fn(lambda m, x: torch.matmul(x, torch.relu(x))), C3, (Expect("relu", C3), Expect("matmul", C3)),
    ),
)

class _Scaled(nn.Module):
    """``x * gamma`` with a learned per-channel gamma outside any layer (a layer scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(3) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, 3, 1, 1)


def _kops() -> Any:
    import keras

    return keras.ops


# vocabulary 2.0: appended, the cases above are unchanged
CASES = CASES + (
    GoldenCase("param", _Scaled, C3, (Expect("param", (3,), {"weight_shape": (3,)}), Expect("mul", C3))),
    GoldenCase(
        "reduce_mean", _fn(lambda m, x: m.c(x).mean(1, keepdim=True), c=_conv1x1_4), C3,
        (Expect("conv", C4), Expect("reduce_mean", (1, 8, 8))),
        keras=_k(lambda L, x: _kops().mean(L.Conv2D(4, 1)(x), axis=-1, keepdims=True)),
    ),
    GoldenCase(
        "reduce_max", _fn(lambda m, x: m.c(x).amax(1, keepdim=True), c=_conv1x1_4), C3,
        (Expect("conv", C4), Expect("reduce_max", (1, 8, 8))),
        keras=_k(lambda L, x: _kops().max(L.Conv2D(4, 1)(x), axis=-1, keepdims=True)),
    ),
    GoldenCase(
        "reduce_l2_normalize", _fn(lambda m, x: F.normalize(m.c(x), dim=1), c=_conv1x1_4), C3,
        (Expect("conv", C4), Expect("reduce_l2", (1, 8, 8)), Expect("div", C4)),
    ),
)

CASES_BY_NAME: dict[str, GoldenCase] = {c.name: c for c in CASES}
