"""One handler per ONNX op type: each maps a node onto vocabulary nodes or plumbing (``HANDLERS``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import onnx

from napbench.conversion._layout import einsum_parts
from napbench.conversion.builder import canon_shape, same_padding, tokens
from napbench.conversion.onnx._common import _PLUMBING, _attrs, _cg, _channels_last_perm, _identity, _tokens_of
from napbench.conversion.onnx._consts import _axes
from napbench.conversion.onnx._converter import _Converter
from napbench.errors import ConversionError

Shape = tuple[int, ...]
Perm = tuple[int, ...]


# -- handlers ----------------------------------------------------------------------------------
Handler = Callable[[_Converter, onnx.NodeProto], None]


def _x(c: _Converter, node: onnx.NodeProto, i: int = 0) -> tuple[int, Perm | None]:
    return c.act[node.input[i]]


def _plumbing(c: _Converter, node: onnx.NodeProto) -> None:
    src = node.input[0]
    if src not in c.act:  # e.g. Reshape(const, act-derived shape): not expected
        c._unknown(node, node.op_type)
        return
    h, p = c.act[src]
    out = node.output[0]
    s = c.shapes.get(out)
    if node.op_type == "Transpose" and p is not None:
        t = _attrs(node).get("perm") or list(range(len(p)))[::-1]
        perm: Perm | None = tuple(p[k] for k in t)
    elif node.op_type in ("Identity", "Dropout", "Cast", "CastLike"):
        perm = p
    else:
        perm = c.guess_perm(h, s) if s is not None else None
    if src in c.pending_repeat or (node.op_type in ("Expand",) and s is not None and math.prod(s) > math.prod(c.shape(src))):
        # an Unsqueeze/Tile chain of up-sampling; resolved at the Reshape that restores the rank
        if node.op_type == "Reshape" and s is not None and perm is None:
            cands = [_channels_last_perm(len(s)), _identity(len(s))] if c.channels_last else [_identity(len(s)), _channels_last_perm(len(s))]
            hshape = c.b.shape(h)
            for q in cands:
                new = _cg(s, q)
                if len(new) == len(hshape) > 1 and new[0] == hshape[0] and all(a >= b for a, b in zip(new[1:], hshape[1:])):
                    h2 = c.emit("upsample", node, [h], q, new)
                    c.upsample_from_repeat.add(h2)
                    return
        c.pending_repeat.add(out)
    c._bind(out, h, perm)
    for extra in node.output[1:]:
        if extra:
            c._bind(extra, h, perm)


def _tile(c: _Converter, node: onnx.NodeProto) -> None:
    h, _ = _x(c, node)
    c.pending_repeat.add(node.output[0])
    c._bind(node.output[0], h, None)


def _unary(op: str) -> Handler:
    def handler(c: _Converter, node: onnx.NodeProto) -> None:
        h, p = _x(c, node)
        c.emit(op, node, [h], p, c.b.shape(h))

    return handler


def _clip(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    a = _attrs(node)
    lo: float | None = a.get("min")
    hi: float | None = a.get("max")
    for k, idx in (("lo", 1), ("hi", 2)):
        if len(node.input) > idx and node.input[idx]:
            v = c._value(node.input[idx]) if node.input[idx] in c.const_names else None
            if v is None:
                c._unknown(node, "Clip with a non-constant bound")
                return
            if k == "lo":
                lo = float(v.reshape(-1)[0])
            else:
                hi = float(v.reshape(-1)[0])
    big = 1e30
    if lo == 0 and hi is not None and abs(hi - 6) < 1e-6:
        c.emit("relu6", node, [h], p, c.b.shape(h))
    elif lo == 0 and (hi is None or hi >= big):
        c.emit("relu", node, [h], p, c.b.shape(h))
    elif lo is not None and 0 < lo <= 1e-4 and (hi is None or hi >= big):
        c._bind(node.output[0], h, p)  # an epsilon guard (F.normalize's clamp_min(eps)): plumbing, as in torch
    else:
        c._unknown(node, f"Clip({lo}, {hi})")


def _is_const(c: _Converter, name: str) -> bool:
    return name in c.const_names


def _binary(op: str) -> Handler:
    def handler(c: _Converter, node: onnx.NodeProto) -> None:
        ins = [i for i in node.input if i]
        acts = [i for i in ins if i in c.act]
        consts = [i for i in ins if _is_const(c, i)]
        out = node.output[0]
        if len(acts) >= 2:
            hs = [c.act[i][0] for i in acts]
            out_s = c.shape(out)
            ref = next((i for i in acts if c.shape(i) == out_s), acts[0])
            pr = c.act[ref][1]
            if op == "mul" and len(acts) == 2:
                for a, g in ((acts[0], acts[1]), (acts[1], acts[0])):
                    ha, hg = c.act[a][0], c.act[g][0]
                    gn = c.b.nodes[hg]
                    if gn.op == "sigmoid" and gn.inputs == (ha,) and c.uses(hg) == 1:
                        c.b.nodes[hg] = replace(gn, op="silu")
                        c._bind(out, hg, c.act[g][1])
                        return
            if op in ("sub", "div") and len(acts) != 2:
                c._unknown(node, node.op_type)
                return
            if len(acts) == 2 and acts[0] == acts[1] and op == "mul":
                hs = hs[:1] * 2
            c.emit(op, node, hs, pr, c.b.broadcast(hs, name=node.name))
            return
        x = acts[0]
        h, p = c.act[x]
        k = consts[0] if consts else None
        v = c._value(k) if k is not None else None
        x_first = node.input[0] == x
        same = math.prod(c.shape(out)) == math.prod(c.shape(x))
        scalar = float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None
        if op == "mul" and k is not None and _norm_affine(c, h, out, p, k, x):
            return
        if op == "add" and k is not None:
            src = c.b.nodes[h]
            if src.op in _BIASABLE and not src.bias and c.uses(h) == 1 and _bias_like(c, src, k, x):
                c.b.nodes[h] = replace(src, bias=True)
                c._bind(out, h, p)
                return
            if h in c.chan_scale and c.uses(h) == 1 and c.per_channel(k, x):
                data = c.chan_scale.pop(h)  # x * a + b with per-channel a, b: an inference BatchNorm
                ch = c.b.shape(h)[0]
                c.b.nodes[h] = replace(src, op="bn", inputs=(data,), input_shapes=(c.b.shape(data),), weight_shape=(ch,),
                                       bias=True)
                c._bind(out, h, p)
                return
        hp = c.param(k) if k is not None else None
        if hp is not None:  # a learned tensor (layer scale, position embedding, attention bias...)
            hs = [h, hp] if x_first else [hp, h]
            hm = c.emit(op, node, hs, p, c.b.broadcast(hs, name=node.name))
            if op == "mul" and c.per_channel(k, x):  # type: ignore[arg-type]
                c.chan_scale[hm] = h
            return
        if op == "mul" and k is not None and scalar is None and c.per_channel(k, x):
            hs = c.emit("scale", node, [h], p, c.b.shape(h))
            c.chan_scale[hs] = h
            return
        if op in ("sub", "div") and not x_first and op == "sub":
            c._bind(out, h, p)  # c - x: a sign flip and a shift, plumbing as x - c
            return
        if not same and op in ("add", "sub"):
            c._unknown(node, f"broadcasting {node.op_type} with a constant")
            return
        res = c.b.const_arith(op, h, scalar, const_first=not x_first, same_size=same, name=node.name or out)
        c._bind(out, res, p)

    return handler


_BIASABLE = frozenset({"conv", "linear", "conv_transpose", "groupnorm", "layernorm"})


def _bias_like(c: _Converter, src: Any, k: str, x: str) -> bool:
    """Whether constant ``k`` added to ``x`` (the output of ``src``) is ``src``'s bias."""
    cs, xs = c.shape(k), c.shape(x)
    if src.op != "linear":
        # one output channel: a one-element tensor (not a scalar) is its bias (tf2onnx's BiasAdd)
        return c.per_channel(k, x) or (bool(src.weight_shape) and src.weight_shape[0] == 1 and len(cs) >= 1
                                       and math.prod(cs) == 1 and src.op in ("conv", "conv_transpose"))
    # a linear's bias runs along the axis MatMul wrote: the last one, or the last ones when the result was
    # reshaped into heads first (tf2onnx's EinsumDense: a (heads, head_size) bias on (..., heads, head_size))
    n = src.weight_shape[0]
    if math.prod(cs) != n or len(cs) > len(xs):
        return False
    trail = tuple(d for d in cs)
    while len(trail) > 1 and trail[0] == 1:
        trail = trail[1:]
    return (not cs or cs[-1] == n) and xs[-1] == n or len(trail) > 1 and tuple(xs[len(xs) - len(trail):]) == trail


