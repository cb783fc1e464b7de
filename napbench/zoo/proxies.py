"""Zero-cost proxies computed on an instantiated torch network at initialisation.

Inputs
------
No image data is downloaded. Every proxy sees the same batch from :func:`make_inputs`, from
one of the input sources of :data:`INPUT_SOURCES`:

* ``"gaussian"``: ``x ~ N(0, 1)`` of shape ``(batch_size, *input_shape)`` and targets ``y``
  uniform over ``range(num_classes)``, both drawn, in that order, from a CPU
  ``torch.Generator`` seeded with ``seed``;
* ``"images"``: ``x`` a seeded batch of normalised natural-image patches cut from the
  photographs that ship with scikit-image (:func:`napbench.zoo._images.natural_images`), and
  ``y`` drawn from the seeded generator as above (no real labels exist for them).

The batch is then moved to the model's device and dtype. ``synflow`` (an all-ones input) and
``nasi`` (proved label- and data-agnostic by Shu et al., 2022) are data-agnostic by design.

Any computation graph gets proxies too: :func:`graph_network` builds its network with the
CG executor (:func:`napbench.conversion.to_torch`), so a user's ONNX or Keras model, or a
family without a torch builder, is scored like a hand-written torch network.

Contract
--------
* The caller's model is never modified: each proxy runs on a ``copy.deepcopy`` (parameters,
  buffers such as BatchNorm running statistics and the train/eval flag all stay as they were)
  inside ``torch.random.fork_rng`` seeded with ``seed`` (so dropout is reproducible and the
  caller's global RNG state is untouched).
* The model must return one logits tensor of shape ``(batch_size, num_classes)``.
* A proxy returns a finite ``float`` or raises :class:`~napbench.errors.NumericalError`
  (never NaN/inf).
* Same inputs, same seed -> same value.

Definitions
-----------
``L`` is the mean cross-entropy of the batch. "Prunable weights" are the ``weight`` tensors of
every ``nn.Linear`` and ``nn.Conv{1,2,3}d`` / ``nn.ConvTranspose*`` module (biases, norm
layers and other parameters are not scored), as in Abdelfattah et al. (2021) and
NAS-Bench-Suite-Zero. Per-parameter scores are summed over all prunable weights. Every proxy
except ``synflow`` runs the copy in train mode (BatchNorm uses batch statistics), as the
reference implementations do.

========== =================================================================================
grad_norm  sum over layers of ``||dL/dW||_F`` (Abdelfattah et al. 2021)
snip       ``sum |W * dL/dW|`` (Lee et al. 2019)
grasp      ``sum -W * (H g)`` with ``g = dL/dW`` held constant and ``H g = d(g . dL/dW)/dW``
           (Wang et al. 2020, sign as in Abdelfattah et al. 2021)
fisher     ``sum_layers sum_c P_c * 1/2 * mean_n (sum_spatial a * dL/da)_{n,c}^2`` with ``a`` the
           layer's output and ``P_c`` its weights per output channel: the channel score is
           broadcast to every weight of the channel and summed, as in Abdelfattah et al. (2021)
jacob_cov  ``-sum_i [log(l_i + 1e-5) + 1/(l_i + 1e-5)]`` over the eigenvalues ``l_i`` of the
           correlation matrix of the per-sample input Jacobians of ``sum(outputs)``
           (Mellor et al. 2020, v1); symmetric eigensolver, round-off negatives clipped to 0
naswot     ``log det K``, ``K = sum over ReLU-family module calls of c c^T + (1-c)(1-c)^T`` with
           ``c`` the binary codes ``input > 0`` (Mellor et al. 2021); forward only, every call
           of an ``nn.ReLU``/``ReLU6``/``LeakyReLU``/``PReLU``/``RReLU`` module counts (as in
           NAS-Bench-Suite-Zero; functional ``F.relu`` calls are not seen). A singular ``K``
           (two samples with the same codes) raises ``NumericalError``
nasi       ``||dL/dtheta||_2^2`` over *all* trainable parameters: the mini-batch estimate of the
           NTK trace norm (Shu et al. 2022, up to a constant factor)
synflow    ``ln sum |W| * |dR/dW|`` with ``R = sum f(1)`` for the network with every floating
           parameter and buffer replaced by its absolute value, in eval mode and float64 on
           one all-ones input (Tanaka et al. 2020). Returned as a *natural log* (same ranking
           as the plain sum), summed relative to the largest term. When the float64 pass
           overflows (R > 1.8e308, e.g. a few hundred layers), the pass is redone with
           torch.fx on a log-scaled representation (each activation held as ``m * exp(s)``
           with ``max|m| = 1``), which has exact rules for linear/conv layers, eval BatchNorm,
           ReLU-family, pooling, reshapes, sums, concatenation and scaling and so cannot
           overflow; a model it cannot trace, or an op without a rule, then raises
           ``NumericalError`` instead of returning inf.
========== =================================================================================
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata
from torch import Tensor, nn

from napbench._scoped import seeded_torch
from napbench.errors import InvalidArgumentError, NumericalError, UnknownNameError

__all__ = [
    "AUTO_INPUTS",
    "INPUT_SOURCES",
    "compute_proxies",
    "compute_proxy",
    "graph_network",
    "input_source",
    "list_proxies",
    "make_inputs",
    "rank_vote",
    "register_proxy",
]

#: eigenvalue offset of jacob_cov (Mellor et al. 2020)
JACOB_COV_K = 1e-5

_PRUNABLE = (nn.Linear, nn.modules.conv._ConvNd)
_RELU_FAMILY = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU)

ProxyFn = Callable[[nn.Module, Tensor, Tensor], float]


@dataclass(frozen=True)
class _Proxy:
    name: str
    fn: ProxyFn
    #: run the copy in train mode (BatchNorm batch statistics); False leaves the mode to ``fn``
    train: bool


_PROXIES: dict[str, _Proxy] = {}


def register_proxy(name: str, *, train: bool = True) -> Callable[[ProxyFn], ProxyFn]:
    """Register ``fn(model_copy, x, y) -> float`` under ``name``.

    ``fn`` gets a private deep copy of the model (all parameters require grad; train mode when
    ``train``), the batch ``x`` and targets ``y``; it may modify the copy freely.
    """

    def _add(fn: ProxyFn) -> ProxyFn:
        if name in _PROXIES:
            raise InvalidArgumentError(f"proxy {name!r} is already registered; expected a new name")
        _PROXIES[name] = _Proxy(name, fn, train)
        return fn

    return _add


def list_proxies() -> list[str]:
    """Names of all registered proxies, sorted."""
    return sorted(_PROXIES)


def _get(name: str) -> _Proxy:
    try:
        return _PROXIES[name]
    except (KeyError, TypeError):
        raise UnknownNameError("proxy", str(name), list(_PROXIES)) from None


# -- inputs -------------------------------------------------------------------------------
def _check_args(input_shape: Any, num_classes: Any, batch_size: Any, seed: Any) -> tuple[int, int, int]:
    def _is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if shape is None or len(shape) != 3 or not all(_is_int(s) and s > 0 for s in shape):
        raise InvalidArgumentError(f"input_shape is {input_shape!r}; expected a tuple of 3 positive ints (C, H, W)")
    if not _is_int(num_classes) or num_classes < 2:
        raise InvalidArgumentError(f"num_classes is {num_classes!r}; expected an int >= 2")
    if not _is_int(batch_size) or batch_size < 2:
        raise InvalidArgumentError(f"batch_size is {batch_size!r}; expected an int >= 2")
    if not _is_int(seed):
        raise InvalidArgumentError(f"seed is {seed!r}; expected an int")
    return tuple(int(s) for s in shape), int(num_classes), int(batch_size)  # type: ignore[return-value]


def _gaussian(shape: tuple[int, ...], batch_size: int, gen: torch.Generator, seed: int) -> Tensor:
    return torch.randn((batch_size, *shape), generator=gen)


def _images(shape: tuple[int, ...], batch_size: int, gen: torch.Generator, seed: int) -> Tensor:
    from napbench.zoo._images import natural_images

    return natural_images(shape, batch_size, seed=seed)  # type: ignore[arg-type]


#: input source name -> ``fn(input_shape, batch_size, generator, seed) -> x``
INPUT_SOURCES: dict[str, Callable[[tuple[int, ...], int, torch.Generator, int], Tensor]] = {
    "gaussian": _gaussian,
    "images": _images,
}


#: the input source of each proxy under ``inputs="auto"`` (the zero-cost predictors' default):
#: natural images where they measurably rank NB-201 better than Gaussian pixels (README,
#: "Natural images for the data-dependent proxies"); every other proxy keeps Gaussian pixels
AUTO_INPUTS: dict[str, str] = {"jacob_cov": "images", "naswot": "images", "fisher": "images"}
#: the name of the per-proxy choice of input source (:data:`AUTO_INPUTS`)
AUTO = "auto"


def input_source(proxy: str, inputs: str) -> str:
    """The input source ``proxy`` uses when asked for ``inputs`` (``"auto"``: :data:`AUTO_INPUTS`)."""
    if inputs == AUTO:
        return AUTO_INPUTS.get(proxy, "gaussian")
    if inputs not in INPUT_SOURCES:
        raise UnknownNameError("proxy input source", str(inputs), [*INPUT_SOURCES, AUTO])
    return inputs


def make_inputs(
    input_shape: tuple[int, int, int], num_classes: int, *, batch_size: int = 32, seed: int = 0, source: str = "gaussian"
) -> tuple[Tensor, Tensor]:
    """The proxies' batch ``x`` (float32, CPU) from input ``source`` and integer targets ``y``.

    ``torch.Generator().manual_seed(seed)`` draws, in this order, ``x`` (for ``"gaussian"``:
    ``randn((batch_size, *input_shape))``; ``"images"`` draws its patches from its own seeded
    generator) and then ``y = randint(0, num_classes, (batch_size,))``.
    """
    shape, num_classes, batch_size = _check_args(input_shape, num_classes, batch_size, seed)
    if source not in INPUT_SOURCES:
        raise UnknownNameError("proxy input source", str(source), list(INPUT_SOURCES))
    gen = torch.Generator().manual_seed(int(seed))
    x = INPUT_SOURCES[source](shape, batch_size, gen, int(seed))
    y = torch.randint(0, num_classes, (batch_size,), generator=gen)
    return x, y


def graph_network(graph: Any, *, seed: int = 0, init: str = "default") -> tuple[nn.Module, tuple[int, int, int], int]:
    """The network of any computation graph (CG executor), its input shape and its class count.

    The CG must take a ``(C, H, W)`` input and end in one ``(num_classes,)`` output.
    """
    from napbench.conversion import to_torch

    shape = tuple(graph.input_shape)
    outs = [graph.nodes[o].output_shape for o in graph.outputs]
    if len(shape) != 3 or len(outs) != 1 or len(outs[0]) != 1:
        raise InvalidArgumentError(
            f"graph {graph.meta.get('name') or graph.meta.get('arch') or ''} takes {shape} and returns {outs}; "
            "proxies expected one (C, H, W) input and one (num_classes,) output"
        )
    return to_torch(graph, seed=seed, init=init), shape, int(outs[0][0])  # type: ignore[return-value]


# -- driver -------------------------------------------------------------------------------
def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in model.parameters():
        if t.is_floating_point():
            return t.device, t.dtype
    raise InvalidArgumentError(f"model {type(model).__name__} has no floating-point parameters; expected a network with weights")


def _output_checker(num_classes: int) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
    def check(_module: nn.Module, inp: tuple[Any, ...], out: Any) -> None:
        batch = inp[0].shape[0] if inp and isinstance(inp[0], Tensor) else "batch_size"
        if not isinstance(out, Tensor) or tuple(out.shape) != (batch, num_classes):
            found = f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else f"a {type(out).__name__}"
            raise InvalidArgumentError(
                f"model returned {found}; expected one logits tensor of shape (batch, num_classes) = ({batch}, {num_classes})"
            )

    return check


def _run(proxy: _Proxy, model: nn.Module, x: Tensor, y: Tensor, num_classes: int, seed: int) -> float:
    device, _ = _model_device_dtype(model)
    devices = [device] if device.type == "cuda" else []
    with seeded_torch(seed, devices), torch.enable_grad():  # the process lock: threads never interleave draws
        net = copy.deepcopy(model)
        for p in net.parameters():
            p.requires_grad_(True)
        if proxy.train:
            net.train()
        handle = net.register_forward_hook(_output_checker(num_classes))
        try:
            value = float(proxy.fn(net, x.clone(), y.clone()))  # clones: a model may modify its input in place
        finally:
            handle.remove()
            del net
    if not math.isfinite(value):
        raise NumericalError(f"proxy {proxy.name!r} gave {value}; expected a finite value")
    return value


def compute_proxies(
    names: Iterable[str],
    model: nn.Module,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    batch_size: int = 32,
    seed: int = 0,
    inputs: str = "gaussian",
) -> dict[str, float]:
    """Compute several proxies on the same batch (from input source ``inputs``; ``"auto"``: each
    proxy's source in :data:`AUTO_INPUTS`); unknown names fail before any work."""
    if isinstance(names, str):
        raise InvalidArgumentError(f"names is the string {names!r}; expected an iterable of proxy names, e.g. [{names!r}]")
    names = list(names)
    proxies = [_get(n) for n in names]
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model is a {type(model).__name__}; expected a torch.nn.Module")
    sources = {p.name: input_source(p.name, inputs) for p in proxies}
    device, dtype = _model_device_dtype(model)
    batches = {}
    for src in dict.fromkeys(sources.values()):
        x, y = make_inputs(input_shape, num_classes, batch_size=batch_size, seed=seed, source=src)
        batches[src] = (x.to(device=device, dtype=dtype), y.to(device))
    return {p.name: _run(p, model, *batches[sources[p.name]], int(num_classes), int(seed)) for p in proxies}


def compute_proxy(
    name: str,
    model: nn.Module,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    batch_size: int = 32,
    seed: int = 0,
    inputs: str = "gaussian",
) -> float:
    """Compute proxy ``name`` (see :func:`list_proxies`) for ``model`` at its current weights."""
    return compute_proxies([name], model, input_shape, num_classes, batch_size=batch_size, seed=seed, inputs=inputs)[name]


# -- helpers ------------------------------------------------------------------------------
def _loss(net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(net(x), y)


def _prunable(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, _PRUNABLE) and isinstance(getattr(m, "weight", None), Tensor)]


def _weights(net: nn.Module) -> list[Tensor]:
    ws = [m.weight for m in _prunable(net)]
    if not ws:
        raise InvalidArgumentError(f"model {type(net).__name__} has no nn.Linear/nn.Conv layers; expected at least one")
    return ws


def _grads(loss: Tensor, params: list[Tensor], **kw: Any) -> list[Tensor]:
    gs = torch.autograd.grad(loss, params, allow_unused=True, **kw)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs, strict=True)]


