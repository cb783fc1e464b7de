"""Search with predictors: strategies over labelled tables, graph-level mutation, hardware cost.

* :func:`search` runs one strategy (``random``, ``naswot``, ``rea``, ``area``, ``guided``;
  :func:`list_strategies`) over a :class:`SearchSpace` with a :class:`Budget` of real-label
  queries and predictor calls, optionally under a latency :class:`Constraint`;
  :func:`run` is the one-call entry point the CLI and the Prefect flow wrap (family,
  predictor by name or checkpoint, seeds, trajectory Parquet and plot).
* :mod:`napbench.search.mutation`: mutations of a computation graph itself (GENNAPE-style
  search beyond any family's encoding), within a FLOPs/params budget.
* :mod:`napbench.search.latency`: HW-NAS-Bench cost columns and onnxruntime latency
  measurement; the ``latency`` predictor lives in :mod:`napbench.zoo.latency`.
"""

import napbench.zoo.latency  # noqa: F401  (registers the ``latency`` predictor)
from napbench.search._base import (
    Budget,
    BudgetExhausted,
    Constraint,
    SearchContext,
    SearchResult,
    SearchStrategy,
    get_strategy,
    list_strategies,
    register_strategy,
    search,
)
from napbench.search._cache import load_score_cache, save_score_cache
from napbench.search._run import resolve_predictor, run
from napbench.search._space import SearchSpace

__all__ = [
    "Budget", "BudgetExhausted", "Constraint", "SearchContext", "SearchResult", "SearchSpace", "SearchStrategy",
    "get_strategy", "list_strategies", "load_score_cache", "register_strategy", "resolve_predictor", "run",
    "save_score_cache", "search",
]
