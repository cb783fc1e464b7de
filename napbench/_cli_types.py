"""Validating argparse value types shared by every ``napbench`` command.

Bad values are refused where they are parsed, with one line naming what was given and what
was expected, so no command has to re-check its counts, shapes or model paths.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["MAX_COUNT", "MAX_INPUT_ELEMENTS", "count", "input_shape", "model_source", "output_location_problem", "probability"]

#: the largest count any option accepts (an int32; beyond it a run could never finish)
MAX_COUNT = 2**31 - 1
#: the largest input a shape may describe (C*H*W elements): 3x9000x9000 fits, 3x20000x20000 does not
MAX_INPUT_ELEMENTS = 2**28
#: how each model-file format starts (checked before a heavy frontend such as TensorFlow is imported)
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_INT = re.compile(r"[+-]?[0-9]+")
_DIGITS = re.compile(r"[0-9]+")


def count(what: str, *, minimum: int = 0, zero: str | None = None) -> Callable[[str], int]:
    """An argparse type for an integer option ``what`` in ``[minimum, MAX_COUNT]``.

    ``zero`` documents what 0 means (e.g. "all") in the error message when 0 is allowed.
    """
    expected = f"an integer >= {minimum}" + (f" (0 = {zero})" if zero and minimum == 0 else "")

    def parse(text: str) -> int:
        if not _INT.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not an integer; expected {expected}")
        value = int(text.strip())
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} {value} is out of range; expected {expected}")
        if value > MAX_COUNT:
            raise argparse.ArgumentTypeError(f"{what} {value} is too large; expected at most {MAX_COUNT}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def probability(what: str, *, high_open: bool = True) -> Callable[[str], float]:
    """An argparse type for a finite float in ``[0, 1)`` (``[0, 1]`` with ``high_open=False``)."""
    expected = "a number with 0 <= x < 1" if high_open else "a number with 0 <= x <= 1"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not a number; expected {expected}") from None
        if not math.isfinite(value) or value < 0 or value > 1 or (high_open and value == 1):
            raise argparse.ArgumentTypeError(f"{what} {text!r} is out of range; expected {expected}")
        return value

    parse.__name__ = what
    return parse


def parse_shape(text: str) -> tuple[int, ...]:
    """``"3,224,224"`` or ``"3x224x224"`` as a tuple of positive ints (at most MAX_INPUT_ELEMENTS in all).

    Raises :class:`argparse.ArgumentTypeError` naming the expected form for an empty field,
    a non-integer, a non-positive dimension or an absurd size.
    """
    form = "expected C,H,W of positive integers (no batch), e.g. 3,224,224"
    tokens = text.strip().split(",") if "," in text else text.strip().lower().split("x")
    if not text.strip() or any(not t.strip() for t in tokens):
        raise argparse.ArgumentTypeError(f"input shape {text!r} has an empty field; {form}")
    dims: list[int] = []
    for t in tokens:
        t = t.strip()
        if not _DIGITS.fullmatch(t):  # refuses '-4', '+4', '3.0', 'x', '³'
            raise argparse.ArgumentTypeError(f"input shape {text!r}: {t!r} is not a positive integer; {form}")
        dims.append(int(t))
    if any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"input shape {text!r} has a zero dimension; {form}")
    if len(dims) > 5:
        raise argparse.ArgumentTypeError(f"input shape {text!r} has {len(dims)} dimensions; {form}")
    n = math.prod(dims)
    if n > MAX_INPUT_ELEMENTS:
        raise argparse.ArgumentTypeError(
            f"input shape {text!r} describes {n:,} elements per sample; expected at most {MAX_INPUT_ELEMENTS:,}"
        )
    return tuple(dims)


def input_shape(text: str) -> tuple[int, ...]:
    """The ``--input-shape`` argparse type (see :func:`parse_shape`)."""
    return parse_shape(text)


def _looks_like_path(text: str) -> bool:
    return text.endswith((".onnx", ".keras", ".h5")) or os.sep in text.split(":", 1)[0] or text.startswith((".", "~"))


def model_source(text: str) -> str:
    """A model argument: ``module:callable`` (checked when imported), or an existing model file/folder.

    Model files are checked here, before any frontend (TensorFlow in particular) is imported:
    a missing path, a ``.keras`` file that is not a zip archive or an ``.h5`` file that is not
    HDF5 is refused at once with one line.
    """
    p = Path(text).expanduser()
    if text.endswith(".parquet"):
        if not p.is_file():
            found = "is a folder" if p.is_dir() else "not found"
            raise argparse.ArgumentTypeError(f"dataset {text!r} {found}; expected a napbench Parquet file")
        return text
    if p.exists():
        if p.is_dir():
            if not (p / "saved_model.pb").is_file():
                raise argparse.ArgumentTypeError(
                    f"model {text!r} is a folder without saved_model.pb; expected an .onnx/.keras/.h5 file or a SavedModel folder"
                )
            return text
        if not os.access(p, os.R_OK):
            raise argparse.ArgumentTypeError(f"model file {text!r} is not readable (permission denied)")
        if p.suffix == ".keras" and not zipfile.is_zipfile(p):
            raise argparse.ArgumentTypeError(f"model file {text!r} is not a .keras archive (not a zip file); expected a file saved by model.save()")
        if p.suffix == ".h5":
            with p.open("rb") as fh:
                if fh.read(8) != _HDF5_MAGIC:
                    raise argparse.ArgumentTypeError(f"model file {text!r} is not an HDF5 file; expected a Keras .h5 model")
        return text
    if ":" in text and not text.endswith((".onnx", ".keras", ".h5")):
        return text  # a 'module:callable' or 'file.py:callable' spec; its import reports its own errors
    if _looks_like_path(text) or "/" in text or "." in text:
        raise argparse.ArgumentTypeError(
            f"model file {text!r} not found; expected an .onnx/.keras/.h5 file, a SavedModel folder or 'module:callable'"
        )
    raise argparse.ArgumentTypeError(f"model {text!r} is neither a file nor 'module:callable'; expected e.g. 'mypkg.models:resnet18'")


def output_location_problem(path: Path) -> str | None:
    """Why nothing can be written at ``path`` (a parent is a file, the folder is read-only), or None.

    Writability is probed by creating and removing a temp file in the nearest existing parent
    (``os.access`` says yes to root even on read-only file systems such as sysfs).
    """
    import tempfile

    for parent in path.parents:
        if not parent.exists():
            continue
        if not parent.is_dir():
            return f"it is inside {str(parent)!r}, which is a file; expected a folder"
        try:
            fd, probe = tempfile.mkstemp(prefix=".napbench-probe.", dir=parent)
        except OSError as exc:
            return f"folder {str(parent)!r} is not writable ({exc.strerror or type(exc).__name__})"
        os.close(fd)
        os.unlink(probe)
        return None
    return None


def output_file(what: str, suffixes: tuple[str, ...] = ()) -> Callable[[str], str]:
    """An argparse type for an output file path, checked before any work is done.

    Refused: a path ending in none of ``suffixes`` (when given), an existing folder, a dangling
    link, a path inside a file, a folder that is not writable. Whether an existing file may be
    replaced is decided when it is written (:mod:`napbench._io`).
    """

    def parse(text: str) -> str:
        p = Path(text).expanduser()
        if suffixes and p.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"output {text!r} does not end in {' or '.join(suffixes)}; expected a {what} path")
        if p.is_symlink() and not p.exists():
            raise argparse.ArgumentTypeError(f"output {text!r} is a dangling link; expected a {what} path")
        if p.is_dir():
            raise argparse.ArgumentTypeError(f"output {text!r} is an existing folder; expected a {what} path")
        problem = output_location_problem(p)
        if problem:
            raise argparse.ArgumentTypeError(f"output {text!r}: {problem}")
        return text

    parse.__name__ = what
    return parse


def root_folder(text: str) -> str:
    """A ``--root`` dataset folder: new or an existing folder (not a file, not inside a file)."""
    p = Path(text).expanduser()
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"dataset root {text!r} is a file; expected a folder")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"dataset root {text!r} is inside {str(parent)!r}, which is a file; expected a folder")
            break
    return text


def mirror_folder(text: str) -> str:
    """A ``--mirror`` folder of upstream label tables: it must exist."""
    p = Path(text).expanduser()
    if not p.is_dir():
        found = "a file" if p.exists() else "not found"
        raise argparse.ArgumentTypeError(f"mirror {text!r} is not a directory ({found}); expected the folder of upstream label tables")
    return text
