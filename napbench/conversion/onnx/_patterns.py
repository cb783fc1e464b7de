"""Phase 2, patterns: multi-node formulas that are one vocabulary op (erf GELU, tf2onnx hard-swish)."""

from __future__ import annotations

import math

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
            # a replaced formula keeps its input's shape; shapes that inference could not reach
            # past an op it does not know (tf2onnx's Erfc) are inferred again from there on
            for n in replace_at.values():
                if self.shapes.get(n.output[0]) is None and self.shapes.get(n.input[0]) is not None:
                    self.shapes[n.output[0]] = self.shapes[n.input[0]]
                    if n.input[0] in self.types:
                        self.types[n.output[0]] = self.types[n.input[0]]
            for n in self.nodes:
                self._infer_missing(n)  # type: ignore[attr-defined]

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
