"""Featurisation of computation graphs for graph neural predictors.

A :class:`~napbench.conversion.graph.CompGraph` becomes a ``torch_geometric`` graph:

* **nodes** keep the CG's order; each node's feature vector (``NUM_FEATURES`` floats) is

  - a one-hot of its op over the vocabulary (``len(OPS)`` entries, in
    :data:`napbench.conversion.vocab.OPS` order), then
  - ``log1p`` of nine numbers (:data:`NUMERIC_FEATURES`): ``c_in`` (channels of the first
    input, 0 for the ``input`` node), ``c_out``, ``h`` and ``w`` (output spatial extent; 1
    where the output has no such axis, since a ``(C,)`` shape is a 1x1 map), ``kernel`` and
    ``stride`` (the largest over spatial dims, 0 for ops without them), ``groups`` (0 for
    ops without a weight), ``flops`` (the node's multiply-adds) and ``params`` (its
    learnable parameters);

* **edges** are the CG's directed data-flow edges ``src -> dst`` (``edge_index`` of shape
  ``(2, E)``); models that want messages both ways add the reversed edges themselves.

The layout is versioned by :data:`FEATURES_VERSION`; a change bumps it, and checkpoints
record it.

Fast path: :class:`PackedGraphs` featurises a list of graphs once into flat NumPy arrays
(one pass over the nodes, no per-graph tensors) and cuts mini-batches out of them as
``torch_geometric.data.Batch`` objects by slicing, so training loops never re-featurise
(several thousand NB-201 graphs per second on one core). :func:`graph_to_data` is the
one-graph convenience form.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Final, TypeVar

import numpy as np

from napbench.conversion.graph import CompGraph, node_flops, node_params
from napbench.conversion.vocab import OP_INDEX, OPS
from napbench.errors import InvalidArgumentError, SchemaError, UnsupportedOpError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from torch_geometric.data import Batch, Data

FEATURES_VERSION: Final[str] = "1"
#: the numeric node features, in column order after the one-hot block (all log1p-scaled)
NUMERIC_FEATURES: Final[tuple[str, ...]] = ("c_in", "c_out", "h", "w", "kernel", "stride", "groups", "flops", "params")
NUM_OPS: Final[int] = len(OPS)
NUM_FEATURES: Final[int] = NUM_OPS + len(NUMERIC_FEATURES)
#: names of every feature column, one-hot ops first
FEATURE_NAMES: Final[tuple[str, ...]] = tuple(f"op={o}" for o in OPS) + NUMERIC_FEATURES

_WEIGHTED_GROUP_OPS = frozenset({"conv", "conv_transpose"})


def _node_rows(g: CompGraph, ops: list[int], num: list[tuple[int, ...]]) -> None:
    """Append one (op index) and one numeric tuple per node of ``g`` (hot loop, kept flat)."""
    op_index = OP_INDEX
    for n in g.nodes:
        try:
            ops.append(op_index[n.op])
        except KeyError:
            raise UnsupportedOpError(n.op, "napbench features") from None
        out = n.output_shape
        ins = n.input_shapes
        c_out = out[0] if out else 0
        h = out[1] if len(out) > 1 else 1
        w = out[2] if len(out) > 2 else 1
        c_in = ins[0][0] if ins and ins[0] else 0
        k = max(n.kernel) if n.kernel else 0
        s = max(n.stride) if n.stride else 0
        grp = n.groups if n.op in _WEIGHTED_GROUP_OPS else (1 if n.weight_shape else 0)
        num.append((c_in, c_out, h, w, k, s, grp, node_flops(n), node_params(n)))


T = TypeVar("T")

#: the fewest graphs :meth:`PackedGraphs.from_arrow` featurises in one thread of several
_MIN_SLICE = 4096


@dataclass(frozen=True)
class PackedGraphs:
    """Featurised graphs packed into flat arrays (the fast batch path).

    Attributes:
        op: op index per node, all graphs concatenated, ``(N,)`` int64.
        numeric: raw (un-logged) numeric features per node, ``(N, 9)`` float64.
        src, dst: edge endpoints, *local* to their graph, all graphs concatenated.
        node_ptr: ``(G+1,)`` offsets of each graph's nodes.
        edge_ptr: ``(G+1,)`` offsets of each graph's edges.
    """

    op: np.ndarray
    numeric: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    node_ptr: np.ndarray
    edge_ptr: np.ndarray

    @classmethod
    def from_graphs(cls, graphs: Sequence[CompGraph]) -> PackedGraphs:
        """Featurise ``graphs`` (one pass over their nodes)."""
        if len(graphs) == 0:
            raise InvalidArgumentError("no graphs to featurise; expected at least one CompGraph")
        ops: list[int] = []
        num: list[tuple[int, ...]] = []
        src: list[int] = []
        dst: list[int] = []
        n_nodes = np.empty(len(graphs), dtype=np.int64)
        n_edges = np.empty(len(graphs), dtype=np.int64)
        for i, g in enumerate(graphs):
            if not isinstance(g, CompGraph):
                raise InvalidArgumentError(f"item {i} is a {type(g).__name__}; expected a CompGraph")
            _node_rows(g, ops, num)
            e0 = len(src)
            for d, n in enumerate(g.nodes):
                for s in n.inputs:
                    src.append(s)
                    dst.append(d)
            n_nodes[i] = len(g.nodes)
            n_edges[i] = len(src) - e0
        node_ptr = np.zeros(len(graphs) + 1, dtype=np.int64)
        edge_ptr = np.zeros(len(graphs) + 1, dtype=np.int64)
        np.cumsum(n_nodes, out=node_ptr[1:])
        np.cumsum(n_edges, out=edge_ptr[1:])
        return cls(
            op=np.asarray(ops, dtype=np.int64),
            numeric=np.asarray(num, dtype=np.float64).reshape(-1, len(NUMERIC_FEATURES)),
            src=np.asarray(src, dtype=np.int64),
            dst=np.asarray(dst, dtype=np.int64),
            node_ptr=node_ptr,
            edge_ptr=edge_ptr,
        )

    @classmethod
    def concat(cls, parts: Sequence[PackedGraphs]) -> PackedGraphs:
        """The graphs of ``parts``, one after another."""
        if not parts:
            raise InvalidArgumentError("no packed graphs to concatenate; expected at least one part")
        if len(parts) == 1:
            return parts[0]

        def ptr(name: str) -> np.ndarray:
            out, shift = [np.zeros(1, dtype=np.int64)], 0
            for p in parts:
                a = getattr(p, name)
                out.append(a[1:] + shift)
                shift += int(a[-1])
            return np.concatenate(out)

        return cls(op=np.concatenate([p.op for p in parts]), numeric=np.concatenate([p.numeric for p in parts]),
                   src=np.concatenate([p.src for p in parts]), dst=np.concatenate([p.dst for p in parts]),
                   node_ptr=ptr("node_ptr"), edge_ptr=ptr("edge_ptr"))

    @classmethod
    def from_arrow(cls, table: pa.Table, *, workers: int | None = None) -> PackedGraphs:
        """Featurise the graphs of a table in the napbench Parquet schema without decoding
        them into CompGraphs (vectorised over all nodes; the fastest path).

        Per-node FLOPs and parameters follow :func:`~napbench.conversion.graph.node_flops`
        and :func:`~napbench.conversion.graph.node_params` (tests check both paths agree).
        Shape products are float64 (exact below 2**53, as in :meth:`from_graphs`).

        Large tables are featurised in ``workers`` slices of rows at once, in threads (Arrow and
        numpy release the GIL; default: one per CPU core, slices of at least 4,096 graphs); every
        value is computed per node or per graph, so the result does not depend on ``workers``.
        """
        parts = map_slices(table.num_rows, lambda lo, hi: cls._from_arrow(table.slice(lo, hi - lo)), min_slice=_MIN_SLICE,
                           workers=workers)
        return cls.concat(parts)

    @classmethod
    def _from_arrow(cls, table: pa.Table) -> PackedGraphs:
        import pyarrow as pa

        from napbench.conversion.vocab import NORMS

        missing = [c for c in ("nodes", "edges") if c not in table.column_names]
        if missing:
            raise SchemaError(f"table lacks graph column(s) {missing}; expected the napbench Parquet schema")
        if table.num_rows == 0:
            raise InvalidArgumentError("no graphs to featurise; expected at least one row")
        # only the node fields used below are gathered (never the names, paddings...)
        node_ptr, parts = _list_of_struct_fields(
            table.column("nodes"),
            ("op", "output_shape", "weight_shape", "input_shapes", "kernel", "stride", "groups", "bias", "inner"),
        )
        ops = []
        for ops_arr in parts.pop("op"):  # one lookup table per chunk (dictionaries may differ)
            if pa.types.is_dictionary(ops_arr.type):
                lut = np.array([_op_id(o) for o in ops_arr.dictionary.to_pylist()], dtype=np.int64)
                ops.append(lut[ops_arr.indices.to_numpy(zero_copy_only=False)] if len(lut) else np.zeros(0, np.int64))
            else:
                ops.append(np.array([_op_id(o) for o in ops_arr.to_pylist()], dtype=np.int64))
        op = np.concatenate(ops)
        n = op.size
        fields = {k: v[0] if len(v) == 1 else pa.concat_arrays(v) for k, v in parts.items()}
        out = _Lists.of(fields["output_shape"])
        ws = _Lists.of(fields["weight_shape"])
        in0 = _Lists.first_of_nested(fields["input_shapes"])
        groups = fields["groups"].to_numpy(zero_copy_only=False)
        bias = fields["bias"].to_numpy(zero_copy_only=False).astype(bool)
        has_w = ws.lengths > 0
        is_conv = op == OP_INDEX["conv"]
        conv_lin = is_conv | (op == OP_INDEX["linear"])
        conv_t = op == OP_INDEX["conv_transpose"]
        # flops (node_flops): conv/linear prod(out) * prod(w[1:]); conv_transpose prod(in0) *
        # prod(w[1:]); matmul prod(out) * inner
        flops = np.zeros(n)
        r = np.flatnonzero(conv_lin & has_w)
        flops[r] = out.prod(r) * ws.prod(r, start=1)
        r = np.flatnonzero(conv_t & has_w)
        flops[r] = in0.prod(r) * ws.prod(r, start=1)
        r = np.flatnonzero(op == OP_INDEX["matmul"])
        if r.size:
            inner = fields["inner"].to_numpy(zero_copy_only=False)[r] if "inner" in fields else in0.last(1.0)[r]
            flops[r] = out.prod(r) * inner
        # params (node_params): prod(w), plus the bias where there is one
        params = np.zeros(n)
        r = np.flatnonzero(has_w)
        params[r] = ws.prod(r)
        r = np.flatnonzero(bias)
        if r.size:
            add = out.item(0, 1.0, r)  # the canonical feature axis (1 without one)
            wr = has_w[r]
            m = wr & conv_lin[r]
            add[m] = ws.item(0, 0.0, r[m])
            m = wr & conv_t[r]
            add[m] = ws.item(1, 0.0, r[m]) * groups[r[m]]
            m = wr & np.isin(op[r], [OP_INDEX[o] for o in NORMS])
            add[m] = params[r[m]]  # prod(w), as computed just above
            params[r] += add
        numeric = _columns(
            in0.item(0, 0.0),
            out.item(0, 0.0),
            out.item(1, 1.0),
            out.item(2, 1.0),
            _Lists.of(fields["kernel"]).max(),
            _Lists.of(fields["stride"]).max(),
            np.where(is_conv | conv_t, groups, has_w),
            flops,
            params,
        )
        edge_ptr, e_parts = _list_of_struct_fields(table.column("edges"), ("src", "dst"))
        src, dst = (
            np.concatenate([a.to_numpy(zero_copy_only=False) for a in e_parts[k]]).astype(np.int64) for k in ("src", "dst")
        )
        return cls(op=op, numeric=numeric, src=src, dst=dst, node_ptr=node_ptr, edge_ptr=edge_ptr)

    def __len__(self) -> int:
        return len(self.node_ptr) - 1

    def take(self, rows: Sequence[int] | np.ndarray) -> PackedGraphs:
        """The graphs at positions ``rows``, in that order."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise InvalidArgumentError(f"graph index out of range; expected 0 <= i < {len(self)}")
        nlo, n_per = self.node_ptr[idx], np.diff(self.node_ptr)[idx]
        elo, e_per = self.edge_ptr[idx], np.diff(self.edge_ptr)[idx]
        node_rows, edge_rows = concat_ranges(nlo, n_per), concat_ranges(elo, e_per)
        node_ptr, edge_ptr = np.zeros(idx.size + 1, dtype=np.int64), np.zeros(idx.size + 1, dtype=np.int64)
        np.cumsum(n_per, out=node_ptr[1:])
        np.cumsum(e_per, out=edge_ptr[1:])
        return PackedGraphs(op=self.op[node_rows], numeric=self.numeric[node_rows], src=self.src[edge_rows],
                            dst=self.dst[edge_rows], node_ptr=node_ptr, edge_ptr=edge_ptr)

    def node_features(self, lo: int, hi: int) -> np.ndarray:
        """Feature matrix ``(hi-lo, NUM_FEATURES)`` of the flat node range ``[lo, hi)``."""
        return self.node_features_at(np.arange(lo, hi))

    def node_features_at(self, nodes: np.ndarray) -> np.ndarray:
        """Feature matrix ``(len(nodes), NUM_FEATURES)`` (float32) of the flat node indices ``nodes``."""
        x = np.zeros((len(nodes), NUM_FEATURES), dtype=np.float32)
        x[np.arange(len(nodes)), self.op[nodes]] = 1.0
        x[:, NUM_OPS:] = np.log1p(self.numeric[nodes])
        return x

    @cached_property
    def global_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """``(src, dst)`` of every edge as flat node indices (over all graphs), computed once."""
        shift = np.repeat(self.node_ptr[:-1], np.diff(self.edge_ptr))
        return self.src + shift, self.dst + shift

    def batch(self, indices: Sequence[int] | np.ndarray | None = None) -> Batch:
        """A ``torch_geometric`` :class:`~torch_geometric.data.Batch` of the graphs ``indices``
        (all graphs when None), in that order.

        The batch carries ``x``, ``edge_index`` (global node ids), ``batch`` and ``ptr``.
        """
        import torch
        from torch_geometric.data import Batch

        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise InvalidArgumentError("empty batch; expected at least one graph index")
        if idx.min() < 0 or idx.max() >= len(self):
            raise InvalidArgumentError(f"graph index out of range; expected 0 <= i < {len(self)}")
        nlo, nhi = self.node_ptr[idx], self.node_ptr[idx + 1]
        elo, ehi = self.edge_ptr[idx], self.edge_ptr[idx + 1]
        n_per, e_per = nhi - nlo, ehi - elo
        node_rows = concat_ranges(nlo, n_per)
        edge_rows = concat_ranges(elo, e_per)
        ptr = np.zeros(idx.size + 1, dtype=np.int64)
        np.cumsum(n_per, out=ptr[1:])
        shift = np.repeat(ptr[:-1], e_per)
        x = self.node_features_at(node_rows)
        edge_index = np.stack([self.src[edge_rows] + shift, self.dst[edge_rows] + shift])
        return Batch(
            x=torch.from_numpy(x),
            edge_index=torch.from_numpy(edge_index),
            batch=torch.from_numpy(np.repeat(np.arange(idx.size, dtype=np.int64), n_per)),
            ptr=torch.from_numpy(ptr),
        )


