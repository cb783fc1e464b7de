"""Phase 2, patterns: multi-node formulas that are one vocabulary op (erf GELU, tf2onnx hard-swish, tf2onnx layer norm)."""

from __future__ import annotations

import math

import numpy as np
import onnx

from napbench.conversion.onnx._common import _attrs, _close

Shape = tuple[int, ...]
Perm = tuple[int, ...]


class _Patterns:
    """Pattern rewrites on the ONNX node list (mixed into the converter)."""

    def _single_consumer(self, name: str) -> onnx.NodeProto | None:
        cons = self.consumers.get(name, [])
        outs = {o.name for o in self.graph.output}
        if len(cons) != 1 or name in outs:
            return None
        return self.nodes[cons[0]]

    def _producer_map(self) -> dict[str, int]:
        return {o: i for i, n in enumerate(self.nodes) for o in n.output}

    def patterns(self) -> None:
        """Rewrite every formula; again while a rewrite lets analysis reach shapes it could not see before
        (a layer norm after tf2onnx's ``Erfc`` GELU is recognised once the GELU is)."""
        self._formulas: set[int] = set()  # ids of the nodes written for formulas (they keep their input's shape)
        for _ in range(64):  # each pass reaches at least one formula further; chains are short
            if not self._patterns_once():
                return

    def _patterns_once(self) -> bool:
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
            elif node.op_type == "Erfc" and idx not in drop:
                m = self._match_gelu_erfc(node, prod)
                if m is not None:
                    x, out, members = m
                    drop.update(members)
                    replace_at[max(members)] = onnx.helper.make_node("Gelu", [x], [out], name=node.name or out)
            elif node.op_type == "Neg" and idx not in drop:
                ln = self._match_moments_layernorm(node, prod)
                if ln is not None:
                    new, members = ln
                    drop.update(members)
                    replace_at[max(members)] = new
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
            # a replaced formula keeps its input's shape; shapes that inference could not reach past
            # an op it does not know (tf2onnx's Erfc) are inferred again from there on, in graph order,
            # and shape arithmetic on them (tf2onnx's Tensordot reads Shape) is evaluated
            self._formulas.update(id(n) for n in replace_at.values())
            for n in self.nodes:
                if id(n) in self._formulas:
                    if self.shapes.get(n.output[0]) is None and self.shapes.get(n.input[0]) is not None:
                        self.shapes[n.output[0]] = self.shapes[n.input[0]]
                        if n.input[0] in self.types:
                            self.types[n.output[0]] = self.types[n.input[0]]
                elif self._stale(n):
                    self._analyse_node(n)  # type: ignore[attr-defined]
        return bool(drop)

    def _stale(self, n: onnx.NodeProto) -> bool:
        """Whether analysis left ``n`` without an output shape, or with shape arithmetic it can now evaluate."""
        outs = [o for o in n.output if o]
        if any(self.shapes.get(o) is None for o in outs):
            return True
        return bool(n.input) and any(o not in self.const_names for o in outs) and (
            n.op_type in ("Shape", "Size") or all(i == "" or i in self.const_names for i in n.input)
        )

    def _last_axis_mean(self, name: str, prod: dict[str, int], rank: int) -> onnx.NodeProto | None:
        """The node computing ``name`` when it is a mean over the last axis of a rank-``rank`` tensor, keeping it
        (a ``ReduceMean``, or tf2onnx's ``GlobalAveragePool`` of a rank-3 tensor)."""
        if name not in prod:
            return None
        n = self.nodes[prod[name]]
        if n.op_type == "GlobalAveragePool":
            return n if rank == 3 else None
        if n.op_type != "ReduceMean" or not rank or not _attrs(n).get("keepdims", 1):
            return None
        axes = _attrs(n).get("axes")
        if axes is None and len(n.input) > 1:
            v = self._value(n.input[1])
            axes = None if v is None else v.tolist()
        return n if axes is not None and [int(a) % rank for a in axes] == [rank - 1] else None

    def _match_moments_layernorm(self, neg: onnx.NodeProto, prod: dict[str, int]) -> tuple[onnx.NodeProto, list[int]] | None:
        """Keras' ``LayerNormalization`` as tf2onnx writes it (``tf.nn.moments`` over the last axis, then the
        inference affine): ``m = mean(x)``, ``v = mean((x - m)^2)``, ``r = gamma / sqrt(v + eps)``,
        ``x * r + (beta - m * r)`` -> one ``LayerNormalization`` node (gamma and beta optional)."""
        src = self.nodes[prod[neg.input[0]]] if neg.input[0] in prod else None
        rank = len(self.shapes.get(src.input[0]) or ()) if src is not None and src.input else 0
        mean = self._last_axis_mean(neg.input[0], prod, rank)
        if mean is None:
            return None
        x, m = mean.input[0], neg.input[0]

        def consumers(t: str) -> list[onnx.NodeProto]:
            return [self.nodes[i] for i in self.consumers.get(t, [])]

        sub = next((c for c in consumers(m) if c.op_type == "Sub" and list(c.input) == [x, m]), None)
        if sub is None or len(consumers(m)) != 2:
            return None
        sq_at = set(self.consumers.get(sub.output[0], []))  # (x - m) * (x - m) reads it twice
        sq = self.nodes[sq_at.pop()] if len(sq_at) == 1 else None
        if sq is None or sq.op_type != "Mul" or list(sq.input) != [sub.output[0]] * 2:
            return None
        var = self._single_consumer(sq.output[0])
        if var is None or self._last_axis_mean(var.output[0], prod, rank) is not var:
            return None
        add = self._single_consumer(var.output[0])
        if add is None or add.op_type != "Add" or (eps := self._value(next(i for i in add.input if i != var.output[0]))) is None:
            return None
        sqrt = self._single_consumer(add.output[0])
        rec = self._single_consumer(sqrt.output[0]) if sqrt is not None and sqrt.op_type == "Sqrt" else None
        if rec is None or rec.op_type != "Reciprocal":
            return None
        members = [prod[t] for t in (m, sub.output[0], sq.output[0], var.output[0], add.output[0], sqrt.output[0], rec.output[0])]
        r, gamma = rec.output[0], ""
        scale = self._single_consumer(r)
        if scale is not None and scale.op_type == "Mul" and neg not in consumers(r):
            gamma = next(i for i in scale.input if i != r)
            if gamma not in self.const_names:
                return None
            r = scale.output[0]
            members.append(prod[r])
        users = consumers(r)
        y1 = next((u for u in users if u.op_type == "Mul" and set(u.input) == {x, r}), None)
        y2 = self._single_consumer(neg.output[0])
        if y1 is None or y2 is None or y2.op_type != "Mul" or set(y2.input) != {neg.output[0], r} or len(users) != 2:
            return None
        members += [prod[neg.output[0]], prod[y1.output[0]], prod[y2.output[0]]]
        shift, beta = self._single_consumer(y2.output[0]), ""
        if shift is not None and shift.op_type == "Add" and y1 not in (self._single_consumer(y2.output[0]),):
            other = next((i for i in shift.input if i != y2.output[0]), "")
            if other in self.const_names:
                beta, members = other, [*members, prod[shift.output[0]]]
                shift_out = shift.output[0]
            else:
                shift_out = y2.output[0]
        else:
            shift_out = y2.output[0]
        out = self._single_consumer(y1.output[0])
        if out is None or out.op_type != "Add" or set(out.input) != {y1.output[0], shift_out}:
            return None
        members.append(prod[out.output[0]])
        node = onnx.helper.make_node("LayerNormalization", [x, gamma, beta] if beta else [x, gamma] if gamma else [x],
                                     [out.output[0]], name=neg.name or out.output[0], axis=-1, epsilon=float(np.ravel(eps)[0]))
        return node, members

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

    def _match_gelu_erfc(self, erfc: onnx.NodeProto, prod: dict[str, int]) -> tuple[str, str, list[int]] | None:
        """``(0.5 * x) * erfc(-x * (1/sqrt 2))`` -- how tf2onnx writes Keras' exact GELU (``Erfc`` is not
        an ONNX op) -> (x, output, member nodes)."""
        pre = self.nodes[prod[erfc.input[0]]] if erfc.input[0] in prod else None
        if pre is None or pre.op_type != "Mul" or self._single_consumer(pre.output[0]) is not erfc:
            return None
        neg_out = next((i for i in pre.input if i in prod and self.nodes[prod[i]].op_type == "Neg"), None)
        c = next((i for i in pre.input if i != neg_out), None)
        if neg_out is None or c is None or not _close(self._value(c), 1 / math.sqrt(2.0)):
            return None
        neg = self.nodes[prod[neg_out]]
        if self._single_consumer(neg_out) is not pre:
            return None
        x = neg.input[0]
        mul = self._single_consumer(erfc.output[0])
        if mul is None or mul.op_type != "Mul":
            return None
        half_out = mul.input[1] if mul.input[0] == erfc.output[0] else mul.input[0]
        half = self.nodes[prod[half_out]] if half_out in prod else None
        if half is None or half.op_type != "Mul" or x not in half.input or self._single_consumer(half_out) is not mul:
            return None
        if not _close(self._value(half.input[1] if half.input[0] == x else half.input[0]), 0.5):
            return None
        members = [prod[neg_out], prod[pre.output[0]], prod[erfc.output[0]], prod[half_out], prod[mul.output[0]]]
        return x, mul.output[0], members

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
