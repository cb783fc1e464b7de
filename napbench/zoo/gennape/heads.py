"""Heads on top of embeddings: C parallel MLPs (one per fuzzy cluster), their training loops,
and a merge-sort ranking with a pairwise model as comparator.

All C cluster heads are trained at once as batched matrix products (``torch.baddbmm`` over
a leading cluster axis), so an FCM ensemble of C heads costs one forward per mini-batch.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from napbench.errors import NumericalError

__all__ = ["ClusterMLP", "merge_sort_rank", "normal_scores", "train_pairwise", "train_regression"]


class ClusterMLP(nn.Module):
    """``clusters`` independent MLPs ``d_in -> hidden x layers -> 1`` evaluated together: ``(N, d_in) -> (N, C)``."""

    def __init__(self, clusters: int, d_in: int, hidden: int, layers: int) -> None:
        super().__init__()
        dims = [d_in] + [hidden] * layers + [1]
        self.clusters = clusters
        self.weights = nn.ParameterList([nn.Parameter(torch.empty(clusters, a, b)) for a, b in itertools.pairwise(dims)])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(clusters, b)) for b in dims[1:]])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weights per cluster (as ``nn.Linear``), zero biases."""
        for w, b in zip(self.weights, self.biases):
            bound = 1.0 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        h = x.unsqueeze(0).expand(self.clusters, *x.shape)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b.unsqueeze(1), h, w)
            if i < last:
                h = torch.relu(h)
        return h.squeeze(-1).T


def _check(loss: float, what: str) -> None:
    if not math.isfinite(loss):
        raise NumericalError(f"{what} training loss became {loss}; expected finite (try a lower lr)")


