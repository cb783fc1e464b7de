"""Weisfeiler-Lehman subtree features of computation graphs and a kernel ridge on them.

A few labelled architectures of a new family say more about *that* family than any transfer
from other families, but 50 samples are too few to train a graph network. The WL subtree kernel
(Shervashidze et al., JMLR 2011; used as a NAS surrogate by Ru et al., ICLR 2021) needs no
training: every node starts with a label (its op, kernel size, stride and whether it is a
depthwise convolution), and each of ``iterations`` rounds relabels a node with a hash of its own
label and the multisets of its predecessors' and successors' labels. A graph's features are the
counts of every label of every round; two graphs are similar when they share sub-structures.

Everything is vectorised over all nodes of all graphs (no per-graph Python), and the labels are
64-bit hashes that do not depend on which graphs are featurised together or on the op
vocabulary's order, so a fitted model scores new graphs with the labels it was fitted on.
GraKeL implements the same kernel, but on per-graph Python objects (minutes for 15,625 NB-201
graphs against about a second here) and without a stable label for a graph seen later.

:class:`WLRidge` is kernel ridge regression with the cosine kernel of ``log1p`` label counts;
``alpha`` is chosen from a grid by the leave-one-out Spearman correlation, which has a closed
form for kernel ridge, so 50 samples need no held-out split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse

from napbench.conversion.vocab import OPS
from napbench.errors import InvalidArgumentError
from napbench.zoo._graphs import GraphsLike
from napbench.zoo.features import PackedGraphs, pack

__all__ = ["WLRidge", "mix64", "wl_labels"]

_U = np.uint64
_SALT_IN, _SALT_OUT = _U(0x243F6A8885A308D3), _U(0x13198A2E03707344)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic): a 64-bit hash step."""
    with np.errstate(over="ignore"):
        x = x + _U(0x9E3779B97F4A7C15)  # a new array; the steps below work in place (two arrays, not seven)
        t = np.empty_like(x)
        for shift, mul in ((30, _U(0xBF58476D1CE4E5B9)), (27, _U(0x94D049BB133111EB)), (31, None)):
            np.right_shift(x, _U(shift), out=t)
            x ^= t
            if mul is not None:
                x *= mul
        return x


def _op_hashes() -> np.ndarray:
    """A stable 64-bit hash of every op name, indexed like the vocabulary."""
    return np.array([int.from_bytes(hashlib.blake2b(o.encode(), digest_size=8).digest(), "little") for o in OPS], dtype=_U)


