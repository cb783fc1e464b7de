"""``napbench.search.run``: family + predictor + strategy + seeds -> results, trajectory Parquet, plot."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napbench._io import atomic_file, atomic_write_text
from napbench.errors import InvalidArgumentError
from napbench.search._base import Budget, Constraint, SearchResult, get_strategy, search
from napbench.search._space import SearchSpace


def resolve_predictor(spec: Any, **kwargs: Any) -> Any:
    """A predictor from a registered name (``napbench.zoo.list_predictors()``) or a checkpoint folder.

    An object that already has ``predict`` is returned as it is.
    """
    if spec is None or hasattr(spec, "predict"):
        return spec
    from napbench import zoo

    if Path(str(spec)).expanduser().is_dir():
        return zoo.load(str(spec))
    return zoo.get_predictor(str(spec), **kwargs)


def fit_cost_predictor(space: SearchSpace, column: str, *, n_train: int = 300, seed: int = 0, predictor: str = "latency",
                       **kwargs: Any) -> tuple[Any, np.ndarray]:
    """Fit a cost predictor on ``n_train`` seeded random rows' true ``column`` ("measured cells"); returns it and the rows."""
    cost = space.column(column)
    ok = np.flatnonzero(~np.isnan(cost))
    if ok.size < 2:
        raise InvalidArgumentError(f"column {column!r} has {ok.size} measured rows; expected at least 2 to fit a cost predictor")
    rng = np.random.default_rng(10_000 + seed)
    rows = rng.choice(ok, size=min(n_train, ok.size), replace=False)
    p = resolve_predictor(predictor, **kwargs)
    p.fit(space.graphs_for(rows), cost[rows], seed=seed, progress=False)
    return p, rows


def run(
    strategy: str,
    *,
    family: str = "nb201",
    label: str | None = None,
    predictor: Any = None,
    predictor_kwargs: Mapping[str, Any] | None = None,
    queries: int | None = 150,
    predictor_calls: int | None = None,
    seeds: Sequence[int] = (0,),
    options: Mapping[str, Any] | None = None,
    refit: str | None = None,
    device: str | None = None,
    latency_limit: float | None = None,
    constraint_mode: str = "hard",
    latency_source: str = "predictor",
    latency_train: int = 300,
    latency_margin: float = 0.0,
    latency_refit_every: int = 0,
    space: SearchSpace | None = None,
    out: str | os.PathLike[str] | None = None,
    score_cache: str | os.PathLike[str] | None = None,
    calibration: int | None = None,
    root: str | None = None,
    mirror: str | None = None,
) -> list[SearchResult]:
    """Run ``strategy`` once per seed; with ``out``, write ``trajectory.parquet``, ``results.json`` and ``search.png``.

    ``predictor``: a registered name or a checkpoint folder (or a predictor object); one
    instance serves every seed (so proxy caches are shared), but with ``refit`` each seed
    gets a fresh clone. ``device`` + ``latency_limit``: keep HW-NAS-Bench latency on that
    device at most the limit, estimated by a ``latency`` predictor fitted on
    ``latency_train`` random cells (``latency_source="table"``: the true column); an estimate
    must stay below ``latency_limit * (1 - latency_margin)``, a measured (trained) cell's latency below the limit;
    ``latency_refit_every``: refit the latency predictor on its cells plus the trained cells' measured latency every N queries.
    ``score_cache``: a Parquet file of proxy values read before and written after.
    ``calibration``: rows a population-relative predictor is calibrated on per seed (see
    :func:`~napbench.search.search`; None: the default size for such predictors, 0: none).
    """
    get_strategy(strategy, **dict(options or {}))  # fail fast on bad names/options
    if not seeds:
        raise InvalidArgumentError("no seeds; expected at least one seed")
    from napbench.search.latency import latency_column

    col = latency_column(device) if device is not None else None
    if (device is None) != (latency_limit is None):
        raise InvalidArgumentError("a latency constraint needs both device and latency_limit; expected both or neither")
    if space is None:
        space = SearchSpace.from_family(family, label=label, root=root, mirror=mirror, cost_columns=[col] if col else [])
    base = resolve_predictor(predictor, **dict(predictor_kwargs or {}))
    if score_cache is not None and base is not None:
        from napbench.search._cache import load_score_cache

        load_score_cache(base, score_cache)
    budget = Budget(queries=queries, predictor_calls=predictor_calls)
    results = []
    try:
        for seed in seeds:
            constraint = None
            if col is not None:
                cost_pred, cost_rows = None, np.zeros(0, dtype=np.int64)
                if latency_source == "predictor":
                    cost_pred, cost_rows = fit_cost_predictor(space, col, n_train=latency_train, seed=seed)
                constraint = Constraint(col, float(latency_limit), mode=constraint_mode, predictor=cost_pred, source=latency_source,
                                        margin=float(latency_margin), refit_every=int(latency_refit_every),
                                        train_rows=tuple(int(r) for r in cost_rows))
            pred = base.clone() if (refit and base is not None and hasattr(base, "clone")) else base
            results.append(search(strategy, space, budget=budget, predictor=pred, constraint=constraint, seed=int(seed),
                                  refit=refit, options=dict(options or {}), calibration=calibration))
    finally:
        if score_cache is not None and base is not None:
            from napbench.search._cache import save_score_cache

            save_score_cache(base, score_cache)
    if out is not None:
        write_outputs(results, out, space=space)
    return results


