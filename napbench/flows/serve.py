"""``napbench serve``: the refresh flow (and the pipeline, if configured) on a schedule.

Registers one deployment per served flow with the Prefect server (``PREFECT_API_URL``; the
embedded one otherwise) and runs their scheduled runs in this process until SIGTERM/SIGINT.
Beyond one machine: create a process work pool (``prefect work-pool create napbench
--type process``), deploy with ``deploy(..., work_pool_name="napbench")`` and start
``prefect worker start --pool napbench`` on each machine; or point ``refresh.dask_address``
at a Dask scheduler (``refresh.task_runner: dask``).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from napbench.config import RefreshParams, load_config
from napbench.errors import ConfigError


def schedule_kwargs(p: RefreshParams) -> dict[str, Any]:
    """``cron=...`` or ``interval=...`` for ``to_deployment`` from ``refresh.cron`` / ``refresh.interval_s``."""
    if p.cron and p.interval_s:
        raise ConfigError("refresh has both cron and interval_s; expected one schedule")
    if p.cron:
        from prefect.client.schemas.schedules import CronSchedule

        return {"schedule": CronSchedule(cron=p.cron, timezone=p.timezone)}
    if p.interval_s:
        return {"interval": float(p.interval_s)}
    raise ConfigError("no schedule: expected refresh.cron (e.g. '0 3 * * *') or refresh.interval_s in params.yaml")


def deployments(params: str | None) -> list[Any]:
    """The deployments ``serve`` runs: ``refresh`` (and ``pipeline`` when ``refresh.serve_pipeline``)."""
    from prefect.deployments.runner import EntrypointType

    from napbench.flows.pipeline import pipeline
    from napbench.flows.refresh import refresh

    cfg = load_config(params)
    sched = schedule_kwargs(cfg.refresh)
    path = str(Path(cfg.path).resolve()) if cfg.path else None
    common = {"parameters": {"params": path}, "entrypoint_type": EntrypointType.MODULE_PATH, **sched}
    out = [refresh.to_deployment(name="napbench-refresh", **common)]
    if cfg.refresh.serve_pipeline:
        out.append(pipeline.to_deployment(name="napbench-pipeline", **common))
    return out


def serve(params: str | None = None, *, limit: int | None = 1) -> None:
    """Serve the deployments until SIGTERM or SIGINT (a clean stop: the runner shuts down).

    ``limit``: flow runs at once in this process (default 1: a scheduled refresh that finds the
    previous one still running waits for it instead of piling up)."""
    from prefect import serve as prefect_serve

    deps = deployments(params)

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, _stop)
    try:
        prefect_serve(*deps, limit=limit, pause_on_shutdown=False)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
