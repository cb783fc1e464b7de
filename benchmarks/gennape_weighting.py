"""GENNAPE zero-shot: one equal share per member against one per independent model.

    python benchmarks/gennape_weighting.py --checkpoint runs/checkpoints/gennape-no-nb201 --target nb201

The four GENNAPE members of the default ensemble read one pretrained encoder, so their errors
are largely the encoder's; equal weights per member give that encoder four of six votes. This
script scores one checkpoint (trained without ``--target``) zero-shot on every labelled
architecture of the target with both weightings of
:meth:`napbench.zoo.gennape.ensemble.GennapeEnsemble.equal_weights`, in one process, from one
set of member predictions; it also prints each member's SRCC and the mean Spearman correlation
among the encoder's members and between them and the other members.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a gennape ensemble checkpoint folder (trained without --target)")
    ap.add_argument("--target", required=True, help="labelled family to score zero-shot")
    args = ap.parse_args(argv)

    import numpy as np
    from scipy.stats import spearmanr

    from napbench import zoo
    from napbench.evaluation.metrics import kendall_tau, ndcg_at_k, srcc
    from napbench.evaluation.protocols import ProtocolConfig, labelled
    from napbench.zoo.gennape.ensemble import ZERO_SHOT_WEIGHTS
    from napbench.zoo.gennape.predictors import GennapePredictor

    data = labelled(args.target, ProtocolConfig(max_eval=None, progress=False, plots=False))
    ens = zoo.load(args.checkpoint)
    p = ens.member_predictions(data.dataset)
    y = data.y
    member_srcc = [srcc(y, r) for r in p]
    print(f"checkpoint {args.checkpoint}; target {args.target} ({len(y):,} architectures)")
    print("members' SRCC: " + ", ".join(f"{n} {s:.3f}" for n, s in zip(ens.member_names, member_srcc)))
    enc = [i for i, m in enumerate(ens.members) if isinstance(m, GennapePredictor)]
    rest = [i for i in range(len(p)) if i not in enc]
    c = np.atleast_2d(spearmanr(p, axis=1).statistic)  # members x members, ties ranked as scipy ranks them
    within = np.mean([c[i, j] for i in enc for j in enc if i < j]) if len(enc) > 1 else float("nan")
    across = np.mean([c[i, j] for i in enc for j in rest]) if enc and rest else float("nan")
    print(f"mean Spearman between members: on one encoder {within:.3f}; encoder members vs the others {across:.3f}")
    print("| weighting | weights | SRCC | KT | NDCG@10 |\n|---|---|---|---|---|")
    for kind in ZERO_SHOT_WEIGHTS:
        w = ens.equal_weights(kind)
        mix = w @ p
        print(f"| {kind} | {' '.join(f'{v:.3f}' for v in w)} | {srcc(y, mix):.3f} | "
              f"{kendall_tau(y, mix):.3f} | {ndcg_at_k(y, mix, 10):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
