"""Refreshing family datasets from their upstream sources (the library behind the ``refresh`` flow).

A family's label tables come from a :class:`~napbench.config.SourceSpec`: a mirror folder
(default ``$NAPBENCH_MIRROR``) or an HTTP(S) base URL, each table pinned by sha256 (the
family's own pin unless the spec overrides it). Per family:

1. :func:`check` decides, without building, whether the dataset must be rebuilt: no dataset
   or no record of its last build; another vocabulary or converter version; another
   ``limit``; an upstream table whose pin (URL) or content (mirror) differs from the one the
   dataset was built from; a dataset file that is not the one recorded.
2. :func:`fetch` resolves every table the family reads (downloading URL tables to a temp
   file, checking the sha256, then swapping it into ``<root>/.refresh/upstream/``) and parses
   the labels once, so a failed or corrupt download stops here, before anything is built.
3. :func:`rebuild` builds into ``<root>/.refresh/stage/<family>/``, validates the result and
   only then swaps it onto ``<root>/<family>.parquet`` and writes the build record
   ``<root>/.refresh/<family>.json``. A kill at any point leaves the previous dataset.

:func:`refresh_family` runs the three; the Prefect flow runs them as separate tasks (with
retries on the network-touching :func:`fetch` only).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napbench._io import atomic_file, atomic_write_text
from napbench.config import SourceSpec
from napbench.datasets._mirror import file_sha256, mirror_root, upstream_resolver
from napbench.errors import UpstreamError

__all__ = ["Decision", "RefreshResult", "check", "fetch", "rebuild", "record_path", "refresh_family"]

STATE_DIR = ".refresh"


@dataclass(frozen=True)
class Decision:
    """Whether a family needs a rebuild, and why."""

    family: str
    rebuild: bool
    reason: str


@dataclass(frozen=True)
class RefreshResult:
    """The outcome of refreshing one family."""

    family: str
    status: str  # "rebuilt" | "skipped" | "failed"
    reason: str
    path: Path | None = None
    upstream: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def record_path(family: str, root: str | os.PathLike[str]) -> Path:
    """``<root>/.refresh/<family>.json``: what the current dataset was built from."""
    return Path(root) / STATE_DIR / f"{family}.json"


def _versions() -> dict[str, str]:
    from napbench.conversion import CONVERTER_VERSION
    from napbench.conversion.vocab import VOCAB_VERSION

    return {"vocab_version": str(VOCAB_VERSION), "converter_version": str(CONVERTER_VERSION)}


def _read_record(family: str, root: str | os.PathLike[str]) -> dict[str, Any] | None:
    p = record_path(family, root)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _url_sha(url: str, dest: Path, pin: str, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to a temp file beside ``dest``, check its sha256, then swap it in."""
    h = hashlib.sha256()
    try:
        with atomic_file(dest, is_ours=lambda p: True, what="upstream table") as tmp:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != pin:
                raise UpstreamError(f"{url} has sha256 {h.hexdigest()[:12]}..., expected the pinned {pin[:12]}...; "
                                    "kept the previous table and dataset")
    except (urllib.error.URLError, OSError) as exc:
        if isinstance(exc, UpstreamError):
            raise
        reason = getattr(exc, "reason", None) or exc
        raise UpstreamError(f"cannot download {url} ({reason}); expected a reachable upstream table") from None
    return dest


def resolver(spec: SourceSpec, root: str | os.PathLike[str], used: dict[str, str], *, offline: bool = False
             ) -> Callable[[str, str], Path]:
    """The ``(relpath, family pin) -> path`` lookup of ``spec``; records each table's pin in ``used``.

    Mirror: the table in the mirror folder, which must match the pin. URL: the copy under
    ``<root>/.refresh/upstream/`` when it matches the pin, else (unless ``offline``) a fresh
    download, checked before it replaces the copy.
    """
    cache = Path(root) / STATE_DIR / "upstream"

    def resolve(relpath: str, family_pin: str) -> Path:
        pin = spec.sha256.get(relpath, family_pin)
        if spec.url is None:
            path = mirror_root(spec.mirror) / relpath
            if not path.is_file():
                raise UpstreamError(f"upstream table {relpath!r} not found under {str(path.parent)!r}; expected the mirror's copy")
            got = file_sha256(path)
            if got != pin:
                raise UpstreamError(f"upstream table {relpath!r} has sha256 {got[:12]}..., expected the pinned {pin[:12]}...; "
                                    "changed or corrupt upstream (pin the new sha256 in params.yaml refresh.sources to adopt it)")
        else:
            path = cache / relpath
            if not (path.is_file() and file_sha256(path) == pin):
                if offline:
                    raise UpstreamError(f"upstream table {relpath!r} is not fetched yet; expected fetch() before rebuild()")
                _url_sha(spec.url.rstrip("/") + "/" + relpath, path, pin)
        used[relpath] = pin
        return path

    return resolve


