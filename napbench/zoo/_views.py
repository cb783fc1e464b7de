"""Graph views predictors read instead of the graphs as converted.

``"as_converted"`` is the graph the frontend made. ``"effective"`` is
:meth:`CompGraph.without_constant_branches <napbench.conversion.graph.CompGraph.without_constant_branches>`:
branches that carry nothing of the input (a ``zero`` and everything computed only from zeros,
e.g. NAS-Bench-201's ``none`` edges and the ops fed only by them) are gone, so two networks
that compute the same function of their input up to constant offsets are one graph, and MACs
count only ops that matter. Only graphs holding a ``zero`` op can change; the others are
passed through untouched.

Pruning is pure Python (about 2-3 ms a graph), so the pruned graphs are kept by canonical
hash: in the process, and on disk in ``<dataset root>/views/effective-<vocabulary>.parquet``
(a cache napbench makes and owns; removing it only costs the time to prune again).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from napbench.errors import InvalidArgumentError
from napbench.zoo._graphs import GraphsLike, dataset_column, is_dataset

#: the views a predictor can read (``graph_view=``)
GRAPH_VIEWS: tuple[str, ...] = ("as_converted", "effective")
#: the graph columns a view replaces (the rest of a row, e.g. family, arch, labels, is kept)
_REPLACED = ("graph_id", "flops", "params", "n_nodes", "nodes", "edges", "outputs")
_LOCK = threading.Lock()
_STORES: dict[Path, _Store] = {}


def check_view(view: str) -> str:
    """``view`` if it is a known graph view; raises InvalidArgumentError otherwise."""
    if view not in GRAPH_VIEWS:
        raise InvalidArgumentError(f"graph view {view!r} is unknown; expected one of {list(GRAPH_VIEWS)}")
    return view


def graph_view(graphs: GraphsLike, view: str, *, root: str | None = None, progress: bool = False) -> GraphsLike:
    """``graphs`` as ``view`` sees them (a dataset stays a dataset, in the same row order).

    ``root`` is the dataset root whose ``views/`` folder keeps pruned graphs between processes
    (None: ``$NAPBENCH_HOME``)."""
    check_view(view)
    if view == "as_converted":
        return graphs
    if not is_dataset(graphs):
        return [g.without_constant_branches() for g in graphs]
    cache = getattr(graphs, "cache", None)
    if cache is not None and "view:effective" in cache:
        return cache["view:effective"]
    out = _effective_dataset(graphs, root=root, progress=progress)
    if cache is not None:
        cache["view:effective"] = out
    return out


def zero_rows(graphs: GraphsLike) -> np.ndarray:
    """Indices of the dataset rows whose graph holds a ``zero`` op (the rows the effective view can change)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    nodes = dataset_column(graphs, "nodes")
    nodes = nodes.combine_chunks() if isinstance(nodes, pa.ChunkedArray) else nodes
    if len(nodes) == 0:
        return np.zeros(0, dtype=np.int64)
    ops = pc.list_flatten(nodes).field("op")
    ops = ops.dictionary_decode() if pa.types.is_dictionary(ops.type) else ops
    hit = np.asarray(pc.equal(ops, "zero").to_numpy(zero_copy_only=False), dtype=bool)
    parents = np.asarray(pc.list_parent_indices(nodes).to_numpy(zero_copy_only=False))
    return np.unique(parents[hit]).astype(np.int64)


def _effective_dataset(ds: Any, *, root: str | None, progress: bool) -> Any:
    import pyarrow as pa

    from napbench.conversion.storage import GRAPH_COLUMNS, graphs_from_arrow, graphs_to_arrow
    from napbench.datasets import GraphDataset, default_root

    rows = zero_rows(ds)
    if not len(rows):
        return ds
    ids = np.asarray(dataset_column(ds, "graph_id").take(pa.array(rows)).to_pylist(), dtype=object)
    store = _store(default_root(root))
    with store.lock:
        distinct, first = np.unique(ids, return_index=True)
        need = [k for k, g in enumerate(distinct) if g not in store.index]
        if need:
            from tqdm.auto import tqdm

            take = rows[first[need]]
            table = ds.table.take(pa.array(take)).select(GRAPH_COLUMNS)
            graphs = graphs_from_arrow(table, validate=False)
            pruned = [g.without_constant_branches() for g in tqdm(graphs, desc="effective graphs", unit="graph", disable=not progress)]
            store.add([distinct[k] for k in need], graphs_to_arrow(pruned))
        where = np.fromiter((store.index[g] for g in ids), dtype=np.int64, count=len(ids))
        new = store.table.take(pa.array(where))
    table = ds.table
    n = table.num_rows
    # position of every row in concat(original column, view column): rows with a zero read the view
    pick = np.arange(n, dtype=np.int64)
    pick[rows] = n + np.arange(len(rows), dtype=np.int64)
    pick_arr = pa.array(pick)
    cols = {}
    for name in table.column_names:
        if name in _REPLACED:
            both = pa.chunked_array(table.column(name).chunks + new.column(name).cast(table.schema.field(name).type).chunks)
            cols[name] = both.take(pick_arr)
        else:
            cols[name] = table.column(name)
    out = pa.table(cols, schema=table.schema)
    return GraphDataset(ds.name, ds.path, out, {**ds.metadata, "graph_view": "effective"})


class _Store:
    """Pruned graphs by the canonical hash of the graph they came from (one Parquet file)."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path, self.lock = path, threading.RLock()
        self.table = None
        self.index: dict[str, int] = {}
        if path.is_file():
            try:
                self.table = pq.read_table(path)
            except Exception:  # noqa: BLE001 - a cache that cannot be read is rebuilt, not trusted
                self.table = None
        if self.table is not None:
            self.index = {k: i for i, k in enumerate(self.table.column("source_id").to_pylist())}

    def add(self, source_ids: list[str], table: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = table.select(list(_REPLACED)).append_column("source_id", pa.array(source_ids, pa.string()))
        base = len(self.index)
        self.table = table if self.table is None else pa.concat_tables([self.table, table], promote_options="permissive")
        self.index.update({k: base + i for i, k in enumerate(source_ids)})
        try:  # the store is ours: written whole to a temporary file, then moved into place
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".effective-", suffix=".parquet")
            os.close(fd)
            try:
                pq.write_table(self.table, tmp)
                os.replace(tmp, self.path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError:
            pass  # a read-only root: the process keeps its pruned graphs in memory


def _store(root: Path) -> _Store:
    from napbench.conversion.vocab import VOCAB_VERSION

    path = Path(root) / "views" / f"effective-{VOCAB_VERSION}.parquet"
    with _LOCK:
        if path not in _STORES:
            _STORES[path] = _Store(path)
        return _STORES[path]
