"""Message passing on distinct WL colours: exact, and many times less work on whole families.

A sum-aggregation graph layer (``torch_geometric``'s ``GraphConv``: ``relu(W_root x_i +
W_rel sum_{j in N(i)} x_j)``) gives two nodes the same output whenever their inputs and the
multisets of their neighbours' inputs are equal. After ``L`` layers, a node's output is a function
of its Weisfeiler-Lehman colour of round ``L``: its features, its neighbours' features, theirs, and
so on, ``L`` hops out. Benchmark families repeat the same cells in stage after stage and share
most cells between architectures. NB-201's 15,625 graphs have 2.8 million nodes but 31 distinct
node inputs, 1,541 distinct 1-hop colours, 94 thousand 2-hop colours and 1.25 million 4-hop colours.

:func:`colour_refinement` computes the colours of every round, vectorised over all nodes (64-bit
hashes: the chance that two different neighbourhoods share a hash is about ``n^2 / 2^65``, far
below a float rounding). :func:`pooled_graphconv` then runs a ``GraphConv`` stack on one
representative node per colour and round (the linear maps on the colours of the round before,
which are fewer, then gathered and summed), and mean-pools per graph by counts of colours. The
result equals the layer-by-layer computation up to the order of float additions (``1e-6``
relative), and a graph gets the same bits whichever graphs are predicted with it: colour ids
follow the hashes, and sums of three or more terms are added in id order. It is an inference
path: dropout and training need every node.

The colours come from a hash table (``pandas.factorize``, already installed with our
dependencies), which is linear in the number of nodes where ``numpy.unique`` sorts them all.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napbench.errors import InvalidArgumentError
from napbench.zoo.features import PackedGraphs, concat_ranges, map_slices
from napbench.zoo.wl import mix64

__all__ = ["Colours", "colour_refinement", "pooled_graphconv"]

_U = np.uint64

# torch says once per process that sparse CSR tensors are in beta; :func:`_sum_rows` uses only the
# CSR-times-dense product, stable since torch 1.13. A filter for that message alone, not a catch_warnings
# block (which swaps the process's filters and is not thread-safe).
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning)


@dataclass(frozen=True)
class Colours:
    """One round of colour refinement: ``inverse[node]`` is the node's colour id in ``0..k-1`` and
    ``rep[c]`` the first node of colour ``c``. Ids follow the colours' 64-bit hashes (``hash`` is
    sorted), so an order by id does not depend on which other graphs were refined with them."""

    inverse: np.ndarray
    rep: np.ndarray
    hash: np.ndarray

    def __len__(self) -> int:
        return len(self.rep)


def _factorize(h: np.ndarray) -> Colours:
    import pandas as pd

    # a hash table (linear time; numpy's unique sorts all n values), ids in hash order
    codes, uniques = pd.factorize(h, sort=True)
    codes = codes.astype(np.int64, copy=False)
    rep = np.empty(len(uniques), dtype=np.int64)
    rep[codes[::-1]] = np.arange(len(codes) - 1, -1, -1, dtype=np.int64)  # the last write wins: the first node
    return Colours(codes, rep, np.asarray(uniques, dtype=_U))


#: the fewest nodes hashed in one thread of several (:func:`napbench.zoo.features.map_slices`)
_MIN_SLICE = 200_000
_SALT = _U(0x243F6A8885A308D3)


class _Refinement:
    """Colours of rounds ``0..`` of one packed set of graphs, computed on demand and kept. The
    hashes are elementwise, so they are computed on slices of the nodes at once (same values)."""

    def __init__(self, packed: PackedGraphs, bidirectional: bool) -> None:
        src, dst = packed.global_edges
        if bidirectional:
            src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
        order = np.argsort(dst, kind="stable")
        self.nbr = src[order]  # in-neighbours, grouped by receiving node
        n = len(packed.op)
        self.deg = np.bincount(dst, minlength=n).astype(np.int64)
        self.ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(self.deg, out=self.ptr[1:])
        bits = np.ascontiguousarray(packed.numeric, dtype=np.float64).view(_U)
        h = np.empty(n, dtype=_U)

        def node_hash(lo: int, hi: int) -> None:
            x = mix64(packed.op[lo:hi].astype(_U))
            for j in range(bits.shape[1]):
                x = mix64(x ^ bits[lo:hi, j])
            h[lo:hi] = x

        map_slices(n, node_hash, min_slice=_MIN_SLICE)
        self.rounds = [_factorize(h)]
        self.lock = threading.Lock()  # held by the thread adding rounds (see _refinement)

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "lock"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()

    def upto(self, rounds: int) -> list[Colours]:
        while len(self.rounds) <= rounds:
            last = self.rounds[-1]
            h = np.empty(len(last.inverse), dtype=_U)
            new = np.empty_like(h)

            def gather(lo: int, hi: int) -> None:
                np.take(last.hash, last.inverse[lo:hi], out=h[lo:hi])

            def refine(lo: int, hi: int) -> None:
                # wrapping sum of the hashed colours of each node's in-neighbours: an order-free multiset hash
                agg = np.zeros(hi - lo, dtype=_U)
                p0, p1 = int(self.ptr[lo]), int(self.ptr[hi])
                if p1 > p0:
                    m = mix64(h[self.nbr[p0:p1]])
                    has = self.deg[lo:hi] > 0
                    with np.errstate(over="ignore"):
                        agg[has] = np.add.reduceat(m, self.ptr[lo:hi][has] - p0)
                new[lo:hi] = mix64(h[lo:hi] ^ mix64(agg ^ _SALT))

            map_slices(len(h), gather, min_slice=_MIN_SLICE)
            map_slices(len(h), refine, min_slice=_MIN_SLICE)
            self.rounds.append(_factorize(new))
        return self.rounds[: rounds + 1]

    def neighbours(self, nodes: np.ndarray, colours: Colours) -> tuple[np.ndarray, np.ndarray]:
        """``(colour, ptr)``: the ``colours`` of the in-neighbours of ``nodes``, receiver by receiver
        (those of ``nodes[i]`` at ``ptr[i]:ptr[i + 1]``), each receiver's ordered by colour hash (so a
        sum over them is added in the same order whichever node represents a colour)."""
        deg = self.deg[nodes]
        ptr = np.zeros(len(nodes) + 1, dtype=np.int64)
        np.cumsum(deg, out=ptr[1:])
        colour = colours.inverse[self.nbr[concat_ranges(self.ptr[nodes], deg)]]
        # float addition is commutative, so only receivers of three or more messages need an order
        many = np.repeat(deg >= 3, deg)
        if many.any():
            owner = np.repeat(np.arange(len(nodes), dtype=np.int64), deg)
            key = owner[many] * len(colours) + colour[many]
            colour[many] = colour[many][np.argsort(key, kind="stable")]
        return colour, ptr


#: held while a refinement is built (members of an ensemble predicted in threads share one
#: refinement of one packed set of graphs); each refinement has its own lock for adding rounds
_REFINING = threading.Lock()


def _refinement(packed: PackedGraphs, bidirectional: bool, rounds: int = 0) -> _Refinement:
    """The refinement of ``packed`` with at least rounds ``0..rounds`` computed (thread-safe)."""
    # kept on the (immutable) packed graphs, so the encoder and the k-GNN of one ensemble share it.
    # A refinement is stored, and a round appended, only once computed, so reading what is there
    # needs no lock (a thread that needs round 0 does not queue behind one computing round 3)
    ref = packed.__dict__.get("_colour_refinements", {}).get(bidirectional)
    if ref is None:
        with _REFINING:
            store = packed.__dict__.setdefault("_colour_refinements", {})
            if bidirectional not in store:
                store[bidirectional] = _Refinement(packed, bidirectional)
            ref = store[bidirectional]
    if len(ref.rounds) <= rounds:
        with ref.lock:
            ref.upto(rounds)  # nothing to do if another thread computed them meanwhile
    return ref


def colour_refinement(packed: PackedGraphs, rounds: int, *, bidirectional: bool = True) -> list[Colours]:
    """WL colours of rounds ``0..rounds`` of every node (round 0: equal node features; round ``k``:
    equal round-``k-1`` colour and equal multiset of the round-``k-1`` colours of its in-neighbours,
    which are its predecessors and, with ``bidirectional``, its successors)."""
    if not isinstance(rounds, int) or rounds < 0:
        raise InvalidArgumentError(f"rounds is {rounds!r}; expected an int >= 0")
    return _refinement(packed, bidirectional, rounds).rounds[: rounds + 1]


def pooled_graphconv(packed: PackedGraphs, convs: Sequence[torch.nn.Module],
                     first: Callable[[torch.Tensor], torch.Tensor], *, bidirectional: bool = True,
                     colour_layers: int = 3, chunk_nodes: int = 50_000) -> torch.Tensor:
    """``(G, hidden)``: per-graph mean of ``relu(conv(...))`` applied layer after layer, the
    layer-by-layer result of a ``GraphConv`` stack (sum aggregation) in eval mode. ``first`` maps
    raw node features (:meth:`PackedGraphs.node_features_at`) to the first layer's input.

    The first ``colour_layers`` layers run on distinct colours. Later rounds have nearly as many
    colours as nodes (NB-201: 20 % at round 3, 44 % at round 4), so the remaining layers run node by
    node on chunks of whole graphs (about ``chunk_nodes`` nodes each, small enough to stay in cache).
    The split is fixed, not chosen from the graphs at hand, so a graph's result does not depend on
    the graphs predicted with it."""
    from torch_geometric.nn import GraphConv

    for conv in convs:
        if not isinstance(conv, GraphConv) or conv.aggr != "add":
            raise InvalidArgumentError(f"{type(conv).__name__} is not a sum-aggregating GraphConv; expected torch_geometric GraphConv(aggr='add')")
    if not isinstance(colour_layers, int) or colour_layers < 0:
        raise InvalidArgumentError(f"colour_layers is {colour_layers!r}; expected an int >= 0")
    done = min(colour_layers, len(convs))
    ref = _refinement(packed, bidirectional, done)
    rounds = ref.rounds[: done + 1]
    h = first(torch.from_numpy(packed.node_features_at(rounds[0].rep)))
    for k in range(done):
        prev, cur, conv = rounds[k], rounds[k + 1], convs[k]
        nbr, ptr = ref.neighbours(cur.rep, prev)
        h = _gathered_layer(conv, *_linear_first(conv, h), prev.inverse[cur.rep], ptr, nbr)
    sizes = np.diff(packed.node_ptr)
    if done == len(convs):  # mean pool: each graph's count of every final colour, in id (= hash) order
        last = rounds[done]
        gid = np.repeat(np.arange(len(packed), dtype=np.int64), sizes)
        pairs, counts = np.unique(gid * len(last) + last.inverse, return_counts=True)
        g, c = np.divmod(pairs, len(last))
        w = torch.from_numpy((counts / np.maximum(sizes[g], 1)).astype(np.float32))
        out = h.new_zeros((len(packed), h.shape[1]))
        return out.index_add_(0, torch.from_numpy(g), h.index_select(0, torch.from_numpy(c)) * w[:, None])
    return _finish_by_node(packed, ref, h, rounds[done].inverse, convs[done:], chunk_nodes)


def _linear_first(conv: torch.nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``GraphConv``'s two linear maps on per-colour inputs ``h`` (fewer rows than the nodes
    that read them): ``(h W_rel^T, h W_root^T)``, gathered by :func:`_gathered_layer`."""
    return torch.nn.functional.linear(h, conv.lin_rel.weight), conv.lin_root(h)


