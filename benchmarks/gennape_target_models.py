"""What k labelled samples of a family teach on their own, against what transfer brings.

    python benchmarks/gennape_target_models.py --checkpoint runs/checkpoints/gennape-no-nb201 --target nb201 --shots 50,500

For one checkpoint trained without ``--target`` and each sample size k (``--shots``), on the
harness's k-shot samples (:func:`napbench.evaluation.protocols.k_shot`'s draw, ``--seeds``
seeds, scored on the rest of the family), the SRCC of:

* ``transfer``: the ensemble's zero-shot mix of its members (no fine-tuning; its values on the
  sample are out of sample, so it needs no folds);
* ``GP``: :class:`napbench.zoo.gennape.blend.EmbeddingGP` on the encoder's embeddings, fitted on
  the k samples alone;
* ``WL``: :class:`napbench.zoo.wl.WLRidge` (two rounds), fitted on the k samples alone;
* ``blend``: the three blended as ``fine_tune`` blends them (the ensemble's own blend code,
  leave-one-out values of GP and WL); the mean blend weights are printed.

``--checkpoint`` may be given several times (fits of one configuration with other seeds): then
``transfer`` is the mean of their zero-shot mixes, each standardised over the family (a bag of
fits), the zero-shot SRCC of each fit and of each running mean is printed first, and the GP,
the WL ridge and the blend are those of the first checkpoint.

The ensemble's own ``fine_tune`` also fine-tunes and reweighs the members first
(``benchmarks/gennape_finetune.py`` measures that); this script isolates how much a family's
own samples can say, which bounds what fine-tuning can add on top of transfer.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, action="append",
                    help="a gennape ensemble checkpoint folder (trained without --target); repeat to average fits")
    ap.add_argument("--target", required=True, help="labelled family to sample and score")
    ap.add_argument("--shots", default="50,500", help="comma-separated sample sizes (each at most half the family)")
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args(argv)
    try:
        shots = [int(s) for s in args.shots.split(",") if s.strip()]
    except ValueError:
        shots = []
    if not shots or min(shots) < 5:
        print(f"error: --shots {args.shots!r}; expected comma-separated integers >= 5", file=sys.stderr)
        return 2

    import numpy as np

    from napbench import zoo
    from napbench.evaluation.metrics import srcc
    from napbench.evaluation.protocols import ProtocolConfig, labelled
    from napbench.zoo.gennape.predictors import GennapePredictor

    cfg = ProtocolConfig(max_eval=None, progress=False, plots=False)
    data = labelled(args.target, cfg)
    fits = [zoo.load(c) for c in args.checkpoint]
    for c, e in zip(args.checkpoint, fits):
        if not any(isinstance(m, GennapePredictor) for m in getattr(e, "members", [])):
            print(f"error: checkpoint {c!r} has no GENNAPE member; expected a gennape ensemble", file=sys.stderr)
            return 2
    ens = fits[0]
    from napbench.zoo.gennape.ensemble import BLEND_BAGS

    ens.target_models = ("gp", "wl")
    # blended as a new checkpoint blends (a checkpoint saved before bagging loads with blend_bags=0)
    ens.blend_bags = BLEND_BAGS
    t0 = time.perf_counter()
    mixes = []
    for c, e in zip(args.checkpoint, fits):
        p = e.weights.numpy() @ e.member_predictions(data.dataset)
        mixes.append((p - p.mean()) / (p.std() if p.std() > 0 else 1.0))
        if len(fits) > 1:
            print(f"zero-shot SRCC of {c}: {srcc(data.y, p):.4f}; mean of the first {len(mixes)} fits: "
                  f"{srcc(data.y, np.mean(mixes, axis=0)):.4f}", flush=True)
    prior = np.mean(mixes, axis=0)
    print(f"checkpoint {', '.join(args.checkpoint)}; target {args.target} ({len(data):,}); transfer in "
          f"{time.perf_counter() - t0:.0f} s; SRCC on the rest of the family, mean ± std over {args.seeds} seeds")
    print("| k | transfer | GP alone | WL alone | blend | blend weights (transfer / GP / WL) |\n|---|---|---|---|---|---|")
    for k in shots:
        if k > len(data) // 2:
            print(f"| {k} | (skipped: more than half of the family's {len(data):,}) | | | | |")
            continue
        rows: dict[str, list[float]] = {}
        weights = []
        for seed in range(args.seeds):
            perm = np.random.default_rng((cfg.sample_seed, 3, seed)).permutation(len(data))
            tr, te = np.sort(perm[:k]), np.sort(perm[k:])
            y = data.y[tr]
            z = (y - y.mean()) / (y.std() if y.std() > 0 else 1.0)
            ds_tr, _ = data.take(tr)
            ds_te, y_te = data.take(te)
            ds_tr, ds_te = ens._view(ds_tr), ens._view(ds_te)  # the graphs as the ensemble reads them (its graph_view)
            # the ensemble's own blend: target models fitted on the sample, weights chosen on it
            blend = ens._fit_blend(ds_tr, z, prior[tr], seed=seed)
            gp, wl = ens._target_parts(ds_te, blend)  # standardised, so ranked as the models' outputs
            w = np.asarray(blend["weights"])
            weights.append(w)
            transfer = (prior[te] - blend["loc"][0]) / blend["scale"][0]
            preds = {"transfer": prior[te], "GP alone": gp, "WL alone": wl, "blend": w @ np.stack([transfer, gp, wl])}
            for name, p in preds.items():
                rows.setdefault(name, []).append(srcc(y_te, p))
        cells = [f"{np.mean(v):.3f}±{np.std(v):.3f}" for v in rows.values()]
        mw = np.mean(weights, axis=0)
        print(f"| {k} | {' | '.join(cells)} | {mw[0]:.2f} / {mw[1]:.2f} / {mw[2]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
