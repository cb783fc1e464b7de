"""Canonicalisation passes shared by every frontend.

The rules (part of the vocabulary version):

1. dead nodes (not on a path to an output) are dropped;
2. a ``pad`` whose only consumer is a conv or pool is folded into that op's padding;
3. an ``add``/``mul`` feeding only another node of the same op is merged into it (n-ary
   sums), and likewise a ``concat`` feeding only a concat (input order preserved);
4. a 1x1, stride-1, ungrouped conv applied to a (C,) vector is a ``linear``;
5. an ``add``/``mul``/``concat`` left with one input is removed;
6. a pooling window covering the whole unpadded feature map is a global pool;
7. common subexpressions: identical parameter-free ops (activations, pools, ``zero``,
   sums, products, concats) on identical inputs are one node -- exporters such as
   ``torch.onnx`` and tf2onnx merge them, so every frontend does;
8. (vocabulary 2.0) a ``scale`` that only feeds a ``matmul``, or that is the only reader of a
   ``matmul``, is part of it: attention's ``1/sqrt(d)`` is written on the scores (torch),
   on the query (Keras), on query and key (the ONNX export of ``scaled_dot_product_attention``)
   or not at all (``scaled_dot_product_attention``), so attention is always
   ``matmul -> softmax -> matmul``;
9. (vocabulary 2.0) ``x * a + b`` with learned per-channel ``a`` and ``b`` (``param`` nodes of
   ``C`` elements on a tensor whose canonical axis 0 has ``C`` channels) is a ``bn``: an
   inference affine is how Keras' BatchNormalization reaches ONNX (``Mul`` + ``Add``), and
   ONNX cannot tell a learned affine from it, so every frontend reads both as ``bn``;
10. (vocabulary 2.0) attention projections are separate ``linear`` s: a fused projection
    (one ``linear`` of ``k * E`` outputs -- timm's ``qkv``, ``nn.MultiheadAttention``'s packed
    ``in_proj`` -- whose only readers are ``k`` equal ``slice`` s of its features, each read
    only by ``matmul`` s) is ``k`` linears of ``E`` outputs on the same input, each in its
    slice's place. Keras' ``MultiHeadAttention``, separate ``nn.Linear`` query/key/value
    projections and a fused ``qkv`` therefore give one graph; MACs and params are unchanged
    (``k * E * C_in`` weights, ``k * E`` biases either way). Convolutions are never split.
"""

from __future__ import annotations

import math
from dataclasses import replace

from napbench.conversion.builder import canon_shape, tokens
from napbench.conversion.graph import CompGraph, Node, Shape, with_inputs

#: parameter-free ops whose result is fully determined by op, inputs and recorded attributes
_CSE_OPS = frozenset(
    {"relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "hardsigmoid", "hardswish", "tanh", "softmax",
     "add", "mul", "concat", "avgpool", "maxpool", "global_avgpool", "global_maxpool", "zero"}
)


