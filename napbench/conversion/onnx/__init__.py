"""ONNX frontend: read an ONNX model into a computation graph.

One job per module: :mod:`._load` (reading the model), :mod:`._consts` (constant evaluation),
:mod:`._analysis` (phase 1), :mod:`._patterns` (phase 2), :mod:`._converter` (phase 3: state and
walk), :mod:`._handlers` (one handler per ONNX op), :mod:`._common` (shared helpers).

Three passes over the (topologically ordered) ONNX nodes:

1. **Analysis.** Every value gets a static shape (``onnx.shape_inference`` on the whole model,
   then per node with the constant inputs it knows, for values whose shape depends on
   computed constants) with a symbolic batch dimension read as 1. Values that do not depend
   on the graph input -- initializers, ``Constant`` nodes, shape arithmetic such as
   ``Shape -> Gather -> Concat -> Reshape`` -- are folded to numpy arrays.
2. **Patterns.** Two formulas become one node: the erf form of GELU that exporters write for
   opsets without ``Gelu`` (``x * 0.5 * (1 + erf(x / sqrt 2))``), and ``x * (relu6(x + 3) / 6)``,
   how tf2onnx writes Keras' ``hard_swish`` (``HardSwish``).
3. **Mapping.** Each node on an activation becomes a vocabulary node or plumbing (see
   ``_HANDLERS``), with the conventions of :mod:`napbench.conversion.torch_frontend`:
   multiplication by the scalar 0 is ``zero``, by another constant ``scale``; adding or
   subtracting a constant is pruned -- except right after a bias-free conv/linear/norm, where
   it is that layer's bias (``MatMul + Add`` is one linear with a bias), and right after a
   per-channel ``Mul``, where ``x * a + b`` is an inference BatchNorm (how Keras and tf2onnx
   write BN) and becomes ``bn``. ``x * sigmoid(x)`` is ``silu`` (exporters write ``F.silu``
   so); torch's GroupNorm export (``InstanceNormalization`` over a ``(N, groups, -1)`` view,
   then ``Mul``/``Add``) is one ``groupnorm``; a slice of a slice (exporters slice one axis
   at a time) is one ``slice``; tf2onnx's ``Unsqueeze -> Tile -> Reshape`` repeats (Keras
   ``UpSampling2D``) are one ``upsample``; a pool whose window is the whole map is global.
   Other formulas are read as written, as in torch: ``relu6(x + 3) / 6`` (Keras'
   ``hard_sigmoid``, OFA's Hsigmoid) is ``relu6`` then ``scale``.

**Layouts.** Shapes in the graph are channel-first. Each ONNX value carries a permutation
``perm`` relating its axes to the channel-first axes (``onnx_shape[i] == cf_shape[perm[i]]``):
the identity for NCHW, ``(0, 2, 3, 1)`` for NHWC. The input's layout is detected (a
``Transpose`` to NCHW right after it, or a tf2onnx/Keras producer, means channel-last) or
given; ``Transpose`` composes permutations and is otherwise plumbing, layout-preserving ops
pass theirs on, and after a ``Reshape`` the layout is re-derived from the shape. So a
tf2onnx export of a Keras model reports the same (C, H, W) shapes as Keras and torch.

**BatchNorm folding.** ``torch.onnx.export`` of a model in eval mode folds each BN into the
preceding conv (tf2onnx does too, by default). A graph whose convs all have biases and are
never followed by a BN is flagged ``meta["bn_folded"] = True`` with a
:class:`BatchNormFoldedWarning`; compare such graphs with other frontends through
:meth:`CompGraph.bn_folded`.

Limitations: ONNX has no "affine" flag, so every BN has a scale and a shift; exporters drop
biases and BN shifts that are exactly zero (fresh Keras layers, folded fresh BNs), and
merge identical nodes reading one tensor (CSE); layout-only transposes vanish (so do
channel shuffles); only the batch dimension may be symbolic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from napbench.conversion.graph import CompGraph
from napbench.conversion.onnx._common import BatchNormFoldedWarning
from napbench.conversion.onnx._converter import _Converter
from napbench.conversion.onnx._load import _load
from napbench.errors import ConversionError, NapbenchError


def from_onnx(
    path_or_model: Any,
    *,
    allow_unknown: bool = False,
    meta: Mapping[str, Any] | None = None,
    channels_last: bool | None = None,
) -> CompGraph:
    """Convert an ONNX model (a path, serialized bytes or an ``onnx.ModelProto``) into a CompGraph.

    Args:
        path_or_model: the model.
        allow_unknown: keep ops outside the vocabulary as ``unknown`` nodes instead of raising
            :class:`~napbench.errors.UnsupportedOpError`.
        meta: extra graph metadata.
        channels_last: the input's layout; ``None`` detects it (a leading ``Transpose`` to
            NCHW or a tf2onnx/Keras producer means channel-last).

    Raises:
        ConversionError: the file is missing or not a valid ONNX model, or shapes cannot be
            made static.
        UnsupportedOpError: an op outside the vocabulary (unless ``allow_unknown``).
    """
    model, label = _load(path_or_model)
    conv = _Converter(model, label, allow_unknown=allow_unknown, channels_last=channels_last)
    try:
        conv.analyse()
        conv.patterns()
        return conv.convert(meta)
    except NapbenchError:
        raise
    except (KeyError, IndexError, ValueError, TypeError, AssertionError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise ConversionError(
            f"{label} could not be converted ({type(exc).__name__}: {msg}); expected a well-formed ONNX graph of supported ops"
        ) from exc


__all__ = ["BatchNormFoldedWarning", "from_onnx"]
