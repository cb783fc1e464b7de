"""The ``search`` flow: one search strategy over a labelled family (``napbench.search.run``).

The flow only sequences: each seed is one mapped task running the library function, so seeds
run in parallel on the configured task runner; the library writes the trajectory and plot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import flow, get_run_logger, task


@task(name="search-seed", task_run_name="search {strategy} seed {seed}")
def search_seed(strategy: str, seed: int, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``strategy`` for one seed; returns the result as a plain dict."""
    import dataclasses

    from napbench.search import run

    (res,) = run(strategy, seeds=(seed,), **dict(kwargs))
    d = {f.name: getattr(res, f.name) for f in dataclasses.fields(res) if f.name != "trajectory"}
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str, dict, type(None)))}


@flow(name="search", log_prints=True)
def search(strategy: str, *, seeds: Sequence[int] = (0,), family: str = "nb201", predictor: str | None = None,
           queries: int | None = 150, predictor_calls: int | None = None, root: str | None = None) -> list[dict[str, Any]]:
    """Search ``family`` with ``strategy`` once per seed (mapped tasks); returns one result per seed."""
    log = get_run_logger()
    kwargs = {"family": family, "predictor": predictor, "queries": queries, "predictor_calls": predictor_calls, "root": root}
    futures = [search_seed.submit(strategy, int(s), kwargs) for s in seeds]
    out = [f.result() for f in futures]
    for r in out:
        log.info("%s seed %s: %s true %.3f", strategy, r.get("seed"), r.get("arch"), r.get("true", float("nan")))
    return out
