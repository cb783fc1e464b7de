"""Phase 1, analysis: a static shape for every value and the values of constant subgraphs.

Shapes come from ``onnx.shape_inference`` on the whole model (batch read as 1), then per node
with the constants it knows; constants are evaluated (:mod:`._consts`) and remember the float
initializer they are a view of (their *root*), which makes learned tensors ``param`` nodes.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

from napbench.conversion.onnx._common import _FLOAT_TYPES, _SMALL, _VIEW_OPS, _attrs, _static
from napbench.conversion.onnx._consts import _EVAL, _np_dtype
from napbench.conversion.onnx._load import _invalid
from napbench.errors import ConversionError

#: strict shape-inference messages that mean the model itself is inconsistent (not an unknown op)
_CONTRADICTIONS = ("existing shape differ", "Incompatible dimensions", "type mismatch", "Type mismatch", "type case mismatch")

Shape = tuple[int, ...]
Perm = tuple[int, ...]


class _Analysis:
    """Shape and constant analysis (mixed into the converter)."""

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
        model = self._shape_model()
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
            except Exception as exc:  # strict inference fails on unknown ops; retry leniently
                msg = str(exc)
                if any(k in msg for k in _CONTRADICTIONS):  # the file's declared shapes contradict its ops
                    line = next((ln.strip() for ln in msg.splitlines() if any(k in ln for k in _CONTRADICTIONS)), msg)
                    raise _invalid(self.label, f"its declared shapes contradict its ops: {line[:300]}") from None
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

    def _shape_model(self) -> onnx.ModelProto:
        """A copy of the model for shape inference without the data of large initializers.

        Their types and shapes become graph inputs: inference needs only the values of small
        constants (shape tensors), and serialising a 300 MB model for it would dominate the
        conversion time.
        """
        g = self.model.graph
        g2 = onnx.GraphProto(name=g.name)
        g2.node.extend(g.node)
        g2.input.extend(g.input)
        g2.output.extend(g.output)
        g2.value_info.extend(g.value_info)
        declared = {i.name for i in g.input}
        for init in g.initializer:
            if math.prod(init.dims) <= _SMALL:
                g2.initializer.append(init)
            elif init.name not in declared:
                g2.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        model = onnx.ModelProto(ir_version=self.model.ir_version, producer_name=self.model.producer_name, graph=g2)
        model.opset_import.extend(self.model.opset_import)
        return model

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
        if all_const and node.op_type in _VIEW_OPS and any(
            i in self.shapes and self.shapes[i] is not None and math.prod(self.shapes[i]) > _SMALL for i in ins  # type: ignore[arg-type]
        ):
            # a view of a large weight (a transposed linear weight...): its shape is what matters
            roots = {self.roots[i] for i in ins if i in self.roots}
            for name in node.output:
                if name:
                    self.const_names.add(name)
                    self.consts[name] = None
                    if len(roots) == 1:
                        self.roots[name] = next(iter(roots))
            self._infer_missing(node)
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
