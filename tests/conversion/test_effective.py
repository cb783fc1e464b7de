"""``CompGraph.without_constant_branches``: the effective graph of a network."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn

from napbench.conversion import GraphBuilder, from_torch
from napbench.datasets import get_family
from napbench.datasets.families.nb201 import format_arch, parse_arch

_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def _effective_arch(arch: str) -> str:
    """The NB-201 cell with every edge that cannot carry the input to the output set to ``none``
    (written from the cell's DAG alone, independently of the graph pass)."""
    ops = parse_arch(arch)
    live, reach = {0}, {3}
    for (j, i), op in zip(_EDGES, ops):
        if i in live and op != "none":
            live.add(j)
    for (j, i), op in reversed(list(zip(_EDGES, ops))):
        if j in reach and op != "none":
            reach.add(i)
    return format_arch([op if i in live and j in reach else "none" for (j, i), op in zip(_EDGES, ops)])


@pytest.fixture(scope="module")
def nb201_family():
    return get_family("nb201")


def _sample_archs(family, n: int, seed: int = 0) -> list[str]:
    archs = list(family.enumerate())
    return random.Random(seed).sample(archs, n)


def test_nb201_cells_with_dead_edges_equal_their_effective_cells(nb201_family) -> None:
    changed = 0
    for arch in _sample_archs(nb201_family, 150):
        eff = _effective_arch(arch)
        g = nb201_family.build_cg(arch).without_constant_branches()
        ref = nb201_family.build_cg(eff).without_constant_branches()
        assert g.canonical_hash == ref.canonical_hash, arch
        # MACs and params now count only the ops that can reach the output from the input
        assert (g.flops, g.params) == (ref.flops, ref.params)
        assert "zero" not in g.op_counts() or eff.count("none") == 6
        changed += arch != eff
    assert changed > 20  # the sample holds cells with dead edges


def test_a_dead_convolution_no_longer_counts(nb201_family) -> None:
    # node 1 is only read through 'none' edges: its 3x3 conv cannot reach the output
    dead = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|none~1|skip_connect~2|"
    alive = "|none~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|none~1|skip_connect~2|"
    g, ref = nb201_family.build_cg(dead), nb201_family.build_cg(alive)
    assert g.flops > ref.flops
    e = g.without_constant_branches()
    assert e.canonical_hash == ref.without_constant_branches().canonical_hash
    assert e.flops == ref.flops and e.op_counts().get("zero", 0) == 0
    assert len(e.nodes) < len(g.nodes)


def test_graphs_without_zeros_are_returned_unchanged(nb201_family) -> None:
    g = nb201_family.build_cg("|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")
    assert g.without_constant_branches() is g


def test_a_network_with_a_constant_output_collapses_but_stays_a_valid_graph(nb201_family) -> None:
    g = nb201_family.build_cg("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|")
    e = g.without_constant_branches()
    assert e.outputs and e.nodes[e.outputs[0]].output_shape == g.nodes[g.outputs[0]].output_shape
    assert e.flops < g.flops / 4  # the searchable cells' convolutions are gone; stem, reductions and head remain
    assert e.op_counts()["zero"] >= 1


def test_torch_multiplication_by_zero_and_learned_tensors() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
            self.pos = nn.Parameter(torch.zeros(1, 4, 8, 8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(x * 0.0) + self.pos

    g = from_torch(Net(), (4, 8, 8))
    e = g.without_constant_branches()
    ops = e.op_counts()
    assert ops.get("zero", 0) == 0 and ops["conv"] == 1  # the conv of zeros is gone
    assert ops.get("param", 0) == 1  # a learned tensor is structure, not a constant
    assert e.flops == g.flops - 4 * 4 * 8 * 8  # the 1x1 conv's MACs


def test_constants_read_by_other_ops_are_kept() -> None:
    b = GraphBuilder((4, 8, 8))
    x = b.input
    z = b.relu(b.zero(x))
    c = b.concat([b.relu(x), z])
    g = b.build([c])
    e = g.without_constant_branches()
    assert e.canonical_hash == g.canonical_hash  # a concat with a constant part is another function