def train_regression(model: ClusterMLP, x: np.ndarray, t: np.ndarray, u: np.ndarray, *, epochs: int, lr: float,
                     batch_size: int, seed: int, weight_decay: float = 0.0, last_layer_only: bool = False) -> list[float]:
    """Train every cluster head on all points weighted by their membership ``u`` (``(N, C)``):
    head c minimises ``sum_i u_ic (f_c(x_i) - t_i)^2 / sum_i u_ic``. Returns the loss per epoch.
    ``last_layer_only`` trains the output layer alone (fine-tuning on a few samples)."""
    xs = torch.as_tensor(x, dtype=torch.float32)
    ts = torch.as_tensor(t, dtype=torch.float32)
    us = torch.as_tensor(u, dtype=torch.float32)
    opt = torch.optim.Adam(_params(model, last_layer_only), lr=lr, weight_decay=weight_decay)
    gen = np.random.default_rng(seed)
    n = len(xs)
    hist = []
    model.train()
    for _ in range(epochs):
        order = gen.permutation(n)
        total = 0.0
        for lo in range(0, n, batch_size):
            idx = torch.as_tensor(order[lo : lo + batch_size])
            out = model(xs[idx])
            w = us[idx]
            loss = ((out - ts[idx, None]) ** 2 * w).sum(0).div(w.sum(0).clamp_min(1e-8)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        hist.append(total / n)
        _check(hist[-1], "regression head")
    model.eval()
    return hist


def pair_logits(model: ClusterMLP, x: torch.Tensor, u: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Antisymmetric logit that graph ``a`` beats graph ``b``: ``(g(a,b) - g(b,a)) / 2``, where ``g``
    mixes the cluster heads by the pair's mean membership."""
    w = (u[a] + u[b]) / 2
    ab = (model(torch.cat([x[a], x[b]], dim=1)) * w).sum(1)
    ba = (model(torch.cat([x[b], x[a]], dim=1)) * w).sum(1)
    return (ab - ba) / 2


def sample_pairs(groups: list[np.ndarray], y: np.ndarray, n_pairs: int, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` random pairs drawn within groups (families) with different labels, split evenly."""
    sizes = np.array([len(g) for g in groups], dtype=float)
    per = np.maximum(1, np.round(n_pairs * sizes / sizes.sum()).astype(int))
    a_all, b_all = [], []
    for g, k in zip(groups, per):
        if len(g) < 2:
            continue
        a = g[gen.integers(0, len(g), size=k)]
        b = g[gen.integers(0, len(g), size=k)]
        keep = y[a] != y[b]
        a_all.append(a[keep])
        b_all.append(b[keep])
    return np.concatenate(a_all), np.concatenate(b_all)


def _params(model: ClusterMLP, last_layer_only: bool) -> list[nn.Parameter]:
    return [model.weights[-1], model.biases[-1]] if last_layer_only else list(model.parameters())


def train_pairwise(model: ClusterMLP, x: np.ndarray, y: np.ndarray, u: np.ndarray, groups: list[np.ndarray], *,
                   epochs: int, pairs_per_epoch: int, lr: float, batch_size: int, seed: int,
                   last_layer_only: bool = False) -> list[float]:
    """Train the comparator with binary cross-entropy on pairs drawn within ``groups`` (labels are
    comparable only within a family). Returns the loss per epoch."""
    xs = torch.as_tensor(x, dtype=torch.float32)
    us = torch.as_tensor(u, dtype=torch.float32)
    opt = torch.optim.Adam(_params(model, last_layer_only), lr=lr)
    gen = np.random.default_rng(seed)
    hist = []
    model.train()
    for _ in range(epochs):
        a, b = sample_pairs(groups, y, pairs_per_epoch, gen)
        if a.size == 0:
            break
        target = torch.as_tensor((y[a] > y[b]).astype(np.float32))
        total = 0.0
        for lo in range(0, a.size, batch_size):
            sa, sb = torch.as_tensor(a[lo : lo + batch_size]), torch.as_tensor(b[lo : lo + batch_size])
            loss = nn.functional.binary_cross_entropy_with_logits(pair_logits(model, xs, us, sa, sb), target[lo : lo + batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(sa)
        hist.append(total / a.size)
        _check(hist[-1], "pairwise head")
    model.eval()
    return hist


class _FastComparator:
    """The antisymmetric comparator of :func:`pair_logits` for single pairs in NumPy, with the first
    layer precomputed per graph (``W0 = [Wa; Wb]``, so ``h1 = relu(x_a Wa + x_b Wb + b0)``)."""

    def __init__(self, model: ClusterMLP, x: np.ndarray, u: np.ndarray) -> None:
        ws = [w.detach().double().numpy() for w in model.weights]
        bs = [b.detach().double().numpy() for b in model.biases]
        d = x.shape[1]
        self.pa = np.einsum("nd,cdh->nch", x, ws[0][:, :d]) + bs[0][None]  # (N, C, H) incl. bias
        self.pb = np.einsum("nd,cdh->nch", x, ws[0][:, d:])
        self.rest = list(zip(ws[1:], bs[1:]))
        self.u = u

    def g(self, i: int, j: int) -> np.ndarray:
        h = np.maximum(self.pa[i] + self.pb[j], 0.0)  # (C, H)
        last = len(self.rest) - 1
        for k, (w, b) in enumerate(self.rest):
            h = np.einsum("ch,chk->ck", h, w) + b
            if k < last:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def logit(self, i: int, j: int) -> float:
        w = (self.u[i] + self.u[j]) / 2
        return float(((self.g(i, j) - self.g(j, i)) * w).sum() / 2)


@torch.no_grad()
def merge_sort_rank(model: ClusterMLP, x: np.ndarray, u: np.ndarray, *, anchors: int = 32, seed: int = 0,
                    counter: list[int] | None = None) -> np.ndarray:
    """Rank ``x`` (0 = worst) by merge sort with the pairwise model as comparator.

    The population is first pre-ordered by each graph's mean win probability against
    ``anchors`` seeded random members (one batched pass), then sorted by Python's ``sorted``
    (TimSort, a natural merge sort) with the model as the comparator; on a nearly sorted
    input the merge sort needs close to ``n`` comparisons instead of ``n log2 n``.
    ``counter`` (a one-element list) receives the number of comparisons made.
    """
    n = len(x)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    xs = torch.as_tensor(x, dtype=torch.float32)
    us = torch.as_tensor(u, dtype=torch.float32)
    gen = np.random.default_rng(seed)
    k = min(anchors, n)
    anc = gen.choice(n, size=k, replace=False)
    a = torch.as_tensor(np.repeat(np.arange(n), k))
    b = torch.as_tensor(np.tile(anc, n))
    win = torch.sigmoid(pair_logits(model, xs, us, a, b)).reshape(n, k).mean(1).numpy()
    pre = np.argsort(win, kind="stable")
    comp = _FastComparator(model, np.asarray(x, dtype=np.float64), np.asarray(u, dtype=np.float64))
    calls = [0]

    def cmp(i: int, j: int) -> int:
        calls[0] += 1
        s = comp.logit(i, j)
        return 1 if s > 0 else (-1 if s < 0 else 0)

    order = sorted(pre.tolist(), key=functools.cmp_to_key(cmp))
    if counter is not None:
        counter[:] = [calls[0]]
    rank = np.empty(n, dtype=np.int64)
    rank[np.asarray(order)] = np.arange(n)
    return rank


def normal_scores(rank: np.ndarray) -> np.ndarray:
    """Ranks (0 = worst) -> standard normal quantiles ``Phi^-1((r + 0.5) / n)`` (a z-score scale)."""
    from scipy.stats import norm

    n = len(rank)
    return norm.ppf((np.asarray(rank, dtype=np.float64) + 0.5) / n) if n > 1 else np.zeros(n)


Comparator = Callable[[int, int], int]
