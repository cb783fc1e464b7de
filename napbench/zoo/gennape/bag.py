"""``gennape-bag``: a bag of GENNAPE ensembles fitted with consecutive seeds.

Fits of one configuration that differ only in their seed rank a held-out family differently
(NB-201 zero-shot, five fits: 0.795 to 0.870), and their errors are partly independent: the
mean of their zero-shot predictions ranks NB-201 better than the average fit (README,
"A bag of fits"). A bag holds ``fits`` :class:`~napbench.zoo.gennape.ensemble.GennapeEnsemble`
fits (seeds ``seed``, ``seed + 1``, ...; ``ensemble_kwargs`` go to each):

* zero-shot it predicts the mean of the fits' predictions (each a z-score, see
  :attr:`GennapeEnsemble.meaning`);
* :meth:`GennapeBag.fine_tune` leaves the fits as they are and blends their mean with target
  models fitted on the sample: a GP on each fit's encoder embeddings, the GPs' standardised
  out-of-sample values averaged into one part (one fit's GP ranks NB-201 at 0.82-0.87 from 50
  samples, their mean at 0.87), and a WL-subtree kernel ridge
  (:mod:`napbench.zoo.gennape.blend`); weights chosen as the ensemble chooses them (the first
  fit's ``blend_step`` and ``blend_bags``). Bags fine-tuned before stop 23 kept the
  first fit's GP only, and predict as they did;
* the uncertainty is the weighted spread of the fits (and, fine-tuned, of the target models).

It costs ``fits`` times the training and the prediction of one ensemble. A bag is one composite
checkpoint (each fit a sub-folder, :func:`napbench.zoo.load` in one line);
:meth:`GennapeBag.from_fits` assembles one from ensembles fitted apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from napbench.errors import InvalidArgumentError
from napbench.zoo._checkpoint import load_members, save_members
from napbench.zoo._graphs import GraphsLike, check_graphs_labels
from napbench.zoo._interface import Predictor, utc_now
from napbench.zoo._registry import register_predictor
from napbench.zoo.gennape.ensemble import MIN_TARGET_SAMPLES, GennapeEnsemble, blend_parts, label_map, weighted_report

__all__ = ["GennapeBag"]


@register_predictor("gennape-bag")
class GennapeBag(Predictor):
    """A bag of GENNAPE ensembles (see the module docstring)."""

    description = ("A bag of GENNAPE ensembles fitted with consecutive seeds: zero-shot the mean of their predictions; "
                   "fine-tuned, that mean blended with target models fitted on the k samples.")
    pretrainable = True
    population_relative = True
    meaning: ClassVar[str] = GennapeEnsemble.meaning.split(" The uncertainty is")[0] + (
        " The uncertainty is the standard deviation of the fits' predictions (after fine-tuning, the weighted one of the "
        "fits and the target models fitted on the k samples).")

    def __init__(self, fits: int = 5, ensemble_kwargs: dict[str, Any] | None = None, root: str | None = None,
                 mirror: str | None = None) -> None:
        super().__init__()
        if isinstance(fits, bool) or not isinstance(fits, int) or fits < 1:
            raise InvalidArgumentError(f"fits is {fits!r}; expected an int >= 1")
        self.n_fits = fits
        self.ensemble_kwargs = dict(ensemble_kwargs or {})
        GennapeEnsemble(**self._kwargs())  # checks the ensemble's arguments now, not after a fit
        self.root, self.mirror = root, mirror
        self.fits: list[GennapeEnsemble] = []
        self.register_buffer("out_map", torch.tensor([0.0, 1.0], dtype=torch.float64))

    def _kwargs(self) -> dict[str, Any]:
        root = getattr(self, "root", None)
        mirror = getattr(self, "mirror", None)
        return {**self.ensemble_kwargs, **({"root": root} if root else {}), **({"mirror": mirror} if mirror else {})}

    @classmethod
    def from_fits(cls, fits: Sequence[GennapeEnsemble | str | Path]) -> GennapeBag:
        """A zero-shot bag of fitted ensembles (or their checkpoint folders), in order; the first
        one's target models are those :meth:`fine_tune` fits. The bag records no ensemble
        arguments of its own (``ensemble_kwargs`` stays empty): refitting it fits default ensembles."""
        from napbench.zoo._checkpoint import load

        ens = [load(f) if isinstance(f, (str, Path)) else f for f in fits]
        bad = [i for i, e in enumerate(ens) if not isinstance(e, GennapeEnsemble) or not e.is_fitted]
        if not ens or bad:
            raise InvalidArgumentError(f"fits {bad or list(fits)!r} are not fitted gennape ensembles; expected at least one")
        bag = cls(fits=len(ens))
        bag.fits = [e.clone() for e in ens]
        for e in bag.fits:  # zero-shot, whatever the fits were fine-tuned on
            e.training_info.pop("blend", None)
            e.training_info.pop("fine_tune", None)
        bag.training_info = {"fit": {"fits": [e.training_info.get("fit") for e in bag.fits], "when": utc_now()}}
        return bag

    # -- checkpoints ------------------------------------------------------------------------
    def checkpoint_config(self) -> dict[str, Any]:
        cfg = super().checkpoint_config()
        cfg["fits"] = self.n_fits
        cfg["member_dirs"] = [f"{i:02d}-gennape" for i in range(len(self.fits))]
        return cfg

    def _save_pretrained(self, save_directory: Path) -> None:
        if len(self.fits) != self.n_fits:
            raise InvalidArgumentError("the bag is not fitted; expected fit() before save_pretrained()")
        super()._save_pretrained(save_directory)
        save_members(Path(save_directory), [("gennape", f) for f in self.fits])

    def _load_extra(self, folder: str) -> None:
        from napbench.zoo._checkpoint import read_config

        fits = load_members(folder, read_config(folder).get("member_dirs") or [])
        if len(fits) != self.n_fits or not all(isinstance(f, GennapeEnsemble) for f in fits):
            raise InvalidArgumentError(f"checkpoint {folder!r} holds {len(fits)} fit(s); expected {self.n_fits} gennape ensembles")
        self.fits = fits  # type: ignore[assignment]

    def _shared_on_clone(self) -> dict[int, Any]:
        memo: dict[int, Any] = {}
        for f in self.fits:
            memo.update(f._shared_on_clone())
        return memo

    # -- fitting ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if len(self.fits) != self.n_fits or not all(f.is_fitted for f in self.fits):
            raise InvalidArgumentError("the gennape bag is not fitted; expected fit() or a checkpoint first")

    def pretrain(self, graphs: GraphsLike, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> GennapeBag:
        """Pretrain each fit's encoder on ``graphs`` (no labels), fit ``i`` with seed ``seed + i``."""
        self.fits = [GennapeEnsemble(**self._kwargs()) for _ in range(self.n_fits)]
        for i, f in enumerate(self.fits):
            f.pretrain(graphs, epochs=epochs, seed=seed + i, progress=progress)
        self.training_info["pretrain"] = dict(self.fits[0].training_info.get("pretrain") or {})
        return self

    def fit(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> GennapeBag:
        """Fit every ensemble of the bag, fit ``i`` with seed ``seed + i`` (pretrained ones keep their encoder)."""
        y = check_graphs_labels(graphs, y)
        if len(self.fits) != self.n_fits:
            self.fits = [GennapeEnsemble(**self._kwargs()) for _ in range(self.n_fits)]
        for i, f in enumerate(self.fits):
            f.fit(graphs, y, epochs=epochs, seed=seed + i, progress=progress)
        self.out_map = torch.tensor([0.0, 1.0], dtype=torch.float64)
        self._record("fit", graphs, y, seed=seed, fits=self.n_fits, when=utc_now())
        return self

    def calibrate(self, graphs: GraphsLike, *, seed: int = 0) -> GennapeBag:
        """Calibrate every fit on the unlabelled ``graphs`` (see :meth:`Predictor.calibrate`); returns self."""
        self._check_fitted()
        for f in self.fits:
            f.calibrate(graphs, seed=seed)
        return self

    def _encoders(self) -> list[Any]:
        """Each fit's shared encoder (the target GP is one GP per fit, averaged)."""
        return [f._first_gennape() for f in self.fits]

    def _mixes(self, graphs: GraphsLike) -> np.ndarray:
        """``(fits, N)``: each fit's zero-shot prediction (its members' weighted mix)."""
        return np.stack([f.weights.numpy() @ f.member_predictions(graphs) for f in self.fits])

    def fine_tune(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> GennapeBag:
        """Blend the fits' mean with target models fitted on the k samples (the fits stay as they are)."""
        y = check_graphs_labels(graphs, y)
        self._check_fitted()
        if len(y) < 2:
            raise InvalidArgumentError(f"{len(y)} fine-tuning architecture(s); expected at least 2")
        first = self.fits[0]
        mu, sd = float(y.mean()), float(y.std()) if y.std() > 0 else 1.0
        z = (y - mu) / sd
        mix = self._mixes(graphs).mean(0)  # zero-shot predictions of the sample: out of sample already
        self.training_info.pop("blend", None)
        info: dict[str, Any] = {}
        if first.target_models and len(y) >= MIN_TARGET_SAMPLES:
            blend = first._fit_blend(first._view(graphs), z, mix, seed=seed, encoders=self._encoders())
            self.training_info["blend"] = blend
            a, b = blend["out"]
            info = {"blend_weights": dict(zip(["fits", *blend["models"]], blend["weights"])), "blend_loo_srcc": blend["loo_srcc"]}
        else:
            a, b = float(mix.mean()), float(mix.std()) if mix.std() > 1e-12 else 1.0
        self.out_map = label_map(mu, sd, a, b)
        self._record("fine_tune", graphs, y, seed=seed, **info)
        return self

    # -- prediction ---------------------------------------------------------------------------
    def predict_with_uncertainty(self, graphs: GraphsLike) -> dict[str, Any]:
        """``mean`` (the prediction), ``std`` (weighted spread of the fits, and of the target models once
        fine-tuned), ``members`` (part name -> values, in the prediction's units) and ``weights``."""
        self._check_fitted()
        p = self._mixes(graphs)
        names = [f"fit:{i}" for i in range(len(self.fits))]
        w = np.full(len(names), 1.0 / len(names))
        blend: Mapping[str, Any] | None = self.training_info.get("blend")
        if blend:
            first = self.fits[0]
            p, names, w = blend_parts(p, names, w, blend, first._target_parts(first._view(graphs), blend, self._encoders()))
        return weighted_report(p, names, w, self.out_map)

    def predict(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        """The bag's prediction (see the module docstring for its scale)."""
        return self.predict_with_uncertainty(graphs)["mean"]