def _fsum(parts: Iterator[Tensor]) -> float:
    return float(sum(float(p.double()) for p in parts))


# -- proxies ------------------------------------------------------------------------------
@register_proxy("grad_norm")
def _grad_norm(net: nn.Module, x: Tensor, y: Tensor) -> float:
    ws = _weights(net)
    return _fsum(g.double().norm() for g in _grads(_loss(net, x, y), ws))


@register_proxy("snip")
def _snip(net: nn.Module, x: Tensor, y: Tensor) -> float:
    ws = _weights(net)
    gs = _grads(_loss(net, x, y), ws)
    return _fsum((w.detach().double() * g.double()).abs().sum() for w, g in zip(ws, gs, strict=True))


@register_proxy("grasp")
def _grasp(net: nn.Module, x: Tensor, y: Tensor) -> float:
    ws = _weights(net)
    gs = _grads(_loss(net, x, y), ws, create_graph=True)
    z = sum((g.detach() * g).sum() for g in gs)
    if not isinstance(z, Tensor) or not z.requires_grad:  # no second-order path at all
        return 0.0
    hgs = _grads(z, ws)
    return _fsum((-w.detach().double() * hg.double()).sum() for w, hg in zip(ws, hgs, strict=True))


@register_proxy("fisher")
def _fisher(net: nn.Module, x: Tensor, y: Tensor) -> float:
    layers = _prunable(net)
    if not layers:
        _weights(net)  # raises the clear error
    acts: list[tuple[nn.Module, Tensor]] = []

    def hook(module: nn.Module, _inp: Any, out: Tensor) -> Tensor:
        acts.append((module, out))
        return out.clone()  # later in-place ops (ReLU(inplace=True)) must not touch the stored act

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        loss = _loss(net, x, y)
    finally:
        for h in handles:
            h.remove()
    grads = torch.autograd.grad(loss, [a for _, a in acts], allow_unused=True)
    total = 0.0
    for (module, act), grad in zip(acts, grads, strict=True):
        if grad is None:
            continue
        prod = act.detach().double() * grad.double()
        if isinstance(module, nn.Linear):  # channels last; sum any middle (sequence) dims
            g_nk = prod.reshape(prod.shape[0], -1, prod.shape[-1]).sum(1)
        else:  # conv: channels at dim 1; sum the spatial dims
            g_nk = prod.reshape(prod.shape[0], prod.shape[1], -1).sum(2)
        per_channel = 0.5 * g_nk.pow(2).mean(0)
        weights_per_channel = module.weight.numel() // per_channel.numel()
        total += float(per_channel.sum()) * weights_per_channel
    return total


