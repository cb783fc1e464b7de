"""Run any computation graph as a network: :func:`to_torch` builds an ``nn.Module`` from a CG.

The executor is a table, :data:`OP_BUILDERS`: vocabulary op -> a small builder that takes the
:class:`~napbench.conversion.graph.Node` and returns an ``nn.Module`` computing that node from
its inputs (one op = one entry; :func:`register_op` adds one). :class:`GraphNet` runs the
nodes in topological order. Tensors between nodes are held in the graph's canonical shapes
with a batch axis in front, except that a 2-d canonical shape ``(F, M)`` (token tensors, 1-d
maps) is held features-last, ``(batch, M, F)``, the way frameworks write tokens (see
``_rshape``); a spatially 1x1 map is a ``(batch, C)`` vector. Spatial layers transpose 1-d maps
to channel-first around the layer; :class:`GraphNet` takes and returns canonical order.

Vocabulary 2.0 semantics (``napbench.conversion.vocab``): ``linear``, ``softmax``,
``layernorm``, ``groupnorm``, ``bn`` and ``reduce_*`` act on the canonical axis 0 (a map stays
a map; ``reduce_*`` keep it as a unit axis); a ``linear`` whose input's axis 0 is not its
``C_in`` (heads merged back by plumbing) reads the input as rows of ``C_in``. ``matmul`` of
``a`` (rows of ``K = node.inner``) and ``b`` is the batched product ``(B, M, K) x (B, K, N)``
with ``B = prod(b) / (K * N)`` (heads x windows), output ``(N, B*M)``; a product of two maps
keeps the map. ``concat`` joins features when the inputs' axes 0 add up to the output's, else
positions (a class token before the patch tokens). ``param`` is an ``nn.Parameter`` of
``weight_shape`` used as ``output_shape`` (its elements repeated in order when the output is
larger: a relative-position bias table). Elementwise ops broadcast a ``(C,)`` vector over a
map, a smaller ``(F, m)`` token tensor tiled over ``(F, M)`` (a bias over windows), and read an
input of another canonical form but the same positions through plumbing. ``slice`` takes the
leading elements of each axis, or (q/k/v and heads of a fused projection) the leading rows of
the output's feature size.

Each weighted op uses the standard torch layer (``nn.Conv2d``, ``nn.Linear``, a BatchNorm
subclass, ``nn.LayerNorm``, ``nn.GroupNorm``, ``nn.ReLU``...), so hooks keyed on module types --
the zero-cost proxies' prunable layers and NASWOT's ReLU calls -- see the same layers as in a
hand-written network, and ``napbench.conversion.from_torch(to_torch(g))`` gives back
``g.canonical_hash`` (tested on the golden ops, the reference networks, every family and the
five token networks: ViT, ConvNeXt, Swin, MobileViT, SE hybrid).

What a CG does not record is filled with the torch default: the slope of ``leaky_relu``
(0.01), the constant of ``scale`` (1.0, held in a buffer so that the node survives tracing),
the crop of ``slice`` (the leading elements), nearest-neighbour ``upsample``, zero ``pad``,
which rows of a ``param`` a gather reads. ``conv``/``pool`` padding that is asymmetric
(TensorFlow 'same') becomes an explicit pad before a symmetric layer; pooling's ceil mode is
inferred from the recorded output shape. A ``layernorm`` whose weight covers several trailing
axes of a map (a vocabulary-1 graph) normalises those axes.

Initialisation (``init=``): ``"default"`` -- each layer's own PyTorch initialisation, drawn in
node order under ``torch.manual_seed(seed)`` in a forked RNG (the caller's RNG is untouched);
``"kaiming"`` -- Kaiming-normal (fan-out, ReLU) conv/linear weights, zero biases, unit norm
scales, as NAS-Bench-Suite-Zero initialises networks for proxies; ``"none"`` -- whatever the
layers' constructors leave (use on the ``meta`` device). :data:`INITS` is the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napbench._scoped import reset_parameters, seeded_torch
from napbench.conversion.graph import CompGraph, Node
from napbench.errors import InvalidArgumentError, InvalidGraphError

__all__ = ["INITS", "OP_BUILDERS", "GraphNet", "register_op", "supported_ops", "to_torch"]

Builder = Callable[[Node], nn.Module]
#: vocabulary op -> builder of the module that computes one node of that op
OP_BUILDERS: dict[str, Builder] = {}


def register_op(*ops: str) -> Callable[[Builder], Builder]:
    """Register ``builder(node) -> nn.Module`` for ``ops`` (the module's forward takes the node's inputs)."""

    def add(fn: Builder) -> Builder:
        for op in ops:
            if op in OP_BUILDERS:
                raise InvalidArgumentError(f"executor op {op!r} is already registered; expected a new op")
            OP_BUILDERS[op] = fn
        return fn

    return add


def supported_ops() -> list[str]:
    """Ops the executor can run, sorted."""
    return sorted(OP_BUILDERS)


# -- small helpers ------------------------------------------------------------------------
def _nd(node: Node) -> int:
    return len(node.kernel) if node.kernel else max(len(node.input_shapes[0]) - 1, 1)


def _spatial(node: Node, attr: str, default: int) -> tuple[int, ...]:
    v = getattr(node, attr)
    return tuple(v) if v else (default,) * _nd(node)


def _pad_spec(node: Node) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """(symmetric padding for the layer, explicit F.pad spec or None)."""
    nd = _nd(node)
    p = tuple(node.padding) if node.padding else (0,) * (2 * nd)
    begin, end = p[:nd], p[nd:]
    k = _spatial(node, "kernel", 1)
    if begin == end and all(b <= kk // 2 for b, kk in zip(begin, k)):
        return begin, None
    spec: list[int] = []
    for b, e in zip(reversed(begin), reversed(end)):  # F.pad: last dim first
        spec += [b, e]
    return (0,) * nd, tuple(spec)


def _to_map(x: Tensor, nd: int) -> Tensor:
    """A (batch, C) vector as a (batch, C, 1, ..., 1) map with ``nd`` spatial dims."""
    return x.reshape(x.shape[0], x.shape[1], *([1] * nd))


def _rshape(shape: Sequence[int]) -> tuple[int, ...]:
    """How the executor holds a canonical shape (after the batch axis): token tensors and 1-d maps
    ``(F, M)`` as ``(M, F)`` (features last, as frameworks write tokens); vectors and maps as they are."""
    return (shape[1], shape[0]) if len(shape) == 2 else tuple(shape)


def _last(x: Tensor, shape: Sequence[int]) -> Tensor:
    """``x`` (held for canonical ``shape``) with its canonical axis 0 last: ``(batch, ..., F)``."""
    return x.movedim(1, -1) if len(shape) >= 3 else x


def _unlast(y: Tensor, shape: Sequence[int]) -> Tensor:
    """Inverse of :func:`_last`: a ``(batch, ..., F)`` tensor with ``prod(shape)`` elements per sample as held."""
    if len(shape) <= 1:
        return y.reshape(-1, *shape)
    if len(shape) == 2:  # (M, F)
        if isinstance(y, Tensor) and y.dim() == 3 and tuple(y.shape[1:]) == (shape[1], shape[0]):
            return y  # a no-op reshape of a square (M == F) tensor would make the torch frontend re-guess its layout
        return y.reshape(-1, shape[1], shape[0])
    return y.reshape(-1, *shape[1:], shape[0]).movedim(-1, 1)


def _tokens(x: Tensor, shape: Sequence[int], f: int) -> Tensor:
    """``x`` (held for ``shape``) as ``(batch, prod(shape) / f, f)``: rows of ``f`` features."""
    if len(shape) == 2 and shape[0] == f:  # already so; a no-op reshape would make the frontend re-guess the layout
        return x
    return _last(x, shape).reshape(-1, math.prod(shape) // f, f)


def _relayout(x: Tensor, src: Sequence[int], dst: Sequence[int]) -> Tensor:
    """Plumbing: the same elements held for canonical shape ``dst`` instead of ``src``."""
    if tuple(src) == tuple(dst):
        return x
    return _unlast(_last(x, src).reshape(-1, math.prod(dst)), dst)


def _cf(x: Tensor, shape: Sequence[int]) -> Tensor:
    """A 1-d map ``(C, L)`` (held ``(L, C)``) channel-first for a spatial layer; other shapes as held."""
    return x.transpose(1, 2) if len(shape) == 2 else x


class _Op(nn.Module):
    """Base of the executor's node modules: static shape facts of the node."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.in_shapes = node.input_shapes
        self.out_shape = node.output_shape
        #: the op yields a spatial map but the graph records a (C,) vector: flatten it
        self.flat_out = len(node.output_shape) == 1 and bool(node.input_shapes) and len(node.input_shapes[0]) > 1

    def lift(self, x: Tensor, i: int, nd: int) -> Tensor:
        """Input ``i`` with ``nd`` spatial dims (vectors become 1x1 maps)."""
        return _to_map(x, nd) if len(self.in_shapes[i]) == 1 and nd > 0 else x

    def out(self, y: Tensor) -> Tensor:
        """A spatial layer's channel-first result as held (vectors flat, 1-d maps ``(L, C)``)."""
        if self.flat_out:
            return y.flatten(1)
        return y.transpose(1, 2) if len(self.out_shape) == 2 else y

    def extra_repr(self) -> str:
        return f"{list(self.in_shapes)} -> {self.out_shape}"


