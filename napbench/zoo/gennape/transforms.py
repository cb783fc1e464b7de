"""Label transforms of GENNAPE predictors, and what the predicted number means.

Our source families carry labels on different scales (CIFAR-10 validation accuracy in
percent for NB-101/201/301; Taskonomy ``class_object`` scores for TransNAS-Bench-101), so a
predictor trained on raw labels learns the scale of each family rather than the ranking
inside it. Two transforms, applied in this order:

* **per-family normalisation** (``"family"``): ``z = (y - mean_f) / std_f`` with the mean
  and standard deviation of each family's training labels. The predicted number is then a
  *z-score*: how many standard deviations above the mean of its family the architecture's
  label is expected to be.
* **FLOPs transform** (``"flops"``, GENNAPE's): the regression target is
  ``t = z / (log10(GMACs + 1) + 1)`` (GMACs = multiply-adds / 1e9), and a prediction ``t``
  is inverted as ``z = t * (log10(GMACs + 1) + 1)``. The network learns the label per unit
  of log-compute, and compute is multiplied back in at prediction.

``"none"`` trains on raw labels (GENNAPE's plain ``CL`` row). After k-shot fine-tuning a
predictor maps ``z`` back to the target family's label units with the mean and standard
deviation of the k labelled samples, so fine-tuned predictions are in the target's own
label (e.g. CIFAR-10 accuracy in %).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np

from napbench.errors import InvalidArgumentError

TRANSFORMS: Final[tuple[str, ...]] = ("none", "family", "flops")

#: what a zero-shot prediction means, per transform
MEANING: Final[dict[str, str]] = {
    "none": "the raw label of the source families (their label units: CIFAR-10 accuracy in % for NAS-Bench "
            "families, Taskonomy scores for TransNAS-Bench-101), without per-family normalisation",
    "family": "a z-score: predicted standard deviations above the mean label of the architecture's family",
    "flops": "a z-score: predicted standard deviations above the mean label of the architecture's family "
             "(learned per unit of log10-compute, GENNAPE's FLOPs transform)",
}

__all__ = ["MEANING", "TRANSFORMS", "check_transform", "family_stats", "flops_factor", "from_target", "to_target"]


def check_transform(name: str) -> str:
    """``name`` if it is a known transform; else an InvalidArgumentError listing them."""
    if name not in TRANSFORMS:
        raise InvalidArgumentError(f"label transform {name!r} is unknown; expected one of {list(TRANSFORMS)}")
    return name


def flops_factor(macs: np.ndarray) -> np.ndarray:
    """``log10(GMACs + 1) + 1`` per graph (>= 1, so dividing by it never flips a sign)."""
    m = np.asarray(macs, dtype=np.float64)
    if (m < 0).any() or not np.isfinite(m).all():
        raise InvalidArgumentError("multiply-adds must be finite and >= 0; expected the graphs' MAC counts")
    return np.log10(m / 1e9 + 1.0) + 1.0


def family_stats(y: np.ndarray, families: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``{family: (mean, std)}`` of the labels (std 1.0 where a family's labels are constant)."""
    y = np.asarray(y, dtype=np.float64)
    fam = np.asarray(list(families), dtype=object)
    if fam.size != y.size:
        raise InvalidArgumentError(f"{fam.size} families for {y.size} labels; expected one family per label")
    out = {}
    for f in dict.fromkeys(fam.tolist()):
        v = y[fam == f]
        s = float(v.std())
        out[str(f)] = (float(v.mean()), s if s > 0 else 1.0)
    return out


def _zscores(y: np.ndarray, families: Sequence[str], stats: Mapping[str, tuple[float, float]]) -> np.ndarray:
    missing = sorted(set(families) - set(stats))
    if missing:
        raise InvalidArgumentError(f"no label statistics for families {missing}; expected one of {sorted(stats)}")
    mean = np.array([stats[f][0] for f in families])
    std = np.array([stats[f][1] for f in families])
    return (np.asarray(y, dtype=np.float64) - mean) / std


def to_target(y: np.ndarray, *, transform: str, families: Sequence[str], macs: np.ndarray,
              stats: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """Labels -> regression targets under ``transform`` (see the module docstring)."""
    check_transform(transform)
    y = np.asarray(y, dtype=np.float64)
    if transform == "none":
        return y.copy()
    z = _zscores(y, families, stats)
    return z / flops_factor(macs) if transform == "flops" else z


def from_target(t: np.ndarray, *, transform: str, macs: np.ndarray) -> np.ndarray:
    """Regression outputs -> predictions: raw labels (``none``) or z-scores (``family``, ``flops``)."""
    check_transform(transform)
    t = np.asarray(t, dtype=np.float64)
    return t * flops_factor(macs) if transform == "flops" else t.copy()


def to_labels(z: np.ndarray, families: Sequence[str], stats: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """z-scores -> label units of each graph's family (the inverse of the normalisation)."""
    mean = np.array([stats[f][0] for f in families])
    std = np.array([stats[f][1] for f in families])
    return np.asarray(z, dtype=np.float64) * std + mean
