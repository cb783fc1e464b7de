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
default ``./params.yaml`` when present), read once by :mod:`napbench.config` into :class:`TrainParams` /
:class:`EvaluateParams`; flags override them. In ``params.yaml`` a cap of ``0`` means "no
cap". Errors are :class:`~napbench.errors.NapbenchError` subclasses; ``napbench.cli`` turns them
into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from napbench._cli_types import count, input_shape, mirror_folder, model_source, output_location_problem, probability, root_folder
from napbench.config import _CAPS, PARAMS_FILE, EvaluateParams, TrainParams, read_params
from napbench.errors import InvalidArgumentError, OutputPathError

__all__ = ["PARAMS_FILE", "EvaluateParams", "TrainParams", "add_parsers", "read_params"]

_T = TypeVar("_T")


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
    from napbench.evaluation._train import train

    base = read_params(args.params, "train", TrainParams)
    base = base.for_predictor(args.predictor or base.predictor)
    tp = _override(base, args, predictor="predictor", sources="source",
                   epochs="epochs", max_train="max_train", seed="seed", val_frac="val_frac", out="out", root="root",
                   mirror="mirror")
    res = train(tp, progress=not args.quiet, input_size=args.input_size, card_results=args.card_results)
    print(f"trained {res.predictor.predictor_name} on {', '.join(dict.fromkeys(tp.sources))} ({res.n_train} architectures); "
          f"saved {res.path}")
    for name, m in res.metrics.items():
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
    if spec.startswith("hf://"):
        return load(spec)  # an explicit Hub repo id (needs the network)
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
    _check_evaluate_out(Path(ep.out))
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
    from napbench.zoo import get_predictor, list_predictors, load
    from napbench.zoo.predict_report import prediction_report

    # a training-free predictor name (zc:naswot, flops) scores the model directly: proxies run it via the CG executor
    spec = args.checkpoint
    if args.hub and not spec.startswith("hf://"):
        spec = "hf://" + spec
    is_name = not args.hub and spec in list_predictors() and not Path(spec).exists()
    predictor = get_predictor(spec) if is_name else load(spec)
    g = convert(args.model, input_shape=args.input_shape, allow_unknown=args.allow_unknown)
    if args.quiet:
        print(f"{float(predictor.predict([g])[0]):.4f}")
        return 0
    if is_name:  # a training-free score: no training label, no reference ranking
        print(f"{float(predictor.predict([g])[0]):.4f}")
        print(f"({predictor.predictor_name}: training-free score; {len(g.nodes)} nodes, {g.flops:,} MACs, {g.params:,} params)")
        return 0
    rep = prediction_report(predictor, g, reference=args.reference, reference_size=args.reference_size, root=args.root,
                            mirror=args.mirror)
    print(rep.text())
    return 0


def _check_evaluate_out(out: Path) -> None:
    """Refuse an ``evaluate --out`` that is a file, or a folder of someone else's files, before any work."""
    if out.is_symlink() and not out.exists():
        raise OutputPathError(f"output {str(out)!r} is a dangling link; expected a new or napbench-made folder")
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"output {str(out)!r} is an existing file; expected a new folder or an earlier evaluate output")
    if out.is_dir() and any(out.iterdir()) and not (out / "metrics.json").is_file():
        raise OutputPathError(
            f"output {str(out)!r} is a folder of other files; expected a new or empty folder, or an earlier evaluate output"
        )
    problem = output_location_problem(out)
    if problem:
        raise OutputPathError(f"output {str(out)!r}: {problem}")


