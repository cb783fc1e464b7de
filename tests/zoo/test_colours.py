"""Message passing on distinct WL colours equals the layer-by-layer computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napbench.conversion import from_torch
from napbench.errors import InvalidArgumentError
from napbench.zoo._graphs import graph_family_of_each, graph_totals, is_dataset, take_graphs
from napbench.zoo.colours import colour_refinement, pooled_graphconv
from napbench.zoo.features import NUM_FEATURES, PackedGraphs, pack, packed_if_cached
from napbench.zoo.gennape.encoder import GraphEncoder
from napbench.zoo.kgnn import KGNN


def _user_graphs() -> list:
    torch.manual_seed(0)
    small = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    wide = nn.Sequential(nn.Conv2d(3, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 3, groups=16),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    return [from_torch(small, (3, 16, 16)), from_torch(wide, (3, 24, 24))]


def _layer_by_layer(packed: PackedGraphs, convs: nn.ModuleList, bidirectional: bool) -> torch.Tensor:
    from torch_geometric.nn import global_mean_pool

    b = packed.batch()
    ei = torch.cat([b.edge_index, b.edge_index.flip(0)], 1) if bidirectional else b.edge_index
    h = b.x
    for conv in convs:
        h = torch.relu(conv(h, ei))
    return global_mean_pool(h, b.batch, size=b.num_graphs)


@pytest.mark.parametrize(("bidirectional", "colour_layers"), [(True, 3), (True, 2), (True, 0), (False, 3), (False, 1)])
def test_pooled_graphconv_equals_layer_by_layer(nb201, bidirectional: bool, colour_layers: int) -> None:
    from torch_geometric.nn import GraphConv

    ds, _ = nb201
    graphs = [*ds.graphs[:20], *_user_graphs(), ds.graphs[3]]  # a repeated graph and two unlike it
    packed = PackedGraphs.from_graphs(graphs)
    torch.manual_seed(1)
    convs = nn.ModuleList([GraphConv(NUM_FEATURES if i == 0 else 16, 16) for i in range(3)])
    with torch.no_grad():
        fast = pooled_graphconv(packed, convs, lambda x: x, bidirectional=bidirectional, colour_layers=colour_layers, chunk_nodes=300)
        ref = _layer_by_layer(packed, convs, bidirectional)
    np.testing.assert_allclose(fast.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(fast[3].numpy(), fast[-1].numpy())


def test_colours_are_shared_by_equal_neighbourhoods_only(nb201) -> None:
    ds, _ = nb201
    g = ds.graphs[0]
    packed = PackedGraphs.from_graphs([g, g, *_user_graphs()])
    rounds = colour_refinement(packed, 3)
    n = len(g)
    for c in rounds:  # two copies of one graph: node by node the same colours
        np.testing.assert_array_equal(c.inverse[:n], c.inverse[n : 2 * n])
        assert len(c) == len(np.unique(c.inverse)) and (c.inverse[c.rep] == np.arange(len(c))).all()
    counts = [len(c) for c in rounds]
    assert counts == sorted(counts) and counts[0] < counts[-1]  # refinement only splits colours
    # round 0 is exactly "equal features"
    feats = np.concatenate([packed.op[:, None].astype(float), packed.numeric], 1)
    assert len(rounds[0]) == len(np.unique(feats, axis=0))
    with pytest.raises(InvalidArgumentError, match="rounds"):
        colour_refinement(packed, -1)


def test_a_non_sum_aggregator_is_refused(nb201) -> None:
    from torch_geometric.nn import GraphConv

    ds, _ = nb201
    with pytest.raises(InvalidArgumentError, match="sum-aggregating GraphConv"):
        pooled_graphconv(PackedGraphs.from_graphs(ds.graphs[:2]), [GraphConv(NUM_FEATURES, 4, aggr="mean")], lambda x: x)


def test_encoder_and_kgnn_predict_as_their_forward(nb201) -> None:
    ds, _ = nb201
    packed = PackedGraphs.from_graphs([*ds.graphs[:12], *_user_graphs(), ds.graphs[4]])
    torch.manual_seed(2)
    enc = GraphEncoder(num_ops=NUM_FEATURES - 9, hidden=16, gnn_layers=2, heads=2, max_attention_nodes=24).eval()
    with torch.no_grad():
        fast = enc.embed_packed(packed, batch_size=5)  # NB-201 graphs are strided to 24 nodes, the user graphs are not
        ref = enc(packed.batch())
    np.testing.assert_allclose(fast.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(fast[4].numpy(), fast[-1].numpy())  # one attention input, computed once
    with pytest.raises(InvalidArgumentError, match="eval mode"):
        enc.train().embed_packed(packed)
    kg = KGNN(hidden=8, layers=3)
    kg.reset_parameters(0)
    kg.eval()
    with torch.no_grad():
        ref = kg(packed.batch()).double().numpy() * float(kg.y_std) + float(kg.y_mean)
    np.testing.assert_allclose(kg.predict(packed), ref, rtol=1e-4, atol=1e-5)


def test_a_dataset_is_packed_once_and_its_subsets_reuse_the_rows(nb201) -> None:
    ds, _ = nb201
    ds = ds.subset(range(len(ds)))  # a fresh object: an empty cache
    assert packed_if_cached(ds) is None
    p = pack(ds)
    assert pack(ds) is p and packed_if_cached(ds) is p
    rows = [7, 2, 2, 30]
    sub = take_graphs(ds, rows)
    fresh = PackedGraphs.from_arrow(ds.table.take(rows))
    kept = packed_if_cached(sub)
    assert kept is not None
    for f in ("op", "numeric", "src", "dst", "node_ptr", "edge_ptr"):
        np.testing.assert_array_equal(getattr(kept, f), getattr(fresh, f), err_msg=f)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        p.take([len(ds)])
    ds.table = ds.table.slice(0, 5)  # a replaced table is packed again, not served stale
    assert packed_if_cached(ds) is None and len(pack(ds)) == 5


def test_a_subset_takes_its_graph_rows_only_when_they_are_read(nb201) -> None:
    ds, _ = nb201
    rows = [9, 0, 4, 4]
    sub = ds.subset(rows)
    eager = ds.table.take(rows)
    assert len(sub) == 4 and is_dataset(sub)
    assert graph_family_of_each(sub) == eager.column("family").to_pylist()
    np.testing.assert_array_equal(graph_totals(sub)[0], eager.column("flops").to_numpy())
    np.testing.assert_array_equal(sub.labels(), ds.labels()[rows])
    assert "table" not in sub.__dict__  # none of the above took the nested graph columns
    assert sub.subset([3, 0]).table.equals(ds.table.take([4, 9]))  # a subset of a subset: rows of the first parent
    p = pack(sub)
    assert packed_if_cached(sub) is p
    assert sub.table.equals(eager)  # taken on first use
    assert packed_if_cached(sub) is p  # the same rows: the packed features stay valid
    for bad in ([len(ds)], [-1]):
        with pytest.raises(InvalidArgumentError, match="out of range"):
            ds.subset(bad)
    import pickle

    lazy = ds.subset(rows)
    blob = pickle.dumps(lazy)
    assert "table" not in lazy.__dict__ and len(blob) < len(pickle.dumps(ds.table)) / 2  # its own rows travel, not the parent's
    back = pickle.loads(blob)
    assert back.table.equals(eager) and len(back) == 4 and back.labels().tolist() == ds.labels()[rows].tolist()


@pytest.mark.parametrize("colour_layers", [4, 2, 0])  # all layers on colours, the last ones node by node, all node by node
def test_a_graph_gets_the_same_bits_whichever_graphs_come_with_it(nb201, colour_layers: int) -> None:
    from torch_geometric.nn import GraphConv

    ds, _ = nb201
    torch.manual_seed(3)
    convs = nn.ModuleList([GraphConv(NUM_FEATURES if i == 0 else 16, 16) for i in range(4)])
    alone = PackedGraphs.from_graphs(ds.graphs[10:14])
    crowd = PackedGraphs.from_graphs([*ds.graphs[30:60], *_user_graphs(), *ds.graphs[10:14]])
    with torch.no_grad():
        a = pooled_graphconv(alone, convs, lambda x: x, colour_layers=colour_layers)
        b = pooled_graphconv(crowd, convs, lambda x: x, colour_layers=colour_layers, chunk_nodes=1000)[-4:]
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_colours_and_packed_features_do_not_depend_on_the_threads_that_compute_them(nb201, monkeypatch) -> None:
    import threading

    import napbench.zoo.colours as colours_module
    import napbench.zoo.features as features_module

    ds, _ = nb201
    sub = ds.subset(list(range(60)))
    one = PackedGraphs.from_arrow(sub.table, workers=1)
    many = PackedGraphs.from_arrow(sub.table, workers=3)  # three slices of rows, in threads
    for field in ("op", "numeric", "src", "dst", "node_ptr", "edge_ptr"):
        np.testing.assert_array_equal(getattr(many, field), getattr(one, field))
    two = PackedGraphs.from_arrow(sub.table.slice(0, 2), workers=8)  # more workers than graphs
    np.testing.assert_array_equal(two.node_ptr, one.node_ptr[:3])
    monkeypatch.setattr(features_module, "_MIN_SLICE", 16)
    np.testing.assert_array_equal(PackedGraphs.from_arrow(sub.table).numeric, one.numeric)  # the default splits too

    alone = colour_refinement(PackedGraphs.from_arrow(sub.table, workers=1), 3)
    monkeypatch.setattr(colours_module, "_MIN_SLICE", 100)  # hash the nodes in slices, in threads
    shared = PackedGraphs.from_arrow(sub.table, workers=1)
    results: list[list] = []
    threads = [threading.Thread(target=lambda k=k: results.append(colour_refinement(shared, k))) for k in (3, 1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(shared.__dict__["_colour_refinements"][True].rounds) == 4  # one refinement, each round computed once
    for got in results:
        for a, b in zip(got, alone):
            np.testing.assert_array_equal(a.hash, b.hash)
            np.testing.assert_array_equal(a.inverse, b.inverse)
