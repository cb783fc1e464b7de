"""What a GENNAPE checkpoint's members rank a family by: Spearman correlations with graph factors.

    python benchmarks/gennape_member_factors.py --checkpoint runs/checkpoints/gennape-eff-no-macro --target transnas101_macro

Zero-shot, each member (and the ensemble's mix) predicts every architecture of ``--target``;
the table gives the Spearman correlation of each with the label and with factors read off each
graph as the ensemble reads it (its ``graph_view``), none of them family-specific:

* ``log MACs``, ``log params``, ``nodes``;
* ``halvings``: how many times the spatial resolution is halved from the largest to the
  smallest feature map (log2 of the ratio of their heights);
* ``MAC resolution``: the MACs-weighted mean of log2 of the height of each node's output, i.e.
  at which resolution the network spends its compute.

A member that correlates with a factor with the opposite sign to the label's transfers the
wrong rule for that family; the last row (the label) says which sign each factor should have.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def factors(graphs: list[Any]) -> dict[str, Any]:
    """Per-graph factors (see the module docstring)."""
    import numpy as np

    from napbench.conversion.graph import node_flops

    out: dict[str, list[float]] = {"log MACs": [], "log params": [], "nodes": [], "halvings": [], "MAC resolution": []}
    for g in graphs:
        heights = [(n.output_shape[1], node_flops(n)) for n in g.nodes if len(n.output_shape) == 3 and n.output_shape[1] > 0]
        hs = [h for h, _ in heights] or [1]
        macs = np.array([m for _, m in heights], dtype=np.float64)
        logh = np.log2([h for h, _ in heights] or [1.0])
        out["log MACs"].append(np.log1p(g.flops))
        out["log params"].append(np.log1p(g.params))
        out["nodes"].append(len(g.nodes))
        out["halvings"].append(float(np.log2(max(hs) / min(hs))))
        out["MAC resolution"].append(float(macs @ logh / macs.sum()) if macs.sum() > 0 else 0.0)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a gennape ensemble checkpoint folder")
    ap.add_argument("--target", required=True, help="labelled family to predict")
    args = ap.parse_args(argv)

    import numpy as np
    from scipy.stats import spearmanr

    from napbench import zoo
    from napbench.evaluation.protocols import ProtocolConfig, labelled
    from napbench.zoo.gennape.ensemble import GennapeEnsemble

    data = labelled(args.target, ProtocolConfig(max_eval=None, progress=False, plots=False))
    ens = zoo.load(args.checkpoint)
    if not isinstance(ens, GennapeEnsemble):
        print(f"error: checkpoint {args.checkpoint!r} is not a gennape ensemble; expected one from `napbench train gennape`",
              file=sys.stderr)
        return 2
    preds = ens.member_predictions(data.dataset)
    rows = dict(zip(ens.member_names, preds))
    rows["ensemble (zero-shot mix)"] = ens.weights.numpy() @ preds
    cols = {"label": data.y, **factors(ens._view(data.dataset).graphs)}
    rows["the label itself"] = data.y

    def rho(a: np.ndarray, b: np.ndarray) -> str:
        return f"{spearmanr(a, b).statistic:.3f}" if np.ptp(a) > 0 and np.ptp(b) > 0 else "-"

    print(f"checkpoint {args.checkpoint}; target {args.target} ({len(data):,}); Spearman correlations, zero-shot")
    print("| member | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for name, p in rows.items():
        print(f"| {name} | " + " | ".join(rho(p, v) for v in cols.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
