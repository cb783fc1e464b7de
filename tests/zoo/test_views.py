"""Graph views: a dataset read through its effective graphs, kept by hash in the process and on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import napbench.zoo._views as views
from napbench.conversion.graph import CompGraph
from napbench.errors import InvalidArgumentError
from napbench.zoo._views import graph_view, zero_rows


def test_effective_view_of_a_dataset_replaces_the_rows_with_zeros(tmp_path: Path, nb201) -> None:
    ds, y = nb201
    rows = zero_rows(ds)
    graphs = ds.graphs
    assert sorted(rows.tolist()) == [i for i, g in enumerate(graphs) if "zero" in g.op_counts()]
    assert 0 < len(rows) < len(ds)
    v = graph_view(ds, "effective", root=str(tmp_path))
    assert len(v) == len(ds) and v.archs == ds.archs
    np.testing.assert_array_equal(v.labels(), y)
    ids, old_ids = v.column("graph_id").to_pylist(), ds.column("graph_id").to_pylist()
    flops = v.column("flops").to_pylist()
    for i, g in enumerate(graphs):
        e = g.without_constant_branches()
        assert ids[i] == e.canonical_hash and flops[i] == e.flops
        if i not in rows:
            assert ids[i] == old_ids[i]
    assert v.graphs[int(rows[0])].canonical_hash == ids[int(rows[0])]  # the stored rows decode to the effective graphs
    assert graph_view(ds, "effective", root=str(tmp_path)) is v  # kept with the dataset object


def test_pruned_graphs_are_kept_on_disk_and_read_back(tmp_path: Path, nb201, monkeypatch: pytest.MonkeyPatch) -> None:
    ds, _ = nb201
    first = graph_view(ds.subset(list(range(len(ds)))), "effective", root=str(tmp_path))
    store = tmp_path / "views"
    assert [p.name for p in store.iterdir()] == ["effective-2.0.parquet"]
    views._STORES.clear()  # a new process: only the file is left

    def fail(self: CompGraph) -> CompGraph:
        raise AssertionError("pruned again instead of read from the store")

    monkeypatch.setattr(CompGraph, "without_constant_branches", fail)
    again = graph_view(ds.subset(list(range(len(ds)))), "effective", root=str(tmp_path))
    assert again.column("graph_id").to_pylist() == first.column("graph_id").to_pylist()
    assert again.table.column("nodes").to_pylist() == first.table.column("nodes").to_pylist()


def test_views_of_lists_unknown_views_and_datasets_without_zeros(tmp_path: Path, nb201) -> None:
    ds, _ = nb201
    assert graph_view(ds, "as_converted") is ds
    gs = ds.graphs[:5]
    assert [g.canonical_hash for g in graph_view(gs, "effective")] == [g.without_constant_branches().canonical_hash for g in gs]
    plain = ds.subset([i for i in range(len(ds)) if i not in set(zero_rows(ds).tolist())])
    assert graph_view(plain, "effective", root=str(tmp_path)) is plain
    with pytest.raises(InvalidArgumentError, match="graph view 'pruned' is unknown; expected one of"):
        graph_view(ds, "pruned")
