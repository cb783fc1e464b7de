"""The ``publish`` flow: datasets, checkpoints and the DVC store in Hub layout, pushed to the Hub when configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped

from napbench.config import Config, load_config


@task(name="export-dataset", task_run_name="export {family}")
def export_dataset(family: str, root: str, out: str, license: str) -> str:
    """Write the Hub dataset repo folder of one family (no network)."""
    from napbench import hub
    from napbench.datasets._refresh import _read_record

    rec = _read_record(family, root) or {}
    return str(hub.export_dataset(Path(root) / f"{family}.parquet", out, license=license, upstream=rec.get("upstream")))


@task(name="export-checkpoint", task_run_name="export {name}")
def export_checkpoint(name: str, path: str, out: str) -> str:
    """Write the Hub model repo folder of one checkpoint (no network)."""
    from napbench import hub

    return str(hub.export_checkpoint(path, out))


@task(name="export-dvc-store")
def export_dvc_store(repo: str, stages: list[str], out: str, repo_id: str) -> dict[str, Any]:
    """Write the DVC objects of the build stages' recorded outputs as a Hub dataset repo laid out like a DVC remote.

    Returns the folder (None when no object is available) and the stages whose object is
    neither in the DVC cache nor in the workspace with its recorded md5.
    """
    from napbench import _dvc, hub

    objects = _dvc.cache_objects(stages, repo=repo)
    present = [o for o in objects if o.source is not None]
    folder = hub.export_dvc_store(present, out, repo_id=repo_id) if present else None
    return {"folder": str(folder) if folder else None, "objects": len(present),
            "missing": sorted({o.stage for o in objects if o.source is None})}


def dvc_repo(cfg: Config) -> Path | None:
    """The DVC repository of a configuration: the folder of its params.yaml (else the working
    folder) when it holds ``dvc.yaml`` and ``.dvc/``; None otherwise."""
    root = Path(cfg.path).resolve().parent if cfg.path else Path.cwd()
    return root if (root / "dvc.yaml").is_file() and (root / ".dvc").is_dir() else None


@task(name="push-repo", task_run_name="push {repo_id}", retries=2, retry_delay_seconds=5)
def push_repo(folder: str, repo_id: str, repo_type: str, record: str, private: bool) -> str:
    """Push one repo folder as one verified commit; records its revision. Touches the network: retried."""
    from napbench import hub

    return hub.push_folder(folder, repo_id, repo_type=repo_type, private=private, retries=0, record=record)


def run_publish(cfg: Config, checkpoints: dict[str, str], *, push: bool | None = None) -> dict[str, Any]:
    """The body of :func:`publish`: export every dataset and checkpoint, then push them when ``push``."""
    from napbench import hub

    log = get_run_logger()
    pp = cfg.publish
    out = Path(pp.export_dir)
    fams = [f for f in cfg.build.families if (Path(cfg.build.root) / f"{f}.parquet").is_file()]
    ds = export_dataset.map(fams, unmapped(cfg.build.root),
                            [str(out / "datasets" / hub.dataset_repo_id(f, pp.namespace)) for f in fams], unmapped(pp.license))
    names = list(checkpoints)
    ms = export_checkpoint.map(names, [checkpoints[n] for n in names],
                               [str(out / "models" / pp.namespace / Path(checkpoints[n]).name) for n in names])
    folders = {"dataset": [f.result() for f in ds], "model": [f.result() for f in ms]}
    log.info("exported %d dataset and %d model repos in Hub layout under %s", len(folders["dataset"]), len(folders["model"]), out)
    repo = dvc_repo(cfg)
    if pp.dvc_store and repo is None:
        log.info("DVC store: no DVC repository beside %s; not exported", cfg.path or "./params.yaml")
    elif pp.dvc_store:
        store_id = f"{pp.namespace}/{pp.dvc_store}"
        store = export_dvc_store(str(repo), [f"build@{f}" for f in cfg.build.families], str(out / "datasets" / store_id), store_id)
        if store["missing"]:
            log.info("DVC store: no cache object (nor a workspace file with the recorded md5) for %s; run `dvc repro` "
                     "or `dvc commit` to record what was built", ", ".join(store["missing"]))
        if store["folder"]:
            folders["dataset"].append(store["folder"])
            log.info("DVC store: %d objects in %s (a DVC HTTP remote once pushed: %s)", store["objects"], store["folder"],
                     hub.dvc_remote_url(store_id))
    pushed: dict[str, str] = {}
    if push if push is not None else pp.push:
        record = str(out / "published.json")
        for kind, paths in folders.items():
            for folder in paths:
                repo_id = f"{pp.namespace}/{Path(folder).name}"
                pushed[f"{kind}/{repo_id}"] = push_repo(folder, repo_id, kind, record, pp.private)
                log.info("pushed %s %s at revision %s", kind, repo_id, pushed[f"{kind}/{repo_id}"])
    return {"folders": folders, "pushed": pushed}


@flow(name="publish", log_prints=True)
def publish(params: str | None = None, push: bool | None = None) -> dict[str, Any]:
    """Export (and with ``push``/``publish.push``, push) datasets and checkpoints."""
    from napbench.flows.train import checkpoint_dir

    cfg = load_config(params)
    ckpts = {p: str(checkpoint_dir(cfg, p)) for p in cfg.pipeline.predictors if checkpoint_dir(cfg, p).is_dir()}
    return run_publish(cfg, ckpts, push=push)
