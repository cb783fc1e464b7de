"""Prefect flows: thin sequences of small typed tasks over napbench library functions.

* :func:`refresh` -- check each family's upstream sources by checksum, rebuild only what
  changed (mapped, parallel tasks; retries only on the download task), validate, swap the
  Parquet in atomically, then ``dvc commit`` and ``dvc push`` when configured;
* :func:`train` -- the configured predictors on the configured source families;
* :func:`evaluate` -- zero-shot and k-shot tables, metrics and plots;
* :func:`publish` -- datasets and checkpoints in Hub layout, pushed when configured;
* :func:`pipeline` -- all four.

Every step is a library function (``napbench.datasets._refresh``, ``napbench.evaluation.train``,
``napbench.evaluation.evaluate_transfer``, ``napbench.hub``) that tests call without Prefect.
With no ``PREFECT_API_URL`` configured, Prefect runs flows on its embedded local server.
Flows take the path of a ``params.yaml`` (read once per run by :func:`napbench.config.load_config`).
"""

from __future__ import annotations

from typing import Any

_FLOWS = ("refresh", "train", "evaluate", "publish", "pipeline")


def __getattr__(name: str) -> Any:
    if name in _FLOWS:
        import importlib

        return getattr(importlib.import_module(f"napbench.flows.{name}"), name)
    raise AttributeError(f"module 'napbench.flows' has no attribute {name!r}")


__all__ = list(_FLOWS)