@register_proxy("jacob_cov")
def _jacob_cov(net: nn.Module, x: Tensor, y: Tensor) -> float:
    xg = x.detach().clone().requires_grad_(True)
    out = net(xg.clone())  # clone: the network may start with an in-place op
    (jac,) = torch.autograd.grad(out.sum(), xg, allow_unused=True)
    if jac is None:
        raise NumericalError("jacob_cov: the output does not depend on the input; expected a non-zero input Jacobian")
    j = jac.reshape(jac.shape[0], -1).double().cpu().numpy()
    std = j.std(axis=1)
    if np.any(std == 0):
        i = int(np.flatnonzero(std == 0)[0])
        raise NumericalError(
            f"jacob_cov: the input Jacobian of sample {i} is constant, so its correlation is undefined; "
            "expected Jacobians that vary over the input"
        )
    eig = np.clip(np.linalg.eigvalsh(np.corrcoef(j)), 0.0, None)  # tiny negative round-off -> 0
    return float(-np.sum(np.log(eig + JACOB_COV_K) + 1.0 / (eig + JACOB_COV_K)))


@register_proxy("naswot")
def _naswot(net: nn.Module, x: Tensor, y: Tensor) -> float:
    n = x.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64, device=x.device)
    calls = 0

    def pre_hook(_module: nn.Module, inp: tuple[Tensor, ...]) -> None:
        nonlocal kernel, calls
        codes = (inp[0].detach().reshape(n, -1) > 0).double()
        kernel = kernel + codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T
        calls += 1

    handles = [m.register_forward_pre_hook(pre_hook) for m in net.modules() if isinstance(m, _RELU_FAMILY)]
    if not handles:
        raise InvalidArgumentError(
            f"model {type(net).__name__} has no ReLU-family modules (nn.ReLU, ReLU6, LeakyReLU, PReLU, RReLU); "
            "naswot needs at least one"
        )
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    if calls == 0:
        raise InvalidArgumentError("naswot: no ReLU-family module was called in the forward pass; expected at least one")
    sign, logdet = np.linalg.slogdet(kernel.cpu().numpy())
    if sign <= 0:
        raise NumericalError(
            f"naswot: the activation-code kernel of the {n} samples is singular (sign {sign:+.0f}); "
            "expected a positive-definite kernel - use a smaller batch_size or a network with more ReLU units"
        )
    return float(logdet)


