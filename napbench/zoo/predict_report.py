"""What ``napbench predict`` says about one model: the prediction, its uncertainty, what the
number means, and its percentile among a reference family.

The model's graph is predicted *together with* a seeded sample of a reference family (default:
the checkpoint's first training family), so that population-level predictors (the pairwise
rankers rank by merge sort) see a population, and the percentile compares like with like.
The uncertainty interval is the ensemble's weighted member spread (mean +- 1 std, and the
members' range) for predictors that have one (``predict_with_uncertainty``); other predictors
report no interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napbench.conversion.graph import CompGraph
from napbench.errors import InvalidArgumentError
from napbench.zoo._interface import Predictor

__all__ = ["PredictionReport", "prediction_report"]


@dataclass(frozen=True)
class PredictionReport:
    """One model's prediction and its context."""

    predictor: str
    value: float
    std: float | None
    member_range: tuple[float, float] | None
    meaning: str
    reference: str | None
    reference_size: int
    percentile: float | None
    graph: str
    members: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        """Human-readable lines (what ``napbench predict`` prints)."""
        lines = [f"prediction: {self.value:.4f}" + (f" +- {self.std:.4f} (1 std of the members)" if self.std is not None else
                                                     " (no uncertainty: a single predictor)")]
        if self.member_range is not None:
            lines.append(f"interval:   [{self.value - (self.std or 0.0):.4f}, {self.value + (self.std or 0.0):.4f}]; "
                         f"members range [{self.member_range[0]:.4f}, {self.member_range[1]:.4f}]")
        for name, v in self.members.items():
            lines.append(f"  {name}: {v:.4f}")
        lines.append(f"meaning:    {self.meaning}")
        if self.percentile is not None:
            lines.append(f"percentile: {self.percentile:.1f} among {self.reference_size:,} {self.reference} architectures "
                         f"(predicted by the same checkpoint)")
        lines.append(f"graph:      {self.graph}; predictor {self.predictor}")
        return "\n".join(lines)


def _meaning(predictor: Predictor) -> str:
    m = getattr(predictor, "meaning", None)
    if isinstance(m, str) and m:
        return m
    transform = getattr(predictor, "transform", None)
    if transform is not None:
        from napbench.zoo.gennape.transforms import MEANING

        return MEANING.get(transform, "")
    fit = predictor.training_info.get("fit") or {}
    fams = ", ".join(fit.get("families") or []) or "its training families"
    return f"the default label of {fams} in that family's units (e.g. CIFAR-10 validation accuracy in %)"


def prediction_report(predictor: Predictor, graph: CompGraph, *, reference: str | None = None, reference_size: int = 1000,
                      root: str | None = None, mirror: str | None = None) -> PredictionReport:
    """Predict ``graph`` with ``predictor`` next to ``reference_size`` seeded graphs of ``reference``."""
    from napbench.datasets import get_family, load

    if reference_size < 1:
        raise InvalidArgumentError(f"reference_size is {reference_size}; expected >= 1")
    fit = predictor.training_info.get("fit") or {}
    fams = [f for f in fit.get("families") or [] if f != "unknown"]
    ref = reference or (fams[0] if fams else None)
    summary = f"{len(graph.nodes)} nodes, {graph.flops:,} MACs, {graph.params:,} params"
    if getattr(predictor, "graph_view", "as_converted") == "effective":
        eff = graph.without_constant_branches()
        if eff is not graph:  # the predictor reads the graph without its constant branches
            summary += f" (read as its effective graph: {len(eff.nodes)} nodes, {eff.flops:,} MACs, {eff.params:,} params)"
    if ref is None:
        graphs, n_ref = [graph], 0
    else:
        get_family(ref)
        ds = load(ref, root, mirror=mirror, progress=False)
        rows = np.sort(np.random.default_rng(0).choice(len(ds), size=min(reference_size, len(ds)), replace=False))
        graphs = [graph, *ds.subset(rows.tolist()).graphs]
        n_ref = len(rows)
    if hasattr(predictor, "predict_with_uncertainty"):
        r = predictor.predict_with_uncertainty(graphs)
        pred, std = np.asarray(r["mean"]), np.asarray(r["std"])
        members = {k: float(v[0]) for k, v in r["members"].items()}
        value, s = float(pred[0]), float(std[0])
        rng = (min(members.values()), max(members.values()))
    else:
        pred = np.asarray(predictor.predict(graphs))
        value, s, rng, members = float(pred[0]), None, None, {}
    pct = float((pred[1:] < value).mean() * 100 + (pred[1:] == value).mean() * 50) if n_ref else None
    return PredictionReport(predictor.predictor_name, value, s, rng, _meaning(predictor), ref, n_ref, pct, summary, members)