def _sum_rows(rows: torch.Tensor, ptr: np.ndarray, idx: np.ndarray) -> torch.Tensor:
    """``(len(ptr) - 1, H)``: row ``i`` is the sum of ``rows[idx[ptr[i]:ptr[i + 1]]]``, added in that order.

    A sparse CSR matrix of ones times ``rows`` (one sparse-dense product, threaded): it never builds
    the ``(len(idx), H)`` gathered messages that ``index_select`` + ``index_add_`` would, and is
    about twice as fast on whole families. Each row is summed on its own, in ``idx`` order, so its
    bits do not depend on the other rows (tests/zoo/test_colours.py checks this)."""
    n = len(ptr) - 1
    if len(idx) == 0:
        return rows.new_zeros((n, rows.shape[1]))
    a = torch.sparse_csr_tensor(torch.from_numpy(np.ascontiguousarray(ptr - ptr[0], dtype=np.int64)),
                                torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64)),
                                torch.ones(len(idx), dtype=rows.dtype), size=(n, rows.shape[0]), check_invariants=False)
    return a @ rows


def _gathered_layer(conv: torch.nn.Module, rel: torch.Tensor, root: torch.Tensor, own: np.ndarray, ptr: np.ndarray,
                    nbr: np.ndarray) -> torch.Tensor:
    """``relu(GraphConv)`` of ``len(own)`` receivers: receiver ``i`` reads ``root[own[i]]`` and the
    sum of ``rel[nbr[j]]`` over its messages ``ptr[i] <= j < ptr[i + 1]`` (maps of :func:`_linear_first`)."""
    agg = _sum_rows(rel, ptr, nbr)
    if conv.lin_rel.bias is not None:
        agg += conv.lin_rel.bias
    return torch.relu(agg + root.index_select(0, torch.from_numpy(own)))


