"""Paired bootstrap of the SRCC difference (images - Gaussian) per proxy, from proxy_inputs.py's CSVs.

Resamples the networks of a values CSV (``--csv``, repeatable) with replacement ``--boot``
times; for each proxy prints SRCC with Gaussian pixels, with images, their difference and its
95 % percentile interval (the same resampled networks for both sources).

    python benchmarks/proxy_inputs_ci.py --csv runs/proxy_inputs/values_nb201.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.stats import rankdata


def _srcc(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra * ra).sum() * (rb * rb).sum()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, action="append", required=True)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for path in args.csv:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        y = np.array([float(r["label"]) for r in rows])
        proxies = sorted({k.split(":")[0] for k in rows[0] if ":" in k})
        print(f"\n{path} (n={len(rows)}, {args.boot} paired bootstrap resamples)")
        print("| proxy | Gaussian | images | images - Gaussian [95% interval] |")
        print("|---|---|---|---|")
        for p in proxies:
            g = np.array([float(r[f"{p}:gaussian"]) for r in rows])
            im = np.array([float(r[f"{p}:images"]) for r in rows])
            ok = np.isfinite(g) & np.isfinite(im)
            gs, ims, ys = g[ok], im[ok], y[ok]
            idx = np.random.default_rng(args.seed).integers(0, ok.sum(), size=(args.boot, ok.sum()))
            d = [_srcc(ims[i], ys[i]) - _srcc(gs[i], ys[i]) for i in idx]
            lo, hi = np.percentile(d, [2.5, 97.5])
            note = "" if ok.all() else f" ({(~ok).sum()} undefined left out)"
            print(f"| {p} | {_srcc(gs, ys):.3f} | {_srcc(ims, ys):.3f} | {_srcc(ims, ys) - _srcc(gs, ys):+.3f} [{lo:+.3f}, {hi:+.3f}]{note} |")


if __name__ == "__main__":
    main()
