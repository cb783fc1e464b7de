"""Run any computation graph as a network: :func:`to_torch` builds an ``nn.Module`` from a CG.

The executor is a table, :data:`OP_BUILDERS`: vocabulary op -> a small builder that takes the
:class:`~napbench.conversion.graph.Node` and returns an ``nn.Module`` computing that node from
its inputs (one op = one entry; :func:`register_op` adds one). :class:`GraphNet` runs the
nodes in topological order. Tensors between nodes are held in the graph's canonical shapes,
``(batch, *node.output_shape)`` (a spatially 1x1 map is a ``(batch, C)`` vector), so every
builder sees exactly the shapes the graph records; the few ops that produce a spatial 1x1 map
flatten it (plumbing the frontends prune).

Each weighted op uses the standard torch layer (``nn.Conv2d``, ``nn.Linear``, a BatchNorm
subclass, ``nn.ReLU``...), so hooks keyed on module types -- the zero-cost proxies' prunable
layers and NASWOT's ReLU calls -- see the same layers as in a hand-written network, and
``napbench.conversion.from_torch(to_torch(g))`` gives back ``g.canonical_hash``.

What a CG does not record is filled with the torch default: the slope of ``leaky_relu``
(0.01), the constant of ``scale`` (1.0, held in a buffer so that the node survives tracing),
the crop of ``slice`` (the leading elements of each axis), nearest-neighbour ``upsample``,
zero ``pad``. ``conv``/``pool`` padding that is asymmetric (TensorFlow 'same') becomes an
explicit pad before a symmetric layer; pooling's ceil mode is inferred from the recorded
output shape. Known limits of vocabulary 1.0 (fixed by vocabulary 2): ``layernorm`` normalises
the trailing axes that its weight covers (PyTorch) or, failing that, the channel axis
(Keras); ``groupnorm`` uses ``node.groups`` groups; ``linear`` on a feature map (not a
vector) acts on the channel axis via ``movedim``, which the torch frontend cannot trace back.

Initialisation (``init=``): ``"default"`` -- each layer's own PyTorch initialisation, drawn in
node order under ``torch.manual_seed(seed)`` in a forked RNG (the caller's RNG is untouched);
``"kaiming"`` -- Kaiming-normal (fan-out, ReLU) conv/linear weights, zero biases, unit norm
scales, as NAS-Bench-Suite-Zero initialises networks for proxies; ``"none"`` -- whatever the
layers' constructors leave (use on the ``meta`` device). :data:`INITS` is the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napbench.conversion.graph import CompGraph, Node
from napbench.errors import InvalidArgumentError, InvalidGraphError

__all__ = ["INITS", "OP_BUILDERS", "GraphNet", "register_op", "supported_ops", "to_torch"]

Builder = Callable[[Node], nn.Module]
#: vocabulary op -> builder of the module that computes one node of that op
OP_BUILDERS: dict[str, Builder] = {}


def register_op(*ops: str) -> Callable[[Builder], Builder]:
    """Register ``builder(node) -> nn.Module`` for ``ops`` (the module's forward takes the node's inputs)."""

    def add(fn: Builder) -> Builder:
        for op in ops:
            if op in OP_BUILDERS:
                raise InvalidArgumentError(f"executor op {op!r} is already registered; expected a new op")
            OP_BUILDERS[op] = fn
        return fn

    return add


def supported_ops() -> list[str]:
    """Ops the executor can run, sorted."""
    return sorted(OP_BUILDERS)


# -- small helpers ------------------------------------------------------------------------
def _nd(node: Node) -> int:
    return len(node.kernel) if node.kernel else max(len(node.input_shapes[0]) - 1, 1)


def _spatial(node: Node, attr: str, default: int) -> tuple[int, ...]:
    v = getattr(node, attr)
    return tuple(v) if v else (default,) * _nd(node)


def _pad_spec(node: Node) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """(symmetric padding for the layer, explicit F.pad spec or None)."""
    nd = _nd(node)
    p = tuple(node.padding) if node.padding else (0,) * (2 * nd)
    begin, end = p[:nd], p[nd:]
    k = _spatial(node, "kernel", 1)
    if begin == end and all(b <= kk // 2 for b, kk in zip(begin, k)):
        return begin, None
    spec: list[int] = []
    for b, e in zip(reversed(begin), reversed(end)):  # F.pad: last dim first
        spec += [b, e]
    return (0,) * nd, tuple(spec)


def _to_map(x: Tensor, nd: int) -> Tensor:
    """A (batch, C) vector as a (batch, C, 1, ..., 1) map with ``nd`` spatial dims."""
    return x.reshape(x.shape[0], x.shape[1], *([1] * nd))


class _Op(nn.Module):
    """Base of the executor's node modules: static shape facts of the node."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.in_shapes = node.input_shapes
        self.out_shape = node.output_shape
        #: the op yields a spatial map but the graph records a (C,) vector: flatten it
        self.flat_out = len(node.output_shape) == 1 and bool(node.input_shapes) and len(node.input_shapes[0]) > 1

    def lift(self, x: Tensor, i: int, nd: int) -> Tensor:
        """Input ``i`` with ``nd`` spatial dims (vectors become 1x1 maps)."""
        return _to_map(x, nd) if len(self.in_shapes[i]) == 1 and nd > 0 else x

    def out(self, y: Tensor) -> Tensor:
        return y.flatten(1) if self.flat_out else y

    def extra_repr(self) -> str:
        return f"{list(self.in_shapes)} -> {self.out_shape}"