def check(family: str, root: str | os.PathLike[str], spec: SourceSpec, *, limit: int | None = None) -> Decision:
    """Does ``family``'s dataset under ``root`` need a rebuild? (no download, no build)"""
    from napbench.conversion.storage import read_metadata
    from napbench.errors import NapbenchError

    path = Path(root) / f"{family}.parquet"
    if not path.is_file():
        return Decision(family, True, "no dataset yet")
    rec = _read_record(family, root)
    if rec is None:
        return Decision(family, True, "no record of the sources it was built from")
    try:
        md = read_metadata(path)
    except NapbenchError as exc:
        return Decision(family, True, f"unreadable dataset ({exc})")
    for key, now in _versions().items():
        if str(md.get(key)) != now:
            return Decision(family, True, f"{key.replace('_', ' ')} {md.get(key)} -> {now}")
    if rec.get("limit") != limit:
        return Decision(family, True, f"limit {rec.get('limit')} -> {limit}")
    if rec.get("parquet_sha256") != file_sha256(path):
        return Decision(family, True, "the dataset file is not the one this refresh wrote")
    source = {"url": spec.url} if spec.url else {"mirror": str(mirror_root(spec.mirror)) if rec.get("upstream") else None}
    if spec.url and rec.get("source", {}).get("url") != spec.url:
        return Decision(family, True, f"source {rec.get('source')} -> {source}")
    for relpath, old in sorted((rec.get("upstream") or {}).items()):
        pin = spec.sha256.get(relpath, old)
        if spec.url is None:
            p = mirror_root(spec.mirror) / relpath
            now = file_sha256(p) if p.is_file() else "missing"
            if now != old:
                return Decision(family, True, f"upstream {relpath} changed (sha256 {old[:12]}... -> {now[:12]}...)")
        elif pin != old:
            return Decision(family, True, f"upstream {relpath} pin {old[:12]}... -> {pin[:12]}...")
    return Decision(family, False, "sources, versions and limit unchanged")


def fetch(family: str, root: str | os.PathLike[str], spec: SourceSpec) -> dict[str, str]:
    """Resolve (download when remote) and parse every upstream table of ``family``; returns ``{relpath: sha256}``."""
    from napbench.datasets import get_family

    fam = get_family(family)
    used: dict[str, str] = {}
    if fam.labelled:
        with upstream_resolver(resolver(spec, root, used)):
            fam.load_labels(mirror=spec.mirror)
    return used


def _validate(path: Path, family: str, n_expected: int | None) -> None:
    import pyarrow.parquet as pq

    from napbench.datasets import get_family, load_file

    ds = load_file(path)
    if len(ds) == 0 or (n_expected is not None and len(ds) != n_expected):
        raise UpstreamError(f"built {family} has {len(ds)} rows; expected {n_expected or 'at least one'}")
    fam = get_family(family)
    if fam.labelled:
        col = ds.default_label
        if col is None or pq.read_table(path, columns=[col]).column(col).null_count == len(ds):
            raise UpstreamError(f"built {family} has no values in its label column {col!r}; expected real labels")


def rebuild(
    family: str, root: str | os.PathLike[str], spec: SourceSpec, *, limit: int | None = None, workers: int | None = None,
    progress: bool = False,
) -> tuple[Path, dict[str, str]]:
    """Build ``family`` from ``spec`` (already fetched) into a staging folder, validate, then swap
    it onto ``<root>/<family>.parquet`` and record its sources. Returns the path and the tables used."""
    from napbench.datasets import build

    root = Path(root)
    stage = root / STATE_DIR / "stage" / family
    if stage.exists():  # a killed earlier refresh of this family: its staging folder is ours
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    used: dict[str, str] = {}
    try:
        with upstream_resolver(resolver(spec, root, used, offline=True)):
            staged = build(family, stage, mirror=spec.mirror, limit=limit, workers=workers, progress=progress)
        _validate(staged, family, None)
        final = root / f"{family}.parquet"
        with atomic_file(final, what="napbench dataset") as tmp:
            shutil.copyfile(staged, tmp)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    source = {"url": spec.url} if spec.url else {"mirror": str(mirror_root(spec.mirror)) if used else None}
    rec = {"family": family, "limit": limit, "upstream": used, "source": source, **_versions(),
           "parquet_sha256": file_sha256(final), "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_text(record_path(family, root), json.dumps(rec, indent=2, sort_keys=True) + "\n")
    return final, used


def refresh_family(
    family: str, root: str | os.PathLike[str], spec: SourceSpec | None = None, *, limit: int | None = None,
    workers: int | None = None, force: bool = False, progress: bool = False,
) -> RefreshResult:
    """Check, fetch and (when needed) rebuild one family; failures leave the old dataset and come back as ``failed``."""
    from napbench.errors import NapbenchError

    spec = spec or SourceSpec()
    t0 = time.perf_counter()
    try:
        d = check(family, root, spec, limit=limit)
        if not d.rebuild and not force:
            return RefreshResult(family, "skipped", d.reason, Path(root) / f"{family}.parquet")
        fetch(family, root, spec)
        path, used = rebuild(family, root, spec, limit=limit, workers=workers, progress=progress)
    except NapbenchError as exc:
        return RefreshResult(family, "failed", str(exc).splitlines()[0], seconds=time.perf_counter() - t0)
    return RefreshResult(family, "rebuilt", "forced" if force and not d.rebuild else d.reason, path, used,
                         time.perf_counter() - t0)