@register_proxy("nasi")
def _nasi(net: nn.Module, x: Tensor, y: Tensor) -> float:
    params = [p for p in net.parameters() if p.is_floating_point()]
    return _fsum(g.double().pow(2).sum() for g in _grads(_loss(net, x, y), params))


def _log_sum_abs_products(ws: list[Tensor], gs: list[Tensor]) -> float:
    """``ln sum |w * g|`` over all weights, summed relative to the largest term."""
    terms = [(w.detach() * g).abs().reshape(-1) for w, g in zip(ws, gs, strict=True)]
    top = max(float(t.max()) for t in terms)
    if not math.isfinite(top):
        return math.inf
    if top == 0.0:
        raise NumericalError("synflow: every per-weight score is 0 (no Linear/Conv weight reaches the output); expected > 0")
    return math.log(top) + math.log(sum(float((t / top).sum()) for t in terms))


@register_proxy("synflow", train=False)
def _synflow(net: nn.Module, x: Tensor, y: Tensor) -> float:
    net.eval()
    net.double()
    with torch.no_grad():
        for t in [*net.parameters(), *net.buffers()]:
            if t.is_floating_point():
                t.abs_()
    ws = _weights(net)
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    r = net(ones).sum()
    if torch.isfinite(r):
        value = _log_sum_abs_products(ws, _grads(r, ws))
        if math.isfinite(value):
            return value
    # float64 overflowed: redo the pass carrying an explicit log-scale per tensor
    try:
        return _synflow_log_scaled(net, ones)
    except _Unsupported as exc:
        raise NumericalError(
            f"synflow: the float64 pass overflowed (R = {float(r.detach())}) and the log-scaled pass cannot run this model "
            f"({exc}); expected a network whose synaptic flow stays below 1.8e308 or one torch.fx can trace"
        ) from None


