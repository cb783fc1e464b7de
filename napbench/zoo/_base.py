"""The predictor interface, the predictor registry and checkpoint folders.

Every performance predictor is a :class:`Predictor`: a ``torch.nn.Module`` with
``huggingface_hub``'s :class:`~huggingface_hub.PyTorchModelHubMixin`, so its JSON-able
``__init__`` keyword arguments are captured into ``config.json`` and its weights and
buffers (label scaling, linear maps) into ``model.safetensors``. The API is the same for
learned predictors and baselines::

    p = get_predictor("kgnn", epochs=20)
    p.fit(graphs, y, seed=0)                 # train (from a fresh, seeded initialisation)
    p.fine_tune(few_graphs, few_y)           # adapt to a target family with k samples
    y_hat = p.predict(graphs)                # np.ndarray, one prediction per graph
    p.save_pretrained("ckpt/", card={"metrics": {...}})
    p = napbench.zoo.load("ckpt/")           # any registered predictor, one line

``graphs`` is a sequence of :class:`~napbench.conversion.graph.CompGraph` or a
:class:`~napbench.datasets.GraphDataset` (whose Arrow table is then read directly, without
decoding the graphs: the fast path for whole families).

A checkpoint is a folder:

* ``config.json`` -- the init arguments, plus ``predictor`` (registered name),
  ``vocab_version`` (of :mod:`napbench.conversion.vocab`), ``features_version`` and
  ``training`` (what :meth:`Predictor.fit` / :meth:`Predictor.fine_tune` recorded:
  families, sizes, epochs, seeds);
* ``model.safetensors`` -- the state dict;
* ``README.md`` -- a model card (training families, the metrics the caller passes in).

Loading a checkpoint made with another vocabulary version raises
:class:`~napbench.errors.VersionMismatchError`; a corrupt one (truncated or non-safetensors
weights, a config that does not fit its weights) a one-line
:class:`~napbench.errors.CheckpointError` (see :mod:`napbench.zoo._checkpoint_io`; nothing is
ever unpickled). :func:`load` takes a local folder; a Hugging Face Hub repo id only in the
explicit form ``hf://owner/name`` (handed to the mixin's ``from_pretrained``, which downloads
``config.json`` and ``model.safetensors``; refused at once when ``HF_HUB_OFFLINE`` is set).
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, Union

import numpy as np
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from napbench._io import atomic_dir
from napbench.conversion.graph import CompGraph
from napbench.conversion.vocab import VOCAB_VERSION
from napbench.errors import CheckpointError, InvalidArgumentError, NapbenchError, UnknownNameError, VersionMismatchError
from napbench.zoo._checkpoint_io import is_checkpoint_dir, load_weights, read_config

if TYPE_CHECKING:  # pragma: no cover
    from napbench.datasets import GraphDataset

#: what predictors accept as graphs: CompGraphs, or a dataset (read column-wise, fast)
GraphsLike = Union[Sequence[CompGraph], "GraphDataset"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
#: config keys napbench adds next to the init arguments
RESERVED_CONFIG_KEYS = ("predictor", "vocab_version", "features_version", "napbench_version", "training")

_P = TypeVar("_P", bound="Predictor")


class Predictor(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="napbench",
    tags=["napbench", "neural-architecture-performance-prediction"],
):
    """Base class of every performance predictor (see the module docstring).

    Subclasses implement :meth:`fit`, :meth:`predict` and, when adapting differs from
    fitting, :meth:`fine_tune`. Init arguments must be keyword arguments with JSON-able
    defaults: they are the checkpoint's configuration. Anything learned must live in
    parameters or (persistent) buffers so that ``model.safetensors`` holds it.
    """

    #: registered name (set by :func:`register_predictor`)
    name: ClassVar[str] = ""
    #: one line for listings and model cards
    description: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        #: what fit / fine_tune recorded (families, sizes, epochs, seeds); saved in config.json
        self.training_info: dict[str, Any] = {}

    # -- the interface ------------------------------------------------------------------
    @property
    def predictor_name(self) -> str:
        """Registered name of this instance (``zc:<proxy>`` predictors override it)."""
        return type(self).name

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` or :meth:`fine_tune` (or a loaded checkpoint's) has fitted labels."""
        return bool(self.training_info.get("fit") or self.training_info.get("fine_tune"))

    def fit(
        self: _P, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True
    ) -> _P:
        """Fit on ``graphs`` with labels ``y`` from scratch (a seeded fresh start); returns self."""
        raise NotImplementedError(f"{type(self).__name__}.fit")

    def fine_tune(
        self: _P, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True
    ) -> _P:
        """Adapt an already fitted predictor to a few labelled samples of a new family; returns self."""
        raise NotImplementedError(f"{type(self).__name__}.fine_tune")

    def predict(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        """One predicted label (float64) per graph, in order."""
        raise NotImplementedError(f"{type(self).__name__}.predict")

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - predictors use predict()
        raise NotImplementedError(f"{type(self).__name__} has no forward(); call predict(graphs)")

    def clone(self: _P) -> _P:
        """An independent deep copy (fine-tuning a clone leaves this predictor unchanged)."""
        return copy.deepcopy(self, memo=self._shared_on_clone())

    def _shared_on_clone(self) -> dict[int, Any]:
        """``deepcopy`` memo entries for objects clones share (caches); none by default."""
        return {}

    # -- helpers for subclasses ---------------------------------------------------------
    def _record(self, stage: str, graphs: GraphsLike, y: np.ndarray, **info: Any) -> None:
        entry = {"n": int(len(y)), "families": graph_families(graphs), **info}
        if stage == "fit":
            self.training_info = {"fit": entry}
        else:
            self.training_info.setdefault("fine_tune", []).append(entry)

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint_config(self) -> dict[str, Any]:
        """What ``config.json`` holds: init arguments plus the napbench keys."""
        from napbench.zoo.features import FEATURES_VERSION

        init = dict(getattr(self, "_hub_mixin_config", None) or {})
        for k in RESERVED_CONFIG_KEYS:
            init.pop(k, None)
        return {
            **init,
            "predictor": self.predictor_name,
            "vocab_version": VOCAB_VERSION,
            "features_version": FEATURES_VERSION,
            "napbench_version": _napbench_version(),
            "training": self.training_info,
        }

    def save_pretrained(  # type: ignore[override]
        self,
        save_directory: str | os.PathLike[str],
        *,
        card: Mapping[str, Any] | str | None = None,
        config: Mapping[str, Any] | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: Mapping[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write the checkpoint folder (config.json, model.safetensors, README.md) atomically.

        ``card`` is either the full README text or a mapping with optional keys
        ``metrics`` (``{setting: {metric: value}}`` or ``{metric: value}``), ``notes`` (str),
        ``datasets`` (list of family names; default: the training families). ``config``
        entries are merged into config.json (napbench's own keys always win). An existing
        napbench checkpoint folder is replaced as a whole (through :func:`napbench._io.atomic_dir`);
        any other existing path is refused. ``push_to_hub``/``repo_id`` are passed to the mixin.
        """
        if card is None and model_card_kwargs:
            card = model_card_kwargs.get("card")
        target = Path(save_directory)
        cfg = {**dict(config or {}), **self.checkpoint_config()}
        with atomic_dir(target, is_ours=is_checkpoint_dir, what="napbench checkpoint folder") as tmp:
            (tmp / CARD_NAME).write_text(card if isinstance(card, str) else self.model_card(card), encoding="utf-8")
            super().save_pretrained(tmp, config=cfg)
        if push_to_hub:  # pragma: no cover - needs the network; a later issue publishes to the Hub
            return self.push_to_hub(
                repo_id or target.name, config=cfg, model_card_kwargs={"card": card}, **push_to_hub_kwargs
            )
        return None

    def model_card(self, card: Mapping[str, Any] | None = None) -> str:
        """The README.md model card text (Hub-style YAML front matter + Markdown)."""
        card = dict(card or {})
        fit = self.training_info.get("fit") or {}
        fams = list(card.get("datasets") or fit.get("families") or [])
        tags = sorted({"napbench", "neural-architecture-performance-prediction", self.predictor_name.replace(":", "-")})
        lines = ["---", "library_name: napbench", "tags:"] + [f"- {t}" for t in tags]
        if fams:
            lines += ["datasets:"] + [f"- {f}" for f in fams]
        lines += ["---", "", f"# napbench predictor `{self.predictor_name}`", ""]
        if self.description:
            lines += [self.description, ""]
        lines += [
            f"Vocabulary version {VOCAB_VERSION}. Load it with",
            "",
            "```python",
            "import napbench.zoo",
            "predictor = napbench.zoo.load(\"<this folder or repo id>\")",
            "accuracy = predictor.predict(graphs)  # graphs: CompGraphs or a napbench dataset",
            "```",
            "",
            "## Training",
            "",
        ]
        if fit:
            lines.append(f"- families: {', '.join(fams) if fams else 'n/a'}")
            lines.append(f"- architectures: {fit.get('n')}")
            for k, v in fit.items():
                if k not in ("n", "families"):
                    lines.append(f"- {k}: {v}")
            for ft in self.training_info.get("fine_tune", []):
                lines.append(f"- fine-tuned on {ft.get('n')} architectures of {', '.join(ft.get('families') or [])}")
        else:
            lines.append("Not fitted (a training-free score; predictions are the raw score).")
        cfg = {k: v for k, v in self.checkpoint_config().items() if k not in ("training",)}
        lines += ["", "## Configuration", "", "```json", json.dumps(cfg, indent=2, sort_keys=True), "```", ""]
        metrics = card.get("metrics")
        if metrics:
            lines += ["## Measured metrics", ""] + _metrics_markdown(metrics) + [""]
        if card.get("notes"):
            lines += ["## Notes", "", str(card["notes"]), ""]
        return "\n".join(lines)

    @classmethod
    def _from_pretrained(  # type: ignore[override]
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        config: dict[str, Any] | None = None,
        **model_kwargs: Any,
    ) -> Predictor:
        if not config:
            raise CheckpointError(f"checkpoint {model_id!r} has no {CONFIG_NAME}; expected a napbench checkpoint folder")
        check_checkpoint_config(config, model_id)
        name = config["predictor"]
        target = predictor_class(name)
        if cls is not Predictor and not issubclass(target, cls):
            raise CheckpointError(
                f"checkpoint {model_id!r} holds predictor {name!r} ({target.__name__}); expected a {cls.__name__}"
            )
        params = inspect.signature(target.__init__).parameters
        kwargs = {k: v for k, v in config.items() if k in params and k != "self"}
        kwargs.update({k: v for k, v in model_kwargs.items() if k in params})
        try:
            model = target(**kwargs)
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError, OverflowError) as exc:
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(
                f"checkpoint {model_id!r}: its {CONFIG_NAME} does not build a {name!r} predictor ({type(exc).__name__}: {line})"
            ) from None
        if os.path.isdir(model_id):
            weights = os.path.join(model_id, WEIGHTS_NAME)
            if not os.path.isfile(weights):
                raise CheckpointError(f"checkpoint {model_id!r} has no {WEIGHTS_NAME}; expected config.json + {WEIGHTS_NAME}")
        else:  # pragma: no cover - Hub download needs the network
            from huggingface_hub import hf_hub_download

            weights = hf_hub_download(
                repo_id=model_id, filename=WEIGHTS_NAME, revision=revision, cache_dir=cache_dir,
                force_download=force_download, token=token, local_files_only=local_files_only,
            )
        load_weights(model, weights, model_id, strict=strict, device=map_location)
        model.training_info = dict(config.get("training") or {})
        model._hub_mixin_config = {k: v for k, v in config.items() if k not in RESERVED_CONFIG_KEYS}
        model.eval()
        return model


def _napbench_version() -> str:
    try:
        from importlib.metadata import version

        return version("napbench")
    except Exception:  # noqa: BLE001 - metadata absent in a source checkout
        return "unknown"


def _metrics_markdown(metrics: Mapping[str, Any]) -> list[str]:
    flat = all(not isinstance(v, Mapping) for v in metrics.values())
    rows = {"": metrics} if flat else metrics
    cols: list[str] = []
    for r in rows.values():
        for k in r:
            if k not in cols:
                cols.append(k)
    out = ["| setting | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        cells = [f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
        out.append(f"| {name or 'all'} | " + " | ".join(cells) + " |")
    return out


def check_checkpoint_config(config: Mapping[str, Any], where: str) -> None:
    """Refuse a checkpoint config without a predictor name or from another vocabulary version."""
    if "predictor" not in config:
        raise CheckpointError(f"{where!r}: {CONFIG_NAME} has no 'predictor' key; expected a napbench checkpoint")
    found = config.get("vocab_version")
    if found != VOCAB_VERSION:
        raise VersionMismatchError(
            f"checkpoint {where!r} was made with op vocabulary version {found}; this napbench uses vocabulary "
            f"version {VOCAB_VERSION} - retrain the predictor or install a matching napbench"
        )


# -- graphs-like helpers ------------------------------------------------------------------
def _is_dataset(graphs: Any) -> bool:
    return hasattr(graphs, "table") and hasattr(graphs, "metadata") and not isinstance(graphs, (list, tuple))


def num_graphs(graphs: GraphsLike) -> int:
    """How many graphs ``graphs`` holds."""
    return len(graphs)


def check_graphs_labels(graphs: GraphsLike, y: Any) -> np.ndarray:
    """``y`` as a finite float64 vector matching ``graphs``; raises InvalidArgumentError otherwise."""
    try:
        arr = np.asarray(y, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"labels of type {type(y).__name__} could not be read as floats; expected a 1-D float array") from None
    n = num_graphs(graphs)
    if arr.size != n:
        raise InvalidArgumentError(f"{arr.size} labels for {n} graphs; expected one label per graph")
    if n == 0:
        raise InvalidArgumentError("no graphs to fit; expected at least one labelled graph")
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise InvalidArgumentError(f"{bad} of {n} labels are NaN/inf; expected finite labels (drop unlabelled architectures first)")
    return arr


def graph_totals(graphs: GraphsLike) -> tuple[np.ndarray, np.ndarray]:
    """Total multiply-adds and parameters per graph (float64 arrays)."""
    if _is_dataset(graphs):
        t = graphs.table
        return (
            t.column("flops").to_numpy(zero_copy_only=False).astype(np.float64),
            t.column("params").to_numpy(zero_copy_only=False).astype(np.float64),
        )
    return (
        np.array([g.flops for g in graphs], dtype=np.float64),
        np.array([g.params for g in graphs], dtype=np.float64),
    )


def graph_keys(graphs: GraphsLike) -> list[tuple[str | None, str | None]]:
    """``(family, arch)`` of each graph, from its metadata."""
    if _is_dataset(graphs):
        t = graphs.table
        return list(zip(t.column("family").to_pylist(), t.column("arch").to_pylist()))
    return [(g.meta.get("family"), g.meta.get("arch")) for g in graphs]


def graph_families(graphs: GraphsLike) -> list[str]:
    """Distinct families of ``graphs`` (order of first appearance; 'unknown' when unset)."""
    if _is_dataset(graphs):
        fams = graphs.table.column("family").unique().to_pylist()
    elif isinstance(graphs, Sequence):
        fams = [g.meta.get("family") if isinstance(g, CompGraph) else None for g in graphs]
    else:  # e.g. pre-featurised PackedGraphs: no metadata
        fams = [None]
    return list(dict.fromkeys(f or "unknown" for f in fams))


# -- registry -----------------------------------------------------------------------------
_REGISTRY: dict[str, tuple[type[Predictor], dict[str, Any]]] = {}
_PLUGINS: list[Callable[[], None]] = []
_LOADED = False


def register_predictor(name: str, cls: type[Predictor] | None = None, **fixed: Any) -> Any:
    """Register a predictor class under ``name`` (decorator or direct call).

    ``fixed`` are init arguments bound to the name (e.g. ``register_predictor("zc:snip",
    ZeroCost, proxy="snip")``). Registering a taken name with another class fails.
    """

    def _add(c: type[Predictor]) -> type[Predictor]:
        if not (isinstance(c, type) and issubclass(c, Predictor)):
            raise InvalidArgumentError(f"{c!r} is not a Predictor subclass; expected one to register as {name!r}")
        prev = _REGISTRY.get(name)
        if prev is not None and (prev[0] is not c or prev[1] != fixed):
            raise InvalidArgumentError(f"predictor {name!r} is already registered to {prev[0].__name__}; expected a new name")
        if not c.name:
            c.name = name
        _REGISTRY[name] = (c, dict(fixed))
        return c

    return _add if cls is None else _add(cls)


def register_plugin(hook: Callable[[], None]) -> None:
    """Run ``hook`` once before the registry is first read (lazy registrations, e.g. zc:<proxy>)."""
    _PLUGINS.append(hook)


_LOAD_LOCK = threading.RLock()
_READY = threading.Event()


def _ensure_loaded() -> None:
    global _LOADED
    if _READY.is_set():
        return
    with _LOAD_LOCK:  # other threads wait until the registry is complete
        if _LOADED:
            return
        _LOADED = True  # set first: hooks (in this thread) may read the registry
        try:
            import napbench.zoo.baselines  # noqa: F401  (registers flops, params and the zc:* hook)
            import napbench.zoo.fourier  # noqa: F401  (registers fourier)
            import napbench.zoo.kgnn  # noqa: F401  (registers kgnn)

            for hook in list(_PLUGINS):
                hook()
        except BaseException:
            _LOADED = False
            raise
        _READY.set()


def list_predictors() -> list[str]:
    """Names of every registered predictor, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def predictor_class(name: str) -> type[Predictor]:
    """The class registered under ``name``; unknown names list the valid ones."""
    _ensure_loaded()
    try:
        return _REGISTRY[name][0]
    except (KeyError, TypeError):
        raise UnknownNameError("predictor", str(name), list(_REGISTRY)) from None


def get_predictor(name: str, **kwargs: Any) -> Predictor:
    """A fresh predictor ``name`` built with ``kwargs`` (plus the name's fixed arguments)."""
    _ensure_loaded()
    try:
        cls, fixed = _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownNameError("predictor", str(name), list(_REGISTRY)) from None
    clash = sorted(set(fixed) & set(kwargs))
    if clash:
        raise InvalidArgumentError(f"predictor {name!r} fixes {clash}; expected other keyword arguments")
    try:
        return cls(**fixed, **kwargs)
    except TypeError as exc:
        valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self" and p not in fixed]
        raise InvalidArgumentError(f"predictor {name!r}: {exc}; expected keyword arguments among {valid}") from None


# -- loading ------------------------------------------------------------------------------
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


HUB_PREFIX = "hf://"


def load(path_or_name: str | os.PathLike[str], **kwargs: Any) -> Predictor:
    """Load a checkpoint: a local folder, or a Hub repo id written ``hf://owner/name``.

    The folder's ``config.json`` names the predictor class; ``kwargs`` go to
    ``from_pretrained`` (e.g. ``revision=``, ``map_location=``). A path that does not exist
    fails at once (no network); the Hub is asked only for the explicit ``hf://`` form, and
    not at all when ``HF_HUB_OFFLINE`` is set.
    """
    text = str(path_or_name)
    if text.startswith(HUB_PREFIX):
        repo = text[len(HUB_PREFIX):]
        if not _REPO_ID.match(repo):
            raise CheckpointError(f"Hub id {text!r} is malformed; expected hf://owner/name")
        return _hub_load(repo, **kwargs)  # HF_HUB_OFFLINE=1: served from the cache, or one-line error
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        config = read_config(path, text)
        check_checkpoint_config(config, text)
        predictor_class(config["predictor"])  # unknown names list the valid ones
        return Predictor.from_pretrained(str(path), **kwargs)
    if path.exists():
        raise CheckpointError(f"{text!r} is a file; expected a checkpoint folder (config.json + {WEIGHTS_NAME})")
    if kwargs.get("revision") and _REPO_ID.match(text) and not text.startswith((".", "~", "/")):
        return _hub_load(text, **kwargs)  # a revision= makes a bare owner/name an explicit Hub id
    hint = f"; {text!r} is a predictor name - build it with napbench.zoo.get_predictor({text!r})" if text in list_predictors() else ""
    if not hint and _REPO_ID.match(text) and not text.startswith((".", "~", "/")):
        hint = f"; for a Hugging Face Hub repo write hf://{text}"
    raise CheckpointError(
        f"checkpoint folder {text!r} not found; expected a folder with {CONFIG_NAME} + {WEIGHTS_NAME}{hint}"
    )


def _hub_load(repo_id: str, **kwargs: Any) -> Predictor:
    from napbench.zoo._hub import load_from_hub

    return load_from_hub(repo_id, **kwargs)


def _load_from_hub(repo_id: str, **kwargs: Any) -> Predictor:  # pragma: no cover - needs the network
    try:
        return Predictor.from_pretrained(repo_id, **kwargs)
    except NapbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - network/Hub errors become one napbench line
        raise CheckpointError(
            f"checkpoint {repo_id!r} is not a local folder and could not be fetched from the Hugging Face Hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc


from napbench._scoped import torch_threads  # noqa: F401  (re-exported; scoped and thread-safe)


def utc_now() -> str:
    """ISO timestamp recorded in training info."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
