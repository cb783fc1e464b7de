"""Read-only access to the mirror of upstream benchmark tables.

The mirror root is, in order: an explicit argument, ``$NAPBENCH_MIRROR``. Every file read is
checked against the sha256 the project records for it, so a changed upstream table is
noticed instead of silently changing labels.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

from napbench.errors import MirrorError

MIRROR_ENV = "NAPBENCH_MIRROR"

#: while set (see :func:`upstream_resolver`), every :func:`mirror_file` call is answered by it
_RESOLVER: contextvars.ContextVar[Callable[[str, str], Path] | None] = contextvars.ContextVar("napbench_upstream", default=None)


@contextlib.contextmanager
def upstream_resolver(resolve: Callable[[str, str], Path]) -> Iterator[None]:
    """Within the block, families' table lookups ``(relpath, pinned sha256) -> path`` go to
    ``resolve`` (an upstream source: another mirror, an HTTPS download, new pins). Context-local,
    so concurrent tasks in threads each keep their own."""
    token = _RESOLVER.set(resolve)
    try:
        yield
    finally:
        _RESOLVER.reset(token)


def mirror_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the mirror directory: ``root`` if given, else ``$NAPBENCH_MIRROR``."""
    value = root if root is not None else os.environ.get(MIRROR_ENV)
    if not value:
        raise MirrorError(
            f"no data mirror configured; expected a directory passed as mirror=... or in ${MIRROR_ENV} "
            "(e.g. ../shared/data)"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise MirrorError(f"data mirror {str(path)!r} is not a directory; expected the upstream tables folder")
    return path


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file (cached by path, mtime and size)."""
    p = Path(path)
    st = p.stat()
    return _sha256(p, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mirror_file(relpath: str, sha256: str, *, root: str | os.PathLike[str] | None = None) -> Path:
    """Return the path of ``relpath`` under the mirror after checking its sha256.

    Raises :class:`MirrorError` naming the file when it is missing or its checksum differs.
    Inside :func:`upstream_resolver` the resolver answers instead.
    """
    resolve = _RESOLVER.get()
    if resolve is not None:
        return resolve(relpath, sha256)
    path = mirror_root(root) / relpath
    if not path.is_file():
        raise MirrorError(f"mirror file {relpath!r} not found under {str(path.parent)!r}; expected the upstream table")
    st = path.stat()
    got = _sha256(path, st.st_mtime_ns, st.st_size)
    if got != sha256:
        raise MirrorError(
            f"mirror file {relpath!r} has sha256 {got[:12]}..., expected {sha256[:12]}...; "
            "the upstream table changed or is corrupt"
        )
    return path


def require_columns(df_columns: list[str], needed: list[str], relpath: str) -> None:
    """Raise :class:`MirrorError` when a mirror table lacks columns the loader needs."""
    missing = [c for c in needed if c not in df_columns]
    if missing:
        raise MirrorError(f"mirror file {relpath!r} lacks column(s) {missing}; expected columns {needed}")
