"""``latency``: a hardware-cost predictor on computation graphs.

Latency on a device is, to first order, a sum over the ops a network runs: a fixed cost per
kernel launch plus a cost growing with the op's multiply-adds and with the memory it reads
and writes. The predictor turns each CG into that decomposition -- per vocabulary op: the
number of nodes, their multiply-adds and their output activation elements, plus total
MACs, parameters and nodes -- and fits a ridge regression (closed form, standardised
features) from it to the measured cost (HW-NAS-Bench latency, or ``napbench latency``
measurements for your own hardware). ``log_target`` fits ``log(cost)`` instead (for
costs spanning orders of magnitude). ``fine_tune`` refits on the new samples, starting
from nothing: the model is linear, so a few hundred measured cells are enough.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from napbench.conversion.graph import CompGraph
from napbench.conversion.vocab import OPS
from napbench.errors import InvalidArgumentError, NumericalError
from napbench.zoo._base import GraphsLike, Predictor, _is_dataset, check_graphs_labels, register_predictor

_OPS = list(OPS)
_IDX = {op: i for i, op in enumerate(_OPS)}
N_FEATURES = 3 * len(_OPS) + 3


def cost_features(graphs: GraphsLike) -> np.ndarray:
    """The per-op decomposition of each graph (see the module docstring): shape (n, N_FEATURES)."""
    gs: Any = graphs.graphs if _is_dataset(graphs) else graphs
    out = np.zeros((len(gs), N_FEATURES), dtype=np.float64)
    k = len(_OPS)
    for i, g in enumerate(gs):
        if not isinstance(g, CompGraph):
            raise InvalidArgumentError(f"graph {i} is a {type(g).__name__}; expected a CompGraph")
        row = out[i]
        for n in g.nodes:
            j = _IDX.get(n.op, _IDX["unknown"])
            row[j] += 1.0
            row[k + j] += n.flops
            row[2 * k + j] += math.prod(n.output_shape) if n.output_shape else 1.0
        row[3 * k] = g.flops
        row[3 * k + 1] = g.params
        row[3 * k + 2] = len(g.nodes)
    return out


@register_predictor("latency")
class LatencyPredictor(Predictor):
    """Ridge regression from a CG's per-op counts, MACs and activation sizes to a measured cost."""

    description = "Hardware cost (latency/energy) from per-op counts, MACs and activation sizes of the CG; ridge regression."

    def __init__(self, alpha: float = 1.0, log_target: bool = False) -> None:
        super().__init__()
        if not (isinstance(alpha, (int, float)) and alpha >= 0 and math.isfinite(alpha)):
            raise InvalidArgumentError(f"alpha is {alpha!r}; expected a non-negative float")
        self.alpha = float(alpha)
        self.log_target = bool(log_target)
        self.register_buffer("mean", torch.zeros(N_FEATURES, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(N_FEATURES, dtype=torch.float64))
        self.register_buffer("coef", torch.zeros(N_FEATURES, dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros((), dtype=torch.float64))

    def _fit(self, stage: str, graphs: GraphsLike, y: Any) -> LatencyPredictor:
        t = check_graphs_labels(graphs, y)
        if self.log_target:
            if (t <= 0).any():
                raise InvalidArgumentError("log_target needs positive costs; expected every label > 0")
            t = np.log(t)
        x = cost_features(graphs)
        mu = x.mean(axis=0)
        sd = x.std(axis=0)
        sd[sd == 0] = 1.0
        z = (x - mu) / sd
        tm = t.mean()
        a = z.T @ z + self.alpha * np.eye(z.shape[1])
        w = np.linalg.solve(a, z.T @ (t - tm))
        if not np.isfinite(w).all():
            raise NumericalError("latency fit gave non-finite weights; expected finite costs and features")
        self.mean = torch.tensor(mu)
        self.scale = torch.tensor(sd)
        self.coef = torch.tensor(w)
        self.intercept = torch.tensor(float(tm))
        self._record(stage, graphs, np.asarray(y, dtype=np.float64), method="ridge on per-op counts/MACs/activations",
                     alpha=self.alpha, log_target=self.log_target)
        return self

    def fit(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> LatencyPredictor:
        """Fit the ridge map on measured costs ``y`` (``epochs``/``seed`` accepted, unused: closed form)."""
        return self._fit("fit", graphs, y)

    def fine_tune(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> LatencyPredictor:
        """Refit on the new device's samples (a linear model needs no warm start)."""
        return self._fit("fine_tune", graphs, y)

    def predict(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        if not self.is_fitted:
            raise InvalidArgumentError("latency predictor is not fitted; expected fit(graphs, measured_costs) first")
        z = (cost_features(graphs) - self.mean.numpy()) / self.scale.numpy()
        out = z @ self.coef.numpy() + float(self.intercept)
        return np.exp(out) if self.log_target else out