def _consumers(nodes: list[Node | None]) -> list[list[int]]:
    cons: list[list[int]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        if n is not None:
            for s in n.inputs:
                cons[s].append(i)
    return cons


def _live(nodes: list[Node | None], outputs: list[int]) -> list[bool]:
    live = [False] * len(nodes)
    for o in outputs:
        live[o] = True
    for i in range(len(nodes) - 1, -1, -1):
        n = nodes[i]
        if live[i] and n is not None:
            for s in n.inputs:
                live[s] = True
    live[0] = True
    return live


def _compact(nodes: list[Node | None], outputs: list[int], alias: dict[int, int]) -> tuple[list[Node], list[int]]:
    """Drop removed/dead nodes, resolve aliases, renumber."""

    def res(i: int) -> int:
        while i in alias:
            i = alias[i]
        return i

    if alias:
        nodes = [None if n is None else (with_inputs(n, tuple(res(s) for s in n.inputs)) if any(s in alias for s in n.inputs) else n)
                 for n in nodes]
    outputs = [res(o) for o in outputs]
    live = _live(nodes, outputs)
    new_index: dict[int, int] = {}
    out: list[Node] = []
    for i, n in enumerate(nodes):
        if n is None or not live[i]:
            continue
        new_index[i] = len(out)
        if n.inputs:
            ins = tuple(new_index[s] for s in n.inputs)
            if ins != n.inputs:
                n = with_inputs(n, ins)
        out.append(n)
    seen: list[int] = []
    for o in outputs:
        if new_index[o] not in seen:
            seen.append(new_index[o])
    return out, seen


def _absorb_matmul_scales(nodes: list[Node], outputs: list[int]) -> tuple[list[Node], list[int]]:
    """Rule 8: drop ``scale`` nodes that only feed a matmul or only read one."""
    if not any(n.op == "matmul" for n in nodes):
        return nodes, outputs
    nodes_m: list[Node | None] = list(nodes)
    cons = _consumers(nodes_m)
    alias: dict[int, int] = {}
    for i, n in enumerate(nodes):
        if n.op != "scale" or i in outputs:
            continue
        src = n.inputs[0]
        feeds_matmul = bool(cons[i]) and all(nodes[c].op == "matmul" for c in cons[i])
        reads_matmul = nodes[src].op == "matmul" and len(cons[src]) == 1 and n.output_shape == nodes[src].output_shape
        if (feeds_matmul and n.output_shape == n.input_shapes[0]) or reads_matmul:
            alias[i] = src
            nodes_m[i] = None
    if not alias:
        return nodes, outputs
    return _compact(nodes_m, outputs, alias)


def _affine_to_bn(nodes: list[Node], outputs: list[int]) -> tuple[list[Node], list[int]]:
    """Rule 9: ``add(mul(x, param a), param b)`` with per-channel a, b -> ``bn(x)``."""
    if not any(n.op == "param" for n in nodes):
        return nodes, outputs
    nodes_m: list[Node | None] = list(nodes)
    cons = _consumers(nodes_m)

    def channel_param(j: int, c: int, user: int) -> bool:
        n = nodes[j]
        return n.op == "param" and cons[j] == [user] and n.weight_shape == (c,)

    changed = False
    for i, n in enumerate(nodes):
        if n.op != "add" or len(n.inputs) != 2 or not n.output_shape:
            continue
        c = n.output_shape[0]
        for m_idx, b_idx in (n.inputs, n.inputs[::-1]):
            m = nodes[m_idx]
            if m.op != "mul" or len(m.inputs) != 2 or cons[m_idx] != [i] or m_idx in outputs or not channel_param(b_idx, c, i):
                continue
            a_idx = next((j for j in m.inputs if channel_param(j, c, m_idx)), None)
            if a_idx is None:
                continue
            x = next(j for j in m.inputs if j != a_idx)
            if nodes[x].output_shape != n.output_shape:
                continue
            nodes_m[i] = replace(n, op="bn", inputs=(x,), input_shapes=(nodes[x].output_shape,), weight_shape=(c,), bias=True)
            nodes_m[m_idx] = nodes_m[a_idx] = nodes_m[b_idx] = None
            changed = True
            break
    if not changed:
        return nodes, outputs
    return _compact(nodes_m, outputs, {})


def _split_fused_projections(nodes: list[Node], outputs: list[int]) -> tuple[list[Node], list[int]]:
    """Rule 10: ``linear(k*E) -> k slices -> matmuls`` becomes ``k`` linears of ``E`` outputs."""
    if not any(n.op == "matmul" for n in nodes):
        return nodes, outputs
    cons = _consumers(list(nodes))
    new_nodes: list[Node | None] = list(nodes)
    new_shape: dict[int, Shape] = {}  # index of a rewritten slice -> its linear's output shape
    for i, n in enumerate(nodes):
        if n.op != "linear" or i in outputs or len(n.weight_shape) != 2:
            continue
        parts = cons[i]
        k = len(parts)
        w_out, c_in = n.weight_shape
        total = math.prod(n.output_shape)
        if k < 2 or w_out % k or total % k or any(
            nodes[j].op != "slice" or j in outputs or not cons[j] or any(nodes[c].op != "matmul" for c in cons[j])
            or math.prod(nodes[j].output_shape) != total // k or nodes[j].output_shape[:1] == n.output_shape[:1]
            for j in parts
        ):
            continue
        e = w_out // k
        shape = canon_shape((e, *n.output_shape[1:])) if n.output_shape[0] == w_out else tokens(e, total // k)
        for t, j in enumerate(parts):
            new_nodes[j] = replace(n, output_shape=shape, weight_shape=(e, c_in), name=f"{n.name}[{t}]" if n.name else nodes[j].name)
            new_shape[j] = shape
        new_nodes[i] = None  # read by nothing now
    if not new_shape:
        return nodes, outputs
    for i, n in enumerate(new_nodes):
        if n is not None and any(s in new_shape for s in n.inputs):
            new_nodes[i] = replace(n, input_shapes=tuple(new_shape.get(s, shp) for s, shp in zip(n.inputs, n.input_shapes)))
    return _compact(new_nodes, outputs, {})


def canonicalize(raw: list[Node], outputs: list[int]) -> tuple[list[Node], list[int]]:
    """Apply the canonicalisation rules to a raw node list (see module docstring)."""
    nodes: list[Node | None] = list(raw)
    alias: dict[int, int] = {}
    # 1. dead code first so consumer counts are meaningful
    nodes, outputs = _compact(nodes, outputs, alias)
    nodes, outputs = _absorb_matmul_scales(nodes, outputs)
    nodes, outputs = _split_fused_projections(nodes, outputs)
    nodes, outputs = _affine_to_bn(nodes, outputs)
    nodes_m: list[Node | None] = list(nodes)
    cons = _consumers(nodes_m)
    for i, n in enumerate(nodes_m):
        assert n is not None
        # 2. fold pad into its single conv/pool consumer
        if n.op == "pad" and len(cons[i]) == 1 and i not in outputs:
            c = cons[i][0]
            cn = nodes_m[c]
            assert cn is not None
            if cn.op in ("conv", "avgpool", "maxpool") and n.padding and len(n.padding) == len(cn.padding or n.padding):
                cpad = cn.padding or (0,) * len(n.padding)
                newpad = tuple(a + b for a, b in zip(cpad, n.padding))
                nodes_m[c] = replace(cn, padding=newpad, inputs=(n.inputs[0],), input_shapes=(n.input_shapes[0],))
                nodes_m[i] = None
                continue
        # 4. 1x1 conv on a vector -> linear
        if n.op == "conv" and len(n.input_shapes[0]) == 1 and n.groups == 1 and all(k == 1 for k in n.kernel):
            nodes_m[i] = replace(
                n, op="linear", weight_shape=n.weight_shape[:2], kernel=(), stride=(), padding=(), dilation=()
            )
        # 5. a pooling window that covers the whole unpadded map is a global pool
        elif n.op in ("avgpool", "maxpool") and len(n.output_shape) == 1 and not any(n.padding) and len(n.input_shapes[0]) > 1 \
                and tuple(n.kernel) == tuple(n.input_shapes[0][1:]):
            nodes_m[i] = replace(n, op=f"global_{n.op}", kernel=(), stride=(), padding=(), dilation=())
    # 3. merge chains of add/mul/concat (process in reverse so long chains collapse fully)
    cons = _consumers(nodes_m)
    for i in range(len(nodes_m) - 1, -1, -1):
        n = nodes_m[i]
        if n is None or n.op not in ("add", "mul", "concat"):
            continue
        changed = True
        while changed:
            changed = False
            new_inputs: list[int] = []
            new_shapes: list[tuple[int, ...]] = []
            for s, shp in zip(n.inputs, n.input_shapes):
                sn = nodes_m[s]
                if sn is not None and sn.op == n.op and len(cons[s]) == 1 and s not in outputs and sn.output_shape == n.output_shape:
                    new_inputs.extend(sn.inputs)
                    new_shapes.extend(sn.input_shapes)
                    for t in sn.inputs:
                        cons[t] = [i if c == s else c for c in cons[t]]
                    nodes_m[s] = None
                    changed = True
                else:
                    new_inputs.append(s)
                    new_shapes.append(shp)
            n = replace(n, inputs=tuple(new_inputs), input_shapes=tuple(new_shapes))
        # 5. single-input n-ary ops are plumbing
        if len(n.inputs) == 1 and n.output_shape == n.input_shapes[0]:
            nodes_m[i] = None
            alias[i] = n.inputs[0]
        else:
            nodes_m[i] = n
    # 7. common subexpressions (after chain merging, so n-ary sums compare whole)
    nodes, outputs = _compact(nodes_m, outputs, alias)
    alias = {}
    nodes_m = list(nodes)
    seen: dict[tuple, int] = {}
    for i, n in enumerate(nodes_m):
        if n is None:
            continue
        if any(s in alias for s in n.inputs):
            n = nodes_m[i] = replace(n, inputs=tuple(alias.get(s, s) for s in n.inputs))
        if n.op not in _CSE_OPS or i in outputs:
            continue
        ins = tuple(sorted(n.inputs)) if n.op in ("add", "mul") else n.inputs
        key = (n.op, ins, n.output_shape, n.kernel, n.stride, n.padding, n.dilation, n.detail)
        if key in seen:
            alias[i] = seen[key]
            nodes_m[i] = None
        else:
            seen[key] = i
    return _compact(nodes_m, outputs, alias)


def fold_batchnorm(g: CompGraph) -> CompGraph:
    """Merge every BN that directly follows a conv/linear (its only consumer) into that layer."""
    nodes: list[Node | None] = list(g.nodes)
    cons = _consumers(nodes)
    alias: dict[int, int] = {}
    for i, n in enumerate(g.nodes):
        if n.op != "bn":
            continue
        src = n.inputs[0]
        sn = nodes[src]
        if sn is not None and sn.op in ("conv", "linear", "conv_transpose") and len(cons[src]) == 1 and src not in g.outputs:
            nodes[src] = replace(sn, bias=True)
            nodes[i] = None
            alias[i] = src
    if not alias:
        return g if g.meta.get("bn_folded") else g.with_meta(bn_folded=True)
    out, outs = _compact(nodes, list(g.outputs), alias)
    return CompGraph(tuple(out), tuple(outs), {**g.meta, "bn_folded": True})


def drop_constant_branches(g: CompGraph) -> CompGraph:
    """The graph without branches that carry no information about its input.

    A node is *constant* when it is a ``zero`` or when all of its inputs are constant (a conv,
    norm or pool of a constant is a constant: NAS-Bench-201's ``none`` edge and every op fed only
    by it). A constant term of an ``add`` is a fixed offset, so it is dropped from the sum, and a
    sum of constants is kept as one of its terms (a ``zero`` where there is one); a node read only
    by dropped terms is then dead and dropped too, and the canonical rules run again (a sum left
    with one term is that term). Constants read by any other op are kept: nothing is removed
    that could change what the graph computes from its input, up to constant offsets (a network
    whose output is constant stays a graph with a constant output, whose cells have collapsed).
    Learned ``param`` sources are not constants here (a positional embedding is structure a
    predictor should see).
    """
    nodes = g.nodes
    const = [False] * len(nodes)
    for i, n in enumerate(nodes):
        const[i] = n.op == "zero" or (bool(n.inputs) and all(const[s] for s in n.inputs))
    if not any(const):
        return g
    out: list[Node] = []
    changed = False
    for i, n in enumerate(nodes):
        if n.op == "add" and any(const[s] for s in n.inputs):
            if const[i]:  # a sum of constants is a constant: one term stands for it, a zero where there is one
                zeros = [k for k, s in enumerate(n.inputs) if nodes[s].op == "zero"]
                keep = zeros[:1] or [0]
            else:
                keep = [k for k, s in enumerate(n.inputs) if not const[s]]
            if len(keep) < len(n.inputs):
                n = replace(n, inputs=tuple(n.inputs[k] for k in keep), input_shapes=tuple(n.input_shapes[k] for k in keep))
                changed = True
        out.append(n)
    if not changed:
        return g
    canon, outs = canonicalize(out, list(g.outputs))
    return CompGraph(tuple(canon), tuple(outs), g.meta)