_CACHE_KEY = "napbench.zoo.features.packed"


def pack(graphs: Sequence[CompGraph] | PackedGraphs | object) -> PackedGraphs:
    """Featurise ``graphs``: CompGraphs, a napbench dataset (its table directly, once per dataset
    object: kept in the dataset's ``cache``) or already packed graphs."""
    from napbench.zoo._graphs import is_dataset

    if isinstance(graphs, PackedGraphs):
        return graphs
    if is_dataset(graphs):
        packed = packed_if_cached(graphs)
        if packed is None:
            packed = PackedGraphs.from_arrow(graphs.table)  # type: ignore[attr-defined]
            keep_packed(graphs, packed)
        return packed
    return PackedGraphs.from_graphs(list(graphs))  # type: ignore[call-overload]


def packed_if_cached(graphs: object) -> PackedGraphs | None:
    """The packed features :func:`pack` already keeps for the dataset ``graphs``, or None (also when
    the dataset's table was replaced since)."""
    cache = getattr(graphs, "cache", None)
    entry = cache.get(_CACHE_KEY) if isinstance(cache, dict) else None
    return entry[1] if entry is not None and entry[0] is _table_key(graphs) else None


def _table_key(graphs: object) -> object:
    # a subset's rows are taken lazily; its key survives that (GraphDataset.table_key)
    key = getattr(graphs, "table_key", None)
    return key() if callable(key) else getattr(graphs, "table", None)