# -- synflow in a log-scaled representation -----------------------------------------------
# Every activation is held as (m, s) with true value m * exp(s), max|m| kept at 1 by detached
# rescaling after each op that can grow values. The ops synflow meets (linear layers, eval
# BatchNorm as a per-channel affine map, ReLU/pooling/reshapes, sums, concatenation, scaling)
# have exact rules in this representation, so sum(m_out) = R * exp(-s_out) as a function of
# the weights and every gradient is exp(-s_out) times the true one, all within float range.


class _Unsupported(Exception):
    """The log-scaled synflow pass has no exact rule for an op (internal; triggers an error)."""


@dataclass(frozen=True)
class _Scaled:
    m: Tensor
    s: float


def _renorm(t: Tensor, s: float) -> _Scaled:
    top = float(t.detach().abs().max()) if t.numel() else 0.0
    if top == 0.0 or not math.isfinite(top):
        if not math.isfinite(top):
            raise _Unsupported("non-finite value inside the log-scaled pass")
        return _Scaled(t, s)
    return _Scaled(t / top, s + math.log(top))


def _lift(v: Any) -> _Scaled:
    if isinstance(v, _Scaled):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _Scaled(torch.tensor(float(v), dtype=torch.float64), 0.0)
    if isinstance(v, Tensor):
        return _Scaled(v, 0.0)
    raise _Unsupported(f"cannot combine a {type(v).__name__} with activations")


