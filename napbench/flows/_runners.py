"""Task runners for the flows: threads on one machine, or Dask (``prefect-dask``) beyond it."""

from __future__ import annotations

from typing import Any

from napbench.config import RefreshParams
from napbench.errors import ConfigError


def _threads(p: RefreshParams) -> Any:
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=p.max_workers)


def _dask(p: RefreshParams) -> Any:
    from prefect_dask import DaskTaskRunner

    if p.dask_address:  # an existing cluster: tcp://scheduler:8786
        return DaskTaskRunner(address=p.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": p.max_workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


_RUNNERS = {"threads": _threads, "dask": _dask}


def task_runner(p: RefreshParams) -> Any:
    """The task runner ``refresh.task_runner`` names (``threads`` or ``dask``)."""
    try:
        return _RUNNERS[p.task_runner](p)
    except KeyError:
        raise ConfigError(f"refresh.task_runner is {p.task_runner!r}; expected one of {sorted(_RUNNERS)}") from None