def add_parsers(sub: Any) -> None:
    """Register ``train``, ``evaluate`` and ``predict``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default=None, help="params.yaml to read defaults from (default ./params.yaml if present)")
    common.add_argument("--root", type=root_folder, default=None, help="dataset root (default $NAPBENCH_HOME or ~/.cache/napbench)")
    common.add_argument("--mirror", type=mirror_folder, default=None, help="upstream tables mirror (default $NAPBENCH_MIRROR)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("train", parents=[common], help="fit a predictor on source families and save a checkpoint")
    p.add_argument("predictor", nargs="?", default=None, help="registered predictor, e.g. gennape, kgnn, flops, zc:<proxy> (an unknown name lists every registered one)")
    p.add_argument("--source", action="append", default=None, help="source family (repeatable)")
    p.add_argument("--out", default=None, help="checkpoint folder (default runs/checkpoints/<predictor>-<sources>)")
    p.add_argument("--epochs", type=count("--epochs", zero="the predictor's default"), default=None,
                   help="training epochs (default: the predictor's)")
    p.add_argument("--max-train", type=count("--max-train", zero="all"), default=None, help="cap on architectures per source family (0 = all)")
    p.add_argument("--seed", type=count("--seed"), default=None, help="training and sampling seed")
    p.add_argument("--val-frac", type=probability("--val-frac"), default=None,
                   help="held-out fraction per source for the model card (default 0.1)")
    p.add_argument("--input-size", type=count("--input-size", zero="none"), default=None,
                   help="zc:* only: cap on the proxies' input H and W")
    p.add_argument("--card-results", action="append", default=None, metavar="METRICS.json",
                   help="metrics.json of `napbench evaluate` runs to put in the model card (repeatable)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", parents=[common], help="zero-shot / k-shot evaluation on target families")
    p.add_argument("predictors", nargs="+", metavar="CHECKPOINT|PROXY",
                   help="checkpoint folders or registered predictors (e.g. flops, zc:<proxy>; trained ones such as gennape or kgnn with --source or --lofo)")
    p.add_argument("--target", action="append", default=None, help="target family (repeatable)")
    p.add_argument("--source", action="append", default=None, help="fit registered predictors on these families first")
    p.add_argument("--lofo", action="store_true", help="leave-one-family-out: hold out each --target family (default: the five labelled ones)")
    p.add_argument("--ablation", action="store_true", help="with --lofo and predictor gennape: GENNAPE's ablation columns (Table 8)")
    p.add_argument("--shots", type=count("--shots", zero="zero-shot only"), default=None,
                   help="fine-tuning samples per seed (0 = zero-shot only; default 50)")
    p.add_argument("--seeds", type=count("--seeds", minimum=1), default=None, help="k-shot repetitions (default 5)")
    p.add_argument("--max-eval", type=count("--max-eval", zero="all"), default=None,
                   help="cap on evaluated architectures per target (0 = all)")
    p.add_argument("--max-train", type=count("--max-train", zero="all"), default=None,
                   help="cap on training architectures per source (0 = all)")
    p.add_argument("--epochs", type=count("--epochs", zero="the predictor's default"), default=None,
                   help="training epochs when fitting on --source")
    p.add_argument("--fine-tune-epochs", type=count("--fine-tune-epochs", zero="the predictor's default"), default=None,
                   help="fine-tuning epochs")
    p.add_argument("--sample-seed", type=count("--sample-seed"), default=None, help="seed of every architecture sample")
    p.add_argument("--input-size", type=count("--input-size", zero="none"), default=None, help="zc:* only: cap on the proxies' input H and W (0 = none; default 64)")
    p.add_argument("--out", default=None, help="output folder (default runs/evaluate)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict a model's accuracy with a checkpoint")
    p.add_argument("checkpoint", help="checkpoint folder (or a Hub repo id as hf://owner/name, or with --hub), "
                   "or a training-free predictor (zc:naswot, flops)")
    p.add_argument("model", type=model_source,
                   help="an .onnx file, a .keras/.h5 file or SavedModel dir, or a torch 'module:callable'")
    p.add_argument("--hub", action="store_true", help="CHECKPOINT is a Hugging Face Hub repo id (owner/name)")
    p.add_argument("--input-shape", type=input_shape, default=None, help="C,H,W for torch models (no batch)")
    p.add_argument("--allow-unknown", action="store_true", help="keep ops outside the vocabulary as 'unknown'")
    p.add_argument("--reference", default=None, help="family to rank the model in (default: the checkpoint's first training family)")
    p.add_argument("--reference-size", type=count("--reference-size", minimum=1), default=1000,
                   help="seeded reference architectures (default 1000)")
    p.add_argument("--root", type=root_folder, default=None, help="dataset root of the reference family (default $NAPBENCH_HOME)")
    p.add_argument("--mirror", type=mirror_folder, default=None, help="upstream tables mirror (default $NAPBENCH_MIRROR)")
    p.add_argument("--quiet", action="store_true", help="print only the number")
    p.set_defaults(func=cmd_predict)
