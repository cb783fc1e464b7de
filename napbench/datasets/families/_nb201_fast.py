"""Direct (trace-free) computation graphs for NAS-Bench-201.

Emits the canonical node list of the TinyNetwork (spec ``families/nb201.md`` §2) straight
into a :class:`CompGraph`, skipping the torch trace and the generic canonicalisation passes:
nodes are written already canonical (n-ary sums, shared parameter-free ops, no plumbing,
no dead nodes). One cell's
nodes are made once per stage and replicated with shifted indices. Tests check that every
graph equals (canonical hash) the graph traced from the torch network.
"""

from __future__ import annotations

from collections.abc import Sequence

from napbench.conversion.graph import CompGraph, Node

_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
_K1, _K3, _S1, _S2 = (1, 1), (3, 3), (1, 1), (2, 2)
_P0, _P1, _D1 = (0, 0, 0, 0), (1, 1, 1, 1), (1, 1)


class _Emitter:
    __slots__ = ("nodes",)

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.nodes: list[Node] = [Node("input", (), (), input_shape, name="input")]

    def add(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def shape(self, i: int) -> tuple[int, ...]:
        return self.nodes[i].output_shape


def _cell_template(ops: Sequence[str], shape: tuple[int, int, int]) -> tuple[list[tuple], int]:
    """Node recipes of one cell relative to its input (index -1 = cell input).

    Returns (recipes, output) where each recipe is (op, inputs, weight_shape, bias, kernel,
    stride, padding) with inputs as local indices (-1 = cell input, j >= 0 = j-th recipe).
    """
    c = shape[0]
    recipes: list[tuple] = []
    node_val = [-1]  # cell node 0 = the cell input

    shared: dict[tuple[str, int], int] = {}  # canonical graphs share parameter-free ops on one input

    def emit(op: str, inputs: tuple[int, ...], w: tuple = (), bias: bool = False, k: tuple = (), s: tuple = (), p: tuple = ()) -> int:
        if op in ("relu", "zero", "avgpool"):
            key = (op, inputs[0])
            if key in shared:
                return shared[key]
            shared[key] = len(recipes)
        recipes.append((op, inputs, w, bias, k, s, p))
        return len(recipes) - 1

    node2_terms: list[int] = []
    for dst in (1, 2, 3):
        terms: list[int] = []
        for e, (d, src) in enumerate(_EDGES):
            if d != dst:
                continue
            x = node_val[src]
            op = ops[e]
            if dst == 3 and src == 2 and op == "skip_connect":
                # node 2's sum feeds only node 3's sum: canonical n-ary sums merge them
                terms.extend(node2_terms)
            elif op == "none":
                terms.append(emit("zero", (x,)))
            elif op == "skip_connect":
                terms.append(x)
            elif op == "avg_pool_3x3":
                terms.append(emit("avgpool", (x,), (), False, _K3, _S1, _P1))
            else:
                k = _K3 if op == "nor_conv_3x3" else _K1
                r = emit("relu", (x,))
                cv = emit("conv", (r,), (c, c, *k), False, k, _S1, _P1 if k == _K3 else _P0)
                terms.append(emit("bn", (cv,), (c,), True))
        if dst == 2 and ops[5] == "skip_connect":
            node2_terms = terms
            node_val.append(-2)  # never read: the only consumer (edge 3<-2) splices the terms
            continue
        node_val.append(terms[0] if len(terms) == 1 else emit("add", tuple(terms)))
    return recipes, node_val[3]


#: placed nodes: (recipe, base index, cell input, shape) -> the Node. A Node is an immutable value and the
#: graphs of the space repeat the same nodes at the same positions (3,125 NB-201 graphs hold 545,000
#: nodes but 7,297 distinct ones), so they share the objects: constructing a frozen dataclass costs more
#: than looking it up.
_PLACED: dict[tuple, Node] = {}


def _place_cell(em: _Emitter, recipes: list[tuple], out: int, x: int, shape: tuple[int, ...]) -> int:
    base = len(em.nodes)
    memo = _PLACED
    if len(memo) > 50_000:
        memo.clear()
    append = em.nodes.append
    for r in recipes:
        key = (r, base, x, shape)
        node = memo.get(key)
        if node is None:
            op, inputs, w, bias, k, s, p = r
            ins = tuple(x if i < 0 else base + i for i in inputs)
            node = memo[key] = Node(op, ins, (shape,) * len(ins), shape, w, bias, k, s, p, _D1 if k else ())
        append(node)
    return x if out < 0 else base + out


def _conv(em: _Emitter, x: int, c_out: int, k: tuple[int, int], s: tuple[int, int], p: tuple, out_hw: tuple[int, int]) -> int:
    shp = em.shape(x)
    return em.add(Node("conv", (x,), (shp,), (c_out, *out_hw), (c_out, shp[0], *k), False, k, s, p, _D1))


def _unary(em: _Emitter, op: str, x: int, weighted: bool = False) -> int:
    shp = em.shape(x)
    if weighted:
        return em.add(Node(op, (x,), (shp,), shp, (shp[0],), True))
    return em.add(Node(op, (x,), (shp,), shp))


def nb201_graph(
    ops: Sequence[str], *, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32), meta: dict | None = None,
    channels: int = 16, cells: int = 5,
) -> CompGraph:
    """The canonical CompGraph of the NB-201 network whose 6 cell edges carry ``ops``."""
    h = input_shape[1]
    em = _Emitter(tuple(input_shape))
    x = _conv(em, 0, channels, _K3, _S1, _P1, (h, h))
    x = _unary(em, "bn", x, True)
    c = channels
    for stage in range(3):
        if stage:
            shp = em.shape(x)
            c_out, h = 2 * c, h // 2
            r = _unary(em, "relu", x)
            a = _conv(em, r, c_out, _K3, _S2, _P1, (h, h))
            a = _unary(em, "bn", a, True)
            a = _unary(em, "relu", a)
            a = _conv(em, a, c_out, _K3, _S1, _P1, (h, h))
            a = _unary(em, "bn", a, True)
            pool = em.add(Node("avgpool", (x,), (shp,), (c, h, h), (), False, (2, 2), _S2, _P0, _D1))
            sc = _conv(em, pool, c_out, _K1, _S1, _P0, (h, h))
            x = em.add(Node("add", (a, sc), ((c_out, h, h),) * 2, (c_out, h, h)))
            c = c_out
        shape = (c, h, h)
        recipes, out = _cell_template(ops, shape)
        for _ in range(cells):
            x = _place_cell(em, recipes, out, x, shape)
    x = _unary(em, "bn", x, True)
    x = _unary(em, "relu", x)
    g = em.add(Node("global_avgpool", (x,), (em.shape(x),), (c,)))
    o = em.add(Node("linear", (g,), ((c,),), (num_classes,), (num_classes, c), True))
    return CompGraph(tuple(em.nodes), (o,), meta or {})
