"""A search space over a labelled table of architectures.

Search runs over the rows of a family's dataset (or any table of architectures with labels):
every candidate is a row, so "training" a candidate is a lookup of its real label and every
answer can be checked. :class:`SearchSpace` holds the encodings, the true labels, FLOPs,
params and any cost columns (latency, energy), and the encoding-level mutation: a child
differs from its parent in exactly one element of the family's decoded encoding (one edge's
op in NB-201 and TransNAS-Bench-101 micro); where the table holds no architecture at
Hamming distance 1 (sampled tables such as NB-101), the nearest rows are the neighbours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from napbench.errors import InvalidArgumentError, NoLabelsError


def _leaves(spec: Any) -> list[Any]:
    """The encoding as a flat list of hashable leaves (tuples, lists and dataclasses flattened)."""
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        return _leaves([getattr(spec, f.name) for f in dataclasses.fields(spec)])
    if isinstance(spec, (tuple, list)):
        out: list[Any] = []
        for v in spec:
            out.extend(_leaves(v))
        return out
    return [spec]


class SearchSpace:
    """Rows of architectures with true labels, predictors' inputs and encoding-level mutation.

    Build one with :meth:`from_family` (a family's dataset, optionally with HW-NAS-Bench cost
    columns) or :meth:`from_arrays` (any table, e.g. a synthetic one in tests).
    ``graphs_for(rows)`` gives what predictors take: a :class:`~napbench.datasets.GraphDataset`
    subset when the space came from a dataset (predictors read its Arrow table directly).
    """

    def __init__(
        self,
        archs: Sequence[str],
        labels: np.ndarray,
        *,
        family: str = "custom",
        label: str = "label",
        encodings: Sequence[Sequence[Any]] | None = None,
        columns: Mapping[str, np.ndarray] | None = None,
        graphs: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        self.archs = list(archs)
        n = len(self.archs)
        if n == 0:
            raise InvalidArgumentError("the search space has no architectures; expected at least one row")
        self.labels = np.asarray(labels, dtype=np.float64).reshape(-1)
        if self.labels.size != n:
            raise InvalidArgumentError(f"{self.labels.size} labels for {n} architectures; expected one label per row")
        if np.isnan(self.labels).all():
            raise NoLabelsError(f"search space {family!r} has no labels in column {label!r}; expected a labelled table")
        self.family = family
        self.label = label
        self.row_of = {a: i for i, a in enumerate(self.archs)}
        self.columns = {k: np.asarray(v, dtype=np.float64) for k, v in (columns or {}).items()}
        for k, v in self.columns.items():
            if v.shape != (n,):
                raise InvalidArgumentError(f"column {k!r} has shape {v.shape}; expected ({n},)")
        self._graphs = graphs
        self._nb_cache: dict[int, np.ndarray] = {}
        self._codes = self._encode([list(e) for e in encodings] if encodings is not None else [[a] for a in self.archs])

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, archs: Sequence[str], labels: Sequence[float], **kwargs: Any) -> SearchSpace:
        """A space over given architectures and labels (``encodings``: one sequence per row)."""
        return cls(archs, np.asarray(labels, dtype=np.float64), **kwargs)

    @classmethod
    def from_family(
        cls,
        family: str,
        *,
        label: str | None = None,
        root: str | None = None,
        mirror: str | None = None,
        cost_columns: Sequence[str] = (),
        progress: bool = False,
    ) -> SearchSpace:
        """The labelled rows of family ``family``'s dataset (built on first use).

        ``cost_columns`` are extra numeric columns to carry (e.g. ``hw_edgegpu_latency``); an
        NB-201 dataset built before the HW-NAS-Bench columns existed gets them joined here.
        """
        import napbench.datasets as nd

        fam = nd.get_family(family)
        ds = nd.load(family, root, mirror=mirror, progress=progress)
        col = label or ds.default_label
        y = ds.labels(col)
        keep = np.flatnonzero(~np.isnan(y))
        if keep.size == 0:
            raise NoLabelsError(f"family {family!r} has no rows labelled {col!r}; expected a labelled family")
        if keep.size < len(ds):
            ds = ds.subset(keep.tolist())
            y = y[keep]
        # one chunk per column: taking rows from a multi-chunk nested table copies every chunk (~100x slower)
        ds = nd.GraphDataset(ds.name, ds.path, ds.table.combine_chunks(), ds.metadata)
        archs = ds.archs
        cols: dict[str, np.ndarray] = {
            "flops": ds.table.column("flops").to_numpy().astype(np.float64),
            "params": ds.table.column("params").to_numpy().astype(np.float64),
        }
        missing = [c for c in cost_columns if c not in ds.table.column_names]
        if missing:
            from napbench.search.latency import hw_columns

            extra = hw_columns(family, archs, missing, mirror=mirror)
            cols.update(extra)
        for c in [*cost_columns, *(c for c in ds.table.column_names if c.endswith("_latency"))]:
            if c not in cols:
                cols[c] = np.asarray(ds.table.column(c).to_numpy(zero_copy_only=False), dtype=np.float64)
        encodings = [_leaves(fam.decode(a)) for a in archs]

        def graphs(rows: np.ndarray) -> Any:
            return ds.subset([int(r) for r in rows])

        space = cls(archs, y, family=family, label=col, encodings=encodings, columns=cols, graphs=graphs)
        space.dataset = ds
        return space

    # -- views --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.archs)

    def graphs_for(self, rows: Sequence[int] | np.ndarray) -> Any:
        """What predictors take for these rows (a dataset subset, or CompGraphs)."""
        if self._graphs is None:
            raise InvalidArgumentError(
                f"search space {self.family!r} has no graphs; expected a space built from a family (from_family) "
                "or one given a graphs= callable, to use a predictor"
            )
        return self._graphs(np.asarray(rows, dtype=np.int64))

    def column(self, name: str) -> np.ndarray:
        """A numeric column (``flops``, ``params``, cost columns) for every row."""
        try:
            return self.columns[name]
        except KeyError:
            raise InvalidArgumentError(f"search space {self.family!r} has no column {name!r}; expected one of {sorted(self.columns)}") from None

    @property
    def optimum(self) -> tuple[int, float]:
        """Row and value of the best true label."""
        i = int(np.nanargmax(self.labels))
        return i, float(self.labels[i])

    def constrained_optimum(self, column: str, limit: float) -> tuple[int, float]:
        """Row and true label of the best row whose true ``column`` value is at most ``limit``."""
        cost = self.column(column)
        ok = np.flatnonzero((cost <= limit) & ~np.isnan(self.labels))
        if ok.size == 0:
            raise InvalidArgumentError(f"no architecture has {column} <= {limit}; expected a looser limit (min {np.nanmin(cost):.4g})")
        i = int(ok[np.argmax(self.labels[ok])])
        return i, float(self.labels[i])

    # -- random and mutation ------------------------------------------------------------
    def random_rows(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` distinct rows drawn uniformly (a prefix of one seeded permutation)."""
        if n > len(self):
            raise InvalidArgumentError(f"asked for {n} distinct architectures; the space has {len(self)}")
        return rng.permutation(len(self))[:n]

    def _encode(self, encodings: list[list[Any]]) -> np.ndarray:
        width = max(len(e) for e in encodings)
        codes = np.full((len(encodings), width), -1, dtype=np.int64)
        vocab: list[dict[Any, int]] = [{} for _ in range(width)]
        for i, e in enumerate(encodings):
            for j, v in enumerate(e):
                codes[i, j] = vocab[j].setdefault(v, len(vocab[j]))
        return codes

    def neighbours(self, row: int) -> np.ndarray:
        """Rows at the smallest non-zero Hamming distance from ``row`` in the decoded encoding."""
        row = int(row)
        hit = self._nb_cache.get(row)
        if hit is None:
            dist = (self._codes != self._codes[row]).sum(axis=1)
            dist[row] = np.iinfo(dist.dtype).max
            hit = self._nb_cache[row] = np.flatnonzero(dist == dist.min())
        return hit

    def mutate(self, row: int, rng: np.random.Generator) -> int:
        """One uniformly chosen neighbour of ``row`` (see :meth:`neighbours`)."""
        nb = self.neighbours(row)
        return int(nb[rng.integers(nb.size)])
