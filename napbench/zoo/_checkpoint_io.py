"""Checking checkpoint folders before anything in them is trusted.

A checkpoint is ``config.json`` + ``model.safetensors`` (+ ``README.md``). Everything read
from one is validated here and every failure is one :class:`~napbench.errors.CheckpointError`
line: a config that is not a JSON object, a weights file that is truncated or not safetensors
(nothing is ever unpickled), tensors whose names or shapes do not fit the model the config
builds. Which folders a save may replace is decided by
:func:`napbench.zoo._checkpoint.is_checkpoint_folder` (the check ``atomic_dir`` runs too).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napbench.errors import CheckpointError, OutputPathError
from napbench.zoo._checkpoint import CONFIG_NAME, WEIGHTS_NAME, is_checkpoint_folder

_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
_MAX_HEADER = 100 * 2**20


def check_checkpoint_target(path: str | os.PathLike[str]) -> None:
    """Refuse, before any work, a save target that exists and is not a napbench checkpoint folder."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise OutputPathError(f"output {str(p)!r} is a dangling link; expected a new path or a napbench checkpoint folder")
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"output {str(p)!r} is an existing file; expected a new path or a napbench checkpoint folder")
    if p.is_dir() and not (is_checkpoint_folder(p) and any(p.iterdir())):  # an empty folder is refused here too
        raise OutputPathError(
            f"output {str(p)!r} exists and is not a napbench checkpoint folder; expected a new path or a napbench checkpoint folder"
        )
    from napbench._cli_types import output_location_problem

    problem = output_location_problem(p)
    if problem:
        raise OutputPathError(f"output {str(p)!r}: {problem}")


def safetensors_header(path: str | os.PathLike[str], where: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Read and check a safetensors file's header without loading tensors: ``{name: (dtype, shape)}``.

    Checks the 8-byte length prefix, that the header is a JSON object inside the file, and that
    every tensor's byte range lies inside the file and matches its dtype and shape. Anything else
    (a truncated file, a pickle renamed to .safetensors) is a CheckpointError.
    """
    p = Path(path)
    bad = f"checkpoint {where!r}: {WEIGHTS_NAME}"
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{bad} is {size} bytes, too short for a safetensors file; expected weights saved by napbench")
            (n,) = struct.unpack("<Q", prefix)
            if n < 2 or n > _MAX_HEADER or 8 + n > size:
                raise CheckpointError(f"{bad} is not a safetensors file or is truncated (header of {n} bytes in a {size}-byte file)")
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"{bad} cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{bad} is not a safetensors file (its header is not JSON); expected weights saved by napbench") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{bad} has a malformed safetensors header; expected a JSON object")
    data_len = size - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (lo, hi) = str(info["dtype"]), tuple(int(d) for d in info["shape"]), info["data_offsets"]
            lo, hi = int(lo), int(hi)
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{bad}: tensor {name!r} has a malformed header entry; expected dtype, shape, data_offsets") from None
        width = _DTYPE_BYTES.get(dtype)
        if width is None or any(d < 0 for d in shape):
            raise CheckpointError(f"{bad}: tensor {name!r} has dtype {dtype!r} and shape {list(shape)}; expected a known dtype")
        if not 0 <= lo <= hi <= data_len or hi - lo != width * math.prod(shape):
            raise CheckpointError(f"{bad} is truncated or corrupt: tensor {name!r} needs bytes {lo}..{hi} of {data_len}")
        out[name] = (dtype, shape)
    return out


def check_weights_fit(model: Any, header: Mapping[str, tuple[str, tuple[int, ...]]], where: str, *, strict: bool = True) -> None:
    """Refuse weights whose tensor names or shapes do not fit ``model`` (built from the config) with one line."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if strict and (missing or unexpected):
        what = []
        if missing:
            what.append(f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            what.append(f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
        raise CheckpointError(
            f"checkpoint {where!r}: {WEIGHTS_NAME} does not match its {CONFIG_NAME} ({'; '.join(what)} tensors); "
            "expected the weights saved with this config"
        )
    for name, shape in expected.items():
        if name in header and header[name][1] != shape:
            raise CheckpointError(
                f"checkpoint {where!r}: tensor {name!r} has shape {list(header[name][1])} in {WEIGHTS_NAME}, but its "
                f"{CONFIG_NAME} builds {list(shape)}; expected the weights saved with this config"
            )


def load_weights(model: Any, path: str | os.PathLike[str], where: str, *, strict: bool = True, device: str = "cpu") -> None:
    """Check ``path`` (see :func:`safetensors_header`, :func:`check_weights_fit`), then load it into ``model``."""
    import safetensors
    import safetensors.torch

    header = safetensors_header(path, where)
    check_weights_fit(model, header, where, strict=strict)
    try:
        safetensors.torch.load_model(model, str(path), strict=strict, device=device)
    except (safetensors.SafetensorError, RuntimeError, OSError, ValueError) as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"checkpoint {where!r}: {WEIGHTS_NAME} could not be loaded ({line})") from None
