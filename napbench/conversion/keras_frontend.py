"""Keras frontend: a Keras 3 functional/Sequential model (or a saved one) as a computation graph.

The functional graph is walked in dependency order (``model._nodes_by_depth``, the same order
Keras itself runs it in); every layer call and every ``keras.ops`` call recorded in the graph
(``x * 0``, ``keras.ops.mean(x, axis=(1, 2))``...) is mapped onto the vocabulary by a handler
looked up by class (walking the class's MRO, so a subclass of ``Conv2D`` maps like ``Conv2D``).
Nested functional or Sequential sub-models are flattened into the outer graph (their layer
names are prefixed with the sub-model's name).

Conventions (the same as :mod:`napbench.conversion.torch_frontend`, so both give one hash):

* Keras tensors are NHWC; shapes become channel-first without batch, kernels torch layout:
  conv ``(C_out, C_in/groups, *k)``, ``DepthwiseConv`` a conv with ``groups=C_in`` and weight
  ``(C_in*multiplier, 1, *k)``, ``SeparableConv`` two nodes (depthwise, then 1x1 pointwise),
  ``ConvTranspose`` ``(C_in, C_out, *k)``, ``Dense`` a ``linear`` ``(units, C_in)`` acting on
  the last (channel) axis.
* A layer's own ``activation=`` becomes a separate node after it; ``linear`` is none.
* A ``keras.ops.reshape`` that folds groups into the batch axis (MobileViT's patches
  ``(B*P, N, D)``, Swin's windows), which Keras records as an unknown batch, is tracked: such
  tensors have the token shape ``(F, batch * positions)`` of every frontend, so their MACs count
  every group. Shape-keeping ops (norms, activations, sums) keep their input's canonical shape
  and ``Dense`` follows the builder's feature rule, as in the torch frontend.
* ``'same'`` padding is recorded as TensorFlow pads it: total
  ``max((ceil(n/s)-1)*s + d*(k-1)+1 - n, 0)``, ``total//2`` before, the rest after (padding is
  not hashed; output shapes pin it down).
* Plumbing is pruned (no node): ``InputLayer``, ``Reshape``, ``Flatten``, ``Permute``,
  ``Identity``, dropout/noise layers, ``Masking``, ``ActivityRegularization``, inference-inactive
  augmentation layers, and the preprocessing layers ``Rescaling`` and ``Normalization``
  (constant input scaling, as ``x + const`` is in the torch frontend).
* ConvNeXt's ``LayerScale`` is a ``param`` node (its gamma) times the input, as
  ``x * nn.Parameter`` is in the torch frontend; ``MultiHeadAttention`` is its projections
  and ``matmul -> softmax -> matmul``.
* Weights the graph does not count -- those of pruned layers (``Normalization``'s
  mean/variance/count) -- are reported in ``meta["uncounted_weights"]``, so
  ``g.param_count(include_buffers=True) + g.meta.get("uncounted_weights", 0) ==
  model.count_params()``.
* Arithmetic with constants follows the torch frontend: ``x * 0`` -> ``zero``, ``x * 1`` and
  ``x +/- c`` -> pruned, ``x * c`` and ``x / c`` -> ``scale``.

Custom layers: a layer class with a ``napbench_op`` class attribute naming a weight-free
vocabulary op (e.g. ``napbench_op = "zero"`` for a NAS 'none' edge, ``"identity"`` for
plumbing) is mapped onto that op without looking inside it. A custom layer with weights (a
class token, position embeddings) describes itself with a method
``napbench_graph(self, builder, inputs, *, name) -> handle``: ``inputs`` are the
:class:`~napbench.conversion.builder.GraphBuilder` handles of its tensor inputs, and it emits
its nodes with the builder's public methods (``param`` for its learned tensors,
``elementwise``, ``add_node``...), as the built-in handlers do. Any other layer without a handler
(``Lambda``, ``PReLU``, RNNs...) raises :class:`UnsupportedOpError` naming the layer,
or becomes an ``unknown`` node with ``allow_unknown=True``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from napbench.conversion.builder import GraphBuilder, canon_shape, same_padding, tokens
from napbench.conversion.graph import CompGraph
from napbench.conversion.vocab import OPS, SPATIAL, WEIGHTED
from napbench.errors import ConversionError, NapbenchError, UnsupportedOpError

KShape = tuple[int | None, ...]  # a Keras shape, batch axis first


class _T:
    """A traced Keras tensor: its builder handle, its Keras shape (batch first) and its batch size.

    The network runs on one sample; ``batch`` is the size of the batch axis when a reshape folded
    groups into it (MobileViT's patches ``(B*P, N, D)``, Swin's windows), which the Keras shape
    records as unknown.
    """

    __slots__ = ("batch", "h", "shape")

    def __init__(self, h: int, shape: Sequence[int | None], batch: int = 1) -> None:
        self.h = h
        self.shape: KShape = tuple(None if d is None else int(d) for d in shape)
        self.batch = batch


def _to_napbench_shape(shape: KShape, channels_first: bool) -> tuple[int, ...]:
    s = tuple(int(d) for d in shape[1:])  # type: ignore[arg-type]
    if not channels_first and len(s) > 1:
        s = (s[-1], *s[:-1])
    return canon_shape(s)


class _Ctx:
    """Conversion state: the builder and the tensor layout of the model."""

    def __init__(self, b: GraphBuilder, channels_first: bool) -> None:
        self.b = b
        self.channels_first = channels_first
        self.uncounted_weights = 0
        self.batch = 1  # batch size of the op being converted (see _T)

    # -- layout -------------------------------------------------------------------------
    def cf(self, shape: KShape) -> tuple[int, ...]:
        """Keras shape (batch first) -> napbench shape (channel-first, no batch).

        Inside an op whose tensors fold groups into the batch axis (``self.batch > 1``) the shape is
        the token shape ``(F, batch * positions)`` over the last axis, as in every frontend.
        """
        if self.batch > 1 and not self.channels_first:
            s = tuple(int(d) for d in shape[1:])  # type: ignore[arg-type]
            return tokens(s[-1], self.batch * math.prod(s))
        return _to_napbench_shape(shape, self.channels_first)

    def channels(self, shape: KShape) -> int:
        return int(shape[1] if self.channels_first else shape[-1])  # type: ignore[arg-type]

    def spatial(self, shape: KShape) -> tuple[int, ...]:
        return tuple(int(d) for d in (shape[2:] if self.channels_first else shape[1:-1]))  # type: ignore[arg-type]

    def channel_axis(self, rank: int) -> int:
        return 1 if self.channels_first and rank > 2 else rank - 1

    def check_format(self, layer: Any) -> None:
        fmt = getattr(layer, "data_format", None)
        if fmt is not None and (fmt == "channels_first") != self.channels_first:
            raise ConversionError(
                f"keras layer {layer.name!r} has data_format={fmt!r} but the model is "
                f"{'channels_first' if self.channels_first else 'channels_last'}; expected one data format throughout"
            )

    # -- node helpers ---------------------------------------------------------------------
    def activation(self, fn: Any, h: int, shape: KShape, name: str, *, embedded: bool = True) -> int:
        """The node of an activation given as a Keras activation function (or name).

        ``embedded``: the activation is a layer's ``activation=`` argument, so its node is
        named ``layer/op``; an ``Activation`` layer's node keeps the layer's name.
        """
        if fn is None:
            return h
        aname = fn if isinstance(fn, str) else getattr(fn, "__name__", type(fn).__name__)
        op = _ACTIVATIONS.get(aname, "?")
        if op is None:
            return h
        if op == "?":
            return self.b.unsupported(f"activation {aname!r}", [h], self.cf(shape), name=name)
        return self.b.add_node(op, [h], self.b.shape(h), name=f"{name}/{op}" if embedded else name)


#: Keras activation function names -> vocabulary op (None: identity)
_ACTIVATIONS: dict[str, str | None] = {
    "linear": None, "relu": "relu", "relu6": "relu6", "silu": "silu", "swish": "silu", "sigmoid": "sigmoid",
    "hard_sigmoid": "hardsigmoid", "hard_silu": "hardswish", "hard_swish": "hardswish", "tanh": "tanh",
    "gelu": "gelu", "elu": "elu", "softmax": "softmax", "leaky_relu": "leaky_relu",
}

# -- handlers -----------------------------------------------------------------------------
# handler(ctx, op, ins, args, kwargs, out_shapes, name) -> handle or list of handles
Handler = Callable[[_Ctx, Any, list[_T], tuple[Any, ...], dict[str, Any], list[KShape], str], "int | list[int]"]
_HANDLERS: dict[type, Handler] = {}


def _classes(module: Any, names: str) -> list[type]:
    """The named classes of ``module`` that exist in this Keras version."""
    return [c for c in (getattr(module, n, None) for n in names.split()) if isinstance(c, type)]


def _register(classes: Sequence[type]) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for c in classes:
            _HANDLERS[c] = fn
        return fn

    return deco


_L = keras.layers
try:  # keras.ops calls recorded in functional graphs (Keras 3)
    from keras.src.ops import core as _kcore
    from keras.src.ops import nn as _knn
    from keras.src.ops import numpy as _knp
except ImportError:  # pragma: no cover - other Keras layouts: layers only
    _kcore = _knn = _knp = None
try:  # custom layers of keras.applications
    from keras.src.applications import convnext as _kconvnext
except ImportError:  # pragma: no cover
    _kconvnext = None


def _padding(mode: str, spatial: Sequence[int], k: Sequence[int], s: Sequence[int], d: Sequence[int]) -> tuple[int, ...]:
    nd = len(k)
    if mode == "same":
        return same_padding(spatial, k, s, d)
    if mode == "causal":
        return (*(di * (ki - 1) for ki, di in zip(k, d)), *(0,) * nd)
    return (0,) * (2 * nd)


def _tup(v: Any, nd: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * nd
    t = tuple(int(x) for x in v)
    return t * nd if len(t) == 1 and nd > 1 else t


@_register(_classes(_L, "Conv1D Conv2D Conv3D"))
def _conv(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    ctx.check_format(layer)
    x = ins[0]
    nd = len(layer.kernel_size)
    k, s, d = _tup(layer.kernel_size, nd), _tup(layer.strides, nd), _tup(layer.dilation_rate, nd)
    kshape = tuple(int(v) for v in layer.kernel.shape)  # (*k, C_in/groups, C_out)
    w = (kshape[-1], kshape[-2], *kshape[:-2])
    h = ctx.b.add_node(
        "conv", [x.h], ctx.cf(outs[0]), weight_shape=w, bias=bool(layer.use_bias), kernel=k, stride=s,
        padding=_padding(layer.padding, ctx.spatial(x.shape), k, s, d), dilation=d,
        groups=int(getattr(layer, "groups", 1)), name=name,
    )
    return ctx.activation(layer.activation, h, outs[0], name)


def _depthwise_node(ctx: _Ctx, layer: Any, x: _T, out: KShape, *, bias: bool, name: str) -> int:
    nd = len(layer.kernel_size)
    k, s, d = _tup(layer.kernel_size, nd), _tup(layer.strides, nd), _tup(layer.dilation_rate, nd)
    c_in = ctx.channels(x.shape)
    mult = int(layer.depth_multiplier)
    return ctx.b.add_node(
        "conv", [x.h], ctx.cf(out), weight_shape=(c_in * mult, 1, *k), bias=bias, kernel=k, stride=s,
        padding=_padding(layer.padding, ctx.spatial(x.shape), k, s, d), dilation=d, groups=c_in, name=name,
    )


@_register(_classes(_L, "DepthwiseConv1D DepthwiseConv2D"))
def _depthwise(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    ctx.check_format(layer)
    h = _depthwise_node(ctx, layer, ins[0], outs[0], bias=bool(layer.use_bias), name=name)
    return ctx.activation(layer.activation, h, outs[0], name)


@_register(_classes(_L, "SeparableConv1D SeparableConv2D"))
def _separable(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    ctx.check_format(layer)
    x, out = ins[0], outs[0]
    c_mid = ctx.channels(x.shape) * int(layer.depth_multiplier)
    mid: KShape = (out[0], c_mid, *out[2:]) if ctx.channels_first else (*out[:-1], c_mid)
    h = _depthwise_node(ctx, layer, x, mid, bias=False, name=f"{name}/depthwise")
    nd = len(layer.kernel_size)
    h = ctx.b.add_node(
        "conv", [h], ctx.cf(out), weight_shape=(int(layer.filters), c_mid, *(1,) * nd), bias=bool(layer.use_bias),
        kernel=(1,) * nd, stride=(1,) * nd, padding=(0,) * (2 * nd), dilation=(1,) * nd, groups=1,
        name=f"{name}/pointwise",
    )
    return ctx.activation(layer.activation, h, out, name)


@_register(_classes(_L, "Conv1DTranspose Conv2DTranspose Conv3DTranspose"))
def _conv_transpose(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    ctx.check_format(layer)
    x = ins[0]
    nd = len(layer.kernel_size)
    k, s, d = _tup(layer.kernel_size, nd), _tup(layer.strides, nd), _tup(layer.dilation_rate, nd)
    kshape = tuple(int(v) for v in layer.kernel.shape)  # (*k, C_out, C_in)
    sp_in, sp_out = ctx.spatial(x.shape), ctx.spatial(outs[0])
    # torch-equivalent symmetric padding: out = (in-1)*s + d*(k-1) + 1 - (begin + end)
    total = [max((i - 1) * si + di * (ki - 1) + 1 - o, 0) for i, o, ki, si, di in zip(sp_in, sp_out, k, s, d)]
    h = ctx.b.add_node(
        "conv_transpose", [x.h], ctx.cf(outs[0]), weight_shape=(kshape[-1], kshape[-2], *kshape[:-2]),
        bias=bool(layer.use_bias), kernel=k, stride=s, padding=(*(t // 2 for t in total), *(t - t // 2 for t in total)),
        dilation=d, groups=1, name=name,
    )
    return ctx.activation(layer.activation, h, outs[0], name)


@_register(_classes(_L, "Dense"))
def _dense(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    x = ins[0]
    if ctx.channels_first and len(x.shape) > 2:
        return ctx.b.unsupported("Dense on a channels_first feature map", [x.h], ctx.cf(outs[0]), name=name)
    units, c_in = int(layer.units), int(x.shape[-1])  # type: ignore[arg-type]
    shape = ctx.b.feature_shape(x.h, c_in, units, math.prod(ctx.cf(outs[0])))
    h = ctx.b.add_node("linear", [x.h], shape, weight_shape=(units, c_in), bias=bool(layer.use_bias), name=name)
    return ctx.activation(layer.activation, h, outs[0], name)


def _axes(axis: Any, rank: int) -> set[int]:
    axs = [axis] if isinstance(axis, int) else list(axis)
    return {int(a) % rank for a in axs}


@_register(_classes(_L, "BatchNormalization"))
def _batchnorm(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    x = ins[0]
    rank = len(x.shape)
    if _axes(layer.axis, rank) != {ctx.channel_axis(rank)}:
        return ctx.b.unsupported(f"BatchNormalization(axis={layer.axis})", [x.h], ctx.cf(outs[0]), name=name)
    c = ctx.channels(x.shape)
    return ctx.b.add_node("bn", [x.h], ctx.cf(outs[0]), weight_shape=(c,) if layer.scale else (), bias=bool(layer.center), name=name)


def _feature_out(ctx: _Ctx, x: _T, c: int, out: KShape) -> tuple[int, ...]:
    """Output shape of a shape-keeping op over the ``c`` features of ``x``: ``x``'s canonical shape when its
    axis 0 holds those features (a map reshaped into tokens stays a map, as in the torch frontend), else
    the shape of ``out``."""
    shp = ctx.b.shape(x.h)
    return shp if shp[:1] == (c,) and math.prod(shp) == math.prod(ctx.cf(out)) else ctx.cf(out)


@_register(_classes(_L, "LayerNormalization GroupNormalization"))
def _norm(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    x = ins[0]
    rank = len(x.shape)
    is_ln = "LayerNormalization" in [c.__name__ for c in type(layer).__mro__]
    if _axes(layer.axis, rank) != {ctx.channel_axis(rank)} or getattr(layer, "rms_scaling", False):
        what = "rms_scaling=True" if getattr(layer, "rms_scaling", False) else f"axis={layer.axis}"
        return ctx.b.unsupported(f"{type(layer).__name__}({what})", [x.h], ctx.cf(outs[0]), name=name)
    c = ctx.channels(x.shape)
    return ctx.b.add_node(
        "layernorm" if is_ln else "groupnorm", [x.h], _feature_out(ctx, x, c, outs[0]), weight_shape=(c,) if layer.scale else (),
        bias=bool(layer.center), groups=1 if is_ln else int(layer.groups), name=name,
    )


@_register(_classes(_L, "Activation"))
def _activation_layer(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    return ctx.activation(layer.activation, ins[0].h, outs[0], name, embedded=False)


@_register(_classes(_L, "ReLU"))
def _relu_layer(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    mx, slope, thr = layer.max_value, float(layer.negative_slope or 0.0), float(layer.threshold or 0.0)
    x = ins[0]
    if thr == 0.0 and slope == 0.0 and mx is None:
        op = "relu"
    elif thr == 0.0 and slope == 0.0 and float(mx) == 6.0:
        op = "relu6"
    elif thr == 0.0 and slope > 0.0 and mx is None:
        op = "leaky_relu"
    else:
        return ctx.b.unsupported(f"ReLU(max_value={mx}, negative_slope={slope}, threshold={thr})", [x.h], ctx.cf(outs[0]), name=name)
    return ctx.b.add_node(op, [x.h], ctx.cf(outs[0]), name=name)


def _unary(op: str) -> Handler:
    def h(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
        return ctx.b.add_node(op, [ins[0].h], ctx.cf(outs[0]), name=name)

    return h


_register(_classes(_L, "LeakyReLU"))(_unary("leaky_relu"))
_register(_classes(_L, "ELU"))(_unary("elu"))


@_register(_classes(_L, "Softmax") + _classes(_knn, "Softmax"))
def _softmax(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    x = ins[0]
    rank = len(x.shape)
    if _axes(layer.axis, rank) != {ctx.channel_axis(rank)}:
        return ctx.b.unsupported(f"softmax(axis={layer.axis})", [x.h], ctx.cf(outs[0]), name=name)
    return ctx.b.add_node("softmax", [x.h], ctx.cf(outs[0]), name=name)


def _merge(op: str) -> Handler:
    """An n-ary elementwise layer: the shape of its largest input (the builder's broadcast rule), so a sum of
    a feature map and the tokens it was reshaped into keeps the map's shape, as in every frontend."""

    def h(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
        return ctx.b.elementwise(op, [t.h for t in ins], name=name)

    return h


_register(_classes(_L, "Add"))(_merge("add"))
_register(_classes(_L, "Multiply"))(_merge("mul"))
_register(_classes(_L, "Subtract"))(_merge("sub"))


@_register(_classes(_L, "Average"))
def _average(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    s = ctx.b.add_node("add", [t.h for t in ins], ctx.cf(outs[0]), name=name)
    return ctx.b.add_node("scale", [s], ctx.cf(outs[0]), name=f"{name}/scale")  # (a + b) / n, as in torch


@_register(_classes(_L, "Concatenate") + _classes(_knp, "Concatenate"))
def _concat(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    rank = len(outs[0])
    hs = [t.h for t in ins]
    if _axes(layer.axis, rank) != {ctx.channel_axis(rank)}:
        return ctx.b.unsupported(f"Concatenate(axis={layer.axis})", hs, ctx.cf(outs[0]), name=name)
    return ctx.b.add_node("concat", hs, ctx.cf(outs[0]), name=name)


def _pool(op: str) -> Handler:
    def h(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
        ctx.check_format(layer)
        x = ins[0]
        nd = len(layer.pool_size)
        k = _tup(layer.pool_size, nd)
        s = _tup(layer.strides if layer.strides is not None else layer.pool_size, nd)
        return ctx.b.add_node(
            op, [x.h], ctx.cf(outs[0]), kernel=k, stride=s, padding=_padding(layer.padding, ctx.spatial(x.shape), k, s, (1,) * nd),
            dilation=(1,) * nd, name=name,
        )

    return h


_register(_classes(_L, "MaxPooling1D MaxPooling2D MaxPooling3D"))(_pool("maxpool"))
_register(_classes(_L, "AveragePooling1D AveragePooling2D AveragePooling3D"))(_pool("avgpool"))


def _global_pool(op: str) -> Handler:
    def h(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
        ctx.check_format(layer)
        return ctx.b.add_node(op, [ins[0].h], (ctx.channels(ins[0].shape),), name=name)

    return h


_register(_classes(_L, "GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D"))(_global_pool("global_avgpool"))
_register(_classes(_L, "GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D"))(_global_pool("global_maxpool"))


def _pairs(v: Any, nd: int) -> list[tuple[int, int]]:
    """Keras padding/cropping spec -> one (begin, end) pair per spatial dim."""
    if isinstance(v, int):
        return [(v, v)] * nd
    v = list(v)
    if nd == 1 and len(v) == 2 and all(isinstance(a, int) for a in v):
        return [(int(v[0]), int(v[1]))]
    return [(int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in v]


@_register(_classes(_L, "ZeroPadding1D ZeroPadding2D ZeroPadding3D"))
def _zero_pad(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    ctx.check_format(layer)
    x = ins[0]
    pairs = _pairs(layer.padding, len(ctx.spatial(x.shape)))
    return ctx.b.add_node("pad", [x.h], ctx.cf(outs[0]), padding=(*(a for a, _ in pairs), *(b for _, b in pairs)), name=name)


def _shape_op(op: str) -> Handler:
    """An op that is plumbing when it keeps the shape, ``op`` otherwise (crop, resize)."""

    def h(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
        x = ins[0]
        if ctx.cf(outs[0]) == ctx.cf(x.shape):
            return x.h
        return ctx.b.add_node(op, [x.h], ctx.cf(outs[0]), name=name)

    return h


_register(_classes(_L, "Cropping1D Cropping2D Cropping3D CenterCrop"))(_shape_op("slice"))
_register(_classes(_L, "UpSampling1D UpSampling2D UpSampling3D Resizing"))(_shape_op("upsample"))


def _weight_count(layer: Any) -> int:
    return sum(int(np.prod(w.shape)) for w in getattr(layer, "weights", ()))


def _plumbing(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    ctx.uncounted_weights += _weight_count(layer)
    return ins[0].h


_register(
    _classes(
        _L,
        "Reshape Flatten Permute Identity Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianNoise "
        "GaussianDropout AlphaDropout ActivityRegularization Masking Rescaling Normalization RandomFlip RandomRotation "
        "RandomZoom RandomTranslation RandomContrast RandomBrightness",
    )
    + _classes(_knp, "Reshape ExpandDims Squeeze Transpose Copy Ravel Roll")
    + _classes(_kcore, "Cast StopGradient ConvertToTensor")
    + _classes(_kconvnext, "StochasticDepth")
)(_plumbing)


@_register(_classes(_kconvnext, "LayerScale"))
def _layer_scale(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    """``x * gamma``: a learned tensor times the input, as the torch frontend maps ``x * nn.Parameter``."""
    w = tuple(int(d) for d in layer.weights[0].shape)
    hp = ctx.b.param(w, tokens(w[-1], math.prod(w)), name=f"{name}/gamma")
    return ctx.b.elementwise("mul", [ins[0].h, hp], name=name)


@_register(_classes(_L, "MultiHeadAttention"))
def _mha(ctx: _Ctx, layer: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    """``MultiHeadAttention``: query/key/value projections, ``matmul -> softmax -> matmul``, output projection.

    The ``1/sqrt(key_dim)`` scaling is part of the matmul (pass rule 8). Only the default
    attention axes (attention over the token axis of ``(B, N, C)`` inputs) are mapped.
    """
    q = args[0] if isinstance(args[0], _T) else kwargs["query"]
    v = args[1] if len(args) > 1 and isinstance(args[1], _T) else kwargs.get("value")
    k = args[2] if len(args) > 2 and isinstance(args[2], _T) else kwargs.get("key")
    k = v if k is None else k
    heads, dk = int(layer.num_heads), int(layer.key_dim)
    dv = int(layer.value_dim or dk)
    if getattr(layer, "_attention_axes", None) not in (None, (1,)) or len(q.shape) != 3 or not isinstance(v, _T):
        return ctx.b.unsupported("MultiHeadAttention (other attention axes or inputs)", [q.h], ctx.cf(outs[0]), name=name)
    bias = bool(layer.use_bias)
    n_q, n_k = q.batch * int(q.shape[1]), k.batch * int(k.shape[1])  # type: ignore[arg-type]  # every group's queries

    def proj(t: _T, width: int, nm: str) -> int:
        c_in = int(t.shape[-1])  # type: ignore[arg-type]
        n = t.batch * int(t.shape[1])  # type: ignore[arg-type]
        return ctx.b.add_node("linear", [t.h], ctx.b.feature_shape(t.h, c_in, width, n * width), weight_shape=(width, c_in),
                              bias=bias, name=f"{name}/{nm}")

    hq, hk, hv = proj(q, heads * dk, "query"), proj(k, heads * dk, "key"), proj(v, heads * dv, "value")
    s = ctx.b.add_node("matmul", [hq, hk], tokens(n_k // k.batch, heads * n_q * n_k // k.batch), inner=dk, name=f"{name}/qk")
    p = ctx.b.add_node("softmax", [s], ctx.b.shape(s), name=f"{name}/softmax")
    a = ctx.b.add_node("matmul", [p, hv], tokens(dv, heads * n_q * dv), inner=n_k // k.batch, name=f"{name}/av")
    e = int(outs[0][-1])  # type: ignore[arg-type]
    return ctx.b.add_node("linear", [a], ctx.cf(outs[0]), weight_shape=(e, heads * dv), bias=bias, name=f"{name}/output")

# keras.ops activations
for _cls, _op in (("Relu", "relu"), ("Relu6", "relu6"), ("Sigmoid", "sigmoid"), ("Silu", "silu"), ("HardSigmoid", "hardsigmoid"),
                  ("HardSilu", "hardswish"), ("Gelu", "gelu"), ("Elu", "elu"), ("LeakyRelu", "leaky_relu")):
    _register(_classes(_knn, _cls))(_unary(_op))
_register(_classes(_knp, "Tanh"))(_unary("tanh"))


def _const_value(c: Any) -> np.ndarray | None:
    try:
        return np.asarray(c, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _binary(op: str) -> Handler:
    def h(ctx: _Ctx, kop: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
        a, b = args[0], args[1]
        out = ctx.cf(outs[0])
        if isinstance(a, _T) and isinstance(b, _T):
            return ctx.b.add_node(op, [a.h, b.h], out, name=name)
        x, c = (a, b) if isinstance(a, _T) else (b, a)
        val = _const_value(c)
        scalar = float(val.flat[0]) if val is not None and val.size and np.all(val == val.flat[0]) else None
        # the rule every frontend shares (x*0 -> zero, x*1 and x+c -> plumbing, x*c -> scale)
        return ctx.b.const_arith(op, x.h, scalar, const_first=x is not a, same_size=out == ctx.b.shape(x.h), name=name)

    return h


_register(_classes(_knp, "Add"))(_binary("add"))
_register(_classes(_knp, "Subtract"))(_binary("sub"))
_register(_classes(_knp, "Multiply"))(_binary("mul"))
_register(_classes(_knp, "Divide TrueDivide"))(_binary("div"))


@_register(_classes(_knp, "GetItem"))
def _getitem(ctx: _Ctx, kop: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    """``x[...]``: plumbing when it keeps every element, else a ``slice`` (taking the class token)."""
    x = ins[0]
    out = ctx.cf(outs[0])
    if math.prod(out) == ctx.b.numel(x.h):
        return x.h
    return ctx.b.add_node("slice", [x.h], out, name=name)


@_register(_classes(_knp, "Matmul"))
def _matmul(ctx: _Ctx, kop: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    a, b = args[0], args[1]
    if isinstance(a, _T) and isinstance(b, _T):  # token shape of the product, inner = the contracted length
        out = outs[0]
        shape = tokens(int(out[-1]), ctx.batch * math.prod(int(d) for d in out[1:]))  # type: ignore[arg-type]
        return ctx.b.add_node("matmul", [a.h, b.h], shape, inner=int(a.shape[-1]), name=name)  # type: ignore[arg-type]
    if isinstance(a, _T):
        w = np.shape(b)
        return ctx.b.add_node("linear", [a.h], ctx.cf(outs[0]), weight_shape=(int(w[-1]), int(w[-2])), name=name)
    return ctx.b.unsupported("matmul with a constant left operand", [b.h], ctx.cf(outs[0]), name=name)


def _reduce(op: str, feature_op: str) -> Handler:
    """Mean/max over every position (a global pool, maps and tokens alike) or over the channel axis."""

    def h(ctx: _Ctx, kop: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
        x = ins[0]
        rank = len(x.shape)
        sp = set(range(2, rank)) if ctx.channels_first else set(range(1, rank - 1))
        axes = _axes(kop.axis, rank) if kop.axis is not None else set()
        if rank > 2 and axes == sp:
            return ctx.b.add_node(op, [x.h], (ctx.channels(x.shape),), name=name)
        if rank > 1 and axes == {ctx.channel_axis(rank)}:
            shp = ctx.b.shape(x.h)
            return ctx.b.add_node(feature_op, [x.h], canon_shape((1, *shp[1:])) if len(shp) > 2 else (1, *shp[1:]), name=name)
        return ctx.b.unsupported(f"{type(kop).__name__.lower()}(axis={kop.axis})", [x.h], ctx.cf(outs[0]), name=name)

    return h


_register(_classes(_knp, "Mean"))(_reduce("global_avgpool", "reduce_mean"))
_register(_classes(_knp, "Max"))(_reduce("global_maxpool", "reduce_max"))


@_register(_classes(_knp, "Clip"))
def _clip(ctx: _Ctx, kop: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    lo, hi = getattr(kop, "x_min", None), getattr(kop, "x_max", None)
    x = ins[0]
    if lo == 0 and hi == 6:
        return ctx.b.add_node("relu6", [x.h], ctx.cf(outs[0]), name=name)
    return ctx.b.unsupported(f"clip({lo}, {hi})", [x.h], ctx.cf(outs[0]), name=name)


@_register(_classes(_knp, "Maximum"))
def _maximum(ctx: _Ctx, kop: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], name: str) -> int:
    a, b = args[0], args[1]
    if isinstance(a, _T) != isinstance(b, _T):
        x, c = (a, b) if isinstance(a, _T) else (b, a)
        val = _const_value(c)
        if val is not None and val.size and np.all(val == 0):
            return ctx.b.add_node("relu", [x.h], ctx.cf(outs[0]), name=name)
    return ctx.b.unsupported("maximum", [t.h for t in ins], ctx.cf(outs[0]), name=name)


def _lookup(cls: type) -> Handler | None:
    for c in cls.__mro__:
        h = _HANDLERS.get(c)
        if h is not None:
            return h
    return None


# -- the graph walk -------------------------------------------------------------------------
def _graph_of(model: Any) -> Any:
    """The functional graph behind a Functional or Sequential model (None for subclassed ones)."""
    if hasattr(model, "_nodes_by_depth") and getattr(model, "_nodes_by_depth", None) is not None:
        return model
    inner = getattr(model, "_functional", None)
    if inner is not None and getattr(inner, "_nodes_by_depth", None) is not None:
        return inner
    return None


def _infer_shapes(op: Any, args: Any, kwargs: Any) -> list[KShape]:
    """Output shapes of ``op`` on the traced inputs (for graphs recorded with unknown dims)."""
    def spec(v: Any) -> Any:
        return keras.KerasTensor(v.shape) if isinstance(v, _T) else v

    a, k = keras.tree.map_structure(spec, (args, kwargs))
    try:
        out = op.compute_output_spec(*a, **k)
    except Exception as exc:  # Keras raises many kinds; report it in one line
        raise ConversionError(
            f"cannot infer the output shape of keras layer {op.name!r} ({type(op).__name__}): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}; expected a layer that accepts its recorded inputs"
        ) from None
    return [tuple(o.shape) for o in keras.tree.flatten(out)]


def _walk(ctx: _Ctx, graph: Any, inputs: list[_T], prefix: str) -> list[_T]:
    tensors: dict[int, _T] = {id(x): t for x, t in zip(graph.inputs, inputs)}
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            op = node.operation
            if op is None or node.is_input:
                continue
            if any(id(x) not in tensors for x in node.input_tensors):
                continue  # not computable from the input (as Keras itself skips it)
            args, kwargs = node.arguments.fill_in(tensors)
            ins = [v for v in keras.tree.flatten((args, kwargs)) if isinstance(v, _T)]
            outs = [tuple(o.shape) for o in node.outputs]
            if any(d is None for s in outs for d in s[1:]):
                outs = _infer_shapes(op, args, kwargs)
            results = _convert_op(ctx, op, ins, args, kwargs, outs, prefix)
            for x, t in zip(node.outputs, results):
                tensors[id(x)] = t
    outputs = keras.tree.flatten(graph.outputs)
    missing = [x.name for x in outputs if id(x) not in tensors]
    if missing:
        raise ConversionError(f"keras model {graph.name!r}: outputs {missing} are not computed from its input; expected a connected graph")
    return [tensors[id(x)] for x in outputs]


def _convert_op(ctx: _Ctx, op: Any, ins: list[_T], args: Any, kwargs: Any, outs: list[KShape], prefix: str) -> list[_T]:
    name = f"{prefix}{op.name}"
    if isinstance(op, keras.Model):
        sub = _graph_of(op)
        if sub is None:
            raise ConversionError(
                f"keras sub-model {name!r} ({type(op).__name__}) is subclassed and has no functional graph; "
                "expected a functional or Sequential model"
            )
        if len(ins) != len(sub.inputs):
            raise ConversionError(f"keras sub-model {name!r} takes {len(sub.inputs)} inputs but got {len(ins)}; expected a matching call")
        return _walk(ctx, sub, ins, f"{name}/")
    ctx.batch = max((t.batch for t in ins), default=1)
    tag = getattr(type(op), "napbench_op", None)
    describe = getattr(op, "napbench_graph", None)
    if callable(describe):
        h = describe(ctx.b, [t.h for t in ins], name=name)
    elif tag is not None:
        h = _tagged(ctx, op, str(tag), ins, outs, name)
    else:
        handler = _lookup(type(op))
        if handler is None:
            h = ctx.b.unsupported(type(op).__name__, list(dict.fromkeys(t.h for t in ins)), ctx.cf(outs[0]), name=name)
        else:
            h = handler(ctx, op, ins, args, kwargs, outs, name)
    hs = h if isinstance(h, list) else [h] * len(outs)
    batch = ctx.batch
    if _knp is not None and isinstance(op, _knp.Reshape) and ins:  # keras.ops.reshape may fold groups into the batch
        numel = ins[0].batch * math.prod(int(d) for d in ins[0].shape[1:])  # type: ignore[arg-type]
        batch = max(numel // max(math.prod(int(d) for d in outs[0][1:]), 1), 1)  # type: ignore[arg-type]
    ctx.batch = 1
    return [_T(hi, s, batch) for hi, s in zip(hs, outs)]


def _tagged(ctx: _Ctx, layer: Any, op: str, ins: list[_T], outs: list[KShape], name: str) -> int:
    """A custom layer tagged with ``napbench_op``."""
    if op in ("identity", "plumbing"):
        return ins[0].h
    if op not in OPS or op in WEIGHTED or op in SPATIAL or op == "input":
        raise ConversionError(
            f"keras layer {name!r} ({type(layer).__name__}) is tagged napbench_op={op!r}; expected 'identity' or a "
            "weight-free, non-spatial vocabulary op such as 'zero'"
        )
    return ctx.b.add_node(op, [t.h for t in ins], ctx.cf(outs[0]), name=name)


def _channels_first(model: Any) -> bool:
    fmts = {f for lyr in model._flatten_layers(include_self=False, recursive=True) if (f := getattr(lyr, "data_format", None))}
    if len(fmts) > 1:
        raise ConversionError(f"keras model {model.name!r} mixes data formats {sorted(fmts)}; expected one data format throughout")
    return fmts == {"channels_first"}


# -- loading ----------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    s = str(exc).strip()
    return f"{type(exc).__name__}: {s.splitlines()[0] if s else ''}"


def _load(path: Path) -> Any:
    if not path.exists():
        raise ConversionError(f"keras model {str(path)!r} not found; expected a .keras/.h5 file or a SavedModel directory")
    if path.is_dir():
        return _load_saved_model(path)
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ConversionError(f"{str(path)!r} is not a Keras model file; expected a .keras or .h5 file or a SavedModel directory")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # deserialisation raises many kinds
        raise ConversionError(
            f"cannot load keras model {str(path)!r} ({_first_line(exc)}); expected a file saved by model.save() whose "
            "custom layers are registered with keras.saving.register_keras_serializable"
        ) from None


def _load_saved_model(path: Path) -> Any:
    """A SavedModel directory: rebuild the architecture from its Keras metadata when it has one.

    Keras 3 cannot load SavedModels as models. A SavedModel written by ``tf.keras`` (Keras 2)
    stores the model config in ``keras_metadata.pb``; the architecture is rebuilt from it
    (weights are not needed for a computation graph). SavedModels without Keras metadata (e.g.
    from Keras 3's ``model.export()``) hold only a TensorFlow graph, whose ops (batch norm
    decomposed into arithmetic, fused activations) do not map back onto layers.
    """
    if not (path / "saved_model.pb").exists():
        raise ConversionError(f"directory {str(path)!r} is not a SavedModel (no saved_model.pb); expected a SavedModel directory")
    meta_file = path / "keras_metadata.pb"
    if not meta_file.exists():
        raise ConversionError(
            f"SavedModel {str(path)!r} has no Keras metadata (keras_metadata.pb), so its layers cannot be recovered; expected "
            "a .keras/.h5 file (re-save with model.save('model.keras')) or a tf.keras SavedModel, or convert it to ONNX "
            "(python -m tf2onnx.convert --saved-model DIR --output model.onnx) and use from_onnx"
        )
    try:
        from tensorflow.python.keras.protobuf import saved_metadata_pb2

        sm = saved_metadata_pb2.SavedMetadata()
        sm.ParseFromString(meta_file.read_bytes())
        root = next(n for n in sm.nodes if n.node_path == "root")
        cfg = json.loads(root.metadata)
        from keras.src.legacy.saving import saving_utils

        return saving_utils.model_from_config({"class_name": cfg["class_name"], "config": cfg["config"]})
    except NapbenchError:
        raise
    except Exception as exc:  # protobuf / config deserialisation
        raise ConversionError(
            f"cannot rebuild the keras model in SavedModel {str(path)!r} from keras_metadata.pb ({_first_line(exc)}); "
            "expected a functional or Sequential tf.keras model, or re-save it as .keras"
        ) from None


# -- entry point --------------------------------------------------------------------------------
def from_keras(
    model_or_path: Any,
    *,
    allow_unknown: bool = False,
    meta: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
) -> CompGraph:
    """Convert a Keras model into a CompGraph.

    Args:
        model_or_path: a functional or Sequential ``keras.Model`` (nested sub-models are
            flattened), or the path of a ``.keras``/``.h5`` file or a SavedModel directory.
        allow_unknown: keep layers outside the vocabulary as ``unknown`` nodes instead of
            raising :class:`UnsupportedOpError`.
        meta: graph metadata to add (``frontend``, ``name`` and ``input_shape`` are recorded).
        input_shape: channel-first ``(C, H, W)``; needed only when the model's input has
            unknown spatial dimensions.
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        model = _load(Path(model_or_path))
    else:
        model = model_or_path
    if not isinstance(model, keras.Model):
        raise ConversionError(f"from_keras expected a keras.Model or a model path, got {type(model).__name__}")
    graph = _graph_of(model)
    if graph is None:
        what = "has no input shape" if isinstance(model, keras.Sequential) else "is subclassed and has no functional graph"
        raise ConversionError(
            f"keras model {model.name!r} ({type(model).__name__}) {what}; expected a functional model or a Sequential "
            "model that starts with keras.Input(shape)"
        )
    if len(graph.inputs) != 1:
        raise ConversionError(f"keras model {model.name!r} has {len(graph.inputs)} inputs; expected a single-input model")
    channels_first = _channels_first(model)
    kshape: KShape = tuple(graph.inputs[0].shape)
    if input_shape is not None:
        c, *sp = (int(d) for d in input_shape)
        kshape = (None, c, *sp) if channels_first else (None, *sp, c)
        known = tuple(graph.inputs[0].shape)
        if len(kshape) != len(known) or any(k is not None and k != d for k, d in zip(known[1:], kshape[1:])):
            raise ConversionError(
                f"input_shape {tuple(input_shape)} does not fit the model's input {known[1:]} (Keras layout); "
                "expected the same rank and the same size wherever the model fixes one"
            )
    elif any(d is None for d in kshape[1:]):
        raise ConversionError(
            f"keras model {model.name!r} has input shape {kshape[1:]} with unknown dimensions; expected a fixed input shape "
            "(pass input_shape=(C, H, W))"
        )
    b = GraphBuilder(_to_napbench_shape(kshape, channels_first), frontend="keras", allow_unknown=allow_unknown)
    ctx = _Ctx(b, channels_first)
    outs = _walk(ctx, graph, [_T(b.input, kshape)], "")
    info: dict[str, Any] = {"frontend": "keras", "input_shape": list(b.shape(b.input)), "name": model.name}
    if ctx.uncounted_weights:
        info["uncounted_weights"] = ctx.uncounted_weights
    info.update(meta or {})
    return b.build(list(dict.fromkeys(t.h for t in outs)), meta=info)


__all__ = ["UnsupportedOpError", "from_keras"]
