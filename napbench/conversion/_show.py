"""Readable summaries of graphs and datasets."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from napbench.conversion.graph import CompGraph


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def graph_summary(g: CompGraph, *, max_rows: int = 12) -> str:
    """Ops histogram, FLOPs, params, input/output shapes and the largest layers of one graph."""
    meta = g.meta
    title = meta.get("name") or meta.get("arch") or "graph"
    lines = [
        f"{title}  [{meta.get('frontend', meta.get('family', ''))}]",
        f"  id        {g.canonical_hash}",
        f"  input     {tuple(g.input_shape)}   outputs {[tuple(g.nodes[o].output_shape) for o in g.outputs]}",
        f"  nodes     {len(g.nodes)}   edges {len(g.edges)}",
        f"  FLOPs     {human(g.flops)} multiply-adds ({g.flops:,})",
        f"  params    {human(g.params)} ({g.params:,}; with BN buffers {g.param_count(include_buffers=True):,})",
        "  ops       " + ", ".join(f"{op}x{c}" for op, c in sorted(g.op_counts().items(), key=lambda kv: -kv[1])),
    ]
    if meta.get("bn_folded"):
        lines.append("  note      BatchNorm folded into convolutions (compare with .bn_folded())")
    heavy = sorted(range(len(g.nodes)), key=lambda i: -g.nodes[i].flops)[:max_rows]
    heavy = [i for i in heavy if g.nodes[i].flops]
    if heavy:
        lines.append("  heaviest layers:")
        for i in sorted(heavy):
            n = g.nodes[i]
            lines.append(
                f"    {i:>4} {n.op:<14} {str(n.input_shapes[0]) if n.input_shapes else '':<16} -> {n.output_shape!s:<16}"
                f" w{n.weight_shape} {human(n.flops)} MACs  {n.name}"
            )
    return "\n".join(lines)