# -- weighted layers ------------------------------------------------------------------------
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


class _Conv(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        nd = self.nd = _nd(node)
        if nd not in _CONV:
            raise InvalidGraphError(f"conv {node.name!r} has {nd} spatial dims; the executor runs 1-3")
        pad, self.pre_pad = _pad_spec(node)
        c_out, c_in_g, *k = node.weight_shape
        self.conv = _CONV[nd](
            c_in_g * node.groups, c_out, tuple(k), stride=_spatial(node, "stride", 1), padding=pad,
            dilation=_spatial(node, "dilation", 1), groups=node.groups, bias=node.bias,
        )
        self.flat_out = len(node.output_shape) == 1

    def forward(self, x: Tensor) -> Tensor:
        x = self.lift(_cf(x, self.in_shapes[0]), 0, self.nd)
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        return self.out(self.conv(x))


class _ConvTranspose(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        nd = self.nd = _nd(node)
        if nd not in _CONVT:
            raise InvalidGraphError(f"conv_transpose {node.name!r} has {nd} spatial dims; the executor runs 1-3")
        p = tuple(node.padding) if node.padding else (0,) * (2 * nd)
        if p[:nd] != p[nd:]:
            raise InvalidGraphError(f"conv_transpose {node.name!r} has asymmetric padding {p}; expected (begin..., end...) equal")
        c_in, c_out_g, *k = node.weight_shape
        s, d = _spatial(node, "stride", 1), _spatial(node, "dilation", 1)
        in_sp = node.input_shapes[0][1:] or (1,) * nd
        out_sp = node.output_shape[1:] or (1,) * nd
        extra = tuple(o - ((i - 1) * st - 2 * pp + dd * (kk - 1) + 1) for o, i, st, pp, dd, kk in zip(out_sp, in_sp, s, p[:nd], d, k))
        if any(e < 0 or e >= max(st, dd) for e, st, dd in zip(extra, s, d)):
            raise InvalidGraphError(f"conv_transpose {node.name!r}: output {node.output_shape} is not reachable from input {node.input_shapes[0]}")
        self.conv = _CONVT[nd](c_in, c_out_g * node.groups, tuple(k), stride=s, padding=p[:nd], output_padding=extra,
                               groups=node.groups, bias=node.bias, dilation=d)
        self.flat_out = len(node.output_shape) == 1

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.conv(self.lift(_cf(x, self.in_shapes[0]), 0, self.nd)))


class _Linear(_Op):
    """A dense layer: on a vector; on a map whose features it reads flattened (``weight`` covers
    every element); or over the channel axis of a map (``weight`` covers C)."""

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        c_out, c_in = node.weight_shape
        shp, out = tuple(node.input_shapes[0]), tuple(node.output_shape)
        self.c_in = c_in
        self.linear = nn.Linear(c_in, c_out, bias=node.bias)
        if math.prod(shp) % c_in or math.prod(shp) // c_in * c_out != math.prod(out):
            raise InvalidGraphError(f"linear {node.name!r}: weight {node.weight_shape} maps neither input {shp} to output {out}")
        self.flatten = len(shp) >= 3 and out == (c_out,) and c_in == math.prod(shp) and c_in != shp[0]
        self.on_map = len(shp) >= 3 and shp[0] == c_in and out == (c_out, *shp[1:])  # channel axis of a map
        self.direct = len(shp) <= 2 and shp[0] == c_in and len(out) == len(shp)  # vectors, tokens

    def forward(self, x: Tensor) -> Tensor:
        if self.flatten:
            return self.linear(x.flatten(1))
        if self.on_map:  # a dense layer over the channel axis of a feature map
            return self.linear(x.movedim(1, -1)).movedim(-1, 1)
        if self.direct:
            return self.linear(x)
        # the features it reads are another axis than the recorded axis 0 (heads merged back...)
        return _unlast(self.linear(_tokens(x, self.in_shapes[0], self.c_in)), self.out_shape)


class _BatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm on any rank, with the scale and the shift each optional (Keras allows both)."""

    def __init__(self, c: int, *, scale: bool, shift: bool) -> None:
        super().__init__(c, affine=True)
        if not scale:
            self.register_parameter("weight", None)
        if not shift:
            self.register_parameter("bias", None)

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise InvalidGraphError(f"batch norm got a {input.dim()}-d tensor; expected (batch, C, ...)")

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


_STOCK_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d, 4: nn.BatchNorm3d}


class _ChannelsLast(_Op):
    """A channel-first layer (``bn``, ``groupnorm``) on tokens or a 1-d map, held ``(M, F)``."""

    def __init__(self, node: Node, layer: nn.Module, attr: str) -> None:
        super().__init__(node)
        self.attr = attr
        setattr(self, attr, layer)

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self, self.attr)(x.transpose(1, 2)).transpose(1, 2)


@register_op("bn")
def _bn(node: Node) -> nn.Module:
    shp = node.input_shapes[0]
    if node.weight_shape and node.bias and len(shp) in _STOCK_BN:  # the stock layer: torch.fx keeps it a leaf
        bn: nn.Module = _STOCK_BN[len(shp)](shp[0])
    else:
        bn = _BatchNorm(shp[0], scale=bool(node.weight_shape), shift=node.bias)
    return _ChannelsLast(node, bn, "bn") if len(shp) == 2 else bn


class _LayerNorm(_Op):
    """Normalises the canonical axis 0 (per position); a multi-axis weight covering the trailing
    axes of a map (a vocabulary-1 graph) normalises those axes."""

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        shp = tuple(node.input_shapes[0])
        w = tuple(node.weight_shape)
        self.trailing = len(w) > 1 and len(shp) >= 3 and shp[-len(w):] == w
        norm = w if self.trailing else (shp[0],)
        if w and math.prod(w) != math.prod(norm):
            raise InvalidGraphError(f"layernorm {node.name!r}: weight {w} does not cover axis 0 of input {shp}")
        self.norm = nn.LayerNorm(norm, elementwise_affine=bool(w), bias=node.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.trailing or len(self.in_shapes[0]) <= 2:  # vectors and tokens hold the features last
            return self.norm(x)
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


@register_op("groupnorm")
def _groupnorm(node: Node) -> nn.Module:
    c = node.input_shapes[0][0]
    groups = node.groups if node.groups > 0 and c % node.groups == 0 else 1
    gn = nn.GroupNorm(groups, c, affine=bool(node.weight_shape))
    if node.weight_shape and not node.bias:
        gn.register_parameter("bias", None)
    return _ChannelsLast(node, gn, "groupnorm") if len(node.input_shapes[0]) == 2 else gn


register_op("conv")(_Conv)
register_op("conv_transpose")(_ConvTranspose)
register_op("linear")(_Linear)
register_op("layernorm")(_LayerNorm)


# -- activations (shape-preserving, parameter-free) ----------------------------------------
def _module(cls: Callable[[], nn.Module]) -> Builder:
    return lambda node: cls()


for _op, _cls in {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid, "hardswish": nn.Hardswish, "tanh": nn.Tanh,
}.items():
    register_op(_op)(_module(_cls))


@register_op("softmax")
def _softmax(node: Node) -> nn.Module:
    return nn.Softmax(dim=1 if len(node.output_shape) >= 3 else -1)  # the canonical axis 0 as held


class _Reduce(_Op):
    """``reduce_*`` over the canonical axis 0, kept as a unit axis: ``(1, *rest)``."""

    def __init__(self, node: Node, fn: Callable[[Tensor, int], Tensor]) -> None:
        super().__init__(node)
        self.fn = fn
        self.dim = 1 if len(node.input_shapes[0]) >= 3 else -1

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x, self.dim)


def _mean(x: Tensor, dim: int) -> Tensor:
    return torch.mean(x, dim=dim, keepdim=True)


def _amax(x: Tensor, dim: int) -> Tensor:
    return torch.amax(x, dim=dim, keepdim=True)


def _l2(x: Tensor, dim: int) -> Tensor:
    return torch.linalg.vector_norm(x, 2, dim=dim, keepdim=True)


for _op, _fn in {"reduce_mean": _mean, "reduce_max": _amax, "reduce_l2": _l2}.items():
    register_op(_op)(lambda node, fn=_fn: _Reduce(node, fn))


class _Param(_Op):
    """A learned tensor of ``weight_shape`` used as the activation ``output_shape`` (batch 1).

    Its elements fill the output in order, repeated when the output is larger (a
    relative-position bias table gathered into attention scores) or truncated when smaller.
    """

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.weight = nn.Parameter(torch.empty(node.weight_shape or (1,)))
        self.n, self.m = self.weight.numel(), math.prod(node.output_shape)

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self) -> Tensor:
        w = self.weight.reshape(-1)
        if self.n != self.m:
            w = w[torch.arange(self.m, device=w.device) % self.n]
        return _unlast(w.reshape(1, -1, self.out_shape[0]), self.out_shape)


register_op("param")(_Param)


# -- elementwise and structural ops -----------------------------------------------------------
class _Elementwise(_Op):
    """n-ary add / mul, binary sub / div. Inputs broadcast over the output (the largest input):
    a ``(C,)`` vector over a map's positions, ``(1, *rest)`` over its channels, smaller token
    tensors ``(F, m)`` tiled over ``(F, M)`` (a bias over heads x windows); an input of the
    output's size in another canonical form (tokens added to a map) is re-laid out."""

    def __init__(self, node: Node, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__(node)
        self.fn = fn
        out = tuple(node.output_shape)
        n_out = math.prod(out)
        nd = len(out) - 1
        #: per input: "same", "relayout" (to ``self.targets[i]``), "lift" (vector over a map), "tile"
        #: (tokens), "bcast" (as held)
        self.modes: list[str] = []
        self.targets: list[tuple[int, ...]] = []
        tiles = set()
        for s in map(tuple, node.input_shapes):
            self.targets.append(out)
            if s == out:
                mode = "same"
            elif math.prod(s) == n_out:
                mode = "relayout"
            elif len(s) > 1 and s[0] < out[0] and math.prod(s) * out[0] == n_out * s[0] and len(s) != len(out):
                mode = "relayout"  # every position of the output, in another form: (1, H, W) gating (F, H*W)
                self.targets[-1] = (s[0], *out[1:])
            elif len(out) >= 3 and len(s) == 1:
                mode = "lift"
            elif len(out) == 2 and s[:1] == out[:1] and n_out % max(math.prod(s), 1) == 0:
                mode = "tile"
                tiles.add(math.prod(s) // out[0])
            else:
                mode = "bcast"
            self.modes.append(mode)
        if len(tiles) > 1:
            raise InvalidGraphError(f"{node.op} {node.name!r}: inputs {list(node.input_shapes)} tile {out} in several ways")
        self.tile = tiles.pop() if tiles else 0
        self.nd = nd

    def forward(self, *xs: Tensor) -> Tensor:
        out = self.out_shape
        if self.tile:  # token tensors as (batch, M / m, m, F); the smaller ones (batch, 1, m, F)
            m, f, big = self.tile, out[0], out[1] // self.tile if len(out) == 2 else 1
        ys = []
        for x, s, mode, target in zip(xs, self.in_shapes, self.modes, self.targets):
            if mode == "relayout":
                x = _relayout(x, s, target)
            elif mode == "lift":
                x = _to_map(x, self.nd)
            if self.tile and mode == "tile":
                x = x.reshape(-1, 1, m, f)
            elif self.tile and mode != "bcast":
                x = x.reshape(-1, big, m, target[0])
            ys.append(x)
        y = ys[0]
        for x in ys[1:]:
            y = self.fn(y, x)
        return y.reshape(-1, *_rshape(out)) if self.tile else y


def _add(a: Tensor, b: Tensor) -> Tensor:
    return a + b


def _mul(a: Tensor, b: Tensor) -> Tensor:
    return a * b


def _sub(a: Tensor, b: Tensor) -> Tensor:
    return a - b


def _div(a: Tensor, b: Tensor) -> Tensor:
    return a / b


for _op, _fn in {"add": _add, "mul": _mul, "sub": _sub, "div": _div}.items():
    register_op(_op)(lambda node, fn=_fn: _Elementwise(node, fn))


class _Concat(_Op):
    """Along the canonical axis 0 when the inputs' axes 0 add up to the output's (channels of maps,
    features of tokens), else along the positions of inputs sharing the output's axis 0 (a class
    token prepended to patch tokens)."""

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        out, ins = tuple(node.output_shape), [tuple(s) for s in node.input_shapes]
        if sum(s[0] for s in ins) == out[0] and all(math.prod(s) * out[0] == math.prod(out) * s[0] for s in ins):
            self.mode = "features"
            self.parts = [(s[0], *out[1:]) for s in ins]
            self.dim = 1 if len(out) >= 3 else -1
        elif all(s[0] == out[0] for s in ins) and sum(math.prod(s) for s in ins) == math.prod(out):
            self.mode = "positions"
        else:
            raise InvalidGraphError(f"concat {node.name!r}: inputs {ins} concatenate to neither features nor positions of {out}")

    def forward(self, *xs: Tensor) -> Tensor:
        if self.mode == "features":
            return torch.cat([_relayout(x, s, p) for x, s, p in zip(xs, self.in_shapes, self.parts)], dim=self.dim)
        ts = [_tokens(x, s, self.out_shape[0]) for x, s in zip(xs, self.in_shapes)]
        b = max(t.shape[0] for t in ts)
        y = torch.cat([t if t.shape[0] == b else t.expand(b, -1, -1) for t in ts], dim=1)  # params have batch 1
        return y if len(self.out_shape) == 2 else _unlast(y, self.out_shape)


class _MatMul(_Op):
    """``a`` (rows of ``K = inner``) times ``b`` batched over ``B`` groups: ``(B, M, K) x (B, K, N)``,
    output ``(N, B*M)`` with ``B = prod(b) / (K * N)``."""

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        a, b = (math.prod(s) for s in node.input_shapes)
        out = tuple(node.output_shape)
        #: a product of two maps over their last two axes keeps the map layout (the frontend records it so)
        self.maps = all(len(s) >= 3 for s in (*node.input_shapes, out))
        if self.maps:
            return
        k, n = max(int(node.inner), 1), out[0]
        groups = b // (k * n) if b % (k * n) == 0 else 0
        if not groups or a % (k * groups) or (math.prod(out) // n) != a // k:
            raise InvalidGraphError(f"matmul {node.name!r}: inputs {list(node.input_shapes)} with inner {node.inner} "
                                    f"do not give {out}; expected a = (K, B*M), b with B*K*N elements")
        self.k, self.n, self.groups, self.m = k, n, groups, a // (k * groups)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if self.maps:
            return torch.matmul(a, b)
        sa, sb = self.in_shapes
        a = _last(a, sa).reshape(-1, self.groups, self.m, self.k)
        b = _last(b, sb).reshape(-1, self.groups, self.k, self.n)
        return _unlast(torch.matmul(a, b), self.out_shape)


register_op("concat")(_Concat)
register_op("matmul")(_MatMul)

_AVG = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_MAX = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}


class _Pool(_Op):
    def __init__(self, node: Node, table: dict[int, type[nn.Module]]) -> None:
        super().__init__(node)
        nd = self.nd = _nd(node)
        pad, self.pre_pad = _pad_spec(node)
        self.pad_value = -math.inf if table is _MAX else 0.0
        k, s = _spatial(node, "kernel", 1), _spatial(node, "stride", 1)
        in_sp = node.input_shapes[0][1:] or (1,) * nd
        if self.pre_pad is not None:  # sizes after the explicit pad
            spec = self.pre_pad
            in_sp = tuple(n + spec[2 * (nd - 1 - i)] + spec[2 * (nd - 1 - i) + 1] for i, n in enumerate(in_sp))
        out_sp = node.output_shape[1:] or (1,) * nd
        floor = tuple((i + 2 * p - kk) // st + 1 for i, p, kk, st in zip(in_sp, pad, k, s))
        ceil = floor != tuple(out_sp)
        extra = {"count_include_pad": False} if table is _AVG else {}
        self.pool = table[nd](k, stride=s, padding=pad, ceil_mode=ceil, **extra)
        self.flat_out = len(node.output_shape) == 1

    def forward(self, x: Tensor) -> Tensor:
        x = self.lift(_cf(x, self.in_shapes[0]), 0, self.nd)
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad, value=self.pad_value)
        return self.out(self.pool(x))


register_op("avgpool")(lambda node: _Pool(node, _AVG))
register_op("maxpool")(lambda node: _Pool(node, _MAX))


class _GlobalAvg(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        r = len(node.input_shapes[0])
        self.dims = (1,) if r == 2 else tuple(range(2, r + 1))  # tokens / 1-d maps are held (M, F)

    def forward(self, x: Tensor) -> Tensor:
        return torch.mean(x, dim=self.dims) if self.dims else x


_ADAPTIVE_MAX = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}


class _GlobalMax(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.nd = len(node.input_shapes[0]) - 1

    def forward(self, x: Tensor) -> Tensor:
        if self.nd == 1:  # tokens / 1-d maps, held (M, F)
            return torch.amax(x, dim=1)
        return _ADAPTIVE_MAX[self.nd](x, 1).flatten(1) if self.nd else x


register_op("global_avgpool")(_GlobalAvg)
register_op("global_maxpool")(_GlobalMax)


class _Slice(_Op):
    """The leading elements (the CG records the shape, not the offsets): of every axis when the
    output fits in the input axis by axis; else (a head or a q/k/v part of a fused projection,
    its groups folded into the positions) the leading rows of the input read as rows of the
    output's axis 0.

    A map's spatial axes scale with the input size: run at another size than recorded, an axis
    that kept more than half of its elements drops as many trailing ones (the crop after a pad,
    as in a factorised reduction), and one that kept at most half keeps the same fraction
    (rounded up), so that branches still agree. At the recorded size nothing changes."""

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        shp_in, shp_out = tuple(node.input_shapes[0]), tuple(node.output_shape)
        ends = shp_out + (1,) * (len(shp_in) - len(shp_out))
        n_in, n_out = math.prod(shp_in), math.prod(shp_out)
        self.rows = 0
        self.spatial: list[tuple[int, int, int]] = []  # (tensor axis, kept, recorded length)
        if len(ends) == len(shp_in) and all(e <= n for e, n in zip(ends, shp_in)):
            self.index = (slice(None), *(slice(0, e) for e in _rshape(ends)))
            self.flat_out = len(shp_out) < len(shp_in)
            if len(shp_in) >= 3:
                self.spatial = [(a + 1, e, n) for a, (e, n) in enumerate(zip(ends, shp_in)) if 0 < a < len(shp_out) and e < n]
        elif n_out <= n_in and n_in % shp_out[0] == 0:
            self.rows = n_out // shp_out[0]
        else:
            raise InvalidGraphError(f"slice {node.name!r}: output {shp_out} does not fit in input {shp_in}")

    def _index(self, x: Tensor) -> tuple[slice, ...]:
        if all(x.shape[a] == n for a, _, n in self.spatial):
            return self.index
        index = list(self.index)
        for a, e, n in self.spatial:
            size = int(x.shape[a])
            index[a] = slice(0, size - (n - e)) if e > n - e else slice(0, max(1, -(-size * e // n)))
        return tuple(index)

    def forward(self, x: Tensor) -> Tensor:
        if self.rows:
            return _unlast(_tokens(x, self.in_shapes[0], self.out_shape[0])[:, : self.rows], self.out_shape)
        y = x[self._index(x) if self.spatial else self.index]
        return y.flatten(1) if self.flat_out else y


class _Pad(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        nd = len(node.input_shapes[0]) - 1
        p = tuple(node.padding) if node.padding else (0,) * (2 * nd)
        spec: list[int] = []
        for b, e in zip(reversed(p[:nd]), reversed(p[nd:])):
            spec += [b, e]
        self.spec = tuple(spec)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.pad(_cf(x, self.in_shapes[0]), self.spec))


class _Upsample(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.size = tuple(node.output_shape[1:])
        self.nd = len(node.input_shapes[0]) - 1

    def forward(self, x: Tensor) -> Tensor:
        x = self.lift(x, 0, len(self.size)) if not self.nd else _cf(x, self.in_shapes[0])
        return self.out(F.interpolate(x, size=self.size, mode="nearest"))


class _Zero(_Op):
    def forward(self, x: Tensor) -> Tensor:
        return x * 0.0


class _Scale(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.register_buffer("value", torch.ones(()), persistent=False)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.value)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.value


for _op, _cls in {"slice": _Slice, "pad": _Pad, "upsample": _Upsample, "zero": _Zero, "scale": _Scale}.items():
    register_op(_op)(_cls)


#: ops whose output shape depends on the layer built (the meta shape check runs only these; the
#: graph's own validation already pins elementwise, concat and shape-preserving ops)
_SHAPE_CHECKED = frozenset(
    {"conv", "conv_transpose", "linear", "matmul", "avgpool", "maxpool", "global_avgpool", "global_maxpool", "slice", "pad",
     "upsample", "param", "concat", "reduce_mean", "reduce_max", "reduce_l2"}
)


# -- the network -----------------------------------------------------------------------------
class GraphNet(nn.Module):
    """A computation graph as a module: node ``i`` is ``self.nodes[str(i)]`` (node 0, the input, has none).

    ``forward(x)`` takes ``(batch, *graph.input_shape)`` and returns the output node's tensor
    ``(batch, *output_shape)`` (a tuple for several outputs). ``post`` (default None) is an
    optional ``post(i, node, tensor) -> tensor`` applied to every node's output as held
    (``(batch, M, F)`` for a 2-d canonical shape ``(F, M)``), e.g. to rescale activations.
    A ``param`` node's value has batch 1 (its consumers broadcast it).
    """

    def __init__(self, graph: CompGraph, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        self.graph = graph
        self.nodes = nn.ModuleDict(modules)
        self.post: Callable[[int, Node, Tensor], Tensor] | None = None
        last_use = [0] * len(graph.nodes)
        for i, n in enumerate(graph.nodes):
            for s in n.inputs:
                last_use[s] = i
        for o in graph.outputs:
            last_use[o] = len(graph.nodes)
        #: (node index, inputs, nodes whose value dies after this one)
        self._plan = [
            (i, n.inputs, tuple(s for s in dict.fromkeys(n.inputs) if last_use[s] == i))
            for i, n in enumerate(graph.nodes) if i
        ]
        self._check = False

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        in_shape = self.graph.input_shape
        vals: dict[int, Tensor] = {0: x.transpose(1, 2) if len(in_shape) == 2 else x}  # held (M, F), see _rshape
        nodes = self.graph.nodes
        for i, ins, dead in self._plan:
            if self._check and nodes[i].op not in _SHAPE_CHECKED:  # meta kernels are slow; nothing to learn there
                y = vals[ins[0]].new_empty((vals[ins[0]].shape[0], *_rshape(nodes[i].output_shape)))
            else:
                y = self.nodes[str(i)](*[vals[s] for s in ins])
            if self._check:
                _check_shape(i, nodes[i], y)
            if self.post is not None:
                y = self.post(i, nodes[i], y)
            vals[i] = y
            for s in dead:
                del vals[s]
        outs = tuple(vals[o].transpose(1, 2) if len(nodes[o].output_shape) == 2 else vals[o] for o in self.graph.outputs)
        return outs[0] if len(outs) == 1 else outs

    @property
    def num_classes(self) -> int:
        """Channels of the (first) output."""
        return int(self.graph.nodes[self.graph.outputs[0]].output_shape[0])


def _check_shape(i: int, node: Node, y: Tensor) -> None:
    got = tuple(int(d) for d in y.shape[1:])
    if got != _rshape(node.output_shape):
        got = _rshape(got)  # report it in canonical order
        raise InvalidGraphError(
            f"node {i} ({node.op}{' ' + repr(node.name) if node.name else ''}) computes shape {got} from inputs "
            f"{list(node.input_shapes)}; the graph records {node.output_shape}"
        )


# -- initialisation --------------------------------------------------------------------------
def _init_default(net: nn.Module) -> None:
    reset_parameters(net)


def _init_kaiming(net: nn.Module) -> None:
    _init_default(net)  # buffers and norm layers
    for m in net.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _init_none(net: nn.Module) -> None:
    return None


#: init name -> function(net) filling its parameters and buffers in place (under the seeded RNG)
INITS: dict[str, Callable[[nn.Module], None]] = {"default": _init_default, "kaiming": _init_kaiming, "none": _init_none}


def to_torch(
    graph: CompGraph,
    *,
    init: str = "default",
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    check: bool = True,
    memo: dict[tuple[str, tuple[int, ...]], nn.Module] | None = None,
) -> GraphNet:
    """Build a runnable :class:`GraphNet` from any valid computation graph.

    Args:
        graph: the CG (every op must have an entry in :data:`OP_BUILDERS`).
        init: a name in :data:`INITS` (``"default"``, ``"kaiming"``, ``"none"``).
        seed: the initialisation seed (the caller's RNG state is left untouched).
        device, dtype: where and in which float type to build (``"meta"``: nothing allocated).
        check: run the network once on the ``meta`` device and compare every node's output
            shape with the graph's (cheap; nothing is computed).
        memo: a dict shared across calls: nodes with the same structure (label and padding)
            reuse one module from it, so their weights are tied. For feature extractors that
            supply every weight themselves (``torch.func.functional_call``), e.g. the Fourier
            predictor; it makes building a graph's network nearly free.

    Raises:
        InvalidGraphError: an op the executor cannot run (the message lists the supported
            ops), or a node whose recorded shapes no layer reproduces.
    """
    if not isinstance(graph, CompGraph):
        raise InvalidArgumentError(f"to_torch expected a CompGraph, got {type(graph).__name__}")
    if init not in INITS:
        raise InvalidArgumentError(f"init is {init!r}; expected one of {sorted(INITS)}")
    bad = sorted({n.op for n in graph.nodes[1:] if n.op not in OP_BUILDERS})
    if bad:
        where = [f"{i} ({n.op}{': ' + n.detail if n.detail else ''})" for i, n in enumerate(graph.nodes) if n.op in bad][:3]
        raise InvalidGraphError(
            f"the executor cannot run op(s) {bad} (nodes {', '.join(where)}); expected only ops among: {', '.join(supported_ops())}"
        )
    dev = torch.device(device) if device is not None else torch.device("cpu")
    with torch.device("meta"):  # build without allocating or initialising, check, then materialise
        if memo is None:
            modules = {str(i): OP_BUILDERS[n.op](n) for i, n in enumerate(graph.nodes) if i}
        else:
            modules = {}
            for i, n in enumerate(graph.nodes[1:], 1):
                key = (n.label(), n.padding)
                if key not in memo:
                    memo[key] = OP_BUILDERS[n.op](n)
                modules[str(i)] = memo[key]
        net = GraphNet(graph, modules)
    if check:
        check_shapes(net)
    if dev.type != "meta":
        net = net.to_empty(device=dev)
        with seeded_torch(int(seed), [dev] if dev.type == "cuda" else []):
            INITS[init](net)
    if dtype is not None:
        net = net.to(dtype=dtype)
    return net


def check_shapes(net: GraphNet, *, batch_size: int = 2) -> None:
    """Run ``net`` on the meta device and compare each node's output shape with its graph's.

    ``net`` must live on the meta device (as :func:`to_torch` builds it before materialising).
    """
    x = torch.empty((batch_size, *net.graph.input_shape), device="meta")
    net._check = True
    try:
        with torch.no_grad():
            net(x)
    except InvalidGraphError:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise InvalidGraphError(
            f"graph {net.graph.meta.get('arch') or net.graph.meta.get('name') or ''} cannot run: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    finally:
        net._check = False


def node_modules(net: GraphNet, ops: Sequence[str]) -> list[tuple[int, Node, nn.Module]]:
    """``(index, node, module)`` of every node whose op is in ``ops``."""
    return [(i, n, net.nodes[str(i)]) for i, n in enumerate(net.graph.nodes) if i and n.op in ops]
