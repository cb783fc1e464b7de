"""PyTorch frontend: trace a module into a computation graph.

The module runs once (batch 1, eval mode, no grad) under a ``TorchFunctionMode`` that sees
every top-level torch call; calls on tracked activations become vocabulary nodes. Running the
real Python forward means arbitrary control flow works (unlike symbolic tracing); on the
``meta`` device nothing is computed, so tracing is cheap even for large inputs.

Plumbing is pruned: view/reshape/flatten/(un)squeeze/contiguous/dropout/identity and
arithmetic with constants (adding a scalar or a constant tensor). Multiplication by the
scalar 0 is the ``zero`` op, by any other constant the ``scale`` op.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from napbench.conversion import _layout as L
from napbench.conversion.builder import GraphBuilder, canon_shape, tokens
from napbench.conversion.graph import CompGraph
from napbench.errors import ConversionError, NapbenchError, UnsupportedOpError

T = torch.Tensor


def _tensors(args: Sequence[Any], kwargs: Mapping[str, Any] | None) -> list[T]:
    """Tensors among call arguments, looking one level into lists/tuples (cheaper than pytree)."""
    out: list[T] = []
    for a in (*args, *(kwargs.values() if kwargs else ())):
        if isinstance(a, T):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, T))
    return out


def _shape(t: T) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape[1:])


def _numel(t: T) -> int:
    return math.prod(int(d) for d in t.shape)


def _fl(t: T) -> tuple[int, ...]:
    """Token shape of ``t``: (last axis, every other element) -- see ``vocab`` (batch is 1)."""
    if t.dim() == 0:
        return (1,)
    return tokens(int(t.shape[-1]), _numel(t))


def _param_shape(t: T) -> tuple[int, ...]:
    """Canonical shape of a learned tensor as used: trailing ones dropped, then the token shape."""
    dims = [int(d) for d in t.shape]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return tokens(dims[-1], math.prod(dims)) if dims else (1,)


_UNSET = object()


def _alias_perm(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any], src: T, out: T) -> Any:
    """Layout of a plumbing op's result: transposes compose, layout-keeping ops pass it on, reshapes re-derive it."""
    fname = getattr(func, "__name__", "")
    p = tr.perm(src)
    r = src.dim()
    if fname == "__get__":  # a property: .mT / .T swap axes, others (.data) keep the layout
        if r >= 2 and tuple(out.shape) == tuple(src.shape[:-2]) + tuple(src.shape[-2:])[::-1] and out.shape != src.shape:
            dims = list(range(r))
            dims[-1], dims[-2] = dims[-2], dims[-1]
            return L.compose(p, dims)
        return tr.perms.get(id(src))
    if fname in _SAME_LAYOUT_NAMES:
        return tr.perms.get(id(src))
    if fname in ("transpose", "swapaxes", "swapdims"):
        a, b = _arg(args, kwargs, 1, "dim0"), _arg(args, kwargs, 2, "dim1")
        dims = list(range(r))
        dims[a % r], dims[b % r] = dims[b % r], dims[a % r]
        return L.compose(p, dims)
    if fname == "t":
        dims = list(range(r))
        dims[-1], dims[-2] = dims[-2], dims[-1]
        return L.compose(p, dims)
    if fname == "permute":
        dims = args[1:] if len(args) > 2 or (len(args) == 2 and isinstance(args[1], int)) else _arg(args, kwargs, 1, "dims")
        return L.compose(p, [int(d) % r for d in dims])
    if fname == "movedim":
        srcd, dst = _arg(args, kwargs, 1, "source"), _arg(args, kwargs, 2, "destination")
        srcs = [srcd] if isinstance(srcd, int) else list(srcd)
        dsts = [dst] if isinstance(dst, int) else list(dst)
        order = [d for d in range(r) if d not in {s % r for s in srcs}]
        for s_, d_ in sorted(zip((s % r for s in srcs), (d % r for d in dsts)), key=lambda t: t[1]):
            order.insert(d_, s_)
        return L.compose(p, order)
    return L.guess_perm(tr.b.shape(tr.handles[id(src)]), tuple(out.shape))


#: aliasing ops that keep the tensor's layout (the result is in canonical layout when the source is)
_SAME_LAYOUT_NAMES = frozenset({"contiguous", "clone", "detach", "to", "float", "type", "double", "cpu", "requires_grad_",
                                "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
                                "roll", "clamp_min", "clamp", "clip"})


