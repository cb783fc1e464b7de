"""GENNAPE speed: default training time and whole-family prediction throughput.

    python benchmarks/gennape_speed.py --train --out runs/checkpoints/gennape   # train the default checkpoint, then time it
    python benchmarks/gennape_speed.py --checkpoint runs/checkpoints/gennape    # time an existing checkpoint

* ``--train`` runs ``napbench train gennape`` with the defaults of ``params.yaml`` (pretraining
  of the shared encoder on every family included) and prints its wall time against the
  20-minute goal.
* Prediction: the trained ensemble predicts all 15,625 NB-201 graphs from a cold start (empty
  embedding cache; featurisation included), graphs per second printed, against the k-GNN
  baseline (the ensemble's ``kgnn`` member, the registry's default k-GNN architecture) in the
  same process, plus the time of each member; goal: at most 10 s.
* Peak memory (``ru_maxrss`` of this process) is printed at the end.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/checkpoints/gennape", help="ensemble checkpoint folder")
    ap.add_argument("--train", action="store_true", help="train the default checkpoint first (napbench train gennape)")
    ap.add_argument("--out", default=None, help="with --train: where to write the checkpoint (default --checkpoint)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for prediction (default 1)")
    args = ap.parse_args(argv)

    from napbench.cli import main as cli

    if args.train:
        out = args.out or args.checkpoint
        t0 = time.perf_counter()
        rc = cli(["train", "gennape", "--out", out, "--quiet"])
        dt = time.perf_counter() - t0
        if rc:
            return rc
        print(f"default training (napbench train gennape, params.yaml defaults, pretraining included): {dt:.1f} s "
              f"= {dt / 60:.1f} min (goal <= 20 min: {'met' if dt <= 1200 else 'MISSED'})")
        args.checkpoint = out

    import napbench.datasets as nd
    from napbench import zoo
    from napbench.zoo._interface import torch_threads

    ens = zoo.load(args.checkpoint)
    ds = nd.load("nb201", progress=False)
    n = len(ds)
    for m in ens.members:
        if hasattr(m, "threads"):
            m.threads = args.threads
    ens.cache.embeddings.clear()
    with torch_threads(args.threads):
        t0 = time.perf_counter()
        ens.predict(ds)
        t_ens = time.perf_counter() - t0
        print(f"ensemble predicts {n:,} NB-201 graphs in {t_ens:.2f} s = {n / t_ens:,.0f} graphs/s "
              f"(goal <= 10 s: {'met' if t_ens <= 10 else 'MISSED'})", flush=True)
        ens.cache.embeddings.clear()
        per = {}
        for name, m in zip(ens.member_names, ens.members):
            t0 = time.perf_counter()
            m.predict(ds)
            per[name] = time.perf_counter() - t0
    kg = per.get("kgnn", float("nan"))
    print(f"k-GNN baseline, same run: {kg:.2f} s = {n / kg:,.0f} graphs/s; ensemble / k-GNN time = {t_ens / kg:.1f}x")
    for name, dt in per.items():
        print(f"  member {name:<24} {dt:7.2f} s" + ("  (encoder embeddings computed here, cached for the next members)"
                                                       if name == ens.member_names[0] else ""))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (this process, ru_maxrss): {peak:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
