"""Build and load family datasets (``raw -> processed`` with skip-if-present).

``build(name)`` writes ``<root>/<family>.parquet``: one row per architecture (the CG in the
napbench schema) plus the family's real label columns. ``load(name)`` returns the dataset,
building it when missing and rebuilding it when the recorded converter or vocabulary version
differs from the running code (a stale-cache warning says so).

Root: the ``root`` argument, then ``$NAPBENCH_HOME``, then ``~/.cache/napbench``.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from napbench.conversion.graph import CompGraph
from napbench.conversion.storage import (
    GRAPH_COLUMNS,
    atomic_write_table,
    graphs_from_arrow,
    graphs_to_arrow,
    read_metadata,
    read_table,
)
from napbench.conversion.vocab import VOCAB_VERSION
from napbench.datasets._registry import get_family
from napbench.errors import InvalidArgumentError, NoLabelsError, SchemaError, VersionMismatchError

HOME_ENV = "NAPBENCH_HOME"


def default_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Dataset root: argument, then ``$NAPBENCH_HOME``, then ``~/.cache/napbench``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "napbench"


def dataset_path(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where the Parquet file of family ``name`` lives."""
    return default_root(root) / f"{name}.parquet"


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: the worker is killed when the process that started it dies.

    Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere a daemon thread polls the parent.
    Then, if the parent died before the call took effect, exit at once.
    """
    import signal
    import sys

    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            armed = False
    if not armed:  # pragma: no cover - non-Linux
        import threading

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="napbench-parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:
        os._exit(1)


def _build_chunk(args: tuple[str, list[str]]) -> pa.Table:
    name, archs = args
    fam = get_family(name)
    return graphs_to_arrow([fam.build_cg(a) for a in archs])


def build_graphs_table(
    name: str, archs: Sequence[str], *, workers: int | None = None, progress: bool = True, chunk: int = 256
) -> pa.Table:
    """CGs of ``archs`` as an Arrow table, built in ``workers`` processes with a progress bar."""
    from tqdm.auto import tqdm

    workers = workers or min(2, os.cpu_count() or 1)
    chunks = [list(archs[i : i + chunk]) for i in range(0, len(archs), chunk)]
    tables: list[pa.Table] = []
    bar = tqdm(total=len(archs), desc=f"build {name}", unit="net", disable=not progress)
    if workers <= 1 or len(chunks) <= 1:
        for c in chunks:
            tables.append(_build_chunk((name, c)))
            bar.update(len(c))
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(
            workers, mp_context=mp.get_context("fork"), initializer=_die_with_parent, initargs=(os.getpid(),)
        ) as ex:
            for c, t in zip(chunks, ex.map(_build_chunk, [(name, c) for c in chunks])):
                tables.append(t)
                bar.update(len(c))
    bar.close()
    return pa.concat_tables(tables).combine_chunks()


def _check_count(what: str, value: int | None, *, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgumentError(f"{what}={value!r}; expected None or an integer >= {minimum}")


def build(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    mirror: str | os.PathLike[str] | None = None,
    archs: Sequence[str] | None = None,
    limit: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Build family ``name`` into ``<root>/<name>.parquet`` and return the path.

    Labelled families are built over the architectures of their label tables (every row gets
    its real labels); unlabelled ones over :meth:`Family.default_archs`. ``archs`` overrides
    the set, ``limit`` keeps the first ``limit`` of it. Labels are loaded *before* anything is
    written, so a bad mirror leaves an existing dataset untouched.
    """
    _check_count("limit", limit, minimum=0)
    _check_count("workers", workers, minimum=1)
    fam = get_family(name)
    t0 = time.perf_counter()
    labels = fam.load_labels(mirror=str(mirror) if mirror is not None else None) if fam.labelled else None
    if archs is None:
        archs = labels["arch"].to_list() if labels is not None else fam.default_archs()
    archs = list(dict.fromkeys(archs))
    if limit is not None:
        archs = archs[:limit]
    table = build_graphs_table(name, archs, workers=workers, progress=progress)
    label_cols: list[str] = []
    if labels is not None:
        import polars as pl

        order = pl.DataFrame({"arch": archs})
        joined = order.join(labels, on="arch", how="left", maintain_order="left")
        for col in joined.columns:
            if col == "arch":
                continue
            if col in GRAPH_COLUMNS:
                raise SchemaError(f"label column {col!r} of family {name!r} clashes with a graph column")
            table = table.append_column(col, joined[col].to_arrow())
            label_cols.append(col)
    from napbench.conversion import CONVERTER_VERSION
    from napbench.conversion.storage import _file_metadata

    md = {
        "family": name,
        "n_archs": len(archs),
        "default_label": fam.default_label if labels is not None else None,
        "description": fam.description,
        "build_seconds": round(time.perf_counter() - t0, 3),
        "input_shape": list(fam.input_shape),
        "num_classes": fam.num_classes,
        "space_size": fam.space_size,
    }
    table = table.replace_schema_metadata(_file_metadata(md, label_cols))
    del CONVERTER_VERSION
    return atomic_write_table(table, dataset_path(name, root))