def _norm_affine(c: _Converter, h: int, out: str, p: Perm | None, k: str, x: str) -> bool:
    """A per-channel Mul right after a scale-free group/layer norm is that norm's scale."""
    n = c.b.nodes[h]
    if n.op not in ("groupnorm", "layernorm") or n.weight_shape or n.bias or c.uses(h) != 1 or not c.per_channel(k, x):
        return False
    c.b.nodes[h] = replace(n, weight_shape=(c.b.channels(h),))
    c._bind(out, h, p)
    return True


def _instance_norm(c: _Converter, node: onnx.NodeProto) -> None:
    """torch exports GroupNorm as InstanceNormalization over a (N, groups, -1) view, then Mul/Add."""
    h, p = _x(c, node)
    xs = c.shape(node.input[0])
    ch = c.b.channels(h)
    if p is None and len(xs) == 3 and ch % xs[1] == 0 and math.prod(xs) == math.prod(c.b.shape(h)) and xs[1] != ch:
        c.emit("groupnorm", node, [h], None, c.b.shape(h), groups=int(xs[1]))
        return
    c._unknown(node, "InstanceNormalization")


def _spatial_attrs(c: _Converter, node: onnx.NodeProto, x: str, kernel: Shape) -> dict[str, Any]:
    a = _attrs(node)
    nd = len(kernel)
    strides = tuple(a.get("strides", (1,) * nd))
    dil = tuple(a.get("dilations", (1,) * nd))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pad = same_padding(c.shape(x)[2:], kernel, strides, dil, upper=auto == "SAME_UPPER")
    elif auto == "VALID":
        pad = (0,) * (2 * nd)
    else:
        pad = tuple(a.get("pads", (0,) * (2 * nd)))
    return {"kernel": tuple(int(k) for k in kernel), "stride": tuple(int(s) for s in strides), "padding": tuple(int(p) for p in pad),
            "dilation": tuple(int(d) for d in dil)}


