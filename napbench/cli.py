"""The ``napbench`` command line.

One entry point with subcommands; napbench errors print one line and exit with code 2
(``NAPBENCH_DEBUG=1`` shows the traceback). Subcommand groups live next to the code they
drive and register themselves through ``add_parsers(subparsers)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napbench.errors import NapbenchError

EXIT_USAGE = 2


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(t) for t in text.replace("x", ",").split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape {text!r} is not a list of ints; expected e.g. 3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"input shape {text!r} has non-positive dims; expected e.g. 3,224,224")
    return dims


def _convert_source(args: argparse.Namespace) -> Any:
    from napbench.conversion import convert

    g = convert(args.source, input_shape=args.input_shape, allow_unknown=args.allow_unknown)
    if getattr(args, "name", None):
        g = g.with_meta(name=args.name)
    elif not g.meta.get("name") or g.meta.get("name") in ("Module", "Sequential", "Functional"):
        g = g.with_meta(name=Path(str(args.source)).stem if ":" not in str(args.source) else str(args.source))
    return g


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a model into a Parquet dataset (created or appended to)."""
    from napbench.conversion import write_graphs

    out = Path(args.output)
    if out.suffix != ".parquet":
        raise NapbenchError(f"output {str(out)!r} does not end in .parquet; expected a Parquet dataset path")
    g = _convert_source(args)
    write_graphs([g], out, append=args.append)
    print(f"wrote {g.meta.get('name')} ({len(g.nodes)} nodes, {g.flops:,} MACs, {g.params:,} params) to {out}")
    return 0


def _dataset_summary(path: Path) -> str:
    import pyarrow.compute as pc

    from napbench.conversion._show import human
    from napbench.conversion.storage import read_metadata, read_table

    md = read_metadata(path)
    t = read_table(path)
    ops = pc.value_counts(pc.struct_field(pc.list_flatten(t.column("nodes")), "op").cast("string"))
    hist = sorted(((v["values"].as_py(), v["counts"].as_py()) for v in ops), key=lambda kv: -kv[1])
    flops = t.column("flops").to_numpy()
    params = t.column("params").to_numpy()
    nn = t.column("n_nodes").to_numpy()
    lines = [
        f"{path}  ({t.num_rows} graphs; vocabulary {md.get('vocab_version')}, converter {md.get('converter_version')})",
        f"  family    {md.get('family', '-')}",
        f"  FLOPs     {human(flops.min())} .. {human(flops.max())} MACs (median {human(float(sorted(flops)[len(flops) // 2]))})",
        f"  params    {human(params.min())} .. {human(params.max())}",
        f"  nodes     {nn.min()} .. {nn.max()} per graph",
        "  ops       " + ", ".join(f"{op}x{c}" for op, c in hist),
    ]
    labels = md.get("label_columns") or []
    if labels:
        lines.append(f"  labels    {', '.join(labels)} (default: {md.get('default_label')})")
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    """Summarise a model, or a Parquet dataset (or one row of it)."""
    src = str(args.source)
    if src.endswith(".parquet"):
        if args.row is None:
            print(_dataset_summary(Path(src)))
            return 0
        from napbench.conversion import read_graphs

        print(_row(Path(src), args.row, read_graphs).summary())
        return 0
    print(_convert_source(args).summary())
    return 0


def _row(path: Path, row: int, read_graphs: Any) -> Any:
    import pyarrow.parquet as pq

    n = pq.read_metadata(path).num_rows
    if not 0 <= row < n:
        raise NapbenchError(f"row {row} is out of range for {str(path)!r}; expected 0 <= row < {n}")
    return read_graphs(path, rows=[row])[0]


def cmd_draw(args: argparse.Namespace) -> int:
    """Draw a model's graph (or a dataset row's) to PNG/SVG."""
    src = str(args.source)
    if src.endswith(".parquet"):
        from napbench.conversion import read_graphs

        g = _row(Path(src), args.row or 0, read_graphs)
    else:
        g = _convert_source(args)
    print(g.draw(args.output))
    return 0


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a torch 'module:callable', a .keras/.h5 file, a SavedModel dir, an .onnx file")
    p.add_argument("--input-shape", type=_shape, default=None, help="C,H,W for torch models (no batch)")
    p.add_argument("--allow-unknown", action="store_true", help="keep ops outside the vocabulary as 'unknown'")
    p.add_argument("--name", default=None, help="name recorded in the graph metadata")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommand groups)."""
    parser = argparse.ArgumentParser(prog="napbench", description="Neural architecture performance prediction toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert a model to a computation graph and write/append it to Parquet")
    _add_model_args(p)
    p.add_argument("-o", "--output", required=True, help="Parquet dataset to create or append to")
    p.add_argument("--append", action="store_true", help="append to an existing dataset instead of replacing it")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("show", help="summarise a model or a Parquet dataset")
    _add_model_args(p)
    p.add_argument("--row", type=int, default=None, help="show one graph of a dataset")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("draw", help="draw a computation graph to PNG/SVG")
    _add_model_args(p)
    p.add_argument("-o", "--output", required=True, help="picture path (.png or .svg)")
    p.add_argument("--row", type=int, default=None, help="row of a Parquet dataset")
    p.set_defaults(func=cmd_draw)

    from napbench.datasets._cli import add_parsers as add_datasets

    add_datasets(sub)
    try:
        from napbench.evaluation._cli import add_parsers as add_evaluation
    except ImportError:  # pragma: no cover - the evaluation CLI is optional during development
        add_evaluation = None
    if add_evaluation is not None:
        add_evaluation(sub)
    from napbench.search._cli import add_parsers as add_search

    add_search(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 for a napbench or usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (NapbenchError, FileNotFoundError) as exc:
        if os.environ.get("NAPBENCH_DEBUG") == "1":
            traceback.print_exc()
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"napbench: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


def entry() -> None:  # pragma: no cover - console script
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