@dataclass
class GraphDataset:
    """A loaded family dataset: the Arrow table plus convenient views.

    ``graphs`` materialises CompGraphs lazily (once); ``labels(col)`` returns a float array
    (NaN where an architecture has no label); ``frame()`` is the polars view of the
    non-graph columns.

    A :meth:`subset` takes its rows of the parent's table on first use of ``table``;
    :meth:`column` reads one column of those rows without taking the nested graph columns (the
    costly part: NB-201's node lists hold 2.8 million structs).
    """

    name: str
    path: Path
    table: pa.Table
    metadata: dict[str, Any]
    _graphs: list[CompGraph] | None = field(default=None, repr=False)
    #: values derived from the graphs by their users (e.g. packed node features), computed once per
    #: dataset object and never saved; a subset starts empty
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def _pending(self) -> tuple[pa.Table, pa.Array] | None:
        """``(parent table, rows)`` of a subset whose rows are not taken yet, else None."""
        return None if "table" in self.__dict__ else self.__dict__.get("_rows_of")

    def __len__(self) -> int:
        pending = self._pending()
        return len(pending[1]) if pending is not None else self.table.num_rows

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: a subset's ``table`` before its first use
        pending = self._pending() if name == "table" else None
        if pending is not None:
            table = pending[0].take(pending[1])
            self.__dict__["table"] = self.__dict__["_taken"] = table
            return table
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> dict[str, Any]:
        # a pickled subset carries its own rows, not its parent's whole table (process-based runners)
        state = dict(self.__dict__)
        pending = self._pending()
        if pending is not None:
            state["table"] = pending[0].take(pending[1])  # taken for the copy only
        for k in ("_rows_of", "_taken", "_columns"):
            state.pop(k, None)
        return state

    def column(self, name: str) -> pa.ChunkedArray:
        """The column ``name`` (a subset takes just this column of its parent's rows, once)."""
        pending = self._pending()
        if pending is None:
            return self.table.column(name)
        columns = self.__dict__.setdefault("_columns", {})
        if name not in columns:
            columns[name] = pending[0].column(name).take(pending[1])
        return columns[name]

    @property
    def column_names(self) -> list[str]:
        """Names of the table's columns."""
        pending = self._pending()
        return list(pending[0].column_names if pending is not None else self.table.column_names)

    def table_key(self) -> object:
        """An object that stays the same while ``table`` holds the same rows (a lazily taken subset
        keeps its key when the rows are taken; assigning another table changes it): the key values
        derived from the table, such as packed features, are kept under."""
        lazy = self.__dict__.get("_rows_of")
        table = self.__dict__.get("table")
        if lazy is not None and (table is None or table is self.__dict__.get("_taken")):
            return lazy
        return self.table

    @property
    def label_columns(self) -> list[str]:
        """Label columns recorded in the file metadata."""
        return list(self.metadata.get("label_columns") or [])

    @property
    def default_label(self) -> str | None:
        """The label column evaluation uses by default."""
        return self.metadata.get("default_label")

    @property
    def graphs(self) -> list[CompGraph]:
        """All CGs (decoded once, then cached)."""
        if self._graphs is None:
            self._graphs = graphs_from_arrow(self.table.select(GRAPH_COLUMNS), validate=False)
        return self._graphs

    @property
    def archs(self) -> list[str]:
        """Canonical architecture encodings, row order."""
        return self.column("arch").to_pylist()

    def labels(self, column: str | None = None) -> np.ndarray:
        """Float label array for ``column`` (default label when None)."""
        col = column or self.default_label
        if col is None:
            raise NoLabelsError(f"family {self.name!r} has no labels here; expected a labelled family ({_labelled()})")
        if col not in self.column_names:
            raise NoLabelsError(f"dataset {self.name!r} has no label column {col!r}; expected one of {self.label_columns}")
        return np.asarray(self.column(col).to_numpy(zero_copy_only=False), dtype=float)

    def frame(self) -> Any:
        """polars DataFrame of every column except the nested graph structure."""
        import polars as pl

        keep = [c for c in self.table.column_names if c not in ("nodes", "edges", "outputs")]
        return pl.from_arrow(self.table.select(keep))

    def subset(self, rows: Sequence[int]) -> GraphDataset:
        """A dataset of the given rows (graphs shared, not re-decoded; the table's rows taken on first use)."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
            raise InvalidArgumentError(f"subset row {bad} is out of range; expected rows in [0, {n}) of {self.name!r}")
        pending = self._pending()
        source = (pending[0], pending[1].take(pa.array(idx))) if pending is not None else (self.table, pa.array(idx))
        sub = GraphDataset(self.name, self.path, source[0], self.metadata)
        del sub.__dict__["table"]  # taken from ``source`` on first use (__getattr__)
        sub.__dict__["_rows_of"] = source
        if self._graphs is not None:
            sub._graphs = [self._graphs[i] for i in idx.tolist()]
        return sub


def _labelled() -> str:
    from napbench.datasets._registry import list_families

    return ", ".join(n for n in list_families() if get_family(n).labelled)


def _is_stale(path: Path) -> str | None:
    from napbench.conversion import CONVERTER_VERSION

    try:
        md = read_metadata(path)
    except SchemaError as exc:
        return str(exc)
    if md.get("vocab_version") != VOCAB_VERSION:
        return f"vocabulary {md.get('vocab_version')} != {VOCAB_VERSION}"
    if md.get("converter_version") != CONVERTER_VERSION:
        return f"converter {md.get('converter_version')} != {CONVERTER_VERSION}"
    return None


def load(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    mirror: str | os.PathLike[str] | None = None,
    force_reload: bool = False,
    progress: bool = True,
) -> GraphDataset:
    """The dataset of family ``name``: read when present and current, else (re)built first."""
    import pyarrow.parquet as pq

    get_family(name)  # unknown names fail here, listing the valid ones
    path = dataset_path(name, root)
    if force_reload or not path.exists():
        build(name, root, mirror=mirror, progress=progress)
    else:
        stale = _is_stale(path)
        if stale:
            warnings.warn(f"dataset {str(path)!r} is stale ({stale}); rebuilding it", stacklevel=2)
            try:  # rebuild the same architectures the stale file held
                archs = pq.read_table(path, columns=["arch"]).column("arch").to_pylist()
            except (pa.ArrowException, KeyError, OSError, ValueError):
                archs = None
            build(name, root, mirror=mirror, archs=archs, progress=progress)
    md = read_metadata(path)
    if md.get("vocab_version") != VOCAB_VERSION:  # pragma: no cover - build() always writes the current one
        raise VersionMismatchError(f"{path} still has vocabulary {md.get('vocab_version')}")
    return GraphDataset(name, path, read_table(path), md)


def load_file(path: str | os.PathLike[str]) -> GraphDataset:
    """A dataset from an explicit Parquet path (no building)."""
    from napbench.conversion.storage import check_versions

    md = check_versions(path)
    return GraphDataset(str(md.get("family") or Path(path).stem), Path(path), read_table(path), md)
