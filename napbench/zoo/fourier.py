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
score's).
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

from napbench.conversion.graph import CompGraph
from napbench.errors import InvalidArgumentError, NumericalError
from napbench.zoo._base import GraphsLike, Predictor, check_graphs_labels, register_predictor, torch_threads, utc_now

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
    ) -> None:
        super().__init__()
        if min(base_channels, base_kernel, hidden, epochs, batch_graphs) < 1 or n_inputs < 3:
            raise InvalidArgumentError("fourier: sizes must be positive and n_inputs >= 3")
        self.base_channels, self.base_kernel, self.hidden = int(base_channels), int(base_kernel), int(hidden)
        self.n_inputs, self.input_size = int(n_inputs), int(input_size)
        self.epochs, self.batch_graphs, self.lr = int(epochs), int(batch_graphs), float(lr)
        self.temperature, self.fine_tune_epochs = float(temperature), int(fine_tune_epochs)
        self.seed, self.threads = int(seed), threads
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
        for _ in range(2):
            layers += [nn.Linear(width, self.hidden), SymLog()]
            width = self.hidden
        layers.append(nn.Linear(width, 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
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
        """The feature vector of one graph (differentiable w.r.t. the spectrum)."""
        from napbench.conversion import to_torch

        kernels = {} if kernels is None else kernels
        net = to_torch(g, device="meta", init="none", check=False, memo=self._memo)
        shape = tuple(g.input_shape)
        small = (shape[0], *(min(s, self.input_size) for s in shape[1:])) if len(shape) == 3 else shape
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
        y = y.reshape(y.shape[0], -1)
        yc = y - y.mean(1, keepdim=True)
        yc = yc / (yc.norm(dim=1, keepdim=True) + 1e-6)
        corr = yc @ yc.T
        iu = torch.triu_indices(self.n_inputs, self.n_inputs, 1)
        counts = torch.tensor([math.log1p(len(rec.weighted)), math.log1p(len(rec.all))])
        f = torch.cat([corr[iu[0], iu[1]], _stats(rec.weighted), _stats(rec.all), counts])
        if not bool(torch.isfinite(f).all()):
            raise NumericalError(f"fourier: graph {g.meta.get('arch') or g.meta.get('name') or ''} gave non-finite features")
        return f

    def _feature_matrix(self, graphs: list[CompGraph], bad: list[int] | None = None) -> Tensor:
        """Features of ``graphs``; a graph whose features are undefined (non-finite) gets zeros
        and its position is appended to ``bad`` (raises when ``bad`` is None)."""
        kernels: dict[tuple[int, ...], Tensor] = {}
        rows = []
        for i, g in enumerate(graphs):
            try:
                rows.append(self.features(g, kernels))
            except NumericalError:
                if bad is None:
                    raise
                bad.append(i)
                rows.append(torch.zeros(self.n_features))
        return torch.stack(rows)

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
            perm = rng.permutation(len(graphs))
            for b in range(0, len(perm), self.batch_graphs):
                rows = perm[b : b + self.batch_graphs]
                if len(rows) < 3:
                    continue
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


def _graph_list(graphs: GraphsLike) -> list[CompGraph]:
    if hasattr(graphs, "table") and hasattr(graphs, "graphs"):
        return list(graphs.graphs)  # type: ignore[union-attr]
    return list(graphs)  # type: ignore[arg-type]
