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
