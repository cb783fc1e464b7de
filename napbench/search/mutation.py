"""Graph-level mutation (GENNAPE's search): change a computation graph itself.

Each operator takes a :class:`~napbench.conversion.graph.CompGraph` and a NumPy generator and
returns a new, *validated* CompGraph (the constructor checks acyclicity, the single input,
reachability and shapes on every edge) or None when the graph offers no site for it:

========================= ==================================================================
``swap_activation``       one activation becomes another of the same kind (relu, relu6,
                          gelu, silu, elu, leaky_relu, hardswish)
``swap_pool``             an average pooling becomes a max pooling, or back
``conv_kernel``           a 'same'-padded conv's kernel changes among 1, 3, 5, 7 (output
                          shape kept: padding becomes ``(k - 1) // 2``)
``conv_width``            a conv's output channels scale by 0.5-2 where the channels flow
                          only through per-channel ops (BN, activations) into one conv or
                          linear, whose input width follows
``add_residual``          an ``add`` joins a node with an earlier node of the same shape on
                          its input path (a new skip connection)
``remove_residual``       an ``add`` input that is also an ancestor of another of its inputs
                          (a skip connection) is dropped
========================= ==================================================================

:func:`mutate_graph` applies random operators until one yields a graph within the FLOPs /
params budget; :func:`evolve_graph` runs predictor-screened evolution from a seed graph (the
predictor -- any registered one that reads CGs, e.g. ``flops``, ``kgnn``, GENNAPE -- ranks
children; the best survive); :func:`to_torch_module` and :func:`to_onnx` export a result
through the CG executor (``napbench.conversion.to_torch``) so it can be trained elsewhere.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from napbench.conversion.graph import CompGraph, Node
from napbench.errors import ConversionError, InvalidArgumentError, NapbenchError

ACTIVATIONS = ("relu", "relu6", "gelu", "silu", "elu", "leaky_relu", "hardswish")
POOLS = ("avgpool", "maxpool")
KERNELS = (1, 3, 5, 7)
WIDTH_FACTORS = (0.5, 0.75, 1.25, 1.5, 2.0)
_PER_CHANNEL = frozenset({"bn", *ACTIVATIONS, "sigmoid", "hardsigmoid", "tanh", "scale"})

Mutation = Callable[[CompGraph, np.random.Generator], "CompGraph | None"]
_MUTATIONS: dict[str, Mutation] = {}


def register_mutation(name: str) -> Callable[[Mutation], Mutation]:
    """Register a graph mutation ``fn(graph, rng) -> CompGraph | None`` under ``name``."""

    def add(fn: Mutation) -> Mutation:
        if name in _MUTATIONS:
            raise InvalidArgumentError(f"mutation {name!r} is already registered; expected a new name")
        _MUTATIONS[name] = fn
        return fn

    return add


def list_mutations() -> list[str]:
    """Names of every registered graph mutation."""
    return sorted(_MUTATIONS)


# -- helpers ----------------------------------------------------------------------------------
def _consumers(g: CompGraph) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in g.nodes]
    for i, n in enumerate(g.nodes):
        for s in n.inputs:
            out[s].append(i)
    return out


def _rebuild(nodes: Sequence[Node], outputs: Sequence[int], meta: dict[str, Any]) -> CompGraph:
    """Drop nodes not on a path to an output, renumber, refresh input shapes and validate."""
    live = [False] * len(nodes)
    stack = list(outputs)
    while stack:
        i = stack.pop()
        if not live[i]:
            live[i] = True
            stack.extend(nodes[i].inputs)
    live[0] = True
    new_index: dict[int, int] = {}
    out_nodes: list[Node] = []
    for i, n in enumerate(nodes):
        if not live[i]:
            continue
        new_index[i] = len(out_nodes)
        ins = tuple(new_index[s] for s in n.inputs)
        out_nodes.append(replace(n, inputs=ins, input_shapes=tuple(out_nodes[s].output_shape for s in ins)))
    return CompGraph(tuple(out_nodes), tuple(new_index[o] for o in outputs), meta)


def _meta(g: CompGraph, what: str) -> dict[str, Any]:
    m = dict(g.meta)
    m["mutations"] = [*m.get("mutations", []), what]
    m.setdefault("mutated_from", g.canonical_hash)
    if m.get("family") not in (None, "mutated"):
        m["source_family"], m["source_arch"] = m.get("family"), m.get("arch")
    m["family"] = "mutated"
    m.pop("arch", None)
    return m


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


# -- operators --------------------------------------------------------------------------------
@register_mutation("swap_activation")
def swap_activation(g: CompGraph, rng: np.random.Generator) -> CompGraph | None:
    """Replace one activation by another activation."""
    sites = [i for i, n in enumerate(g.nodes) if n.op in ACTIVATIONS]
    if not sites:
        return None
    i = _pick(rng, sites)
    new = _pick(rng, [a for a in ACTIVATIONS if a != g.nodes[i].op])
    nodes = list(g.nodes)
    nodes[i] = replace(nodes[i], op=new)
    return _rebuild(nodes, g.outputs, _meta(g, f"swap_activation:{i}:{g.nodes[i].op}->{new}"))


@register_mutation("swap_pool")
def swap_pool(g: CompGraph, rng: np.random.Generator) -> CompGraph | None:
    """Average pooling <-> max pooling."""
    sites = [i for i, n in enumerate(g.nodes) if n.op in POOLS]
    if not sites:
        return None
    i = _pick(rng, sites)
    new = "maxpool" if g.nodes[i].op == "avgpool" else "avgpool"
    nodes = list(g.nodes)
    nodes[i] = replace(nodes[i], op=new)
    return _rebuild(nodes, g.outputs, _meta(g, f"swap_pool:{i}->{new}"))


def _same_padded(n: Node) -> bool:
    if n.op != "conv" or not n.kernel or any(d != 1 for d in n.dilation or (1,)):
        return False
    nd = len(n.kernel)
    pad = n.padding or (0,) * (2 * nd)
    return all(k % 2 == 1 and pad[j] == pad[nd + j] == (k - 1) // 2 for j, k in enumerate(n.kernel))


@register_mutation("conv_kernel")
def conv_kernel(g: CompGraph, rng: np.random.Generator) -> CompGraph | None:
    """Change a 'same'-padded conv's (square) kernel size; its output shape stays."""
    sites = [i for i, n in enumerate(g.nodes) if _same_padded(n) and len(set(n.kernel)) == 1 and len(n.output_shape) > 1]
    if not sites:
        return None
    i = _pick(rng, sites)
    n = g.nodes[i]
    nd = len(n.kernel)
    spatial = n.input_shapes[0][1:]
    choices = [k for k in KERNELS if k != n.kernel[0] and all(k <= s + 2 * ((k - 1) // 2) for s in spatial)]
    if not choices:
        return None
    k = _pick(rng, choices)
    nodes = list(g.nodes)
    nodes[i] = replace(n, kernel=(k,) * nd, padding=((k - 1) // 2,) * (2 * nd), weight_shape=(*n.weight_shape[:2], *(k,) * nd))
    return _rebuild(nodes, g.outputs, _meta(g, f"conv_kernel:{i}:{n.kernel[0]}->{k}"))


def _width_chain(g: CompGraph, cons: list[list[int]], i: int) -> tuple[list[int], int] | None:
    """Per-channel nodes after conv ``i`` and the single conv/linear reading them, or None."""
    chain: list[int] = []
    j = i
    while True:
        if j in g.outputs or len(cons[j]) != 1:
            return None
        nxt = cons[j][0]
        n = g.nodes[nxt]
        if n.op in _PER_CHANNEL and len(n.inputs) == 1:
            chain.append(nxt)
            j = nxt
            continue
        if (n.op == "conv" and n.groups == 1) or n.op == "linear":
            return chain, nxt
        return None


@register_mutation("conv_width")
def conv_width(g: CompGraph, rng: np.random.Generator) -> CompGraph | None:
    """Scale a conv's output channels; the per-channel ops after it and the next conv/linear's input follow."""
    cons = _consumers(g)
    sites = []
    for i, n in enumerate(g.nodes):
        if n.op == "conv" and n.groups == 1 and n.weight_shape:
            hit = _width_chain(g, cons, i)
            if hit is not None:
                sites.append((i, *hit))
    if not sites:
        return None
    i, chain, reader = _pick(rng, sites)
    n = g.nodes[i]
    c = n.weight_shape[0]
    w = max(1, round(c * float(_pick(rng, WIDTH_FACTORS))))
    if w == c:
        w = c + 1
    nodes = list(g.nodes)
    nodes[i] = replace(n, output_shape=(w, *n.output_shape[1:]), weight_shape=(w, *n.weight_shape[1:]))
    for j in chain:
        m = nodes[j]
        nodes[j] = replace(m, output_shape=(w, *m.output_shape[1:]), weight_shape=(w,) if m.weight_shape else ())
    r = nodes[reader]
    nodes[reader] = replace(r, weight_shape=(r.weight_shape[0], w, *r.weight_shape[2:]))
    return _rebuild(nodes, g.outputs, _meta(g, f"conv_width:{i}:{c}->{w}"))


@register_mutation("add_residual")
def add_residual(g: CompGraph, rng: np.random.Generator) -> CompGraph | None:
    """Sum a node with an earlier node of the same shape on its input path (a new skip connection)."""
    pairs = []
    for v, n in enumerate(g.nodes):
        if v == 0 or n.op in ("add", "zero") or len(n.output_shape) < 2:
            continue
        u, steps = v, 0
        while g.nodes[u].inputs and steps < 8:
            u = g.nodes[u].inputs[0]
            steps += 1
            if steps >= 2 and g.nodes[u].output_shape == n.output_shape:
                pairs.append((u, v))
                break
    if not pairs:
        return None
    u, v = _pick(rng, pairs)
    nodes: list[Node] = []
    for i, n in enumerate(g.nodes):
        shift = tuple(s + 1 if s > v else s for s in n.inputs)
        if i > v:
            shift = tuple(v + 1 if s == v else s for s in shift)
        nodes.append(replace(n, inputs=shift))
        if i == v:
            shp = g.nodes[v].output_shape
            nodes.append(Node("add", inputs=(v, u), input_shapes=(shp, shp), output_shape=shp, name=f"residual_{u}_{v}"))
    outputs = [o + 1 if o > v else (v + 1 if o == v else o) for o in g.outputs]
    return _rebuild(nodes, outputs, _meta(g, f"add_residual:{u}->{v}"))


def _ancestors(g: CompGraph, i: int) -> set[int]:
    seen: set[int] = set()
    stack = list(g.nodes[i].inputs)
    while stack:
        j = stack.pop()
        if j not in seen:
            seen.add(j)
            stack.extend(g.nodes[j].inputs)
    return seen


@register_mutation("remove_residual")
def remove_residual(g: CompGraph, rng: np.random.Generator) -> CompGraph | None:
    """Drop an ``add`` input that is an ancestor of another of its inputs (a skip connection)."""
    sites = []
    for i, n in enumerate(g.nodes):
        if n.op != "add" or len(n.inputs) < 2:
            continue
        anc = [_ancestors(g, s) | {s} for s in n.inputs]
        for k, s in enumerate(n.inputs):
            if any(s in anc[m] and s != n.inputs[m] for m in range(len(n.inputs)) if m != k):
                sites.append((i, k))
    if not sites:
        return None
    i, k = _pick(rng, sites)
    n = g.nodes[i]
    keep = tuple(s for m, s in enumerate(n.inputs) if m != k)
    nodes = list(g.nodes)
    outputs = list(g.outputs)
    if len(keep) > 1:
        nodes[i] = replace(n, inputs=keep, input_shapes=tuple(g.nodes[s].output_shape for s in keep))
    else:  # a one-input add is the identity: its readers read the kept input
        (src,) = keep
        nodes = [replace(m, inputs=tuple(src if s == i else s for s in m.inputs)) for m in nodes]
        outputs = [src if o == i else o for o in outputs]
    return _rebuild(nodes, outputs, _meta(g, f"remove_residual:{i}:{n.inputs[k]}"))


# -- driving ----------------------------------------------------------------------------------
def within_budget(g: CompGraph, *, max_flops: float | None = None, max_params: float | None = None) -> bool:
    """Whether ``g`` has at most ``max_flops`` MACs and ``max_params`` parameters."""
    return (max_flops is None or g.flops <= max_flops) and (max_params is None or g.params <= max_params)


def mutate_graph(
    g: CompGraph,
    rng: np.random.Generator,
    *,
    mutations: Sequence[str] | None = None,
    max_flops: float | None = None,
    max_params: float | None = None,
    tries: int = 50,
) -> CompGraph | None:
    """One random mutation of ``g`` that stays within budget (None when ``tries`` attempts all fail)."""
    names = list(mutations) if mutations is not None else list_mutations()
    bad = [m for m in names if m not in _MUTATIONS]
    if bad or not names:
        from napbench.errors import UnknownNameError

        raise UnknownNameError("graph mutation", str(bad[0] if bad else ""), list(_MUTATIONS))
    for _ in range(tries):
        fn = _MUTATIONS[_pick(rng, names)]
        child = fn(g, rng)  # operators build through the validating CompGraph constructor
        if child is not None and within_budget(child, max_flops=max_flops, max_params=max_params):
            return child
    return None


@dataclass
class GraphSearchResult:
    """Best graph of a graph-level evolution and what it cost."""

    best: CompGraph
    predicted: float
    history: list[dict[str, Any]] = field(default_factory=list)
    n_predictor_calls: int = 0


def evolve_graph(
    seed_graph: CompGraph,
    predictor: Any,
    *,
    generations: int = 10,
    population: int = 8,
    children: int = 16,
    max_flops: float | None = None,
    max_params: float | None = None,
    predictor_calls: int | None = None,
    mutations: Sequence[str] | None = None,
    seed: int = 0,
) -> GraphSearchResult:
    """Predictor-screened evolution of CGs: each generation mutates the population into
    ``children`` new graphs within budget, the predictor ranks them, the best ``population``
    (old and new) survive. Predictor calls (graphs scored) are counted and capped."""
    if not within_budget(seed_graph, max_flops=max_flops, max_params=max_params):
        raise InvalidArgumentError(
            f"the seed graph has {seed_graph.flops:,} MACs / {seed_graph.params:,} params; expected it within the budget "
            f"(max_flops={max_flops}, max_params={max_params})"
        )
    rng = np.random.default_rng(seed)
    calls = 0

    def score(gs: list[CompGraph]) -> np.ndarray:
        nonlocal calls
        calls += len(gs)
        return np.asarray(predictor.predict(gs), dtype=np.float64).reshape(-1)

    pop = [(float(score([seed_graph])[0]), seed_graph)]
    seen = {seed_graph.canonical_hash}
    history = [{"generation": 0, "best_predicted": pop[0][0], "flops": seed_graph.flops, "params": seed_graph.params,
                "n_predictor_calls": calls}]
    for gen in range(1, generations + 1):
        room = math.inf if predictor_calls is None else predictor_calls - calls
        kids: list[CompGraph] = []
        for _ in range(children * 4):
            if len(kids) >= min(children, room):
                break
            parent = pop[int(rng.integers(len(pop)))][1]
            child = mutate_graph(parent, rng, mutations=mutations, max_flops=max_flops, max_params=max_params)
            if child is not None and child.canonical_hash not in seen:
                seen.add(child.canonical_hash)
                kids.append(child)
        if not kids:
            break
        pop += list(zip(score(kids).tolist(), kids))
        pop.sort(key=lambda t: -t[0])
        pop = pop[:population]
        history.append({"generation": gen, "best_predicted": pop[0][0], "flops": pop[0][1].flops, "params": pop[0][1].params,
                        "n_predictor_calls": calls})
    return GraphSearchResult(best=pop[0][1], predicted=pop[0][0], history=history, n_predictor_calls=calls)


def to_torch_module(g: CompGraph, *, seed: int = 0) -> Any:
    """The graph as a trainable ``torch.nn.Module`` (the CG executor, ``napbench.conversion.to_torch``)."""
    try:
        from napbench.conversion import to_torch  # type: ignore[attr-defined]
    except ImportError:
        raise NapbenchError(
            "the CG executor napbench.conversion.to_torch is not available in this napbench; expected a napbench with the executor"
        ) from None
    return to_torch(g, seed=seed)


def to_onnx(g: CompGraph, path: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Any:
    """Export the graph to ONNX through the executor (batch 1, eval); writes ``path`` atomically when given."""
    import onnx
    import torch

    module = to_torch_module(g, seed=seed).eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (torch.randn(1, *g.input_shape),), buf, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - exporter failures become one line
        raise ConversionError(f"graph could not be exported to ONNX ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    model = onnx.load_from_string(buf.getvalue())
    if path is not None:
        from napbench._io import atomic_write_bytes

        atomic_write_bytes(path, buf.getvalue(), replace=False)
    return model