def _aligned(values: list[Any]) -> tuple[list[Tensor], float]:
    lifted = [_lift(v) for v in values]
    top = max(v.s for v in lifted)
    return [v.m * math.exp(v.s - top) for v in lifted], top


def _has_scaled(v: Any) -> bool:
    if isinstance(v, _Scaled):
        return True
    if isinstance(v, (list, tuple)):
        return any(_has_scaled(u) for u in v)
    if isinstance(v, dict):
        return any(_has_scaled(u) for u in v.values())
    return False


_SCALE_FREE_MODULES = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)
_SCALE_FREE_FUNCTIONS = {
    F.relu,
    torch.relu,
    torch.flatten,
    torch.reshape,
    torch.mean,
    torch.sum,
    F.dropout,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
}
_SCALE_FREE_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "contiguous", "mean", "sum", "squeeze", "unsqueeze",
    "relu", "relu_", "expand", "repeat", "__getitem__", "clone",
}  # fmt: skip
_SPLIT_METHODS = {"chunk", "split", "unbind"}
_ADD = {operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__iadd__"}
_SUB = {operator.sub, torch.sub, "sub", "sub_", "__sub__"}
_MUL = {operator.mul, operator.imul, torch.mul, "mul", "mul_", "__mul__"}
_DIV = {operator.truediv, torch.div, "div", "div_", "__truediv__"}


def _module_rule(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _has_scaled(args) and not _has_scaled(kwargs):
        return mod(*args, **kwargs)
    if len(args) != 1 or kwargs or not isinstance(args[0], _Scaled):
        raise _Unsupported(f"{type(mod).__name__} called with several or keyword inputs")
    v: _Scaled = args[0]
    if isinstance(mod, nn.Linear):
        out = F.linear(v.m, mod.weight)
        if mod.bias is not None:
            out = out + mod.bias * math.exp(-v.s)
        return _renorm(out, v.s)
    if isinstance(mod, nn.modules.conv._ConvNd) and not mod.transposed:
        out = mod._conv_forward(v.m, mod.weight, None)
        if mod.bias is not None:
            out = out + mod.bias.reshape(1, -1, *([1] * (out.ndim - 2))) * math.exp(-v.s)
        return _renorm(out, v.s)
    if isinstance(mod, nn.modules.batchnorm._BatchNorm) and not mod.training and mod.running_mean is not None:
        scale = torch.rsqrt(mod.running_var + mod.eps)
        if mod.weight is not None:
            scale = scale * mod.weight
        shift = -mod.running_mean * scale
        if mod.bias is not None:
            shift = shift + mod.bias
        shape = (1, -1, *([1] * (v.m.ndim - 2)))
        return _renorm(v.m * scale.reshape(shape) + shift.reshape(shape) * math.exp(-v.s), v.s)
    if isinstance(mod, nn.Hardtanh):  # includes ReLU6: scale the clamp bounds
        return _Scaled(F.hardtanh(v.m, mod.min_val * math.exp(-v.s), mod.max_val * math.exp(-v.s)), v.s)
    if isinstance(mod, _SCALE_FREE_MODULES):
        return _Scaled(mod(v.m), v.s)
    raise _Unsupported(f"no exact log-scaled rule for module {type(mod).__name__}")


def _call_rule(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _has_scaled(args) and not _has_scaled(kwargs):
        return getattr(args[0], target)(*args[1:], **kwargs) if isinstance(target, str) else target(*args, **kwargs)
    first = args[0] if args else None
    name = target if isinstance(target, str) else getattr(target, "__name__", repr(target))
    if target in _ADD or target in _SUB:
        if len(args) != 2 or kwargs:
            raise _Unsupported(f"{name} with alpha/out arguments")
        (a, b), s = _aligned(list(args))
        return _renorm(a + b if target in _ADD else a - b, s)
    if target in _MUL:
        a, b = (_lift(u) for u in args)
        return _renorm(a.m * b.m, a.s + b.s)
    if target in _DIV and len(args) == 2 and not _has_scaled(args[1]):
        a = _lift(args[0])
        return _renorm(a.m / args[1], a.s)
    if target is torch.cat and not _has_scaled(args[1:]) and not _has_scaled(kwargs):
        tensors, s = _aligned(list(first))
        return _Scaled(torch.cat(tensors, *args[1:], **kwargs), s)
    if target is operator.getitem and isinstance(first, (list, tuple)):
        return first[args[1]]
    if target is getattr and isinstance(first, _Scaled):
        return getattr(first.m, args[1])
    if isinstance(first, _Scaled) and not _has_scaled(args[1:]) and not _has_scaled(kwargs):
        if target in ("size", "dim", "numel"):
            return getattr(first.m, target)(*args[1:], **kwargs)
        if target is operator.getitem or target in _SCALE_FREE_FUNCTIONS:
            return _Scaled(target(first.m, *args[1:], **kwargs), first.s)
        if target in _SCALE_FREE_METHODS:
            return _Scaled(getattr(first.m, target)(*args[1:], **kwargs), first.s)
        if target in _SPLIT_METHODS:
            return tuple(_Scaled(t, first.s) for t in getattr(first.m, target)(*args[1:], **kwargs))
    raise _Unsupported(f"no exact log-scaled rule for {name}")


def _synflow_log_scaled(net: nn.Module, ones: Tensor) -> float:
    """Synflow of ``net`` (already |params|, eval, float64) in the log-scaled representation."""
    try:
        gm = torch.fx.symbolic_trace(net)
    except (torch.fx.proxy.TraceError, TypeError, NotImplementedError, RuntimeError, AttributeError, ValueError) as exc:
        raise _Unsupported(f"torch.fx could not trace it: {type(exc).__name__}: {exc}") from None
    modules = dict(gm.named_modules())
    env: dict[torch.fx.Node, Any] = {}
    out: Any = None
    for node in gm.graph.nodes:
        args = torch.fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "placeholder":
            if any(isinstance(v, _Scaled) for v in env.values()):
                raise _Unsupported("more than one input")
            env[node] = _Scaled(ones, 0.0)
        elif node.op == "get_attr":
            obj: Any = gm
            for part in node.target.split("."):
                obj = getattr(obj, part)
            env[node] = obj
        elif node.op == "call_module":
            env[node] = _module_rule(modules[node.target], args, kwargs)
        elif node.op in ("call_function", "call_method"):
            env[node] = _call_rule(node.target, args, kwargs)
        elif node.op == "output":
            out = args[0]
    if not isinstance(out, _Scaled):
        raise _Unsupported("the output is not a single activation tensor")
    ws = [m.weight for m in gm.modules() if isinstance(m, _PRUNABLE) and isinstance(getattr(m, "weight", None), Tensor)]
    r = out.m.sum()
    value = _log_sum_abs_products(ws, _grads(r, ws))
    if not math.isfinite(value):
        raise _Unsupported("non-finite gradients")
    return out.s + value


# -- ensembles ----------------------------------------------------------------------------
def rank_vote(scores: dict[str, ArrayLike]) -> NDArray[np.float64]:
    """Rank-vote ensemble for many architectures: the mean over proxies of each architecture's rank.

    ``scores`` maps proxy name -> 1-D array (one score per architecture, same order for every
    proxy; higher = better). Ranks run from 1 (lowest score) to n, ties get their average
    rank, so a higher vote is better and the result lies in ``[1, n]``.
    """
    if not isinstance(scores, dict) or not scores:
        found = "an empty dict" if isinstance(scores, dict) else f"a {type(scores).__name__}"
        raise InvalidArgumentError(f"scores is {found}; expected a non-empty dict of proxy name -> 1-D array")
    ranks = []
    n: int | None = None
    for name, values in scores.items():
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"scores[{name!r}] could not be read as floats; expected a 1-D array of floats") from None
        if arr.ndim != 1 or arr.size == 0:
            raise InvalidArgumentError(f"scores[{name!r}] has shape {arr.shape}; expected a non-empty 1-D array")
        if n is None:
            n = arr.size
        elif arr.size != n:
            raise InvalidArgumentError(f"scores[{name!r}] has {arr.size} architectures but the first proxy has {n}; expected equal lengths")
        if not np.all(np.isfinite(arr)):
            raise InvalidArgumentError(f"scores[{name!r}] has {int((~np.isfinite(arr)).sum())} non-finite value(s); expected finite scores")
        ranks.append(rankdata(arr))
    return np.mean(ranks, axis=0)
