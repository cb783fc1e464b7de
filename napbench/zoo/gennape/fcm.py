"""Fuzzy C-Means clustering of embeddings (GENNAPE's FCM stage).

Fitting uses **scikit-fuzzy** (``skfuzzy.cluster.cmeans``, v0.5.0): a maintained,
vectorised NumPy implementation of Bezdek's algorithm that stops when the membership
matrix changes by less than ``tol`` (Frobenius norm) or after ``max_iter`` iterations,
with a seeded initialisation. We chose it over scikit-learn, which has no fuzzy
clustering, and over writing our own iteration. Memberships of *new* points with the
centroids held fixed are the closed-form FCM update, computed here in NumPy
(:func:`memberships`), so prediction needs no iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napbench.errors import InvalidArgumentError

__all__ = ["FCMResult", "fit_fcm", "memberships"]


@dataclass(frozen=True)
class FCMResult:
    """Centroids ``(C, d)``, training memberships ``(N, C)``, fuzziness, iterations run, converged?"""

    centroids: np.ndarray
    u: np.ndarray
    m: float
    iterations: int
    converged: bool


def memberships(x: np.ndarray, centroids: np.ndarray, m: float) -> np.ndarray:
    """FCM memberships ``(N, C)`` of points ``x`` for fixed ``centroids`` and fuzziness ``m`` (rows sum to 1).

    ``u_ic = 1 / sum_k (d_ic / d_ik) ** (2 / (m - 1))``; a point on a centroid belongs to it fully.
    """
    if m <= 1.0:
        raise InvalidArgumentError(f"fuzziness m is {m}; expected m > 1")
    x = np.asarray(x, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    d2 = np.maximum(d2, 1e-300)
    # work with log distances: (d_ic/d_ik)^(2/(m-1)) = exp((log d2_ic - log d2_ik) / (m-1))
    ld = np.log(d2) / (m - 1.0)
    inv = np.exp(-(ld - ld.min(axis=1, keepdims=True)))
    u = inv / inv.sum(axis=1, keepdims=True)
    return u


def fit_fcm(x: np.ndarray, n_clusters: int, m: float, *, tol: float = 1e-5, max_iter: int = 300, seed: int = 0) -> FCMResult:
    """Fuzzy C-Means on the rows of ``x`` (scikit-fuzzy's ``cmeans``)."""
    from skfuzzy.cluster import cmeans

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < n_clusters:
        raise InvalidArgumentError(f"FCM needs a 2-D array with at least {n_clusters} rows; found shape {x.shape}")
    if not isinstance(n_clusters, int) or n_clusters < 1:
        raise InvalidArgumentError(f"n_clusters is {n_clusters!r}; expected an int >= 1")
    if m <= 1.0:
        raise InvalidArgumentError(f"fuzziness m is {m}; expected m > 1")
    if n_clusters == 1:
        return FCMResult(x.mean(0, keepdims=True), np.ones((x.shape[0], 1)), float(m), 0, True)
    cntr, _u, _u0, _d, _jm, p, _fpc = cmeans(x.T, n_clusters, m, error=tol, maxiter=max_iter, seed=seed)
    return FCMResult(np.asarray(cntr), memberships(x, cntr, m), float(m), int(p), int(p) < max_iter)
