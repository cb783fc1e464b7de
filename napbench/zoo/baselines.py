"""Training-free baselines as predictors: ``flops``, ``params``, ``zc:<proxy>``, ``zc:vote``.

Each baseline computes a *score* per architecture; higher means "predicted more accurate".

* ``flops`` / ``params``: the natural log of the graph's multiply-adds / learnable
  parameters (``log(max(x, 1))``).
* ``zc:<proxy>``: a zero-cost proxy of :mod:`napbench.zoo.proxies` computed on the real torch
  network at initialisation, squashed by ``sign(s) * log1p(|s|)`` (monotone, so rankings are
  unchanged, but proxies spanning many orders of magnitude become usable by a linear map).
* ``zc:vote``: the rank vote (:func:`~napbench.zoo.proxies.rank_vote`) of every proxy over the
  architectures being scored, rescaled to ``[0, 1]`` (``(vote - 1) / (n - 1)``) so the scale
  does not depend on how many architectures are scored at once.

``fit`` and ``fine_tune`` fit a 1-D least-squares map ``label ~ a * score + b`` so that MAE
is meaningful; the slope is kept positive (at least a tiny epsilon), so the predicted
*ranking* is always the score's ranking and ranking metrics depend on the score only. An
unfitted baseline predicts the raw score.

Zero-cost predictors rebuild each network from the graph's ``family`` / ``arch`` metadata
(``get_family(family).build_torch(arch)`` on the CPU, weights drawn under ``torch.manual_seed
(seed)``), feed seeded inputs of the family's input shape (``inputs``: ``"gaussian"`` or
``"images"``, see :mod:`napbench.zoo.proxies`) and cache every value per ``(family, arch)`` in a
:class:`ProxyCache` (which clones share). ``network`` chooses how the network is made:
``"auto"`` (default) uses the family's torch builder and, for a graph without family metadata
(a user's ONNX/Keras model) or a family without a builder, runs the graph itself through the
CG executor (:func:`napbench.conversion.to_torch`; such values are cached per canonical hash
and use the graph's own input shape, so ``input_size`` does not apply); ``"executor"`` always
runs the graph; ``"builder"`` always rebuilds from the family. ``input_size`` caps the
spatial size of the inputs (``H, W -> min(H, input_size), min(W, input_size)``; None keeps
the family's own): TransNAS-Bench networks take 256x256 inputs, which makes proxies slow on
a CPU, and ``input_size=64`` keeps them tractable while leaving the 32x32 NAS-Bench families
untouched (the networks are fully convolutional up to global pooling, so they accept any
size that survives their down-sampling). The proxy values then describe the network at that
resolution, which is what the ranking needs. Architectures whose proxy is undefined (a
:class:`~napbench.errors.NumericalError`, e.g. a cell of only ``none`` edges has a constant
Jacobian) are ranked below every defined one, with a warning saying how many. Proxies run
with ``threads`` torch intra-op threads (default 1, restored afterwards): on a shared CPU,
oversubscribed threads made them an order of magnitude slower.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from napbench._scoped import seeded_torch
from napbench.errors import InvalidArgumentError, NapbenchError, NumericalError, UnknownNameError
from napbench.zoo._base import (
    GraphsLike,
    Predictor,
    check_graphs_labels,
    graph_keys,
    graph_totals,
    register_plugin,
    register_predictor,
    torch_threads,
)

VOTE = "vote"
#: the fields of a proxy cache key, in order (:meth:`ZeroCostPredictor._key`; score-cache columns)
PROXY_KEY_FIELDS = ("family", "arch", "proxy", "input_size", "batch_size", "seed", "inputs", "network")

#: how a zero-cost predictor gets each network (see the module docstring)
NETWORKS = ("auto", "builder", "executor")
#: cache-key family of graphs run through the executor (keyed by canonical hash)
_CG = "<cg>"


def monotone_linear_fit(score: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y ~ a * score + b`` with ``a`` kept positive.

    When the fitted slope is not positive (or the score is constant) the slope becomes
    ``1e-6 * std(y) / std(score)`` (or 0 for a constant score) and the intercept centres the
    predictions on ``mean(y)``: the predictions then keep the score's order at a near-constant
    value, which is the best MAE a non-increasing map could offer up to that epsilon.
    """
    s = np.asarray(score, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    s_std, t_std = float(s.std()), float(t.std())
    if s.size < 2 or s_std == 0.0:
        return 0.0, float(t.mean())
    a = float(np.cov(s, t, bias=True)[0, 1] / s_std**2)
    eps = 1e-6 * (t_std if t_std > 0 else 1.0) / s_std
    a = max(a, eps)
    return a, float(t.mean() - a * s.mean())


class LinearScorePredictor(Predictor):
    """A training-free score followed by a fitted 1-D linear map (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("coef", torch.tensor([1.0, 0.0], dtype=torch.float64))

    def score(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        """The raw score of each graph (higher = predicted better)."""
        raise NotImplementedError

    def _fit_map(self, stage: str, graphs: GraphsLike, y: Any, progress: bool) -> None:
        t = check_graphs_labels(graphs, y)
        a, b = monotone_linear_fit(self.score(graphs, progress=progress), t)
        self.coef = torch.tensor([a, b], dtype=torch.float64)
        self._record(stage, graphs, t, method="least-squares linear map of the score (slope > 0)", slope=a, intercept=b)

    def fit(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> LinearScorePredictor:
        """Fit the linear map on ``graphs`` (``epochs`` and ``seed`` are accepted and unused)."""
        self._fit_map("fit", graphs, y, progress)
        return self

    def fine_tune(
        self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True
    ) -> LinearScorePredictor:
        """Refit the linear map on the few target samples."""
        self._fit_map("fine_tune", graphs, y, progress)
        return self

    def predict(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        a, b = (float(v) for v in self.coef)
        return a * self.score(graphs, progress=progress) + b


def _log_score(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(x, 1.0))


@register_predictor("flops")
class FlopsPredictor(LinearScorePredictor):
    """log multiply-adds, linearly mapped to the label."""

    description = "Baseline: log of the network's multiply-adds (MACs), linearly mapped to accuracy."

    def __init__(self) -> None:
        super().__init__()

    def score(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        return _log_score(graph_totals(graphs)[0])


@register_predictor("params")
class ParamsPredictor(LinearScorePredictor):
    """log learnable parameters, linearly mapped to the label."""

    description = "Baseline: log of the network's learnable parameters, linearly mapped to accuracy."

    def __init__(self) -> None:
        super().__init__()

    def score(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        return _log_score(graph_totals(graphs)[1])


class ProxyCache:
    """Proxy values per ``(family, arch, proxy, input_size, batch_size, seed)``; ``None`` marks
    an architecture whose proxy is undefined. Not saved in checkpoints; clones share it."""

    def __init__(self) -> None:
        self.values: dict[tuple[Any, ...], float | None] = {}

    def __len__(self) -> int:
        return len(self.values)


class ZeroCostPredictor(LinearScorePredictor):
    """A zero-cost proxy (or the rank vote of all of them) on the rebuilt torch network."""

    description = "Baseline: a zero-cost proxy computed on the network at initialisation, linearly mapped to accuracy."
    cache_factory = ProxyCache

    def __init__(
        self,
        proxy: str = "synflow",
        input_size: int | None = None,
        batch_size: int = 64,
        seed: int = 0,
        cache: ProxyCache | None = None,
        threads: int | None = 1,
        inputs: str = "auto",
        network: str = "auto",
    ) -> None:
        super().__init__()
        from napbench.zoo.proxies import AUTO, INPUT_SOURCES, list_proxies

        if inputs not in INPUT_SOURCES and inputs != AUTO:
            raise UnknownNameError("proxy input source", str(inputs), [*INPUT_SOURCES, AUTO])
        if network not in NETWORKS:
            raise UnknownNameError("proxy network", str(network), list(NETWORKS))
        self.inputs = inputs
        self.network = network

        valid = [*list_proxies(), VOTE]
        if proxy not in valid:
            raise UnknownNameError("proxy", str(proxy), valid)
        if input_size is not None and (not isinstance(input_size, int) or input_size < 1):
            raise InvalidArgumentError(f"input_size is {input_size!r}; expected a positive int or None")
        self.proxy = proxy
        self.input_size = input_size
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.cache = cache if cache is not None else ProxyCache()
        self.threads = threads

    @property
    def predictor_name(self) -> str:
        return f"zc:{self.proxy}"

    def _shared_on_clone(self) -> dict[int, Any]:
        return {id(self.cache): self.cache}

    def checkpoint_config(self) -> dict[str, Any]:
        cfg = super().checkpoint_config()
        cfg.pop("cache", None)
        return cfg

    @property
    def proxies(self) -> list[str]:
        """The proxies this predictor computes."""
        from napbench.zoo.proxies import list_proxies

        return list_proxies() if self.proxy == VOTE else [self.proxy]

    def _key(self, family: str, arch: str, proxy: str) -> tuple[Any, ...]:
        """The cache key of one value, fields in ``PROXY_KEY_FIELDS`` order."""
        from napbench.zoo.proxies import input_source

        return (family, arch, proxy, self.input_size, self.batch_size, self.seed, input_source(proxy, self.inputs), self.network)

    def _compute(self, family: str, arch: str, proxies: list[str], graph: Any = None) -> None:
        from napbench.datasets import get_family

        fam = None
        if family != _CG and self.network != "executor":
            try:
                fam = get_family(family)
            except UnknownNameError:
                if self.network == "builder" or graph is None:
                    raise
        if fam is not None:
            c, h, w = fam.arch_input_shape(arch)
            shape = (c, min(h, self.input_size), min(w, self.input_size)) if self.input_size else (c, h, w)
            try:
                with seeded_torch(self.seed):
                    model = fam.build_torch(arch)
            except NotImplementedError:
                if self.network == "builder" or graph is None:
                    raise
            else:
                with torch_threads(self.threads):
                    self._run_proxies(family, arch, model, shape, fam.num_classes, proxies)
                return
        from napbench.zoo.proxies import graph_network

        with torch_threads(self.threads):
            model, shape, num_classes = graph_network(graph(), seed=self.seed)
            self._run_proxies(family, arch, model, shape, num_classes, proxies)

    def _run_proxies(self, family: str, arch: str, model: Any, shape: tuple[int, int, int], num_classes: int,
                     proxies: list[str]) -> None:
        from napbench.zoo.proxies import compute_proxy

        for p in proxies:
            try:
                value: float | None = compute_proxy(p, model, shape, num_classes, batch_size=self.batch_size, seed=self.seed,
                                                    inputs=self.inputs)
            except NumericalError:
                value = None
            self.cache.values[self._key(family, arch, p)] = value

    def raw_scores(self, graphs: GraphsLike, *, progress: bool = False) -> dict[str, np.ndarray]:
        """Proxy values (NaN where undefined) per proxy, one per graph."""
        from tqdm.auto import tqdm

        keys = graph_keys(graphs)
        decoded: list[Any] = []

        def graph_at(i: int) -> Any:
            if not decoded:
                decoded.append(graphs.graphs if hasattr(graphs, "table") and hasattr(graphs, "graphs") else graphs)
            return decoded[0][i]

        where: dict[tuple[str, str], int] = {}
        for i, (fam, arch) in enumerate(keys):
            if not fam or not arch or self.network == "executor":
                if self.network == "builder":
                    raise InvalidArgumentError(
                        f"graph {i} has no family/arch metadata; expected graphs of a napbench family "
                        f"({self.predictor_name} with network='builder' rebuilds the torch network from them)"
                    )
                keys[i] = (_CG, graph_at(i).canonical_hash)
            where.setdefault(keys[i], i)
        todo = list(dict.fromkeys(k for k in keys if any(self._key(*k, p) not in self.cache.values for p in self.proxies)))
        for fam, arch in tqdm(todo, desc=self.predictor_name, unit="net", disable=not progress):
            i = where[(fam, arch)]
            self._compute(fam, arch, [p for p in self.proxies if self._key(fam, arch, p) not in self.cache.values],
                          lambda i=i: graph_at(i))
        out = {}
        for p in self.proxies:
            vals = [self.cache.values[self._key(f, a, p)] for f, a in keys]
            out[p] = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
        return out

    def score(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        from napbench.zoo.proxies import rank_vote

        raw = self.raw_scores(graphs, progress=progress)
        filled = {p: _fill_undefined(p, v) for p, v in raw.items()}
        if self.proxy != VOTE:
            s = filled[self.proxy]
            return np.sign(s) * np.log1p(np.abs(s))
        n = len(next(iter(filled.values())))
        vote = rank_vote(filled)
        return (vote - 1.0) / (n - 1) if n > 1 else np.full(n, 0.5)


def _fill_undefined(proxy: str, v: np.ndarray) -> np.ndarray:
    bad = np.isnan(v)
    if not bad.any():
        return v
    if bad.all():
        raise NumericalError(f"proxy {proxy!r} is undefined for all {v.size} architectures; expected at least one finite value")
    warnings.warn(
        f"proxy {proxy!r} is undefined for {int(bad.sum())} of {v.size} architectures; ranking them below the rest",
        stacklevel=3,
    )
    lo = float(np.min(v[~bad]))
    return np.where(bad, lo - 1.0 - abs(lo), v)


def _register_zero_cost() -> None:
    try:
        from napbench.zoo.proxies import list_proxies
    except ImportError as exc:  # pragma: no cover - proxies ship with napbench
        raise NapbenchError(f"zero-cost proxies unavailable ({exc}); expected napbench.zoo.proxies") from None
    for p in [*list_proxies(), VOTE]:
        register_predictor(f"zc:{p}", ZeroCostPredictor, proxy=p)


register_plugin(_register_zero_cost)
