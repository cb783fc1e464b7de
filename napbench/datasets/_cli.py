"""``napbench datasets list|build|show``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from napbench._cli_types import count, mirror_folder, output_location_problem, root_folder
from napbench.errors import NapbenchError, OutputPathError


def cmd_list(args: argparse.Namespace) -> int:
    """List the registered families."""
    from napbench.datasets import get_family, list_families

    print(f"{'family':<20} {'space':>14} {'default':>8} {'labels':<7} description")
    for name in list_families():
        f = get_family(name)
        space = "huge" if not f.space_size else (f"{f.space_size:,}" if f.space_size < 10**9 else f"{f.space_size:.2e}")
        print(f"{name:<20} {space:>14} {f.default_size:>8} {'yes' if f.labelled else 'no':<7} {f.description}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Build one, several or all families."""
    from napbench.datasets import build, list_families

    names = list_families() if args.all else args.names
    if not names:
        raise NapbenchError("no family given; expected family names or --all (see 'napbench datasets list')")
    for name in names:
        _check_target(name, args.root)
    for name in names:
        t0 = time.perf_counter()
        path = build(name, args.root, mirror=args.mirror, limit=args.limit or None, workers=args.workers, progress=not args.quiet)
        print(f"{name}: wrote {path} in {time.perf_counter() - t0:.1f} s")
    return 0


def _check_target(name: str, root: str | None) -> None:
    """Refuse, before any building, a dataset path that cannot be written or is someone else's file."""
    from napbench.conversion.storage import is_napbench_parquet
    from napbench.datasets import dataset_path, get_family

    get_family(name)  # unknown names list the valid ones
    path = dataset_path(name, root)
    problem = output_location_problem(path)
    if problem:
        raise OutputPathError(f"dataset {str(path)!r}: {problem}")
    if path.is_dir() or (path.exists() and not is_napbench_parquet(path)):
        raise OutputPathError(f"dataset {str(path)!r} exists and is not a napbench Parquet file; expected a new path "
                              "or one napbench wrote (move it away or pass another --root)")


def cmd_show(args: argparse.Namespace) -> int:
    """Summarise a built family dataset (building it first when missing)."""
    from napbench.cli import _dataset_summary
    from napbench.datasets import load

    _check_target(args.name, args.root)
    ds = load(args.name, args.root, mirror=args.mirror)
    print(_dataset_summary(ds.path))
    return 0


def add_parsers(sub: Any) -> None:
    """Register the ``datasets`` command group."""
    p = sub.add_parser("datasets", help="benchmark families as Parquet datasets")
    dsub = p.add_subparsers(dest="datasets_command", required=True)
    q = dsub.add_parser("list", help="list the families")
    q.set_defaults(func=cmd_list)
    q = dsub.add_parser("build", help="build family datasets")
    q.add_argument("names", nargs="*", help="family names")
    q.add_argument("--all", action="store_true", help="build every family")
    q.add_argument("--root", type=root_folder, default=None, help="dataset root (default $NAPBENCH_HOME or ~/.cache/napbench)")
    q.add_argument("--mirror", type=mirror_folder, default=None, help="upstream tables mirror (default $NAPBENCH_MIRROR)")
    q.add_argument("--limit", type=count("--limit", zero="all"), default=None, help="only the first N architectures (0 = all)")
    q.add_argument("--workers", type=count("--workers", minimum=1), default=None, help="processes (default: all cores, max 2)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_build)
    q = dsub.add_parser("show", help="summarise a family dataset")
    q.add_argument("name")
    q.add_argument("--root", type=root_folder, default=None)
    q.add_argument("--mirror", type=mirror_folder, default=None)
    q.set_defaults(func=cmd_show)
