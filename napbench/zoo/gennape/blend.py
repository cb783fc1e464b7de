"""Target learners for k-shot fine-tuning, and the blend that weighs them against transfer.

Fifty labelled architectures of a new family can teach a model of *that* family, fitted on
them alone, more than any transfer from other families (measured, 50-shot, 5 samples, fit seed
0: a Gaussian process on the contrastive encoder's embeddings ranks TransNAS-Bench-101 macro at
SRCC 0.874 where the transferred members reach 0.416), or much less (NB-201: 0.654 against
0.822). Which one holds is a property of the target, so the fine-tuning sample decides:

* :class:`EmbeddingGP` -- Gaussian process regression on the encoder's embeddings of the sample
  (scikit-learn's ``GaussianProcessRegressor``: an RBF kernel plus white noise, hyperparameters
  by marginal likelihood; the embeddings standardised by the sample's own statistics). Its
  leave-one-out predictions have a closed form (Rasmussen & Williams 2006, eq. 5.12), so the
  sample scores it without a held-out split;
* :class:`napbench.zoo.wl.WLRidge` -- kernel ridge on Weisfeiler-Lehman subtree features,
  leave-one-out in closed form too;
* :func:`simplex_weights` -- the transferred members' out-of-fold mix and the learners'
  leave-one-out predictions, each standardised, are blended with the weights (a grid on the
  simplex, step ``step``) whose blend ranks the sample best (Spearman); ties keep the most
  weight on transfer. With ``bags``, that choice is averaged over bootstrap resamples of the
  sample (the ensemble's default, 50): on 50 samples the best grid row is partly noise.

scikit-learn fits the GP (its marginal-likelihood optimiser and kernels are well kept and
tested); the fitted kernel parameters, the training embeddings and the dual coefficients are
kept as plain lists, so a fine-tuned checkpoint stays a JSON config plus safetensors, and
prediction rebuilds the kernel with ``clone_with_theta``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from napbench.errors import InvalidArgumentError

__all__ = ["EmbeddingGP", "simplex_grid", "simplex_weights"]


def _kernel_template() -> Any:
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    return ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(0.5)


class EmbeddingGP:
    """Gaussian process regression on embeddings (see the module docstring)."""

    def __init__(self) -> None:
        self.loc = np.zeros(0)
        self.scale = np.ones(0)
        self.x_train = np.zeros((0, 0))
        self.dual = np.zeros(0)
        self.theta = np.zeros(0)
        self.y_loc, self.y_scale = 0.0, 1.0
        #: leave-one-out predictions of the training labels
        self.loo = np.zeros(0)

    @property
    def is_fitted(self) -> bool:
        return len(self.dual) > 0

    def fit(self, emb: np.ndarray, y: np.ndarray, *, seed: int = 0) -> EmbeddingGP:
        """Fit on ``emb`` ``(k, d)`` / ``y`` ``(k,)``; sets :attr:`loo`; returns self."""
        from sklearn.gaussian_process import GaussianProcessRegressor

        x = np.asarray(emb, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.ndim != 2 or y.shape != (len(x),) or len(y) < 3:
            raise InvalidArgumentError(f"embeddings of shape {x.shape} and labels {y.shape}; expected (k, d) and (k,) with k >= 3")
        self.loc, sd = x.mean(0), x.std(0)
        self.scale = np.where(sd > 1e-12, sd, 1.0)
        xs = (x - self.loc) / self.scale
        self.y_loc, self.y_scale = float(y.mean()), float(y.std()) if y.std() > 0 else 1.0
        yn = (y - self.y_loc) / self.y_scale
        kernel = _kernel_template()
        kernel.set_params(k1__k2__length_scale=float(np.sqrt(x.shape[1])))
        gp = GaussianProcessRegressor(kernel, normalize_y=False, random_state=seed)
        with warnings.catch_warnings():  # a hyperparameter at its bound is a fitted value, not a fault
            warnings.simplefilter("ignore")
            gp.fit(xs, yn)
        self.theta = np.asarray(gp.kernel_.theta, dtype=np.float64)
        self.x_train, self.dual = xs, np.asarray(gp.alpha_, dtype=np.float64)
        inv = np.linalg.inv(gp.kernel_(xs))
        self.loo = (yn - inv @ yn / np.diag(inv)) * self.y_scale + self.y_loc
        return self

    def predict(self, emb: np.ndarray) -> np.ndarray:
        """The posterior mean for each row of ``emb``."""
        if not self.is_fitted:
            raise InvalidArgumentError("EmbeddingGP is not fitted; expected fit() first")
        x = np.asarray(emb, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.x_train.shape[1]:
            raise InvalidArgumentError(f"embeddings of shape {x.shape}; expected (n, {self.x_train.shape[1]})")
        x = (x - self.loc) / self.scale
        k = _kernel_template().clone_with_theta(self.theta)(x, self.x_train)
        return k @ self.dual * self.y_scale + self.y_loc

    def state(self) -> dict[str, Any]:
        """The fitted state as plain lists (for a checkpoint's config)."""
        return {"loc": self.loc.tolist(), "scale": self.scale.tolist(), "x_train": self.x_train.tolist(),
                "dual": self.dual.tolist(), "theta": self.theta.tolist(), "y_loc": self.y_loc, "y_scale": self.y_scale}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EmbeddingGP:
        """Rebuild a fitted model from :meth:`state`."""
        m = cls()
        m.loc, m.scale = np.asarray(state["loc"], dtype=np.float64), np.asarray(state["scale"], dtype=np.float64)
        m.x_train, m.dual = np.asarray(state["x_train"], dtype=np.float64), np.asarray(state["dual"], dtype=np.float64)
        m.theta = np.asarray(state["theta"], dtype=np.float64)
        m.y_loc, m.y_scale = float(state["y_loc"]), float(state["y_scale"])
        return m


def simplex_grid(parts: int, step: float) -> np.ndarray:
    """``(g, parts)``: every weight vector on the simplex with entries in multiples of ``step``,
    the first entry descending (so that, among equal scores, the first row found puts the most
    weight on the first part)."""
    if parts < 1 or not (0 < step <= 1) or abs(round(1 / step) * step - 1) > 1e-9:
        raise InvalidArgumentError(f"{parts} parts with step {step!r}; expected parts >= 1 and a step that divides 1")
    n = round(1 / step)

    def rows(k: int, total: int) -> list[list[int]]:
        if k == 1:
            return [[total]]
        return [[first, *rest] for first in range(total, -1, -1) for rest in rows(k - 1, total - first)]

    return np.asarray(rows(parts, n), dtype=np.float64) / n


def _grid_srcc(blends: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of every row of ``blends`` with ``y`` at once (Pearson of the ranks)."""
    from scipy.stats import rankdata

    r = rankdata(blends, axis=1)
    ry = rankdata(y)
    r, ry = r - r.mean(1, keepdims=True), ry - ry.mean()
    den = np.sqrt((r**2).sum(1) * (ry**2).sum())
    return np.where(den > 0, (r @ ry) / np.where(den > 0, den, 1.0), -1.0)


def _best_row(s: np.ndarray) -> int:
    """The first row within tolerance of the highest score (ties: most weight on part 0)."""
    return int(np.argmax(s > s.max() - 1e-9))


def simplex_weights(loo: np.ndarray, y: np.ndarray, *, step: float = 0.1, bags: int = 0,
                    seed: int = 0) -> tuple[np.ndarray, float]:
    """``(weights, srcc)``: simplex weights (:func:`simplex_grid`) for the rows of ``loo``
    ``(parts, k)`` (out-of-sample predictions of ``y``, on one scale), and the Spearman
    correlation of their blend with ``y``.

    With ``bags=0``: the grid row whose blend ranks ``y`` best; ties keep the first found (most
    weight on row 0). With ``bags=B``: the mean of that best row over ``B`` bootstrap resamples of
    the k samples (seeded by ``seed``). Fifty samples rank a few grid rows almost equally, and
    the best of them on one sample is partly noise; bagging averages that choice over resamples
    (Breiman 1996), which keeps a part that wins on every resample and splits the weight where
    the sample cannot tell the parts apart."""
    loo = np.asarray(loo, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if loo.ndim != 2 or loo.shape[1] != len(y):
        raise InvalidArgumentError(f"out-of-sample predictions of shape {loo.shape}; expected (parts, {len(y)})")
    if not isinstance(bags, int) or bags < 0:
        raise InvalidArgumentError(f"bags is {bags!r}; expected an int >= 0")
    grid = simplex_grid(len(loo), step)
    blends = grid @ loo
    if bags == 0:
        s = _grid_srcc(blends, y)
        best = _best_row(s)
        return grid[best], float(s[best])
    rng = np.random.default_rng((seed, 31))
    rows = [_best_row(_grid_srcc(blends[:, i], y[i])) for i in rng.integers(0, len(y), size=(bags, len(y)))]
    w = grid[rows].mean(0)
    return w, float(_grid_srcc((w @ loo)[None], y)[0])
