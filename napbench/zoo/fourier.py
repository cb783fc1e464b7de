"""``fourier``: the Fourier-representation zero-shot predictor (after Lin et al., arXiv 2308.16775).

One learnable convolution kernel is kept in the frequency domain: a complex spectrum ``S`` of
shape ``(base_channels, base_channels, base_kernel, base_kernel)``. Any weight shape
``(C_out, C_in, kH, kW)`` is obtained from it by :func:`fit_spectrum` -- centre the spectrum
(``fftshift``), zero-pad or trim every axis to the target length around the zero frequency,
un-centre, inverse DFT, real part, scaled by ``numel(target) / numel(base)`` -- so one set of
parameters represents every convolutional layer whatever its size. Linear layers take the
``(C_out, C_in, 1, 1)`` kernel; 1-D and 3-D convs fold their spatial axes into two. Norm
layers keep unit scale and zero shift.

Each CG is propagated through the CG executor (:func:`napbench.conversion.to_torch`, modules
shared across graphs through its ``memo``, weights supplied by ``torch.func.functional_call``)
on a fixed batch of ``n_inputs`` natural-image patches (:mod:`napbench.zoo._images`), BN
using batch statistics, at ``input_size`` (spatial sides capped at 16 by default; the graph's
own size when the network cannot run smaller). After every node that can change the scale
(weighted layers and merges, :data:`UNITISED`) the output is divided by its standard
deviation (*variance unitisation*), so magnitudes keep their relations inside a layer and can
never overflow however deep the graph; the log standard deviations removed are recorded.

Features (the same length for every family): the correlation matrix between the samples of
the final output (upper triangle), and the mean / std / min / max of the recorded log
standard deviations over weighted nodes, over all nodes, and their count (log). An MLP with
SymLog activations (``sign(x) log(1 + |x|)``) maps features to a score; everything (spectrum
and MLP) is trained end to end with a differentiable Spearman loss: ``1 - pearson(soft_rank(
score), rank(y))``, with :func:`soft_rank` the pairwise-sigmoid soft rank, which equals the
ordinal rank as ``temperature -> 0``. A monotone least-squares map of the score to the label
is refitted at the end of ``fit`` / ``fine_tune`` (so MAE is meaningful; rankings are the
score's). Every training batch holds graphs of one family (:func:`family_batches`): the loss
ranks architectures within a family, never one family's labels against another's scale.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napbench._scoped import seeded_torch
from napbench.conversion.graph import CompGraph
from napbench.errors import InvalidArgumentError, NumericalError
from napbench.zoo._base import GraphsLike, Predictor, check_graphs_labels, register_predictor, torch_threads, utc_now
from napbench.zoo._graphs import graph_family_of_each

__all__ = ["FourierPredictor", "fit_spectrum", "soft_rank", "spearman_loss", "symlog", "unitise"]

_EPS = 1e-12
_STAT_GROUPS = 2  # weighted nodes, all nodes


def symlog(x: Tensor) -> Tensor:
    """``sign(x) * log(1 + |x|)``: identity near 0, logarithmic in the tails."""
    return torch.sign(x) * torch.log1p(x.abs())


class SymLog(nn.Module):
    """:func:`symlog` as a layer."""

    def forward(self, x: Tensor) -> Tensor:
        return symlog(x)


def fit_spectrum(spectrum: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The real kernel of ``shape`` represented by the complex ``spectrum`` (same rank).

    Per axis the centred spectrum is trimmed (keep the middle ``n`` frequencies) or zero-padded
    (symmetrically, extra zero on the high side) to length ``n``; the inverse DFT's real part,
    times ``numel(shape) / numel(spectrum)``, is the kernel.
    """
    if spectrum.dim() != len(shape):
        raise InvalidArgumentError(f"spectrum has rank {spectrum.dim()} but the target shape {shape} has rank {len(shape)}")
    s = torch.fft.fftshift(spectrum)
    for axis, n in enumerate(shape):
        m = s.shape[axis]
        if n < m:
            start = (m - n + 1) // 2 if m % 2 == 0 and n % 2 == 1 else (m - n) // 2
            s = s.narrow(axis, start, n)
        elif n > m:
            before = (n - m) // 2 if n % 2 == 0 or m % 2 == 1 else (n - m + 1) // 2
            pad = [0, 0] * s.dim()
            k = 2 * (s.dim() - 1 - axis)
            pad[k], pad[k + 1] = before, n - m - before
            s = torch.view_as_complex(F.pad(torch.view_as_real(s).movedim(-1, 0), pad).movedim(0, -1).contiguous())
    kernel = torch.fft.ifftn(torch.fft.ifftshift(s)).real
    return kernel * (math.prod(shape) / math.prod(spectrum.shape))


