"""Tiny real computation graphs for the search tests."""

from __future__ import annotations

from napbench.conversion import CompGraph, GraphBuilder

WIDTHS = (4, 8, 16)
KERNELS = (1, 3, 5)


def toy_graph(w1: int, w2: int, k: int) -> CompGraph:
    """input 3x8x8 -> conv(w1, k) -> bn -> relu -> conv(w2, 3) -> relu -> global pool -> linear(10)."""
    b = GraphBuilder((3, 8, 8))
    x = b.relu(b.bn(b.conv(b.input, w1, k, padding=k // 2)))
    x = b.relu(b.conv(x, w2, 3, padding=1))
    out = b.linear(b.global_pool(x), 10)
    return b.build([out], meta={"family": "toy", "arch": f"{w1}-{w2}-{k}", "name": f"{w1}-{w2}-{k}"})
