"""``params.yaml``, read once into typed dataclasses.

Every section of ``params.yaml`` has one frozen dataclass here; :func:`load_config` reads the
file once and returns a :class:`Config` holding all of them, which the CLI, the Prefect flows
and the DVC stages pass down. Library functions take these dataclasses (or plain keyword
arguments), never the file.

Conventions: unknown keys warn and are ignored; lists become tuples; a cap given as ``0``
means "no cap" (``None``); a missing file or section gives the defaults.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from napbench.errors import ConfigError

_T = TypeVar("_T")
PARAMS_FILE = "params.yaml"

#: fields where 0 in params.yaml means "no cap" (None)
_CAPS = ("max_eval", "max_train", "epochs", "fine_tune_epochs", "zc_input_size", "limit")


@dataclass(frozen=True)
class BuildParams:
    """``build:`` section: which families ``dvc repro`` and the refresh flow build."""

    families: tuple[str, ...] = ("nb201",)
    limit: int | None = None
    root: str = "data/datasets"
    workers: int | None = None


@dataclass(frozen=True)
class TrainParams:
    """``train:`` section of params.yaml."""

    predictor: str = "kgnn"
    sources: tuple[str, ...] = ("nb201",)
    epochs: int | None = None
    max_train: int | None = None
    seed: int = 0
    val_frac: float = 0.1
    out: str | None = None
    root: str | None = None
    mirror: str | None = None
    #: keyword arguments of the predictor's constructor (JSON-able; recorded in its checkpoint config)
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: per-predictor defaults (``train.options.<predictor>``) that ``napbench train <predictor>``
    #: applies below its command-line flags, e.g. GENNAPE's sources and budget
    options: Mapping[str, PredictorOptions] = field(default_factory=dict)

    def for_predictor(self, predictor: str) -> TrainParams:
        """This section for ``predictor``: its ``options`` entry applied (unchanged when it has none)."""
        return self.options.get(predictor, PredictorOptions()).apply(self, predictor)


@dataclass(frozen=True)
class EvaluateParams:
    """``evaluate:`` section of params.yaml."""

    targets: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    shots: int = 50
    seeds: int = 5
    max_eval: int | None = None
    max_train: int | None = None
    epochs: int | None = None
    fine_tune_epochs: int | None = None
    sample_seed: int = 0
    zc_input_size: int | None = 64
    zc_batch_size: int = 64
    out: str = "runs/evaluate"
    plots: bool = True
    root: str | None = None
    mirror: str | None = None


@dataclass(frozen=True)
class SourceSpec:
    """Where one family's upstream label tables come from.

    ``mirror``: a folder laid out like the shared mirror (None: ``$NAPBENCH_MIRROR``); or
    ``url``: an HTTP(S) base URL under which each table's relative path is fetched. ``sha256``
    pins tables by relative path, overriding the family's built-in pins (a new upstream
    release is adopted by changing the pin).
    """

    mirror: str | None = None
    url: str | None = None
    sha256: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mirror is not None and self.url is not None:
            raise ConfigError(f"source has both mirror {self.mirror!r} and url {self.url!r}; expected one of them")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"source url {self.url!r} is not HTTP(S); expected https://... (or a mirror folder)")
        for rel, sha in self.sha256.items():
            if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
                raise ConfigError(f"pin for {rel!r} is {sha!r}; expected a 64-digit lowercase hex sha256")

    @property
    def kind(self) -> str:
        """``"url"`` or ``"mirror"``."""
        return "url" if self.url else "mirror"


@dataclass(frozen=True)
class RefreshParams:
    """``refresh:`` section: upstream sources, schedule and DVC bookkeeping of the refresh flow."""

    families: tuple[str, ...] = ()
    sources: Mapping[str, SourceSpec] = field(default_factory=dict)
    cron: str | None = None
    interval_s: float | None = None
    timezone: str = "UTC"
    dvc: bool = False
    push: bool = False
    retries: int = 2
    retry_delay_s: float = 5.0
    task_runner: str = "threads"
    dask_address: str | None = None
    max_workers: int = 2
    serve_pipeline: bool = False

    def source(self, family: str) -> SourceSpec:
        """The source of ``family`` (the default mirror when none is configured)."""
        return self.sources.get(family) or SourceSpec()


@dataclass(frozen=True)
class PublishParams:
    """``publish:`` section: Hub namespace and where the Hub-layout export goes."""

    namespace: str = "napbench"
    private: bool = False
    export_dir: str = "results/hub"
    push: bool = False
    retries: int = 2
    retry_delay_s: float = 2.0
    license: str = "apache-2.0"
    #: dataset repo (under ``namespace``) that receives the DVC objects of the built datasets,
    #: a read-only DVC HTTP remote (``.dvc/config``: remote ``hub``); null: not exported
    dvc_store: str | None = "dvc-store"


@dataclass(frozen=True)
class PredictorOptions:
    """``pipeline.options.<predictor>`` / ``train.options.<predictor>``: how the pipeline (or
    ``napbench train <predictor>``) trains one predictor.

    ``max_train``, ``epochs`` and ``sources`` replace ``train:``'s values when given (None:
    take ``train:``'s; ``max_train: 0`` means no cap, as in ``train:``); ``kwargs`` are the
    predictor's constructor keywords (e.g. GENNAPE's ``member_kwargs`` with a small budget).
    """

    max_train: int | None = None
    epochs: int | None = None
    sources: tuple[str, ...] | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_train", "epochs"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ConfigError(f"predictor option {name} is {v!r}; expected an int >= 0 (0: no cap)")
        if self.sources is not None and not (isinstance(self.sources, tuple) and self.sources and all(isinstance(f, str) for f in self.sources)):
            raise ConfigError(f"predictor option sources is {self.sources!r}; expected a non-empty list of family names")
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise ConfigError(f"predictor option kwargs is {self.kwargs!r}; expected a mapping of keyword -> value")

    def apply(self, train: TrainParams, predictor: str) -> TrainParams:
        """``train`` for ``predictor`` with these options applied."""
        over: dict[str, Any] = {"predictor": predictor, "kwargs": {**train.kwargs, **self.kwargs}}
        if self.max_train is not None:
            over["max_train"] = self.max_train or None
        if self.epochs is not None:
            over["epochs"] = self.epochs or None
        if self.sources is not None:
            over["sources"] = tuple(self.sources)
        return dataclasses.replace(train, **over)


@dataclass(frozen=True)
class PipelineParams:
    """``pipeline:`` section: what ``make run`` produces where, and how each predictor is trained."""

    results: str = "results"
    checkpoints: str = "results/checkpoints"
    predictors: tuple[str, ...] = ("kgnn", "flops")
    options: Mapping[str, PredictorOptions] = field(default_factory=dict)

    def train_params(self, train: TrainParams, predictor: str) -> TrainParams:
        """The ``train:`` section for ``predictor``, with its ``options`` applied."""
        return self.options.get(predictor, PredictorOptions()).apply(train, predictor)


@dataclass(frozen=True)
class Config:
    """Every section of one params.yaml."""

    build: BuildParams = field(default_factory=BuildParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    refresh: RefreshParams = field(default_factory=RefreshParams)
    publish: PublishParams = field(default_factory=PublishParams)
    pipeline: PipelineParams = field(default_factory=PipelineParams)
    path: str | None = None


_SECTIONS: dict[str, type] = {
    "build": BuildParams, "train": TrainParams, "evaluate": EvaluateParams, "refresh": RefreshParams,
    "publish": PublishParams, "pipeline": PipelineParams,
}
_IGNORED_SECTIONS = ("stages",)


def _read_doc(path: str | os.PathLike[str] | None) -> tuple[dict[str, Any], Path | None]:
    import yaml

    p = Path(path) if path is not None else Path.cwd() / PARAMS_FILE
    if not p.is_file():
        if path is not None:
            raise ConfigError(f"params file {str(p)!r} not found; expected a YAML file of sections ({', '.join(_SECTIONS)})")
        return {}, None
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML ({str(exc).splitlines()[0]}); expected a mapping of sections") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{p} holds a {type(doc).__name__}; expected a mapping of sections")
    return doc, p


def _section(raw: Any, section: str, cls: type[_T], where: Path | str) -> _T:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"section {section!r} of {where} is a {type(raw).__name__}; expected a mapping")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - names)
    if unknown:
        warnings.warn(f"{where}: ignoring unknown {section}: keys {unknown}; known keys: {sorted(names)}", stacklevel=3)
    values: dict[str, Any] = {}
    for k, v in raw.items():
        if k not in names:
            continue
        if k in _CAPS and v == 0:
            v = None
        if isinstance(v, list):
            v = tuple(v)
        if cls is RefreshParams and k == "sources":
            v = _sources(v, where)
        if cls in (PipelineParams, TrainParams) and k == "options":
            v = _options(v, where, section)
        if k == "kwargs" and not isinstance(v, dict):
            raise ConfigError(f"{section}.kwargs of {where} is {v!r}; expected a mapping of keyword -> value")
        values[k] = v
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"section {section!r} of {where}: {exc}") from None


def _sources(raw: Any, where: Path | str) -> dict[str, SourceSpec]:
    if not isinstance(raw, dict):
        raise ConfigError(f"refresh.sources of {where} is a {type(raw).__name__}; expected a mapping family -> source")
    out: dict[str, SourceSpec] = {}
    for fam, spec in raw.items():
        if spec in (None, "mirror"):
            out[fam] = SourceSpec()
        elif isinstance(spec, str):
            out[fam] = SourceSpec(url=spec) if spec.startswith(("http://", "https://")) else SourceSpec(mirror=spec)
        elif isinstance(spec, dict):
            bad = sorted(set(spec) - {"mirror", "url", "sha256"})
            if bad:
                raise ConfigError(f"refresh.sources.{fam} of {where} has keys {bad}; expected mirror, url, sha256")
            out[fam] = SourceSpec(mirror=spec.get("mirror"), url=spec.get("url"), sha256=dict(spec.get("sha256") or {}))
        else:
            raise ConfigError(f"refresh.sources.{fam} of {where} is {spec!r}; expected 'mirror', a folder, a URL or a mapping")
    return out


def _options(raw: Any, where: Path | str, section: str = "pipeline") -> dict[str, PredictorOptions]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}.options of {where} is a {type(raw).__name__}; expected a mapping predictor -> options")
    names = [f.name for f in dataclasses.fields(PredictorOptions)]
    out: dict[str, PredictorOptions] = {}
    for name, spec in raw.items():
        spec = {} if spec is None else spec
        if not isinstance(spec, dict) or set(spec) - set(names):
            raise ConfigError(f"{section}.options.{name} of {where} is {spec!r}; expected a mapping with keys among {names}")
        if isinstance(spec.get("sources"), list):
            spec = {**spec, "sources": tuple(spec["sources"])}
        out[str(name)] = PredictorOptions(**spec)
    return out


def read_params(path: str | Path | None, section: str, cls: type[_T]) -> _T:
    """The ``section`` of a params.yaml as ``cls`` (defaults when the file or section is absent).

    ``path`` None means ``./params.yaml`` if it exists. Unknown keys warn and are ignored;
    caps given as 0 become None (no cap); lists become tuples.
    """
    doc, p = _read_doc(path)
    return _section(doc.get(section), section, cls, p or PARAMS_FILE)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read ``params.yaml`` once into a :class:`Config` (``path`` None: ``./params.yaml`` if present)."""
    doc, p = _read_doc(path)
    where = p or PARAMS_FILE
    unknown = sorted(set(doc) - set(_SECTIONS) - set(_IGNORED_SECTIONS))
    if unknown:
        warnings.warn(f"{where}: ignoring unknown sections {unknown}; known: {sorted(_SECTIONS)}", stacklevel=2)
    parts = {name: _section(doc.get(name), name, cls, where) for name, cls in _SECTIONS.items()}
    return Config(**parts, path=str(p) if p else None)