def soft_rank(x: Tensor, temperature: float = 0.1) -> Tensor:
    """Differentiable ranks of a 1-D tensor: ``1 + sum_j sigmoid((x_i - x_j) / t)`` over ``j != i``.

    Ranks run from 1 (smallest) to n; as ``t -> 0`` they become the ordinal ranks (ties share
    the mean rank), as scipy's ``rankdata`` gives.
    """
    d = (x[:, None] - x[None, :]) / temperature
    return 0.5 + torch.sigmoid(d).sum(1)


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    a = a - a.mean()
    b = b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm() + _EPS)


def spearman_loss(pred: Tensor, y: Tensor, temperature: float = 0.1) -> Tensor:
    """``1 - SRCC`` with the predictions' ranks replaced by :func:`soft_rank` (labels ranked exactly)."""
    ry = torch.from_numpy(_rankdata(y.detach().cpu().numpy())).to(pred)
    return 1.0 - _pearson(soft_rank(pred, temperature), ry)


def _rankdata(v: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(v).astype(np.float64)


def unitise(y: Tensor) -> tuple[Tensor, Tensor]:
    """Variance unitisation: ``y / std(y)`` and ``log std(y)`` (a constant tensor is returned as is, log std 0)."""
    sd = y.detach().std() if y.numel() > 1 else torch.zeros(())
    if sd <= _EPS:
        return y, torch.zeros(())
    return y / sd, torch.log(sd)


#: ops after which activations are unitised: those that can change the scale (weighted layers
#: and merges); BN re-normalises by itself, activations and pooling keep a unit scale bounded
UNITISED = frozenset({"conv", "conv_transpose", "linear", "matmul", "add", "mul", "sub", "div", "scale"})
_WEIGHTED = frozenset({"conv", "conv_transpose", "linear", "matmul"})


class _Recorder:
    """GraphNet ``post`` hook: unitise node outputs (see :data:`UNITISED`) and keep the log standard deviations."""

    def __init__(self) -> None:
        self.weighted: list[Tensor] = []
        self.all: list[Tensor] = []

    def __call__(self, i: int, node: Any, y: Tensor) -> Tensor:
        if node.op not in UNITISED:
            return y
        y, ls = unitise(y)
        self.all.append(ls)
        if node.op in _WEIGHTED:
            self.weighted.append(ls)
        return y


def _stats(v: list[Tensor]) -> Tensor:
    if not v:
        return torch.zeros(4)
    t = torch.stack(v)
    return torch.stack([t.mean(), t.std() if t.numel() > 1 else torch.zeros(()), t.min(), t.max()])


def _name(g: CompGraph) -> str:
    return str(g.meta.get("arch") or g.meta.get("name") or "")


def _unitise_stacked(y: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """:func:`unitise` of each of the ``groups`` graphs stacked along the batch axis of ``y``:
    ``y`` with each graph's part divided by its own standard deviation, and the log deviations."""
    if y.numel() <= groups:
        return y, torch.zeros(groups)
    sd = torch.stack([part.std() for part in y.detach().chunk(groups)])  # per part: the fast full reduction
    ok = sd > _EPS
    safe = torch.where(ok, sd, torch.ones_like(sd))
    z = y.reshape(groups, y.shape[0] // groups, *y.shape[1:]) / safe.reshape(groups, *[1] * y.dim())
    return z.reshape(y.shape), torch.where(ok, torch.log(safe), torch.zeros_like(sd))


def _grouped_bn(x: Tensor, module: nn.Module, groups: int, tokens: bool) -> Tensor:
    """Training-mode batch norm (unit scale, zero shift, as the predictor sets every norm) of
    ``groups`` graphs stacked along the batch axis, with each graph's own batch statistics."""
    bn = getattr(module, "bn", module)
    if tokens:  # held (batch, M, F): the channel axis is last
        x = x.transpose(1, 2)
    n, c, rest = x.shape[0] // groups, x.shape[1], x.shape[2:]
    z = x.reshape(groups, n, c, *rest).transpose(0, 1).reshape(n, groups * c, *rest)
    z = F.batch_norm(z, None, None, training=True, eps=float(bn.eps))
    y = z.reshape(n, groups, c, *rest).transpose(0, 1).reshape(groups * n, c, *rest)
    if y.dim() == 4:
        y = y.contiguous(memory_format=torch.channels_last)  # as the batched path holds maps
    return y.transpose(1, 2) if tokens else y


@register_predictor("fourier")
class FourierPredictor(Predictor):
    """The Fourier zero-shot predictor (see the module docstring)."""

    description = (
        "Fourier zero-shot predictor: one shared frequency-domain conv kernel fitted to every layer, the CG propagated "
        "with variance unitisation on natural-image patches, an MLP with SymLog activations, a differentiable Spearman loss."
    )

    def __init__(
        self,
        base_channels: int = 16,
        base_kernel: int = 5,
        hidden: int = 64,
        n_inputs: int = 8,
        input_size: int = 16,
        epochs: int = 15,
        batch_graphs: int = 32,
        lr: float = 3e-3,
        temperature: float = 0.1,
        fine_tune_epochs: int = 20,
        seed: int = 0,
        threads: int | None = 1,
        chunk_graphs: int = 64,
    ) -> None:
        super().__init__()
        if min(base_channels, base_kernel, hidden, epochs, batch_graphs) < 1 or n_inputs < 3:
            raise InvalidArgumentError("fourier: sizes must be positive and n_inputs >= 3")
        self.base_channels, self.base_kernel, self.hidden = int(base_channels), int(base_kernel), int(hidden)
        self.n_inputs, self.input_size = int(n_inputs), int(input_size)
        self.epochs, self.batch_graphs, self.lr = int(epochs), int(batch_graphs), float(lr)
        self.temperature, self.fine_tune_epochs = float(temperature), int(fine_tune_epochs)
        self.seed, self.threads = int(seed), threads
        #: graphs propagated together in one pass (:meth:`_batched_features`)
        self.chunk_graphs = max(1, int(chunk_graphs))
        self.n_features = n_inputs * (n_inputs - 1) // 2 + 4 * _STAT_GROUPS + 2
        self._init_parameters(self.seed)
        self.register_buffer("coef", torch.tensor([1.0, 0.0], dtype=torch.float64))
        self._memo: dict[Any, nn.Module] = {}
        self._inputs: dict[tuple[int, ...], Tensor] = {}

    def _init_parameters(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        c, k = self.base_channels, self.base_kernel
        self.spectrum = nn.Parameter(torch.randn((c, c, k, k, 2), generator=g) / math.sqrt(2.0))
        layers: list[nn.Module] = []
        width = self.n_features
        with seeded_torch(seed, []):  # nn.Linear draws its weights when built: build the layers seeded (CPU RNG only)
            for _ in range(2):
                layers += [nn.Linear(width, self.hidden), SymLog()]
                width = self.hidden
            layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("feat_mean", torch.zeros(self.n_features))
        self.register_buffer("feat_std", torch.ones(self.n_features))

    def _shared_on_clone(self) -> dict[int, Any]:
        return {id(self._memo): self._memo, id(self._inputs): self._inputs}

    # -- features ---------------------------------------------------------------------------
    def kernel(self, shape: tuple[int, ...]) -> Tensor:
        """The weight of ``shape`` (conv ``(O, I, *k)``, linear ``(O, I)``) from the shared spectrum."""
        o, i, *k = shape
        k2 = (1, 1) if not k else (1, k[0]) if len(k) == 1 else (k[0], math.prod(k[1:]))
        return fit_spectrum(torch.view_as_complex(self.spectrum), (o, i, *k2)).reshape(shape)

    def _batch(self, shape: tuple[int, ...]) -> Tensor:
        if shape not in self._inputs:
            from napbench.zoo._images import natural_images

            self._inputs[shape] = natural_images(shape, self.n_inputs, seed=self.seed)  # type: ignore[arg-type]
        return self._inputs[shape]

    def _weights(self, net: nn.Module, kernels: dict[tuple[int, ...], Tensor]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name, p in [*net.named_parameters(remove_duplicate=False), *net.named_buffers(remove_duplicate=False)]:
            shp = tuple(p.shape)
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "weight" and len(shp) >= 2:
                if shp not in kernels:
                    kernels[shp] = self.kernel(shp)
                out[name] = kernels[shp]
            elif leaf in ("running_var", "weight", "value"):
                out[name] = torch.ones(shp)
            elif leaf == "num_batches_tracked":
                out[name] = torch.zeros(shp, dtype=torch.long)
            else:  # biases, running means
                out[name] = torch.zeros(shp)
        return out

    def features(self, g: CompGraph, kernels: dict[tuple[int, ...], Tensor] | None = None) -> Tensor:
        """The feature vector of one graph (differentiable w.r.t. the spectrum), run alone
        through the executor's :class:`~napbench.conversion.executor.GraphNet` (the reference
        for the batched path that scoring and training use)."""
        f = self._features(g, {} if kernels is None else kernels)
        if not bool(torch.isfinite(f).all()):
            raise NumericalError(f"fourier: graph {_name(g)} gave non-finite features")
        return f

    def _features(self, g: CompGraph, kernels: dict[tuple[int, ...], Tensor]) -> Tensor:
        from napbench.conversion import to_torch

        net = to_torch(g, device="meta", init="none", check=False, memo=self._memo)
        shape = tuple(g.input_shape)
        small = self._small(shape)
        rec = _Recorder()
        net.post = rec
        net.train()
        weights = self._weights(net, kernels)
        try:
            y = torch.func.functional_call(net, weights, (self._batch(small),), strict=False, tie_weights=False)
        except RuntimeError:
            if small == shape:
                raise
            rec.weighted.clear()
            rec.all.clear()
            y = torch.func.functional_call(net, weights, (self._batch(shape),), strict=False, tie_weights=False)
        if isinstance(y, tuple):
            y = y[0]
        return self._head(y, rec.weighted, rec.all, torch.triu_indices(self.n_inputs, self.n_inputs, 1))

    def _feature_matrix(self, graphs: list[CompGraph], bad: list[int] | None = None) -> Tensor:
        """Features of ``graphs``, propagated together (:meth:`_batched_features`, chunks of at most
        ``chunk_graphs``); a graph whose features are undefined (non-finite) gets zeros and its
        position is appended to ``bad`` (raises when ``bad`` is None)."""
        kernels: dict[tuple[int, ...], Tensor] = {}
        rows: list[Tensor] = []
        step = max(1, self.chunk_graphs)
        for b in range(0, len(graphs), step):
            chunk = graphs[b : b + step]
            try:
                feats = self._batched_features(chunk, kernels)
            except RuntimeError:  # a graph that cannot run at the small size: one by one (each retries at full size)
                feats = [self._features(g, kernels) for g in chunk]
            for i, (g, f) in enumerate(zip(chunk, feats)):
                if not bool(torch.isfinite(f).all()):
                    if bad is None:
                        raise NumericalError(f"fourier: graph {_name(g)} gave non-finite features")
                    bad.append(b + i)
                    f = torch.zeros(self.n_features)
                rows.append(f)
        return torch.stack(rows) if rows else torch.zeros((0, self.n_features))

    def _small(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], *(min(s, self.input_size) for s in shape[1:])) if len(shape) == 3 else shape

    def _plan(self, g: CompGraph) -> list[tuple[int, Any, tuple[int, ...], int]]:
        """``(node, memo key, inputs, level)`` for every node but the input, ``level`` the longest
        path from the input; the modules are built into the memo (on the meta device)."""
        from napbench.conversion.executor import OP_BUILDERS, to_torch

        if any(n.op not in OP_BUILDERS for n in g.nodes[1:]):
            to_torch(g, device="meta", init="none", check=False)  # raises the executor's one-line error
        level = [0] * len(g.nodes)
        plan = []
        with torch.device("meta"):
            for i, n in enumerate(g.nodes[1:], 1):
                key = (n.label(), n.padding)
                if key not in self._memo:
                    self._memo[key] = OP_BUILDERS[n.op](n)
                level[i] = 1 + max((level[s] for s in n.inputs), default=0)
                plan.append((i, key, tuple(n.inputs), level[i]))
        return plan

    def _batched_features(self, graphs: list[CompGraph], kernels: dict[tuple[int, ...], Tensor]) -> list[Tensor]:
        """The features of several graphs in one pass, equal to :meth:`features` of each.

        A node's module depends only on its structure (the memo key) and its weights only on
        their shapes (the shared spectrum), so the nodes of all graphs with the same memo key
        and the same depth (longest path from the input) are computed by one call on their
        inputs stacked along the batch axis. Only two steps see the whole batch, and both are
        done per graph: batch norm (batch statistics per graph, the graphs folded into the
        channel axis) and variance unitisation (one standard deviation per graph).
        """
        n_in = self.n_inputs
        groups: dict[tuple[int, Any], list[tuple[int, int, tuple[int, ...]]]] = {}
        vals: list[dict[int, Tensor]] = []
        ends: list[dict[int, int]] = []  # per graph: value -> the last level that reads it
        for gi, g in enumerate(graphs):
            shape = tuple(g.input_shape)
            x = self._batch(self._small(shape))
            if x.dim() == 4:  # channels-last: convolutions and pooling of small maps run 2-4x faster
                x = x.contiguous(memory_format=torch.channels_last)
            vals.append({0: x.transpose(1, 2) if len(shape) == 2 else x})
            end: dict[int, int] = {o: 1 << 30 for o in g.outputs}
            for i, key, ins, level in self._plan(g):
                groups.setdefault((level, key), []).append((gi, i, ins))
                for s in ins:
                    end[s] = max(end.get(s, 0), level)
            ends.append(end)
        weighted: list[list[Tensor]] = [[] for _ in graphs]
        every: list[list[Tensor]] = [[] for _ in graphs]
        wcache: dict[Any, dict[str, Tensor]] = {}
        by_level: dict[int, list[tuple[Any, list[tuple[int, int, tuple[int, ...]]]]]] = {}
        for (level, key), members in groups.items():
            by_level.setdefault(level, []).append((key, members))
        for level in sorted(by_level):
            for key, members in by_level[level]:
                node = graphs[members[0][0]].nodes[members[0][1]]
                y = self._group_call(key, node, [[vals[gi][s] for s in ins] for gi, _, ins in members], kernels, wcache)
                if node.op in UNITISED:
                    if y.shape[0] == 1:  # one value for every graph (param nodes)
                        y, ls = unitise(y)
                        logs = [ls] * len(members)
                    else:
                        y, lt = _unitise_stacked(y, len(members))
                        logs = list(lt.unbind())
                    for (gi, _, _), ls in zip(members, logs):
                        every[gi].append(ls)
                        if node.op in _WEIGHTED:
                            weighted[gi].append(ls)
                parts = [y] * len(members) if y.shape[0] == 1 else y.split(n_in)
                for (gi, i, _), part in zip(members, parts):
                    vals[gi][i] = part
            for gi, end in enumerate(ends):  # free the values no later level reads
                for s in [s for s in vals[gi] if end.get(s, 0) <= level]:
                    del vals[gi][s]
        iu = torch.triu_indices(n_in, n_in, 1)
        out = []
        for gi, g in enumerate(graphs):
            o = g.outputs[0]
            y = vals[gi][o]
            out.append(self._head(y.transpose(1, 2) if len(g.nodes[o].output_shape) == 2 else y, weighted[gi], every[gi], iu))
        return out

    def _group_call(self, key: Any, node: Any, inputs: list[list[Tensor]], kernels: dict[tuple[int, ...], Tensor],
                    wcache: dict[Any, dict[str, Tensor]]) -> Tensor:
        """One module call on the stacked inputs of the nodes (one per graph) of memo key ``key``."""
        module = self._memo[key]
        n_in = self.n_inputs
        args = []
        for pos in range(len(node.inputs)):
            col = [ins[pos] for ins in inputs]
            if all(t.shape[0] == 1 for t in col):  # one value shared by every graph (param nodes)
                args.append(col[0])
            else:
                args.append(torch.cat([t.expand(n_in, *t.shape[1:]) if t.shape[0] == 1 else t for t in col]))
        if node.op == "bn":
            return _grouped_bn(args[0], module, len(inputs), len(node.input_shapes[0]) == 2)
        if key not in wcache:
            wcache[key] = self._weights(module, kernels)
        return torch.func.functional_call(module, wcache[key], tuple(args), strict=False, tie_weights=False)

    def _head(self, y: Tensor, weighted: list[Tensor], every: list[Tensor], iu: Tensor) -> Tensor:
        """Features from the output ``y`` and the recorded log standard deviations."""
        y = y.reshape(y.shape[0], -1)
        yc = y - y.mean(1, keepdim=True)
        yc = yc / (yc.norm(dim=1, keepdim=True) + 1e-6)
        corr = yc @ yc.T
        counts = torch.tensor([math.log1p(len(weighted)), math.log1p(len(every))])
        return torch.cat([corr[iu[0], iu[1]], _stats(weighted), _stats(every), counts])

    def _scores(self, feats: Tensor) -> Tensor:
        return self.mlp((feats - self.feat_mean) / self.feat_std).squeeze(-1)

    # -- training -----------------------------------------------------------------------------
    def _train(self, graphs: list[CompGraph], y: np.ndarray, epochs: int, seed: int, progress: bool) -> float:
        from tqdm.auto import tqdm

        with torch.no_grad():  # feature standardisation from the initial features of (a sample of) the data
            rng = np.random.default_rng(seed)
            idx = rng.choice(len(graphs), size=min(len(graphs), 128), replace=False)
            f = self._feature_matrix([graphs[i] for i in idx])
            self.feat_mean = f.mean(0)
            self.feat_std = f.std(0).clamp_min(1e-3)
        opt = torch.optim.Adam(self.parameters(), lr=self.lr)
        yt = torch.tensor(np.asarray(y, dtype=np.float32))
        t0 = time.perf_counter()
        self.train()
        for _ in tqdm(range(epochs), desc="fourier", unit="epoch", disable=not progress):
            for rows in family_batches(graph_family_of_each(graphs), self.batch_graphs, rng):
                loss = spearman_loss(self._scores(self._feature_matrix([graphs[i] for i in rows])), yt[rows], self.temperature)
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.eval()
        return time.perf_counter() - t0

    def _fit_map(self, graphs: list[CompGraph], y: np.ndarray) -> tuple[float, float]:
        from napbench.zoo.baselines import monotone_linear_fit

        a, b = monotone_linear_fit(self._raw(graphs), y)
        self.coef = torch.tensor([a, b], dtype=torch.float64)
        return a, b

    def fit(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> FourierPredictor:
        """Train spectrum and MLP from a fresh seeded start with the soft-Spearman loss."""
        t = check_graphs_labels(graphs, y)
        gl = _graph_list(graphs)
        ep = self.epochs if epochs is None else int(epochs)
        with torch_threads(self.threads):
            self._init_parameters(seed)
            secs = self._train(gl, t, ep, seed, progress)
            a, b = self._fit_map(gl, t)
        self._record("fit", graphs, t, epochs=ep, seed=seed, train_seconds=round(secs, 1), slope=a, intercept=b, date=utc_now())
        return self

    def fine_tune(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> FourierPredictor:
        """Continue training on the few target samples, then refit the label map."""
        t = check_graphs_labels(graphs, y)
        gl = _graph_list(graphs)
        ep = self.fine_tune_epochs if epochs is None else int(epochs)
        with torch_threads(self.threads):
            if len(gl) >= 3 and ep > 0:
                mean, std = self.feat_mean.clone(), self.feat_std.clone()
                self._train(gl, t, ep, seed, progress)
                self.feat_mean, self.feat_std = mean, std  # keep the source standardisation
            self._fit_map(gl, t)
        self._record("fine_tune", graphs, t, epochs=ep, seed=seed)
        return self

    def _raw(self, graphs: list[CompGraph], progress: bool = False) -> np.ndarray:
        from tqdm.auto import tqdm

        out, bad = [], []
        with torch.no_grad():
            for b in tqdm(range(0, len(graphs), 256), desc="fourier", unit="batch", disable=not progress):
                found: list[int] = []
                out.append(self._scores(self._feature_matrix(graphs[b : b + 256], found)).double().numpy())
                bad += [b + i for i in found]
        s = np.concatenate(out) if out else np.zeros(0)
        if bad:
            if len(bad) == len(s):
                raise NumericalError(f"fourier: features are undefined for all {len(s)} graphs; expected finite activations")
            warnings.warn(f"fourier: features undefined (non-finite activations) for {len(bad)} of {len(s)} graphs; "
                          "ranking them below the rest", stacklevel=3)
            ok = np.ones(len(s), dtype=bool)
            ok[bad] = False
            lo = float(s[ok].min())
            s[bad] = lo - 1.0 - abs(lo)
        return s

    def score(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        """The raw score of each graph (higher = predicted better)."""
        with torch_threads(self.threads):
            return self._raw(_graph_list(graphs), progress)

    def predict(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        a, b = (float(v) for v in self.coef)
        return a * self.score(graphs, progress=progress) + b


def family_batches(families: list[str], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of at most ``size`` rows, each from one family (a rank loss compares
    architectures within a family: labels of different families are on different scales), in
    shuffled order; batches of fewer than 3 rows are left out."""
    fams = np.asarray(families, dtype=object)
    batches = []
    for f in dict.fromkeys(families):
        rows = rng.permutation(np.flatnonzero(fams == f))
        batches += [rows[b : b + size] for b in range(0, len(rows), size) if len(rows[b : b + size]) >= 3]
    return [batches[i] for i in rng.permutation(len(batches))]


def _graph_list(graphs: GraphsLike) -> list[CompGraph]:
    if hasattr(graphs, "table") and hasattr(graphs, "graphs"):
        return list(graphs.graphs)  # type: ignore[union-attr]
    return list(graphs)  # type: ignore[arg-type]
