"""A bag of GENNAPE fits (``gennape-bag``) against its first fit alone, with the harness.

    python benchmarks/gennape_bag.py --target nb201 --out runs/checkpoints/gennape-bag-no-nb201 \\
        --checkpoint runs/checkpoints/gennape-eff-no-nb201 --checkpoint runs/checkpoints/gennape-eff-no-nb201-s1 ...

The ``--checkpoint`` folders are ``gennape`` ensembles of one configuration fitted with other
seeds and without ``--target`` (e.g. ``napbench train gennape --source ... --seed S``). They are
assembled into one ``gennape-bag`` checkpoint (:meth:`napbench.zoo.gennape.bag.GennapeBag.from_fits`,
saved to ``--out`` when given), and the bag and the first fit alone are scored with the harness
(:func:`napbench.evaluation.protocols.zero_shot` on the whole family, then
:func:`~napbench.evaluation.protocols.k_shot`: ``--shots`` samples, ``--seeds`` seeds, scored on
the rest). The first fit is fine-tuned with ``fine_tune_members=False``, which is what the bag
does with its fits: the two then differ only in the transfer part of the blend. Both blend with
the current default ``blend_bags`` (a checkpoint saved before that option loads with 0).
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, action="append", help="a fitted gennape ensemble folder; repeat")
    ap.add_argument("--target", required=True, help="labelled family to score")
    ap.add_argument("--shots", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", help="also save the bag's checkpoint here (a new folder)")
    args = ap.parse_args(argv)

    from napbench import zoo
    from napbench.errors import NapbenchError
    from napbench.evaluation.protocols import ProtocolConfig, k_shot, labelled, zero_shot
    from napbench.zoo.gennape.bag import GennapeBag
    from napbench.zoo.gennape.ensemble import BLEND_BAGS as bags
    try:
        bag = GennapeBag.from_fits(args.checkpoint)
        bag.fits[0].blend_bags = bags  # the fit whose target models the bag blends
        if args.out:
            bag.save_pretrained(args.out)
    except NapbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = ProtocolConfig(shots=args.shots, seeds=args.seeds, max_eval=None, progress=False, plots=False)
    data = labelled(args.target, cfg)
    first = zoo.load(args.checkpoint[0])
    first.fine_tune_members, first.blend_bags = False, bags
    print(f"target {args.target} ({len(data):,}); {len(bag.fits)} fits; cells: SRCC / KT / NDCG@10 / MAE")
    print("| predictor | zero-shot | s | {0}-shot | s |\n|---|---|---|---|---|".format(args.shots))
    for name, p in ((f"bag of {len(bag.fits)} fits", bag), ("first fit alone", first)):
        t0 = time.perf_counter()
        z = zero_shot(p, data, cfg)
        t1 = time.perf_counter()
        k = k_shot(p, data, cfg)
        t2 = time.perf_counter()
        print(f"| {name} | {z.text(('srcc', 'kt', 'ndcg@10'))} | {t1 - t0:.0f} | {k.text()} | {t2 - t1:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