def _conv(c: _Converter, node: onnx.NodeProto) -> None:
    h, _ = _x(c, node)
    w = node.input[1]
    if w not in c.const_names:
        c._unknown(node, "Conv with a non-constant weight")
        return
    ws = c.shape(w)
    groups = int(_attrs(node).get("group", 1))
    bias = len(node.input) > 2 and bool(node.input[2])
    sp = _spatial_attrs(c, node, node.input[0], ws[2:])
    op = "conv" if node.op_type == "Conv" else "conv_transpose"
    xs = c.shape(node.input[0])
    c_in = ws[1] * groups if op == "conv" else ws[0]
    if len(xs) < 2 or len(ws) != len(xs) or xs[1] != c_in:
        raise ConversionError(
            f"{c.label}: {node.op_type} {node.name or node.output[0]!r} has weight {tuple(ws)} (groups={groups}), which reads "
            f"{c_in} channels, but its input {node.input[0]!r} has shape {tuple(xs)}; expected the input's channel axis to match the weight"
        )
    out = node.output[0]
    c.emit(op, node, [h], _identity(len(c.shape(out))), _cg(c.shape(out), None), weight_shape=ws, bias=bias, groups=groups, **sp)


def _pool(op: str) -> Handler:
    def handler(c: _Converter, node: onnx.NodeProto) -> None:
        h, _ = _x(c, node)
        a = _attrs(node)
        kernel = tuple(int(k) for k in a["kernel_shape"])
        sp = _spatial_attrs(c, node, node.input[0], kernel)
        out = node.output[0]
        in_sp = c.shape(node.input[0])[2:]
        oshape = c.shape(out)
        if tuple(in_sp) == kernel and not any(sp["padding"]) and all(d == 1 for d in oshape[2:]):
            # a window over the whole map: how exporters write adaptive pooling to 1x1
            c.emit("global_" + op, node, [h], _identity(len(oshape)), _cg(oshape, None))
            return
        sp["dilation"] = (1,) * len(kernel)
        c.emit(op, node, [h], _identity(len(oshape)), _cg(oshape, None), **sp)

    return handler


