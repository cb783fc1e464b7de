"""WL subtree features and the kernel ridge on them (napbench.zoo.wl)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from napbench.errors import InvalidArgumentError
from napbench.zoo.wl import WLRidge, wl_labels


def _per_graph(graph: np.ndarray, label: np.ndarray, i: int) -> list[int]:
    return sorted(label[graph == i].tolist())


def test_labels_do_not_depend_on_the_other_graphs(nb201) -> None:
    ds, _ = nb201
    g_all, l_all = wl_labels(ds.subset(list(range(30))), iterations=2)
    g_one, l_one = wl_labels(ds.subset([7]), iterations=2)
    assert _per_graph(g_all, l_all, 7) == _per_graph(g_one, l_one, 0)
    # round 0 is the node labels, one per node per round
    n_nodes = int((g_one == 0).sum()) // 3
    assert len(l_one) == 3 * n_nodes


def test_labels_ignore_node_order_and_tell_cells_apart(nb201) -> None:
    from napbench.zoo.features import PackedGraphs

    ds, _ = nb201
    p = PackedGraphs.from_arrow(ds.subset([5]).table)
    n = len(p.op)
    perm = np.random.default_rng(0).permutation(n)  # new position of each node
    op, num = np.empty_like(p.op), np.empty_like(p.numeric)
    op[perm], num[perm] = p.op, p.numeric
    shuffled = PackedGraphs(op=op, numeric=num, src=perm[p.src], dst=perm[p.dst], node_ptr=p.node_ptr, edge_ptr=p.edge_ptr)
    assert sorted(wl_labels(shuffled)[1].tolist()) == sorted(wl_labels(p)[1].tolist())
    g, lab = wl_labels(ds.subset([5, 6]))
    assert _per_graph(g, lab, 0) != _per_graph(g, lab, 1)
    # reversing every edge changes the subtrees (messages are directed)
    flipped = PackedGraphs(op=p.op, numeric=p.numeric, src=p.dst, dst=p.src, node_ptr=p.node_ptr, edge_ptr=p.edge_ptr)
    assert sorted(wl_labels(flipped)[1].tolist()) != sorted(wl_labels(p)[1].tolist())


def test_ridge_learns_a_substructure_count_and_round_trips(nb201) -> None:
    ds, _ = nb201
    n = len(ds)  # 64
    sub = ds.subset(list(range(n)))
    # a label the kernel can see: how many 3x3 convolutions each graph has
    nodes = sub.table.column("nodes").to_pylist()
    y = np.array([sum(1 for v in g if v["op"] == "conv" and list(v["kernel"] or []) == [3, 3]) for g in nodes], dtype=float)
    assert np.ptp(y) > 0
    m = WLRidge().fit(ds.subset(list(range(40))), y[:40])
    pred = m.predict(ds.subset(list(range(40, n))))
    assert spearmanr(pred, y[40:]).statistic > 0.8  # chance: about 0
    back = WLRidge.from_state(m.state())
    np.testing.assert_allclose(back.predict(ds.subset(list(range(40, n)))), pred, atol=1e-12)


def test_a_perfect_prior_is_left_uncorrected(nb201) -> None:
    ds, y = nb201
    sub = ds.subset(list(range(40)))
    m = WLRidge().fit(sub, y[:40], prior=y[:40])
    assert m.alpha == float("inf") and m.loo_srcc["none"] == pytest.approx(1.0)
    np.testing.assert_array_equal(m.predict(sub, prior=y[:40]), y[:40])


def test_bad_input_is_refused(nb201) -> None:
    ds, y = nb201
    with pytest.raises(InvalidArgumentError, match="expected two equal 1-d arrays"):
        WLRidge().fit(ds.subset([0, 1, 2]), y[:3], prior=y[:2])
    with pytest.raises(InvalidArgumentError, match="not fitted"):
        WLRidge().predict(ds.subset([0]))
    with pytest.raises(InvalidArgumentError, match="iterations"):
        wl_labels(ds.subset([0]), iterations=-1)
