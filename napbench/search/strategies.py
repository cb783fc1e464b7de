"""The built-in search strategies (each registered by name; see :mod:`napbench.search._base`).

Every strategy draws its first random sample as a prefix of one seeded permutation of the
space (:meth:`SearchSpace.random_rows`), so two strategies with the same seed start from the
same candidates, and proxy scores cached for one serve the other.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from napbench.errors import InvalidArgumentError
from napbench.search._base import SearchContext, SearchStrategy, register_strategy


def _positive(name: str, v: int) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise InvalidArgumentError(f"{name} is {v!r}; expected a positive int")
    return int(v)


def _finite_queries(ctx: SearchContext, who: str) -> int:
    left = ctx.queries_left
    if math.isinf(left):
        raise InvalidArgumentError(f"strategy {who!r} needs a finite query budget; expected budget queries=N")
    return int(min(left, len(ctx.space)))


def _fresh_child(ctx: SearchContext, parent: int, seen: set[int] | dict[int, float], tries: int = 50) -> int | None:
    """A mutation of ``parent`` not in ``seen`` (a random unseen row after ``tries`` misses; None when all are seen)."""
    for _ in range(tries):
        child = ctx.space.mutate(parent, ctx.rng)
        if child not in seen:
            return child
    if len(seen) >= len(ctx.space):
        return None
    while True:
        r = int(ctx.rng.integers(len(ctx.space)))
        if r not in seen:
            return r


def _screened_child(ctx: SearchContext, parent: int, seen: set[int] | dict[int, float], tries: int = 20) -> int | None:
    """Under a constraint: the first of up to ``tries`` fresh children whose estimated cost keeps the
    constraint (:meth:`SearchContext.keeps`); failing that, the first of ``tries`` random unseen rows
    that keeps it; else the first child."""
    first = None
    for k in range(2 * tries if ctx.constraint is not None else 1):
        child = _fresh_child(ctx, parent, seen) if k < tries else _fresh_child(ctx, parent, seen, tries=0)
        if child is None or ctx.constraint is None or ctx.keeps([child])[0]:
            return child
        first = child if first is None else first
    return first


def _evolve(ctx: SearchContext, population: deque[int], sample: int) -> None:
    """Regularised (aging) evolution: tournament of ``sample``, mutate the winner, drop the oldest.

    Under a constraint, the tournament is drawn from the members that keep it (measured) when
    there are any, and the child is screened by its estimated cost (:func:`_screened_child`).
    """
    while ctx.queries_left >= 1 and population:
        members = list(population)
        if ctx.constraint is not None:
            members = [r for r, k in zip(members, ctx.keeps(members)) if k] or members
        idx = ctx.rng.choice(len(members), size=min(sample, len(members)), replace=False)
        cands = [members[int(i)] for i in idx]
        obj = ctx.objective(cands, [ctx.queried[r] for r in cands])
        parent = cands[int(np.argmax(obj))]
        child = _screened_child(ctx, parent, ctx.queried)
        if child is None:
            return
        ctx.query(child)
        population.append(child)
        population.popleft()


@register_strategy("random")
class RandomSearch(SearchStrategy):
    """Query uniformly random distinct architectures until the query budget is spent."""

    description = "random search: query random architectures, keep the best"

    def search(self, ctx: SearchContext) -> None:
        n = _finite_queries(ctx, self.name)
        rows = ctx.space.random_rows(ctx.rng, max(n, 1))
        if n == 0:
            ctx.choose(int(rows[0]))
            return
        for r in rows[:n]:
            ctx.query(int(r))


@register_strategy("naswot")
class NASWOT(SearchStrategy):
    """Training-free: score ``n_candidates`` random architectures with the predictor, keep the best (no query)."""

    description = "NASWOT-style: score N random candidates with a predictor or proxy, keep the best"
    needs_predictor = True

    def __init__(self, *, n_candidates: int = 100) -> None:
        self.n_candidates = _positive("n_candidates", n_candidates)

    def search(self, ctx: SearchContext) -> None:
        n = int(min(self.n_candidates, len(ctx.space), ctx.predictions_left))
        if n < 1:
            raise InvalidArgumentError("NASWOT has no predictor call left; expected a predictor budget of at least 1")
        rows = ctx.space.random_rows(ctx.rng, n)
        obj = ctx.objective(rows, ctx.predict(rows))
        ctx.choose(int(rows[int(np.argmax(obj))]))


@register_strategy("rea")
class REA(SearchStrategy):
    """Regularised evolution (Real et al. 2019): random initial population, aging tournament selection."""

    description = "regularised evolution: random population, tournament of `sample`, mutate, drop the oldest"

    def __init__(self, *, population: int = 10, sample: int = 3) -> None:
        self.population = _positive("population", population)
        self.sample = _positive("sample", sample)

    def search(self, ctx: SearchContext) -> None:
        n = _finite_queries(ctx, self.name)
        init = ctx.space.random_rows(ctx.rng, min(self.population, len(ctx.space)))
        if n == 0:  # nothing can be trained: a random answer, as random search gives
            ctx.choose(int(init[0]))
            return
        init = init[:n]
        for r in init:
            ctx.query(int(r))
        _evolve(ctx, deque(int(r) for r in init), self.sample)


@register_strategy("area")
class AREA(SearchStrategy):
    """Assisted REA (Mellor et al. 2021): the initial population is the top-scored of ``n_candidates`` random ones."""

    description = "AREA: score N random candidates, the top `population` seed regularised evolution"
    needs_predictor = True

    def __init__(self, *, n_candidates: int = 1000, population: int = 10, sample: int = 3) -> None:
        self.n_candidates = _positive("n_candidates", n_candidates)
        self.population = _positive("population", population)
        self.sample = _positive("sample", sample)

    def search(self, ctx: SearchContext) -> None:
        n = _finite_queries(ctx, self.name)
        m = int(min(self.n_candidates, len(ctx.space), ctx.predictions_left))
        if m < 1:
            raise InvalidArgumentError("AREA has no predictor call left; expected a predictor budget of at least 1")
        rows = ctx.space.random_rows(ctx.rng, m)
        obj = ctx.objective(rows, ctx.predict(rows))
        top = rows[np.argsort(-obj, kind="stable")][: min(self.population, n)]
        if n == 0:
            ctx.choose(int(top[0]) if top.size else int(rows[int(np.argmax(obj))]))
            return
        for r in top:
            ctx.query(int(r))
        _evolve(ctx, deque(int(r) for r in top), self.sample)


@register_strategy("guided")
class PredictorGuidedEvolution(SearchStrategy):
    """Predictor-guided evolution (GENNAPE's search over a family's encoding).

    Start from ``n_initial`` random candidates scored by the predictor; each generation
    mutates the ``parents`` best-predicted candidates that still have unscored neighbours
    (the search frontier) into up to ``children`` new ones, which
    the predictor screens; the ``queries_per_generation`` best-predicted children are
    "trained" (queried) while queries remain, and with ``refit`` the predictor is fitted or
    fine-tuned on everything queried every ``refit_every`` queries (``refit="fit"`` first trains
    ``refit_every`` random candidates, so a predictor that learns only from queries, e.g. an
    untrained k-GNN, has something to start from; after a refit the ``5 * parents`` best
    candidates are re-scored). Stops when the predictor
    budget is spent, ``generations`` have run, or no new child can be made. With no query
    budget the answer is the best-predicted candidate (a zero-query search).
    """

    description = "predictor-guided evolution: mutate the predicted-best, screen children with the predictor, query the top"
    needs_predictor = True

    def __init__(
        self,
        *,
        n_initial: int = 100,
        parents: int = 10,
        children: int = 100,
        queries_per_generation: int = 5,
        generations: int = 200,
        refit_every: int = 10,
    ) -> None:
        self.n_initial = _positive("n_initial", n_initial)
        self.parents = _positive("parents", parents)
        self.children = _positive("children", children)
        self.queries_per_generation = _positive("queries_per_generation", queries_per_generation)
        self.generations = _positive("generations", generations)
        self.refit_every = _positive("refit_every", refit_every)

    def search(self, ctx: SearchContext) -> None:
        m = int(min(self.n_initial, len(ctx.space), ctx.predictions_left))
        if m < 1:
            raise InvalidArgumentError("guided search has no predictor call left; expected a predictor budget of at least 1")
        scored: dict[int, float] = {}
        rows = ctx.space.random_rows(ctx.rng, m)
        if ctx.refit_mode == "fit" and ctx.queries_left >= 2:
            # learning from scratch: train the first `refit_every` random candidates, fit, then screen
            for r in rows[: int(min(self.refit_every, ctx.queries_left))]:
                ctx.query(int(r))
            ctx.refit()
        scored.update(zip(rows.tolist(), ctx.predict(rows).tolist()))
        self._query_top(ctx, rows, scored)
        last_refit = ctx.n_queries
        for _ in range(self.generations):
            if ctx.refit_mode and ctx.n_queries - last_refit >= self.refit_every and ctx.refit():
                last_refit = ctx.n_queries
                # re-score only the best of the old ranking (the next parents come from there): a refit
                # must not spend the predictor budget on the whole pool
                keep = sorted(scored, key=lambda r: -scored[r])[: int(min(5 * self.parents, ctx.predictions_left))]
                if not keep:
                    return
                scored = dict(zip(keep, ctx.predict(keep).tolist()))
            budget = int(min(self.children, ctx.predictions_left))
            kids = self._children(ctx, scored, budget)
            if not kids:  # neighbourhoods exhausted: train the best-predicted untrained candidates instead
                if ctx.queries_left < 1 or all(r in ctx.queried for r in scored):
                    return
                self._query_top(ctx, np.asarray(list(scored)), scored)
                continue
            scored.update(zip(kids, ctx.predict(kids).tolist()))
            self._query_top(ctx, np.asarray(kids), scored)

    def _children(self, ctx: SearchContext, scored: dict[int, float], budget: int) -> list[int]:
        """Up to ``budget`` unscored mutations of the best-predicted candidates that still have unscored neighbours."""
        pool = list(scored)
        obj = ctx.objective(pool, [scored[r] for r in pool])
        frontier: list[np.ndarray] = []
        for i in np.argsort(-obj, kind="stable"):
            free = [int(n) for n in ctx.space.neighbours(pool[int(i)]) if int(n) not in scored]
            if free:
                frontier.append(np.asarray(free))
                if len(frontier) >= self.parents:
                    break
        kids: list[int] = []
        if budget < 1:
            return kids
        seen: set[int] = set()
        k = 0
        while frontier and len(kids) < budget:
            free = frontier[k % len(frontier)]
            child = int(free[ctx.rng.integers(free.size)])
            if child not in seen:
                seen.add(child)
                kids.append(child)
            k += 1
            if k > 20 * budget:
                break
        return kids

    def _query_top(self, ctx: SearchContext, rows: np.ndarray, scored: dict[int, float]) -> None:
        k = int(min(self.queries_per_generation, ctx.queries_left))
        if k < 1:
            return
        cand = [int(r) for r in rows if int(r) not in ctx.queried]
        if not cand:
            return
        obj = ctx.objective(cand, [scored[r] for r in cand])
        for i in np.argsort(-obj, kind="stable")[:k]:
            ctx.query(cand[int(i)])
