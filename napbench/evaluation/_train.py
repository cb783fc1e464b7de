"""Training as a library function: fit a registered predictor on source families, save a checkpoint.

``napbench train`` (the CLI), the ``train`` Prefect flow and the DVC ``train`` stage all call
:func:`train`; nothing else holds the procedure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napbench.config import TrainParams
from napbench.errors import InvalidArgumentError


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced."""

    predictor: Any
    path: Path
    n_train: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


def default_checkpoint_dir(predictor: str, sources: tuple[str, ...] | list[str]) -> Path:
    """``runs/checkpoints/<predictor>-<source+source>``: where a checkpoint goes when no ``out`` is given."""
    return Path(f"runs/checkpoints/{predictor.replace(':', '-')}-{'+'.join(dict.fromkeys(sources))}")


def train(params: TrainParams, *, progress: bool = True, input_size: int | None = None,
          card_results: list[str] | None = None) -> TrainResult:
    """Fit ``params.predictor`` on ``params.sources`` and save its checkpoint folder.

    A seeded ``params.val_frac`` of each source family (when it has at least 40 sampled
    architectures) is held out; its SRCC / KT / NDCG@10 / MAE go into the model card.
    ``input_size`` caps zero-cost proxies' input H and W; ``card_results``: metrics.json files of
    ``napbench evaluate`` runs whose figures go into the model card.
    """
    import numpy as np

    from napbench.evaluation.protocols import ProtocolConfig, _metrics, build_predictor, labelled, sample_rows
    from napbench.evaluation.protocols import concat_datasets as concat
    from napbench.zoo._checkpoint_io import check_checkpoint_target

    if not params.sources:
        raise InvalidArgumentError("no source family; expected --source FAMILY (repeatable) or train.sources in params.yaml")
    if not 0.0 <= params.val_frac < 1.0:
        raise InvalidArgumentError(f"--val-frac is {params.val_frac}; expected 0 <= val_frac < 1")
    sources = tuple(dict.fromkeys(params.sources))
    cfg = ProtocolConfig(max_train=params.max_train, epochs=params.epochs, fit_seed=params.seed, sample_seed=params.seed,
                         root=params.root, mirror=params.mirror, progress=progress, zc_input_size=input_size)
    predictor = build_predictor(params.predictor, cfg, **dict(params.kwargs))
    out = Path(params.out) if params.out else default_checkpoint_dir(predictor.predictor_name, sources)
    check_checkpoint_target(out)  # before training: a target that is not a napbench checkpoint is refused now
    train_parts, train_y, vals = [], [], {}
    for i, fam in enumerate(sources):
        data = labelled(fam, cfg)
        rng = np.random.default_rng((params.seed, 1, i))
        rows = sample_rows(len(data), params.max_train, rng)
        n_val = round(params.val_frac * len(rows)) if len(rows) >= 40 else 0
        perm = rng.permutation(rows)
        val_rows, fit_rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        ds, y = data.take(fit_rows)
        train_parts.append(ds)
        train_y.append(y)
        if n_val >= 10:
            vals[fam] = data.take(val_rows)
    ds = concat(train_parts, "+".join(sources))
    y = np.concatenate(train_y)
    predictor.fit(ds, y, epochs=params.epochs, seed=params.seed, progress=progress)
    metrics = {f"validation {fam} (n={len(vy)})": _metrics(vy, predictor.predict(vds), (10,)) for fam, (vds, vy) in vals.items()}
    notes = (f"Held-out validation: a seeded {params.val_frac:.0%} of each source family's sampled architectures "
             "(not used for fitting)." if metrics else "")
    card: dict[str, Any] = {"metrics": metrics, "notes": notes, "meaning": getattr(predictor, "meaning", None)}
    if card_results:
        from napbench.zoo._card import results_from_report

        card["results"] = results_from_report(card_results)
    predictor.save_pretrained(out, card=card)
    return TrainResult(predictor=predictor, path=out, n_train=len(y), metrics=metrics)
