"""Evaluation: metrics (SRCC, Kendall tau-b, NDCG@k, precision@top-k%, MAE) and transfer protocols.

``from napbench.evaluation import evaluate_all, zero_shot, k_shot, leave_one_family_out, train``.
Protocols are imported lazily (they pull in torch and the datasets).
"""

from __future__ import annotations

from typing import Any

from napbench.evaluation.metrics import (
    evaluate_all,
    get_metric,
    kendall_tau,
    list_metrics,
    mae,
    ndcg_at_k,
    precision_at_top_k_percent,
    srcc,
)

_PROTOCOLS = ("ProtocolConfig", "TransferReport", "evaluate_transfer", "k_shot", "leave_one_family_out", "zero_shot")


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainResult"):
        from napbench.evaluation import _train

        return getattr(_train, name)
    if name in _PROTOCOLS:
        from napbench.evaluation import protocols

        return getattr(protocols, name)
    raise AttributeError(f"module 'napbench.evaluation' has no attribute {name!r}")


__all__ = [
    "evaluate_all", "get_metric", "kendall_tau", "list_metrics", "mae", "ndcg_at_k", "precision_at_top_k_percent",
    "srcc", "train", "TrainResult", *_PROTOCOLS,
]
