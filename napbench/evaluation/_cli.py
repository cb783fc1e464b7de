"""``napbench train | evaluate | predict``: predictors from the command line.

* ``napbench train PREDICTOR --source nb201 [--source ...] [--out DIR] [--epochs N] [--max-train N]``
  fits a registered predictor on the source families and saves a checkpoint folder; a seeded
  ``--val-frac`` of each source is held out and its metrics go into the model card.
* ``napbench evaluate CHECKPOINT|PROXY [...] --target nb101 [--target ...] [--shots 50] [--seeds 5]
  [--out DIR]`` evaluates checkpoints and training-free predictors (``flops``, ``params``,
  ``zc:<proxy>``, ``zc:vote``) zero-shot and k-shot; with ``--source`` registered predictors
  (``kgnn`` too) are first fitted on the sources. ``--lofo`` runs leave-one-family-out instead.
* ``napbench predict CHECKPOINT MODEL [--input-shape C,H,W]`` converts a model (``.onnx``,
  ``.keras``, ``module:fn``) and prints the predicted accuracy.

Defaults come from the ``train:`` / ``evaluate:`` sections of ``params.yaml`` (``--params``,
default ``./params.yaml`` when present), read once here into :class:`TrainParams` /
:class:`EvaluateParams`; flags override them. In ``params.yaml`` a cap of ``0`` means "no
cap". Errors are :class:`~napbench.errors.NapbenchError` subclasses; ``napbench.cli`` turns them
into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from napbench.errors import InvalidArgumentError, NapbenchError

_T = TypeVar("_T")
PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class TrainParams:
    """``train:`` section of params.yaml."""

    predictor: str = "kgnn"
    sources: tuple[str, ...] = ("nb201",)
    epochs: int | None = None
    max_train: int | None = None
    seed: int = 0
    val_frac: float = 0.1
    out: str | None = None
    root: str | None = None
    mirror: str | None = None


@dataclass(frozen=True)
class EvaluateParams:
    """``evaluate:`` section of params.yaml."""

    targets: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    shots: int = 50
    seeds: int = 5
    max_eval: int | None = None
    max_train: int | None = None
    epochs: int | None = None
    fine_tune_epochs: int | None = None
    sample_seed: int = 0
    zc_input_size: int | None = 64
    zc_batch_size: int = 64
    out: str = "runs/evaluate"
    plots: bool = True
    root: str | None = None
    mirror: str | None = None


_CAPS = ("max_eval", "max_train", "epochs", "fine_tune_epochs", "zc_input_size")


def read_params(path: str | Path | None, section: str, cls: type[_T]) -> _T:
    """The ``section`` of a params.yaml as ``cls`` (defaults when the file or section is absent).

    ``path`` None means ``./params.yaml`` if it exists. Unknown keys warn and are ignored;
    caps given as 0 become None (no cap); lists become tuples.
    """
    import yaml

    p = Path(path) if path is not None else Path.cwd() / PARAMS_FILE
    if not p.is_file():
        if path is not None:
            raise NapbenchError(f"params file {str(p)!r} not found; expected a YAML file with a {section!r} section")
        return cls()
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise NapbenchError(f"{p} is not valid YAML ({str(exc).splitlines()[0]}); expected a mapping of sections") from None
    raw = doc.get(section) or {}
    if not isinstance(raw, dict):
        raise NapbenchError(f"section {section!r} of {p} is a {type(raw).__name__}; expected a mapping")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - names)
    if unknown:
        warnings.warn(f"{p}: ignoring unknown {section}: keys {unknown}; known keys: {sorted(names)}", stacklevel=2)
    values: dict[str, Any] = {}
    for k, v in raw.items():
        if k not in names:
            continue
        if k in _CAPS and v == 0:
            v = None
        if isinstance(v, list):
            v = tuple(v)
        values[k] = v
    try:
        return cls(**values)
    except TypeError as exc:
        raise NapbenchError(f"section {section!r} of {p}: {exc}") from None


def _override(params: _T, args: argparse.Namespace, **mapping: str) -> _T:
    """Replace fields of ``params`` by the flags that were given (not None)."""
    changes = {}
    for fld, attr in mapping.items():
        v = getattr(args, attr, None)
        if v is None:
            continue
        if fld in _CAPS and v == 0:
            v = None
        if isinstance(v, list):
            v = tuple(v)
        changes[fld] = v
    return dataclasses.replace(params, **changes)  # type: ignore[type-var]


# -- train --------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    """Fit a predictor on source families and save a checkpoint folder."""
    import numpy as np

    from napbench.evaluation.protocols import ProtocolConfig, _metrics, build_predictor, labelled, sample_rows
    from napbench.evaluation.protocols import concat_datasets as concat

    tp = _override(read_params(args.params, "train", TrainParams), args, predictor="predictor", sources="source",
                   epochs="epochs", max_train="max_train", seed="seed", val_frac="val_frac", out="out", root="root",
                   mirror="mirror")
    if not tp.sources:
        raise InvalidArgumentError("no source family; expected --source FAMILY (repeatable) or train.sources in params.yaml")
    if not 0.0 <= tp.val_frac < 1.0:
        raise InvalidArgumentError(f"--val-frac is {tp.val_frac}; expected 0 <= val_frac < 1")
    cfg = ProtocolConfig(max_train=tp.max_train, epochs=tp.epochs, fit_seed=tp.seed, sample_seed=tp.seed,
                         root=tp.root, mirror=tp.mirror, progress=not args.quiet, zc_input_size=args.input_size)
    predictor = build_predictor(tp.predictor, cfg)
    train_parts, train_y, vals = [], [], {}
    for i, fam in enumerate(dict.fromkeys(tp.sources)):
        data = labelled(fam, cfg)
        rng = np.random.default_rng((tp.seed, 1, i))
        rows = sample_rows(len(data), tp.max_train, rng)
        n_val = int(round(tp.val_frac * len(rows))) if len(rows) >= 40 else 0
        perm = rng.permutation(rows)
        val_rows, fit_rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        ds, y = data.take(fit_rows)
        train_parts.append(ds)
        train_y.append(y)
        if n_val >= 10:
            vals[fam] = data.take(val_rows)
    ds = concat(train_parts, "+".join(dict.fromkeys(tp.sources)))
    y = np.concatenate(train_y)
    predictor.fit(ds, y, epochs=tp.epochs, seed=tp.seed, progress=not args.quiet)
    metrics = {}
    for fam, (vds, vy) in vals.items():
        metrics[f"validation {fam} (n={len(vy)})"] = _metrics(vy, predictor.predict(vds), (10,))
    out = Path(tp.out or f"runs/checkpoints/{predictor.predictor_name.replace(':', '-')}-{'+'.join(dict.fromkeys(tp.sources))}")
    notes = (f"Held-out validation: a seeded {tp.val_frac:.0%} of each source family's sampled architectures "
             "(not used for fitting)." if metrics else "")
    card: dict[str, Any] = {"metrics": metrics, "notes": notes, "meaning": getattr(predictor, "meaning", None)}
    if args.card_results:
        from napbench.zoo._card import results_from_report

        card["results"] = results_from_report(args.card_results)
    predictor.save_pretrained(out, card=card)
    print(f"trained {predictor.predictor_name} on {', '.join(dict.fromkeys(tp.sources))} ({len(y)} architectures); saved {out}")
    for name, m in metrics.items():
        print(f"  {name}: SRCC {m['srcc']:.3f}  KT {m['kt']:.3f}  NDCG@10 {m['ndcg@10']:.3f}  MAE {m['mae']:.2f}")
    return 0


# -- evaluate -----------------------------------------------------------------------------
def _resolve(spec: str) -> Any:
    """A checkpoint folder -> loaded predictor; a registered name -> the name itself."""
    from napbench.zoo import list_predictors, load

    if Path(spec).expanduser().exists():
        return load(spec)
    if spec in list_predictors():
        return spec
    if "/" in spec and not spec.startswith((".", "/", "~")):
        return load(spec)  # a Hub repo id (needs the network)
    from napbench.errors import UnknownNameError

    raise UnknownNameError("checkpoint folder or predictor", spec, list_predictors())


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Zero-shot and k-shot evaluation of checkpoints / training-free predictors on target families."""
    from napbench.evaluation.protocols import LOFO_FAMILIES, ProtocolConfig, evaluate_transfer, leave_one_family_out

    ep = _override(read_params(args.params, "evaluate", EvaluateParams), args, targets="target", sources="source",
                   shots="shots", seeds="seeds", max_eval="max_eval", max_train="max_train", epochs="epochs",
                   fine_tune_epochs="fine_tune_epochs", sample_seed="sample_seed", zc_input_size="input_size",
                   out="out", root="root", mirror="mirror")
    cfg = ProtocolConfig(
        shots=ep.shots, seeds=ep.seeds, max_eval=ep.max_eval, max_train=ep.max_train, sample_seed=ep.sample_seed,
        epochs=ep.epochs, fine_tune_epochs=ep.fine_tune_epochs, zc_input_size=ep.zc_input_size,
        zc_batch_size=ep.zc_batch_size, root=ep.root, mirror=ep.mirror, progress=not args.quiet,
        plots=ep.plots and not args.no_plots,
    )
    if args.lofo and args.ablation:
        from napbench.evaluation.protocols import gennape_ablation

        targets = ep.targets or LOFO_FAMILIES
        report = gennape_ablation(cfg, families=tuple(dict.fromkeys([*LOFO_FAMILIES, *targets])), targets=targets, out=ep.out)
    elif args.lofo:
        bad = [s for s in args.predictors if s not in _registered()]
        if bad:
            raise InvalidArgumentError(f"--lofo trains predictors per held-out family; {bad} are not registered predictor names")
        targets = ep.targets or LOFO_FAMILIES
        families = tuple(dict.fromkeys([*LOFO_FAMILIES, *targets]))
        report = leave_one_family_out(args.predictors, cfg, families=families, targets=targets, out=ep.out)
    else:
        if not ep.targets:
            raise InvalidArgumentError("no target family; expected --target FAMILY (repeatable) or evaluate.targets in params.yaml")
        specs = {s: _resolve(s) for s in args.predictors}
        report = evaluate_transfer(specs, ep.targets, cfg, sources=ep.sources, out=ep.out)
    print(report.to_markdown(), end="")
    print(f"wrote {ep.out}/table.md, table.csv, metrics.csv, metrics.json" + (" and plots" if cfg.plots else ""))
    return 0