def keep_packed(graphs: object, packed: PackedGraphs) -> None:
    """Record ``packed`` as the features of the dataset ``graphs`` (e.g. taken from its parent's)."""
    cache = getattr(graphs, "cache", None)
    if isinstance(cache, dict) and len(packed) == len(graphs):  # type: ignore[arg-type]
        cache[_CACHE_KEY] = (_table_key(graphs), packed)


def _op_id(op: str) -> int:
    try:
        return OP_INDEX[op]
    except KeyError:
        raise UnsupportedOpError(op, "napbench features") from None


@dataclass
class _Lists:
    """One small int list per node (a shape), as flat values + start + length (vectorised helpers).

    The helpers work on the flat values directly (gathers and segment reductions, never a
    padded matrix); ``rows`` picks some lists (ascending indices), all lists when None.
    """

    values: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    #: the lists lie back to back in ``values`` (a list array's own lists)
    tiled: bool = False

    @classmethod
    def of(cls, arr: pa.ListArray) -> _Lists:
        off = arr.offsets.to_numpy()
        return cls(arr.values.to_numpy(zero_copy_only=False), off[:-1], np.diff(off), tiled=True)

    @classmethod
    def first_of_nested(cls, arr: pa.ListArray) -> _Lists:
        """The first inner list of each outer list (empty where the outer list is empty)."""
        outer = arr.offsets.to_numpy()
        inner = arr.values.offsets.to_numpy()
        vals = arr.values.values.to_numpy(zero_copy_only=False)
        has = outer[1:] > outer[:-1]
        first = outer[:-1]  # a valid index into inner even where the outer list is empty
        starts = inner[first]
        lengths = np.where(has, inner.take(first + 1, mode="clip") - starts, 0)
        return cls(vals, starts, lengths)

    def _rows(self, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return (self.starts, self.lengths) if rows is None else (self.starts[rows], self.lengths[rows])

    @cached_property
    def _f64(self) -> np.ndarray:
        return self.values.astype(np.float64)

    def item(self, k: int, default: float, rows: np.ndarray | None = None) -> np.ndarray:
        """Element ``k`` of each list as float64, ``default`` where the list is shorter."""
        starts, lengths = self._rows(rows)
        if self.values.size == 0:
            return np.full(starts.size, default)
        got = self.values.take(starts + k if k else starts, mode="clip")  # clipped where absent
        return np.where(lengths > k, got, default)

    def last(self, default: float) -> np.ndarray:
        ok = self.lengths > 0
        idx = np.where(ok, self.starts + self.lengths - 1, 0)
        return np.where(ok, self.values[idx] if self.values.size else 0.0, default)

    def prod(self, rows: np.ndarray | None = None, *, start: int = 0) -> np.ndarray:
        """float64 product of each list from element ``start`` on (1.0 where nothing is left)."""
        starts, lengths = self._rows(rows)
        if start == 0:
            return _segment_reduce(np.multiply, self._f64, starts, lengths, 1.0, tiled=self.tiled and rows is None)
        return _segment_reduce(np.multiply, self._f64, starts + start, lengths - start, 1.0)

    def max(self) -> np.ndarray:
        """Largest element of each list, at least 0 (0 for an empty list)."""
        return np.maximum(_segment_reduce(np.maximum, self.values, self.starts, self.lengths, 0, tiled=self.tiled), 0)


def _segment_reduce(
    ufunc: np.ufunc, values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, empty: float, *, tiled: bool = False
) -> np.ndarray:
    """``ufunc.reduce(values[s:s+l])`` for each (s, l), ``empty`` where ``l <= 0``.

    The non-empty segments must be ascending and disjoint (list slices are). One
    ``ufunc.reduceat`` over the interleaved starts and ends does them all; the results at the
    ends (which reduce the gaps between segments) are dropped. ``tiled``: the non-empty
    segments lie back to back (a list array's own slices), so their starts alone suffice.
    """
    ok = lengths > 0
    full = bool(ok.all())
    s = starts if full else starts[ok]
    dtype = np.result_type(values.dtype, type(empty))
    if s.size == 0:
        return np.full(starts.size, empty, dtype=dtype)
    if tiled:
        last = starts.size - 1 if full else starts.size - 1 - int(np.argmax(ok[::-1]))
        lo, hi = int(s[0]), int(starts[last] + lengths[last])
        red = ufunc.reduceat(values[lo:hi], s - lo)
    else:
        bounds = np.empty(2 * s.size, dtype=np.intp)
        bounds[0::2] = s
        bounds[1::2] = s + (lengths if full else lengths[ok])
        if bounds[-1] >= values.size:  # the last segment runs to the end of values
            bounds = bounds[:-1]
        with np.errstate(over="ignore", invalid="ignore"):  # a gap's result (dropped) may overflow
            red = ufunc.reduceat(values, bounds)[0::2]
    if full:
        return red.astype(dtype, copy=False)
    out = np.full(starts.size, empty, dtype=dtype)
    out[ok] = red
    return out


def _columns(*cols: np.ndarray, block: int = 16384) -> np.ndarray:
    """The float64 matrix whose columns are ``cols`` (C order), filled block by block of rows
    so that each block stays in cache while its columns are written (one pass over memory)."""
    n = cols[0].size
    out = np.empty((n, len(cols)))
    for lo in range(0, n, block):
        rows = out[lo : lo + block]
        for j, c in enumerate(cols):
            rows[:, j] = c[lo : lo + block]
    return out


def _list_of_struct_fields(column: pa.ChunkedArray, names: Sequence[str]) -> tuple[np.ndarray, dict[str, list[pa.Array]]]:
    """The ``(rows+1,)`` int64 offsets (from 0) of a ``list<struct>`` column and, per chunk,
    the items' struct fields ``names`` (those the struct has), without combining the chunks
    of the other fields."""
    counts = [np.zeros(1, dtype=np.int64)]
    parts: dict[str, list[pa.Array]] = {}
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        off = chunk.offsets.to_numpy()
        lo, hi = int(off[0]), int(off[-1])
        counts.append(np.diff(off).astype(np.int64))
        items = dict(zip([f.name for f in chunk.type.value_type], chunk.values.flatten()))
        for k in names:
            if k in items:
                parts.setdefault(k, []).append(items[k].slice(lo, hi - lo))
    return np.cumsum(np.concatenate(counts)), parts


def map_slices(n: int, fn: Callable[[int, int], T], *, min_slice: int, workers: int | None = None) -> list[T]:
    """``[fn(lo, hi), ...]`` over consecutive slices covering ``range(n)``, in order, run in threads
    (numpy and Arrow release the GIL). ``workers`` slices (default: one per CPU core, each of at
    least ``min_slice`` rows); never an empty slice, except the one slice of an empty range."""
    import os

    if workers is None:
        workers = min(os.cpu_count() or 1, n // min_slice)
    workers = max(1, min(workers, n))
    if workers == 1:
        return [fn(0, n)]
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, n, workers + 1).round().astype(np.int64).tolist()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="napbench-slices") as pool:
        return list(pool.map(fn, bounds[:-1], bounds[1:]))


