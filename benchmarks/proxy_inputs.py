"""Every zero-cost proxy fed Gaussian pixels vs natural-image patches, on the same networks.

For each family, ``--n`` labelled architectures are drawn with a fixed seed; each network is
built once by the family's torch builder (weights under ``torch.manual_seed(seed)``) and every
proxy is computed on it with the two input sources of :mod:`napbench.zoo.proxies`
(``gaussian``, ``images``) at the same batch size and seed. ``synflow`` takes an all-ones
input and so is computed once. Writes one CSV row per network (``--out``/values_<family>.csv,
rewritten atomically every 5 networks, so a killed run keeps its rows) and prints the SRCC of
each proxy with the label, per source, plus the rank vote of all proxies.

``--resume CSV`` (repeatable) reuses the rows of earlier runs (same family, sample and
settings; rows are matched by architecture, and every row of the sample found there is
kept); ``--time-limit S`` stops computing after S seconds (networks are taken in the sample's
seeded random order, so the rows computed are themselves a uniform sample); ``--proxies``
restricts the proxies (the vote is then over those).

    nice -n 10 python benchmarks/proxy_inputs.py --family nb201 --n 300 --batch-size 32
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from napbench._io import atomic_write_text
from napbench.datasets import get_family, load
from napbench.errors import NumericalError
from napbench.zoo._base import torch_threads
from napbench.zoo.proxies import compute_proxy, list_proxies, rank_vote

SOURCES = ("gaussian", "images")
AGNOSTIC = ("synflow",)  # input-independent: one value serves both sources


def _sample(family: str, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    ds = load(family)
    y = ds.labels()
    rows = np.flatnonzero(np.isfinite(y))
    rng = np.random.default_rng(seed)
    pick = rng.choice(rows, size=min(n, rows.size), replace=False)  # in drawn order: any prefix is a uniform sample
    archs = ds.archs
    return [archs[i] for i in pick], y[pick]


def _read(paths: list[Path]) -> dict[str, dict[str, object]]:
    """Rows of earlier runs' CSVs by architecture (values as floats)."""
    out: dict[str, dict[str, object]] = {}
    for path in paths:
        with open(path, newline="") as f:
            out.update({r["arch"]: {k: (v if k == "arch" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)})
    return out


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue(), replace=True)


def run(family: str, n: int, *, batch_size: int, input_size: int, seed: int, out: Path, proxies: list[str],
        resume: list[Path] | None = None, time_limit: float = float("inf")) -> list[dict[str, object]]:
    fam = get_family(family)
    archs, y = _sample(family, n, seed)
    done = _read(resume or [])
    stopped = False
    rows: list[dict[str, object]] = []
    t0 = time.perf_counter()
    path = out / f"values_{family}.csv"
    for k, (arch, label) in enumerate(zip(archs, y)):
        if arch in done and all(f"{p}:{s}" in done[arch] for p in proxies for s in SOURCES):
            rows.append(done[arch])
            continue
        if stopped or time.perf_counter() - t0 > time_limit:
            if not stopped:
                print(f"{family}: time limit reached after {len(rows)} networks", flush=True)
            stopped = True
            continue
        c, h, w = fam.arch_input_shape(arch)
        shape = (c, min(h, input_size), min(w, input_size))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = fam.build_torch(arch)
        row: dict[str, object] = {"arch": arch, "label": float(label)}
        for p in proxies:
            for src in SOURCES:
                if p in AGNOSTIC and src != SOURCES[0]:
                    row[f"{p}:{src}"] = row[f"{p}:{SOURCES[0]}"]
                    continue
                try:
                    v = compute_proxy(p, model, shape, fam.num_classes, batch_size=batch_size, seed=seed, inputs=src)
                except NumericalError:
                    v = float("nan")
                row[f"{p}:{src}"] = v
        rows.append(row)
        if (k + 1) % 5 == 0:
            _write(path, rows)
            print(f"{family}: {k + 1}/{len(archs)} networks, {time.perf_counter() - t0:.0f} s", flush=True)
    _write(path, rows)
    return rows


def summarise(family: str, rows: list[dict[str, object]], proxies: list[str]) -> dict[str, dict[str, float]]:
    y = np.array([r["label"] for r in rows], dtype=float)
    out: dict[str, dict[str, float]] = {}
    for src in SOURCES:
        vals = {}
        for p in proxies:
            v = np.array([r[f"{p}:{src}"] for r in rows], dtype=float)
            ok = np.isfinite(v)
            out.setdefault(p, {})[src] = float(spearmanr(v[ok], y[ok])[0]) if ok.sum() > 2 else float("nan")
            lo = np.nanmin(v) if ok.any() else 0.0
            vals[p] = np.where(ok, v, lo - 1.0 - abs(lo))
        out.setdefault("vote", {})[src] = float(spearmanr(rank_vote(vals), y)[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", action="append", required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/proxy_inputs"))
    ap.add_argument("--resume", type=Path, action="append", default=[], help="an earlier values CSV of this family to reuse")
    ap.add_argument("--time-limit", type=float, default=float("inf"), help="seconds per family")
    ap.add_argument("--proxies", default=",".join(list_proxies()))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    proxies = [p for p in args.proxies.split(",") if p]
    for fam in args.family:
        with torch_threads(1):
            rows = run(fam, args.n, batch_size=args.batch_size, input_size=args.input_size, seed=args.seed, out=args.out,
                       proxies=proxies, resume=args.resume, time_limit=args.time_limit)
        res = summarise(fam, rows, proxies)
        print(f"\n{fam} (n={len(rows)}): SRCC with the label")
        print("| proxy | gaussian | images |")
        for p, d in res.items():
            print(f"| {p} | {d['gaussian']:.3f} | {d['images']:.3f} |")


if __name__ == "__main__":
    main()