def _is_ours(p: Path) -> bool:
    return p.suffix in (".parquet", ".json", ".png")


def write_outputs(results: Sequence[SearchResult], out: str | os.PathLike[str], *, space: SearchSpace | None = None) -> dict[str, Path]:
    """``trajectory.parquet`` (every query of every seed), ``results.json`` and ``search.png`` under ``out``."""
    import polars as pl

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"output {str(out)!r} is a file; expected a folder for the search outputs")
    frames = [r.trajectory.with_columns(pl.lit(r.seed).alias("seed"), pl.lit(r.strategy).alias("strategy")) for r in results]
    traj = pl.concat(frames) if frames else pl.DataFrame()
    paths = {"trajectory": out / "trajectory.parquet", "results": out / "results.json", "plot": out / "search.png"}
    with atomic_file(paths["trajectory"], is_ours=_is_ours, what="trajectory", suffix=".parquet") as tmp:
        traj.write_parquet(tmp)
    summary = {
        "results": [
            {k: v for k, v in vars(r).items() if k != "trajectory"} for r in results
        ],
        "mean_true": float(np.mean([r.true for r in results])),
        "std_true": float(np.std([r.true for r in results])),
    }
    if space is not None:
        summary["optimum"] = space.optimum[1]
    atomic_write_text(paths["results"], json.dumps(summary, indent=2, default=str), is_ours=_is_ours, what="results file")
    plot_best_found({results[0].strategy if results else "search": results}, paths["plot"],
                    optimum=space.optimum[1] if space is not None else None)
    return paths


def plot_best_found(curves: Mapping[str, Sequence[SearchResult]], path: str | os.PathLike[str], *, optimum: float | None = None,
                    max_queries: int | None = None, title: str = "") -> Path:
    """Best-found true accuracy against queries, mean +- std over seeds, one line per entry of ``curves``.

    Zero-query searches are drawn as a flat line at their answer's accuracy.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    all_n = [r.n_queries for rs in curves.values() for r in rs]
    q = max_queries or max([*all_n, 1])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = np.arange(1, q + 1)
    lows = []
    for name, rs in curves.items():
        mat = np.array([_curve(r, q) for r in rs])
        m, s = mat.mean(axis=0), mat.std(axis=0)
        ax.plot(xs, m, label=f"{name} ({m[-1]:.2f})")
        ax.fill_between(xs, m - s, m + s, alpha=0.15)
        lows.append(float(m[min(q, 10) - 1]))
    if optimum is not None:
        ax.axhline(optimum, color="k", ls=":", lw=1, label=f"optimum ({optimum:.2f})")
    if lows and optimum is not None:  # the interesting range: from the worst mean after 10 queries to the optimum
        span = max(optimum - min(lows), 0.5)
        ax.set_ylim(optimum - 1.3 * span, optimum + 0.15 * span)
    if q >= 20:
        ax.set_xscale("log")
    ax.set_xlabel("queries (architectures trained)")
    ax.set_ylabel("true accuracy of best found (%)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(path, is_ours=_is_ours, what="plot", suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return Path(path)


def _curve(r: SearchResult, q: int) -> np.ndarray:
    """Best-found true accuracy after 1..q queries (the answer itself when the search made none)."""
    out = np.full(q, r.true, dtype=np.float64)
    t = r.trajectory
    if t.height:
        n = t["n_queries"].to_numpy()
        b = t["best_true"].to_numpy()
        for i in range(q):
            k = np.searchsorted(n, i + 1, side="right") - 1
            out[i] = b[max(k, 0)] if k >= 0 else np.nan
        out[np.isnan(out)] = b[0]
    return out