class _Tracer(TorchFunctionMode):
    def __init__(self, builder: GraphBuilder, names: list[str], param_names: Mapping[int, str]) -> None:
        super().__init__()
        self.b = builder
        self.handles: dict[int, int] = {}
        self.perms: dict[int, tuple[int, ...] | None] = {}  # id of a tracked tensor -> its layout (see _layout)
        self.out_perm: Any = _UNSET  # the layout a handler gives its output
        self.roots: dict[int, T] = {}  # id of a tensor derived from a learned parameter -> the parameter
        self.param_nodes: dict[int, int] = {}  # id of a parameter -> its 'param' node
        self.param_names = param_names
        self.seen_params: set[int] = set()  # ids of the parameters the forward touched
        self.param_shapes: dict[int, tuple[int, ...]] = {}  # id -> shape of every parameter of the module
        self.layer_uses: dict[int, int] = {}  # id of a layer's weight/bias parameter -> nodes that carry it
        self.keep: list[T] = []  # keep traced tensors alive so ids are not reused
        self.names = names

    def uses(self, *ts: Any) -> None:
        """Record that a new node carries these weight tensors (a layer called twice shares them)."""
        for t in ts:
            if isinstance(t, torch.nn.Parameter):
                self.layer_uses[id(t)] = self.layer_uses.get(id(t), 0) + 1

    def track(self, t: T, h: int, perm: Any = _UNSET) -> None:
        self.handles[id(t)] = h
        self.keep.append(t)
        if perm is _UNSET:
            perm = L.guess_perm(self.b.shape(h), tuple(t.shape))
        self.perms[id(t)] = perm

    def handle(self, x: Any) -> int | None:
        return self.handles.get(id(x)) if isinstance(x, T) else None

    def perm(self, x: Any) -> tuple[int, ...] | None:
        """Layout of tracked tensor ``x`` when known for its rank, else None."""
        p = self.perms.get(id(x)) if isinstance(x, T) else None
        return p if p is not None and len(p) == x.dim() else None

    def is_direct(self, x: Any) -> bool:
        """Whether ``x`` is in channel-first layout (its canonical shape is its shape without batch)."""
        p = self.perm(x)
        return p is not None and p == L.identity(len(p))

    def root(self, x: Any) -> T | None:
        """The learned parameter ``x`` is (or is a view/gather/expansion of), if any."""
        if not isinstance(x, T):
            return None
        if isinstance(x, torch.nn.Parameter):
            return x
        return self.roots.get(id(x))

    def operand(self, x: Any, name: str) -> int | None:
        """Handle of an activation, or of the ``param`` node of a learned tensor; None for constants."""
        h = self.handle(x)
        if h is not None:
            return h
        r = self.root(x)
        if r is None:
            return None
        h = self.param_nodes.get(id(r))
        if h is None:
            h = self.param_nodes[id(r)] = self.b.param(tuple(int(d) for d in r.shape), _param_shape(x),
                                                       name=self.param_names.get(id(r), name))
        return h

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> Any:
        kwargs = dict(kwargs or {})
        x0 = args[0] if args else None
        if (
            func in _SHAPE_PRESERVING
            and isinstance(x0, T)
            and x0.device.type == "meta"
            and id(x0) in self.handles
            and not (kwargs.get("inplace") is True or any(a is True for a in args[1:]))
        ):
            out = x0.new_empty(x0.shape)  # nothing to compute on meta; skips slow meta kernels
        else:
            out = func(*args, **kwargs)
        ins = _tensors(args, kwargs)
        for x in ins:
            if isinstance(x, torch.nn.Parameter):
                self.seen_params.add(id(x))
        tracked = [x for x in ins if id(x) in self.handles]
        if not tracked:
            roots = [r for r in map(self.root, ins) if r is not None]
            if roots:  # a view / gather / expansion of a learned tensor: remember where it comes from
                for o in _tensors((out,), None):
                    if o is not roots[0]:
                        self.roots[id(o)] = roots[0]
                        self.keep.append(o)
            return out
        flat_out = _tensors((out,), None)
        if not flat_out:
            return out  # size(), dim(), shape arithmetic
        name = self.names[-1] if self.names else ""
        handler = _HANDLERS.get(func)
        if handler is None:
            handler = _HANDLERS_BY_NAME.get(getattr(func, "__name__", ""))
        if handler is None:
            fname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
            h = self.b.unsupported(f"{fname}", [self.handles[id(tracked[0])]], _fl(flat_out[0]), name=name)
            for o in flat_out:
                self.track(o, h)
            return out
        self.out_perm = _UNSET
        result = handler(self, func, args, kwargs, out, name)
        if result is None:
            return out
        perm, self.out_perm = self.out_perm, _UNSET
        if handler is _alias and isinstance(out, T):
            perm = _alias_perm(self, func, args, kwargs, tracked[0], out)
        if isinstance(result, list):
            for o, h in zip(flat_out, result):
                self.track(o, h, perm)
        elif isinstance(out, T):
            self.track(out, result, perm)
        else:
            for o in flat_out:
                self.track(o, result, perm)
        return out


# -- handlers -----------------------------------------------------------------------------
Handler = Callable[[_Tracer, Any, Sequence[Any], dict[str, Any], Any, str], "int | list[int] | None"]


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], i: int, key: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(key, default)


