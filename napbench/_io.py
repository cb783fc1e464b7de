"""The one place that decides how napbench writes outputs.

Every file or folder napbench produces goes through :func:`atomic_file` or
:func:`atomic_dir`:

* **atomic**: the content is written to a temp sibling (same folder, so the final
  ``os.replace`` is a rename on one file system) and only renamed onto the target once
  complete; a kill at any point leaves either the old target or the new one, never half;
* **never replaces what is not ours**: an existing target is replaced only when the caller
  says that kind of file may be replaced (``replace=True``) *and*, when an ``is_ours``
  check is given, that check accepts it (a checkpoint folder only replaces a checkpoint
  folder); a folder is never replaced by a file;
* **umask respected**: temp files are created 0600 by ``mkstemp``; the result gets
  ``0o666 & ~umask`` (files) or ``0o777 & ~umask`` (folders), what ``open()``/``mkdir``
  would have given;
* **stale temps cleaned**: our temp siblings of the same target whose writer process is
  gone (a ``kill -9`` mid-write) are removed on the next write to that target.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from napbench.errors import OutputPathError

__all__ = ["atomic_file", "atomic_dir", "atomic_write_bytes", "atomic_write_text", "current_umask", "clean_stale_temps"]

_TAG = "napbench-tmp"
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\." + _TAG + r"(?:\.[A-Za-z0-9]+)?$")


def current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status``; thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:  # pragma: no cover - not Linux
        pass
    old = os.umask(0o022)  # pragma: no cover - fallback; racy under threads, but only off Linux
    os.umask(old)  # pragma: no cover
    return old  # pragma: no cover


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


def clean_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove our temp siblings of ``target`` left by writers that no longer run; returns them."""
    target = Path(target)
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    for p in target.parent.iterdir():
        m = _TMP_RE.match(p.name)
        if not m or m.group("name") != target.name or _pid_alive(int(m.group("pid"))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def _check_target(target: Path, *, kind: str, replace: bool, is_ours: Callable[[Path], bool] | None, what: str) -> None:
    if target.is_symlink() and not target.exists():
        raise OutputPathError(f"output {str(target)!r} is a dangling link; expected a {what} path")
    if not target.exists():
        if target.parent.exists() and not target.parent.is_dir():
            raise OutputPathError(f"output {str(target)!r} is inside {str(target.parent)!r}, which is a file; expected a folder")
        return
    if kind == "file" and target.is_dir():
        raise OutputPathError(f"output {str(target)!r} is an existing folder; expected a {what} path")
    if kind == "dir" and not target.is_dir():
        raise OutputPathError(f"output {str(target)!r} is an existing file; expected a new or napbench-made {what} folder")
    if not replace:
        raise OutputPathError(f"output {str(target)!r} already exists; expected a new path (napbench does not overwrite it)")
    if is_ours is not None and not is_ours(target):
        raise OutputPathError(
            f"output {str(target)!r} exists and is not a {what} made by napbench; expected a new path or a napbench {what}"
        )


def _prepare_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputPathError(f"output {str(target)!r}: a parent folder is a file; expected a folder") from None
    except PermissionError:
        raise OutputPathError(f"output {str(target)!r}: cannot create its folder (permission denied)") from None
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"output {str(target)!r}: folder {str(target.parent)!r} is not writable")


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike[str],
    *,
    replace: bool = True,
    is_ours: Callable[[Path], bool] | None = None,
    what: str = "file",
    suffix: str = "",
) -> Iterator[Path]:
    """Yield a temp path to write; on a clean exit it becomes ``path`` atomically.

    ``replace``: may an existing file be replaced (never a folder); ``is_ours``: an extra check
    an existing target must pass (e.g. "is a napbench Parquet file"); ``suffix`` keeps an
    extension on the temp name for writers that pick a format from it. On an exception the
    temp file is removed and the target is untouched.
    """
    target = Path(path)
    _check_target(target, kind="file", replace=replace, is_ours=is_ours, what=what)
    _prepare_parent(target)
    clean_stale_temps(target)
    fd, tmp_name = tempfile.mkstemp(prefix=_tmp_prefix(target), suffix=f".{_TAG}{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        # re-check right before the swap: the target may have appeared meanwhile
        _check_target(target, kind="file", replace=replace, is_ours=is_ours, what=what)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike[str],
    *,
    replace: bool = True,
    is_ours: Callable[[Path], bool] | None = None,
    what: str = "folder",
) -> Iterator[Path]:
    """Yield a temp folder to fill; on a clean exit it becomes ``path``.

    An existing ``path`` is replaced only if ``replace`` and ``is_ours(path)`` (required for
    folders: a folder of the user's is never replaced). The old folder is renamed aside,
    the new one renamed in, then the old one removed, so a kill leaves one complete folder
    at ``path`` (or, between the two renames, the old one beside it, restored on the next write).
    """
    target = Path(path)
    if replace and is_ours is None and target.exists():
        raise OutputPathError(f"output {str(target)!r} already exists; expected a new path (napbench does not overwrite it)")
    _check_target(target, kind="dir", replace=replace, is_ours=is_ours, what=what)
    _prepare_parent(target)
    _restore_aside(target)
    clean_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), suffix=f".{_TAG}", dir=target.parent))
    try:
        yield tmp
        mode_dir, mode_file = 0o777 & ~current_umask(), 0o666 & ~current_umask()
        for root, dirs, files in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), mode_dir)
            for f in files:
                os.chmod(os.path.join(root, f), mode_file)
        os.chmod(tmp, mode_dir)
        _check_target(target, kind="dir", replace=replace, is_ours=is_ours, what=what)
        if target.exists():
            aside = target.with_name(f".{target.name}.{os.getpid()}.aside.{_TAG}")
            os.replace(target, aside)
            os.replace(tmp, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _restore_aside(target: Path) -> None:
    """A kill between the two renames of :func:`atomic_dir` leaves the old folder aside; put it back."""
    if target.exists() or not target.parent.is_dir():
        return
    for p in target.parent.glob(f".{target.name}.*.aside.{_TAG}"):
        m = re.match(rf"^\.{re.escape(target.name)}\.(\d+)\.aside\.", p.name)
        if m and not _pid_alive(int(m.group(1))):
            os.replace(p, target)
            return


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, **kwargs: object) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_file`."""
    with atomic_file(path, **kwargs) as tmp:  # type: ignore[arg-type]
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, **kwargs: object) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_file`."""
    return atomic_write_bytes(path, text.encode("utf-8"), **kwargs)
