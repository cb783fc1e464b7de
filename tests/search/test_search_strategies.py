"""Every strategy finds the optimum of a tiny synthetic table; budgets are counted exactly."""

from __future__ import annotations

import numpy as np
import pytest

from napbench.errors import InvalidArgumentError, UnknownNameError
from napbench.search import Budget, BudgetExhausted, Constraint, SearchContext, get_strategy, list_strategies, search
from napbench.zoo import get_predictor


class CountingPredictor:
    """A real ``flops`` predictor that also records every graph it is asked to score."""

    def __init__(self) -> None:
        self.inner = get_predictor("flops")
        self.seen: list[str] = []
        self.predictor_name = "flops"

    def predict(self, graphs, *, progress: bool = False) -> np.ndarray:
        self.seen.extend(g.meta["arch"] for g in graphs)
        return self.inner.predict(graphs)


def test_registry_lists_every_strategy() -> None:
    assert {"random", "naswot", "rea", "area", "guided"} <= set(list_strategies())
    with pytest.raises(UnknownNameError, match="expected one of: area, guided"):
        get_strategy("nope")
    with pytest.raises(InvalidArgumentError, match="n_candidates"):
        get_strategy("naswot", n_candidates=0)


@pytest.mark.parametrize(
    ("strategy", "kwargs"),
    [
        ("random", {"budget": Budget(queries=27)}),
        ("rea", {"budget": Budget(queries=20), "options": {"population": 4, "sample": 2}}),
        ("naswot", {"budget": Budget(queries=0), "options": {"n_candidates": 27}}),
        ("area", {"budget": Budget(queries=5), "options": {"n_candidates": 10, "population": 3, "sample": 2}}),
        ("guided", {"budget": Budget(queries=0, predictor_calls=20), "options": {"n_initial": 5, "parents": 2, "children": 5}}),
        ("guided", {"budget": Budget(queries=6, predictor_calls=20), "options": {"n_initial": 5, "parents": 2, "children": 5}}),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_strategy_finds_the_optimum(toy_space, strategy: str, kwargs: dict, seed: int) -> None:
    predictor = get_predictor("flops") if get_strategy(strategy).needs_predictor else None
    r = search(strategy, toy_space, predictor=predictor, seed=seed, **kwargs)
    best_row, best = toy_space.optimum
    assert r.row == best_row and r.true == pytest.approx(best)
    assert r.arch == "16-16-5"
    assert r.flops == toy_space.column("flops")[best_row]


def test_a_tight_budget_does_not_find_it_by_luck(toy_space) -> None:
    # random search with 3 queries on 27 rows misses the optimum for most seeds: the test above can fail
    hits = sum(search("random", toy_space, budget=Budget(queries=3), seed=s).arch == "16-16-5" for s in range(20))
    assert hits < 10


@pytest.mark.parametrize("queries", [0, 1, 7, 17])
def test_queries_counted_exactly(toy_space, queries: int) -> None:
    r = search("rea", toy_space, budget=Budget(queries=queries), seed=3, options={"population": 5, "sample": 2})
    assert r.n_queries == queries
    t = r.trajectory
    assert t.height == queries  # one event per distinct query
    assert t["row"].n_unique() == queries
    assert t["n_queries"].to_list() == list(range(1, queries + 1))
    if queries:
        assert t["value"].to_list() == pytest.approx(toy_space.labels[t["row"].to_numpy()].tolist())


def test_predictor_calls_counted_exactly(toy_space) -> None:
    p = CountingPredictor()
    r = search("guided", toy_space, predictor=p, budget=Budget(queries=4, predictor_calls=13), seed=0,
               options={"n_initial": 5, "parents": 2, "children": 4})
    # every architecture handed to the predictor during the search is one call, none twice
    # (the answer's prediction, printed afterwards, is not a search step)
    during = p.seen[: r.n_predictor_calls]
    assert r.n_predictor_calls == 13 == len(set(during))
    r = search("naswot", toy_space, predictor=CountingPredictor(), budget=Budget(queries=0), seed=0, options={"n_candidates": 9})
    assert (r.n_predictor_calls, r.n_queries) == (9, 0)


def test_budgets_are_hard(toy_space) -> None:
    ctx = SearchContext(toy_space, budget=Budget(queries=2, predictor_calls=3), predictor=get_predictor("flops"))
    ctx.query(0)
    ctx.query(0)  # already trained: free
    ctx.query(1)
    with pytest.raises(BudgetExhausted):
        ctx.query(2)
    ctx.predict([0, 1])
    with pytest.raises(BudgetExhausted):
        ctx.predict([2, 3])  # 2 new > 1 left: refused before any work
    assert (ctx.n_queries, ctx.n_predictor_calls) == (2, 2)
    with pytest.raises(InvalidArgumentError):
        Budget(queries=-1)


def test_naswot_needs_a_predictor(toy_space) -> None:
    with pytest.raises(InvalidArgumentError, match="needs a predictor"):
        search("naswot", toy_space)


@pytest.mark.parametrize("mode", ["hard", "penalty"])
def test_constraint_finds_the_constrained_optimum(toy_space, mode: str) -> None:
    lat = toy_space.column("latency")
    limit = float(np.quantile(lat, 0.4))
    opt_row, opt = toy_space.constrained_optimum("latency", limit)
    assert opt < toy_space.optimum[1]
    c = Constraint("latency", limit, mode=mode, source="table", weight=1e3)
    r = search("random", toy_space, budget=Budget(queries=27), constraint=c, seed=0)
    assert r.row == opt_row and r.cost_true <= limit
    # a fitted latency predictor as the estimate: same answer on this easy table
    lp = get_predictor("latency", alpha=1e-6).fit(toy_space.graphs_for(range(27)), lat)
    c = Constraint("latency", limit, mode=mode, predictor=lp, weight=1e3)
    r = search("area", toy_space, predictor=get_predictor("flops"), budget=Budget(queries=27), constraint=c, seed=1,
               options={"n_candidates": 27})
    assert r.row == opt_row


def test_refit_fits_the_predictor_on_queries(toy_space) -> None:
    r = search("guided", toy_space, predictor=get_predictor("flops"), budget=Budget(queries=12, predictor_calls=200), seed=0,
               refit="fit", options={"n_initial": 6, "parents": 2, "children": 5, "queries_per_generation": 2, "refit_every": 4})
    assert r.n_refits >= 1 and r.n_queries == 12
    # fitted: predictions are on the label's scale
    assert r.predicted == pytest.approx(r.true, abs=0.5)


def test_mutation_neighbours_differ_in_one_element(toy_space) -> None:
    rng = np.random.default_rng(0)
    for row in range(len(toy_space)):
        nb = toy_space.neighbours(row)
        assert nb.size == 6  # 3 positions x 2 other values
        a = toy_space.archs[row].split("-")
        for n in nb:
            assert sum(x != y for x, y in zip(a, toy_space.archs[int(n)].split("-"))) == 1
        assert toy_space.mutate(row, rng) in set(nb.tolist())


class RelativePredictor(CountingPredictor):
    """FLOPs z-scored over the graphs of each call (population-relative, as GENNAPE's features)
    until :meth:`calibrate` freezes the mean and spread from a sample."""

    population_relative = True

    def __init__(self) -> None:
        super().__init__()
        self.frozen: tuple[float, float] | None = None
        self.calibrated_on: list[str] = []

    def calibrate(self, graphs, *, seed: int = 0):
        self.calibrated_on = [g.meta["arch"] for g in graphs]
        f = np.log(self.inner.predict(graphs))
        self.frozen = (float(f.mean()), float(f.std()))
        return self

    def predict(self, graphs, *, progress: bool = False) -> np.ndarray:
        f = np.log(super().predict(graphs))
        mu, sd = self.frozen or (float(f.mean()), float(f.std()) or 1.0)
        return (f - mu) / sd


def test_a_population_relative_predictor_is_calibrated_first_and_counted(toy_space) -> None:
    p = RelativePredictor()
    r = search("guided", toy_space, predictor=p, budget=Budget(queries=3, predictor_calls=20), seed=4,
               calibration=10, options={"n_initial": 4, "parents": 2, "children": 3})
    assert len(p.calibrated_on) == len(set(p.calibrated_on)) == 10 and p.frozen is not None
    assert r.config["calibration"] == 10
    assert r.n_predictor_calls == 20 == 10 + len(set(p.seen[: r.n_predictor_calls - 10]))
    # same seed, same calibration sample; another seed, another sample
    q = RelativePredictor()
    search("guided", toy_space, predictor=q, budget=Budget(queries=3, predictor_calls=20), seed=4, calibration=10,
           options={"n_initial": 4, "parents": 2, "children": 3})
    assert q.calibrated_on == p.calibrated_on
    o = RelativePredictor()
    search("guided", toy_space, predictor=o, budget=Budget(queries=3, predictor_calls=20), seed=5, calibration=10,
           options={"n_initial": 4, "parents": 2, "children": 3})
    assert o.calibrated_on != p.calibrated_on
    # by default: the whole (small) space for a population-relative predictor, nothing for a pointwise one
    d = RelativePredictor()
    assert search("naswot", toy_space, predictor=d, budget=Budget(queries=0), options={"n_candidates": 5}).config["calibration"] == 27
    assert search("naswot", toy_space, predictor=CountingPredictor(), budget=Budget(queries=0),
                  options={"n_candidates": 5}).config["calibration"] == 0
    with pytest.raises(BudgetExhausted, match="calibration on 27 rows"):
        search("naswot", toy_space, predictor=RelativePredictor(), budget=Budget(queries=0, predictor_calls=20))
    with pytest.raises(InvalidArgumentError, match="calibration is -1"):
        search("naswot", toy_space, predictor=RelativePredictor(), calibration=-1)


def test_margin_holds_estimates_below_the_limit_and_measurements_to_it(toy_space) -> None:
    lat = toy_space.column("latency")
    lp = get_predictor("latency", alpha=1e-6).fit(toy_space.graphs_for(range(27)), lat)
    est = lp.predict(toy_space.graphs_for(range(27)))
    limit = float(np.quantile(lat, 0.5))
    c = Constraint("latency", limit, predictor=lp, margin=0.2)
    ctx = SearchContext(toy_space, budget=Budget(queries=27), constraint=c)
    band = [r for r in range(27) if limit * 0.8 < lat[r] <= limit and limit * 0.8 < est[r] <= limit]
    assert band, "the table has cells between limit * (1 - margin) and limit"
    r = band[0]
    assert ctx.objective([r], [1.0])[0] == -np.inf  # estimated: held to limit * 0.8
    ctx.query(r)
    assert ctx.objective([r], [1.0])[0] == 1.0  # measured: held to the limit itself
    np.testing.assert_allclose(ctx.limits([r, (r + 1) % 27]), [limit, limit * 0.8] if (r + 1) % 27 not in ctx.queried else limit)
    with pytest.raises(InvalidArgumentError, match="margin"):
        Constraint("latency", limit, predictor=lp, margin=1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constrained_evolution_trains_children_that_keep_the_constraint(toy_space, seed: int) -> None:
    lat = toy_space.column("latency")
    limit = float(np.quantile(lat, 0.6))
    c = Constraint("latency", limit, source="table")
    r = search("rea", toy_space, budget=Budget(queries=14), constraint=c, seed=seed, options={"population": 4, "sample": 2})
    rows = r.trajectory["row"].to_numpy()
    children = rows[4:]  # after the random initial population, every child is screened by its (here exact) cost
    assert (lat[children] <= limit).all()
    assert r.cost_true <= limit


def test_cost_predictor_relearns_from_measured_queries(toy_space) -> None:
    lat = toy_space.column("latency")
    train = (0, 1, 2, 3)
    lp = get_predictor("latency", alpha=1e-3).fit(toy_space.graphs_for(train), lat[list(train)])
    c = Constraint("latency", float(np.median(lat)), predictor=lp, refit_every=2, train_rows=train)
    ctx = SearchContext(toy_space, budget=Budget(queries=5), constraint=c)
    before = ctx.cost([20])[0]
    for r in (20, 26, 13):
        ctx.query(r)
    # refitted once (after 2 queries) on its 4 cells + the 2 measured ones; the old estimate is forgotten
    ref = get_predictor("latency", alpha=1e-3).fit(toy_space.graphs_for([0, 1, 2, 3, 20, 26]), lat[[0, 1, 2, 3, 20, 26]])
    np.testing.assert_allclose(lp.predict(toy_space.graphs_for(range(27))), ref.predict(toy_space.graphs_for(range(27))))
    assert ctx.cost_estimate([19])[19] == pytest.approx(float(ref.predict(toy_space.graphs_for([19]))[0]))
    assert before != pytest.approx(float(ref.predict(toy_space.graphs_for([20]))[0]))
