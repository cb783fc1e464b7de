"""ONNX frontend: read an ONNX model into a computation graph.

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

import math
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from napbench.conversion._layout import channels_last, cf, graph_shape, identity, token_shape
from napbench.conversion.builder import GraphBuilder, canon_shape, same_padding, tokens
from napbench.conversion.graph import CompGraph
from napbench.conversion.vocab import NORMS
from napbench.errors import ConversionError, NapbenchError

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
    pkg = str(Path(__file__).resolve().parents[1])
    frame, level = sys._getframe(1), 1  # level 1: the function that calls warnings.warn
    while frame is not None and frame.f_code.co_filename.startswith(pkg):
        frame, level = frame.f_back, level + 1
    return level


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


# -- the converter --------------------------------------------------------------------------
class _Converter:
    def __init__(self, model: onnx.ModelProto, label: str, *, allow_unknown: bool, channels_last: bool | None) -> None:
        self.model = model
        self.label = label
        self.graph = model.graph
        self.opsets = {o.domain or "": int(o.version) for o in model.opset_import} or {"": onnx.defs.onnx_opset_version()}
        self.opset = self.opsets.get("", self.opsets.get("ai.onnx", 13))
        self.allow_unknown = allow_unknown
        self.channels_last_arg = channels_last
        self.types: dict[str, onnx.TypeProto] = {}
        self.shapes: dict[str, Shape | None] = {}
        self.const_protos: dict[str, onnx.TensorProto] = {}
        self.consts: dict[str, np.ndarray | None] = {}  # value, or None when unknown (external data)
        self.const_names: set[str] = set()
        self.roots: dict[str, str] = {}  # constant -> the float initializer it is a view/gather/expansion of
        self.param_nodes: dict[str, int] = {}  # root initializer -> its 'param' node
        self.nodes: list[onnx.NodeProto] = list(self.graph.node)
        self.consumers: dict[str, list[int]] = {}
        # mapping state
        self.act: dict[str, tuple[int, Perm | None]] = {}
        self.aliases: dict[int, list[str]] = {}
        self.chan_scale: dict[int, int] = {}  # per-channel Mul node (a BN candidate) -> its data input
        self.pending_repeat: set[str] = set()
        self.upsample_from_repeat: set[int] = set()

    # -- phase 1: shapes and constants ----------------------------------------------------------
    def _value(self, name: str) -> np.ndarray | None:
        if name in self.consts:
            return self.consts[name]
        proto = self.const_protos.get(name)
        if proto is None:
            return None
        if proto.data_location == onnx.TensorProto.EXTERNAL:
            self.consts[name] = None
            return None
        try:
            val = numpy_helper.to_array(proto)
        except Exception:  # unreadable tensor data: the value is unknown, its shape still is
            val = None
        self.consts[name] = val
        return val

    def analyse(self) -> None:
        g = self.graph
        for init in g.initializer:
            self.const_protos[init.name] = init
            self.const_names.add(init.name)
            if init.data_type in _FLOAT_TYPES:
                self.roots[init.name] = init.name
            self.shapes[init.name] = tuple(int(d) for d in init.dims)
            self.types[init.name] = onnx.helper.make_tensor_type_proto(init.data_type, list(init.dims))
        inputs = [i for i in g.input if i.name not in self.const_names]
        if len(inputs) > 1:
            # tf2onnx sometimes turns captured constants (e.g. a Keras Normalization's mean) into
            # inputs; the one input with a symbolic batch dimension is then the data
            batched = [i for i in inputs if i.type.tensor_type.shape.dim and not i.type.tensor_type.shape.dim[0].HasField("dim_value")]
            if len(batched) == 1:
                for extra in inputs:
                    if extra is not batched[0]:
                        self.const_names.add(extra.name)
                        self.consts[extra.name] = None
                        self.shapes[extra.name] = _static(extra.type)
                        self.types[extra.name] = extra.type
                inputs = batched
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise ConversionError(f"{self.label} has {len(inputs)} graph inputs {names}; expected exactly one input tensor")
        self.input_name = inputs[0].name
        tt = inputs[0].type.tensor_type
        if not tt.HasField("shape") or not tt.shape.dim:
            raise ConversionError(f"{self.label}: input {self.input_name!r} has no shape; expected a static shape (batch may be symbolic)")
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        dims = next(i for i in model.graph.input if i.name == self.input_name).type.tensor_type.shape.dim
        for k, d in enumerate(dims):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                if k == 0:
                    d.Clear()
                    d.dim_value = 1
                else:
                    raise ConversionError(
                        f"{self.label}: input {self.input_name!r} dimension {k} is symbolic ({d.dim_param or '?'}); "
                        "expected a static input shape (only the batch dimension may be symbolic)"
                    )
        inferred = model
        for strict in (True, False):
            try:
                inferred = onnx.shape_inference.infer_shapes(model, strict_mode=strict, data_prop=True)
                break
            except Exception:  # strict inference fails on unknown ops; retry leniently
                continue
        for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
            if vi.name not in self.const_names:
                self.types[vi.name] = vi.type
                self.shapes[vi.name] = _static(vi.type)
        inp = next(i for i in model.graph.input if i.name == self.input_name)
        self.types[self.input_name] = inp.type
        self.shapes[self.input_name] = _static(inp.type)
        defined = set(self.const_names) | {self.input_name, ""}
        for idx, node in enumerate(self.nodes):
            for i in node.input:
                if i not in defined:
                    raise _invalid(self.label, f"node {node.name or node.op_type!r} reads {i!r}, which nothing defines")
                self.consumers.setdefault(i, []).append(idx)
            self._analyse_node(node)
            defined.update(node.output)

    def _analyse_node(self, node: onnx.NodeProto) -> None:
        ins = list(node.input)
        has_graph_attr = any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)
        all_const = all(i == "" or i in self.const_names for i in ins) and not has_graph_attr
        if node.op_type in ("Shape", "Size") and node.domain in ("", "ai.onnx") and ins and self.shapes.get(ins[0]):
            shp = self.shapes[ins[0]]
            assert shp is not None
            if node.op_type == "Size":
                val = np.asarray(math.prod(shp), dtype=np.int64)
            else:
                a = _attrs(node)
                start, end = a.get("start", 0), a.get("end", None)
                val = np.asarray(shp[start:end], dtype=np.int64)
            self._set_const(node.output[0], val)
            return
        if node.op_type == "CastLike" and ins and ins[0] in self.const_names and len(ins) > 1 and ins[1] in self.types:
            v = self._value(ins[0])  # only the dtype of the second input matters
            if v is not None:
                to = self.types[ins[1]].tensor_type.elem_type
                self._set_const(node.output[0], v.astype(_np_dtype(to)))
                return
        if all_const:
            vals = self._evaluate(node)
            if vals is not None:
                roots = {self.roots[i] for i in ins if i in self.roots}
                for name, v in zip(node.output, vals):
                    if name:
                        self._set_const(name, v)
                        if len(roots) == 1 and node.op_type in _VIEW_OPS and np.issubdtype(np.asarray(v).dtype, np.floating):
                            self.roots[name] = next(iter(roots))
                return
            for name in node.output:  # constant, but its value could not be computed
                self.const_names.add(name)
                self.consts[name] = None
        self._infer_missing(node)

    def _set_const(self, name: str, val: np.ndarray) -> None:
        val = np.asarray(val)
        self.const_names.add(name)
        self.consts[name] = val
        self.shapes[name] = tuple(int(d) for d in val.shape)
        try:
            self.types[name] = onnx.helper.make_tensor_type_proto(onnx.helper.np_dtype_to_tensor_dtype(val.dtype), list(val.shape))
        except Exception:  # exotic dtype: shape inference downstream will use what it has
            pass

    def _evaluate(self, node: onnx.NodeProto) -> list[np.ndarray] | None:
        vals = [self._value(i) if i else None for i in node.input]
        if any(v is None for i, v in zip(node.input, vals) if i):
            return None
        fn = _EVAL.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        try:
            if fn is not None and len(node.output) == 1:
                return [np.asarray(fn(_attrs(node), vals))]
            from onnx.reference import ReferenceEvaluator

            feeds = {i: v for i, v in zip(node.input, vals) if i}
            ev = ReferenceEvaluator(node, opsets=self.opsets)
            return [np.asarray(v) for v in ev.run(None, feeds)]
        except Exception:  # an op the evaluators cannot run: its value stays unknown
            return None

    def _infer_missing(self, node: onnx.NodeProto) -> None:
        if all(self.shapes.get(o) is not None for o in node.output if o):
            return
        try:
            schema = onnx.defs.get_schema(node.op_type, self.opsets.get(node.domain or "", self.opset), node.domain or "")
        except Exception:  # no schema (custom or unknown op): shape stays unknown
            return
        input_types = {i: self.types[i] for i in node.input if i and i in self.types}
        if len(input_types) != len([i for i in node.input if i]):
            return
        data = {}
        for i in node.input:
            if i in self.const_names:
                v = self._value(i)
                if v is not None and v.size <= _SMALL:
                    data[i] = numpy_helper.from_array(np.asarray(v), i)
        try:
            out = onnx.shape_inference.infer_node_outputs(
                schema, node, input_types, data, opset_imports=list(self.model.opset_import) or None,
            )
        except Exception:  # inference failed for this node; downstream handlers report what they need
            return
        for name, tp in out.items():
            if self.shapes.get(name) is None:
                self.types[name] = tp
                self.shapes[name] = _static(tp)

    # -- phase 2: multi-node patterns -------------------------------------------------------------
    def _single_consumer(self, name: str) -> onnx.NodeProto | None:
        cons = self.consumers.get(name, [])
        outs = {o.name for o in self.graph.output}
        if len(cons) != 1 or name in outs:
            return None
        return self.nodes[cons[0]]

    def _producer_map(self) -> dict[str, int]:
        return {o: i for i, n in enumerate(self.nodes) for o in n.output}

    def patterns(self) -> None:
        prod = self._producer_map()
        drop: set[int] = set()
        replace_at: dict[int, onnx.NodeProto] = {}
        for idx, node in enumerate(self.nodes):
            if node.op_type == "Erf" and idx not in drop:
                m = self._match_gelu(node, prod)
                if m is not None:
                    x, out, members = m
                    last = max(members)
                    drop.update(members)
                    replace_at[last] = onnx.helper.make_node("Gelu", [x], [out], name=node.name or out)
            elif node.op_type == "Clip" and idx not in drop:
                m = self._match_hardswish(node, prod)
                if m is not None:
                    x, out, members = m
                    drop.update(members)
                    replace_at[max(members)] = onnx.helper.make_node("HardSwish", [x], [out], name=node.name or out)
        if drop:
            nodes = []
            for i, n in enumerate(self.nodes):
                if i in replace_at:
                    nodes.append(replace_at[i])
                elif i not in drop:
                    nodes.append(n)
            self.nodes = nodes
            self.consumers = {}
            for i, n in enumerate(self.nodes):
                for name in n.input:
                    self.consumers.setdefault(name, []).append(i)

    def _clip_bounds(self, clip: onnx.NodeProto) -> tuple[float | None, float | None]:
        a = _attrs(clip)
        lo, hi = a.get("min"), a.get("max")
        for idx in (1, 2):
            if len(clip.input) > idx and clip.input[idx]:
                v = self._value(clip.input[idx])
                if v is None or v.size != 1:
                    return None, None
                if idx == 1:
                    lo = float(v.reshape(-1)[0])
                else:
                    hi = float(v.reshape(-1)[0])
        return lo, hi

    def _match_hardswish(self, clip: onnx.NodeProto, prod: dict[str, int]) -> tuple[str, str, list[int]] | None:
        """``x * (relu6(x + 3) / 6)`` -- how tf2onnx writes Keras' ``hard_swish`` -> (x, output, member nodes).

        Only this association: ``x * relu6(x + 3) / 6`` (OFA's explicit Hswish) and a lone
        ``relu6(x + 3) / 6`` are read as written, as the torch frontend does.
        """
        if self._clip_bounds(clip) != (0.0, 6.0) or clip.input[0] not in prod:
            return None
        add = self.nodes[prod[clip.input[0]]]
        if add.op_type != "Add" or self._single_consumer(add.output[0]) is not clip:
            return None
        x = next((i for i in add.input if i not in self.const_names), None)
        three = next((i for i in add.input if i in self.const_names), None)
        if x is None or three is None or not _close(self._value(three), 3.0):
            return None
        scale = self._single_consumer(clip.output[0])
        if scale is None or scale.op_type not in ("Div", "Mul") or scale.input[0] != clip.output[0]:
            return None
        want = 6.0 if scale.op_type == "Div" else 1 / 6.0
        if not _close(self._value(scale.input[1]), want):
            return None
        mul = self._single_consumer(scale.output[0])
        if mul is None or mul.op_type != "Mul" or x not in mul.input or scale.output[0] not in mul.input:
            return None
        return x, mul.output[0], [prod[add.output[0]], prod[clip.output[0]], prod[scale.output[0]], prod[mul.output[0]]]

    def _match_gelu(self, erf: onnx.NodeProto, prod: dict[str, int]) -> tuple[str, str, list[int]] | None:
        """``x * 0.5 * (1 + erf(x / sqrt(2)))`` in any multiplication order -> (x, output, member nodes)."""
        members = [prod[erf.output[0]]]
        pre = self.nodes[prod[erf.input[0]]] if erf.input[0] in prod else None
        if pre is None or pre.op_type not in ("Div", "Mul") or self._single_consumer(pre.output[0]) is not erf:
            return None
        x, c = pre.input
        want = math.sqrt(2.0) if pre.op_type == "Div" else 1 / math.sqrt(2.0)
        if x in self.const_names or not _close(self._value(c), want):
            return None
        members.append(prod[pre.output[0]])
        add = self._single_consumer(erf.output[0])
        if add is None or add.op_type != "Add":
            return None
        other = add.input[1] if add.input[0] == erf.output[0] else add.input[0]
        if not _close(self._value(other), 1.0):
            return None
        members.append(prod[add.output[0]])
        cur, seen_x, seen_half = add.output[0], False, False
        for _ in range(2):
            mul = self._single_consumer(cur)
            if mul is None or mul.op_type != "Mul":
                return None
            other = mul.input[1] if mul.input[0] == cur else mul.input[0]
            if other == x:
                seen_x = True
            elif _close(self._value(other), 0.5):
                seen_half = True
            elif other in prod and self.nodes[prod[other]].op_type == "Mul" and not seen_x and not seen_half:
                half = self.nodes[prod[other]]  # (x * 0.5) * (1 + erf)
                a, b2 = half.input
                if {a, b2} - {x} and _close(self._value(b2 if a == x else a), 0.5) and x in half.input:
                    if self._single_consumer(other) is not mul:
                        return None
                    members.append(prod[other])
                    seen_x = seen_half = True
                else:
                    return None
            else:
                return None
            members.append(prod[mul.output[0]])
            cur = mul.output[0]
            if seen_x and seen_half:
                return x, cur, members
        return None

    # -- phase 3: mapping ---------------------------------------------------------------------
    def detect_channels_last(self) -> bool:
        if self.channels_last_arg is not None:
            return bool(self.channels_last_arg)
        shp = self.shapes[self.input_name]
        r = len(shp) if shp else 0
        if r < 3:
            return False
        for idx in self.consumers.get(self.input_name, []):
            n = self.nodes[idx]
            if n.op_type == "Transpose":
                perm = tuple(_attrs(n).get("perm", ()))
                if perm == (0, r - 1, *range(1, r - 1)):
                    return True
                if perm == _channels_last_perm(r):
                    return False
        producer = (self.model.producer_name or "").lower()
        return "tf2onnx" in producer or "keras" in producer or "tensorflow" in producer

    def convert(self, meta: Mapping[str, Any] | None) -> CompGraph:
        shp = self.shapes[self.input_name]
        assert shp is not None
        self.channels_last = self.detect_channels_last()
        perm0 = _channels_last_perm(len(shp)) if self.channels_last else _identity(len(shp))
        self.b = GraphBuilder(_cg(shp, perm0), frontend="onnx", allow_unknown=self.allow_unknown)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self._bind(self.input_name, 0, perm0)
        for node in self.nodes:
            if all(o == "" or o in self.const_names for o in node.output):
                continue
            acts = [i for i in node.input if i in self.act]
            if not acts:
                if node.op_type in ("RandomNormalLike", "RandomUniformLike"):
                    continue
                if all(i == "" or i in self.const_names for i in node.input):
                    continue  # a constant whose value could not be computed
                raise _invalid(self.label, f"node {node.name or node.op_type!r} reads values that were never computed")
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            handler = _HANDLERS.get(key)
            if handler is None:
                self._unknown(node, key)
            else:
                handler(self, node)
        outs: list[int] = []
        for o in self.graph.output:
            if o.name in self.act:
                h = self.act[o.name][0]
                if h not in outs:
                    outs.append(h)
        if not outs:
            raise ConversionError(f"{self.label}: no graph output depends on the input {self.input_name!r}; expected a network")
        self._merge_chains()
        name = self.graph.name or "onnx"
        info: dict[str, Any] = {
            "frontend": "onnx", "input_shape": list(self.b.shape(0)), "name": name,
            "layout": "channels_last" if self.channels_last else "channels_first",
            "producer": self.model.producer_name, "opset": self.opset,
        }
        g = self.b.build(outs, meta={**info, **(meta or {})})
        convs = [n for n in g.nodes if n.op in ("conv", "conv_transpose")]
        # a CNN whose convs all have biases and that has no normalisation at all (networks with
        # layer/group norms, e.g. transformers, are not BN networks: never flagged)
        folded = bool(convs) and all(n.bias for n in convs) and not any(n.op in NORMS for n in g.nodes)
        g = g.with_meta(bn_folded=folded)
        if folded:
            warnings.warn(
                f"{self.label}: its convolutions all have biases and no BatchNormalization follows any of them, so "
                "BN was probably folded into the convs (torch.onnx.export does this in eval mode); compare it with "
                "graphs from other frontends via .bn_folded().canonical_hash",
                BatchNormFoldedWarning,
                stacklevel=_caller_stacklevel(),
            )
        return g

    # -- mapping helpers ------------------------------------------------------------------
    def _bind(self, name: str, h: int, perm: Perm | None) -> None:
        self.act[name] = (h, perm)
        self.aliases.setdefault(h, []).append(name)

    def shape(self, name: str) -> Shape:
        s = self.shapes.get(name)
        if s is None:
            raise ConversionError(f"{self.label}: could not infer a static shape for {name!r}; expected static shapes (only the batch may be symbolic)")
        return s

    def guess_perm(self, h: int, shape: Shape) -> Perm | None:
        r = len(shape)
        want = self.b.shape(h)
        cands = [_channels_last_perm(r), _identity(r)] if self.channels_last else [_identity(r), _channels_last_perm(r)]
        for p in cands:
            if _cg(shape, p) == want:
                return p
        return None

    def out_shape(self, name: str, perm: Perm | None, h: int | None = None) -> Shape:
        """Graph shape of an op output: through ``perm``; for an unknown layout the handle's shape when sizes agree."""
        s = self.shape(name)
        if perm is not None and len(perm) == len(s):
            return _cg(s, perm)
        if h is not None and math.prod(s) == math.prod(self.b.shape(h)):
            return self.b.shape(h)
        return _tokens_of(s)

    def emit(self, op: str, node: onnx.NodeProto, hs: Sequence[int], perm: Perm | None, shape: Shape, **attrs: Any) -> int:
        h = self.b.add_node(op, hs, shape, name=node.name or node.output[0], **attrs)
        self._bind(node.output[0], h, perm)
        return h

    def param(self, name: str) -> int | None:
        """The ``param`` node of constant ``name`` when it is a non-scalar learned tensor (derived from a float
        initializer); None for scalars and computed constants (masks, shape arithmetic)."""
        root = self.roots.get(name)
        if root is None or math.prod(self.shape(name)) <= 1:
            return None
        h = self.param_nodes.get(root)
        if h is None:
            dims = list(self.shape(name))
            while len(dims) > 1 and dims[-1] == 1:
                dims.pop()
            h = self.param_nodes[root] = self.b.param(tuple(int(d) for d in self.const_protos[root].dims),
                                                      tokens(dims[-1], math.prod(dims)), name=root)
        return h

    def uses(self, h: int) -> int:
        """How many ONNX nodes (other than shape queries and plumbing onto ``h`` itself) read handle ``h``."""
        names = set(self.aliases.get(h, []))
        outs = {o.name for o in self.graph.output}
        n = 0
        for name in names:
            if name in outs:
                n += 1
            for idx in self.consumers.get(name, []):
                c = self.nodes[idx]
                if c.op_type in ("Shape", "Size"):
                    continue
                if c.output and c.output[0] in names:
                    continue
                n += 1
        return n

    def per_channel(self, cname: str, xname: str) -> bool:
        """Whether constant ``cname`` is one value per channel of activation ``xname``."""
        h, p = self.act[xname]
        c = self.b.shape(h)[0] if self.b.shape(h) else 1
        cs, xs = self.shape(cname), self.shape(xname)
        if c <= 1 or math.prod(cs) != c or len(cs) > len(xs):
            return False
        aligned = (1,) * (len(xs) - len(cs)) + tuple(cs)
        axes = [i for i, d in enumerate(aligned) if d != 1]
        if len(axes) != 1:
            return False
        i = axes[0]
        if p is not None and len(p) == len(xs):
            return p[i] == 1
        return i == len(xs) - 1 and xs[i] == c

    def _unknown(self, node: onnx.NodeProto, key: str) -> None:
        hs = list(dict.fromkeys(self.act[i][0] for i in node.input if i in self.act))
        first = next(i for i in node.input if i in self.act)
        p = self.act[first][1]
        outs = [o for o in node.output if o]
        shape = self.out_shape(outs[0], p, hs[0]) if self.shapes.get(outs[0]) is not None else self.b.shape(hs[0])
        h = self.b.unsupported(key, hs, shape, name=node.name or outs[0])
        for o in outs:
            s = self.shapes.get(o)
            self._bind(o, h, self.guess_perm(h, s) if s is not None else None)

    def _merge_chains(self) -> None:
        """Per-axis pieces of one op become one node: a slice of a slice (exporters slice one axis
        at a time) and an up-sampling of an up-sampling made by tf2onnx (which repeats along H,
        then W). The first node loses its only consumer and is dropped when the graph is built."""
        nodes = self.b.nodes
        cons = [0] * len(nodes)
        for n in nodes:
            for s in n.inputs:
                cons[s] += 1
        outs = {self.act[o.name][0] for o in self.graph.output if o.name in self.act}
        for i, n in enumerate(nodes):
            if n.op not in ("slice", "upsample") or not n.inputs:
                continue
            src = n.inputs[0]
            sn = nodes[src]
            if sn.op != n.op or src in outs or (n.op == "upsample" and cons[src] != 1):
                continue  # a slice of a slice is one slice even when the first is shared (exporters CSE it)
            if n.op == "upsample" and not (src in self.upsample_from_repeat and i in self.upsample_from_repeat):
                continue
            nodes[i] = replace(n, inputs=sn.inputs, input_shapes=sn.input_shapes)
            cons[src] -= 1
            for s in sn.inputs:
                cons[s] += 1


# -- handlers ----------------------------------------------------------------------------------
Handler = Callable[[_Converter, onnx.NodeProto], None]


def _x(c: _Converter, node: onnx.NodeProto, i: int = 0) -> tuple[int, Perm | None]:
    return c.act[node.input[i]]


def _plumbing(c: _Converter, node: onnx.NodeProto) -> None:
    src = node.input[0]
    if src not in c.act:  # e.g. Reshape(const, act-derived shape): not expected
        c._unknown(node, node.op_type)
        return
    h, p = c.act[src]
    out = node.output[0]
    s = c.shapes.get(out)
    if node.op_type == "Transpose" and p is not None:
        t = _attrs(node).get("perm") or list(range(len(p)))[::-1]
        perm: Perm | None = tuple(p[k] for k in t)
    elif node.op_type in ("Identity", "Dropout", "Cast", "CastLike"):
        perm = p
    else:
        perm = c.guess_perm(h, s) if s is not None else None
    if src in c.pending_repeat or (node.op_type in ("Expand",) and s is not None and math.prod(s) > math.prod(c.shape(src))):
        # an Unsqueeze/Tile chain of up-sampling; resolved at the Reshape that restores the rank
        if node.op_type == "Reshape" and s is not None and perm is None:
            cands = [_channels_last_perm(len(s)), _identity(len(s))] if c.channels_last else [_identity(len(s)), _channels_last_perm(len(s))]
            hshape = c.b.shape(h)
            for q in cands:
                new = _cg(s, q)
                if len(new) == len(hshape) > 1 and new[0] == hshape[0] and all(a >= b for a, b in zip(new[1:], hshape[1:])):
                    h2 = c.emit("upsample", node, [h], q, new)
                    c.upsample_from_repeat.add(h2)
                    return
        c.pending_repeat.add(out)
    c._bind(out, h, perm)
    for extra in node.output[1:]:
        if extra:
            c._bind(extra, h, perm)


def _tile(c: _Converter, node: onnx.NodeProto) -> None:
    h, _ = _x(c, node)
    c.pending_repeat.add(node.output[0])
    c._bind(node.output[0], h, None)


def _unary(op: str) -> Handler:
    def handler(c: _Converter, node: onnx.NodeProto) -> None:
        h, p = _x(c, node)
        c.emit(op, node, [h], p, c.b.shape(h))

    return handler


def _clip(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    a = _attrs(node)
    lo: float | None = a.get("min")
    hi: float | None = a.get("max")
    for k, idx in (("lo", 1), ("hi", 2)):
        if len(node.input) > idx and node.input[idx]:
            v = c._value(node.input[idx]) if node.input[idx] in c.const_names else None
            if v is None:
                c._unknown(node, "Clip with a non-constant bound")
                return
            if k == "lo":
                lo = float(v.reshape(-1)[0])
            else:
                hi = float(v.reshape(-1)[0])
    big = 1e30
    if lo == 0 and hi is not None and abs(hi - 6) < 1e-6:
        c.emit("relu6", node, [h], p, c.b.shape(h))
    elif lo == 0 and (hi is None or hi >= big):
        c.emit("relu", node, [h], p, c.b.shape(h))
    elif lo is not None and 0 < lo <= 1e-4 and (hi is None or hi >= big):
        c._bind(node.output[0], h, p)  # an epsilon guard (F.normalize's clamp_min(eps)): plumbing, as in torch
    else:
        c._unknown(node, f"Clip({lo}, {hi})")


def _is_const(c: _Converter, name: str) -> bool:
    return name in c.const_names


def _binary(op: str) -> Handler:
    def handler(c: _Converter, node: onnx.NodeProto) -> None:
        ins = [i for i in node.input if i]
        acts = [i for i in ins if i in c.act]
        consts = [i for i in ins if _is_const(c, i)]
        out = node.output[0]
        if len(acts) >= 2:
            hs = [c.act[i][0] for i in acts]
            out_s = c.shape(out)
            ref = next((i for i in acts if c.shape(i) == out_s), acts[0])
            pr = c.act[ref][1]
            if op == "mul" and len(acts) == 2:
                for a, g in ((acts[0], acts[1]), (acts[1], acts[0])):
                    ha, hg = c.act[a][0], c.act[g][0]
                    gn = c.b.nodes[hg]
                    if gn.op == "sigmoid" and gn.inputs == (ha,) and c.uses(hg) == 1:
                        c.b.nodes[hg] = replace(gn, op="silu")
                        c._bind(out, hg, c.act[g][1])
                        return
            if op in ("sub", "div") and len(acts) != 2:
                c._unknown(node, node.op_type)
                return
            if len(acts) == 2 and acts[0] == acts[1] and op == "mul":
                hs = hs[:1] * 2
            c.emit(op, node, hs, pr, c.b.broadcast(hs, name=node.name))
            return
        x = acts[0]
        h, p = c.act[x]
        k = consts[0] if consts else None
        v = c._value(k) if k is not None else None
        x_first = node.input[0] == x
        same = math.prod(c.shape(out)) == math.prod(c.shape(x))
        scalar = float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None
        if op == "mul" and k is not None and _norm_affine(c, h, out, p, k, x):
            return
        if op == "add" and k is not None:
            src = c.b.nodes[h]
            if src.op in _BIASABLE and not src.bias and c.uses(h) == 1 and _bias_like(c, src, k, x):
                c.b.nodes[h] = replace(src, bias=True)
                c._bind(out, h, p)
                return
            if h in c.chan_scale and c.uses(h) == 1 and c.per_channel(k, x):
                data = c.chan_scale.pop(h)  # x * a + b with per-channel a, b: an inference BatchNorm
                ch = c.b.shape(h)[0]
                c.b.nodes[h] = replace(src, op="bn", inputs=(data,), input_shapes=(c.b.shape(data),), weight_shape=(ch,),
                                       bias=True)
                c._bind(out, h, p)
                return
        hp = c.param(k) if k is not None else None
        if hp is not None:  # a learned tensor (layer scale, position embedding, attention bias...)
            hs = [h, hp] if x_first else [hp, h]
            hm = c.emit(op, node, hs, p, c.b.broadcast(hs, name=node.name))
            if op == "mul" and c.per_channel(k, x):  # type: ignore[arg-type]
                c.chan_scale[hm] = h
            return
        if op == "mul" and k is not None and scalar is None and c.per_channel(k, x):
            hs = c.emit("scale", node, [h], p, c.b.shape(h))
            c.chan_scale[hs] = h
            return
        if op in ("sub", "div") and not x_first and op == "sub":
            c._bind(out, h, p)  # c - x: a sign flip and a shift, plumbing as x - c
            return
        if not same and op in ("add", "sub"):
            c._unknown(node, f"broadcasting {node.op_type} with a constant")
            return
        res = c.b.const_arith(op, h, scalar, const_first=not x_first, same_size=same, name=node.name or out)
        c._bind(out, res, p)

    return handler


_BIASABLE = frozenset({"conv", "linear", "conv_transpose", "groupnorm", "layernorm"})


def _bias_like(c: _Converter, src: Any, k: str, x: str) -> bool:
    """Whether constant ``k`` added to ``x`` (the output of ``src``) is ``src``'s bias."""
    if src.op != "linear":
        return c.per_channel(k, x)
    # a linear's bias runs along the axis MatMul wrote: the last one
    cs, xs = c.shape(k), c.shape(x)
    n = src.weight_shape[0]
    return math.prod(cs) == n and len(cs) <= len(xs) and (not cs or cs[-1] == n) and xs[-1] == n


def _norm_affine(c: _Converter, h: int, out: str, p: Perm | None, k: str, x: str) -> bool:
    """A per-channel Mul right after a scale-free group/layer norm is that norm's scale."""
    n = c.b.nodes[h]
    if n.op not in ("groupnorm", "layernorm") or n.weight_shape or n.bias or c.uses(h) != 1 or not c.per_channel(k, x):
        return False
    c.b.nodes[h] = replace(n, weight_shape=(c.b.channels(h),))
    c._bind(out, h, p)
    return True


def _instance_norm(c: _Converter, node: onnx.NodeProto) -> None:
    """torch exports GroupNorm as InstanceNormalization over a (N, groups, -1) view, then Mul/Add."""
    h, p = _x(c, node)
    xs = c.shape(node.input[0])
    ch = c.b.channels(h)
    if p is None and len(xs) == 3 and ch % xs[1] == 0 and math.prod(xs) == math.prod(c.b.shape(h)) and xs[1] != ch:
        c.emit("groupnorm", node, [h], None, c.b.shape(h), groups=int(xs[1]))
        return
    c._unknown(node, "InstanceNormalization")


def _spatial_attrs(c: _Converter, node: onnx.NodeProto, x: str, kernel: Shape) -> dict[str, Any]:
    a = _attrs(node)
    nd = len(kernel)
    strides = tuple(a.get("strides", (1,) * nd))
    dil = tuple(a.get("dilations", (1,) * nd))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        size = c.shape(x)[2:]
        tot = [max((math.ceil(size[i] / strides[i]) - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1 - size[i], 0) for i in range(nd)]
        small = [t // 2 for t in tot]
        big = [t - t // 2 for t in tot]
        pad = tuple(small + big) if auto == "SAME_UPPER" else tuple(big + small)
    elif auto == "VALID":
        pad = (0,) * (2 * nd)
    else:
        pad = tuple(a.get("pads", (0,) * (2 * nd)))
    return {"kernel": tuple(int(k) for k in kernel), "stride": tuple(int(s) for s in strides), "padding": tuple(int(p) for p in pad),
            "dilation": tuple(int(d) for d in dil)}


def _conv(c: _Converter, node: onnx.NodeProto) -> None:
    h, _ = _x(c, node)
    w = node.input[1]
    if w not in c.const_names:
        c._unknown(node, "Conv with a non-constant weight")
        return
    ws = c.shape(w)
    groups = int(_attrs(node).get("group", 1))
    bias = len(node.input) > 2 and bool(node.input[2])
    sp = _spatial_attrs(c, node, node.input[0], ws[2:])
    op = "conv" if node.op_type == "Conv" else "conv_transpose"
    xs = c.shape(node.input[0])
    c_in = ws[1] * groups if op == "conv" else ws[0]
    if len(xs) < 2 or len(ws) != len(xs) or xs[1] != c_in:
        raise ConversionError(
            f"{c.label}: {node.op_type} {node.name or node.output[0]!r} has weight {tuple(ws)} (groups={groups}), which reads "
            f"{c_in} channels, but its input {node.input[0]!r} has shape {tuple(xs)}; expected the input's channel axis to match the weight"
        )
    out = node.output[0]
    c.emit(op, node, [h], _identity(len(c.shape(out))), _cg(c.shape(out), None), weight_shape=ws, bias=bias, groups=groups, **sp)


def _pool(op: str) -> Handler:
    def handler(c: _Converter, node: onnx.NodeProto) -> None:
        h, _ = _x(c, node)
        a = _attrs(node)
        kernel = tuple(int(k) for k in a["kernel_shape"])
        sp = _spatial_attrs(c, node, node.input[0], kernel)
        out = node.output[0]
        in_sp = c.shape(node.input[0])[2:]
        oshape = c.shape(out)
        if tuple(in_sp) == kernel and not any(sp["padding"]) and all(d == 1 for d in oshape[2:]):
            # a window over the whole map: how exporters write adaptive pooling to 1x1
            c.emit("global_" + op, node, [h], _identity(len(oshape)), _cg(oshape, None))
            return
        sp["dilation"] = (1,) * len(kernel)
        c.emit(op, node, [h], _identity(len(oshape)), _cg(oshape, None), **sp)

    return handler


def _global_pool(op: str) -> Handler:
    def handler(c: _Converter, node: onnx.NodeProto) -> None:
        h, _ = _x(c, node)
        out = node.output[0]
        c.emit(op, node, [h], _identity(len(c.shape(out))), (c.b.channels(h),))

    return handler


def _reduce(global_op: str, feature_op: str) -> Handler:
    """Reduce over the positions of a map or of tokens (a global pool) or over the feature axis."""

    def handler(c: _Converter, node: onnx.NodeProto) -> None:
        h, p = _x(c, node)
        a = _attrs(node)
        xs = c.shape(node.input[0])
        axes = _axes(a, [None] + [c._value(i) if i else None for i in node.input[1:]], 1)
        r = len(xs)
        if axes is None:
            axes = [] if a.get("noop_with_empty_axes", 0) else list(range(r))
        axes_n = sorted({int(v) % r for v in axes})
        keep = bool(a.get("keepdims", 1))
        known = p is not None and len(p) == r
        cf_axes = {p[i] for i in axes_n} if known else set()  # type: ignore[index]
        if global_op and known and r >= 3 and cf_axes == set(range(2, r)):
            if keep:
                perm: Perm | None = p
            else:
                rest = [p[i] for i in range(r) if i not in axes_n]  # type: ignore[index]
                order = sorted(rest)
                perm = tuple(order.index(v) for v in rest)
            c.emit(global_op, node, [h], perm, (c.b.channels(h),))
            return
        numel_out = math.prod(c.shape(node.output[0]))
        if global_op and r > 1 and (r - 1) not in axes_n and 0 not in axes_n and numel_out == xs[-1]:
            c.emit(global_op, node, [h], None, (int(xs[-1]),))  # every token, features kept
            return
        if feature_op and len(axes_n) == 1 and ((known and cf_axes == {1}) or axes_n == [r - 1]):
            f = int(xs[axes_n[0]])
            shp = c.b.shape(h)
            rest = shp[1:] if shp and shp[0] == f else (c.b.numel(h) // f,)
            c.emit(feature_op, node, [h], p if (known and cf_axes == {1} and keep) else None,
                   canon_shape((1, *rest)) if len(rest) > 1 else (1, *rest))
            return
        c._unknown(node, f"{node.op_type}(axes={axes_n})")

    return handler


def _gemm(c: _Converter, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    A, B = node.input[0], node.input[1]
    if A in c.act and B in c.act:
        _matmul(c, node)
        return
    if A not in c.act or a.get("transA", 0):
        c._unknown(node, "Gemm with a constant or transposed left operand")
        return
    h, p = c.act[A]
    bs = c.shape(B)
    w = (int(bs[0]), int(bs[1])) if a.get("transB", 0) else (int(bs[1]), int(bs[0]))
    bias = len(node.input) > 2 and bool(node.input[2])
    out = node.output[0]
    c.emit("linear", node, [h], _identity(2), c.b.feature_shape(h, w[1], w[0], math.prod(c.shape(out))), weight_shape=w,
           bias=bias)


def _matmul(c: _Converter, node: onnx.NodeProto) -> None:
    A, B = node.input[0], node.input[1]
    out = node.output[0]
    hb_param = c.param(B) if B not in c.act and len(c.shape(B)) != 2 else None
    if A in c.act and (B in c.act or hb_param is not None):
        ha, pa = c.act[A]
        hb = c.act[B][0] if B in c.act else hb_param
        xs, os_ = c.shape(A), c.shape(out)
        known = pa is not None and len(pa) == len(xs) == len(os_)
        c.emit("matmul", node, [ha, hb], pa if known else None, _cg(os_, pa) if known else _tokens_of(os_),  # type: ignore[list-item]
               inner=int(xs[-1]))
        return
    if A not in c.act:
        c._unknown(node, "MatMul with a constant left operand")
        return
    h, p = c.act[A]
    bs = c.shape(B)
    if len(bs) != 2:
        c._unknown(node, f"MatMul with a rank-{len(bs)} constant")
        return
    k, n = int(bs[0]), int(bs[1])
    xs = c.shape(A)
    if p is not None and len(p) == len(xs):
        shape = _cg(c.shape(out), p)
        perm: Perm | None = p
    else:
        shape = c.b.feature_shape(h, k, n, math.prod(c.shape(out)))
        perm = None
    c.emit("linear", node, [h], perm, shape, weight_shape=(n, k), bias=False)


def _keep_or_tokens(c: _Converter, h: int, features: int, out: str) -> Shape:
    shp = c.b.shape(h)
    numel = math.prod(c.shape(out))
    if shp and shp[0] == features and math.prod(shp) == numel:
        return shp
    return tokens(features, numel)


def _bn(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    ch = int(c.shape(node.input[1])[0]) if len(node.input) > 1 and node.input[1] else c.b.channels(h)
    c.emit("bn", node, [h], p, _keep_or_tokens(c, h, ch, node.output[0]), weight_shape=(ch,), bias=True)


def _norm(op: str) -> Handler:
    def handler(c: _Converter, node: onnx.NodeProto) -> None:
        h, p = _x(c, node)
        scale = node.input[1] if len(node.input) > 1 and node.input[1] else None
        bias = len(node.input) > 2 and bool(node.input[2])
        ws = tuple(c.shape(scale)) if scale else ()
        a = _attrs(node)
        xs = c.shape(node.input[0])
        if op == "layernorm":
            axis = int(a.get("axis", -1)) % len(xs)
            feats = math.prod(xs[axis:])
            extra: dict[str, Any] = {}
        else:
            feats = int(xs[1])
            extra = {"groups": int(a.get("num_groups", 1))}
        c.emit(op, node, [h], p, _keep_or_tokens(c, h, feats, node.output[0]), weight_shape=ws, bias=bias, **extra)

    return handler


def _is_roll(c: _Converter, node: onnx.NodeProto, ins: list[str], axis: int) -> str | None:
    """``Concat`` of slices of one tensor along ``axis`` that together are that tensor: how
    exporters write ``torch.roll`` (cyclic shift, plumbing). Returns the rolled tensor's name."""
    srcs = set()
    for i in ins:
        prod = c.producer.get(i)
        if prod is None or prod.op_type != "Slice":
            return None
        srcs.add(prod.input[0])
    if len(srcs) != 1:
        return None
    src = srcs.pop()
    return src if src in c.act and tuple(c.shape(src)) == tuple(c.shape(node.output[0])) else None


def _concat(c: _Converter, node: onnx.NodeProto) -> None:
    ins = [i for i in node.input if i]
    r = len(c.shape(ins[0]))
    axis = int(_attrs(node)["axis"]) % r
    out = node.output[0]
    rolled = _is_roll(c, node, ins, axis)
    if rolled is not None:
        h, p = c.act[rolled]
        c._bind(out, h, p)
        return
    hs: list[int] = []
    for i in ins:
        if i in c.act:
            hs.append(c.act[i][0])
            continue
        hp = c.param(i)
        if hp is None:
            c._unknown(node, "Concat with a constant that is not a learned tensor")
            return
        hs.append(hp)
    first_act = next(i for i in ins if i in c.act)
    p = c.act[first_act][1]
    known = all(i in c.act and c.act[i][1] is not None and len(c.act[i][1]) == r for i in ins)  # type: ignore[arg-type]
    if known and p[axis] == 1:  # type: ignore[index]
        c.emit("concat", node, hs, p, _cg(c.shape(out), p))
        return
    c.emit("concat", node, hs, None, _tokens_of(c.shape(out)))


def _gather(c: _Converter, node: onnx.NodeProto) -> None:
    """Gather on an activation with constant indices (taking the class token): a slice."""
    data, idx = node.input[0], node.input[1]
    if data not in c.act or idx in c.act:
        c._unknown(node, "Gather with computed indices")
        return
    h, p = c.act[data]
    out = node.output[0]
    xs, os_ = c.shape(data), c.shape(out)
    known = p is not None and len(p) == len(xs) == len(os_)
    c.emit("slice", node, [h], p if known else None, _cg(os_, p) if known else _tokens_of(os_))


def _pad(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    a = _attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    xs = c.shape(node.input[0])
    r = len(xs)
    if "pads" in a:
        pads = [int(v) for v in a["pads"]]
        axes = list(range(r))
    else:
        pv = c._value(node.input[1]) if len(node.input) > 1 else None
        if pv is None:
            c._unknown(node, "Pad with non-constant pads")
            return
        pads = [int(v) for v in pv.reshape(-1)]
        av = c._value(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        axes = [int(v) % r for v in av.reshape(-1)] if av is not None else list(range(r))
    n = len(axes)
    full_b, full_e = [0] * r, [0] * r
    for j, ax in enumerate(axes):
        full_b[ax], full_e[ax] = pads[j], pads[n + j]
    if p is None or len(p) != r:
        c._unknown(node, "Pad on a tensor of unknown layout")
        return
    cf_b, cf_e = [0] * r, [0] * r
    for i in range(r):
        cf_b[p[i]], cf_e[p[i]] = full_b[i], full_e[i]
    out = node.output[0]
    if cf_b[0] or cf_e[0] or cf_b[1] or cf_e[1]:
        c._unknown(node, "Pad on the batch or channel axis")
        return
    if mode != "constant":
        c._unknown(node, f"Pad(mode={mode})")
        return
    if not any(cf_b) and not any(cf_e):
        c._bind(out, h, p)
        return
    c.emit("pad", node, [h], p, _cg(c.shape(out), p), padding=tuple(cf_b[2:]) + tuple(cf_e[2:]))


def _slice(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    out = node.output[0]
    if c.shape(out) == c.shape(node.input[0]):
        c._bind(out, h, p)
        return
    c.emit("slice", node, [h], p, c.out_shape(out, p))


def _split(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    for o in node.output:
        if o:
            c.act.pop(o, None)
            hh = c.b.add_node("slice", [h], c.out_shape(o, p), name=node.name or o)
            c._bind(o, hh, p)


def _resize(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    out = node.output[0]
    c.emit("upsample", node, [h], p, c.out_shape(out, p))


def _softmax(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    xs = c.shape(node.input[0])
    r = len(xs)
    axis = int(_attrs(node).get("axis", -1 if c.opset >= 13 else 1)) % r
    known = p is not None and len(p) == r
    if (known and p[axis] == 1) or axis == r - 1:  # type: ignore[index]
        c.emit("softmax", node, [h], p, _keep_or_tokens(c, h, int(xs[axis]), node.output[0]))
    else:
        c.emit("softmax", node, [h], None, tokens(int(xs[axis]), math.prod(xs)))


def _hardsigmoid(c: _Converter, node: onnx.NodeProto) -> None:
    h, p = _x(c, node)
    c.emit("hardsigmoid", node, [h], p, c.b.shape(h))


_HANDLERS: dict[str, Handler] = {
    "Conv": _conv,
    "ConvTranspose": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "BatchNormalization": _bn,
    "LayerNormalization": _norm("layernorm"),
    "GroupNormalization": _norm("groupnorm"),
    "InstanceNormalization": _instance_norm,
    "Relu": _unary("relu"),
    "LeakyRelu": _unary("leaky_relu"),
    "Elu": _unary("elu"),
    "Gelu": _unary("gelu"),
    "Sigmoid": _unary("sigmoid"),
    "HardSigmoid": _hardsigmoid,
    "HardSwish": _unary("hardswish"),
    "Tanh": _unary("tanh"),
    "Softmax": _softmax,
    "Clip": _clip,
    "Add": _binary("add"),
    "Sum": _binary("add"),
    "Sub": _binary("sub"),
    "Mul": _binary("mul"),
    "Div": _binary("div"),
    "Concat": _concat,
    "AveragePool": _pool("avgpool"),
    "MaxPool": _pool("maxpool"),
    "GlobalAveragePool": _global_pool("global_avgpool"),
    "GlobalMaxPool": _global_pool("global_maxpool"),
    "ReduceMean": _reduce("global_avgpool", "reduce_mean"),
    "ReduceMax": _reduce("global_maxpool", "reduce_max"),
    "ReduceL2": _reduce("", "reduce_l2"),
    "Gather": _gather,
    "Pad": _pad,
    "Slice": _slice,
    "Split": _split,
    "Resize": _resize,
    "Upsample": _resize,
    "Tile": _tile,
    **{op: _plumbing for op in _PLUMBING},
}


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