# -- weighted layers ------------------------------------------------------------------------
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


class _Conv(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        nd = self.nd = _nd(node)
        if nd not in _CONV:
            raise InvalidGraphError(f"conv {node.name!r} has {nd} spatial dims; the executor runs 1-3")
        pad, self.pre_pad = _pad_spec(node)
        c_out, c_in_g, *k = node.weight_shape
        self.conv = _CONV[nd](
            c_in_g * node.groups, c_out, tuple(k), stride=_spatial(node, "stride", 1), padding=pad,
            dilation=_spatial(node, "dilation", 1), groups=node.groups, bias=node.bias,
        )
        self.flat_out = len(node.output_shape) == 1

    def forward(self, x: Tensor) -> Tensor:
        x = self.lift(x, 0, self.nd)
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        return self.out(self.conv(x))


class _ConvTranspose(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        nd = self.nd = _nd(node)
        if nd not in _CONVT:
            raise InvalidGraphError(f"conv_transpose {node.name!r} has {nd} spatial dims; the executor runs 1-3")
        p = tuple(node.padding) if node.padding else (0,) * (2 * nd)
        if p[:nd] != p[nd:]:
            raise InvalidGraphError(f"conv_transpose {node.name!r} has asymmetric padding {p}; expected (begin..., end...) equal")
        c_in, c_out_g, *k = node.weight_shape
        s, d = _spatial(node, "stride", 1), _spatial(node, "dilation", 1)
        in_sp = node.input_shapes[0][1:] or (1,) * nd
        out_sp = node.output_shape[1:] or (1,) * nd
        extra = tuple(o - ((i - 1) * st - 2 * pp + dd * (kk - 1) + 1) for o, i, st, pp, dd, kk in zip(out_sp, in_sp, s, p[:nd], d, k))
        if any(e < 0 or e >= max(st, dd) for e, st, dd in zip(extra, s, d)):
            raise InvalidGraphError(f"conv_transpose {node.name!r}: output {node.output_shape} is not reachable from input {node.input_shapes[0]}")
        self.conv = _CONVT[nd](c_in, c_out_g * node.groups, tuple(k), stride=s, padding=p[:nd], output_padding=extra,
                               groups=node.groups, bias=node.bias, dilation=d)
        self.flat_out = len(node.output_shape) == 1

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.conv(self.lift(x, 0, self.nd)))


class _Linear(_Op):
    """A dense layer: on a vector; on a map whose features it reads flattened (``weight`` covers
    every element); or over the channel axis of a map (``weight`` covers C)."""

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        c_out, c_in = node.weight_shape
        shp = node.input_shapes[0]
        self.linear = nn.Linear(c_in, c_out, bias=node.bias)
        self.flatten = len(shp) > 1 and c_in == math.prod(shp) and c_in != shp[0]
        self.on_map = len(shp) > 1 and not self.flatten
        if self.on_map and c_in != shp[0]:
            raise InvalidGraphError(f"linear {node.name!r}: weight {node.weight_shape} fits neither {shp} nor its channels")

    def forward(self, x: Tensor) -> Tensor:
        if self.flatten:
            return self.linear(x.flatten(1))
        if self.on_map:  # a dense layer over the channel axis of a feature map
            return self.linear(x.movedim(1, -1)).movedim(-1, 1)
        return self.linear(x)


class _BatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm on any rank, with the scale and the shift each optional (Keras allows both)."""

    def __init__(self, c: int, *, scale: bool, shift: bool) -> None:
        super().__init__(c, affine=True)
        if not scale:
            self.register_parameter("weight", None)
        if not shift:
            self.register_parameter("bias", None)

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise InvalidGraphError(f"batch norm got a {input.dim()}-d tensor; expected (batch, C, ...)")

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


_STOCK_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d, 4: nn.BatchNorm3d}


@register_op("bn")
def _bn(node: Node) -> nn.Module:
    shp = node.input_shapes[0]
    if node.weight_shape and node.bias and len(shp) in _STOCK_BN:  # the stock layer: torch.fx keeps it a leaf
        return _STOCK_BN[len(shp)](shp[0])
    return _BatchNorm(shp[0], scale=bool(node.weight_shape), shift=node.bias)


class _LayerNorm(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        shp = node.input_shapes[0]
        w = tuple(node.weight_shape)
        self.trailing = bool(w) and tuple(shp[-len(w):]) == w
        norm = w if self.trailing else (shp[0],)
        self.norm = nn.LayerNorm(norm, elementwise_affine=bool(w), bias=node.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.trailing or x.dim() == 2:
            return self.norm(x)
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


@register_op("groupnorm")
def _groupnorm(node: Node) -> nn.Module:
    c = node.input_shapes[0][0]
    groups = node.groups if node.groups > 0 and c % node.groups == 0 else 1
    gn = nn.GroupNorm(groups, c, affine=bool(node.weight_shape))
    if node.weight_shape and not node.bias:
        gn.register_parameter("bias", None)
    return gn


register_op("conv")(_Conv)
register_op("conv_transpose")(_ConvTranspose)
register_op("linear")(_Linear)
register_op("layernorm")(_LayerNorm)


# -- activations (shape-preserving, parameter-free) ----------------------------------------
def _module(cls: Callable[[], nn.Module]) -> Builder:
    return lambda node: cls()


for _op, _cls in {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid, "hardswish": nn.Hardswish, "tanh": nn.Tanh,
}.items():
    register_op(_op)(_module(_cls))


@register_op("softmax")
def _softmax(node: Node) -> nn.Module:
    return nn.Softmax(dim=1)


# -- elementwise and structural ops -----------------------------------------------------------
class _Elementwise(_Op):
    """n-ary add / mul, binary sub / div; (C,) vectors broadcast over feature maps."""

    def __init__(self, node: Node, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__(node)
        self.fn = fn
        nd = len(node.output_shape) - 1
        self.nds = [nd if len(s) == 1 and nd > 0 else 0 for s in node.input_shapes]

    def forward(self, *xs: Tensor) -> Tensor:
        xs = tuple(_to_map(x, nd) if nd else x for x, nd in zip(xs, self.nds))
        y = xs[0]
        for x in xs[1:]:
            y = self.fn(y, x)
        return y


def _add(a: Tensor, b: Tensor) -> Tensor:
    return a + b


def _mul(a: Tensor, b: Tensor) -> Tensor:
    return a * b


def _sub(a: Tensor, b: Tensor) -> Tensor:
    return a - b


def _div(a: Tensor, b: Tensor) -> Tensor:
    return a / b


for _op, _fn in {"add": _add, "mul": _mul, "sub": _sub, "div": _div}.items():
    register_op(_op)(lambda node, fn=_fn: _Elementwise(node, fn))


class _Concat(_Op):
    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, dim=1)


class _MatMul(_Op):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.matmul(a, b)


register_op("concat")(_Concat)
register_op("matmul")(_MatMul)

_AVG = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_MAX = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}


class _Pool(_Op):
    def __init__(self, node: Node, table: dict[int, type[nn.Module]]) -> None:
        super().__init__(node)
        nd = self.nd = _nd(node)
        pad, self.pre_pad = _pad_spec(node)
        self.pad_value = -math.inf if table is _MAX else 0.0
        k, s = _spatial(node, "kernel", 1), _spatial(node, "stride", 1)
        in_sp = node.input_shapes[0][1:] or (1,) * nd
        if self.pre_pad is not None:  # sizes after the explicit pad
            spec = self.pre_pad
            in_sp = tuple(n + spec[2 * (nd - 1 - i)] + spec[2 * (nd - 1 - i) + 1] for i, n in enumerate(in_sp))
        out_sp = node.output_shape[1:] or (1,) * nd
        floor = tuple((i + 2 * p - kk) // st + 1 for i, p, kk, st in zip(in_sp, pad, k, s))
        ceil = floor != tuple(out_sp)
        extra = {"count_include_pad": False} if table is _AVG else {}
        self.pool = table[nd](k, stride=s, padding=pad, ceil_mode=ceil, **extra)
        self.flat_out = len(node.output_shape) == 1

    def forward(self, x: Tensor) -> Tensor:
        x = self.lift(x, 0, self.nd)
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad, value=self.pad_value)
        return self.out(self.pool(x))


register_op("avgpool")(lambda node: _Pool(node, _AVG))
register_op("maxpool")(lambda node: _Pool(node, _MAX))


class _GlobalAvg(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.dims = tuple(range(2, len(node.input_shapes[0]) + 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.mean(x, dim=self.dims) if self.dims else x


_ADAPTIVE_MAX = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}


class _GlobalMax(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.nd = len(node.input_shapes[0]) - 1

    def forward(self, x: Tensor) -> Tensor:
        return _ADAPTIVE_MAX[self.nd](x, 1).flatten(1) if self.nd else x


register_op("global_avgpool")(_GlobalAvg)
register_op("global_maxpool")(_GlobalMax)


class _Slice(_Op):
    """The leading elements of every axis (the CG records the shape, not the offsets)."""

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        shp_in, shp_out = node.input_shapes[0], node.output_shape
        ends = tuple(shp_out) + (1,) * (len(shp_in) - len(shp_out))
        if len(ends) != len(shp_in) or any(e > n for e, n in zip(ends, shp_in)):
            raise InvalidGraphError(f"slice {node.name!r}: output {shp_out} does not fit in input {shp_in}")
        self.index = (slice(None), *(slice(0, e) for e in ends))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(x[self.index])


class _Pad(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        nd = len(node.input_shapes[0]) - 1
        p = tuple(node.padding) if node.padding else (0,) * (2 * nd)
        spec: list[int] = []
        for b, e in zip(reversed(p[:nd]), reversed(p[nd:])):
            spec += [b, e]
        self.spec = tuple(spec)

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self.spec)


class _Upsample(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.size = tuple(node.output_shape[1:])
        self.nd = len(node.input_shapes[0]) - 1

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.lift(x, 0, len(self.size)) if not self.nd else x, size=self.size, mode="nearest")


class _Zero(_Op):
    def forward(self, x: Tensor) -> Tensor:
        return x * 0.0


class _Scale(_Op):
    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.register_buffer("value", torch.ones(()), persistent=False)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.value)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.value


for _op, _cls in {"slice": _Slice, "pad": _Pad, "upsample": _Upsample, "zero": _Zero, "scale": _Scale}.items():
    register_op(_op)(_cls)


#: ops whose output shape depends on the layer built (the meta shape check runs only these; the
#: graph's own validation already pins elementwise, concat and shape-preserving ops)
_SHAPE_CHECKED = frozenset(
    {"conv", "conv_transpose", "linear", "matmul", "avgpool", "maxpool", "global_avgpool", "global_maxpool", "slice", "pad",
     "upsample"}
)


# -- the network -----------------------------------------------------------------------------
class GraphNet(nn.Module):
    """A computation graph as a module: node ``i`` is ``self.nodes[str(i)]`` (node 0, the input, has none).

    ``forward(x)`` takes ``(batch, *graph.input_shape)`` and returns the output node's tensor
    ``(batch, *output_shape)`` (a tuple for several outputs). ``post`` (default None) is an
    optional ``post(i, node, tensor) -> tensor`` applied to every node's output, e.g. to
    rescale activations.
    """

    def __init__(self, graph: CompGraph, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        self.graph = graph
        self.nodes = nn.ModuleDict(modules)
        self.post: Callable[[int, Node, Tensor], Tensor] | None = None
        last_use = [0] * len(graph.nodes)
        for i, n in enumerate(graph.nodes):
            for s in n.inputs:
                last_use[s] = i
        for o in graph.outputs:
            last_use[o] = len(graph.nodes)
        #: (node index, inputs, nodes whose value dies after this one)
        self._plan = [
            (i, n.inputs, tuple(s for s in dict.fromkeys(n.inputs) if last_use[s] == i))
            for i, n in enumerate(graph.nodes) if i
        ]
        self._check = False

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        vals: dict[int, Tensor] = {0: x}
        nodes = self.graph.nodes
        for i, ins, dead in self._plan:
            if self._check and nodes[i].op not in _SHAPE_CHECKED:  # meta kernels are slow; nothing to learn there
                y = vals[ins[0]].new_empty((vals[ins[0]].shape[0], *nodes[i].output_shape))
            else:
                y = self.nodes[str(i)](*[vals[s] for s in ins])
            if self._check:
                _check_shape(i, nodes[i], y)
            if self.post is not None:
                y = self.post(i, nodes[i], y)
            vals[i] = y
            for s in dead:
                del vals[s]
        outs = tuple(vals[o] for o in self.graph.outputs)
        return outs[0] if len(outs) == 1 else outs

    @property
    def num_classes(self) -> int:
        """Channels of the (first) output."""
        return int(self.graph.nodes[self.graph.outputs[0]].output_shape[0])


def _check_shape(i: int, node: Node, y: Tensor) -> None:
    got = tuple(int(d) for d in y.shape[1:])
    if got != tuple(node.output_shape):
        raise InvalidGraphError(
            f"node {i} ({node.op}{' ' + repr(node.name) if node.name else ''}) computes shape {got} from inputs "
            f"{list(node.input_shapes)}; the graph records {node.output_shape}"
        )


# -- initialisation --------------------------------------------------------------------------
def _init_default(net: nn.Module) -> None:
    for m in net.modules():
        if m is not net and hasattr(m, "reset_parameters"):
            m.reset_parameters()


def _init_kaiming(net: nn.Module) -> None:
    _init_default(net)  # buffers and norm layers
    for m in net.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _init_none(net: nn.Module) -> None:
    return None


#: init name -> function(net) filling its parameters and buffers in place (under the seeded RNG)
INITS: dict[str, Callable[[nn.Module], None]] = {"default": _init_default, "kaiming": _init_kaiming, "none": _init_none}


def to_torch(
    graph: CompGraph,
    *,
    init: str = "default",
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    check: bool = True,
    memo: dict[tuple[str, tuple[int, ...]], nn.Module] | None = None,
) -> GraphNet:
    """Build a runnable :class:`GraphNet` from any valid computation graph.

    Args:
        graph: the CG (every op must have an entry in :data:`OP_BUILDERS`).
        init: a name in :data:`INITS` (``"default"``, ``"kaiming"``, ``"none"``).
        seed: the initialisation seed (the caller's RNG state is left untouched).
        device, dtype: where and in which float type to build (``"meta"``: nothing allocated).
        check: run the network once on the ``meta`` device and compare every node's output
            shape with the graph's (cheap; nothing is computed).
        memo: a dict shared across calls: nodes with the same structure (label and padding)
            reuse one module from it, so their weights are tied. For feature extractors that
            supply every weight themselves (``torch.func.functional_call``), e.g. the Fourier
            predictor; it makes building a graph's network nearly free.

    Raises:
        InvalidGraphError: an op the executor cannot run (the message lists the supported
            ops), or a node whose recorded shapes no layer reproduces.
    """
    if not isinstance(graph, CompGraph):
        raise InvalidArgumentError(f"to_torch expected a CompGraph, got {type(graph).__name__}")
    if init not in INITS:
        raise InvalidArgumentError(f"init is {init!r}; expected one of {sorted(INITS)}")
    bad = sorted({n.op for n in graph.nodes[1:] if n.op not in OP_BUILDERS})
    if bad:
        where = [f"{i} ({n.op}{': ' + n.detail if n.detail else ''})" for i, n in enumerate(graph.nodes) if n.op in bad][:3]
        raise InvalidGraphError(
            f"the executor cannot run op(s) {bad} (nodes {', '.join(where)}); expected only ops among: {', '.join(supported_ops())}"
        )
    dev = torch.device(device) if device is not None else torch.device("cpu")
    with torch.device("meta"):  # build without allocating or initialising, check, then materialise
        if memo is None:
            modules = {str(i): OP_BUILDERS[n.op](n) for i, n in enumerate(graph.nodes) if i}
        else:
            modules = {}
            for i, n in enumerate(graph.nodes[1:], 1):
                key = (n.label(), n.padding)
                if key not in memo:
                    memo[key] = OP_BUILDERS[n.op](n)
                modules[str(i)] = memo[key]
        net = GraphNet(graph, modules)
    if check:
        check_shapes(net)
    if dev.type != "meta":
        net = net.to_empty(device=dev)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(int(seed))
            INITS[init](net)
    if dtype is not None:
        net = net.to(dtype=dtype)
    return net


def check_shapes(net: GraphNet, *, batch_size: int = 2) -> None:
    """Run ``net`` on the meta device and compare each node's output shape with its graph's.

    ``net`` must live on the meta device (as :func:`to_torch` builds it before materialising).
    """
    x = torch.empty((batch_size, *net.graph.input_shape), device="meta")
    net._check = True
    try:
        with torch.no_grad():
            net(x)
    except InvalidGraphError:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise InvalidGraphError(
            f"graph {net.graph.meta.get('arch') or net.graph.meta.get('name') or ''} cannot run: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    finally:
        net._check = False


def node_modules(net: GraphNet, ops: Sequence[str]) -> list[tuple[int, Node, nn.Module]]:
    """``(index, node, module)`` of every node whose op is in ``ops``."""
    return [(i, n, net.nodes[str(i)]) for i, n in enumerate(net.graph.nodes) if i and n.op in ops]
