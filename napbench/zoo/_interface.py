"""The predictor interface.

Every performance predictor is a :class:`Predictor`: a ``torch.nn.Module`` with
``huggingface_hub``'s :class:`~huggingface_hub.PyTorchModelHubMixin`, so its JSON-able
``__init__`` keyword arguments are captured into ``config.json`` and its weights and
buffers (label scaling, linear maps) into ``model.safetensors``. The API is the same for
learned predictors and baselines::

    p = get_predictor("kgnn", epochs=20)
    p.pretrain(unlabelled_graphs)            # encoders only: a label-free step
    p.fit(graphs, y, seed=0)                 # train (from a fresh, seeded initialisation)
    p.fine_tune(few_graphs, few_y)           # adapt to a target family with k samples
    y_hat = p.predict(graphs)                # np.ndarray, one prediction per graph
    p.save_pretrained("ckpt/", card={"metrics": {...}})
    p = napbench.zoo.load("ckpt/")           # any registered predictor, one line

Checkpoint layout: :mod:`napbench.zoo._checkpoint`; model cards: :mod:`napbench.zoo._card`;
graph adapters: :mod:`napbench.zoo._graphs`; registry: :mod:`napbench.zoo._registry`.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from torch import nn

from napbench._scoped import torch_threads  # re-exported: scoped and thread-safe
from napbench.conversion.vocab import VOCAB_VERSION
from napbench.errors import InvalidArgumentError
from napbench.zoo._checkpoint import (
    CONFIG_NAME,
    RESERVED_CONFIG_KEYS,
    WEIGHTS_NAME,
    CheckpointError,
    check_checkpoint_config,
    is_checkpoint_folder,
)
from napbench.zoo._graphs import GraphsLike, graph_families

__all__ = ["Predictor", "torch_threads", "utc_now"]


class Predictor(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="napbench",
    tags=["napbench", "neural-architecture-performance-prediction"],
):
    """Base class of every performance predictor (see the module docstring).

    Subclasses implement :meth:`fit`, :meth:`predict` and, when adapting differs from
    fitting, :meth:`fine_tune`; encoders with a label-free stage implement :meth:`pretrain`
    and set ``pretrainable = True``. Init arguments must be keyword arguments with JSON-able
    defaults: they are the checkpoint's configuration. Anything learned must live in
    parameters or (persistent) buffers so that ``model.safetensors`` holds it; composite
    predictors (ensembles) write their members into sub-folders by overriding
    :meth:`_save_pretrained` / :meth:`_load_extra`.
    """

    #: registered name (set by :func:`~napbench.zoo.register_predictor`)
    name: ClassVar[str] = ""
    #: one line for listings and model cards
    description: ClassVar[str] = ""
    #: whether :meth:`pretrain` does something (a label-free encoder stage)
    pretrainable: ClassVar[bool] = False
    #: a cache type whose one instance several predictors of a run may share (``cache=`` init
    #: argument; e.g. zero-cost proxy values, pretrained encoders and embeddings); None: no cache
    cache_factory: ClassVar[Any] = None
    #: whether :meth:`predict` reads statistics of the population passed in one call (so a graph's
    #: score depends on its company) until :meth:`calibrate` freezes them
    population_relative: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        #: what fit / fine_tune / pretrain recorded (families, sizes, epochs, seeds); saved in config.json
        self.training_info: dict[str, Any] = {}

    # -- the interface ------------------------------------------------------------------
    @property
    def predictor_name(self) -> str:
        """Registered name of this instance (predictors registered under several names override it)."""
        return type(self).name

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` or :meth:`fine_tune` (or a loaded checkpoint's) has fitted labels."""
        return bool(self.training_info.get("fit") or self.training_info.get("fine_tune"))

    def pretrain(self, graphs: GraphsLike, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> Self:
        """Label-free pretraining on ``graphs`` (encoders only); returns self."""
        raise InvalidArgumentError(f"predictor {self.predictor_name!r} has no label-free pretraining; expected an encoder predictor")

    def fit(
        self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True
    ) -> Self:
        """Fit on ``graphs`` with labels ``y`` from scratch (a seeded fresh start); returns self."""
        raise NotImplementedError(f"{type(self).__name__}.fit")

    def fine_tune(
        self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True
    ) -> Self:
        """Adapt an already fitted predictor to a few labelled samples of a new family; returns self."""
        raise NotImplementedError(f"{type(self).__name__}.fine_tune")

    def predict(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        """One predicted label (float64) per graph, in order."""
        raise NotImplementedError(f"{type(self).__name__}.predict")

    def calibrate(self, graphs: GraphsLike, *, seed: int = 0) -> Self:
        """Freeze the population statistics :meth:`predict` would otherwise take from each call.

        ``graphs`` is an *unlabelled* sample of one or more families (no label is read). A
        predictor whose outputs are relative to the graphs predicted together
        (``population_relative``; e.g. GENNAPE's per-family feature standardisation and its
        merge-sort rankers) records, per family of the sample, what it needs so that afterwards
        a graph of that family gets the same prediction whatever other graphs share the call
        (and the one it got inside a call on the whole sample). Calibration is kept by
        :meth:`fine_tune` and checkpoints and dropped by :meth:`fit`; calibrating again
        replaces the families in the new sample. The default does nothing (pointwise
        predictors need nothing frozen). Returns self.
        """
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - predictors use predict()
        raise NotImplementedError(f"{type(self).__name__} has no forward(); call predict(graphs)")

    def clone(self) -> Self:
        """An independent deep copy (fine-tuning a clone leaves this predictor unchanged)."""
        return copy.deepcopy(self, memo=self._shared_on_clone())

    def _shared_on_clone(self) -> dict[int, Any]:
        """``deepcopy`` memo entries for objects clones share (caches); none by default."""
        return {}

    # -- helpers for subclasses ---------------------------------------------------------
    def _record(self, stage: str, graphs: GraphsLike, y: np.ndarray, **info: Any) -> None:
        entry = {"n": len(y), "families": graph_families(graphs), **info}
        if stage == "fit":
            keep = {k: v for k, v in self.training_info.items() if k == "pretrain"}
            self.training_info = {**keep, "fit": entry}
        elif stage == "pretrain":
            self.training_info["pretrain"] = entry
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

        ``card``: see :mod:`napbench.zoo._card`. ``config`` entries are merged into
        config.json (napbench's own keys always win). An existing checkpoint folder is
        replaced as a whole; any other existing path is refused
        (:class:`~napbench.errors.OutputPathError`). ``push_to_hub``/``repo_id`` go to the mixin.
        """
        from napbench._io import atomic_dir

        if card is None and model_card_kwargs:
            card = model_card_kwargs.get("card")
        target = Path(save_directory)
        with atomic_dir(target, is_ours=is_checkpoint_folder, what="napbench checkpoint folder") as tmp:
            self.write_checkpoint(tmp, card=card, config=config)
        if push_to_hub:  # pragma: no cover - needs the network; a later issue publishes to the Hub
            cfg = {**dict(config or {}), **self.checkpoint_config()}
            return self.push_to_hub(repo_id or target.name, config=cfg, model_card_kwargs={"card": card}, **push_to_hub_kwargs)
        return None

    def write_checkpoint(self, directory: str | os.PathLike[str], *, card: Mapping[str, Any] | str | None = None,
                         config: Mapping[str, Any] | None = None) -> None:
        """Fill ``directory`` (new or empty; not atomic -- :meth:`save_pretrained` wraps this) with the checkpoint."""
        cfg = {**dict(config or {}), **self.checkpoint_config()}
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        PyTorchModelHubMixin.save_pretrained(self, d, config=cfg, model_card_kwargs={"card": card})

    def generate_model_card(self, *args: Any, card: Mapping[str, Any] | str | None = None, **kwargs: Any) -> ModelCard:
        """The model card (huggingface_hub ``ModelCard``; see :mod:`napbench.zoo._card`)."""
        from napbench.zoo._card import model_card

        return model_card(self, card)

    def model_card(self, card: Mapping[str, Any] | None = None) -> str:
        """The README.md model card text (Hub-style YAML front matter + Markdown)."""
        return str(self.generate_model_card(card=card))

    def _load_extra(self, folder: str) -> None:
        """Hook run after the weights of a local checkpoint are loaded (composites load members here)."""

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
        from napbench.zoo._checkpoint_io import load_weights
        from napbench.zoo._registry import predictor_class

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
        model.training_info = dict(config.get("training") or {})
        model._prepare_load(config)
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
        load_weights(model, weights, model_id, strict=strict, device=map_location)  # header checked; never unpickles
        model._hub_mixin_config = {k: v for k, v in config.items() if k not in RESERVED_CONFIG_KEYS}
        if os.path.isdir(model_id):
            model._load_extra(model_id)
        model.eval()
        return model

    def _prepare_load(self, config: Mapping[str, Any]) -> None:
        """Hook run before weights load: shape buffers whose size the config records (none by default)."""


def _napbench_version() -> str:
    try:
        from importlib.metadata import version

        return version("napbench")
    except Exception:  # noqa: BLE001 - metadata absent in a source checkout
        return "unknown"


def utc_now() -> str:
    """ISO timestamp recorded in training info."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