def _registered() -> list[str]:
    from napbench.zoo import list_predictors

    return list_predictors()


# -- predict ------------------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    """Predict one model's label with a checkpoint: the value, its uncertainty, what it means and
    its percentile among a reference family (all predicted by the same checkpoint)."""
    from napbench.conversion import convert
    from napbench.zoo import load
    from napbench.zoo.predict_report import prediction_report

    predictor = load(args.checkpoint)
    g = convert(args.model, input_shape=args.input_shape, allow_unknown=args.allow_unknown)
    if args.quiet:
        print(f"{float(predictor.predict([g])[0]):.4f}")
        return 0
    rep = prediction_report(predictor, g, reference=args.reference, reference_size=args.reference_size, root=args.root,
                            mirror=args.mirror)
    print(rep.text())
    return 0


def _shape(text: str) -> tuple[int, ...]:
    from napbench.cli import _shape as shape

    return shape(text)


def add_parsers(sub: Any) -> None:
    """Register ``train``, ``evaluate`` and ``predict``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default=None, help="params.yaml to read defaults from (default ./params.yaml if present)")
    common.add_argument("--root", default=None, help="dataset root (default $NAPBENCH_HOME or ~/.cache/napbench)")
    common.add_argument("--mirror", default=None, help="upstream tables mirror (default $NAPBENCH_MIRROR)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("train", parents=[common], help="fit a predictor on source families and save a checkpoint")
    p.add_argument("predictor", nargs="?", default=None, help="registered predictor (kgnn, flops, params, zc:<proxy>, zc:vote)")
    p.add_argument("--source", action="append", default=None, help="source family (repeatable)")
    p.add_argument("--out", default=None, help="checkpoint folder (default runs/checkpoints/<predictor>-<sources>)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the predictor's)")
    p.add_argument("--max-train", type=int, default=None, help="cap on architectures per source family (0 = all)")
    p.add_argument("--seed", type=int, default=None, help="training and sampling seed")
    p.add_argument("--val-frac", type=float, default=None, help="held-out fraction per source for the model card (default 0.1)")
    p.add_argument("--input-size", type=int, default=None, help="zc:* only: cap on the proxies' input H and W")
    p.add_argument("--card-results", action="append", default=None, metavar="METRICS.json",
                   help="metrics.json of `napbench evaluate` runs to put in the model card (repeatable)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", parents=[common], help="zero-shot / k-shot evaluation on target families")
    p.add_argument("predictors", nargs="+", metavar="CHECKPOINT|PROXY",
                   help="checkpoint folders or registered predictors (flops, params, zc:<proxy>, zc:vote; kgnn with --source)")
    p.add_argument("--target", action="append", default=None, help="target family (repeatable)")
    p.add_argument("--source", action="append", default=None, help="fit registered predictors on these families first")
    p.add_argument("--lofo", action="store_true", help="leave-one-family-out: hold out each --target family (default: the five labelled ones)")
    p.add_argument("--ablation", action="store_true", help="with --lofo and predictor gennape: GENNAPE's ablation columns (Table 8)")
    p.add_argument("--shots", type=int, default=None, help="fine-tuning samples per seed (0 = zero-shot only; default 50)")
    p.add_argument("--seeds", type=int, default=None, help="k-shot repetitions (default 5)")
    p.add_argument("--max-eval", type=int, default=None, help="cap on evaluated architectures per target (0 = all)")
    p.add_argument("--max-train", type=int, default=None, help="cap on training architectures per source (0 = all)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs when fitting on --source")
    p.add_argument("--fine-tune-epochs", type=int, default=None, help="fine-tuning epochs")
    p.add_argument("--sample-seed", type=int, default=None, help="seed of every architecture sample")
    p.add_argument("--input-size", type=int, default=None, help="zc:* only: cap on the proxies' input H and W (0 = none; default 64)")
    p.add_argument("--out", default=None, help="output folder (default runs/evaluate)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict a model's accuracy with a checkpoint")
    p.add_argument("checkpoint", help="checkpoint folder (or Hub repo id)")
    p.add_argument("model", help="an .onnx file, a .keras/.h5 file or SavedModel dir, or a torch 'module:callable'")
    p.add_argument("--input-shape", type=_shape, default=None, help="C,H,W for torch models (no batch)")
    p.add_argument("--allow-unknown", action="store_true", help="keep ops outside the vocabulary as 'unknown'")
    p.add_argument("--reference", default=None, help="family to rank the model in (default: the checkpoint's first training family)")
    p.add_argument("--reference-size", type=int, default=1000, help="seeded reference architectures (default 1000)")
    p.add_argument("--root", default=None, help="dataset root of the reference family (default $NAPBENCH_HOME)")
    p.add_argument("--mirror", default=None, help="upstream tables mirror (default $NAPBENCH_MIRROR)")
    p.add_argument("--quiet", action="store_true", help="print only the number")
    p.set_defaults(func=cmd_predict)
