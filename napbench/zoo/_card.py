"""Model cards of napbench checkpoints, built with huggingface_hub's ``ModelCard``.

The card's YAML metadata is a :class:`~huggingface_hub.ModelCardData` (library, tags,
training families, and every measured metric as an :class:`~huggingface_hub.EvalResult`
in the Hub's ``model-index``); the Markdown body says how to load the predictor, what it was
trained on, its configuration and the measured metrics as a table.

``card`` (what callers pass to ``save_pretrained``) is either the full README text or a
mapping with optional keys:

* ``results``: a list of ``{"dataset": family, "setting": text, "metrics": {name: value}}``
  (one Hub ``EvalResult`` per metric, ``dataset_type`` = the family);
* ``metrics``: ``{setting: {metric: value}}`` or ``{metric: value}`` (the setting text is
  then also the dataset name);
* ``notes`` (str) and ``datasets`` (family names; default: the training families).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

if TYPE_CHECKING:  # pragma: no cover
    from napbench.zoo._interface import Predictor

TASK = "neural-architecture-performance-prediction"
_METRIC_NAMES = {"srcc": "Spearman rank correlation", "kt": "Kendall tau-b", "mae": "mean absolute error"}

__all__ = ["TASK", "eval_results", "model_card"]


def eval_results(card: Mapping[str, Any]) -> list[EvalResult]:
    """The Hub ``EvalResult`` of every metric in ``card`` (see the module docstring)."""
    rows: list[tuple[str, str, Mapping[str, Any]]] = []
    for r in card.get("results") or []:
        rows.append((str(r["dataset"]), str(r.get("setting", "")), r.get("metrics") or {}))
    metrics = card.get("metrics") or {}
    if metrics and all(not isinstance(v, Mapping) for v in metrics.values()):
        metrics = {"all": metrics}
    for setting, ms in metrics.items():
        rows.append((str(setting), str(setting), ms))
    out = []
    for dataset, setting, ms in rows:
        for m, v in ms.items():
            if not isinstance(v, (int, float)):
                continue
            out.append(EvalResult(task_type=TASK, task_name=setting or None, dataset_type=dataset, dataset_name=dataset,
                                  metric_type=str(m), metric_value=float(v), metric_name=_METRIC_NAMES.get(str(m), str(m))))
    return out


def results_from_report(paths: str | list[str], *, predictors: list[str] | None = None) -> list[dict[str, Any]]:
    """``results`` entries (see the module docstring) from ``metrics.json`` files that
    ``napbench evaluate`` wrote: one per (target, setting, predictor) cell, means only."""
    from pathlib import Path

    from napbench.errors import InvalidArgumentError

    out = []
    for p in [paths] if isinstance(paths, str) else paths:
        try:
            doc = json.loads(Path(p).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidArgumentError(f"cannot read evaluation metrics {str(p)!r} ({exc}); expected a metrics.json of napbench evaluate") from None
        for r in doc.get("results") or []:
            if predictors and r.get("predictor") not in predictors:
                continue
            out.append({"dataset": r["target"], "setting": f"{r['predictor']} {r['setting']} (n={r.get('n_eval')}, runs={r.get('runs')})",
                        "metrics": {k: v for k, v in (r.get("mean") or {}).items() if k in ("srcc", "kt", "ndcg@10", "mae")}})
    return out


def _results_table(results: list[EvalResult]) -> list[str]:
    cols: list[str] = []
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for r in results:
        if r.metric_type not in cols:
            cols.append(r.metric_type)
        rows.setdefault((r.dataset_name, r.task_name or ""), {})[r.metric_type] = r.metric_value
    out = ["| dataset | setting | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for (ds, setting), ms in rows.items():
        cells = [f"{ms[c]:.4f}" if c in ms else "" for c in cols]
        out.append(f"| {ds} | {setting if setting != ds else ''} | " + " | ".join(cells) + " |")
    return out


def model_card(predictor: Predictor, card: Mapping[str, Any] | str | None = None) -> ModelCard:
    """The checkpoint's model card (a ``huggingface_hub.ModelCard``)."""
    if isinstance(card, str):
        return ModelCard(card)
    card = dict(card or {})
    fit = predictor.training_info.get("fit") or {}
    fams = list(card.get("datasets") or fit.get("families") or [])
    tags = sorted({"napbench", TASK, predictor.predictor_name.replace(":", "-").replace("+", "-")})
    results = eval_results(card)
    data = ModelCardData(library_name="napbench", tags=tags, datasets=fams or None,
                         model_name=f"napbench-{predictor.predictor_name}", eval_results=results or None)
    cfg = {k: v for k, v in predictor.checkpoint_config().items() if k != "training"}
    body = [f"# napbench predictor `{predictor.predictor_name}`", ""]
    if predictor.description:
        body += [predictor.description, ""]
    body += [
        f"Vocabulary version {cfg.get('vocab_version')}. Load it with", "", "```python", "import napbench.zoo",
        'predictor = napbench.zoo.load("<this folder or repo id>")',
        "scores = predictor.predict(graphs)  # graphs: CompGraphs or a napbench dataset", "```", "",
    ]
    if card.get("meaning"):
        body += ["## What the predicted number means", "", str(card["meaning"]), ""]
    body += ["## Training", ""]
    if fit:
        body.append(f"- families: {', '.join(fams) if fams else 'n/a'}")
        body.append(f"- architectures: {fit.get('n')}")
        body += [f"- {k}: {v}" for k, v in fit.items() if k not in ("n", "families")]
        for ft in predictor.training_info.get("fine_tune", []):
            body.append(f"- fine-tuned on {ft.get('n')} architectures of {', '.join(ft.get('families') or [])}")
    else:
        body.append("Not fitted (a training-free score; predictions are the raw score).")
    body += ["", "## Configuration", "", "```json", json.dumps(cfg, indent=2, sort_keys=True), "```", ""]
    if results:
        body += ["## Measured metrics", "", *_results_table(results), ""]
    if card.get("notes"):
        body += ["## Notes", "", str(card["notes"]), ""]
    return ModelCard("---\n" + data.to_yaml() + "\n---\n\n" + "\n".join(body))


def attach_results(folder: str, metrics_files: list[str], *, notes: str | None = None) -> None:
    """Rewrite the model card of checkpoint ``folder`` with the figures of ``napbench evaluate``
    runs (``metrics.json`` files); weights and config are written back unchanged."""
    from napbench.zoo._checkpoint import load

    predictor = load(folder)
    card: dict[str, Any] = {"results": results_from_report(metrics_files), "notes": notes,
                            "meaning": getattr(predictor, "meaning", None)}
    predictor.save_pretrained(folder, card=card)
