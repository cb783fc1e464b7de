"""Does the Fourier predictor improve the GENNAPE ensemble as a seventh member? (zero-shot)

    python benchmarks/gennape_fourier_member.py --gennape CKPT --fourier CKPT --target nb201 --n 1000

Both checkpoints must have been trained without ``--target`` (leave-one-family-out). On a
seeded sample of ``--n`` labelled target architectures the script predicts with the ensemble
(its six members on the ensemble's unit-spread scale) and with ``fourier``, and compares:

* GENNAPE (the ensemble's equal-weight mean of its six members);
* fourier alone;
* GENNAPE + fourier: the fourier score, standardised over the target population (label-free,
  as GENNAPE standardises its features per family), added as a seventh equal-weight member.

It prints SRCC / Kendall tau / NDCG@10 for each, and writes them as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from napbench._io import atomic_write_text
    from napbench.evaluation.metrics import evaluate_all
    from napbench.evaluation.protocols import ProtocolConfig, labelled, sample_rows
    from napbench.zoo import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gennape", required=True, help="GENNAPE ensemble checkpoint trained without --target")
    ap.add_argument("--fourier", required=True, help="fourier checkpoint trained without --target")
    ap.add_argument("--target", required=True)
    ap.add_argument("--n", type=int, default=1000, help="target architectures (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    args = ap.parse_args()

    t0 = time.perf_counter()
    ens, four = load(args.gennape), load(args.fourier)
    data = labelled(args.target, ProtocolConfig(progress=False))
    rows = sample_rows(len(data), args.n or None, np.random.default_rng((args.seed, 0)))
    ds, y = data.take(rows)
    members = ens.member_predictions(ds)  # (6, N), each on the ensemble's unit-spread scale
    t1 = time.perf_counter()
    f = np.asarray(four.score(ds), dtype=np.float64)
    t2 = time.perf_counter()
    fz = (f - f.mean()) / (f.std() if f.std() > 0 else 1.0)
    w = ens.weights.numpy()[:, None]
    cols = {
        "GENNAPE": (w * members).sum(0),
        "fourier": f,
        "GENNAPE + fourier": np.vstack([members, fz[None]]).mean(0),
    }
    res = {name: {m: float(v) for m, v in evaluate_all(y, p).items() if m in ("srcc", "kt", "ndcg@10")}
           for name, p in cols.items()}
    print(f"{args.target}: {len(y)} architectures; ensemble {t1 - t0:.1f} s, fourier {t2 - t1:.1f} s")
    print("| predictor | SRCC | KT | NDCG@10 |\n|---|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {r['srcc']:.3f} | {r['kt']:.3f} | {r['ndcg@10']:.3f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps({"target": args.target, "n": len(y), "seed": args.seed, **res}, indent=2))


if __name__ == "__main__":
    main()