def _global_pool(op: str) -> Handler:
    def handler(c: _Converter, node: onnx.NodeProto) -> None:
        h, _ = _x(c, node)
        out = node.output[0]
        c.emit(op, node, [h], _identity(len(c.shape(out))), (c.b.channels(h),))

    return handler


def _reduce(global_op: str, feature_op: str) -> Handler:
    """Reduce over the positions of a map or of tokens (a global pool) or over the feature axis."""

    def handler(c: _Converter, node: onnx.NodeProto) -> None:
        h, p = _x(c, node)
        a = _attrs(node)
        xs = c.shape(node.input[0])
        axes = _axes(a, [None] + [c._value(i) if i else None for i in node.input[1:]], 1)
        r = len(xs)
        if axes is None:
            axes = [] if a.get("noop_with_empty_axes", 0) else list(range(r))
        axes_n = sorted({int(v) % r for v in axes})
        keep = bool(a.get("keepdims", 1))
        known = p is not None and len(p) == r
        cf_axes = {p[i] for i in axes_n} if known else set()  # type: ignore[index]
        if global_op and known and r >= 3 and cf_axes == set(range(2, r)):
            if keep:
                perm: Perm | None = p
            else:
                rest = [p[i] for i in range(r) if i not in axes_n]  # type: ignore[index]
                order = sorted(rest)
                perm = tuple(order.index(v) for v in rest)
            c.emit(global_op, node, [h], perm, (c.b.channels(h),))
            return
        numel_out = math.prod(c.shape(node.output[0]))
        if global_op and r > 1 and (r - 1) not in axes_n and 0 not in axes_n and numel_out == xs[-1]:
            c.emit(global_op, node, [h], None, (int(xs[-1]),))  # every token, features kept
            return
        if feature_op and len(axes_n) == 1 and ((known and cf_axes == {1}) or axes_n == [r - 1]):
            f = int(xs[axes_n[0]])
            shp = c.b.shape(h)
            rest = shp[1:] if shp and shp[0] == f else (c.b.numel(h) // f,)
            c.emit(feature_op, node, [h], p if (known and cf_axes == {1} and keep) else None,
                   canon_shape((1, *rest)) if len(rest) > 1 else (1, *rest))
            return
        c._unknown(node, f"{node.op_type}(axes={axes_n})")

    return handler


def _gemm(c: _Converter, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    A, B = node.input[0], node.input[1]
    if A in c.act and B in c.act:
        _matmul(c, node)
        return
    if A not in c.act or a.get("transA", 0):
        c._unknown(node, "Gemm with a constant or transposed left operand")
        return
    h = c.act[A][0]
    bs = c.shape(B)
    w = (int(bs[0]), int(bs[1])) if a.get("transB", 0) else (int(bs[1]), int(bs[0]))
    bias = len(node.input) > 2 and bool(node.input[2])
    out = node.output[0]
    c.emit("linear", node, [h], _identity(2), c.b.feature_shape(h, w[1], w[0], math.prod(c.shape(out))), weight_shape=w,
           bias=bias)


def _matmul(c: _Converter, node: onnx.NodeProto) -> None:
    A, B = node.input[0], node.input[1]
    out = node.output[0]
    hb_param = c.param(B) if B not in c.act and len(c.shape(B)) != 2 else None
    if A in c.act and (B in c.act or hb_param is not None):
        ha, pa = c.act[A]
        hb = c.act[B][0] if B in c.act else hb_param
        xs, os_ = c.shape(A), c.shape(out)
        known = pa is not None and len(pa) == len(xs) == len(os_)
        c.emit("matmul", node, [ha, hb], pa if known else None, _cg(os_, pa) if known else _tokens_of(os_),  # type: ignore[list-item]
               inner=int(xs[-1]))
        return
    if A not in c.act:
        c._unknown(node, "MatMul with a constant left operand")
        return
    h, p = c.act[A]
    bs = c.shape(B)
    if len(bs) != 2:
        c._unknown(node, f"MatMul with a rank-{len(bs)} constant")
        return
    k, n = int(bs[0]), int(bs[1])
    xs = c.shape(A)
    if p is not None and len(p) == len(xs):
        shape = _cg(c.shape(out), p)
        perm: Perm | None = p
    else:
        shape = c.b.feature_shape(h, k, n, math.prod(c.shape(out)))
        perm = None
    c.emit("linear", node, [h], perm, shape, weight_shape=(n, k), bias=False)


def _keep_or_tokens(c: _Converter, h: int, features: int, out: str) -> Shape:
    shp = c.b.shape(h)
    numel = math.prod(c.shape(out))
    if shp and shp[0] == features and math.prod(shp) == numel:
        return shp
    return tokens(features, numel)


def _bn(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    ch = int(c.shape(node.input[1])[0]) if len(node.input) > 1 and node.input[1] else c.b.channels(h)
    c.emit("bn", node, [h], p, _keep_or_tokens(c, h, ch, node.output[0]), weight_shape=(ch,), bias=True)


def _norm(op: str) -> Handler:
    def handler(c: _Converter, node: onnx.NodeProto) -> None:
        h, p = _x(c, node)
        scale = node.input[1] if len(node.input) > 1 and node.input[1] else None
        bias = len(node.input) > 2 and bool(node.input[2])
        ws = tuple(d for d in c.shape(scale) if d != 1) or (1,) if scale else ()  # tf2onnx stores (1, 1, C)
        a = _attrs(node)
        xs = c.shape(node.input[0])
        if op == "layernorm":
            axis = int(a.get("axis", -1)) % len(xs)
            feats = math.prod(xs[axis:])
            extra: dict[str, Any] = {}
        else:
            feats = int(xs[1])
            extra = {"groups": int(a.get("num_groups", 1))}
        c.emit(op, node, [h], p, _keep_or_tokens(c, h, feats, node.output[0]), weight_shape=ws, bias=bias, **extra)

    return handler


def _is_roll(c: _Converter, node: onnx.NodeProto, ins: list[str], axis: int) -> str | None:
    """``Concat`` of slices of one tensor along ``axis`` that together are that tensor: how
    exporters write ``torch.roll`` (cyclic shift, plumbing). Returns the rolled tensor's name."""
    srcs = set()
    for i in ins:
        prod = c.producer.get(i)
        if prod is None or prod.op_type != "Slice":
            return None
        srcs.add(prod.input[0])
    if len(srcs) != 1:
        return None
    src = srcs.pop()
    return src if src in c.act and tuple(c.shape(src)) == tuple(c.shape(node.output[0])) else None


def _concat(c: _Converter, node: onnx.NodeProto) -> None:
    ins = [i for i in node.input if i]
    r = len(c.shape(ins[0]))
    axis = int(_attrs(node)["axis"]) % r
    out = node.output[0]
    rolled = _is_roll(c, node, ins, axis)
    if rolled is not None:
        h, p = c.act[rolled]
        c._bind(out, h, p)
        return
    hs: list[int] = []
    for i in ins:
        if i in c.act:
            hs.append(c.act[i][0])
            continue
        hp = c.param(i)
        if hp is None:
            c._unknown(node, "Concat with a constant that is not a learned tensor")
            return
        hs.append(hp)
    first_act = next(i for i in ins if i in c.act)
    p = c.act[first_act][1]
    known = all(i in c.act and c.act[i][1] is not None and len(c.act[i][1]) == r for i in ins)  # type: ignore[arg-type]
    if known and p[axis] == 1:  # type: ignore[index]
        c.emit("concat", node, hs, p, _cg(c.shape(out), p))
        return
    c.emit("concat", node, hs, None, _tokens_of(c.shape(out)))


def _gather(c: _Converter, node: onnx.NodeProto) -> None:
    """Gather on an activation with constant indices (taking the class token): a slice."""
    data, idx = node.input[0], node.input[1]
    if data not in c.act or idx in c.act:
        c._unknown(node, "Gather with computed indices")
        return
    h, p = c.act[data]
    out = node.output[0]
    xs, os_ = c.shape(data), c.shape(out)
    known = p is not None and len(p) == len(xs) == len(os_)
    c.emit("slice", node, [h], p if known else None, _cg(os_, p) if known else _tokens_of(os_))


def _pad(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    a = _attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    xs = c.shape(node.input[0])
    r = len(xs)
    if "pads" in a:
        pads = [int(v) for v in a["pads"]]
        axes = list(range(r))
    else:
        pv = c._value(node.input[1]) if len(node.input) > 1 else None
        if pv is None:
            c._unknown(node, "Pad with non-constant pads")
            return
        pads = [int(v) for v in pv.reshape(-1)]
        av = c._value(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        axes = [int(v) % r for v in av.reshape(-1)] if av is not None else list(range(r))
    n = len(axes)
    full_b, full_e = [0] * r, [0] * r
    for j, ax in enumerate(axes):
        full_b[ax], full_e[ax] = pads[j], pads[n + j]
    if p is None or len(p) != r:
        c._unknown(node, "Pad on a tensor of unknown layout")
        return
    cf_b, cf_e = [0] * r, [0] * r
    for i in range(r):
        cf_b[p[i]], cf_e[p[i]] = full_b[i], full_e[i]
    out = node.output[0]
    if cf_b[0] or cf_e[0] or cf_b[1] or cf_e[1]:
        c._unknown(node, "Pad on the batch or channel axis")
        return
    if mode != "constant":
        c._unknown(node, f"Pad(mode={mode})")
        return
    if not any(cf_b) and not any(cf_e):
        c._bind(out, h, p)
        return
    c.emit("pad", node, [h], p, _cg(c.shape(out), p), padding=tuple(cf_b[2:]) + tuple(cf_e[2:]))


def _slice(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    out = node.output[0]
    if c.shape(out) == c.shape(node.input[0]):
        c._bind(out, h, p)
        return
    c.emit("slice", node, [h], p, c.out_shape(out, p))


def _split(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    for o in node.output:
        if o:
            c.act.pop(o, None)
            hh = c.b.add_node("slice", [h], c.out_shape(o, p), name=node.name or o)
            c._bind(o, hh, p)


def _resize(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    out = node.output[0]
    c.emit("upsample", node, [h], p, c.out_shape(out, p))


def _einsum(c: _Converter, node: onnx.NodeProto) -> None:
    """Two-operand ``Einsum``: of two activations a ``matmul``, of an activation and a constant a ``linear``."""
    eq = _attrs(node)["equation"]
    eq = eq.decode() if isinstance(eq, bytes) else str(eq)
    ins = [i for i in node.input if i]
    parts = einsum_parts(eq, [c.shape(i) for i in ins]) if len(ins) == 2 else None
    if parts is None:
        c._unknown(node, "Einsum")
        return
    inner, _ = parts
    out = node.output[0]
    shape = _tokens_of(c.shape(out))
    acts = [i for i in ins if i in c.act]
    if len(acts) == 2:
        c.emit("matmul", node, [c.act[i][0] for i in ins], None, shape, inner=inner)
        return
    w = next(i for i in ins if i not in c.act)
    h = c.act[acts[0]][0]
    c_out = math.prod(c.shape(w)) // inner
    c.emit("linear", node, [h], None, c.b.feature_shape(h, inner, c_out, math.prod(c.shape(out))), weight_shape=(c_out, inner))


def _where(c: _Converter, node: onnx.NodeProto) -> None:
    """``Where(constant mask, x, constant)`` (``masked_fill``): plumbing, like adding a constant mask."""
    cond, a, b = node.input[0], node.input[1], node.input[2]
    acts = [i for i in (a, b) if i in c.act]
    if cond in c.act or len(acts) != 1:
        c._unknown(node, "Where")
        return
    h, p = c.act[acts[0]]
    c._bind(node.output[0], h, p)


def _softmax(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    xs = c.shape(node.input[0])
    r = len(xs)
    axis = int(_attrs(node).get("axis", -1 if c.opset >= 13 else 1)) % r
    known = p is not None and len(p) == r
    if (known and p[axis] == 1) or axis == r - 1:  # type: ignore[index]
        c.emit("softmax", node, [h], p, _keep_or_tokens(c, h, int(xs[axis]), node.output[0]))
    else:
        c.emit("softmax", node, [h], None, tokens(int(xs[axis]), math.prod(xs)))


def _hardsigmoid(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    c.emit("hardsigmoid", node, [h], p, c.b.shape(h))


#: ONNX op type (``domain.OpType`` outside the default domain) -> handler
HANDLERS: dict[str, Handler] = {
    "Conv": _conv,
    "ConvTranspose": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "BatchNormalization": _bn,
    "LayerNormalization": _norm("layernorm"),
    "GroupNormalization": _norm("groupnorm"),
    "InstanceNormalization": _instance_norm,
    "Relu": _unary("relu"),
    "LeakyRelu": _unary("leaky_relu"),
    "Elu": _unary("elu"),
    "Gelu": _unary("gelu"),
    "Sigmoid": _unary("sigmoid"),
    "HardSigmoid": _hardsigmoid,
    "HardSwish": _unary("hardswish"),
    "Tanh": _unary("tanh"),
    "Softmax": _softmax,
    "Clip": _clip,
    "Add": _binary("add"),
    "Sum": _binary("add"),
    "Sub": _binary("sub"),
    "Mul": _binary("mul"),
    "Div": _binary("div"),
    "Concat": _concat,
    "AveragePool": _pool("avgpool"),
    "MaxPool": _pool("maxpool"),
    "GlobalAveragePool": _global_pool("global_avgpool"),
    "GlobalMaxPool": _global_pool("global_maxpool"),
    "ReduceMean": _reduce("global_avgpool", "reduce_mean"),
    "ReduceMax": _reduce("global_maxpool", "reduce_max"),
    "ReduceL2": _reduce("", "reduce_l2"),
    "Gather": _gather,
    "Einsum": _einsum,
    "Where": _where,
    "Pad": _pad,
    "Slice": _slice,
    "Split": _split,
    "Resize": _resize,
    "Upsample": _resize,
    "Tile": _tile,
    **{op: _plumbing for op in _PLUMBING},
}