def wl_labels(graphs: GraphsLike | PackedGraphs, iterations: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(graph, label)``: every node's WL label of rounds ``0..iterations``, with the index of its graph.

    Both arrays are flat, of length ``nodes x (iterations + 1)``; labels are uint64 hashes.
    """
    if not isinstance(iterations, int) or iterations < 0:
        raise InvalidArgumentError(f"iterations is {iterations!r}; expected an int >= 0")
    p = pack(graphs)
    n_graphs = len(p)
    gid = np.repeat(np.arange(n_graphs), np.diff(p.node_ptr))
    src, dst = p.global_edges
    kernel, stride, groups, c_in = (p.numeric[:, j] for j in (4, 5, 6, 0))
    depthwise = (groups > 1) & (groups == c_in)
    lab = _op_hashes()[p.op]
    for extra in (kernel, stride, depthwise):
        lab = mix64(lab ^ extra.astype(_U))
    out = [lab]
    for _ in range(iterations):
        agg_in = np.zeros_like(lab)
        agg_out = np.zeros_like(lab)
        with np.errstate(over="ignore"):
            np.add.at(agg_in, dst, mix64(lab[src] ^ _SALT_IN))
            np.add.at(agg_out, src, mix64(lab[dst] ^ _SALT_OUT))
        lab = mix64(lab ^ mix64(agg_in) ^ mix64(agg_out ^ _SALT_OUT))
        out.append(lab)
    return np.tile(gid, iterations + 1), np.concatenate(out)


def _matrix(graph: np.ndarray, label: np.ndarray, vocab: np.ndarray, n_graphs: int) -> sparse.csr_matrix:
    """Row-normalised ``log1p`` counts of the labels in ``vocab`` (others dropped)."""
    pos = np.searchsorted(vocab, label)
    pos = np.minimum(pos, len(vocab) - 1)
    hit = vocab[pos] == label
    x = sparse.coo_matrix((np.ones(int(hit.sum())), (graph[hit], pos[hit])), shape=(n_graphs, len(vocab))).tocsr()
    x.sum_duplicates()
    x.data = np.log1p(x.data)
    norm = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    norm[norm == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / norm) @ x)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) <= 0 or np.ptp(b) <= 0:
        return 0.0
    r = spearmanr(a, b).statistic
    return float(r) if np.isfinite(r) else 0.0


class WLRidge:
    """Kernel ridge regression on WL subtree features (see the module docstring).

    ``fit(graphs, y, prior=None)`` fits ``y - prior`` (the prior being, e.g., a transferred
    predictor's scores of the same graphs); ``predict(graphs, prior)`` adds the prior back. With a
    prior, the grid also holds "no correction" (``alpha = inf``), chosen when the correction does
    not raise the leave-one-out Spearman correlation.
    """

    def __init__(self, iterations: int = 2, alphas: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0)) -> None:
        if not alphas or any(not (a > 0) for a in alphas):
            raise InvalidArgumentError(f"alphas are {list(alphas)!r}; expected positive numbers")
        self.iterations = int(iterations)
        self.alphas = tuple(float(a) for a in alphas)
        self.vocab = np.zeros(0, dtype=_U)
        self.x_train: sparse.csr_matrix | None = None
        self.dual = np.zeros(0)
        self.alpha = float("inf")
        self.offset = 0.0
        self.loo_srcc: dict[str, float] = {}
        #: leave-one-out predictions of the training labels at the chosen ``alpha`` (the prior where none)
        self.loo = np.zeros(0)

    @property
    def is_fitted(self) -> bool:
        return self.x_train is not None

    def fit(self, graphs: GraphsLike | PackedGraphs, y: np.ndarray, prior: np.ndarray | None = None) -> WLRidge:
        """Fit on ``graphs`` / ``y`` (a residual on ``prior`` when given); returns self."""
        y = np.asarray(y, dtype=np.float64)
        base = np.zeros_like(y) if prior is None else np.asarray(prior, dtype=np.float64)
        if y.ndim != 1 or base.shape != y.shape or len(y) < 3:
            raise InvalidArgumentError(f"labels of shape {y.shape} and prior {base.shape}; expected two equal 1-d arrays of >= 3")
        graph, label = wl_labels(graphs, self.iterations)
        self.vocab = np.unique(label)
        x = _matrix(graph, label, self.vocab, len(y))
        k = (x @ x.T).toarray()
        r = y - base
        r0 = r - r.mean()
        self.loo_srcc = {}
        best, best_alpha, best_dual = _spearman(base, y) if prior is not None else -np.inf, float("inf"), np.zeros(len(y))
        best_loo = base.copy()
        if prior is not None:
            self.loo_srcc["none"] = round(best, 4)
        for a in self.alphas:
            inv = np.linalg.inv(k + a * np.eye(len(y)))
            dual = inv @ r0
            # leave-one-out residuals of kernel ridge: dual_i / inv_ii
            loo = base + r.mean() + (r0 - dual / np.diag(inv))
            s = _spearman(loo, y)
            self.loo_srcc[f"{a:g}"] = round(s, 4)
            if s > best + 1e-9:
                best, best_alpha, best_dual, best_loo = s, a, dual, loo
        self.alpha, self.dual, self.offset = best_alpha, best_dual, float(r.mean()) if np.isfinite(best_alpha) else 0.0
        self.loo = best_loo
        self.x_train = x
        return self

    def predict(self, graphs: GraphsLike | PackedGraphs, prior: np.ndarray | None = None) -> np.ndarray:
        """The fitted correction (plus ``prior``) for each graph."""
        if self.x_train is None:
            raise InvalidArgumentError("WLRidge is not fitted; expected fit() first")
        p = pack(graphs)
        base = np.zeros(len(p)) if prior is None else np.asarray(prior, dtype=np.float64)
        if not np.isfinite(self.alpha):
            return base
        graph, label = wl_labels(p, self.iterations)
        x = _matrix(graph, label, self.vocab, len(p))
        return base + self.offset + (x @ self.x_train.T).toarray() @ self.dual

    # -- persistence (JSON-able state) -------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The fitted state as plain lists (for a checkpoint's config)."""
        if self.x_train is None:
            return {}
        x = self.x_train.tocoo()
        return {"iterations": self.iterations, "alphas": list(self.alphas), "alpha": self.alpha, "offset": self.offset,
                "dual": self.dual.tolist(), "vocab": [str(int(v)) for v in self.vocab], "shape": list(x.shape),
                "rows": x.row.tolist(), "cols": x.col.tolist(), "vals": x.data.tolist(), "loo_srcc": self.loo_srcc}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WLRidge:
        """Rebuild a fitted model from :meth:`state`."""
        m = cls(int(state["iterations"]), state["alphas"])
        m.alpha, m.offset, m.dual = float(state["alpha"]), float(state["offset"]), np.asarray(state["dual"], dtype=np.float64)
        m.vocab = np.array([int(v) for v in state["vocab"]], dtype=_U)
        m.x_train = sparse.csr_matrix((state["vals"], (state["rows"], state["cols"])), shape=tuple(state["shape"]))
        m.loo_srcc = dict(state.get("loo_srcc") or {})
        return m
