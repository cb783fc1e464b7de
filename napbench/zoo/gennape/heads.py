"""Heads on top of embeddings: C parallel MLPs (one per fuzzy cluster), their training loops,
and a merge-sort ranking with a pairwise model as comparator.

All C cluster heads are trained at once as batched matrix products (``torch.baddbmm`` over
a leading cluster axis), so an FCM ensemble of C heads costs one forward per mini-batch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from napbench.errors import NumericalError
from napbench.zoo.features import concat_ranges

__all__ = ["ClusterMLP", "merge_sort_order", "merge_sort_rank", "normal_scores", "train_pairwise", "train_regression"]


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


class _BatchComparator:
    """The antisymmetric comparator of :func:`pair_logits` for whole arrays of pairs, with the
    first layer precomputed per graph (``W0 = [Wa; Wb]``, so ``h1 = relu(x_a Wa + x_b Wb + b0)``)."""

    def __init__(self, model: ClusterMLP, x: np.ndarray, u: np.ndarray) -> None:
        ws = [w.detach().float() for w in model.weights]
        bs = [b.detach().float() for b in model.biases]
        xs = torch.as_tensor(x, dtype=torch.float32)
        d = xs.shape[1]
        self.pa = (torch.einsum("nd,cdh->cnh", xs, ws[0][:, :d]) + bs[0][:, None]).contiguous()  # (C, N, H) incl. bias
        self.pb = torch.einsum("nd,cdh->cnh", xs, ws[0][:, d:]).contiguous()
        self.rest = list(zip(ws[1:], bs[1:]))
        self.u = torch.as_tensor(u, dtype=torch.float32)

    def _g(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # index_select and in-place ops: the same values as relu(pa[:, a] + pb[:, b]), in fewer copies
        h = self.pa.index_select(1, a).add_(self.pb.index_select(1, b)).relu_()  # (C, B, H)
        last = len(self.rest) - 1
        for k, (w, bias) in enumerate(self.rest):
            h = torch.baddbmm(bias.unsqueeze(1), h, w)
            if k < last:
                h.relu_()
        return h[..., 0]  # (C, B)

    def beats(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``True`` where graph ``a[k]`` is predicted better than graph ``b[k]``."""
        ta, tb = torch.as_tensor(a), torch.as_tensor(b)
        w = ((self.u[ta] + self.u[tb]) / 2).T  # (C, B)
        return (((self._g(ta, tb) - self._g(tb, ta)) * w).sum(0) > 0).numpy()


def merge_sort_order(n: int, beats: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
                     counter: list[int] | None = None) -> np.ndarray:
    """Indices ``0..n-1`` sorted worst-first by a bottom-up merge sort whose comparator is
    ``beats(a, b)`` (element-wise over index arrays: is ``a`` better than ``b``).

    Every merge of one pass runs at once, as a divide-and-conquer merge: the middle element of
    each left run finds, by binary search, how many elements of the right run it beats; that
    places it and splits the merge into two smaller ones (the left run's halves against the two
    parts of the right run), all advanced together, one batched comparator call per binary-search
    step. A merge of two runs of ``w`` costs about ``3 w`` comparisons (a binary search of every
    left element would cost ``w log2 w``). For a transitive comparator the result is exactly the
    sorted order (stable: equal elements keep their order); for any comparator it is a
    permutation. ``counter`` receives the number of pairs compared.
    """
    order = np.arange(n, dtype=np.int64)
    compared = 0
    width = 1
    while width < n:
        start = np.arange(0, n, 2 * width, dtype=np.int64)
        mid = np.minimum(start + width, n)
        end = np.minimum(start + 2 * width, n)
        new = order.copy()  # blocks without a right run stay where they are
        has_r = mid < end
        # merges still open: left run [ll, lh), right run [rl, rh), first output slot ``out``
        ll, lh, rl, rh, out = start[has_r], mid[has_r], mid[has_r], end[has_r], start[has_r]
        while ll.size:
            done = (ll >= lh) | (rl >= rh)  # one side empty: the other is copied in order
            if done.any():
                for lo, hi in ((ll[done], lh[done]), (rl[done], rh[done])):
                    src = concat_ranges(lo, hi - lo)
                    new[np.repeat(out[done] - lo, hi - lo) + src] = order[src]
                keep = ~done
                ll, lh, rl, rh, out = ll[keep], lh[keep], rl[keep], rh[keep], out[keep]
                if not ll.size:
                    break
            m = (ll + lh) // 2
            lo, hi = rl.copy(), rh.copy()
            active = np.arange(ll.size)
            while active.size:
                probe = (lo[active] + hi[active]) // 2
                win = np.asarray(beats(order[m[active]], order[probe]), dtype=bool)
                compared += active.size
                lo[active] = np.where(win, probe + 1, lo[active])
                hi[active] = np.where(win, hi[active], probe)
                active = active[lo[active] < hi[active]]
            slot = out + (m - ll) + (lo - rl)  # after the right-run elements it beats
            new[slot] = order[m]
            ll, lh, rl, rh, out = (np.concatenate(p) for p in ((ll, m + 1), (m, lh), (rl, lo), (lo, rh), (out, slot + 1)))
        order = new
        width *= 2
    if counter is not None:
        counter[:] = [compared]
    return order


@torch.no_grad()
def merge_sort_rank(model: ClusterMLP, x: np.ndarray, u: np.ndarray, *, counter: list[int] | None = None) -> np.ndarray:
    """Rank ``x`` (0 = worst) by merge sort with the pairwise model as comparator
    (:func:`merge_sort_order`; ``counter`` receives the number of pairs compared)."""
    n = len(x)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    order = merge_sort_order(n, _BatchComparator(model, np.asarray(x), np.asarray(u)).beats, counter=counter)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


def normal_scores(rank: np.ndarray) -> np.ndarray:
    """Ranks (0 = worst) -> standard normal quantiles ``Phi^-1((r + 0.5) / n)`` (a z-score scale)."""
    from scipy.stats import norm

    n = len(rank)
    return norm.ppf((np.asarray(rank, dtype=np.float64) + 0.5) / n) if n > 1 else np.zeros(n)


Comparator = Callable[[int, int], int]
