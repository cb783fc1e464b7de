"""Speed of the CG executor, of proxies through it, and of the Fourier predictor, on NB-201.

Three measurements, each with its baseline in the same process (ratios cancel machine load):

1. **executor**: per NB-201 graph, ``to_torch(g)`` (build + seeded init + meta shape check)
   and one forward pass (eval, batch ``--batch-size``, no grad), against the family's own
   torch builder (``build_torch(arch)``) and its forward on the same batch;
2. **proxies**: ``--proxies`` on ``--proxy-nets`` graphs, through the executor's network vs the
   family builder's (each including its build);
3. **fourier**: scoring throughput (graphs per second, features + MLP, no grad) on
   ``--fourier-n`` NB-201 graphs (default: all 15,625) with an untrained predictor, and
   training time per graph per epoch (forward + backward through the propagated CG) on
   ``--train-n`` graphs for one epoch; and, on ``--fourier-baseline-n`` of them, the batched
   scoring against the reference path (each graph alone through ``to_torch``) in the same run.

All runs use one torch thread.

    nice -n 10 python benchmarks/executor_speed.py --nets 100 --proxy-nets 10 --fourier-n 15625 --train-n 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from napbench.conversion import to_torch
from napbench.datasets import get_family, load
from napbench.zoo._base import torch_threads
from napbench.zoo.fourier import FourierPredictor
from napbench.zoo.proxies import compute_proxies, graph_network


def _ms(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return (time.perf_counter() - t) * 1e3, out


def executor(graphs, archs, batch_size: int) -> None:
    fam = get_family("nb201")
    x = torch.randn(batch_size, *fam.input_shape)
    rows = []
    to_torch(graphs[0])  # warm-up
    for g, a in zip(graphs, archs):
        tb, net = _ms(to_torch, g)
        tf_b, model = _ms(fam.build_torch, a)
        net.eval()
        model.eval()
        with torch.no_grad():
            tfwd, _ = _ms(net, x)
            tfwd_b, _ = _ms(model, x)
        rows.append((tb, tf_b, tfwd, tfwd_b))
    a = np.array(rows)
    med = np.median(a, axis=0)
    print(f"executor on {len(graphs)} NB-201 graphs (median ms per graph):")
    print("| step | executor | family builder | ratio |")
    print(f"| build | {med[0]:.1f} | {med[1]:.1f} | {med[0] / med[1]:.2f}x |")
    print(f"| forward (batch {batch_size}) | {med[2]:.1f} | {med[3]:.1f} | {med[2] / med[3]:.2f}x |")


def proxies(graphs, archs, names: list[str], batch_size: int) -> None:
    fam = get_family("nb201")
    ex, bu = {n: [] for n in names}, {n: [] for n in names}
    for g, a in zip(graphs, archs):
        for n in names:
            t = time.perf_counter()
            net, shape, k = graph_network(g)
            compute_proxies([n], net, shape, k, batch_size=batch_size)
            ex[n].append(time.perf_counter() - t)
            t = time.perf_counter()
            compute_proxies([n], fam.build_torch(a), fam.input_shape, fam.num_classes, batch_size=batch_size)
            bu[n].append(time.perf_counter() - t)
    print(f"\nproxies on {len(graphs)} NB-201 graphs, batch {batch_size} (median ms per graph, network build included):")
    print("| proxy | executor | family builder | ratio |")
    for n in names:
        e, b = statistics.median(ex[n]) * 1e3, statistics.median(bu[n]) * 1e3
        print(f"| {n} | {e:.0f} | {b:.0f} | {e / b:.2f}x |")


def fourier(graphs, y, train_n: int, baseline_n: int) -> None:
    p = FourierPredictor()
    p._feature_matrix(graphs[:2])  # warm-up (image pool, module memo)
    t = time.perf_counter()
    p.score(graphs)
    dt = time.perf_counter() - t
    print(f"\nfourier scoring: {len(graphs)} graphs in {dt:.1f} s = {len(graphs) / dt:.1f} graphs/s "
          f"(chunks of {p.chunk_graphs} graphs propagated together)")
    if baseline_n:
        sub = graphs[:baseline_n]
        t = time.perf_counter()
        p.score(sub)
        dt_b = time.perf_counter() - t
        kernels: dict = {}
        t = time.perf_counter()
        with torch.no_grad():  # the reference path: each graph alone through to_torch's GraphNet
            torch.stack([p._features(g, kernels) for g in sub])
        dt_1 = time.perf_counter() - t
        print(f"same process, {len(sub)} graphs: together {len(sub) / dt_b:.1f} graphs/s, "
              f"one by one {len(sub) / dt_1:.1f} graphs/s (features only) -> {dt_1 / dt_b:.2f}x")
    q = FourierPredictor(epochs=1)
    t = time.perf_counter()
    q.fit(graphs[:train_n], y[:train_n], epochs=1, progress=False)
    info = q.training_info["fit"]
    dt = time.perf_counter() - t
    print(f"fourier training: {train_n} graphs x 1 epoch in {info['train_seconds']} s "
          f"({info['train_seconds'] / train_n * 1e3:.0f} ms per graph per epoch; fit incl. standardisation and label map {dt:.1f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--proxy-nets", type=int, default=10)
    ap.add_argument("--proxies", default="synflow,snip,naswot,jacob_cov")
    ap.add_argument("--fourier-n", type=int, default=15625)
    ap.add_argument("--train-n", type=int, default=64)
    ap.add_argument("--fourier-baseline-n", type=int, default=300,
                    help="graphs scored both together and one by one (the reference path) in the same process")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: executor,proxies,fourier")
    args = ap.parse_args()
    ds = load("nb201")
    rng = np.random.default_rng(0)
    skip = set(filter(None, args.skip.split(",")))
    with torch_threads(1):
        n = max(args.nets, args.proxy_nets)
        rows = np.sort(rng.choice(len(ds), size=n, replace=False))
        sub = ds.subset(rows)
        graphs, archs = sub.graphs, sub.archs
        if "executor" not in skip:
            executor(graphs[: args.nets], archs[: args.nets], args.batch_size)
        if "proxies" not in skip:
            proxies(graphs[: args.proxy_nets], archs[: args.proxy_nets], args.proxies.split(","), args.batch_size)
        if "fourier" not in skip:
            rows = np.sort(rng.choice(len(ds), size=min(args.fourier_n, len(ds)), replace=False))
            sub = ds.subset(rows)
            fourier(sub.graphs, sub.labels(), args.train_n, args.fourier_baseline_n)


if __name__ == "__main__":
    main()