def distinct_in_order(keys: np.ndarray, *, axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, position)``: the index of the first occurrence of each distinct key (rows of
    ``keys`` with ``axis=0``), in the keys' order, and each key's position in ``rows``."""
    _, first, inverse = np.unique(keys, axis=axis, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.reshape(-1)]


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s+l)`` for each (s, l), vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offs = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=offs[1:])
    return np.repeat(starts - offs, lengths) + np.arange(total, dtype=np.int64)


def node_features(g: CompGraph) -> np.ndarray:
    """The ``(len(g), NUM_FEATURES)`` float32 node feature matrix of one graph."""
    p = PackedGraphs.from_graphs([g])
    return p.node_features(0, len(g))


def graph_to_data(g: CompGraph) -> Data:
    """One graph as a ``torch_geometric`` :class:`~torch_geometric.data.Data` (``x``, ``edge_index``)."""
    import torch
    from torch_geometric.data import Data

    edges = g.edges
    ei = np.array(edges, dtype=np.int64).T.reshape(2, len(edges))
    return Data(x=torch.from_numpy(node_features(g)), edge_index=torch.from_numpy(ei), num_nodes=len(g))


def graphs_to_batch(graphs: Sequence[CompGraph]) -> Batch:
    """All ``graphs`` as one ``Batch`` (featurise + pack in one go)."""
    return PackedGraphs.from_graphs(graphs).batch()