def _finish_by_node(packed: PackedGraphs, ref: _Refinement, h: torch.Tensor, inverse: np.ndarray,
                    convs: Sequence[torch.nn.Module], chunk_nodes: int) -> torch.Tensor:
    """The remaining layers node by node (``h`` per colour, ``inverse`` the nodes' colours), mean-pooled.

    The first of them still reads per-colour inputs, so its two linear maps run once per colour and
    are gathered per node and per edge (the colours of the round before are about a fifth of the
    nodes); the layers after it run the convolution node by node. Each node sums its in-neighbours
    (``ref``) in edge order, as ``GraphConv`` does."""
    first, rest = convs[0], convs[1:]
    maps = _linear_first(first, h)  # once for every chunk
    parts = []
    lo = 0
    ends = np.searchsorted(packed.node_ptr, packed.node_ptr[:-1] + max(1, chunk_nodes), side="right") - 1
    while lo < len(packed):
        hi = max(lo + 1, int(ends[lo]))  # whole graphs, about chunk_nodes nodes
        n0, n1 = int(packed.node_ptr[lo]), int(packed.node_ptr[hi])
        ptr = ref.ptr[n0 : n1 + 1]
        nbr = ref.nbr[ptr[0] : ptr[-1]]
        x = _gathered_layer(first, *maps, inverse[n0:n1], ptr, inverse[nbr])
        for conv in rest:
            agg = conv.lin_rel(_sum_rows(x, ptr, nbr - n0))
            x = torch.relu(agg + conv.lin_root(x))
        sizes = np.diff(packed.node_ptr[lo : hi + 1])
        batch = torch.from_numpy(np.repeat(np.arange(hi - lo, dtype=np.int64), sizes))
        pooled = x.new_zeros((hi - lo, x.shape[1])).index_add_(0, batch, x)
        parts.append(pooled / torch.from_numpy(np.maximum(sizes, 1).astype(np.float32))[:, None])
        lo = hi
    return torch.cat(parts)
