"""DVC bookkeeping the flows need: ``dvc commit`` of rebuilt stages, ``dvc push``/``pull``.

The DVC command line is run as a subprocess of this interpreter (``python -m dvc``), in the
repository folder, so flows and ``dvc repro`` see the same ``dvc.yaml`` and ``dvc.lock``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from napbench.errors import NapbenchError


class DvcError(NapbenchError, RuntimeError):
    """A dvc command failed."""


def run(args: Sequence[str], *, repo: str | os.PathLike[str] = ".", timeout: float = 600) -> str:
    """Run ``dvc ARGS`` in ``repo``; returns its stdout, raises :class:`DvcError` with its last error line."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise DvcError(f"dvc {' '.join(args)} failed in {repo}: {lines[-1] if lines else proc.returncode}")
    return proc.stdout


def commit(stages: Sequence[str], *, repo: str | os.PathLike[str] = ".") -> None:
    """``dvc commit --force STAGE...``: record the current outputs (and deps) of these stages in dvc.lock."""
    run(["commit", "--force", *stages], repo=repo)


def push(stages: Sequence[str] = (), *, repo: str | os.PathLike[str] = ".", remote: str | None = None) -> None:
    """``dvc push [STAGE...]`` to the default (or named) remote."""
    run(["push", *(["-r", remote] if remote else []), *stages], repo=repo)


def pull(stages: Sequence[str] = (), *, repo: str | os.PathLike[str] = ".", remote: str | None = None) -> None:
    """``dvc pull [STAGE...]`` from the default (or named) remote."""
    run(["pull", *(["-r", remote] if remote else []), *stages], repo=repo)


def relock_deps(stages: Sequence[str] = (), *, repo: str | os.PathLike[str] = ".") -> list[str]:
    """Re-record the dependency and parameter hashes of ``stages`` (default: all) in dvc.lock,
    keeping their recorded outputs; returns the stages whose entry changed.

    The contract of ``dvc commit``: use it only after a change that does not alter the
    stages' outputs (a refactor, a comment, build debris now ignored); otherwise ``dvc repro``.
    Unlike ``dvc commit`` it does not need the outputs in the workspace, so a lock can be
    brought in step with the code without rebuilding datasets it already records.
    """
    from dvc.repo import Repo

    changed = []
    with Repo(os.fspath(repo)) as r, r.lock:
        for stage in r.index.stages:
            if not getattr(stage, "name", None) or (stages and stage.name not in stages):
                continue
            before = stage.dumpd()
            for dep in stage.deps:
                dep.save()
            if stage.dumpd() != before or stage.changed_deps():
                changed.append(stage.name)
            stage.dump(update_pipeline=False)
    return changed


if __name__ == "__main__":  # python -m napbench._dvc relock [STAGE...]
    if sys.argv[1:2] != ["relock"]:
        raise SystemExit("usage: python -m napbench._dvc relock [STAGE...]")
    for name in relock_deps(sys.argv[2:]):
        print(f"relocked {name}")
