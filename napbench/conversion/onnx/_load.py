"""Loading an ONNX model from a path, bytes or a ModelProto, with one-line errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import onnx

from napbench.errors import ConversionError

Shape = tuple[int, ...]
Perm = tuple[int, ...]


# -- loading ------------------------------------------------------------------------------
def _invalid(label: str, why: str) -> ConversionError:
    return ConversionError(f"{label} is not a valid ONNX model ({why}); expected a serialized onnx.ModelProto (.onnx file)")


def _load(src: Any) -> tuple[onnx.ModelProto, str]:
    if isinstance(src, onnx.ModelProto):
        label, model = f"ONNX model {src.graph.name or '<unnamed>'!r}", src
    elif isinstance(src, (str, os.PathLike)):
        p = Path(src)
        label = repr(str(p))
        if not p.is_file():
            raise ConversionError(f"ONNX file {label} not found; expected a path to an existing .onnx file")
        try:
            model = onnx.load(str(p), load_external_data=False)
        except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning-derived errors, ...
            msg = str(exc).splitlines()[0] if str(exc) else ""
            raise _invalid(label, f"{type(exc).__name__}: {msg}".rstrip(": ")) from None
    elif isinstance(src, (bytes, bytearray)):
        label = "ONNX bytes"
        try:
            model = onnx.load_from_string(bytes(src))
        except Exception as exc:
            raise _invalid(label, f"{type(exc).__name__}: {exc}") from None
    else:
        raise ConversionError(f"from_onnx got {type(src).__name__}; expected a path to an .onnx file or an onnx.ModelProto")
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise _invalid(label, "no IR version or graph")
    if not model.graph.output or not model.graph.input:
        raise _invalid(label, "the graph has no inputs or no outputs")
    return model, label
