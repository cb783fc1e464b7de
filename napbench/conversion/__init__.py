"""Computation graphs from PyTorch, Keras and ONNX models.

Public surface: :class:`CompGraph`, :class:`Node`, :class:`GraphBuilder`, the frontends
``from_torch``, ``from_keras``, ``from_onnx`` (TensorFlow/ONNX are imported lazily), the
frontend registry (:func:`convert`, :func:`list_frontends`) and Parquet I/O
(:func:`write_graphs`, :func:`read_graphs`, :func:`scan_graphs`).
"""

from __future__ import annotations

from typing import Any

from napbench.conversion.builder import GraphBuilder, canon_shape
from napbench.conversion.executor import to_torch
from napbench.conversion.frontends import convert, list_frontends, register_frontend
from napbench.conversion.graph import CompGraph, Node
from napbench.conversion.storage import read_graphs, scan_graphs, write_graphs
from napbench.conversion.vocab import OPS, VOCAB_VERSION

CONVERTER_VERSION = "2.0"


def from_torch(module: Any, input_shape: Any, **kw: Any) -> CompGraph:
    """Trace a ``torch.nn.Module`` (see :func:`napbench.conversion.torch_frontend.from_torch`)."""
    from napbench.conversion.torch_frontend import from_torch as f

    return f(module, input_shape, **kw)


def from_keras(model: Any, **kw: Any) -> CompGraph:
    """Convert a Keras model (see :func:`napbench.conversion.keras_frontend.from_keras`)."""
    from napbench.conversion.keras_frontend import from_keras as f

    return f(model, **kw)


def from_onnx(path_or_model: Any, **kw: Any) -> CompGraph:
    """Convert an ONNX file or ModelProto (see :func:`napbench.conversion.onnx.from_onnx`)."""
    from napbench.conversion.onnx import from_onnx as f

    return f(path_or_model, **kw)


__all__ = [
    "CONVERTER_VERSION", "OPS", "VOCAB_VERSION", "CompGraph", "GraphBuilder", "Node", "canon_shape", "convert",
    "from_keras", "from_onnx", "from_torch", "list_frontends", "read_graphs", "register_frontend", "scan_graphs",
    "to_torch", "write_graphs",
]
