"""The ``refresh`` flow: rebuild the families whose upstream sources, converter or vocabulary changed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped

from napbench.config import Config, SourceSpec, load_config
from napbench.datasets import _refresh as lib
from napbench.flows._runners import task_runner


@task(name="check-family", task_run_name="check {family}")
def check_family(family: str, root: str, spec: SourceSpec, limit: int | None) -> lib.Decision:
    """Does ``family`` need a rebuild? (checksums and versions only)"""
    return lib.check(family, root, spec, limit=limit)


@task(name="fetch-upstream", task_run_name="fetch {family}", retries=2, retry_delay_seconds=5)
def fetch_family(family: str, root: str, spec: SourceSpec) -> dict[str, str]:
    """Download (when remote), check and parse the family's upstream tables. Touches the network: retried."""
    return lib.fetch(family, root, spec)


@task(name="build-family", task_run_name="build {family}")
def build_family(family: str, root: str, spec: SourceSpec, limit: int | None, workers: int | None, fetched: dict[str, str],
                 progress: bool = False) -> dict[str, Any]:
    """Build into a staging folder, validate, swap in, record the sources."""
    path, used = lib.rebuild(family, root, spec, limit=limit, workers=workers, progress=progress)
    return {"family": family, "path": str(path), "upstream": used}


@task(name="dvc-commit")
def dvc_commit(stages: list[str], repo: str) -> None:
    """Record the rebuilt outputs in dvc.lock."""
    from napbench import _dvc

    _dvc.commit(stages, repo=repo)


@task(name="dvc-push", retries=2, retry_delay_seconds=5)
def dvc_push(stages: list[str], repo: str) -> None:
    """Push the rebuilt outputs to the default DVC remote. Touches the network: retried."""
    from napbench import _dvc

    _dvc.push(stages, repo=repo)


def run_refresh(cfg: Config, *, families: list[str] | None = None, force: bool = False, repo: str | None = None,
                progress: bool = False) -> list[lib.RefreshResult]:
    """The body of :func:`refresh` (inside a flow run): mapped check -> fetch -> build per family."""
    log = get_run_logger()
    fams = list(families or cfg.refresh.families or cfg.build.families)
    root = cfg.build.root
    specs = [cfg.refresh.source(f) for f in fams]
    decisions = [f.result() for f in check_family.map(fams, unmapped(root), specs, unmapped(cfg.build.limit))]
    todo = [(d, s) for d, s in zip(decisions, specs, strict=True) if d.rebuild or force]
    for d in decisions:
        if not (d.rebuild or force):
            log.info("skipped %s: %s", d.family, d.reason)
    names = [d.family for d, _ in todo]
    fetched = fetch_family.map(names, unmapped(root), [s for _, s in todo])  # one download task per family
    built = build_family.map(names, unmapped(root), [s for _, s in todo], unmapped(cfg.build.limit),
                             unmapped(cfg.build.workers), fetched, unmapped(progress))
    results: list[lib.RefreshResult] = []
    for d, fut in zip([d for d, _ in todo], built, strict=True):
        fut.wait()
        if fut.state.is_completed():
            out = fut.result()
            log.info("rebuilt %s: %s", d.family, "forced" if force and not d.rebuild else d.reason)
            results.append(lib.RefreshResult(d.family, "rebuilt", d.reason, Path(out["path"]), out["upstream"]))
        else:
            reason = _failure(fut)
            log.error("FAILED %s (previous dataset kept): %s", d.family, reason)
            results.append(lib.RefreshResult(d.family, "failed", reason))
    results += [lib.RefreshResult(d.family, "skipped", d.reason, Path(root) / f"{d.family}.parquet")
                for d in decisions if not (d.rebuild or force)]
    rebuilt = [f"build@{r.family}" for r in results if r.status == "rebuilt"]
    if rebuilt and cfg.refresh.dvc:
        dvc_commit(rebuilt, repo or ".")
        if cfg.refresh.push:
            dvc_push(rebuilt, repo or ".")
    return results


def _failure(fut: Any) -> str:
    try:
        fut.result()
    except BaseException as exc:  # noqa: BLE001 - the task's own error, reported as one line
        text = str(exc).strip().splitlines()
        return text[0] if text else type(exc).__name__
    return str(fut.state.message or fut.state.name)


@flow(name="refresh", log_prints=True)
def refresh(params: str | None = None, families: list[str] | None = None, force: bool = False,
            root: str | None = None) -> list[dict[str, Any]]:
    """Refresh family datasets from their upstream sources (``params``: a params.yaml path)."""
    cfg = load_config(params)
    if root is not None:
        cfg = dataclasses.replace(cfg, build=dataclasses.replace(cfg.build, root=root))
    res = run_refresh(cfg, families=families, force=force)
    return [dataclasses.asdict(r) | {"path": str(r.path) if r.path else None} for r in res]


def refresh_with_runner(params: str | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """Run :func:`refresh` with the task runner ``refresh.task_runner`` names (threads or Dask)."""
    cfg = load_config(params)
    return refresh.with_options(task_runner=task_runner(cfg.refresh))(params=params, **kwargs)
