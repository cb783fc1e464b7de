"""The computation graph (CG): one small immutable value.

A :class:`CompGraph` is a DAG of :class:`Node` s, each one primitive op of the vocabulary
(:mod:`napbench.conversion.vocab`) with its tensor shapes, weight shape, bias flag and spatial
attributes. Edges are implied by each node's ordered ``inputs`` (input order matters for
``concat``). Graphs are validated when built:

* acyclic, nodes in topological order (every input index is smaller than the node's own);
* exactly one ``input`` node, at index 0;
* every node lies on a path from the input to one of the declared outputs, and the outputs
  are exactly the nodes nothing consumes;
* shapes agree along every edge (a node's recorded input shapes equal its sources' outputs);
* weights fit their inputs (a conv's ``C_in/groups * groups`` equals its input channels, a
  linear maps its input's elements onto its output's, a norm's weight divides its input, a
  matmul records its contracted length); ``param`` nodes are sources without inputs.

FLOPs convention: **multiply-adds** (MACs) of the weighted compute layers -- conv, transposed
conv, linear and matmul -- the convention of the MobileNet / EfficientNet papers ("300M" for
MobileNetV2). BN, activations, pooling and elementwise ops count zero. ``params`` counts
learnable parameters (PyTorch's convention, ``sum(p.numel() for p in model.parameters())``: a
norm contributes its scale and a shift of the same size, a ``param`` node its stored tensor);
``param_count(include_buffers=True)`` adds BN running statistics, which is what Keras'
``count_params()`` reports. Matmul MACs are ``prod(output_shape) * inner`` with ``inner`` the
contracted length recorded from the operands as multiplied (after any head split), and
canonical shapes count every position including groups folded into the batch (see
:mod:`napbench.conversion.vocab`), so attention and windowed layouts are exact.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from napbench.conversion.vocab import COMMUTATIVE, MAC_OPS, NORMS, OPS, SOURCES
from napbench.errors import InvalidGraphError

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx
    import pyarrow as pa

Shape = tuple[int, ...]
#: memo of node label bytes (labels repeat a lot: same op and shapes across cells and graphs)
_LABEL_CACHE: dict[tuple, bytes] = {}
#: id(node) -> (node, its label bytes): family fast paths share Node objects across graphs, and the
#: entry holds the node, so its id cannot be reused by another object while the entry exists
_NODE_LABELS: dict[int, tuple[Node, bytes]] = {}


_UNHASHED = {"hash": False}  # field metadata: informative only, not part of the canonical hash


@dataclass(frozen=True, slots=True)
class Node:
    """One primitive op of a computation graph.

    The fields are declared once, here: storage (:mod:`napbench.conversion.storage`), the
    canonical hash (:meth:`label`, :attr:`CompGraph.canonical_hash`) and exports derive their
    field lists from :data:`NODE_FIELDS` / :data:`HASHED_FIELDS`. A new attribute is one new
    field (with a default, appended, so positional construction keeps working).

    Attributes:
        op: name from the vocabulary.
        inputs: indices of the source nodes, in argument order (stored as edges).
        input_shapes: canonical shape of each input (see :mod:`napbench.conversion.vocab`).
        output_shape: canonical shape of the output.
        weight_shape: shape of the main weight ((C_out, C_in/groups, *k) for conv, (C_out, C_in)
            for linear, (C,) for a norm with a scale, the stored tensor's shape for ``param``);
            ``()`` when there is none.
        bias: whether the op has an additive bias (a norm's shift counts as its bias).
        kernel, stride, dilation: per spatial dimension; ``()`` for non-spatial ops.
        padding: ``(begin..., end...)`` per spatial dimension; not part of the canonical hash
            (output shapes already pin it down, and frameworks pad 'same' differently).
        groups: convolution groups (group count of a ``groupnorm``).
        name: the framework's name for the layer (informative only, never hashed).
        detail: extra information, e.g. the original op type of an ``unknown`` node.
        inner: the contracted length ``K`` of a ``matmul`` (0 for other ops).
    """

    op: str
    inputs: tuple[int, ...] = ()
    input_shapes: tuple[Shape, ...] = ()
    output_shape: Shape = ()
    weight_shape: Shape = ()
    bias: bool = False
    kernel: Shape = ()
    stride: Shape = ()
    padding: Shape = field(default=(), metadata=_UNHASHED)
    dilation: Shape = ()
    groups: int = 1
    name: str = field(default="", metadata=_UNHASHED)
    detail: str = ""
    inner: int = 0

    @property
    def flops(self) -> int:
        """Multiply-adds of this node (zero for ops outside conv/linear/matmul)."""
        return node_flops(self)

    @property
    def params(self) -> int:
        """Learnable parameters of this node."""
        return node_params(self)

    def label(self) -> str:
        """The structural label hashed into the canonical id (every hashed field, see :data:`HASHED_FIELDS`)."""
        return "|".join(str(v) for v in _hash_key(self))


#: every Node field, in declaration order (storage columns derive from it; ``inputs`` are edges)
NODE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Node))
#: the fields that make up a node's structural label (everything but inputs and unhashed fields)
HASHED_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Node) if f.name != "inputs" and f.metadata.get("hash", True))
_hash_key = attrgetter(*HASHED_FIELDS)
_all_fields = attrgetter(*NODE_FIELDS)
_INPUTS_AT = NODE_FIELDS.index("inputs")


def with_inputs(node: Node, inputs: tuple[int, ...]) -> Node:
    """``node`` reading other node indices (a faster ``dataclasses.replace(node, inputs=...)``)."""
    values = list(_all_fields(node))
    values[_INPUTS_AT] = inputs
    return Node(*values)


def _label_bytes(node: Node) -> bytes:
    """The bytes of :meth:`Node.label` as hashed (input shapes of a commutative op sorted when they differ)."""
    key = _hash_key(node)
    if node.op in COMMUTATIVE and key[1].count(key[1][0]) != len(key[1]):  # argument order is not structure
        key = (key[0], tuple(sorted(key[1])), *key[2:])
    lab = _LABEL_CACHE.get(key)
    if lab is None:
        if len(_LABEL_CACHE) > 200_000:
            _LABEL_CACHE.clear()
        lab = _LABEL_CACHE[key] = "|".join(str(v) for v in key).encode()
    return lab


def _prod(shape: Iterable[int]) -> int:
    return math.prod(shape)


def node_flops(n: Node) -> int:
    """Multiply-adds of one node under the napbench convention (see module docstring)."""
    if n.op not in MAC_OPS:
        return 0
    if n.op == "conv":
        # each output element: C_in/groups * prod(kernel) MACs
        return _prod(n.output_shape) * _prod(n.weight_shape[1:]) if n.weight_shape else 0
    if n.op == "conv_transpose":
        # each input element scatters into C_out/groups * prod(kernel) outputs
        return _prod(n.input_shapes[0]) * _prod(n.weight_shape[1:]) if n.weight_shape else 0
    if n.op == "linear":
        # every output element is one dot product over C_in (whatever layout the output has)
        return _prod(n.output_shape) * n.weight_shape[1]
    # matmul: every output element is one dot product of length ``inner`` (K); recorded by the
    # frontend from the operands as they are multiplied, i.e. after any head split
    return _prod(n.output_shape) * n.inner


def node_params(n: Node) -> int:
    """Learnable parameters of one node: weight elements plus bias (one per output channel)."""
    p = _prod(n.weight_shape) if n.weight_shape else 0
    if n.bias:
        if n.op == "conv_transpose" and n.weight_shape:
            p += n.weight_shape[1] * n.groups
        elif n.op in ("conv", "linear") and n.weight_shape:
            p += n.weight_shape[0]
        elif n.op in NORMS and n.weight_shape:
            p += _prod(n.weight_shape)  # a norm's shift has the shape of its scale
        else:
            p += n.output_shape[0] if n.output_shape else 1  # the canonical feature axis
    return p


def node_buffers(n: Node) -> int:
    """Non-learnable state: a BN's running mean and variance (one each per normalised channel)."""
    if n.op != "bn":
        return 0
    return 2 * (_prod(n.weight_shape) if n.weight_shape else (n.output_shape[0] if n.output_shape else 1))


def _check_conv(n: Node) -> str | None:
    w, x = n.weight_shape, n.input_shapes[0]
    if len(w) < 3:
        return f"weight {w}; expected (C_out, C_in/groups, *kernel)"
    c_in = w[1] * n.groups
    if w[0] % n.groups:
        return f"{w[0]} output channels not divisible by groups={n.groups}"
    if len(x) == len(w) - 1 and x[0] != c_in:
        return f"weight {w} with groups={n.groups} reads {c_in} channels but its input {x} has {x[0]}"
    if _prod(x) % c_in:
        return f"weight {w} with groups={n.groups} reads {c_in} channels, which do not divide its input {x}"
    return None


def _check_conv_transpose(n: Node) -> str | None:
    w, x = n.weight_shape, n.input_shapes[0]
    if len(w) < 3:
        return f"weight {w}; expected (C_in, C_out/groups, *kernel)"
    if len(x) == len(w) - 1 and x[0] != w[0]:
        return f"weight {w} reads {w[0]} channels but its input {x} has {x[0]}"
    return None


def _check_linear(n: Node) -> str | None:
    w = n.weight_shape
    if len(w) != 2 or min(w) < 1:
        return f"weight {w}; expected (C_out, C_in)"
    n_in, n_out = _prod(n.input_shapes[0]), _prod(n.output_shape)
    if n_in % w[1] or n_out * w[1] != n_in * w[0]:
        return f"weight {w} does not map its input {n.input_shapes[0]} onto its output {n.output_shape}"
    return None


def _check_norm(n: Node) -> str | None:
    if n.weight_shape and _prod(n.output_shape) % _prod(n.weight_shape):
        return f"weight {n.weight_shape} does not divide its input {n.input_shapes[0]}"
    return None


def _check_matmul(n: Node) -> str | None:
    if len(n.inputs) != 2 or n.inner < 1:
        return f"{len(n.inputs)} inputs and inner={n.inner}; expected two inputs and the contracted length inner >= 1"
    return None


def _check_param(n: Node) -> str | None:
    if not n.weight_shape or _prod(n.weight_shape) < 1:
        return f"weight {n.weight_shape}; expected the shape of the stored tensor"
    return None


#: id(node) -> node, for nodes that passed every check that reads the node alone (op, sources, input
#: shape count, weight fit); shared Node objects (family fast paths) are checked once. The entry
#: holds the node, so its id cannot be reused while the entry exists.
_CHECKED: dict[int, Node] = {}
#: (weight shape, input shape, groups) of conv nodes already checked: they fit (conv
#: checks read nothing else; graphs of one family repeat them thousands of times)
_FITS: set[tuple] = set()
#: op -> check of its weight against its input shapes (None when they fit, else what is wrong)
_WEIGHT_CHECKS = {
    "conv": _check_conv, "conv_transpose": _check_conv_transpose, "linear": _check_linear, "bn": _check_norm,
    "layernorm": _check_norm, "groupnorm": _check_norm, "matmul": _check_matmul, "param": _check_param,
}


@dataclass(frozen=True)
class CompGraph:
    """An immutable, validated computation graph (see the module docstring)."""

    nodes: tuple[Node, ...]
    outputs: tuple[int, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "meta", dict(self.meta))
        self._validate()

    # -- validation ---------------------------------------------------------------------
    def _validate(self) -> None:
        nodes = self.nodes
        n = len(nodes)
        where = f" in graph {self.meta.get('arch') or self.meta.get('name') or ''}".rstrip()
        if n == 0 or nodes[0].op != "input":
            raise InvalidGraphError(f"graph{where} must start with one 'input' node at index 0; found {nodes[0].op if n else 'no nodes'}")
        consumed = bytearray(n)
        checked = _CHECKED
        for i, node in enumerate(nodes):
            known = checked.get(id(node)) is node  # passed the checks of the node alone before
            if not known and node.op not in OPS:
                raise InvalidGraphError(f"node {i}{where} has op {node.op!r}; expected a vocabulary op")
            if i and node.op == "input":
                raise InvalidGraphError(f"graph{where} has a second 'input' node at {i}; expected a single input")
            if i and not node.inputs and node.op not in SOURCES:
                raise InvalidGraphError(f"node {i} ({node.op}){where} has no inputs; expected every node to be reachable from the input")
            if known:
                for src, shp in zip(node.inputs, node.input_shapes):
                    if not 0 <= src < i or nodes[src].output_shape != shp:
                        break
                    consumed[src] = 1
                else:
                    continue
            if node.op in SOURCES and node.inputs:
                raise InvalidGraphError(f"node {i} ({node.op}){where} has inputs; expected a source node")
            if len(node.input_shapes) != len(node.inputs):
                raise InvalidGraphError(f"node {i} ({node.op}){where} has {len(node.inputs)} inputs but {len(node.input_shapes)} input shapes")
            for src, shp in zip(node.inputs, node.input_shapes):
                if not 0 <= src < i:
                    raise InvalidGraphError(
                        f"node {i} ({node.op}){where} reads node {src}; expected an earlier node (acyclic, topological order)"
                    )
                if nodes[src].output_shape != shp:
                    raise InvalidGraphError(
                        f"edge {src}->{i}{where}: source output shape {nodes[src].output_shape} != input shape {shp} "
                        f"recorded by {node.op}"
                    )
                consumed[src] = 1
            check = _WEIGHT_CHECKS.get(node.op)
            if check is not None:
                key = (node.weight_shape, node.input_shapes[0], node.groups) if node.op == "conv" else None
                if key is None or key not in _FITS:
                    bad = check(node)
                    if bad is not None:
                        raise InvalidGraphError(f"node {i} ({node.op} {node.name!r}){where}: {bad}")
                    if key is not None and len(_FITS) < 100_000:
                        _FITS.add(key)
            if not known:
                if len(checked) > 50_000:
                    checked.clear()
                checked[id(node)] = node
        sinks = tuple(i for i in range(n) if not consumed[i])
        if not self.outputs or sorted(set(self.outputs)) != list(sinks):
            raise InvalidGraphError(
                f"graph{where} declares outputs {list(self.outputs)} but the nodes nothing consumes are {list(sinks)}; "
                "expected every node to lie on a path to an output"
            )
        # reachability: every node other than the input and ``param`` sources has inputs that
        # precede it, so every node is reachable from a source; the data source is node 0.

    # -- derived properties -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def edges(self) -> list[tuple[int, int]]:
        """Directed edges (src, dst), grouped by destination in argument order."""
        return [(s, d) for d, node in enumerate(self.nodes) for s in node.inputs]

    @property
    def input_shape(self) -> Shape:
        """Shape of the network input (channel-first, no batch)."""
        return self.nodes[0].output_shape

    @cached_property
    def flops(self) -> int:
        """Total multiply-adds (see module docstring for the convention)."""
        return sum(node_flops(n) for n in self.nodes)

    @cached_property
    def params(self) -> int:
        """Learnable parameters (PyTorch convention)."""
        return sum(node_params(n) for n in self.nodes)

    def param_count(self, *, include_buffers: bool = False) -> int:
        """Parameters; with ``include_buffers`` also BN running statistics (Keras' count_params)."""
        return self.params + (sum(node_buffers(n) for n in self.nodes) if include_buffers else 0)

    def op_counts(self) -> dict[str, int]:
        """Histogram of ops."""
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n.op] = out.get(n.op, 0) + 1
        return out

    def flops_by_op(self) -> dict[str, int]:
        """Multiply-adds per op type."""
        out: dict[str, int] = {}
        for n in self.nodes:
            f = node_flops(n)
            if f:
                out[n.op] = out.get(n.op, 0) + f
        return out

    @cached_property
    def canonical_hash(self) -> str:
        """Structural id, independent of node creation order and layer names.

        Each node gets a Merkle hash of its label and its inputs' hashes (sorted for
        commutative ops, in order otherwise); the graph id hashes the sorted multiset of node
        hashes together with the output nodes' hashes.
        """
        hs: list[bytes] = []
        by_id = _NODE_LABELS
        blake2b = hashlib.blake2b
        for node in self.nodes:
            hit = by_id.get(id(node))
            if hit is not None and hit[0] is node:
                lab = hit[1]
            else:
                lab = _label_bytes(node)
                if len(by_id) > 50_000:
                    by_id.clear()
                by_id[id(node)] = (node, lab)
            inputs = node.inputs
            if not inputs:
                data = lab
            elif len(inputs) == 1:
                data = lab + hs[inputs[0]]
            else:
                ins = [hs[i] for i in inputs]
                if node.op in COMMUTATIVE:
                    ins.sort()
                data = lab + b"".join(ins)
            hs.append(blake2b(data, digest_size=16).digest())
        g = hashlib.blake2b(digest_size=16)
        for x in sorted(hs):
            g.update(x)
        g.update(b"|out|")
        for x in sorted(hs[i] for i in self.outputs):
            g.update(x)
        return g.hexdigest()

    def laplacian_eigenvalues(self, k: int = 8) -> np.ndarray:
        """The ``k`` smallest eigenvalues of the normalised Laplacian of the undirected graph.

        When the graph has fewer than ``k`` nodes the result is shorter.
        """
        n = len(self.nodes)
        src = np.fromiter((s for s, _ in self.edges), dtype=np.int64)
        dst = np.fromiter((d for _, d in self.edges), dtype=np.int64)
        a = np.zeros((n, n))
        a[src, dst] = 1.0
        a[dst, src] = 1.0
        deg = a.sum(1)
        with np.errstate(divide="ignore"):
            dinv = np.where(deg > 0, 1.0 / np.sqrt(deg), 0.0)
        lap = np.eye(n) - dinv[:, None] * a * dinv[None, :]
        vals = np.linalg.eigvalsh(lap)
        return np.clip(vals[: min(k, n)], 0.0, None)

    # -- transforms ---------------------------------------------------------------------
    def with_meta(self, **meta: Any) -> CompGraph:
        """A copy with graph metadata updated."""
        return CompGraph(self.nodes, self.outputs, {**self.meta, **meta})

    def bn_folded(self) -> CompGraph:
        """Canonical BN-folded view: every BN that directly follows a conv/linear whose only
        consumer it is, is merged into that layer (which gains a bias).

        This is what ``torch.onnx.export`` in eval mode and most deployment toolchains do, so
        ``g.bn_folded().canonical_hash == folded_onnx_graph.bn_folded().canonical_hash``.
        """
        from napbench.conversion._passes import fold_batchnorm

        return fold_batchnorm(self)

    def without_constant_branches(self) -> CompGraph:
        """The graph without branches that carry no information about its input: constant terms
        of sums (a ``zero`` and everything computed only from zeros, e.g. NAS-Bench-201's ``none``
        edges and the ops fed by them) and the nodes read only by them. Two networks that
        compute the same function of their input up to constant offsets then have one graph,
        whose MACs and params are those of the ops that matter (see
        :func:`napbench.conversion._passes.drop_constant_branches`)."""
        from napbench.conversion._passes import drop_constant_branches

        return drop_constant_branches(self)

    @property
    def is_bn_folded(self) -> bool:
        """True for a BN-folded graph: one made by :meth:`bn_folded`, or an export whose
        frontend found its BatchNorms folded into the convs (``meta["bn_folded"]``).

        A network without any BatchNorm is not "folded": this is False for it.
        """
        return bool(self.meta.get("bn_folded", False))

    @property
    def has_foldable_bn(self) -> bool:
        """True when some BN directly follows a conv/linear that nothing else reads."""
        consumers = [0] * len(self.nodes)
        for n in self.nodes:
            for s in n.inputs:
                consumers[s] += 1
        return any(
            n.op == "bn" and self.nodes[n.inputs[0]].op in ("conv", "linear", "conv_transpose") and consumers[n.inputs[0]] == 1
            for n in self.nodes
        )

    # -- export -------------------------------------------------------------------------
    def to_networkx(self) -> nx.DiGraph:
        """A networkx DiGraph with node attributes (op, shapes, flops, params) and edge ports."""
        import networkx as nx

        g = nx.DiGraph(**{k: v for k, v in self.meta.items()})
        for i, n in enumerate(self.nodes):
            g.add_node(
                i, **{f: getattr(n, f) for f in NODE_FIELDS if f != "inputs"}, flops=node_flops(n), params=node_params(n),
            )
        for d, n in enumerate(self.nodes):
            for port, s in enumerate(n.inputs):
                g.add_edge(s, d, port=port)
        return g

    def to_arrow(self) -> pa.Table:
        """One-row Arrow table in the napbench Parquet schema."""
        from napbench.conversion.storage import graphs_to_arrow

        return graphs_to_arrow([self])

    @staticmethod
    def from_arrow(table: pa.Table) -> list[CompGraph]:
        """Graphs from an Arrow table in the napbench schema."""
        from napbench.conversion.storage import graphs_from_arrow

        return graphs_from_arrow(table)

    def summary(self) -> str:
        """A readable multi-line summary: ops histogram, FLOPs, params, shapes."""
        from napbench.conversion._show import graph_summary

        return graph_summary(self)

    def draw(self, path: str, *, fmt: str | None = None) -> str:
        """Render the graph to PNG/SVG with op labels and shapes; returns the written path."""
        from napbench.conversion._draw import draw_graph

        return draw_graph(self, path, fmt=fmt)

    def replace_nodes(self, nodes: Sequence[Node], outputs: Sequence[int]) -> CompGraph:
        """A new graph with other nodes and the same metadata (validated)."""
        return CompGraph(tuple(nodes), tuple(outputs), self.meta)


def node_replace(node: Node, **changes: Any) -> Node:
    """``dataclasses.replace`` for nodes (kept here so callers need not import dataclasses)."""
    return replace(node, **changes)
