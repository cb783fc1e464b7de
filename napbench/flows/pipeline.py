"""The ``pipeline`` flow: refresh -> train -> evaluate -> publish, then the headline table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from napbench.config import load_config
from napbench.flows.evaluate import run_evaluate
from napbench.flows.publish import run_publish
from napbench.flows.refresh import run_refresh
from napbench.flows.train import run_train


@flow(name="pipeline", log_prints=True)
def pipeline(params: str | None = None, push: bool | None = None, progress: bool = False) -> dict[str, Any]:
    """The main job: every configured family refreshed, predictors trained, evaluated, exported."""
    cfg = load_config(params)
    log = get_run_logger()
    t0 = time.perf_counter()
    refreshed = run_refresh(cfg, progress=progress)
    failed = [r for r in refreshed if r.status == "failed"]
    if failed:
        raise RuntimeError("refresh failed for " + "; ".join(f"{r.family}: {r.reason}" for r in failed))
    log.info("[1/4] refresh done in %.0f s", time.perf_counter() - t0)
    trained = run_train(cfg, progress=progress)
    ckpts = {r["predictor"]: r["path"] for r in trained}
    log.info("[2/4] training done in %.0f s", time.perf_counter() - t0)
    table = run_evaluate(cfg, ckpts, progress=progress)
    log.info("[3/4] evaluation done in %.0f s", time.perf_counter() - t0)
    published = run_publish(cfg, ckpts, push=push)
    log.info("[4/4] publish done in %.0f s", time.perf_counter() - t0)
    return {"refreshed": [(r.family, r.status, r.reason) for r in refreshed], "checkpoints": ckpts, "table": table,
            "results": str(Path(cfg.evaluate.out)), "hub": cfg.publish.export_dir, "published": published["pushed"],
            "seconds": round(time.perf_counter() - t0, 1)}
