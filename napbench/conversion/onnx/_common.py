"""Shared pieces of the ONNX frontend: layouts, attribute and shape helpers, the folded-BN warning."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from napbench.conversion._layout import cf, channels_last, graph_shape, identity, token_shape

Shape = tuple[int, ...]
Perm = tuple[int, ...]

_SMALL = 1 << 16
_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16})
#: ops through which a constant stays "the same learned tensor" (a view, gather or expansion of it)
_VIEW_OPS = frozenset({"Gather", "GatherElements", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "Expand", "Slice",
                       "Identity", "Cast", "CastLike", "Flatten", "Tile"})  # constants up to this many elements are passed to per-node shape inference
_PLUMBING = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast", "Transpose",
                       "Expand", "CastLike"})


class BatchNormFoldedWarning(UserWarning):
    """The ONNX graph looks like its BatchNorms were folded into the convs by the exporter."""


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that attributes a warning to the first caller outside napbench."""
    pkg = str(Path(__file__).resolve().parents[2])
    frame, level = sys._getframe(1), 1  # level 1: the function that calls warnings.warn
    while frame is not None and frame.f_code.co_filename.startswith(pkg):
        frame, level = frame.f_back, level + 1
    return level



# -- small helpers --------------------------------------------------------------------------
def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _static(tp: onnx.TypeProto | None) -> Shape | None:
    if tp is None or not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
        return None
    dims = tp.tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)


_tokens_of = token_shape
_cf = cf
_cg = graph_shape
_channels_last_perm = channels_last
_identity = identity


def _close(v: np.ndarray | None, x: float, tol: float = 1e-3) -> bool:
    return v is not None and v.size >= 1 and bool(np.all(np.abs(v.astype(np.float64) - x) <= tol * max(1.0, abs(x))))
