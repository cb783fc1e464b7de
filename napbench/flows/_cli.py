"""``napbench serve``, ``napbench publish`` and ``napbench flow NAME``: the pipeline from the command line."""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_flow(args: argparse.Namespace) -> int:
    """Run one flow now (on the configured Prefect server, or the embedded one)."""
    from napbench import flows

    if args.flow == "refresh":
        from napbench.flows.refresh import refresh_with_runner

        res = refresh_with_runner(args.params, families=args.family or None, force=args.force)
        for r in res:
            print(f"{r['family']:<20} {r['status']:<8} {r['reason']}")
        return 1 if any(r["status"] == "failed" for r in res) else 0
    if args.flow == "pipeline":
        out = flows.pipeline(params=args.params, push=args.push or None, progress=not args.quiet)
        print()
        print(out["table"], end="")
        print(f"\nresults: {out['results']}/ (table.md, table.csv, metrics.json, plots); checkpoints: "
              f"{', '.join(out['checkpoints'].values())}; Hub layout: {out['hub']}/  ({out['seconds']:.0f} s)")
        return 0
    out = getattr(flows, args.flow)(params=args.params)
    print(out if isinstance(out, str) else json.dumps(out, indent=2, default=str))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Export datasets and checkpoints in Hub layout and push them (``HF_ENDPOINT``, ``HF_TOKEN``)."""
    from napbench.flows.publish import publish

    out = publish(params=args.params, push=not args.no_push)
    for key, rev in out["pushed"].items():
        print(f"pushed {key} revision {rev}")
    if args.no_push:
        print(f"exported {sum(len(v) for v in out['folders'].values())} repo folders (not pushed)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve ``refresh`` (and ``pipeline`` when configured) on the schedule of params.yaml until SIGTERM."""
    from napbench.flows.serve import serve

    serve(args.params, limit=args.limit)
    return 0


def add_parsers(sub: Any) -> None:
    """Register ``flow``, ``publish`` and ``serve``."""
    p = sub.add_parser("flow", help="run a Prefect flow now: refresh, train, evaluate, publish or pipeline")
    p.add_argument("flow", choices=["refresh", "train", "evaluate", "publish", "pipeline"])
    p.add_argument("--params", default=None, help="params.yaml (default ./params.yaml)")
    p.add_argument("--family", action="append", default=None, help="refresh only: these families (repeatable)")
    p.add_argument("--force", action="store_true", help="refresh only: rebuild even when nothing changed")
    p.add_argument("--push", action="store_true", help="pipeline only: push to the Hub as well")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_flow)

    p = sub.add_parser("publish", help="push datasets and checkpoints to the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN)")
    p.add_argument("--params", default=None, help="params.yaml (default ./params.yaml)")
    p.add_argument("--no-push", action="store_true", help="only write the Hub-layout folders")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("serve", help="serve the refresh flow on the params.yaml schedule (stops on SIGTERM)")
    p.add_argument("--params", default=None, help="params.yaml (default ./params.yaml)")
    p.add_argument("--limit", type=int, default=1, help="at most this many flow runs at once (default 1)")
    p.set_defaults(func=cmd_serve)
