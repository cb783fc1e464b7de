"""Search figures: NB-201 (and TransNAS-Bench-101 micro) strategies, latency-constrained search, latency predictor SRCC.

    python benchmarks/search_nb201.py --out runs/search_bench --score-cache runs/search/proxy_cache_nb201.parquet

Prints Markdown tables (mean +- std of the chosen architecture's true label over seeds) and
writes best-found-vs-queries plots. "Training" is a label lookup, so the cost here is the
predictors: FLOPs is free, zero-cost proxies cost ~0.2-0.7 s per cell on this CPU, so their
values are cached per cell (``--score-cache``); ``--proxy-seeds`` limits the proxy runs with
N = 1,000 candidates to the seeds whose candidates are already cached unless ``--compute``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napbench._io import atomic_write_text
from napbench.search import Budget, Constraint, SearchSpace, get_strategy, load_score_cache, resolve_predictor, search
from napbench.search._run import fit_cost_predictor, plot_best_found


def _row(name: str, rs: list, published: str = "") -> tuple[str, dict]:
    t = np.array([r.true for r in rs])
    q = np.mean([r.n_queries for r in rs])
    p = np.mean([r.n_predictor_calls for r in rs])
    line = f"| {name} | {t.mean():.2f} ± {t.std():.2f} | {len(rs)} | {q:.0f} | {p:.0f} | {published} |"
    return line, {"name": name, "mean": float(t.mean()), "std": float(t.std()), "seeds": len(rs), "queries": float(q),
                  "predictor_calls": float(p), "values": t.tolist()}


def _covered(space: SearchSpace, pred, seeds: list[int], n: int) -> list[int]:
    values = pred.cache.values
    ok = []
    for s in seeds:
        rows = space.random_rows(np.random.default_rng(s), n)
        if all(pred._key(space.family, space.archs[int(r)], pred.proxy) in values for r in rows):
            ok.append(s)
    return ok


def family_table(family: str, label: str | None, seeds: list[int], args: argparse.Namespace, out: Path) -> list[dict]:
    t0 = time.perf_counter()
    space = SearchSpace.from_family(family, label=label)
    print(f"\n## {family} ({len(space)} architectures, label {space.label}, optimum {space.optimum[1]:.2f}); "
          f"space loaded in {time.perf_counter() - t0:.1f} s")
    flops = resolve_predictor("flops")
    rows, recs, curves = [], [], {}
    header = "| strategy | true label of the answer | seeds | queries | predictor calls | published (NB-201) |\n|---|---|---|---|---|---|"

    def add(name: str, rs: list, published: str = "", curve: bool = False) -> None:
        line, rec = _row(name, rs, published)
        rows.append(line)
        recs.append(rec)
        print(line, flush=True)
        if curve:
            curves[name] = rs

    print(header)
    pub = family == "nb201"
    if args.only_gennape:  # reference curves for the GENNAPE plot (label lookups only: seconds)
        add("REA, 150 queries", [search("rea", space, budget=Budget(150), seed=s) for s in seeds],
            "91.19 ± 0.31 (12,000 s of training)" if pub else "", True)
        add("AREA (FLOPs, N=1000), 150 queries", [search("area", space, predictor=flops, budget=Budget(150), seed=s)
                                                  for s in seeds], "91.20 ± 0.27 (AREA, NASWOT score)" if pub else "", True)
    elif not args.only_proxy:
        add("random, 150 queries", [search("random", space, budget=Budget(150), seed=s) for s in seeds], "", True)
        add("REA, 150 queries", [search("rea", space, budget=Budget(150), seed=s) for s in seeds],
            "91.19 ± 0.31 (12,000 s of training)" if pub else "", True)
        for n in (10, 100, 1000):
            add(f"NASWOT-style, FLOPs, N={n}", [search("naswot", space, predictor=flops, budget=Budget(0), seed=s,
                                                       options={"n_candidates": n}) for s in seeds])
        add("AREA (FLOPs, N=1000), 150 queries", [search("area", space, predictor=flops, budget=Budget(150), seed=s)
                                                  for s in seeds], "91.20 ± 0.27 (AREA, NASWOT score)" if pub else "", True)
        add("guided (FLOPs), 0 queries, 1000 predictor calls",
            [search("guided", space, predictor=flops, budget=Budget(0, 1000), seed=s) for s in seeds])
        add("guided (FLOPs), 150 queries, 3000 predictor calls",
            [search("guided", space, predictor=flops, budget=Budget(150, 3000), seed=s) for s in seeds], "", True)
        add("guided (FLOPs refitted every 25 queries), 150 queries",
            [search("guided", space, predictor=resolve_predictor("flops"), budget=Budget(150, 3000), seed=s, refit="fit",
                    options={"refit_every": 25}) for s in seeds], "", True)
        if args.kgnn_seeds:
            opts = {"refit_every": 50, "queries_per_generation": 5}
            add("guided (k-GNN trained on the queries), 150 queries",
                [search("guided", space, predictor=resolve_predictor("kgnn", epochs=30), budget=Budget(150, 3000), seed=s,
                        refit="fit", options=opts) for s in seeds[: args.kgnn_seeds]], "", True)
    if family == "nb201" and args.proxy:
        zc = resolve_predictor(f"zc:{args.proxy}")
        if args.score_cache:
            print(f"(loaded {load_score_cache(zc, args.score_cache)} cached proxy values)")
        published = {10: "89.14 ± 1.14", 100: "89.55 ± 0.89", 1000: "89.69 ± 0.73"}
        for n in (10, 100, 1000):
            ss = seeds if args.compute else _covered(space, zc, seeds, n)
            if not ss:
                print(f"| NASWOT-style, zc:{args.proxy}, N={n} | (no seed's candidates cached) |")
                continue
            add(f"NASWOT-style, zc:{args.proxy}, N={n}",
                [search("naswot", space, predictor=zc, budget=Budget(0), seed=s, options={"n_candidates": n}) for s in ss],
                f"{published[n]} (NASWOT, real CIFAR-10 batches)")
        ss = seeds if args.compute else _covered(space, zc, seeds, 1000)
        if ss:
            add(f"AREA (zc:{args.proxy}, N=1000), 150 queries",
                [search("area", space, predictor=zc, budget=Budget(150), seed=s) for s in ss], "91.20 ± 0.27", True)
    if family == "nb201" and args.gennape:
        gennape_rows(space, seeds, args, add)
    tag = f"{family}_proxy" if args.only_proxy else f"{family}_gennape" if args.only_gennape else family
    atomic_write_text(out / f"{tag}_table.md", header + "\n" + "\n".join(rows) + "\n")
    plot_best_found(curves, out / f"search_{tag}.png", optimum=space.optimum[1], max_queries=150,
                    title=f"{family}: best found vs queries (mean ± std over seeds)")
    return recs


def gennape_rows(space: SearchSpace, seeds: list[int], args: argparse.Namespace, add: Callable[..., None]) -> None:
    """Predictor-guided evolution with a GENNAPE checkpoint (zero-shot, 0 and 150 queries; fine-tuned on the queries).

    GENNAPE is calibrated on 1,000 seeded random cells per seed first (label-free, counted as
    predictor calls), so its screening calls score every child on one scale.
    """
    from napbench import zoo

    base = zoo.load(args.gennape)
    cal = args.calibrate
    t0 = time.perf_counter()
    add(f"guided (GENNAPE zero-shot, calibrated on {cal}), 0 queries",
        [search("guided", space, predictor=base, budget=Budget(0, cal + 1000), seed=s, calibration=cal) for s in seeds],
        "89.69 ± 0.73 (NASWOT N=1,000)")
    print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    add(f"guided (GENNAPE zero-shot, calibrated on {cal}), 150 queries",
        [search("guided", space, predictor=base, budget=Budget(150, cal + 3000), seed=s, calibration=cal) for s in seeds],
        "91.19 ± 0.31 (REA) / 91.20 ± 0.27 (AREA)", True)
    print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    opts = {"refit_every": args.gennape_refit_every}
    add(f"guided (GENNAPE fine-tuned on the queries every {args.gennape_refit_every}), 150 queries",
        [search("guided", space, predictor=base.clone(), budget=Budget(150, cal + 3000), seed=s, calibration=cal,
                refit="fine_tune", options=opts) for s in seeds[: args.gennape_tuned_seeds]],
        "91.19 ± 0.31 (REA) / 91.20 ± 0.27 (AREA)", True)
    print(f"({time.perf_counter() - t0:.0f} s)", flush=True)


def latency_section(seeds: list[int], args: argparse.Namespace, out: Path) -> dict:
    from scipy.stats import spearmanr

    from napbench.search.latency import HW_DEVICES, latency_column

    cols = [latency_column(d) for d in HW_DEVICES]
    space = SearchSpace.from_family("nb201", cost_columns=cols)
    res: dict = {"srcc": {}, "constrained": []}
    print(f"\n## latency predictor (ridge on CG per-op features), fitted on 300 random cells, SRCC on {args.eval_cells} other cells")
    print("| device | SRCC | MAE (ms) | cells evaluated |\n|---|---|---|---|")
    t0 = time.perf_counter()
    held = np.random.default_rng(99).permutation(len(space))
    for d, c in zip(HW_DEVICES, cols) if not args.only_constrained else ():
        p, train = fit_cost_predictor(space, c, n_train=300, seed=0)
        y = space.column(c)
        taken = set(train.tolist())
        rows = np.array([r for r in held if r not in taken and not np.isnan(y[r])][: args.eval_cells])
        pred = p.predict(space.graphs_for(rows))
        rho = float(spearmanr(pred, y[rows]).statistic)
        mae = float(np.mean(np.abs(pred - y[rows])))
        res["srcc"][d] = {"srcc": rho, "mae": mae, "n": int(rows.size)}
        print(f"| {d} | {rho:.3f} | {mae:.3f} | {int(rows.size)} |", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")
    print(f"\n## latency-constrained search ({args.constrained_strategy}, 150 queries; untrained candidates' latency "
          "estimated by the latency predictor, trained ones measured (table); hard constraint)")
    print("| device | limit τ (ms) | true constrained optimum | found (mean ± std) | within 0.5 | truly feasible | seeds |\n|---|---|---|---|---|---|---|")
    for d in args.devices:
        c = latency_column(d)
        lat = space.column(c)
        tau = float(np.nanquantile(lat, args.tau_quantile))
        _, opt = space.constrained_optimum(c, tau)
        rs = []
        # one accuracy predictor for every seed (a GENNAPE checkpoint keeps its embedding cache; it is recalibrated per seed)
        acc = resolve_predictor(args.constrained_predictor) if get_strategy(args.constrained_strategy).needs_predictor else None
        for s in seeds:
            p, trows = fit_cost_predictor(space, c, n_train=300, seed=s)
            con = Constraint(c, tau, mode="hard", predictor=p, margin=args.latency_margin, refit_every=args.latency_refit_every,
                             train_rows=tuple(int(r) for r in trows))
            rs.append(search(args.constrained_strategy, space, budget=Budget(150, args.constrained_calls), predictor=acc,
                             constraint=con, seed=s))
        t = np.array([r.true for r in rs])
        feas = np.array([r.cost_true <= tau for r in rs])
        within = np.array([r.true >= opt - 0.5 for r in rs])
        fq = np.mean([np.mean(lat[r.trajectory["row"].to_numpy()] <= tau) for r in rs])
        print(f"| {d} | {tau:.3f} | {opt:.2f} | {t.mean():.2f} ± {t.std():.2f} | {within.sum()}/{len(rs)} | {feas.sum()}/{len(rs)} | {len(rs)} |"
              f" (queries truly feasible: {fq:.0%})", flush=True)
        res["constrained"].append({"device": d, "tau": tau, "optimum": opt, "found": t.tolist(), "feasible": feas.tolist()})
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/search_bench")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--proxy", default="synflow", help="zero-cost proxy for the NASWOT/AREA rows ('' to skip)")
    ap.add_argument("--score-cache", default=None)
    ap.add_argument("--compute", action="store_true", help="compute missing proxy values instead of skipping uncached seeds")
    ap.add_argument("--families", nargs="*", default=["nb201", "transnas101_micro"])
    ap.add_argument("--devices", nargs="*", default=["edgegpu", "raspi4"])
    ap.add_argument("--tau-quantile", type=float, default=0.3)
    ap.add_argument("--constrained-strategy", default="rea")
    ap.add_argument("--constrained-predictor", default="flops", help="accuracy predictor of a constrained strategy that needs one")
    ap.add_argument("--constrained-calls", type=int, default=None, help="predictor-call budget of the constrained search")
    ap.add_argument("--latency-refit-every", type=int, default=0, help="refit the latency predictor on measured queries every N")
    ap.add_argument("--latency-margin", type=float, default=0.0, help="estimated latency held to tau * (1 - margin)")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--only-proxy", action="store_true", help="only the zero-cost proxy rows")
    ap.add_argument("--only-constrained", action="store_true", help="latency section: skip the SRCC table")
    ap.add_argument("--eval-cells", type=int, default=3000, help="held-out cells for the latency predictor SRCC")
    ap.add_argument("--gennape", default=None, help="GENNAPE checkpoint folder (trained without NB-201) for the guided rows")
    ap.add_argument("--only-gennape", action="store_true", help="only the GENNAPE rows (with REA and AREA(FLOPs) for reference)")
    ap.add_argument("--calibrate", type=int, default=1000, help="cells GENNAPE is calibrated on per seed (predictor calls)")
    ap.add_argument("--gennape-refit-every", type=int, default=50, help="queries between GENNAPE fine-tunings")
    ap.add_argument("--gennape-tuned-seeds", type=int, default=10, help="seeds for the fine-tuned GENNAPE row")
    ap.add_argument("--kgnn-seeds", type=int, default=3, help="seeds for the k-GNN-guided rows (each fits the k-GNN 3 times)")
    args = ap.parse_args()
    out = Path(args.out)
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    summary = {}
    for fam in args.families:
        summary[fam] = family_table(fam, None, seeds, args, out)
    if not args.skip_latency:
        summary["latency"] = latency_section(seeds, args, out)
    name = ("results_proxy.json" if args.only_proxy else "results_gennape.json" if args.only_gennape else "results_constrained.json" if args.only_constrained
            else "results_latency.json" if not args.families else "results.json")
    atomic_write_text(out / name, json.dumps(summary, indent=2))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; outputs in {out}")


if __name__ == "__main__":
    main()
