"""GraphBuilder: the one way computation graphs are made.

Every frontend (torch, Keras, ONNX) and every family fast path emits nodes through a
:class:`GraphBuilder`; :meth:`GraphBuilder.build` then runs the same canonicalisation passes
(:mod:`napbench.conversion._passes`) for all of them, so a network gives the same graph
whatever framework it comes from.

Handles are plain ints (node indices in the raw graph). Plumbing ops (reshape, flatten,
transpose, permute, roll, identity, dropout, ...) are not nodes: a frontend simply returns the
input handle.

The rules every frontend shares live here, once: constant arithmetic (:meth:`GraphBuilder.const_arith`:
``x*0`` -> ``zero``, ``x*1`` and ``x+c`` -> plumbing, ``x*c`` -> ``scale``), TensorFlow/ONNX
"same" padding (:func:`same_padding`), the canonical shapes of token tensors
(:func:`tokens`, :meth:`GraphBuilder.feature_shape`) and of elementwise results
(:meth:`GraphBuilder.broadcast`), and learned tensors (:meth:`GraphBuilder.param`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from napbench.conversion.graph import CompGraph, Node, Shape
from napbench.conversion.vocab import OPS
from napbench.errors import InvalidGraphError, UnsupportedOpError


def canon_shape(shape: Sequence[int]) -> Shape:
    """Canonical tensor shape: ints, channel-first, spatial dims dropped when all are 1."""
    s = tuple(int(d) for d in shape)
    if len(s) > 1 and all(d == 1 for d in s[1:]):
        return s[:1]
    return s


def tokens(features: int, numel: int) -> Shape:
    """Canonical shape of a token tensor: ``(F, M)`` with ``M = numel / F`` positions (``(F,)`` when ``M == 1``)."""
    f = int(features)
    m = int(numel) // f if f else 0
    return (f,) if m == 1 else (f, m)


def same_padding(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], *,
                 upper: bool = True) -> Shape:
    """TensorFlow / ONNX ``SAME_UPPER`` padding as (begin..., end...); ``upper=False`` is ``SAME_LOWER``.

    Total ``max((ceil(n/s)-1)*s + d*(k-1)+1 - n, 0)`` per dimension, ``total//2`` on the small side.
    """
    small, big = [], []
    for n, k, st, d in zip(spatial, kernel, stride, dilation):
        total = max((-(-int(n) // int(st)) - 1) * int(st) + int(d) * (int(k) - 1) + 1 - int(n), 0)
        small.append(total // 2)
        big.append(total - total // 2)
    return (*small, *big) if upper else (*big, *small)


def _tup(v: int | Sequence[int], n: int) -> Shape:
    if isinstance(v, int):
        return (v,) * n
    t = tuple(int(x) for x in v)
    return t * n if len(t) == 1 and n > 1 else t


def conv_out(size: int, k: int, s: int, p0: int, p1: int, d: int = 1, ceil: bool = False) -> int:
    """Output length of a convolution / pooling window along one dimension."""
    eff = d * (k - 1) + 1
    num = size + p0 + p1 - eff
    if ceil:
        out = -(-num // s) + 1
        if (out - 1) * s >= size + p0:  # PyTorch rule: last window must start inside the input
            out -= 1
        return out
    return num // s + 1


class GraphBuilder:
    """Accumulates raw nodes; :meth:`build` canonicalises and validates them."""

    def __init__(
        self,
        input_shape: Sequence[int],
        *,
        frontend: str = "napbench",
        allow_unknown: bool = False,
    ) -> None:
        self.frontend = frontend
        self.allow_unknown = allow_unknown
        self.nodes: list[Node] = [Node("input", output_shape=canon_shape(input_shape), name="input")]

    @property
    def input(self) -> int:
        """Handle of the graph input."""
        return 0

    def shape(self, h: int) -> Shape:
        """Canonical output shape of handle ``h``."""
        return self.nodes[h].output_shape

    def channels(self, h: int) -> int:
        """Channel count of handle ``h``."""
        return self.nodes[h].output_shape[0]

    # -- raw interface (frontends) -----------------------------------------------------
    def add_node(self, op: str, inputs: Sequence[int], output_shape: Sequence[int], **attrs: Any) -> int:
        """Append a node of vocabulary op ``op`` and return its handle.

        Ops outside the vocabulary raise :class:`UnsupportedOpError` unless the builder was
        made with ``allow_unknown=True``, in which case they become ``unknown`` nodes that
        record the original op in ``detail``.
        """
        if op not in OPS or op == "input":
            if not self.allow_unknown:
                raise UnsupportedOpError(op, self.frontend)
            attrs["detail"] = attrs.get("detail") or op
            op = "unknown"
        inputs = tuple(int(i) for i in inputs)
        node = Node(
            op,
            inputs=inputs,
            input_shapes=tuple(self.nodes[i].output_shape for i in inputs),
            output_shape=canon_shape(output_shape),
            **attrs,
        )
        self.nodes.append(node)
        return len(self.nodes) - 1

    def unsupported(self, op: str, inputs: Sequence[int], output_shape: Sequence[int], *, name: str = "") -> int:
        """Record an op the frontend cannot map (raises unless ``allow_unknown``)."""
        if not self.allow_unknown:
            raise UnsupportedOpError(op, self.frontend, f"layer {name!r}" if name else "")
        return self.add_node("unknown", inputs, output_shape, name=name, detail=op)

    # -- shared rules (every frontend) ---------------------------------------------------------
    def numel(self, h: int) -> int:
        """Number of elements of handle ``h``'s canonical shape."""
        return math.prod(self.nodes[h].output_shape)

    def feature_shape(self, x: int, f_in: int, f_out: int, out_numel: int) -> Shape:
        """Canonical output shape of a feature op (``linear``...) mapping ``f_in`` features of ``x`` to ``f_out``.

        When ``x``'s canonical axis 0 is the feature axis the op reads (a map, or tokens), the
        other axes are kept: ``(f_out, *rest)``; otherwise (the feature axis was moved by
        plumbing) the output is the token shape ``(f_out, out_numel / f_out)``.
        """
        shp = self.shape(x)
        if shp and shp[0] == f_in and math.prod(shp) // f_in * f_out == out_numel:
            return canon_shape((f_out, *shp[1:]))
        return tokens(f_out, out_numel)

    def broadcast(self, xs: Sequence[int], *, name: str = "") -> Shape:
        """Canonical shape of an elementwise op on ``xs``: the largest input (most elements, then most
        axes, then the largest shape), which every other input must divide (broadcasting)."""
        shapes = [self.shape(i) for i in xs]
        out = max(shapes, key=lambda s: (math.prod(s), len(s), s))
        total = math.prod(out)
        for s in shapes:
            if total % max(math.prod(s), 1):
                raise InvalidGraphError(f"elementwise op {name!r}: shapes {shapes} do not broadcast")
        return out

    def elementwise(self, op: str, xs: Sequence[int], *, name: str = "") -> int:
        """An n-ary elementwise op (``add``, ``mul``, ``sub``, ``div``) with the :meth:`broadcast` shape."""
        return self.add_node(op, list(xs), self.broadcast(xs, name=name), name=name)

    def param(self, weight_shape: Sequence[int], output_shape: Sequence[int], *, name: str = "") -> int:
        """A learned tensor used as an activation (a ``param`` source node).

        Its weight shape is the stored tensor's shape without unit axes (exporters fold views
        such as ``gamma.view(1, C, 1, 1)`` into the stored tensor, and ``(1, 1, C)`` class tokens
        are ``(C,)`` elsewhere).
        """
        w = tuple(int(d) for d in weight_shape if int(d) != 1) or (1,)
        self.nodes.append(Node("param", output_shape=canon_shape(output_shape), weight_shape=w, name=name))
        return len(self.nodes) - 1

    def const_arith(self, op: str, x: int, value: float | None, *, const_first: bool = False,
                    same_size: bool = True, name: str = "") -> int:
        """``x <op> c`` for a constant ``c`` that is not a learned tensor (the rule of every frontend).

        ``value`` is ``c`` when it is a scalar (or all one value), ``None`` for a tensor of
        mixed values. Multiplication: by 0 -> ``zero``, by 1 -> plumbing, else ``scale``;
        division ``x / c`` -> ``scale`` (``c / x`` is unsupported); adding or subtracting a
        constant is plumbing (a bias shift) unless it broadcasts ``x`` to a larger tensor.
        """
        if op == "mul":
            if value == 0:
                return self.add_node("zero", [x], self.shape(x), name=name)
            if value == 1 and same_size:
                return x
            return self.add_node("scale", [x], self.shape(x), name=name)
        if op == "div":
            if const_first:
                return self.unsupported("reciprocal (constant / tensor)", [x], self.shape(x), name=name)
            if value == 1 and same_size:
                return x
            return self.add_node("scale", [x], self.shape(x), name=name)
        if not same_size:
            return self.unsupported(f"broadcast {op} with a constant", [x], self.shape(x), name=name)
        return x

    # -- typed interface (fast paths, frontends) -----------------------------------------
    def conv(
        self,
        x: int,
        out_channels: int,
        kernel: int | Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        groups: int = 1,
        dilation: int | Sequence[int] = 1,
        bias: bool = False,
        name: str = "",
    ) -> int:
        """A convolution; ``padding`` is an int, per-dim ints, or (begin..., end...)."""
        shp = self._spatial_input(x)
        c_in, spatial = shp[0], shp[1:]
        nd = len(spatial)
        k, s, d = _tup(kernel, nd), _tup(stride, nd), _tup(dilation, nd)
        pad = _pad(padding, nd)
        out_sp = tuple(conv_out(spatial[i], k[i], s[i], pad[i], pad[nd + i], d[i]) for i in range(nd))
        if c_in % groups:
            raise InvalidGraphError(f"conv {name!r}: {c_in} input channels not divisible by groups={groups}")
        return self.add_node(
            "conv", [x], (out_channels, *out_sp), weight_shape=(out_channels, c_in // groups, *k), bias=bias,
            kernel=k, stride=s, padding=pad, dilation=d, groups=groups, name=name,
        )

    def pool(
        self,
        op: str,
        x: int,
        kernel: int | Sequence[int],
        *,
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        ceil_mode: bool = False,
        name: str = "",
    ) -> int:
        """``avgpool`` or ``maxpool``."""
        shp = self._spatial_input(x)
        nd = len(shp) - 1
        k = _tup(kernel, nd)
        s = _tup(stride if stride is not None else kernel, nd)
        pad = _pad(padding, nd)
        out_sp = tuple(conv_out(shp[1 + i], k[i], s[i], pad[i], pad[nd + i], 1, ceil_mode) for i in range(nd))
        return self.add_node(op, [x], (shp[0], *out_sp), kernel=k, stride=s, padding=pad, dilation=(1,) * nd, name=name)

    def bn(self, x: int, *, scale: bool = True, center: bool = True, name: str = "") -> int:
        """Batch normalisation over channels."""
        c = self.channels(x)
        return self.add_node("bn", [x], self.shape(x), weight_shape=(c,) if scale else (), bias=center, name=name)

    def act(self, op: str, x: int, *, name: str = "") -> int:
        """A shape-preserving unary op (activation, ``zero``, ``scale``...)."""
        return self.add_node(op, [x], self.shape(x), name=name)

    def relu(self, x: int, *, name: str = "") -> int:
        """ReLU."""
        return self.add_node("relu", [x], self.shape(x), name=name)

    def zero(self, x: int, *, name: str = "") -> int:
        """Multiplication by zero (a NAS 'none' edge)."""
        return self.add_node("zero", [x], self.shape(x), name=name)

    def linear(self, x: int, out_features: int, *, bias: bool = True, name: str = "") -> int:
        """A dense layer over the channel axis."""
        shp = self.shape(x)
        return self.add_node(
            "linear", [x], (out_features, *shp[1:]), weight_shape=(out_features, shp[0]), bias=bias, name=name
        )

    def global_pool(self, x: int, *, op: str = "global_avgpool", name: str = "") -> int:
        """Global average (or max) pooling to a (C,) vector."""
        return self.add_node(op, [x], (self.channels(x),), name=name)

    def sum(self, xs: Sequence[int], *, name: str = "") -> int:
        """Elementwise n-ary sum (a single input is returned unchanged)."""
        xs = list(xs)
        if len(xs) == 1:
            return xs[0]
        return self.add_node("add", xs, self.broadcast(xs, name=name), name=name)

    def mul(self, xs: Sequence[int], *, name: str = "") -> int:
        """Elementwise product (with broadcasting of (C,) gates over feature maps)."""
        return self.add_node("mul", list(xs), self.broadcast(xs, name=name), name=name)

    def concat(self, xs: Sequence[int], *, name: str = "") -> int:
        """Concatenation along channels (a single input is returned unchanged)."""
        xs = list(xs)
        if len(xs) == 1:
            return xs[0]
        shapes = [self.shape(i) for i in xs]
        rest = {s[1:] for s in shapes}
        if len(rest) != 1:
            raise InvalidGraphError(f"concat {name!r}: inputs {shapes} differ outside the channel axis")
        return self.add_node("concat", xs, (sum(s[0] for s in shapes), *shapes[0][1:]), name=name)

    # -- finish ---------------------------------------------------------------------------
    def build(self, outputs: Sequence[int], *, meta: Mapping[str, Any] | None = None) -> CompGraph:
        """Canonicalise (prune dead nodes, fold pads, merge add/concat chains, ...) and validate."""
        from napbench.conversion._passes import canonicalize

        nodes, outs = canonicalize(self.nodes, list(outputs))
        return CompGraph(tuple(nodes), tuple(outs), dict(meta or {}))

    # -- helpers ------------------------------------------------------------------------
    def _spatial_input(self, x: int) -> Shape:
        shp = self.shape(x)
        return shp if len(shp) > 1 else (shp[0], 1, 1)


def _pad(padding: int | Sequence[int], nd: int) -> Shape:
    if isinstance(padding, int):
        return (padding,) * (2 * nd)
    p = tuple(int(v) for v in padding)
    if len(p) == nd:
        return p + p
    if len(p) == 2 * nd:
        return p
    if len(p) == 1:
        return p * (2 * nd)
    raise InvalidGraphError(f"padding {p} has {len(p)} values; expected 1, {nd} or {2 * nd}")