def _alias(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int | None:
    x = next(a for a in _tensors(args, kwargs) if id(a) in tr.handles)
    return tr.handles[id(x)]


def _cf_out(out: T) -> tuple[int, ...]:
    return canon_shape(_shape(out))


def _layout_out(tr: _Tracer, x: T, out: T) -> tuple[int, ...]:
    """Output shape of a layout-keeping op (slice, matmul): through ``x``'s layout when known, else tokens."""
    p = tr.perm(x)
    if p is not None and out.dim() == x.dim():
        tr.out_perm = p
        return L.graph_shape(tuple(out.shape), p)
    tr.out_perm = None
    return _fl(out)


def _same_perm(tr: _Tracer, x: T) -> None:
    """The output of an elementwise / normalising op has its input's layout."""
    tr.out_perm = tr.perms.get(id(x))


def _conv(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    x, w = args[0], _arg(args, kwargs, 1, "weight")
    bias = _arg(args, kwargs, 2, "bias")
    nd = w.dim() - 2
    stride = _arg(args, kwargs, 3, "stride", 1)
    padding = _arg(args, kwargs, 4, "padding", 0)
    dilation = _arg(args, kwargs, 5, "dilation", 1)
    groups = int(_arg(args, kwargs, 6, "groups", 1))
    tr.uses(w, bias)
    k = tuple(int(v) for v in w.shape[2:])
    tup = lambda v: (int(v),) * nd if isinstance(v, int) else tuple(int(a) for a in v)
    d = tup(dilation)
    if isinstance(padding, str):  # 'same' / 'valid'
        if padding == "valid":
            pad = (0,) * (2 * nd)
        else:
            tot = [d[i] * (k[i] - 1) for i in range(nd)]
            pad = tuple(t // 2 for t in tot) + tuple(t - t // 2 for t in tot)
    else:
        p = tup(padding)
        pad = p + p
    return tr.b.add_node(
        "conv", [tr.handles[id(x)]], _cf_out(out), weight_shape=tuple(int(s) for s in w.shape), bias=bias is not None,
        kernel=k, stride=tup(stride), padding=pad, dilation=d, groups=groups, name=name,
    )


def _conv_transpose(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    x, w = args[0], _arg(args, kwargs, 1, "weight")
    bias = _arg(args, kwargs, 2, "bias")
    tr.uses(w, bias)
    nd = w.dim() - 2
    tup = lambda v: (int(v),) * nd if isinstance(v, int) else tuple(int(a) for a in v)
    p = tup(_arg(args, kwargs, 4, "padding", 0))
    return tr.b.add_node(
        "conv_transpose", [tr.handles[id(x)]], _cf_out(out), weight_shape=tuple(int(s) for s in w.shape),
        bias=bias is not None, kernel=tuple(int(v) for v in w.shape[2:]), stride=tup(_arg(args, kwargs, 3, "stride", 1)),
        padding=p + p, dilation=tup(_arg(args, kwargs, 7, "dilation", 1)), groups=int(_arg(args, kwargs, 6, "groups", 1)),
        name=name,
    )


def _linear_node(tr: _Tracer, x: T, w_shape: tuple[int, int], bias: bool, out: T, name: str) -> int:
    h = tr.handles[id(x)]
    c_out, c_in = w_shape
    p = tr.perm(x)
    if p is not None and out.dim() == x.dim():
        tr.out_perm, shape = p, L.graph_shape(tuple(out.shape), p)
    else:
        tr.out_perm, shape = None, tr.b.feature_shape(h, c_in, c_out, _numel(out))
    return tr.b.add_node("linear", [h], shape, weight_shape=(c_out, c_in), bias=bias, name=name)


def _matmul_node(tr: _Tracer, a: T, b: T, out: T, name: str) -> int:
    ha, hb = tr.operand(a, name), tr.operand(b, name)
    assert ha is not None and hb is not None
    inner = int(a.shape[-1]) if a.dim() else 1
    return tr.b.add_node("matmul", [ha, hb], _layout_out(tr, a, out), inner=inner, name=name)


def _linear(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    x, w = args[0], _arg(args, kwargs, 1, "weight")
    bias = _arg(args, kwargs, 2, "bias")
    if id(w) in tr.handles:  # linear of two activations: x @ w.T
        return _matmul_node(tr, x, w, out, name)
    tr.uses(w, bias)
    return _linear_node(tr, x, (int(w.shape[0]), int(w.shape[1])), bias is not None, out, name)


def _keep_or_tokens(tr: _Tracer, h: int, features: int, out: T) -> tuple[int, ...]:
    """A feature-axis op's output: the input's shape when its axis 0 is that feature axis, else tokens."""
    shp = tr.b.shape(h)
    if shp and shp[0] == features and math.prod(shp) == _numel(out):
        return shp
    return tokens(features, _numel(out))


def _bn(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    x = args[0]
    w, b = _arg(args, kwargs, 3, "weight"), _arg(args, kwargs, 4, "bias")
    tr.uses(w, b)
    h = tr.handles[id(x)]
    _same_perm(tr, x)
    c = int(x.shape[1]) if x.dim() > 1 else int(x.shape[0])
    shape = tr.b.shape(h) if tr.b.shape(h)[:1] == (c,) else tokens(c, _numel(out))
    return tr.b.add_node("bn", [h], shape, weight_shape=tuple(int(s) for s in w.shape) if w is not None else (),
                         bias=b is not None, name=name)


def _layernorm(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    x = args[0]
    normalized = tuple(int(d) for d in _arg(args, kwargs, 1, "normalized_shape"))
    w, b = _arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")
    tr.uses(w, b)
    h = tr.handles[id(x)]
    _same_perm(tr, x)
    return tr.b.add_node("layernorm", [h], _keep_or_tokens(tr, h, math.prod(normalized), out),
                         weight_shape=tuple(int(s) for s in w.shape) if w is not None else (), bias=b is not None, name=name)


def _groupnorm(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    x = args[0]
    groups = int(_arg(args, kwargs, 1, "num_groups"))
    w, b = _arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")
    tr.uses(w, b)
    h = tr.handles[id(x)]
    _same_perm(tr, x)
    return tr.b.add_node("groupnorm", [h], _keep_or_tokens(tr, h, int(x.shape[1]), out),
                         weight_shape=tuple(int(s) for s in w.shape) if w is not None else (), bias=b is not None,
                         groups=groups, name=name)


def _unary(op: str) -> Handler:
    def h(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
        hx = tr.handles[id(args[0])]
        _same_perm(tr, args[0])
        return tr.b.add_node(op, [hx], tr.b.shape(hx), name=name)

    return h


def _hardtanh(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    lo, hi = _arg(args, kwargs, 1, "min_val", -1.0), _arg(args, kwargs, 2, "max_val", 1.0)
    hx = tr.handles[id(args[0])]
    _same_perm(tr, args[0])
    if (lo, hi) == (0.0, 6.0):
        return tr.b.add_node("relu6", [hx], tr.b.shape(hx), name=name)
    return tr.b.unsupported("hardtanh", [hx], tr.b.shape(hx), name=name)


def _clamp(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    lo, hi = _arg(args, kwargs, 1, "min"), _arg(args, kwargs, 2, "max")
    x = tr.handles[id(args[0])]
    _same_perm(tr, args[0])
    if lo == 0 and hi == 6:
        return tr.b.add_node("relu6", [x], tr.b.shape(x), name=name)
    if lo == 0 and hi is None:
        return tr.b.add_node("relu", [x], tr.b.shape(x), name=name)
    if isinstance(lo, (int, float)) and 0 < lo <= 1e-4 and hi is None:
        return x  # an epsilon guard (F.normalize's clamp_min(eps)): plumbing
    return tr.b.unsupported("clamp", [x], tr.b.shape(x), name=name)


def _clamp_min(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    lo = _arg(args, kwargs, 1, "min")
    x = tr.handles[id(args[0])]
    _same_perm(tr, args[0])
    if lo == 0:
        return tr.b.add_node("relu", [x], tr.b.shape(x), name=name)
    if isinstance(lo, (int, float)) and 0 < lo <= 1e-4:
        return x
    return tr.b.unsupported("clamp_min", [x], tr.b.shape(x), name=name)


def _scalar(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _binary(op: str) -> Handler:
    def h(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
        if getattr(func, "__name__", "") in ("__rsub__", "__rtruediv__"):
            a, b = b, a
        ha, hb = tr.operand(a, name), tr.operand(b, name)
        acts = [t for t in (a, b) if tr.handle(t) is not None]
        ref = next((t for t in acts if tuple(t.shape) == tuple(out.shape)), acts[0])
        _same_perm(tr, ref)
        if ha is not None and hb is not None:
            return tr.b.elementwise(op, [ha, hb], name=name)
        x = ha if ha is not None else hb
        assert x is not None
        const = b if ha is not None else a
        same = _numel(out) == tr.b.numel(x) or _numel(out) == _numel(a if ha is not None else b)
        return tr.b.const_arith(op, x, _scalar(const), const_first=ha is None, same_size=same, name=name)

    return h


def _cat(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    xs = args[0] if args else kwargs["tensors"]
    dim = _arg(args, kwargs, 1, "dim", 0)
    hs = [tr.operand(x, name) for x in xs]
    if any(h is None for h in hs):
        live = [h for h in hs if h is not None]
        return tr.b.unsupported("cat with constants", live[:1], _fl(out), name=name)
    if len(hs) == 1:
        return hs[0]  # type: ignore[return-value]
    p = tr.perm(xs[0]) if tr.handle(xs[0]) is not None else None
    if p is not None and all(tr.handle(x) is not None and tr.perm(x) == p for x in xs) and p[dim % out.dim()] == 1:
        tr.out_perm = p  # along the channels of maps
        return tr.b.add_node("concat", hs, L.graph_shape(tuple(out.shape), p), name=name)  # type: ignore[arg-type]
    tr.out_perm = None
    return tr.b.add_node("concat", hs, _fl(out), name=name)  # type: ignore[arg-type]


def _pool(op: str) -> Handler:
    def h(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
        x = args[0]
        nd = x.dim() - 2
        tup = lambda v: (int(v),) * nd if isinstance(v, int) else tuple(int(a) for a in v)
        k = tup(_arg(args, kwargs, 1, "kernel_size"))
        s = _arg(args, kwargs, 2, "stride", None)
        s = k if s is None or (isinstance(s, (list, tuple)) and len(s) == 0) else tup(s)
        p = tup(_arg(args, kwargs, 3, "padding", 0))
        o = out[0] if isinstance(out, tuple) else out
        return tr.b.add_node(op, [tr.handles[id(x)]], _cf_out(o), kernel=k, stride=s, padding=p + p, dilation=(1,) * nd, name=name)

    return h


def _adaptive(op: str, global_op: str) -> Handler:
    def h(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
        x = tr.handles[id(args[0])]
        o = out[0] if isinstance(out, tuple) else out
        if all(d == 1 for d in o.shape[2:]):
            return tr.b.add_node(global_op, [x], (int(o.shape[1]),), name=name)
        return tr.b.unsupported(f"adaptive {op} to {tuple(o.shape[2:])}", [x], _cf_out(o), name=name)

    return h


def _reduce(global_op: str, feature_op: str, fname: str) -> Handler:
    """mean / amax / max(dim) / vector_norm: over positions (a global pool) or over the feature axis."""

    def h(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int | list[int]:
        x = args[0]
        hx = tr.handles[id(x)]
        o = out[0] if isinstance(out, tuple) else out
        dims = _arg(args, kwargs, 1, "dim")
        if fname == "vector_norm":
            dims = _arg(args, kwargs, 2, "dim")
        if isinstance(dims, T) or (fname == "max" and isinstance(_arg(args, kwargs, 1, "other"), T)):
            return tr.b.unsupported("elementwise maximum", [hx], tr.b.shape(hx), name=name)
        if dims is None:
            return tr.b.unsupported(f"{fname} over every axis", [hx], (1,), name=name)
        r = x.dim()
        axes = {d % r for d in ((dims,) if isinstance(dims, int) else tuple(dims))}
        res: int
        p = tr.perm(x)
        cf_axes = {p[a] for a in axes} if p is not None else set()
        keep = bool(_arg(args, kwargs, 2, "keepdim", False)) if fname != "vector_norm" else bool(_arg(args, kwargs, 3, "keepdim", False))
        if global_op and p is not None and r > 2 and cf_axes == set(range(2, r)):  # positions of a map
            res = tr.b.add_node(global_op, [hx], (int(x.shape[p.index(1)]),), name=name)
            tr.out_perm = L.identity(o.dim()) if keep or o.dim() == 2 else _UNSET
        elif global_op and r > 1 and 0 not in axes and (r - 1) not in axes and _numel(o) == int(x.shape[-1]):
            res = tr.b.add_node(global_op, [hx], (int(x.shape[-1]),), name=name)  # every token, features kept
            tr.out_perm = None
        elif len(axes) == 1 and ((p is not None and cf_axes == {1}) or axes == {r - 1}):  # the feature axis
            f = int(x.shape[next(iter(axes))])
            shp = tr.b.shape(hx)
            rest = shp[1:] if shp and shp[0] == f else (tr.b.numel(hx) // f,)
            res = tr.b.add_node(feature_op, [hx], canon_shape((1, *rest)) if len(rest) > 1 else (1, *rest), name=name)
            tr.out_perm = p if (p is not None and cf_axes == {1} and keep) else None
        else:
            res = tr.b.unsupported(f"{fname}(dim={sorted(axes)})", [hx], _fl(o), name=name)
        return [res] * len(_tensors((out,), None)) if isinstance(out, tuple) else res

    return h


def _pad(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    x = args[0]
    p = list(_arg(args, kwargs, 1, "pad"))
    mode = _arg(args, kwargs, 2, "mode", "constant")
    nd = x.dim() - 2
    # torch order: last dim first, (begin, end) pairs -> napbench (begin..., end...)
    pairs = [(p[2 * i], p[2 * i + 1]) for i in range(len(p) // 2)][::-1]
    pairs = [(0, 0)] * (nd - len(pairs)) + pairs
    pad = tuple(a for a, _ in pairs) + tuple(b for _, b in pairs)
    if not tr.is_direct(x):  # padding a token layout (window padding)
        tr.out_perm = None
        return tr.b.add_node("pad", [tr.handles[id(x)]], _fl(out), name=name) if _numel(out) != _numel(x) else tr.handles[id(x)]
    if mode != "constant":
        return tr.b.unsupported(f"pad(mode={mode})", [tr.handles[id(x)]], _cf_out(out), name=name)
    return tr.b.add_node("pad", [tr.handles[id(x)]], _cf_out(out), padding=pad, name=name)


def _getitem(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    x = args[0]
    if _numel(out) == _numel(x):
        return _alias(tr, func, args, kwargs, out, name)  # type: ignore[return-value]
    return tr.b.add_node("slice", [tr.handles[id(x)]], _layout_out(tr, x, out), name=name)


def _split(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> list[int]:
    x = args[0]
    hx = tr.handles[id(x)]
    outs = _tensors((out,), None)
    if len(outs) == 1 and _numel(outs[0]) == _numel(x):
        return [hx]
    return [tr.b.add_node("slice", [hx], _layout_out(tr, x, o), name=f"{name}[{i}]" if name else f"split[{i}]")
            for i, o in enumerate(outs)]


def _interpolate(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    return tr.b.add_node("upsample", [tr.handles[id(args[0])]], _cf_out(out), name=name)


def _matmul(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    a, b = args[0], args[1]
    ha, hb = tr.operand(a, name), tr.operand(b, name)
    if tr.handle(a) is not None and tr.handle(b) is None and tr.root(b) is None and b.dim() == 2:
        # x @ W with a constant W: a linear layer
        return _linear_node(tr, a, (int(b.shape[-1]), int(b.shape[-2])), False, out, name)
    if tr.handle(a) is not None and tr.root(b) is not None and b.dim() == 2 and tr.root(b) is b:
        return _linear_node(tr, a, (int(b.shape[-1]), int(b.shape[-2])), False, out, name)  # x @ nn.Parameter
    if ha is not None and hb is not None:
        return _matmul_node(tr, a, b, out, name)
    h = ha if ha is not None else hb
    return tr.b.unsupported("matmul with a constant operand", [h], _fl(out), name=name)  # type: ignore[list-item]


def _softmax(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    x = args[0]
    hx = tr.handles[id(x)]
    dim = _arg(args, kwargs, 1, "dim")
    r = x.dim()
    d = (r - 1) if dim is None else dim % r
    p = tr.perm(x)
    if (p is not None and p[d] == 1) or d == r - 1:
        _same_perm(tr, x)
        return tr.b.add_node("softmax", [hx], _keep_or_tokens(tr, hx, int(x.shape[d]), out), name=name)
    tr.out_perm = None
    return tr.b.add_node("softmax", [hx], tokens(int(x.shape[d]), _numel(out)), name=name)


def _normalize(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    """``F.normalize``: ``x / max(||x||_p, eps)`` over ``dim`` -> ``reduce_l2`` then ``div`` (as exporters write it)."""
    x = args[0]
    p_ = _arg(args, kwargs, 1, "p", 2.0)
    dim = _arg(args, kwargs, 2, "dim", 1)
    hx = tr.handles[id(x)]
    r = x.dim()
    d = dim % r
    perm = tr.perm(x)
    if p_ != 2 or not ((perm is not None and perm[d] == 1) or d == r - 1):
        return tr.b.unsupported(f"normalize(p={p_}, dim={dim})", [hx], tr.b.shape(hx), name=name)
    f = int(x.shape[d])
    shp = tr.b.shape(hx)
    rest = shp[1:] if shp and shp[0] == f else (tr.b.numel(hx) // f,)
    n = tr.b.add_node("reduce_l2", [hx], canon_shape((1, *rest)) if len(rest) > 1 else (1, *rest), name=f"{name}/norm")
    _same_perm(tr, x)
    return tr.b.elementwise("div", [hx, n], name=name)


def _einsum(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    """Two-operand ``torch.einsum``: of two activations a ``matmul`` (``inner`` = the contracted
    length), of an activation and a weight a ``linear``."""
    eq, ops = args[0], (list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:]))
    hs = [tr.handle(o) for o in ops]
    live = [h for h in hs if h is not None]
    parts = L.einsum_parts(eq, [tuple(o.shape) for o in ops]) if len(ops) == 2 else None
    if parts is None:
        return tr.b.unsupported(f"einsum({eq!r})", live[:1], _fl(out), name=name)
    inner, _ = parts
    tr.out_perm = None
    if all(h is not None for h in hs):
        return tr.b.add_node("matmul", hs, _fl(out), inner=inner, name=name)  # type: ignore[arg-type]
    x, w = (ops[0], ops[1]) if hs[0] is not None else (ops[1], ops[0])
    if isinstance(w, torch.nn.Parameter):
        tr.uses(w)
        c_out = _numel(w) // inner
        hx = tr.handles[id(x)]
        return tr.b.add_node("linear", [hx], tr.b.feature_shape(hx, inner, c_out, _numel(out)), weight_shape=(c_out, inner),
                             name=name)
    ho = tr.operand(w, name)
    if ho is not None:  # a view of a learned tensor (a param node)
        return tr.b.add_node("matmul", [tr.handles[id(x)], ho] if hs[0] is not None else [ho, tr.handles[id(x)]], _fl(out),
                             inner=inner, name=name)
    return tr.b.unsupported(f"einsum({eq!r}) with a constant operand", live[:1], _fl(out), name=name)


def _stack(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    """``torch.stack``: a concatenation along a new axis (tokens)."""
    xs = args[0] if args else kwargs["tensors"]
    hs = [tr.operand(x, name) for x in xs]
    if any(h is None for h in hs):
        return tr.b.unsupported("stack with constants", [h for h in hs if h is not None][:1], _fl(out), name=name)
    tr.out_perm = None
    return hs[0] if len(hs) == 1 else tr.b.add_node("concat", hs, _fl(out), name=name)  # type: ignore[arg-type,return-value]


def _masked_fill(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    """``x.masked_fill(mask, value)`` with a constant mask (attention masking): plumbing, like adding a constant mask."""
    x, mask = args[0], _arg(args, kwargs, 1, "mask")
    hx = tr.handles[id(x)]
    if tr.handle(mask) is not None:
        return tr.b.unsupported("masked_fill with a computed mask", [hx], tr.b.shape(hx), name=name)
    _same_perm(tr, x)
    return hx


def _attention(tr: _Tracer, q: T, k: T, v: T, out: T, mask: Any, name: str) -> int:
    """``softmax(q @ k^T [+ mask]) @ v`` as primitive nodes: matmul (inner d), [add], softmax, matmul (inner N_k)."""
    hq, hk, hv = tr.operand(q, name), tr.operand(k, name), tr.operand(v, name)
    assert hq is not None and hk is not None and hv is not None
    n_k = int(k.shape[-2])
    scores = math.prod(int(d) for d in q.shape[:-1]) * n_k
    s = tr.b.add_node("matmul", [hq, hk], tokens(n_k, scores), inner=int(q.shape[-1]), name=f"{name}/qk")
    hm = tr.operand(mask, name) if isinstance(mask, T) and mask.dtype != torch.bool else None
    if hm is not None:
        s = tr.b.elementwise("add", [s, hm], name=f"{name}/mask")
    p = tr.b.add_node("softmax", [s], tr.b.shape(s), name=f"{name}/softmax")
    return tr.b.add_node("matmul", [p, hv], _fl(out), inner=n_k, name=f"{name}/av")


def _sdpa(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> int:
    q, k, v = args[0], _arg(args, kwargs, 1, "key"), _arg(args, kwargs, 2, "value")
    tr.out_perm = None
    return _attention(tr, q, k, v, out, _arg(args, kwargs, 3, "attn_mask"), name)


def _mha(tr: _Tracer, func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any, name: str) -> list[int]:
    """``F.multi_head_attention_forward`` (``nn.MultiheadAttention``): projections, attention, output projection."""
    q, k, v = args[0], args[1], args[2]
    e, heads = int(_arg(args, kwargs, 3, "embed_dim_to_check")), int(_arg(args, kwargs, 4, "num_heads"))
    w_in, b_in = _arg(args, kwargs, 5, "in_proj_weight"), _arg(args, kwargs, 6, "in_proj_bias")
    w_out, b_out = _arg(args, kwargs, 11, "out_proj_weight"), _arg(args, kwargs, 12, "out_proj_bias")
    if kwargs.get("use_separate_proj_weight") or w_in is None or _arg(args, kwargs, 7, "bias_k") is not None \
            or _arg(args, kwargs, 9, "add_zero_attn"):
        return [tr.b.unsupported("multi_head_attention_forward (separate projections, bias_k or zero attention)",
                                 [tr.handles[id(q)]], _fl(o), name=name) for o in _tensors((out,), None)]
    d = e // heads
    tr.out_perm = None
    n_q, n_k = _numel(q) // e, _numel(k) // e

    def proj(x: T, c_out: int, nm: str) -> int:
        hx = tr.handles[id(x)]
        return tr.b.add_node("linear", [hx], tr.b.feature_shape(hx, e, c_out, _numel(x) // e * c_out),
                             weight_shape=(c_out, e), bias=b_in is not None, name=f"{name}/{nm}")

    if q is k and k is v:  # packed projection, then one slice each (as a hand-written fused qkv)
        qkv = proj(q, 3 * e, "in_proj")
        hs = [tr.b.add_node("slice", [qkv], tokens(e, e * n_q), name=f"{name}/{t}") for t in "qkv"]  # as torch slices it
    else:
        hs = [proj(x, e, f"{t}_proj") for x, t in ((q, "q"), (k, "k"), (v, "v"))]
    s = tr.b.add_node("matmul", [hs[0], hs[1]], tokens(n_k, n_k * heads * n_q),
                      inner=d, name=f"{name}/qk")
    mask = _arg(args, kwargs, 14, "attn_mask")
    hm = tr.operand(mask, name) if isinstance(mask, T) and mask.dtype != torch.bool else None
    if hm is not None:
        s = tr.b.elementwise("add", [s, hm], name=f"{name}/mask")
    p = tr.b.add_node("softmax", [s], tr.b.shape(s), name=f"{name}/softmax")
    a = tr.b.add_node("matmul", [p, hs[2]], tokens(d, d * heads * n_q), inner=n_k, name=f"{name}/av")
    o = tr.b.add_node("linear", [a], tokens(int(w_out.shape[0]), n_q * int(w_out.shape[0])),
                      weight_shape=(int(w_out.shape[0]), int(w_out.shape[1])), bias=b_out is not None, name=f"{name}/out_proj")
    res = [o]
    outs = _tensors((out,), None)
    if len(outs) > 1:  # averaged attention weights
        res.append(p)
    return res[: len(outs)]


_HANDLERS: dict[Any, Handler] = {}
_HANDLERS_BY_NAME: dict[str, Handler] = {}


def _reg(funcs: Sequence[Any], h: Handler) -> None:
    for f in funcs:
        if f is not None:
            _HANDLERS[f] = h


_reg([F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d], _conv)
_reg([F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d], _conv_transpose)
_reg([F.linear], _linear)
_reg([F.batch_norm], _bn)
_reg([F.layer_norm], _layernorm)
_reg([F.group_norm], _groupnorm)
_reg([F.relu, torch.relu, T.relu, torch.relu_, T.relu_], _unary("relu"))
_reg([F.relu6], _unary("relu6"))
_reg([F.hardtanh, F.hardtanh_], _hardtanh)
_reg([torch.clamp, T.clamp, torch.clip, T.clip], _clamp)
_reg([torch.clamp_min, T.clamp_min], _clamp_min)
_reg([F.leaky_relu, F.leaky_relu_], _unary("leaky_relu"))
_reg([F.elu, F.elu_], _unary("elu"))
_reg([F.gelu], _unary("gelu"))
_reg([F.silu], _unary("silu"))
_reg([torch.sigmoid, T.sigmoid, F.sigmoid, T.sigmoid_], _unary("sigmoid"))
_reg([F.hardsigmoid], _unary("hardsigmoid"))
_reg([F.hardswish], _unary("hardswish"))
_reg([torch.tanh, T.tanh, F.tanh, T.tanh_], _unary("tanh"))
_reg([F.softmax, torch.softmax, T.softmax], _softmax)
_reg([torch.add, T.add, T.__add__, T.__radd__, T.__iadd__, T.add_, operator.add], _binary("add"))
_reg([torch.sub, T.sub, T.__sub__, T.__rsub__, T.__isub__, T.sub_], _binary("sub"))
_reg([torch.mul, T.mul, T.__mul__, T.__rmul__, T.__imul__, T.mul_], _binary("mul"))
_reg([torch.div, T.div, T.__truediv__, T.__rtruediv__, T.__itruediv__, T.div_], _binary("div"))
_reg([torch.cat, torch.concat], _cat)
_reg([F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, torch.avg_pool1d], _pool("avgpool"))
_reg([F.max_pool1d, F.max_pool2d, F.max_pool3d, torch.max_pool2d, F.max_pool2d_with_indices], _pool("maxpool"))
_reg([F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d], _adaptive("avgpool", "global_avgpool"))
_reg([F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d], _adaptive("maxpool", "global_maxpool"))
_reg([torch.mean, T.mean], _reduce("global_avgpool", "reduce_mean", "mean"))
_reg([torch.amax, T.amax, torch.max, T.max], _reduce("global_maxpool", "reduce_max", "max"))
_reg([torch.linalg.vector_norm, torch.norm, T.norm], _reduce("", "reduce_l2", "vector_norm"))
_reg([F.pad], _pad)
_reg([T.__getitem__, T.narrow, torch.narrow, T.select, torch.select], _getitem)
_reg([torch.split, T.split, torch.chunk, T.chunk, torch.unbind, T.unbind, torch.tensor_split, T.tensor_split], _split)
_reg([F.interpolate, F.upsample], _interpolate)
_reg([torch.matmul, T.matmul, T.__matmul__, torch.mm, torch.bmm, T.bmm, T.mm], _matmul)
_reg([F.scaled_dot_product_attention], _sdpa)
_reg([F.normalize], _normalize)
_reg([torch.einsum], _einsum)
_reg([torch.stack], _stack)
_reg([T.masked_fill, torch.masked_fill, T.masked_fill_], _masked_fill)
_reg([F.multi_head_attention_forward], _mha)
_reg(
    [
        torch.flatten, T.flatten, T.view, T.reshape, torch.reshape, T.squeeze, torch.squeeze, T.unsqueeze,
        torch.unsqueeze, T.contiguous, T.clone, torch.clone, T.detach, T.to, T.float, T.type, F.dropout,
        F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout, T.view_as, T.reshape_as,
        T.expand_as, T.expand, T.requires_grad_, T.cpu, T.double, T.transpose, torch.transpose, T.permute,
        torch.permute, torch.roll, T.roll, T.unflatten, torch.unflatten, T.movedim, torch.movedim, T.swapaxes,
        torch.swapaxes, T.t, torch.t, T.repeat,
    ],
    _alias,
)
_HANDLERS_BY_NAME.update({"__get__": _alias})

#: ops whose output has the input's shape (on meta they are not run at all)
_SHAPE_PRESERVING = frozenset(
    [F.relu, torch.relu, T.relu, F.relu6, F.hardtanh, F.leaky_relu, F.elu, F.gelu, F.silu, torch.sigmoid, T.sigmoid,
     F.sigmoid, F.hardsigmoid, F.hardswish, torch.tanh, T.tanh, F.tanh, F.batch_norm, F.layer_norm, F.group_norm]
)


def _frontend_error(model: str, exc: BaseException) -> ConversionError:
    return ConversionError(f"torch trace of {model} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; expected a module whose forward runs on a tensor of the given input shape")


#: inputs with more elements than this are refused (on the meta device nothing is allocated, but
#: such a shape is a typo: 2**34 float32 elements are 64 GiB per sample)
MAX_INPUT_ELEMENTS = 1 << 34
#: when the meta-device trace fails, the module is run for real only for inputs up to this size
_MAX_REAL_ELEMENTS = 1 << 26


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in input_shape)
        ok = all(float(d) == int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ConversionError(f"input shape {input_shape!r} is not a sequence of integers; expected (C, H, W) or (C,)") from None
    if not shape or not ok or any(d < 1 for d in shape):
        raise ConversionError(f"input shape {tuple(input_shape)} has a non-positive or non-integer dimension; expected positive sizes such as (3, 224, 224)")
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise ConversionError(
            f"input shape {shape} has {math.prod(shape):,} elements per sample; expected at most {MAX_INPUT_ELEMENTS:,} "
            "(a shape such as (3, 224, 224))"
        )
    return shape


def _meta_state(module: torch.nn.Module) -> dict[str, T]:
    """Shape-only (meta) stand-ins for every parameter and buffer: nothing is allocated or copied."""
    state: dict[str, T] = {}
    for n, p in module.named_parameters():
        state[n] = torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device="meta"), requires_grad=p.requires_grad)
    for n, b in module.named_buffers():
        state[n] = torch.empty(b.shape, dtype=b.dtype, device="meta")
    return state


def _trace(module: torch.nn.Module, shape: tuple[int, ...], *, meta: bool, allow_unknown: bool) -> tuple[GraphBuilder, _Tracer, Any]:
    from torch.func import functional_call

    p = next(iter(module.parameters()), None)
    if p is None:
        p = next(iter(module.buffers()), None)
    device = torch.device("meta") if meta else (p.device if p is not None else torch.device("cpu"))
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    state = _meta_state(module) if meta else None
    if meta:
        param_names = {id(t): n for n, t in state.items() if isinstance(t, torch.nn.Parameter)}  # type: ignore[union-attr]
    else:
        param_names = {id(t): n for n, t in module.named_parameters()}
    b = GraphBuilder(shape, frontend="torch", allow_unknown=allow_unknown)
    names_of = {id(m): n for n, m in module.named_modules()}
    stack: list[str] = []

    def pre(mod: torch.nn.Module, _args: Any) -> None:
        stack.append(names_of.get(id(mod), type(mod).__name__))

    def post(mod: torch.nn.Module, _args: Any, _out: Any) -> None:
        if stack:
            stack.pop()

    h1 = torch.nn.modules.module.register_module_forward_pre_hook(pre)
    h2 = torch.nn.modules.module.register_module_forward_hook(post)
    tracer = _Tracer(b, stack, param_names)
    params = [t for t in state.values() if isinstance(t, torch.nn.Parameter)] if meta else list(module.parameters())  # type: ignore[union-attr]
    tracer.param_shapes = {id(t): tuple(t.shape) for t in params}
    x = torch.zeros((1, *shape), device=device, dtype=dtype)
    tracer.track(x, b.input, L.identity(x.dim()))
    try:
        with torch.no_grad(), tracer:
            out = functional_call(module, state, (x,)) if meta else module(x)
    finally:
        h1.remove()
        h2.remove()
    return b, tracer, out


def from_torch(
    module: torch.nn.Module,
    input_shape: Sequence[int],
    *,
    meta: Mapping[str, Any] | None = None,
    allow_unknown: bool = False,
) -> CompGraph:
    """Trace ``module`` on one input of ``input_shape`` (channel-first, no batch) into a CompGraph.

    The module runs in eval mode under ``torch.no_grad`` on the ``meta`` device: its parameters
    and buffers are swapped for shape-only stand-ins (``torch.func.functional_call``), so
    nothing is computed or allocated, whatever the input size. A forward that needs real
    values (it reads a buffer's contents, or mixes in CPU tensors) is run for real on the
    parameters' device instead, for inputs of up to ``2**26`` elements. Training flags are
    restored afterwards.

    Raises:
        ConversionError: not a module, a non-positive or absurd input shape (more than
            :data:`MAX_INPUT_ELEMENTS` elements), or a forward that fails on that shape.
        UnsupportedOpError: an op outside the vocabulary (unless ``allow_unknown``).
    """
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(f"from_torch expected a torch.nn.Module, got {type(module).__name__}")
    shape = _check_input_shape(input_shape)
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        try:
            b, tracer, out = _trace(module, shape, meta=True, allow_unknown=allow_unknown)
        except NapbenchError:
            raise
        except Exception as exc:  # the forward needs real values: run it for real if the input is small
            if math.prod(shape) > _MAX_REAL_ELEMENTS:
                raise _frontend_error(type(module).__name__, exc) from exc
            try:
                b, tracer, out = _trace(module, shape, meta=False, allow_unknown=allow_unknown)
            except NapbenchError:
                raise
            except Exception as exc2:  # the user's forward may raise anything; report it in one line
                raise _frontend_error(type(module).__name__, exc2) from exc2
    finally:
        for m, t in modes.items():
            m.training = t
    outs = [tracer.handles.get(id(o)) for o in tree_flatten(out)[0] if isinstance(o, T)]
    outs = [o for o in outs if o is not None]
    if not outs:
        raise ConversionError(f"torch module {type(module).__name__} returned no tensor computed from its input")
    info: dict[str, Any] = {"frontend": "torch", "input_shape": list(shape), "name": type(module).__name__}
    unused = sum(math.prod(shp) for i, shp in tracer.param_shapes.items() if i not in tracer.seen_params)
    if unused:  # parameters the forward never touched (an unused head...): not in the graph, reported
        info["unused_params"] = unused
    shared = sum(math.prod(tracer.param_shapes.get(i, ())) * (n - 1) for i, n in tracer.layer_uses.items() if n > 1)
    if shared:  # a layer called more than once: each call is a node with the weights, counted once by torch
        info["shared_params"] = shared
    info.update(meta or {})
    return b.build(outs, meta=info)


__all__ = ["MAX_INPUT_ELEMENTS", "UnsupportedOpError", "from_torch"]
