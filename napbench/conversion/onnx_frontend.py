"""Compatibility name of the ONNX frontend, which lives in the package :mod:`napbench.conversion.onnx`."""

from napbench.conversion.onnx import BatchNormFoldedWarning, from_onnx

__all__ = ["BatchNormFoldedWarning", "from_onnx"]
