"""The ``train`` flow: the configured predictors on the configured source families."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped

from napbench.config import Config, TrainParams, load_config


def train_params(cfg: Config, predictor: str) -> TrainParams:
    """How the pipeline trains ``predictor``: ``train:`` with its ``pipeline.options`` applied."""
    return cfg.pipeline.train_params(cfg.train, predictor)


def checkpoint_dir(cfg: Config, predictor: str) -> Path:
    """Where the pipeline keeps ``predictor``'s checkpoint."""
    sources = train_params(cfg, predictor).sources
    return Path(cfg.pipeline.checkpoints) / f"{predictor.replace(':', '-')}-{'+'.join(sources)}"


@task(name="train-predictor", task_run_name="train {params.predictor}")
def train_predictor(params: TrainParams, progress: bool = False) -> dict[str, Any]:
    """Fit one predictor and save its checkpoint (``napbench.evaluation.train``)."""
    from napbench.evaluation import train

    res = train(params, progress=progress)
    return {"predictor": params.predictor, "path": str(res.path), "n_train": res.n_train, "metrics": res.metrics}


def run_train(cfg: Config, *, progress: bool = False) -> list[dict[str, Any]]:
    """The body of :func:`train` (inside a flow run): one mapped task per predictor, run in parallel."""
    log = get_run_logger()
    params = [dataclasses.replace(train_params(cfg, p), out=str(checkpoint_dir(cfg, p)), root=cfg.train.root or cfg.build.root)
              for p in cfg.pipeline.predictors]
    out = [f.result() for f in train_predictor.map(params, progress=unmapped(progress))]
    for r, tp in zip(out, params):
        log.info("trained %s on %s (%d architectures): %s", r["predictor"], "+".join(tp.sources), r["n_train"], r["path"])
    return out


@flow(name="train", log_prints=True)
def train(params: str | None = None) -> list[dict[str, Any]]:
    """Train ``pipeline.predictors`` on ``train.sources`` (``params``: a params.yaml path)."""
    return run_train(load_config(params))
