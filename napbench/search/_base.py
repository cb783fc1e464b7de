"""Search strategies: one interface, a registry, budgets counted exactly.

A strategy searches a :class:`~napbench.search.SearchSpace` through a :class:`SearchContext`,
which is the only way to learn anything about a candidate:

* ``ctx.query(row)`` "trains" a candidate: it returns the row's real label and counts one
  **query**. A row already queried is answered from the history at no cost (nobody retrains
  a network they have trained), so ``n_queries`` is the number of distinct rows queried.
* ``ctx.predict(rows)`` scores candidates with the predictor and counts one **predictor call
  per architecture scored**; scores are memoised per row until the predictor changes
  (``ctx.refit()``), so ``n_predictor_calls`` is the number of distinct (row, predictor
  state) pairs scored.

A predictor whose outputs are relative to the graphs scored together (``population_relative``,
e.g. GENNAPE) is first **calibrated** (``ctx.calibrate(n)``, :meth:`Predictor.calibrate`): it
freezes its population statistics from ``n`` seeded random rows of the space (no label read;
``n`` predictor calls counted), so that a strategy's small screening calls score every
candidate on one scale (``calibration=None`` in :func:`search`: ``CALIBRATION_SIZE`` rows for
such predictors, none for pointwise ones). A refit that fits from scratch calibrates again.

Both budgets are hard: a request that would exceed one raises :class:`BudgetExhausted`
*before* any work (strategies size their requests with ``ctx.queries_left`` /
``ctx.predictions_left``; the runner stops a strategy that runs into a budget).

A latency (or any cost) constraint makes the context rank candidates by an *objective*:
``hard`` drops candidates whose estimated cost exceeds the limit, ``penalty`` subtracts
``weight * max(0, cost / limit - 1)`` from their score (MONAS-style). The cost estimate is a
cost predictor's output (e.g. ``latency``) or, with ``cost_source="table"``, the table's own
value. The strategy's answer is, unless it chooses one itself, the queried row with the best
objective (or, with no queries, the best predicted one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from napbench.errors import InvalidArgumentError, NapbenchError, UnknownNameError
from napbench.search._space import SearchSpace

#: rows a population-relative predictor is calibrated on when :func:`search` is not told (``calibration=None``)
CALIBRATION_SIZE = 1000


class BudgetExhausted(NapbenchError):
    """A strategy asked for more queries or predictor calls than its budget allows."""


@dataclass(frozen=True)
class Budget:
    """How much a search may spend: real-label queries and predictor calls (None: unlimited)."""

    queries: int | None = 150
    predictor_calls: int | None = None

    def __post_init__(self) -> None:
        for name in ("queries", "predictor_calls"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, np.integer)) or v < 0):
                raise InvalidArgumentError(f"budget {name} is {v!r}; expected a non-negative int or None")


@dataclass(frozen=True)
class Constraint:
    """Keep ``column`` (e.g. ``hw_edgegpu_latency``) at most ``limit``.

    ``mode``: ``"hard"`` (infeasible candidates are never chosen) or ``"penalty"``
    (objective minus ``weight * max(0, cost / limit - 1)``). ``predictor``: a fitted cost
    predictor giving the estimate; None with ``source="table"`` reads the true column.
    ``measure_queried``: a candidate that was trained (queried) also has its cost measured
    (the table's value), so the answer -- the best queried -- is judged on its real cost and
    the predictor only screens candidates not trained yet.
    ``margin``: a candidate judged by the *estimate* (not trained yet) must keep it at most
    ``limit * (1 - margin)``, so that the estimate's error near the limit wastes fewer queries
    on truly infeasible candidates; measured costs are judged against ``limit`` itself.
    ``refit_every``: every that many queries the cost predictor is refitted on its training
    rows (``train_rows``) plus every trained candidate's measured cost, so that it learns the
    region the search is in (0: never).
    """

    column: str
    limit: float
    mode: str = "hard"
    weight: float = 10.0
    predictor: Any = None
    source: str = "predictor"
    measure_queried: bool = True
    margin: float = 0.0
    refit_every: int = 0
    train_rows: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("hard", "penalty"):
            raise InvalidArgumentError(f"constraint mode {self.mode!r}; expected 'hard' or 'penalty'")
        if self.source not in ("predictor", "table"):
            raise InvalidArgumentError(f"constraint source {self.source!r}; expected 'predictor' or 'table'")
        if self.source == "predictor" and self.predictor is None:
            raise InvalidArgumentError("constraint source 'predictor' needs a fitted cost predictor; expected predictor=...")
        if not (isinstance(self.limit, (int, float)) and math.isfinite(self.limit) and self.limit > 0):
            raise InvalidArgumentError(f"constraint limit {self.limit!r}; expected a positive finite number")
        if not (isinstance(self.margin, (int, float)) and 0.0 <= self.margin < 1.0):
            raise InvalidArgumentError(f"constraint margin {self.margin!r}; expected 0 <= margin < 1")
        if not isinstance(self.refit_every, int) or self.refit_every < 0:
            raise InvalidArgumentError(f"constraint refit_every {self.refit_every!r}; expected an int >= 0")


class SearchContext:
    """What a strategy may use: the space, a seeded RNG, counted queries and predictions."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        budget: Budget,
        predictor: Any = None,
        constraint: Constraint | None = None,
        seed: int = 0,
        refit: str | None = None,
    ) -> None:
        if refit not in (None, "fit", "fine_tune"):
            raise InvalidArgumentError(f"refit {refit!r}; expected None, 'fit' or 'fine_tune'")
        self.space = space
        self.budget = budget
        self.predictor = predictor
        self.constraint = constraint
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        self.refit_mode = refit
        self.queried: dict[int, float] = {}
        self.n_predictor_calls = 0
        self.n_refits = 0
        self.calibration_rows: np.ndarray | None = None
        self._pred: dict[int, float] = {}
        self._cost: dict[int, float] = {}
        self.n_cost_calls = 0
        self.events: list[dict[str, Any]] = []
        self.chosen: int | None = None
        self._t0 = time.perf_counter()

    # -- budgets ------------------------------------------------------------------------
    @property
    def n_queries(self) -> int:
        """Distinct rows queried so far."""
        return len(self.queried)

    @property
    def queries_left(self) -> float:
        """Queries left (``inf`` when unlimited)."""
        q = self.budget.queries
        return math.inf if q is None else q - self.n_queries

    @property
    def predictions_left(self) -> float:
        """Predictor calls left (``inf`` when unlimited; 0 without a predictor)."""
        if self.predictor is None:
            return 0
        p = self.budget.predictor_calls
        return math.inf if p is None else p - self.n_predictor_calls

    # -- queries ------------------------------------------------------------------------
    def query(self, row: int) -> float:
        """The real label of ``row`` (one query unless already queried)."""
        row = int(row)
        if row in self.queried:
            return self.queried[row]
        if self.queries_left < 1:
            raise BudgetExhausted(f"query budget of {self.budget.queries} used up")
        y = float(self.space.labels[row])
        self.queried[row] = y
        best = self.best_queried()
        self.events.append({
            "event": "query", "n_queries": self.n_queries, "n_predictor_calls": self.n_predictor_calls,
            "row": row, "value": y, "best_row": best, "best_true": float(self.space.labels[best]),
            "seconds": time.perf_counter() - self._t0,
        })
        c = self.constraint
        if c is not None and c.refit_every and c.predictor is not None and self.n_queries % c.refit_every == 0:
            self.refit_cost()
        return y

    def refit_cost(self) -> None:
        """Refit the cost predictor on its training rows plus every queried row's measured cost; forgets its estimates."""
        c = self.constraint
        if c is None or c.predictor is None or c.column not in self.space.columns:
            return
        true = self.space.column(c.column)
        rows = np.array(sorted({*map(int, c.train_rows), *self.queried}), dtype=np.int64)
        rows = rows[~np.isnan(true[rows])]
        if rows.size >= 2:
            c.predictor.fit(self.space.graphs_for(rows), true[rows], seed=self.seed, progress=False)
            self._cost.clear()

    # -- predictions --------------------------------------------------------------------
    def predict(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Predicted labels for ``rows`` (memoised; one call per new row)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self.predictor is None:
            raise InvalidArgumentError("this search has no predictor; expected predictor=... for this strategy")
        new = list(dict.fromkeys(int(r) for r in rows if int(r) not in self._pred))
        if len(new) > self.predictions_left:
            raise BudgetExhausted(
                f"{len(new)} new predictions asked with {self.predictions_left} of {self.budget.predictor_calls} left"
            )
        if new:
            out = np.asarray(self.predictor.predict(self.space.graphs_for(new)), dtype=np.float64).reshape(-1)
            if out.size != len(new):
                raise NapbenchError(f"predictor returned {out.size} values for {len(new)} graphs; expected one per graph")
            self.n_predictor_calls += len(new)
            self._pred.update(zip(new, out.tolist()))
        return np.array([self._pred[int(r)] for r in rows], dtype=np.float64)

    def calibrate(self, n: int) -> int:
        """Calibrate the predictor on ``n`` seeded random rows (label-free; ``n`` predictor calls); returns n.

        The rows come from their own seeded stream, so the strategy's random draws do not move.
        """
        if self.predictor is None:
            raise InvalidArgumentError("this search has no predictor to calibrate; expected predictor=...")
        n = int(min(n, len(self.space)))
        if n > self.predictions_left:
            raise BudgetExhausted(f"calibration on {n} rows asked with {self.predictions_left} of {self.budget.predictor_calls} predictor calls left")
        rows = np.sort(np.random.default_rng((self.seed, 31)).choice(len(self.space), size=n, replace=False))
        calibrate = getattr(self.predictor, "calibrate", None)  # a plain object with predict() only: nothing to freeze
        if calibrate is not None:
            calibrate(self.space.graphs_for(rows), seed=self.seed)
        self.n_predictor_calls += n
        self.calibration_rows = rows
        self._pred.clear()
        return n

    def predicted(self, row: int) -> float | None:
        """The memoised prediction of ``row`` (None when never scored under this predictor state)."""
        return self._pred.get(int(row))

    def refit(self) -> bool:
        """Fit (``refit="fit"``) or fine-tune the predictor on every queried row; forgets memoised scores.

        Returns False (and does nothing) without a predictor, a refit mode or enough queries (2).
        """
        if self.predictor is None or self.refit_mode is None or self.n_queries < 2:
            return False
        rows = list(self.queried)
        y = np.array([self.queried[r] for r in rows])
        graphs = self.space.graphs_for(rows)
        if self.refit_mode == "fit":
            self.predictor.fit(graphs, y, seed=self.seed, progress=False)
            if self.calibration_rows is not None and self.calibration_rows.size <= self.predictions_left:
                self.calibrate(self.calibration_rows.size)  # fit dropped the statistics with the model they were taken on
        else:
            self.predictor.fine_tune(graphs, y, seed=self.seed, progress=False)
        self._pred.clear()
        self.n_refits += 1
        return True

    # -- constraint and objective -------------------------------------------------------
    def cost(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Estimated constrained cost of ``rows`` (NaN-free; zeros without a constraint)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        c = self.constraint
        if c is None:
            return np.zeros(rows.size)
        if c.source == "table":
            return self.space.column(c.column)[rows]
        if c.measure_queried and c.column in self.space.columns:
            true = self.space.column(c.column)
            est = self.cost_estimate([int(r) for r in rows if int(r) not in self.queried])
            return np.array([true[int(r)] if int(r) in self.queried else est[int(r)] for r in rows], dtype=np.float64)
        est = self.cost_estimate(rows.tolist())
        return np.array([est[int(r)] for r in rows], dtype=np.float64)

    def cost_estimate(self, rows: Sequence[int]) -> dict[int, float]:
        """The cost predictor's estimates for ``rows`` (memoised) as a row -> value map."""
        c = self.constraint
        assert c is not None and c.predictor is not None
        new = list(dict.fromkeys(int(r) for r in rows if int(r) not in self._cost))
        if new:
            out = np.asarray(c.predictor.predict(self.space.graphs_for(new)), dtype=np.float64).reshape(-1)
            self.n_cost_calls += len(new)
            self._cost.update(zip(new, out.tolist()))
        return {int(r): self._cost[int(r)] for r in rows}

    def objective(self, rows: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """``values`` (labels or predictions of ``rows``) adjusted by the constraint."""
        v = np.asarray(values, dtype=np.float64).copy()
        c = self.constraint
        if c is None:
            return v
        cost = self.cost(rows)
        limit = self.limits(rows)
        if c.mode == "hard":
            v[cost > limit] = -np.inf
        else:
            v -= c.weight * np.maximum(0.0, cost / limit - 1.0)
        return v

    def keeps(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Whether the constraint leaves each row's score as it is (its cost, measured or estimated,
        keeps its limit): :meth:`objective` does not lower a zero score. All True without a constraint."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        return self.objective(rows, np.zeros(rows.size)) >= 0.0

    def limits(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The limit each row's cost is held to: ``limit`` when measured, ``limit * (1 - margin)`` when estimated."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        c = self.constraint
        assert c is not None
        out = np.full(rows.size, float(c.limit))
        if c.margin and c.source == "predictor":
            measured = np.array([c.measure_queried and int(r) in self.queried and c.column in self.space.columns for r in rows],
                                dtype=bool)
            out[~measured] *= 1.0 - c.margin
        return out

    def best_queried(self) -> int:
        """The queried row with the best objective (ties: first queried)."""
        rows = list(self.queried)
        obj = self.objective(rows, [self.queried[r] for r in rows])
        return rows[int(np.argmax(obj))]

    def choose(self, row: int) -> None:
        """Record the strategy's answer (otherwise: the best queried / best predicted row)."""
        self.chosen = int(row)


@dataclass
class SearchResult:
    """What a search found and what it spent."""

    strategy: str
    family: str
    label: str
    seed: int
    row: int
    arch: str
    true: float
    predicted: float | None
    flops: float | None
    params: float | None
    cost: float | None
    cost_true: float | None
    latency: dict[str, float]
    n_queries: int
    n_predictor_calls: int
    n_refits: int
    seconds: float
    trajectory: Any = field(repr=False)
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """Human-readable lines for the CLI."""
        def f(v: Any, spec: str = ".3f") -> str:
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

        lines = [
            f"strategy   {self.strategy} on {self.family} (seed {self.seed})",
            f"best       {self.arch}",
            f"accuracy   true {f(self.true)} ({self.label}), predicted {f(self.predicted)}",
            f"FLOPs      {f(self.flops, ',.0f')} MACs, params {f(self.params, ',.0f')}",
        ]
        if self.latency:
            lines.append("latency    " + ", ".join(f"{k.removeprefix('hw_').removesuffix('_latency')} {v:.3f} ms"
                                                   for k, v in self.latency.items()) + " (HW-NAS-Bench table)")
        if self.config.get("constraint"):
            c = self.config["constraint"]
            lines.append(f"{c['column']}  estimated {f(self.cost)}, true {f(self.cost_true)} (limit {c['limit']}, {c['mode']})")
        lines.append(f"spent      {self.n_queries} queries, {self.n_predictor_calls} predictor calls, {self.seconds:.1f} s")
        return "\n".join(lines)


class SearchStrategy:
    """Base class: subclasses implement :meth:`search` using only the context."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: whether the strategy cannot work without a predictor
    needs_predictor: ClassVar[bool] = False

    def search(self, ctx: SearchContext) -> None:
        """Spend the context's budget; optionally ``ctx.choose(row)``."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The strategy's keyword options."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


_STRATEGIES: dict[str, type[SearchStrategy]] = {}


def register_strategy(name: str) -> Callable[[type[SearchStrategy]], type[SearchStrategy]]:
    """Class decorator registering a :class:`SearchStrategy` under ``name``."""

    def _add(cls: type[SearchStrategy]) -> type[SearchStrategy]:
        if name in _STRATEGIES and _STRATEGIES[name] is not cls:
            raise InvalidArgumentError(f"strategy {name!r} is already registered; expected a new name")
        cls.name = name
        _STRATEGIES[name] = cls
        return cls

    return _add


def _ensure_loaded() -> None:
    import napbench.search.strategies  # noqa: F401  (registers the built-in strategies)


def list_strategies() -> list[str]:
    """Names of every registered strategy, sorted."""
    _ensure_loaded()
    return sorted(_STRATEGIES)


def get_strategy(name: str, **options: Any) -> SearchStrategy:
    """A strategy ``name`` built with its keyword ``options``; unknown names list the valid ones."""
    _ensure_loaded()
    try:
        cls = _STRATEGIES[name]
    except KeyError:
        raise UnknownNameError("search strategy", str(name), list(_STRATEGIES)) from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise InvalidArgumentError(f"strategy {name!r}: {exc}") from None


def search(
    strategy: str | SearchStrategy,
    space: SearchSpace,
    *,
    budget: Budget | None = None,
    predictor: Any = None,
    constraint: Constraint | None = None,
    seed: int = 0,
    refit: str | None = None,
    options: dict[str, Any] | None = None,
    calibration: int | None = None,
) -> SearchResult:
    """Run one search and return its :class:`SearchResult` (the trajectory is a polars frame).

    ``calibration``: rows the predictor is calibrated on before the strategy runs (counted as
    predictor calls); None: ``CALIBRATION_SIZE`` for a ``population_relative`` predictor, else 0.
    """
    import polars as pl

    strat = get_strategy(strategy, **(options or {})) if isinstance(strategy, str) else strategy
    if strat.needs_predictor and predictor is None:
        raise InvalidArgumentError(f"strategy {strat.name!r} needs a predictor; expected predictor=... (see napbench.zoo.list_predictors())")
    budget = budget or Budget()
    ctx = SearchContext(space, budget=budget, predictor=predictor, constraint=constraint, seed=seed, refit=refit)
    if calibration is None:
        calibration = CALIBRATION_SIZE if getattr(predictor, "population_relative", False) else 0
    if not isinstance(calibration, (int, np.integer)) or isinstance(calibration, bool) or calibration < 0:
        raise InvalidArgumentError(f"calibration is {calibration!r}; expected a non-negative int or None")
    t0 = time.perf_counter()
    if calibration and predictor is not None:
        ctx.calibrate(int(calibration))
    try:
        strat.search(ctx)
    except BudgetExhausted:
        pass
    seconds = time.perf_counter() - t0
    row = _answer(ctx)
    if row is None:
        raise NapbenchError(f"strategy {strat.name!r} found nothing: no query, no prediction and no choice within the budget")
    pred = ctx.predicted(row)
    if pred is None and ctx.predictor is not None:  # reported only: not a search step, not counted
        pred = float(np.asarray(ctx.predictor.predict(space.graphs_for([row]))).reshape(-1)[0])
    cost = float(ctx.cost([row])[0]) if constraint is not None else None
    cost_true = float(space.column(constraint.column)[row]) if constraint is not None and constraint.column in space.columns else None
    traj = pl.DataFrame(ctx.events, schema={
        "event": pl.String, "n_queries": pl.Int64, "n_predictor_calls": pl.Int64, "row": pl.Int64, "value": pl.Float64,
        "best_row": pl.Int64, "best_true": pl.Float64, "seconds": pl.Float64,
    })
    traj = traj.with_columns(pl.col("row").map_elements(lambda r: space.archs[r], return_dtype=pl.String).alias("arch"))
    cfg: dict[str, Any] = {
        "strategy": strat.name, "options": strat.config(), "budget": {"queries": budget.queries, "predictor_calls": budget.predictor_calls},
        "predictor": getattr(predictor, "predictor_name", None) if predictor is not None else None, "refit": refit,
        "calibration": 0 if ctx.calibration_rows is None else int(ctx.calibration_rows.size),
    }
    if constraint is not None:
        cfg["constraint"] = {"column": constraint.column, "limit": constraint.limit, "mode": constraint.mode, "source": constraint.source}
    return SearchResult(
        strategy=strat.name, family=space.family, label=space.label, seed=seed, row=row, arch=space.archs[row],
        true=float(space.labels[row]), predicted=pred,
        flops=float(space.columns["flops"][row]) if "flops" in space.columns else None,
        params=float(space.columns["params"][row]) if "params" in space.columns else None,
        cost=cost, cost_true=cost_true,
        latency={k: float(v[row]) for k, v in space.columns.items() if k.endswith("_latency") and not np.isnan(v[row])},
        n_queries=ctx.n_queries, n_predictor_calls=ctx.n_predictor_calls,
        n_refits=ctx.n_refits, seconds=seconds, trajectory=traj, config=cfg,
    )


def _answer(ctx: SearchContext) -> int | None:
    if ctx.chosen is not None:
        return ctx.chosen
    if ctx.queried:
        return ctx.best_queried()
    if ctx._pred:
        rows = list(ctx._pred)
        obj = ctx.objective(rows, [ctx._pred[r] for r in rows])
        return rows[int(np.argmax(obj))]
    return None
