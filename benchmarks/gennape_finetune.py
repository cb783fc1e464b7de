"""GENNAPE k-shot fine-tuning, ablated: how the ensemble weighs its members after fine-tuning.

    python benchmarks/gennape_finetune.py --checkpoint runs/checkpoints/gennape-no-nb201 --target nb201
    python benchmarks/gennape_finetune.py --checkpoint runs/checkpoints/gennape-no-nb201 --target nb201 --subset

One checkpoint (trained without the target family), the harness's k-shot protocol
(:func:`napbench.evaluation.protocols.k_shot`: ``--shots`` samples per seed, scored on the rest
of the family, ``--seeds`` seeds), three fine-tuning variants in the same process, on the same
samples:

* ``in-sample taus``: the issue's literal weighting, the softmax (temperature 1) of each
  fine-tuned member's Kendall tau on the sample it was fine-tuned on;
* ``out-of-fold taus``: the taus measured out of fold on the sample, temperature chosen on it;
* ``out-of-fold+wl``, ``out-of-fold+gp``: blended with one target model fitted on the sample
  alone (a WL-subtree kernel ridge; a Gaussian process on the encoder's embeddings);
* ``out-of-fold+blend``: blended with both (the default fine-tuning, see
  :mod:`napbench.zoo.gennape.blend`);
* ``members-as-they-are+blend``: the members and their zero-shot weights untouched, only the
  blend fitted (``fine_tune_members=False``);
* ``...+blend-unbagged``: either of the two above with the blend weights chosen on the sample
  itself (``blend_bags=0``, as before bagging) instead of averaged over bootstrap resamples.

Every variant sets ``blend_bags`` (the default, or 0), so a checkpoint saved before that option
is fine-tuned as a new one would be.

Zero-shot is printed for reference. ``--subset`` evaluates on the family's named subsets
(NB-201: the 4,096 cells without ``none``, the space GENNAPE and Han et al. report on), with
the fine-tuning samples drawn from the subset too.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a gennape ensemble checkpoint folder (trained without --target)")
    ap.add_argument("--target", required=True, help="labelled family to fine-tune on and score")
    ap.add_argument("--shots", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--subset", action="store_true", help="the family's named subsets instead of the whole family")
    ap.add_argument("--variants", default="in-sample,out-of-fold,out-of-fold+blend", help="comma-separated variants to run")
    args = ap.parse_args(argv)

    import numpy as np

    from napbench import zoo
    from napbench.evaluation.protocols import SUBSETS, Labelled, ProtocolConfig, k_shot, labelled, zero_shot

    cfg = ProtocolConfig(shots=args.shots, seeds=args.seeds, max_eval=None, progress=False, plots=False)
    data = labelled(args.target, cfg)
    targets = [(args.target, data)]
    if args.subset:
        subs = SUBSETS.get(args.target) or {}
        if not subs:
            print(f"error: family {args.target!r} has no named subsets; expected one of {sorted(SUBSETS)}", file=sys.stderr)
            return 2
        targets = []
        for name, keep in subs.items():
            rows = np.flatnonzero([bool(keep(a)) for a in data.dataset.archs])
            ds, y = data.take(rows)
            targets.append((name, Labelled(data.family, data.label, ds, y)))
    from napbench.zoo.gennape.ensemble import BLEND_BAGS as bags

    ens = zoo.load(args.checkpoint)
    settings = {"in-sample": {"out_of_fold": False, "target_models": (), "weight_temperature": 1.0},
                "out-of-fold": {"out_of_fold": True, "target_models": (), "weight_temperature": 1.0},
                "out-of-fold+wl": {"out_of_fold": True, "target_models": ("wl",), "weight_temperature": 1.0},
                "out-of-fold+gp": {"out_of_fold": True, "target_models": ("gp",), "weight_temperature": 1.0},
                "out-of-fold+blend": {"out_of_fold": True, "target_models": ("gp", "wl"), "weight_temperature": 1.0},
                "members-as-they-are+blend": {"fine_tune_members": False, "target_models": ("gp", "wl")}}
    for v in [v for v in settings if v.endswith("+blend")]:
        settings[f"{v}-unbagged"] = {**settings[v], "blend_bags": 0}
    for v in settings.values():
        v.setdefault("blend_bags", bags)
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in chosen if v not in settings]
    if bad:
        print(f"error: unknown variant(s) {bad}; expected some of {list(settings)}", file=sys.stderr)
        return 2
    print(f"checkpoint {args.checkpoint}; {args.shots}-shot, {args.seeds} seeds; cells: SRCC / KT / NDCG@10 / MAE")
    print("| target | variant | cell | s |\n|---|---|---|---|")
    for name, tgt in targets:
        name = name if "," in name else f"{name} ({len(tgt):,})"
        t0 = time.perf_counter()
        c = zero_shot(ens, tgt, cfg)
        print(f"| {name} | zero-shot | {c.text(('srcc', 'kt', 'ndcg@10'))} / - | {time.perf_counter() - t0:.0f} |", flush=True)
        for v in chosen:
            p = ens.clone()
            for k, val in settings[v].items():
                setattr(p, k, val)
            t0 = time.perf_counter()
            c = k_shot(p, tgt, cfg)
            print(f"| {name} | {args.shots}-shot, {v} | {c.text()} | {time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
