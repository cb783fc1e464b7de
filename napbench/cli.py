"""The ``napbench`` command line.

One entry point with subcommands. Whatever goes wrong, a command ends with exactly one line
on stderr and exit code 2: a napbench error prints its message, a usage error the argparse
message, anything else ``internal error in <command>: <Type>: <message>`` (``NAPBENCH_DEBUG=1``
shows the traceback). Warnings print as one ``napbench: warning:`` line each. Option values
are validated by the types in :mod:`napbench._cli_types`. Subcommand groups live next to the
code they drive and register themselves through ``add_parsers(subparsers)``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from napbench._cli_types import count, input_shape, model_source, output_file
from napbench.errors import InvalidArgumentError, NapbenchError, OutputPathError

EXIT_USAGE = 2
DEBUG_ENV = "NAPBENCH_DEBUG"


class UsageError(Exception):
    """A command line argparse refused (printed as one line, exit 2)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and never exit the process."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        for a in args or ():
            if isinstance(a, str) and a.startswith("--") and a.endswith("=--"):  # argparse drops a '--' value silently
                self.error(f"argument {a[:-3]}: expected a value, got '--'")
        return super().parse_known_args(args, namespace)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, end="", file=sys.stderr if status else sys.stdout)
        raise SystemExit(status)


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
        raise OutputPathError(f"output {str(out)!r} does not end in .parquet; expected a Parquet dataset path")
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
    from napbench.conversion.storage import num_rows

    n = num_rows(path)
    if not 0 <= row < n:
        raise InvalidArgumentError(f"row {row} is out of range for {str(path)!r}; expected 0 <= row < {n}")
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
    p.add_argument("source", type=model_source,
                   help="a torch 'module:callable', a .keras/.h5 file, a SavedModel dir, an .onnx file")
    p.add_argument("--input-shape", type=input_shape, default=None, help="C,H,W for torch models (no batch)")
    p.add_argument("--allow-unknown", action="store_true", help="keep ops outside the vocabulary as 'unknown'")
    p.add_argument("--name", default=None, help="name recorded in the graph metadata")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommand groups)."""
    parser = _Parser(prog="napbench", description="Neural architecture performance prediction toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert a model to a computation graph and write/append it to Parquet")
    _add_model_args(p)
    p.add_argument("-o", "--output", required=True, type=output_file("Parquet dataset", (".parquet",)),
                   help="Parquet dataset to create or append to")
    p.add_argument("--append", action="store_true", help="append to an existing dataset instead of replacing it")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("show", help="summarise a model or a Parquet dataset")
    _add_model_args(p)
    p.add_argument("--row", type=count("--row"), default=None, help="show one graph of a dataset")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("draw", help="draw a computation graph to PNG/SVG")
    _add_model_args(p)
    p.add_argument("-o", "--output", required=True, type=output_file("picture", (".png", ".svg", ".pdf", ".dot")),
                   help="picture path (.png, .svg, .pdf or .dot)")
    p.add_argument("--row", type=count("--row"), default=None, help="row of a Parquet dataset")
    p.set_defaults(func=cmd_draw)

    from napbench.datasets._cli import add_parsers as add_datasets

    add_datasets(sub)
    try:
        from napbench.evaluation._cli import add_parsers as add_evaluation
    except ImportError:  # pragma: no cover - the evaluation CLI is optional during development
        add_evaluation = None
    if add_evaluation is not None:
        add_evaluation(sub)
    from napbench.flows._cli import add_parsers as add_flows  # serve, publish, flow

    add_flows(sub)

    from napbench.search._cli import add_parsers as add_search

    add_search(sub)
    return parser


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """``warnings.showwarning`` for the CLI: one ``napbench: warning:`` line, no source line."""
    stream = file if file is not None else sys.stderr
    with contextlib.suppress(OSError, ValueError):
        print(f"napbench: warning: {_one_line(str(message)) or category.__name__}", file=stream)


@contextlib.contextmanager
def _cli_environment() -> Iterator[None]:
    """What one CLI run changes, restored afterwards: one-line warnings; quiet TensorFlow start-up.

    ``TF_CPP_MIN_LOG_LEVEL`` is set to 2 only when the user has not set it (TensorFlow reads
    it when first imported), so a run that imports TF does not print C++ info lines.
    """
    tf_key = "TF_CPP_MIN_LOG_LEVEL"
    had_tf = tf_key in os.environ
    if not had_tf:
        os.environ[tf_key] = "2"
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            yield
    finally:
        if not had_tf:
            os.environ.pop(tf_key, None)


def _command_name(argv: Sequence[str]) -> str:
    words = [a for a in argv if not a.startswith("-")][:2]
    if words and words[0] == "datasets" and len(words) > 1:
        return " ".join(words)
    return words[0] if words else "napbench"


def _error(line: str) -> int:
    with contextlib.suppress(OSError, ValueError):
        print(f"napbench: error: {line}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 for any error, 130 when interrupted).

    This is the one place where exceptions escaping a command are turned into one line:
    napbench errors by their message, usage errors by argparse's message, anything else as
    an internal error naming the command (rerun with ``NAPBENCH_DEBUG=1`` for the traceback).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get(DEBUG_ENV) == "1"
    command = _command_name(argv)
    with _cli_environment():
        try:
            args = build_parser().parse_args(argv)
            command = " ".join(x for x in (getattr(args, "command", None), getattr(args, "datasets_command", None)) if x)
            return int(args.func(args) or 0)
        except SystemExit as exc:  # --help / --version
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
        except KeyboardInterrupt:
            _error(f"{command} interrupted")
            return 130
        except BrokenPipeError:  # `napbench ... | head`: the reader left; not an error of ours
            return 0
        except UsageError as exc:
            return _error(_one_line(str(exc)))
        except NapbenchError as exc:
            if debug:
                traceback.print_exc()
            return _error(_one_line(str(exc)) or type(exc).__name__)
        except OSError as exc:
            if debug:
                traceback.print_exc()
            if exc.filename is None and isinstance(exc, FileNotFoundError) and str(exc):
                return _error(_one_line(str(exc)))  # raised by napbench with a full message
            if exc.filename is None:
                return _error(f"internal error in {command}: {type(exc).__name__}: {_one_line(str(exc))}; "
                              f"rerun with {DEBUG_ENV}=1 for the traceback")
            # the environment refused a file operation (permission, read-only or full disk): not a bug of ours
            return _error(f"cannot access {str(exc.filename)!r}: {exc.strerror or type(exc).__name__}")
        except Exception as exc:  # noqa: BLE001 - the one place every other failure becomes one line
            if debug:
                traceback.print_exc()
            msg = _one_line(str(exc))
            return _error(f"internal error in {command}: {type(exc).__name__}{': ' + msg if msg else ''}; "
                          f"rerun with {DEBUG_ENV}=1 for the traceback")


def entry() -> None:  # pragma: no cover - console script
    """Console-script entry point."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader of our stdout left: keep interpreter shutdown quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
