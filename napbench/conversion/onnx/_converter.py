"""Phase 3, mapping: the converter state and the walk that maps each ONNX node through a handler."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import onnx

from napbench.conversion.builder import GraphBuilder, tokens
from napbench.conversion.graph import CompGraph
from napbench.conversion.onnx._analysis import _Analysis
from napbench.conversion.onnx._common import (
    BatchNormFoldedWarning,
    _attrs,
    _caller_stacklevel,
    _cg,
    _channels_last_perm,
    _identity,
    _tokens_of,
)
from napbench.conversion.onnx._load import _invalid
from napbench.conversion.onnx._patterns import _Patterns
from napbench.conversion.vocab import NORMS
from napbench.errors import ConversionError

Shape = tuple[int, ...]
Perm = tuple[int, ...]


class _Converter(_Analysis, _Patterns):
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
        from napbench.conversion.onnx._handlers import HANDLERS

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
            if key in ("Shape", "Size"):  # shape arithmetic left unevaluated: its input's shape is unknown
                raise ConversionError(self._no_shape(node.input[0], f"node {node.name or key!r} ({key}) reads the shape of"))
            handler = HANDLERS.get(key)
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
            raise ConversionError(self._no_shape(name, "could not infer a static shape for"))
        return s

    def _no_shape(self, name: str, what: str) -> str:
        """One line on a tensor without a static shape, naming the node where shape inference stopped."""
        producer = {o: n for n in self.nodes for o in n.output}
        todo, seen, stop = [name], set(), None
        while todo:  # the first producer upstream whose inputs have shapes but whose output has none
            t = todo.pop()
            n = producer.get(t)
            if n is None or t in seen:
                continue
            seen.add(t)
            missing = [i for i in n.input if i and self.shapes.get(i) is None]
            if not missing:
                stop = n
                break
            todo.extend(missing)
        if stop is None or stop.output[0] == name and stop.op_type in ("Shape", "Size"):
            cause = ""
        else:
            try:
                onnx.defs.get_schema(stop.op_type, self.opset, stop.domain or "")
                why = "its shape rule failed on its inputs"
            except onnx.defs.SchemaError:  # no schema: not an ONNX op
                why = "is not an ONNX op (an exporter left an op it could not convert, e.g. tf2onnx's Erfc)"
            cause = f": shape inference stops at node {stop.name or stop.output[0]!r} ({stop.op_type}), which {why}"
        return (f"{self.label}: {what} {name!r}, which has no static shape{cause}; expected ops with ONNX shape rules and "
                "static shapes (only the batch may be symbolic)")

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
