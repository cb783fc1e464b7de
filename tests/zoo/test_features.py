"""The vectorised Arrow featurisation (PackedGraphs.from_arrow) against the per-node path (from_graphs)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn as nn

from napbench.conversion import from_torch
from napbench.conversion.graph import CompGraph, Node
from napbench.conversion.storage import graphs_to_arrow
from napbench.zoo.features import PackedGraphs, _Lists

_FIELDS = ("op", "numeric", "src", "dst", "node_ptr", "edge_ptr")


class _Attention(nn.Module):
    """LayerNorm, a qkv projection and 4-head attention: two matmuls whose contracted length
    (``inner``) is not the last axis of their first input's canonical shape."""

    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(16)
        self.qkv = nn.Linear(16, 48)
        self.out = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 10, 16)
        b, length, _ = x.shape
        q, k, v = (t.view(b, length, 4, 4).transpose(1, 2) for t in self.qkv(self.ln(x)).chunk(3, -1))
        a = (q @ k.transpose(-1, -2)).softmax(-1)
        return self.out((a @ v).transpose(1, 2).reshape(b, length, 16))


def _torch_graphs() -> list[CompGraph]:
    models = [
        (nn.Sequential(nn.Conv1d(3, 8, 5, stride=2), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(3)), (3, 32)),
        (nn.Sequential(nn.Conv3d(2, 4, 3, padding=1, groups=2), nn.ConvTranspose3d(4, 2, 2, stride=2, bias=False)), (2, 4, 6, 6)),
        (
            nn.Sequential(
                nn.Conv2d(4, 8, (3, 1), stride=(1, 2), groups=4),
                nn.ConvTranspose2d(8, 4, 3, stride=2, groups=2),
                nn.GroupNorm(2, 4),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(4, 10),
            ),
            (4, 8, 8),
        ),
        (_Attention(), (10, 16)),
    ]
    torch.manual_seed(0)
    return [from_torch(m.eval(), shape) for m, shape in models]


def _hand_graph() -> CompGraph:
    """Nodes no frontend makes today: empty output shapes, a bias without a feature axis, a
    norm whose scale is not its first axis, a learned source, a matmul with a given inner."""
    nodes = (
        Node("input", output_shape=(3, 4, 2)),
        Node("layernorm", (0,), ((3, 4, 2),), (3, 4, 2), weight_shape=(4, 2), bias=True),
        Node("reduce_max", (1,), ((3, 4, 2),), ()),
        Node("relu", (2,), ((),), (), bias=True),
        Node("param", output_shape=(5,), weight_shape=(5,), bias=True),
        Node("matmul", (1, 1), ((3, 4, 2), (3, 4, 2)), (3, 4, 4), inner=7),
    )
    return CompGraph(nodes, outputs=(3, 4, 5))


def _assert_same(a: PackedGraphs, b: PackedGraphs) -> None:
    for f in _FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape, f
        np.testing.assert_array_equal(x, y, err_msg=f)


@pytest.fixture(scope="module")
def graphs() -> list[CompGraph]:
    return [*_torch_graphs(), _hand_graph()]


def test_from_arrow_matches_from_graphs(graphs: list[CompGraph]) -> None:
    ops = {n.op for g in graphs for n in g.nodes}
    assert {"conv", "conv_transpose", "linear", "matmul", "layernorm", "groupnorm", "bn", "param"} <= ops
    assert any(n.groups > 1 for g in graphs for n in g.nodes if n.op in ("conv", "conv_transpose"))
    assert {len(n.output_shape) for g in graphs for n in g.nodes} >= {0, 1, 2, 3, 4}
    table = graphs_to_arrow(graphs)
    _assert_same(PackedGraphs.from_arrow(table), PackedGraphs.from_graphs(graphs))
    # the hand-built rules: norm bias = prod(scale), matmul FLOPs = prod(out) * inner, bias 1 on a scalar
    hand = PackedGraphs.from_arrow(graphs_to_arrow([graphs[-1]])).numeric
    np.testing.assert_array_equal(hand[:, 8], [0, 16, 0, 1, 10, 0])
    assert hand[5, 7] == 3 * 4 * 4 * 7


def test_from_arrow_over_chunks_and_row_subsets(graphs: list[CompGraph]) -> None:
    """Several record batches, a slice and a take (non-zero list offsets) give the same arrays."""
    tables = [graphs_to_arrow(graphs[:2]), graphs_to_arrow(graphs[2:])]
    chunked = pa.concat_tables(tables)
    assert chunked.column("nodes").num_chunks == 2
    _assert_same(PackedGraphs.from_arrow(chunked), PackedGraphs.from_graphs(graphs))
    rows = [4, 1, 3]
    _assert_same(PackedGraphs.from_arrow(chunked.take(rows)), PackedGraphs.from_graphs([graphs[i] for i in rows]))
    _assert_same(PackedGraphs.from_arrow(chunked.slice(1, 3)), PackedGraphs.from_graphs(graphs[1:4]))


def test_list_helpers_match_a_python_reference() -> None:
    """Segment products/maxima and items over lists with empties at the start, middle and end."""
    rng = np.random.default_rng(0)
    lists = [list(rng.integers(1, 9, size=int(k))) for k in rng.integers(0, 5, size=200)]
    lists[:2] = [[], []]
    lists[-3:] = [[7], [], []]
    arr = pa.array(lists, pa.list_(pa.int32())).slice(1)  # a non-zero first offset
    lists = lists[1:]
    ls = _Lists.of(arr)
    rows = np.flatnonzero(rng.random(len(lists)) < 0.4)
    np.testing.assert_array_equal(ls.prod(), [float(np.prod(v)) for v in lists])
    np.testing.assert_array_equal(ls.prod(start=1), [float(np.prod(v[1:])) for v in lists])
    np.testing.assert_array_equal(ls.prod(rows), [float(np.prod(lists[i])) for i in rows])
    np.testing.assert_array_equal(ls.prod(rows, start=1), [float(np.prod(lists[i][1:])) for i in rows])
    np.testing.assert_array_equal(ls.max(), [max([0, *v]) for v in lists])
    for k, default in ((0, 0.0), (2, 1.0), (9, -1.0)):
        np.testing.assert_array_equal(ls.item(k, default), [v[k] if len(v) > k else default for v in lists])
        np.testing.assert_array_equal(ls.item(k, default, rows), [lists[i][k] if len(lists[i]) > k else default for i in rows])
    empty = _Lists.of(pa.array([[], []], pa.list_(pa.int32())))
    np.testing.assert_array_equal(empty.prod(), [1.0, 1.0])
    np.testing.assert_array_equal(empty.max(), [0, 0])
    np.testing.assert_array_equal(empty.item(0, 5.0), [5.0, 5.0])
