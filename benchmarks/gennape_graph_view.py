"""GENNAPE zero-shot on the graphs as converted against their effective graphs (constant branches removed).

    python benchmarks/gennape_graph_view.py --checkpoint runs/checkpoints/gennape-no-nb201 --target nb201

Scores one checkpoint (trained without ``--target``) zero-shot on every labelled architecture
of the target, once per graph view of :mod:`napbench.zoo._views`, in one process: the ensemble's
SRCC / KT / NDCG@10 and each member's SRCC. ``--subset`` also scores NB-201's 4,096 cells
without ``none`` inside the same prediction. Checkpoints saved before graph views were fitted on
graphs as converted; a checkpoint's own view is printed first.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a gennape ensemble checkpoint folder (trained without --target)")
    ap.add_argument("--target", required=True, help="labelled family to score zero-shot")
    ap.add_argument("--subset", action="store_true", help="NB-201: also score the cells without 'none'")
    args = ap.parse_args(argv)

    import time

    import numpy as np

    from napbench import zoo
    from napbench.evaluation.metrics import kendall_tau, ndcg_at_k, srcc
    from napbench.evaluation.protocols import ProtocolConfig, labelled
    from napbench.zoo._views import GRAPH_VIEWS, zero_rows

    data = labelled(args.target, ProtocolConfig(max_eval=None, progress=False, plots=False))
    ens = zoo.load(args.checkpoint)
    y = data.y
    own = ens.graph_view
    print(f"checkpoint {args.checkpoint} (fitted with graph_view={own!r}); target {args.target} ({len(y):,} architectures, "
          f"{len(zero_rows(data.dataset)):,} with a zero op)")
    keep = None
    if args.subset:
        keep = np.asarray(["none" not in a for a in data.dataset.archs])
    print("| view | SRCC | KT | NDCG@10 | " + ("subset SRCC | " if keep is not None else "") + "members' SRCC | seconds |")
    print("|---|---|---|---|" + ("---|" if keep is not None else "") + "---|---|")
    for view in sorted(GRAPH_VIEWS, key=lambda v: v != own):
        ens.graph_view = view
        t0 = time.perf_counter()
        p = ens.member_predictions(data.dataset)
        secs = time.perf_counter() - t0
        mix = ens.weights.numpy() @ p
        members = " ".join(f"{n.removeprefix('gennape:')} {srcc(y, r):.3f}" for n, r in zip(ens.member_names, p))
        sub = f"{srcc(y[keep], mix[keep]):.3f} | " if keep is not None else ""
        print(f"| {view} | {srcc(y, mix):.3f} | {kendall_tau(y, mix):.3f} | {ndcg_at_k(y, mix, 10):.3f} | {sub}{members} | {secs:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
