"""Transfer protocols for performance predictors, and their GENNAPE-shaped reports.

Protocols
---------
* **zero-shot transfer** (:func:`zero_shot`): a predictor fitted on *source* families predicts
  every labelled architecture of a *target* family (or a seeded sample of ``max_eval`` of
  them); metrics compare the predictions with the real labels.
* **k-shot fine-tuning** (:func:`k_shot`): for each of ``seeds`` seeds, a fixed random sample
  of ``shots`` labelled target architectures (drawn with ``numpy.random.default_rng((
  sample_seed, seed))``) fine-tunes a *clone* of the predictor; the remaining architectures
  (capped at ``max_eval`` with the same generator) are evaluated. Metrics are reported as mean
  and standard deviation over seeds.
* **leave-one-family-out** (:func:`leave_one_family_out`): for each family of
  :data:`LOFO_FAMILIES` (NB-101, NB-201, NB-301, TransNAS-Bench-101 micro and macro; TransNAS
  label ``class_object``) every predictor is trained on the other families, then evaluated
  zero-shot and k-shot on the held-out one.

``max_train`` caps each *source* family's training architectures (seeded sample), so quick
runs stay quick. Labels come from each family's default label column (``labels`` overrides
it per family); architectures without a label are dropped.

Reports
-------
:class:`TransferReport` collects one :class:`Cell` per (target family, setting, predictor),
setting being ``zero-shot`` or ``fine-tuned``. :meth:`TransferReport.write` writes into an
output folder:

* ``table.md`` and ``table.csv`` -- shaped like GENNAPE's tables: rows are target family x
  setting, columns are predictors, each cell ``SRCC / KT / NDCG@10 / MAE`` (fine-tuned cells
  ``mean±std`` over seeds). MAE shows ``-`` for a predictor never fitted to labels (a raw
  training-free score has no label scale);
* ``metrics.csv`` -- the same numbers in long form (one row per target, setting, predictor,
  seed and metric) and ``metrics.json`` (means and standard deviations);
* ``pred_vs_true_<family>.png`` -- predicted against true label, one panel per predictor
  (zero-shot, plus fine-tuned seed 0);
* ``ndcg_<family>.png`` -- NDCG@k over k for every predictor (zero-shot solid, fine-tuned
  dashed, mean over seeds).

Every file is written atomically (temporary file + rename).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napbench.errors import InvalidArgumentError, NapbenchError, NoLabelsError

if TYPE_CHECKING:  # pragma: no cover
    from napbench.datasets import GraphDataset
    from napbench.zoo import Predictor

#: the families of the leave-one-family-out protocol (GENNAPE's labelled families)
LOFO_FAMILIES: tuple[str, ...] = ("nb201", "nb101", "nb301", "transnas101_micro", "transnas101_macro")
#: label columns the protocols use where a family's default differs (none differ today)
DEFAULT_LABELS: dict[str, str] = {"transnas101_micro": "class_object", "transnas101_macro": "class_object"}
ZERO_SHOT = "zero-shot"
FINE_TUNED = "fine-tuned"
#: metrics shown in table cells, in order
CELL_METRICS = ("srcc", "kt", "ndcg@10", "mae")


@dataclass(frozen=True)
class ProtocolConfig:
    """Typed options of every protocol (the CLI fills it from params.yaml and flags).

    Attributes:
        shots: target architectures that fine-tune the predictor (0 skips k-shot).
        seeds: repetitions of k-shot fine-tuning, with seeds ``0 .. seeds-1``.
        max_eval: cap on evaluated architectures per target family (None: all).
        max_train: cap on training architectures per source family (None: all).
        sample_seed: seed of every architecture sample (eval caps, train caps, k-shot draws).
        fit_seed: seed of predictor training.
        epochs: training epochs (None: the predictor's default).
        fine_tune_epochs: fine-tuning epochs (None: the predictor's default).
        ks: NDCG cut-offs reported in the metrics (the table shows NDCG@10).
        labels: label column per family, overriding the family's default.
        zc_input_size: cap on the spatial input size of zero-cost proxies (None: the family's own).
        zc_batch_size: batch of the proxies' synthetic inputs.
        root, mirror: dataset root and data mirror (None: ``$NAPBENCH_HOME`` / ``$NAPBENCH_MIRROR``).
        progress: tqdm progress bars.
        plots: write the PNG plots.
    """

    shots: int = 50
    seeds: int = 5
    max_eval: int | None = None
    max_train: int | None = None
    sample_seed: int = 0
    fit_seed: int = 0
    epochs: int | None = None
    fine_tune_epochs: int | None = None
    ks: tuple[int, ...] = (10,)
    labels: Mapping[str, str] = field(default_factory=dict)
    zc_input_size: int | None = None
    zc_batch_size: int = 64
    root: str | None = None
    mirror: str | None = None
    progress: bool = True
    plots: bool = True

    def __post_init__(self) -> None:
        for name in ("shots", "seeds", "max_eval", "max_train", "epochs", "fine_tune_epochs", "zc_input_size"):
            v = getattr(self, name)
            lo = 0 if name == "shots" else 1
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < lo):
                raise InvalidArgumentError(f"{name} is {v!r}; expected an int >= {lo}" + (" or None" if name != "shots" else ""))
        if self.seeds is None:
            raise InvalidArgumentError("seeds is None; expected an int >= 1")
        if not self.ks or any(not isinstance(k, int) or k < 1 for k in self.ks):
            raise InvalidArgumentError(f"ks is {self.ks!r}; expected positive ints")


# -- data ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Labelled:
    """A family's labelled architectures: the dataset rows and their labels."""

    family: str
    label: str
    dataset: GraphDataset
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> tuple[GraphDataset, np.ndarray]:
        """Rows ``rows`` (positions into this labelled set) as a dataset and labels."""
        rows = np.asarray(rows, dtype=np.int64)
        return self.dataset.subset(rows.tolist()), self.y[rows]


def labelled(family: str, cfg: ProtocolConfig) -> Labelled:
    """The labelled architectures of ``family`` (built on first use, like ``napbench.datasets.load``).

    Raises :class:`NoLabelsError` for a family without labels here.
    """
    from napbench.datasets import get_family, list_families, load

    fam = get_family(family)
    if not fam.labelled:
        valid = [n for n in list_families() if get_family(n).labelled]
        raise NoLabelsError(f"family {family!r} has no labels here; expected a labelled family ({', '.join(valid)})")
    label = cfg.labels.get(family) or DEFAULT_LABELS.get(family) or fam.default_label
    ds = load(family, cfg.root, mirror=cfg.mirror, progress=cfg.progress)
    y = ds.labels(label)
    keep = np.flatnonzero(np.isfinite(y))
    if keep.size == 0:
        raise NoLabelsError(f"family {family!r} has no finite {label!r} labels in {ds.path}; expected labelled rows")
    if keep.size < len(y):
        ds = ds.subset(keep.tolist())
        y = y[keep]
    return Labelled(family, str(label), ds, y)


def sample_rows(n: int, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """All of ``range(n)`` or, with ``cap < n``, a sorted seeded sample of ``cap`` of them."""
    if cap is None or cap >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=cap, replace=False)).astype(np.int64)


def concat_datasets(parts: Sequence[GraphDataset], name: str) -> GraphDataset:
    """The graph columns of several datasets in one (label columns dropped)."""
    import pyarrow as pa

    from napbench.conversion.storage import GRAPH_COLUMNS
    from napbench.datasets import GraphDataset

    table = pa.concat_tables([p.table.select(GRAPH_COLUMNS) for p in parts])
    return GraphDataset(name, Path(name), table, {"family": name})


def training_set(sources: Sequence[str], cfg: ProtocolConfig) -> tuple[GraphDataset, np.ndarray]:
    """The union of the source families' labelled architectures (each capped at ``max_train``)."""
    if not sources:
        raise InvalidArgumentError("no source families; expected at least one family to train on")
    parts, ys = [], []
    for i, fam in enumerate(dict.fromkeys(sources)):
        data = labelled(fam, cfg)
        rows = sample_rows(len(data), cfg.max_train, np.random.default_rng((cfg.sample_seed, 1, i)))
        ds, y = data.take(rows)
        parts.append(ds)
        ys.append(y)
    return concat_datasets(parts, "+".join(dict.fromkeys(sources))), np.concatenate(ys)


# -- predictors ---------------------------------------------------------------------------
def build_predictor(name: str, cfg: ProtocolConfig, *, cache: Any = None, caches: dict[Any, Any] | None = None,
                    **kwargs: Any) -> Predictor:
    """A fresh registered predictor; ``zc:*`` ones get the config's proxy options.

    A predictor class with a ``cache_factory`` gets ``cache`` when it is an instance of that
    factory, else the one instance of it kept in ``caches`` (created on first use), so
    predictors of one run share proxy values, pretrained encoders and embeddings.
    """
    from napbench.zoo import get_predictor, predictor_class

    if name.startswith("zc:"):
        kwargs = {"input_size": cfg.zc_input_size, "batch_size": cfg.zc_batch_size, **kwargs}
    factory = getattr(predictor_class(name), "cache_factory", None)
    if factory is not None and "cache" not in kwargs:
        if cache is not None and isinstance(cache, factory):
            kwargs["cache"] = cache
        elif caches is not None:
            kwargs["cache"] = caches.setdefault(factory, factory())
    if name.startswith("gennape") or "root" in kwargs:
        import inspect

        params = inspect.signature(predictor_class(name).__init__).parameters
        for k in ("root", "mirror"):
            if k in params and k not in kwargs:
                kwargs[k] = getattr(cfg, k)
    return get_predictor(name, **kwargs)


def fit_predictor(predictor: Predictor, sources: Sequence[str], cfg: ProtocolConfig) -> Predictor:
    """Fit ``predictor`` on the source families (see :func:`training_set`); returns it."""
    ds, y = training_set(sources, cfg)
    return predictor.fit(ds, y, epochs=cfg.epochs, seed=cfg.fit_seed, progress=cfg.progress)


# -- results ------------------------------------------------------------------------------
@dataclass
class Cell:
    """The result of one predictor on one target family in one setting.

    ``runs`` holds one metrics dict per seed (one entry for zero-shot); ``preds`` the matching
    ``(y_true, y_pred)`` pairs; ``error`` a one-line message when the metrics were undefined.
    """

    target: str
    setting: str
    predictor: str
    runs: list[dict[str, float]] = field(default_factory=list)
    preds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    n_eval: int = 0
    fitted: bool = True
    error: str | None = None

    @property
    def mean(self) -> dict[str, float]:
        """Mean of each metric over runs."""
        keys = self.runs[0].keys() if self.runs else []
        return {k: float(np.mean([r[k] for r in self.runs])) for k in keys}

    @property
    def std(self) -> dict[str, float]:
        """Standard deviation (ddof 0) of each metric over runs."""
        keys = self.runs[0].keys() if self.runs else []
        return {k: float(np.std([r[k] for r in self.runs])) for k in keys}

    def text(self, metrics: Sequence[str] = CELL_METRICS) -> str:
        """The table cell: ``SRCC / KT / NDCG@10 / MAE`` (``mean±std`` when there are several runs)."""
        if self.error:
            return f"error: {self.error}"
        mean, std, several = self.mean, self.std, len(self.runs) > 1
        parts = []
        for m in metrics:
            if m not in mean or (m == "mae" and not self.fitted):
                parts.append("-")
                continue
            fmt = "{:.2f}" if m == "mae" else "{:.3f}"
            parts.append(fmt.format(mean[m]) + (("±" + fmt.format(std[m])) if several else ""))
        return " / ".join(parts)


def _metrics(y_true: np.ndarray, y_pred: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    from napbench.evaluation.metrics import evaluate_all

    ks = tuple(dict.fromkeys([*ks, 10]))
    if len(y_true) < max(ks):
        raise InvalidArgumentError(f"only {len(y_true)} architectures to evaluate; expected at least {max(ks)} for NDCG@{max(ks)}")
    return evaluate_all(y_true, y_pred, ks=ks)


def _score_cell(cell: Cell, y_true: np.ndarray, y_pred: np.ndarray, ks: Sequence[int]) -> None:
    cell.preds.append((np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)))
    try:
        cell.runs.append(_metrics(y_true, y_pred, ks))
    except NapbenchError as exc:
        msg = str(exc).splitlines()[0]
        cell.error = msg
        warnings.warn(f"{cell.predictor} on {cell.target} ({cell.setting}): {msg}", stacklevel=3)


def zero_shot(predictor: Predictor, target: str | Labelled, cfg: ProtocolConfig, *, name: str | None = None) -> Cell:
    """Predict the target's labelled architectures (capped at ``max_eval``) and score them."""
    data = target if isinstance(target, Labelled) else labelled(target, cfg)
    rows = sample_rows(len(data), cfg.max_eval, np.random.default_rng((cfg.sample_seed, 2)))
    ds, y = data.take(rows)
    cell = Cell(data.family, ZERO_SHOT, name or predictor.predictor_name, n_eval=len(y), fitted=predictor.is_fitted)
    _score_cell(cell, y, predictor.predict(ds, progress=cfg.progress), cfg.ks)
    return cell


def k_shot(predictor: Predictor, target: str | Labelled, cfg: ProtocolConfig, *, name: str | None = None) -> Cell:
    """Fine-tune a clone on ``shots`` target samples per seed; evaluate on the rest (mean ± std)."""
    data = target if isinstance(target, Labelled) else labelled(target, cfg)
    if cfg.shots < 1:
        raise InvalidArgumentError("shots is 0; expected at least one fine-tuning architecture for k-shot")
    need = cfg.shots + max(*cfg.ks, 10)
    if len(data) < need:
        raise InvalidArgumentError(
            f"family {data.family!r} has {len(data)} labelled architectures; expected at least {need} "
            f"({cfg.shots} shots + {need - cfg.shots} to evaluate)"
        )
    cell = Cell(data.family, FINE_TUNED, name or predictor.predictor_name, fitted=True)
    from tqdm.auto import tqdm

    for seed in tqdm(range(cfg.seeds), desc=f"{cell.predictor} {cfg.shots}-shot {data.family}", unit="seed", disable=not cfg.progress):
        rng = np.random.default_rng((cfg.sample_seed, 3, seed))
        perm = rng.permutation(len(data))
        shots, rest = np.sort(perm[: cfg.shots]), np.sort(perm[cfg.shots :])
        rest = rest[sample_rows(len(rest), cfg.max_eval, rng)]
        tuned = predictor.clone()
        ds_k, y_k = data.take(shots)
        tuned.fine_tune(ds_k, y_k, epochs=cfg.fine_tune_epochs, seed=seed, progress=False)
        ds_e, y_e = data.take(rest)
        _score_cell(cell, y_e, tuned.predict(ds_e), cfg.ks)
        cell.n_eval = len(y_e)
        if cell.error:
            break
    return cell


@dataclass
class TransferReport:
    """Cells of a protocol run, in insertion order, plus what produced them."""

    cells: list[Cell] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def predictors(self) -> list[str]:
        return list(dict.fromkeys(c.predictor for c in self.cells))

    @property
    def rows(self) -> list[tuple[str, str]]:
        """(target, setting) rows in insertion order (zero-shot before fine-tuned)."""
        targets = list(dict.fromkeys(c.target for c in self.cells))
        order = {ZERO_SHOT: 0, FINE_TUNED: 1}
        rows = []
        for t in targets:
            settings = sorted({c.setting for c in self.cells if c.target == t}, key=lambda s: order.get(s, 2))
            rows += [(t, s) for s in settings]
        return rows

    def cell(self, target: str, setting: str, predictor: str) -> Cell | None:
        for c in self.cells:
            if (c.target, c.setting, c.predictor) == (target, setting, predictor):
                return c
        return None

    def table(self) -> list[list[str]]:
        """Header + one row per (target, setting): GENNAPE's shape."""
        preds = self.predictors
        out = [["family", "setting", *preds]]
        for t, s in self.rows:
            row = [t, s]
            for p in preds:
                c = self.cell(t, s, p)
                row.append(c.text() if c else "")
            out.append(row)
        return out

    def to_markdown(self) -> str:
        tab = self.table()
        lines = [
            "Cells: SRCC / KT / NDCG@10 / MAE" + (" (fine-tuned: mean±std over seeds)" if any(len(c.runs) > 1 for c in self.cells) else ""),
            "",
            "| " + " | ".join(tab[0]) + " |",
            "|" + "---|" * len(tab[0]),
        ]
        lines += ["| " + " | ".join(r) + " |" for r in tab[1:]]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(self.table())
        return buf.getvalue()

    def long_rows(self) -> list[dict[str, Any]]:
        """One dict per (target, setting, predictor, seed, metric)."""
        rows = []
        for c in self.cells:
            for seed, run in enumerate(c.runs):
                for m, v in run.items():
                    if m == "mae" and not c.fitted:
                        continue
                    rows.append({"target": c.target, "setting": c.setting, "predictor": c.predictor, "seed": seed,
                                 "n_eval": c.n_eval, "metric": m, "value": v})
        return rows

    def summary(self) -> dict[str, Any]:
        """Means and standard deviations per cell (JSON-able)."""
        out: dict[str, Any] = {"info": self.info, "results": []}
        for c in self.cells:
            mean = {k: v for k, v in c.mean.items() if k != "mae" or c.fitted}
            std = {k: v for k, v in c.std.items() if k != "mae" or c.fitted}
            out["results"].append({"target": c.target, "setting": c.setting, "predictor": c.predictor, "n_eval": c.n_eval,
                                   "runs": len(c.runs), "mean": mean, "std": std, "error": c.error})
        return out

    def write(self, out: str | os.PathLike[str], *, plots: bool = True) -> list[Path]:
        """Write tables, metrics and (with ``plots``) PNGs into ``out``; returns the written paths."""
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        written = [
            _atomic_text(d / "table.md", self.to_markdown()),
            _atomic_text(d / "table.csv", self.to_csv()),
            _atomic_text(d / "metrics.json", json.dumps(self.summary(), indent=2, sort_keys=True) + "\n"),
        ]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["target", "setting", "predictor", "seed", "n_eval", "metric", "value"], lineterminator="\n")
        w.writeheader()
        w.writerows(self.long_rows())
        written.append(_atomic_text(d / "metrics.csv", buf.getvalue()))
        if plots:
            for t in dict.fromkeys(c.target for c in self.cells):
                written += [p for p in (plot_pred_vs_true(self, t, d), plot_ndcg_curve(self, t, d)) if p is not None]
        return written


# -- protocols ----------------------------------------------------------------------------


def _named(predictors: Sequence[Any] | Mapping[str, Any]) -> list[tuple[str, Any]]:
    if isinstance(predictors, Mapping):
        return list(predictors.items())
    out = []
    for p in predictors:
        out.append((p, p) if isinstance(p, str) else (p.predictor_name, p))
    names = [n for n, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidArgumentError(f"predictors {dup} appear twice; expected distinct names (pass a mapping name -> predictor)")
    return out


def evaluate_transfer(
    predictors: Sequence[Any] | Mapping[str, Any],
    targets: Sequence[str],
    cfg: ProtocolConfig,
    *,
    sources: Sequence[str] = (),
    out: str | os.PathLike[str] | None = None,
    on_cell: Callable[[Cell], None] | None = None,
) -> TransferReport:
    """Zero-shot (and, with ``cfg.shots > 0``, k-shot) evaluation of predictors on ``targets``
    (plus zero-shot rows for a target's named :data:`SUBSETS` when every architecture was scored).

    ``predictors`` are registered names or :class:`~napbench.zoo.Predictor` instances (a
    mapping gives them column names). Names are built fresh and, with ``sources``, fitted on
    the source families; instances (e.g. loaded checkpoints) are used as they are. A name
    that needs training (``kgnn``) without ``sources`` is an error. Writes the report into
    ``out`` when given (rewritten after each target).
    """
    caches: dict[Any, Any] = {}
    named = _named(predictors)
    fitted: list[tuple[str, Predictor]] = []
    for col, p in named:
        if not isinstance(p, str):
            fitted.append((col, p))
            continue
        pred = build_predictor(p, cfg, caches=caches)
        if sources:
            fit_predictor(pred, sources, cfg)
        elif _needs_training(pred):
            raise InvalidArgumentError(f"predictor {p!r} must be trained first; expected source families or a checkpoint")
        fitted.append((col, pred))
    report = TransferReport(info=_info(cfg, sources=list(sources), targets=list(targets)))
    for target in targets:
        data = labelled(target, cfg)
        _run_target(report, fitted, data, cfg, on_cell)
        for name, keep in SUBSETS.get(target, {}).items():  # e.g. NB-201 without `none`, when all of it was scored
            add_subset_cells(report, data, name, keep, cfg)
        if out is not None:
            report.write(out, plots=cfg.plots)
    return report


def _needs_training(p: Predictor) -> bool:
    from napbench.zoo.baselines import LinearScorePredictor

    return not isinstance(p, LinearScorePredictor) and not p.is_fitted


def _run_target(report: TransferReport, fitted: Sequence[tuple[str, Predictor]], data: Labelled, cfg: ProtocolConfig,
                on_cell: Callable[[Cell], None] | None) -> None:
    for col, pred in fitted:
        cells = [zero_shot(pred, data, cfg, name=col)]
        if cfg.shots > 0:
            cells.append(k_shot(pred, data, cfg, name=col))
        for c in cells:
            report.cells.append(c)
            if on_cell is not None:
                on_cell(c)


def leave_one_family_out(
    predictors: Sequence[str] | Mapping[str, str],
    cfg: ProtocolConfig,
    *,
    families: Sequence[str] = LOFO_FAMILIES,
    targets: Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    predictor_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    on_cell: Callable[[Cell], None] | None = None,
) -> TransferReport:
    """For each held-out family (``targets``, default every family): train every predictor on
    the other ``families``, evaluate zero-shot and k-shot on it.

    ``predictors`` are registered names, or a mapping column name -> registered name (so
    one predictor can appear with several ``predictor_kwargs``, keyed by column name, e.g.
    an ablation trained on CIFAR-labelled sources only). Predictors of one run share their
    caches (proxy values, pretrained encoders and embeddings). The report is rewritten into
    ``out`` after each held-out family, so a long run leaves partial results behind.
    """
    if len(families) < 2:
        raise InvalidArgumentError(f"leave-one-family-out needs at least 2 families; found {list(families)}")
    targets = list(families) if targets is None else list(targets)
    outside = sorted(set(targets) - set(families))
    if outside:
        raise InvalidArgumentError(f"held-out families {outside} are not among the LOFO families {list(families)}")
    named = list(predictors.items()) if isinstance(predictors, Mapping) else [(n, n) for n, _ in _named(list(predictors))]
    caches: dict[Any, Any] = {}
    report = TransferReport(info=_info(cfg, families=list(families), targets=targets, protocol="leave-one-family-out"))
    for target in targets:
        sources = [f for f in families if f != target]
        ds, y = training_set(sources, cfg)
        fitted = []
        for col, n in named:
            p = build_predictor(n, cfg, caches=caches, **dict((predictor_kwargs or {}).get(col, {})))
            fitted.append((col, p.fit(ds, y, epochs=cfg.epochs, seed=cfg.fit_seed, progress=cfg.progress)))
        _run_target(report, fitted, labelled(target, cfg), cfg, on_cell)
        if out is not None:
            report.write(out, plots=cfg.plots)
    return report


def _info(cfg: ProtocolConfig, **extra: Any) -> dict[str, Any]:
    from napbench.conversion.vocab import VOCAB_VERSION

    keep = ("shots", "seeds", "max_eval", "max_train", "sample_seed", "fit_seed", "epochs", "fine_tune_epochs", "zc_input_size")
    return {**{k: getattr(cfg, k) for k in keep}, "ks": list(cfg.ks), "labels": dict(cfg.labels),
            "vocab_version": VOCAB_VERSION, **extra}


# -- plots --------------------------------------------------------------------------------
def _figure(ncols: int, nrows: int = 1, size: tuple[float, float] = (3.6, 3.4)) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")


def plot_pred_vs_true(report: TransferReport, target: str, out: str | os.PathLike[str]) -> Path | None:
    """``pred_vs_true_<target>.png``: one scatter panel per predictor (zero-shot and fine-tuned seed 0)."""
    preds = [p for p in report.predictors if report.cell(target, ZERO_SHOT, p) or report.cell(target, FINE_TUNED, p)]
    if not preds:
        return None
    fig = _figure(len(preds))
    axes = fig.subplots(1, len(preds), squeeze=False)[0]
    for ax, p in zip(axes, preds):
        lo, hi = math.inf, -math.inf
        for setting, color in ((ZERO_SHOT, "tab:blue"), (FINE_TUNED, "tab:orange")):
            c = report.cell(target, setting, p)
            if c is None or not c.preds:
                continue
            t, y = c.preds[0]
            srcc = c.runs[0].get("srcc") if c.runs else None
            label = f"{setting}" + (f" (SRCC {srcc:.3f})" if srcc is not None else "")
            ax.scatter(t, y, s=6, alpha=0.5, color=color, label=label, linewidths=0)
            lo, hi = min(lo, float(t.min())), max(hi, float(t.max()))
        if math.isfinite(lo):
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls=":")
        ax.set_title(_short(p), fontsize=9)
        ax.set_xlabel("true label")
        ax.set_ylabel("predicted")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{target}: predicted vs true")
    return _atomic_png(fig, Path(out) / f"pred_vs_true_{_safe(target)}.png")


def _short(predictor: str) -> str:
    """A plot label: a checkpoint path's last folder (``runs/.../members/04-kgnn`` -> ``04-kgnn``)."""
    return Path(predictor).name if "/" in predictor or os.sep in predictor else predictor


def ndcg_curve(y_true: np.ndarray, y_pred: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """NDCG@k for each k (see :func:`napbench.evaluation.metrics.ndcg_at_k`)."""
    from napbench.evaluation.metrics import ndcg_at_k

    return np.array([ndcg_at_k(y_true, y_pred, k) for k in ks])


def plot_ndcg_curve(report: TransferReport, target: str, out: str | os.PathLike[str], *, max_k: int = 100) -> Path | None:
    """``ndcg_<target>.png``: NDCG@k over k = 1..min(max_k, n) per predictor."""
    fig = _figure(1, size=(5.5, 3.8))
    ax = fig.subplots()
    drawn = False
    colors = {p: f"C{i % 10}" for i, p in enumerate(report.predictors)}
    for p in report.predictors:
        for setting, ls in ((ZERO_SHOT, "-"), (FINE_TUNED, "--")):
            c = report.cell(target, setting, p)
            if c is None or not c.preds or c.error:
                continue
            n = min(len(t) for t, _ in c.preds)
            ks = np.arange(1, min(max_k, n) + 1)
            curve = np.mean([ndcg_curve(t, y, ks) for t, y in c.preds], axis=0)
            ax.plot(ks, curve, ls=ls, color=colors[p], label=f"{_short(p)} ({setting})")
            drawn = True
    if not drawn:
        return None
    ax.set_xlabel("k")
    ax.set_ylabel("NDCG@k")
    ax.set_title(f"{target}: NDCG@k")
    ax.legend(fontsize=7)
    return _atomic_png(fig, Path(out) / f"ndcg_{_safe(target)}.png")


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _atomic_text(path: Path, text: str) -> Path:
    from napbench._io import atomic_write_text

    return atomic_write_text(path, text)


def _atomic_png(fig: Any, path: Path) -> Path:
    from napbench._io import atomic_file

    with atomic_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


# -- GENNAPE ablation (Table 8 shape) -------------------------------------------------------
#: ablation columns: column name -> member of the fitted ``gennape`` ensemble (None: the ensemble)
ABLATION_MEMBERS: dict[str, str | None] = {
    "CL+T": "gennape:cl+t",
    "CL+FCM+T": "gennape:cl+fcm+t",
    "CL+Pairwise": "gennape:cl+pairwise",
    "CL+FCM+Pairwise": "gennape:cl+fcm+pairwise",
    "FLOPs": "flops",
    "k-GNN": "kgnn",
    "GENNAPE": None,
}


def gennape_ablation(
    cfg: ProtocolConfig,
    *,
    families: Sequence[str] = LOFO_FAMILIES,
    targets: Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    cifar_sources: bool = True,
    ensemble_kwargs: Mapping[str, Any] | None = None,
    on_cell: Callable[[Cell], None] | None = None,
) -> TransferReport:
    """Leave-one-family-out for GENNAPE and its ablation rows, in the shape of GENNAPE's Table 8.

    Per held-out family one ``gennape`` ensemble is fitted on the other families; its members
    are evaluated as their own columns (``CL+T``, ``CL+FCM+T``, ``CL+Pairwise``,
    ``CL+FCM+Pairwise``, ``FLOPs`` fitted on per-family z-scores) next to the ensemble
    (``GENNAPE``); ``CL`` (raw labels, no transform, no FCM) is fitted on the same cached
    encoder. The k-GNN column of Table 8 is the ensemble's ``kgnn`` member (fitted on per-family
    z-scores of the same sources). Zero-shot outputs of every column but ``CL``
    are z-scores, not labels, so their zero-shot MAE is not reported (``-``). With ``cifar_sources`` a second
    ensemble trained on the CIFAR-labelled source families only is added
    (``GENNAPE (CIFAR sources)``) when the sources mix tasks. Zero-shot and k-shot as in
    :func:`leave_one_family_out`; every zero-shot cell is computed before any k-shot one, and
    the tables are rewritten after every cell.
    """
    if len(families) < 2:
        raise InvalidArgumentError(f"leave-one-family-out needs at least 2 families; found {list(families)}")
    targets = list(families) if targets is None else list(targets)
    caches: dict[Any, Any] = {}
    report = TransferReport(info=_info(cfg, families=list(families), targets=targets, protocol="gennape-ablation"))
    kw = dict(ensemble_kwargs or {})
    for target in targets:
        sources = [f for f in families if f != target]
        ds, y = training_set(sources, cfg)
        import resource
        import time

        t0 = time.perf_counter()
        ens = build_predictor("gennape", cfg, caches=caches, **kw).fit(ds, y, epochs=cfg.epochs, seed=cfg.fit_seed, progress=cfg.progress)
        report.info[f"gennape_fit_seconds_{target}"] = round(time.perf_counter() - t0, 1)  # pretraining included (first fold)
        report.info[f"peak_rss_mib_after_fit_{target}"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        if out is not None:
            ens.save_pretrained(Path(out) / f"gennape-without-{target}")
        member_kw = dict(kw.get("member_kwargs") or {})
        cl = build_predictor("gennape:cl", cfg, caches=caches, **member_kw).fit(ds, y, epochs=cfg.epochs, seed=cfg.fit_seed, progress=cfg.progress)
        cols: list[tuple[str, Any]] = []
        for col, member in ABLATION_MEMBERS.items():
            if member is None or member in ens.member_names:
                cols.append((col, ens if member is None else ens.members[ens.member_names.index(member)]))
        cols.append(("CL", cl))
        order = ["GENNAPE", "FLOPs", "k-GNN", "CL+FCM+T", "CL+T", "CL", "CL+Pairwise", "CL+FCM+Pairwise", "GENNAPE (CIFAR sources)"]
        cols.sort(key=lambda c: order.index(c[0]))
        data = labelled(target, cfg)

        def _add(c: Cell) -> None:
            if c.setting == ZERO_SHOT and c.predictor != "CL":
                c.fitted = False  # a z-score: no label scale to compare with
            report.cells.append(c)
            if on_cell is not None:
                on_cell(c)
            if out is not None:  # partial tables after every cell: a long run leaves results behind
                report.write(out, plots=False)

        # the most important cells first: every zero-shot, then k-shot of GENNAPE and FLOPs
        for col, pred in cols:
            _add(zero_shot(pred, data, cfg, name=col))
        for name, keep in SUBSETS.get(target, {}).items():
            add_subset_cells(report, data, name, keep, cfg)
        shot_cols = list(cols)
        if cfg.shots > 0:
            for col, pred in shot_cols[:2]:
                _add(k_shot(pred, data, cfg, name=col))
        if cifar_sources:
            from napbench.zoo.gennape.predictors import LABEL_TASK

            if any(LABEL_TASK.get(f) == "cifar10" for f in sources) and any(LABEL_TASK.get(f) != "cifar10" for f in sources):
                cif = build_predictor("gennape", cfg, caches=caches, **{**kw, "source_task": "cifar10"})
                cif.fit(ds, y, epochs=cfg.epochs, seed=cfg.fit_seed, progress=cfg.progress)
                _add(zero_shot(cif, data, cfg, name="GENNAPE (CIFAR sources)"))
                for name, keep in SUBSETS.get(target, {}).items():
                    add_subset_cells(report, data, name, keep, cfg, only="GENNAPE (CIFAR sources)")
                shot_cols.append(("GENNAPE (CIFAR sources)", cif))
        if cfg.shots > 0:
            for col, pred in shot_cols[2:]:
                _add(k_shot(pred, data, cfg, name=col))
        if out is not None:
            report.write(out, plots=cfg.plots)
    return report


#: named subsets of a family reported next to it: NB-201 without ``none`` edges (4,096 cells),
#: the space GENNAPE and Han et al. report on
SUBSETS: dict[str, dict[str, Callable[[str], bool]]] = {"nb201": {"nb201 (no none, 4,096)": lambda arch: "none" not in arch}}


def add_subset_cells(report: TransferReport, data: Labelled, name: str, keep: Callable[[str], bool], cfg: ProtocolConfig,
                     *, only: str | None = None) -> None:
    """Zero-shot cells of ``data.family`` restricted to the architectures ``keep`` accepts, as rows
    ``name`` (computed from the predictions already made; needs ``max_eval`` None)."""
    if cfg.max_eval is not None and cfg.max_eval < len(data):
        return
    mask = np.array([bool(keep(a)) for a in data.dataset.archs])
    for c in [c for c in report.cells if c.target == data.family and c.setting == ZERO_SHOT and c.preds
              and (only is None or c.predictor == only)]:
        t, p = c.preds[0]
        if len(t) != len(mask):
            continue
        sub = Cell(name, ZERO_SHOT, c.predictor, n_eval=int(mask.sum()), fitted=c.fitted)
        _score_cell(sub, t[mask], p[mask], cfg.ks)
        report.cells.append(sub)
