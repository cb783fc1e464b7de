"""Graph adapters: what predictors accept as graphs, and the per-graph facts they read.

``graphs`` is a sequence of :class:`~napbench.conversion.graph.CompGraph` or a
:class:`~napbench.datasets.GraphDataset` (whose Arrow table is read column-wise, without
decoding the graphs: the fast path for whole families).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from napbench.conversion.graph import CompGraph
from napbench.errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from napbench.datasets import GraphDataset

#: what predictors accept as graphs: CompGraphs, or a dataset (read column-wise, fast)
GraphsLike = Union[Sequence[CompGraph], "GraphDataset"]

__all__ = ["GraphsLike", "check_graphs_labels", "dataset_column", "graph_families", "graph_family_of_each", "graph_keys", "graph_totals",
           "is_dataset", "num_graphs"]


def is_dataset(graphs: Any) -> bool:
    """Whether ``graphs`` is a napbench dataset (an Arrow table of graphs) rather than a sequence."""
    if isinstance(graphs, (list, tuple)) or not hasattr(graphs, "metadata"):
        return False
    # a GraphDataset is recognised by its class, which does not take a lazy subset's rows
    return hasattr(type(graphs), "table_key") or hasattr(graphs, "table")


def dataset_column(graphs: Any, name: str) -> Any:
    """The Arrow column ``name`` of the dataset ``graphs`` (a subset reads only this column)."""
    return graphs.column(name) if hasattr(type(graphs), "table_key") else graphs.table.column(name)


_is_dataset = is_dataset  # the name other modules import


def num_graphs(graphs: GraphsLike) -> int:
    """How many graphs ``graphs`` holds."""
    return len(graphs)


def check_graphs_labels(graphs: GraphsLike, y: Any) -> np.ndarray:
    """``y`` as a finite float64 vector matching ``graphs``; raises InvalidArgumentError otherwise."""
    try:
        arr = np.asarray(y, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"labels of type {type(y).__name__} could not be read as floats; expected a 1-D float array") from None
    n = num_graphs(graphs)
    if arr.size != n:
        raise InvalidArgumentError(f"{arr.size} labels for {n} graphs; expected one label per graph")
    if n == 0:
        raise InvalidArgumentError("no graphs to fit; expected at least one labelled graph")
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise InvalidArgumentError(f"{bad} of {n} labels are NaN/inf; expected finite labels (drop unlabelled architectures first)")
    return arr


def take_graphs(graphs: GraphsLike, rows: Sequence[int] | np.ndarray) -> GraphsLike:
    """The graphs at positions ``rows``, in that order (a dataset stays a dataset)."""
    idx = [int(i) for i in rows]
    if not is_dataset(graphs):
        return [graphs[i] for i in idx]
    from napbench.zoo.features import keep_packed, packed_if_cached

    sub = graphs.subset(idx)
    packed = packed_if_cached(graphs)
    if packed is not None:  # the subset's features are rows of the parent's: no second featurisation
        keep_packed(sub, packed.take(idx))
    return sub


def graph_totals(graphs: GraphsLike) -> tuple[np.ndarray, np.ndarray]:
    """Total multiply-adds and parameters per graph (float64 arrays)."""
    if is_dataset(graphs):
        return (
            dataset_column(graphs, "flops").to_numpy(zero_copy_only=False).astype(np.float64),
            dataset_column(graphs, "params").to_numpy(zero_copy_only=False).astype(np.float64),
        )
    return (
        np.array([g.flops for g in graphs], dtype=np.float64),
        np.array([g.params for g in graphs], dtype=np.float64),
    )


def graph_keys(graphs: GraphsLike) -> list[tuple[str | None, str | None]]:
    """``(family, arch)`` of each graph, from its metadata."""
    if is_dataset(graphs):
        return list(zip(dataset_column(graphs, "family").to_pylist(), dataset_column(graphs, "arch").to_pylist()))
    return [(g.meta.get("family"), g.meta.get("arch")) for g in graphs]


def graph_family_of_each(graphs: GraphsLike) -> list[str]:
    """The family of every graph ('unknown' when unset), in order."""
    if is_dataset(graphs):
        return [f or "unknown" for f in dataset_column(graphs, "family").to_pylist()]
    if isinstance(graphs, Sequence):
        return [(g.meta.get("family") if isinstance(g, CompGraph) else None) or "unknown" for g in graphs]
    return ["unknown"] * len(graphs)


def graph_families(graphs: GraphsLike) -> list[str]:
    """Distinct families of ``graphs`` (order of first appearance; 'unknown' when unset)."""
    if is_dataset(graphs):
        fams = dataset_column(graphs, "family").unique().to_pylist()
    elif isinstance(graphs, Sequence):
        fams = [g.meta.get("family") if isinstance(g, CompGraph) else None for g in graphs]
    else:  # e.g. pre-featurised PackedGraphs: no metadata
        fams = [None]
    return list(dict.fromkeys(f or "unknown" for f in fams))
