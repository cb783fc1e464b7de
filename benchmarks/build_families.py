"""Family build speed: NB-201 whole-space build vs per-network torch tracing, and every family.

Prints the wall time and peak memory (RSS summed over this process and its workers) of
``napbench.datasets.build("nb201")`` (15,625 CGs, fast path, written to Parquet), then times
tracing NB-201 torch networks on the meta device in the same run (a seeded sample, or with
``--trace-all`` every network, checking each traced graph's hash against the fast one) and
prints the ratio. With ``--families`` it also builds every other family at its default
size (or ``--limit``) and prints build time and file size per family.

With ``--in-process N`` it first times the hot path alone on the first N NB-201 graphs in this
process (fast-path build, canonical hash, Arrow encoding; best of 3).

Usage: python benchmarks/build_families.py [--trace-sample 200 | --trace-all] [--families] [--limit N] [--in-process N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil

from napbench.datasets import build, get_family, list_families


class PeakRSS:
    """Samples the summed RSS of this process and its children every 50 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                rss = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:
                rss = 0
            self.peak = max(self.peak, rss)
            time.sleep(0.05)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def _trace_hashes(archs: list[str]) -> list[str]:
    fam = get_family("nb201")
    return [fam.trace_cg(a).canonical_hash for a in archs]


def _in_process(n: int) -> None:
    """The hot path without processes or Parquet: ``build_cg``, ``canonical_hash``, ``graphs_to_arrow``."""
    import itertools

    from napbench.conversion.storage import graphs_to_arrow

    fam = get_family("nb201")
    archs = list(itertools.islice(fam.enumerate(), n))
    best = {"build": float("inf"), "hash": float("inf"), "arrow": float("inf")}
    for _ in range(3):
        t = time.perf_counter()
        gs = [fam.build_cg(a) for a in archs]
        t1 = time.perf_counter()
        for g in gs:
            _ = g.canonical_hash
        t2 = time.perf_counter()
        for i in range(0, len(gs), 256):
            graphs_to_arrow(gs[i : i + 256])
        t3 = time.perf_counter()
        for k, v in (("build", t1 - t), ("hash", t2 - t1), ("arrow", t3 - t2)):
            best[k] = min(best[k], v)
    total = sum(best.values())
    print(f"nb201 in one process, {len(archs):,} graphs (best of 3): build {best['build']:.2f} s, hash {best['hash']:.2f} s, "
          f"Arrow {best['arrow']:.2f} s, total {total:.2f} s ({total / len(archs) * 1e3:.2f} ms/graph)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trace-sample", type=int, default=200)
    p.add_argument("--trace-all", action="store_true", help="trace all 15,625 networks and compare every hash")
    p.add_argument("--families", action="store_true", help="also build every other family")
    p.add_argument("--limit", type=int, default=None, help="architectures per other family")
    p.add_argument("--in-process", type=int, default=0, metavar="N",
                   help="also time the first N NB-201 graphs in this process: build, hash, Arrow encoding (best of 3)")
    args = p.parse_args()
    if args.in_process:
        _in_process(args.in_process)
    with tempfile.TemporaryDirectory() as root:
        with PeakRSS() as mem:
            t = time.perf_counter()
            path = build("nb201", root, progress=False)
            t_build = time.perf_counter() - t
        n = 15_625
        print(f"nb201: {n:,} CGs built+written in {t_build:.1f} s ({t_build / n * 1e3:.2f} ms/net), "
              f"peak RSS {mem.peak / 2**30:.2f} GiB, file {Path(path).stat().st_size / 2**20:.1f} MiB")
        fam = get_family("nb201")
        if args.trace_all:
            # trace every network through torch (2 processes, like the build) and check each
            # traced graph's hash against the one the fast path wrote
            import pyarrow.parquet as pq

            table = pq.read_table(path, columns=["arch", "graph_id"])
            written = dict(zip(table.column("arch").to_pylist(), table.column("graph_id").to_pylist()))
            archs = list(written)
            chunks = [archs[i : i + 250] for i in range(0, len(archs), 250)]
            t = time.perf_counter()
            with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as ex:
                traced = [h for part in ex.map(_trace_hashes, chunks) for h in part]
            t_trace = time.perf_counter() - t
            same = sum(written[a] == h for a, h in zip(archs, traced))
            print(f"nb201 torch tracing of all {len(archs):,} networks (meta device, 2 processes): {t_trace:.1f} s; "
                  f"fast build is {t_trace / t_build:.1f}x faster; traced hash == fast hash for {same:,}/{len(archs):,}")
        else:
            sample = fam.sample(args.trace_sample, seed=0)
            t = time.perf_counter()
            for a in sample:
                fam.trace_cg(a)
            per_trace = (time.perf_counter() - t) / len(sample)
            print(f"nb201 torch tracing (meta device, {len(sample)}-net sample, 1 process): {per_trace * 1e3:.1f} ms/net "
                  f"-> {per_trace * n / 60:.1f} min for the space; fast build is {per_trace * n / t_build:.0f}x faster")
        if args.families:
            print(f"{'family':<20} {'archs':>7} {'seconds':>8} {'MiB':>7}")
            for name in list_families():
                if name == "nb201":
                    continue
                t = time.perf_counter()
                path = build(name, root, limit=args.limit, progress=False)
                dt = time.perf_counter() - t
                import pyarrow.parquet as pq

                rows = pq.read_metadata(path).num_rows
                print(f"{name:<20} {rows:>7} {dt:>8.1f} {Path(path).stat().st_size / 2**20:>7.1f}")


if __name__ == "__main__":
    main()
