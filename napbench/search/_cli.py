"""``napbench search`` and ``napbench latency``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from napbench.errors import InvalidArgumentError


def _kv(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"option {text!r} is not KEY=VALUE; expected e.g. n_candidates=1000")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _seeds(text: str) -> list[int]:
    try:
        if "-" in text.strip("-"):
            lo, hi = text.split("-", 1)
            return list(range(int(lo), int(hi) + 1))
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds {text!r}; expected e.g. 0, 0,1,2 or 0-9") from None


def _budget(text: str) -> int | None:
    if text.lower() in ("none", "inf", "unlimited"):
        return None
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"budget {text!r}; expected a non-negative int or 'none'") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"budget {text!r}; expected a non-negative int or 'none'")
    return v


def cmd_search(args: argparse.Namespace) -> int:
    """Run a search strategy over a family's labelled table and print the best candidate."""
    from napbench.search import list_strategies, run

    if args.strategy == "list":
        for name in list_strategies():
            from napbench.search import get_strategy

            print(f"{name:8s} {type(get_strategy(name)).description}" if name not in ("naswot", "area", "guided") else
                  f"{name:8s} {type(get_strategy(name)).description} (needs --predictor)")
        return 0
    results = run(
        args.strategy, family=args.family, label=args.label, predictor=args.predictor,
        predictor_kwargs=dict(args.predictor_arg or []), queries=args.queries, predictor_calls=args.predictor_calls,
        seeds=args.seeds, options=dict(args.option or []), refit=args.refit, device=args.device,
        latency_limit=args.latency_limit, constraint_mode=args.constraint_mode, latency_source=args.latency_source,
        latency_train=args.latency_train, latency_margin=args.latency_margin,
        latency_refit_every=args.latency_refit_every, out=args.out, score_cache=args.score_cache, calibration=args.calibrate,
        root=args.root, mirror=args.mirror,
    )
    for r in results:
        print(r.summary())
    if len(results) > 1:
        import numpy as np

        t = np.array([r.true for r in results])
        print(f"over {len(results)} seeds: true accuracy {t.mean():.2f} +- {t.std():.2f}")
    if args.out:
        print(f"wrote {args.out}/trajectory.parquet, results.json, search.png")
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    """Measure a model's onnxruntime latency on this machine."""
    from napbench._io import atomic_write_text
    from napbench.search.latency import measure_latency

    m = measure_latency(args.model, input_shape=args.input_shape, batch=args.batch, warmup=args.warmup,
                        repeats=args.repeats, threads=args.threads)
    print(m.summary())
    if args.json:
        if not str(args.json).endswith(".json"):
            raise InvalidArgumentError(f"--json {args.json!r} does not end in .json; expected a JSON path")
        atomic_write_text(args.json, json.dumps(m.as_dict(), indent=2), replace=False)
    return 0


def add_parsers(sub: Any) -> None:
    """Register ``search`` and ``latency`` on the top-level subparsers."""
    from napbench._cli_types import input_shape

    p = sub.add_parser("search", help="search a family with a strategy and a predictor (budgets of queries and predictor calls)")
    p.add_argument("strategy", help="random | naswot | rea | area | guided (or 'list')")
    p.add_argument("--family", default="nb201", help="labelled family to search (default nb201)")
    p.add_argument("--label", default=None, help="label column to maximise (default: the family's)")
    p.add_argument("--predictor", default=None, help="registered predictor name (napbench.zoo) or checkpoint folder")
    p.add_argument("--predictor-arg", type=_kv, action="append", help="KEY=VALUE init argument of the predictor (repeatable)")
    p.add_argument("--queries", "--budget", dest="queries", type=_budget, default=150, help="real-label queries (default 150)")
    p.add_argument("--predictor-calls", type=_budget, default=None, help="architectures the predictor may score (default unlimited)")
    p.add_argument("--seeds", type=_seeds, default=[0], help="seeds: 0 | 0,1,2 | 0-9 (default 0)")
    p.add_argument("--option", type=_kv, action="append", help="KEY=VALUE strategy option, e.g. n_candidates=1000 (repeatable)")
    p.add_argument("--refit", choices=["fit", "fine_tune"], default=None, help="fit / fine-tune the predictor on queried labels")
    p.add_argument("--device", default=None, help="HW-NAS-Bench device for a latency constraint (edgegpu, raspi4, ...)")
    p.add_argument("--latency-limit", type=float, default=None, help="latency bound in ms on --device")
    p.add_argument("--constraint-mode", choices=["hard", "penalty"], default="hard")
    p.add_argument("--latency-source", choices=["predictor", "table"], default="predictor",
                   help="estimate latency with a fitted latency predictor (default) or read the table")
    p.add_argument("--latency-train", type=int, default=300, help="measured cells the latency predictor is fitted on")
    p.add_argument("--latency-margin", type=float, default=0.0,
                   help="an estimated latency must stay below LIMIT * (1 - margin); trained cells' measured latency below LIMIT")
    p.add_argument("--latency-refit-every", type=int, default=0, metavar="N",
                   help="refit the latency predictor on its cells plus the trained cells' measured latency every N queries (0: never)")
    p.add_argument("--out", default=None, help="folder for trajectory.parquet, results.json and search.png")
    p.add_argument("--calibrate", type=_budget, default=None, metavar="N",
                   help="calibrate a population-relative predictor (GENNAPE) on N seeded random cells first, "
                        "counted as predictor calls (default 1000 for such predictors, 0 otherwise; 0: off)")
    p.add_argument("--score-cache", default=None, help="Parquet file of proxy scores read before and written after")
    p.add_argument("--root", default=None, help="dataset root (default $NAPBENCH_HOME)")
    p.add_argument("--mirror", default=None, help="label mirror (default $NAPBENCH_MIRROR)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("latency", help="measure a model's latency on this machine with onnxruntime")
    p.add_argument("model", help="an .onnx file or a torch 'module:callable' (with --input-shape)")
    p.add_argument("--input-shape", type=input_shape, default=None, help="C,H,W (torch models; symbolic ONNX dims)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--repeats", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--json", default=None, help="also write the measurement to this new .json file")
    p.set_defaults(func=cmd_latency)
