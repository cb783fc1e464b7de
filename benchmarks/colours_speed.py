"""GraphConv inference on distinct WL colours against the layer-by-layer batch path.

    python benchmarks/colours_speed.py --checkpoint runs/checkpoints/gennape-no-nb201 --family nb201

Takes the GENNAPE ensemble's encoder (its GNN branch) and its k-GNN member, and the distinct graphs
of a family, and times in one process:

* the baseline: ``torch_geometric`` batches of 512 graphs, every node of every layer;
* :func:`napbench.zoo.colours.pooled_graphconv` with every layer on colours, with the default
  (three layers on colours, the rest node by node), and node by node from the start;

then prints seconds, the speed-up over the baseline, the number of colours per round and the
largest difference from the baseline's output.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/checkpoints/gennape", help="a gennape ensemble checkpoint folder")
    ap.add_argument("--family", default="nb201", help="family whose distinct graphs are embedded")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from torch_geometric.nn import global_mean_pool

    import napbench.datasets as nd
    from napbench import zoo
    from napbench.zoo._interface import torch_threads
    from napbench.zoo.colours import _refinement, pooled_graphconv
    from napbench.zoo.features import PackedGraphs, pack
    from napbench.zoo.gennape.ensemble import _distinct

    ens = zoo.load(args.checkpoint)
    enc = next(m.encoder for m in ens.members if hasattr(m, "encoder")).eval()
    kg = next(m for m in ens.members if m.__class__.__name__ == "KGNN").eval()
    sub, _ = _distinct(nd.load(args.family, progress=False))
    base = pack(sub)
    print(f"{args.family}: {len(base):,} distinct graphs, {len(base.op):,} nodes; {args.threads} threads")

    def batches(convs: torch.nn.ModuleList, first, bidirectional: bool) -> torch.Tensor:
        out = []
        for lo in range(0, len(base), 512):
            b = base.batch(np.arange(lo, min(lo + 512, len(base))))
            ei = torch.cat([b.edge_index, b.edge_index.flip(0)], 1) if bidirectional else b.edge_index
            h = first(b.x)
            for conv in convs:
                h = torch.relu(conv(h, ei))
            out.append(global_mean_pool(h, b.batch, size=b.num_graphs))
        return torch.cat(out)

    stacks = [("encoder GNN", enc.convs, enc._features, True), ("k-GNN", kg.convs, kg._scale, kg.bidirectional)]
    with torch_threads(args.threads), torch.no_grad():
        for name, convs, first, bidir in stacks:
            t0 = time.perf_counter()
            ref = batches(convs, first, bidir)
            t_ref = time.perf_counter() - t0
            print(f"{name} ({len(convs)} layers): batches of 512 (baseline) {t_ref:6.2f} s")
            for share in (len(convs), 3, 0):
                fresh = PackedGraphs(base.op, base.numeric, base.src, base.dst, base.node_ptr, base.edge_ptr)  # no refinement kept
                t0 = time.perf_counter()
                out = pooled_graphconv(fresh, convs, first, bidirectional=bidir, colour_layers=share)
                dt = time.perf_counter() - t0
                diff = float((out - ref).abs().max())
                print(f"  colour_layers={share}: {dt:6.2f} s  speed-up {t_ref / dt:4.2f}x  max |diff| {diff:.1e}")
            rounds = _refinement(base, bidir).upto(len(convs))
            print("  colours per round: " + ", ".join(f"{len(r):,}" for r in rounds) + f" (nodes: {len(base.op):,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
