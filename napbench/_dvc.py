"""DVC bookkeeping the flows need: ``dvc commit`` of rebuilt stages, ``dvc push``/``pull``, and
the cache objects of recorded outputs (what ``napbench publish`` uploads as a DVC remote).

The DVC command line is run as a subprocess of this interpreter (``python -m dvc``), in the
repository folder, so flows and ``dvc repro`` see the same ``dvc.yaml`` and ``dvc.lock``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class CacheObject:
    """One DVC object of a recorded output.

    ``key`` is its path under a remote's root (DVC 3 outputs: ``files/md5/0a/56a2...``, the
    layout of the cache itself); ``source`` the file holding its bytes: the cache object, or the
    workspace file when it has the recorded md5 (an output rebuilt outside ``dvc repro`` with the
    same content); None when neither exists.
    """

    stage: str
    path: str
    md5: str
    key: str
    source: Path | None


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _object(odb: Any, root: Path, stage: str, rel: str, md5: str, workspace: Path | None) -> CacheObject:
    cached = Path(odb.oid_to_path(md5))
    src = cached if cached.is_file() else None
    if src is None and workspace is not None and workspace.is_file() and _md5(workspace) == md5:
        src = workspace
    return CacheObject(stage, rel, md5, cached.relative_to(root).as_posix(), src)


def cache_objects(stages: Sequence[str], *, repo: str | os.PathLike[str] = ".") -> list[CacheObject]:
    """The DVC objects of the outputs that dvc.lock records for ``stages`` (names as in
    ``dvc status``, e.g. ``build@nb201``; stages not in the lock are skipped).

    A directory output gives its ``.dir`` object and one object per file in it.
    """
    from dvc.repo import Repo

    want = set(stages)
    objects: list[CacheObject] = []
    with Repo(os.fspath(repo)) as r:
        root = Path(r.cache.legacy.path)  # the cache folder; a remote mirrors its layout below it
        for stage in r.index.stages:
            name = getattr(stage, "name", None)
            if name not in want:
                continue
            for out in stage.outs:
                oid = out.hash_info.value if out.hash_info else None
                if not out.use_cache or not oid:
                    continue
                path, rel = Path(out.fs_path), os.path.relpath(out.fs_path, r.root_dir)
                if not oid.endswith(".dir"):
                    objects.append(_object(out.cache, root, name, rel, oid, path))
                    continue
                tree = _object(out.cache, root, name, rel, oid, None)
                objects.append(tree)
                if tree.source is not None:
                    for entry in json.loads(tree.source.read_text(encoding="utf-8")):
                        objects.append(_object(out.cache, root, name, f"{rel}/{entry['relpath']}", entry["md5"],
                                               path / entry["relpath"]))
    return objects


def relock_deps(stages: Sequence[str] = (), *, repo: str | os.PathLike[str] = ".") -> list[str]:
    """Re-record the dependency and parameter hashes of ``stages`` (default: all) in dvc.lock,
    keeping their recorded outputs; returns the stages whose entry changed.

    The contract of ``dvc commit``: use it only after a change that does not alter the
    stages' outputs (a refactor, a comment, build debris now ignored); otherwise ``dvc repro``.
    Unlike ``dvc commit`` it does not need the outputs in the workspace, nor the dependencies
    that the lock records but the workspace lacks (another stage's output not built here: its
    recorded hash is kept), so a lock can be brought in step with the code without rebuilding
    datasets it already records.
    """
    from dvc.repo import Repo

    changed = []
    with Repo(os.fspath(repo)) as r, r.lock:
        for stage in r.index.stages:
            if not getattr(stage, "name", None) or (stages and stage.name not in stages):
                continue
            before = stage.dumpd()
            for dep in stage.deps:
                if dep.hash_info and not dep.exists:  # e.g. another stage's output not built here: keep its record
                    continue
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
