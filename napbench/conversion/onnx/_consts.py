"""Constant evaluation: values that do not depend on the graph input are folded to numpy arrays."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

Shape = tuple[int, ...]
Perm = tuple[int, ...]


# -- constant evaluation ----------------------------------------------------------------------
def _np_dtype(to: int) -> Any:
    return onnx.helper.tensor_dtype_to_np_dtype(to)


def _axes(node_attrs: dict[str, Any], ins: list[np.ndarray | None], idx: int) -> list[int] | None:
    if "axes" in node_attrs:
        return [int(a) for a in node_attrs["axes"]]
    if len(ins) > idx and ins[idx] is not None:
        return [int(a) for a in np.asarray(ins[idx]).reshape(-1)]
    return None


def _ev_slice(a: dict[str, Any], x: list[np.ndarray | None]) -> np.ndarray:
    data = x[0]
    assert data is not None
    if "starts" in a:  # opset < 10
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = [int(v) for v in x[1]], [int(v) for v in x[2]]  # type: ignore[union-attr]
        axes = [int(v) for v in x[3]] if len(x) > 3 and x[3] is not None else list(range(len(starts)))
        steps = [int(v) for v in x[4]] if len(x) > 4 and x[4] is not None else [1] * len(starts)
    sl = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        sl[ax % data.ndim] = slice(int(s), int(e), int(st))
    return data[tuple(sl)]


def _ev_reshape(a: dict[str, Any], x: list[np.ndarray | None]) -> np.ndarray:
    data, shape = x[0], [int(v) for v in x[1]]  # type: ignore[union-attr]
    assert data is not None
    if not a.get("allowzero", 0):
        shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return data.reshape(shape)


def _ev_div(a: dict[str, Any], x: list[np.ndarray | None]) -> np.ndarray:
    p, q = x[0], x[1]
    if np.issubdtype(np.asarray(p).dtype, np.integer):
        return np.trunc(np.true_divide(p, q)).astype(np.asarray(p).dtype)
    return np.true_divide(p, q).astype(np.asarray(p).dtype)


def _ev_reduce(fn: Callable[..., np.ndarray]) -> Callable[[dict[str, Any], list[np.ndarray | None]], np.ndarray]:
    def ev(a: dict[str, Any], x: list[np.ndarray | None]) -> np.ndarray:
        axes = _axes(a, x, 1)
        keep = bool(a.get("keepdims", 1))
        return np.asarray(fn(x[0], axis=tuple(axes) if axes else None, keepdims=keep))

    return ev


def _ev_squeeze(a: dict[str, Any], x: list[np.ndarray | None]) -> np.ndarray:
    axes = _axes(a, x, 1)
    data = x[0]
    assert data is not None
    return np.squeeze(data, axis=tuple(axes)) if axes else np.squeeze(data)


def _ev_unsqueeze(a: dict[str, Any], x: list[np.ndarray | None]) -> np.ndarray:
    axes = _axes(a, x, 1) or []
    data = x[0]
    assert data is not None
    r = data.ndim + len(axes)
    out = data
    for ax in sorted(v % r for v in axes):
        out = np.expand_dims(out, ax)
    return out


def _ev_constant(a: dict[str, Any], x: list[np.ndarray | None]) -> np.ndarray:
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for k, dt in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                  ("value_ints", np.int64)):
        if k in a:
            return np.asarray(a[k], dtype=dt)
    raise ValueError("unsupported Constant attribute")


def _ev_cos(a: dict[str, Any], x: list[np.ndarray | None]) -> np.ndarray:
    val = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
    return np.full([int(v) for v in x[0]], val.reshape(-1)[0], dtype=val.dtype)  # type: ignore[union-attr]


_EVAL: dict[str, Callable[[dict[str, Any], list[np.ndarray | None]], np.ndarray]] = {
    "Constant": _ev_constant,
    "Identity": lambda a, x: x[0],
    "Cast": lambda a, x: np.asarray(x[0]).astype(_np_dtype(a["to"])),
    "Gather": lambda a, x: np.take(x[0], x[1], axis=int(a.get("axis", 0))),
    "Unsqueeze": _ev_unsqueeze,
    "Squeeze": _ev_squeeze,
    "Concat": lambda a, x: np.concatenate([np.atleast_1d(v) for v in x], axis=int(a["axis"])),
    "Reshape": _ev_reshape,
    "Flatten": lambda a, x: np.asarray(x[0]).reshape(
        math.prod(np.asarray(x[0]).shape[: int(a.get("axis", 1))]), -1),
    "Slice": _ev_slice,
    "Transpose": lambda a, x: np.transpose(x[0], a.get("perm")),
    "ConstantOfShape": _ev_cos,
    "Range": lambda a, x: np.arange(x[0], x[1], x[2]).astype(np.asarray(x[0]).dtype),
    "Expand": lambda a, x: np.broadcast_to(x[0], np.broadcast_shapes(np.shape(x[0]), tuple(int(v) for v in x[1]))).copy(),  # type: ignore[union-attr]
    "Add": lambda a, x: np.add(x[0], x[1]),
    "Sub": lambda a, x: np.subtract(x[0], x[1]),
    "Mul": lambda a, x: np.multiply(x[0], x[1]),
    "Div": _ev_div,
    "Neg": lambda a, x: np.negative(x[0]),
    "Sqrt": lambda a, x: np.sqrt(x[0]),
    "Reciprocal": lambda a, x: np.reciprocal(x[0]),
    "Pow": lambda a, x: np.power(x[0], x[1]).astype(np.asarray(x[0]).dtype),
    "Equal": lambda a, x: np.equal(x[0], x[1]),
    "Less": lambda a, x: np.less(x[0], x[1]),
    "Greater": lambda a, x: np.greater(x[0], x[1]),
    "Not": lambda a, x: np.logical_not(x[0]),
    "Where": lambda a, x: np.where(x[0], x[1], x[2]),
    "Floor": lambda a, x: np.floor(x[0]),
    "Ceil": lambda a, x: np.ceil(x[0]),
    "Abs": lambda a, x: np.abs(x[0]),
    "Min": lambda a, x: np.minimum.reduce(list(x)),
    "Max": lambda a, x: np.maximum.reduce(list(x)),
    "Sum": lambda a, x: np.add.reduce(list(x)),
    "Tile": lambda a, x: np.tile(x[0], [int(v) for v in x[1]]),  # type: ignore[union-attr]
    "ReduceProd": _ev_reduce(np.prod),
    "ReduceSum": _ev_reduce(np.sum),
    "ReduceMax": _ev_reduce(np.max),
    "ReduceMin": _ev_reduce(np.min),
    "ReduceMean": _ev_reduce(np.mean),
}
