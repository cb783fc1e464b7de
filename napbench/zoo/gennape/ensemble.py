"""``gennape``: GENNAPE's ensemble, with the members' spread as its uncertainty.

Members (each a registered predictor, saved as a sub-folder of the ensemble's checkpoint):
``gennape:cl+fcm+t``, ``gennape:cl+t``, ``gennape:cl+pairwise``, ``gennape:cl+fcm+pairwise``
(all four share one pretrained contrastive encoder), ``kgnn`` and ``flops``.

Every member works on one scale, the **per-family z-score** of the label: the GENNAPE heads by
their label transforms (pairwise members: the normal quantile of their merge-sort rank),
``kgnn`` and ``flops`` by being fitted on per-family z-scored labels.

* zero-shot, the prediction is the **equal-weight mean** of the members' z-scores: how many
  standard deviations above the mean of its family the label is expected to be. Each member's
  output is first divided by its spread on the training graphs (mean within-family standard
  deviation; 1 for the rank-based pairwise members), so that a member that predicts shrunken
  z-scores (least squares on a weak feature, e.g. ``flops``) still carries its equal weight.
  ``zero_shot_weights="encoders"`` gives one equal share per independent model instead: the four
  members on one pretrained encoder split one share, ``kgnn`` and ``flops`` one each
  (:meth:`GennapeEnsemble.equal_weights`);
* :meth:`GennapeEnsemble.fine_tune` standardises the k target labels with their own mean and
  standard deviation. Each member's Kendall tau is measured **out of fold** on that sample
  (``folds``-fold: every sample is predicted by a copy of the member fine-tuned without it), and
  a member is fine-tuned on the whole sample only when that tau beats the tau of the member as
  it is (whose predictions of the sample are out of sample already; fine-tuned on 50 samples,
  members often rank the rest of the family worse). Taus out of fold, because in-sample taus reward the members that overfit 50
  samples most (measured on NB-201: the ensemble fell from 0.810 zero-shot to 0.799 50-shot
  with in-sample taus; ``out_of_fold=False`` restores them, at ``weight_temperature`` only, for
  the ablation). The weights are the softmax of those taus divided by a temperature,
  chosen among ``weight_temperature`` and ``temperatures`` by the Spearman correlation of the
  weighted out-of-fold mix with the sample (ties keep the plainest softmax). Each member is
  divided by its spread on the sample (as zero-shot), and the mix maps to the target's label
  units as its out-of-fold values map to the sample's z-scores;
* ``fine_tune_members=False`` skips the above: members and their zero-shot weights stay as they
  are (their predictions of the sample are out of sample already), and only the blend below is
  fitted -- seconds instead of minutes, and as good in our measurements (README);
* with ``target_models`` (default ``("gp", "wl")``, see :mod:`napbench.zoo.gennape.blend`),
  learners fitted on the sample alone -- a Gaussian process on the shared encoder's embeddings
  and a kernel ridge on Weisfeiler-Lehman subtree features -- are blended with the members' mix.
  The blend weights (a grid on the simplex, step ``blend_step``) are those whose blend of the
  mix's out-of-fold values and the learners' leave-one-out values ranks the sample best (ties
  keep the most weight on transfer), averaged over ``blend_bags`` bootstrap resamples of the
  sample (default 50; 0 takes the best row on the sample itself, as checkpoints saved before
  this option do). Where transfer ranks the target well (NB-201) the mix
  keeps most of the weight, where it does not (TransNAS-Bench-101 macro) the target's own
  samples take over. The blend maps to label units as its out-of-sample values map to the
  sample's z-scores;
* :meth:`GennapeEnsemble.calibrate` (label-free) calibrates every member on an unlabelled
  sample, so that afterwards a graph's prediction does not depend on the other graphs of the
  call (see :mod:`napbench.zoo.gennape.predictors`; ``kgnn`` and ``flops`` are pointwise already);
* every graph is read through ``graph_view`` (default ``"effective"``, see
  :mod:`napbench.zoo._views`): branches that carry nothing of the input (``zero`` ops and the
  ops fed only by them, e.g. NAS-Bench-201's ``none`` edges) are removed before fitting,
  fine-tuning and predicting, so a cell with a dead convolution is read as the cell without it
  (its MACs no longer count). Checkpoints saved before this option read graphs
  ``"as_converted"``, as they were fitted. The encoder's label-free pretraining reads
  ``pretrain_view`` (default ``"as_converted"``: pretraining on effective graphs was measured
  level zero-shot and 0.005 lower at 50 shots on NB-201, README "Pretraining on effective graphs");
* the **uncertainty** is the weighted standard deviation of the members' predictions
  (:meth:`GennapeEnsemble.predict_with_uncertainty` also returns each member's value).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from napbench.errors import InvalidArgumentError
from napbench.zoo._checkpoint import load_members, save_members
from napbench.zoo._graphs import GraphsLike, check_graphs_labels, dataset_column, graph_family_of_each, is_dataset, take_graphs
from napbench.zoo._interface import Predictor, utc_now
from napbench.zoo._registry import get_predictor, register_predictor
from napbench.zoo._views import check_view, graph_view
from napbench.zoo.features import distinct_in_order, pack
from napbench.zoo.gennape import transforms as T
from napbench.zoo.gennape.blend import EmbeddingGP, simplex_grid, simplex_weights
from napbench.zoo.gennape.predictors import LABEL_TASK, EncoderCache, GennapePairwise, GennapePredictor
from napbench.zoo.wl import WLRidge

#: the members, in order
MEMBERS: tuple[str, ...] = ("gennape:cl+fcm+t", "gennape:cl+t", "gennape:cl+pairwise", "gennape:cl+fcm+pairwise", "kgnn", "flops")

#: zero-shot weightings (:meth:`GennapeEnsemble.equal_weights`)
ZERO_SHOT_WEIGHTS: tuple[str, ...] = ("members", "encoders")
#: learners fitted on the fine-tuning sample alone, blended with the members (see :mod:`napbench.zoo.gennape.blend`)
TARGET_MODELS: tuple[str, ...] = ("gp", "wl")
#: fewer fine-tuning samples than this: no target models (their leave-one-out scores would be noise)
MIN_TARGET_SAMPLES = 5
#: more than this: the target models and the blend weights are fitted on a seeded subsample of this
#: size (kernel models cost O(k^3) time and O(k^2) memory)
MAX_TARGET_SAMPLES = 2000
#: bootstrap resamples of the fine-tuning sample the blend weights are averaged over (``blend_bags``)
BLEND_BAGS = 50

__all__ = ["BLEND_BAGS", "MEMBERS", "TARGET_MODELS", "ZERO_SHOT_WEIGHTS", "GennapeEnsemble", "blend_parts",
           "label_map", "weighted_report"]


@register_predictor("gennape")
class GennapeEnsemble(Predictor):
    """GENNAPE ensemble (see the module docstring)."""

    description = ("GENNAPE ensemble: CL+FCM+T, CL+T, two pairwise rankers (with and without FCM), a k-GNN and FLOPs; "
                   "equal weights zero-shot, softmax of Kendall tau after fine-tuning; members' spread = uncertainty.")
    pretrainable = True
    cache_factory = EncoderCache
    population_relative = True
    meaning: ClassVar[str] = (
        "Zero-shot: a z-score, the predicted number of standard deviations by which the architecture's label "
        "(CIFAR-10 validation accuracy for NAS-Bench families, Taskonomy class_object score for TransNAS-Bench-101) "
        "lies above the mean of its family; compare architectures within one family. After fine-tuning on k labelled "
        "target architectures: the target's own label units (e.g. CIFAR-10 accuracy in %). The uncertainty is the "
        "weighted standard deviation of the six members' predictions (after fine-tuning, of the members and the "
        "target models fitted on the k samples)."
    )

    def __init__(
        self,
        members: list[str] = MEMBERS,  # type: ignore[assignment]
        member_kwargs: dict[str, Any] | None = None,
        kgnn_epochs: int = 8,
        weight_temperature: float = 1.0,
        temperatures: tuple[float, ...] = (1.0, 0.3, 0.1),
        folds: int = 5,
        out_of_fold: bool = True,
        zero_shot_weights: str = "members",
        fine_tune_members: bool = True,
        target_models: tuple[str, ...] = ("gp", "wl"),
        blend_step: float = 0.1,
        blend_bags: int = BLEND_BAGS,
        wl_iterations: int = 2,
        graph_view: str = "effective",
        pretrain_view: str = "as_converted",
        source_task: str | None = None,
        root: str | None = None,
        mirror: str | None = None,
        cache: EncoderCache | None = None,
    ) -> None:
        super().__init__()
        bad = [m for m in members if m.startswith("gennape") and m not in _GENNAPE_MEMBERS]
        if bad or not members:
            raise InvalidArgumentError(f"ensemble members {bad or members!r} are invalid; expected names among {list(MEMBERS)}")
        if weight_temperature <= 0 or any(t <= 0 for t in temperatures):
            raise InvalidArgumentError(f"weight temperatures {[weight_temperature, *temperatures]}; expected numbers > 0")
        if not isinstance(folds, int) or folds < 2:
            raise InvalidArgumentError(f"folds is {folds!r}; expected an int >= 2")
        self.temperatures = tuple(float(t) for t in temperatures)
        self.folds, self.out_of_fold = folds, bool(out_of_fold)
        if zero_shot_weights not in ZERO_SHOT_WEIGHTS:
            raise InvalidArgumentError(f"zero_shot_weights is {zero_shot_weights!r}; expected one of {list(ZERO_SHOT_WEIGHTS)}")
        self.zero_shot_weights = zero_shot_weights
        self.fine_tune_members = bool(fine_tune_members)
        bad_t = [t for t in target_models if t not in TARGET_MODELS]
        if bad_t:
            raise InvalidArgumentError(f"target models {bad_t!r} are invalid; expected names among {list(TARGET_MODELS)}")
        simplex_grid(len(target_models) + 1, blend_step)  # checks the step
        self.target_models, self.blend_step = tuple(target_models), float(blend_step)
        if not isinstance(blend_bags, int) or blend_bags < 0:
            raise InvalidArgumentError(f"blend_bags is {blend_bags!r}; expected an int >= 0 (0: no bagging)")
        self.blend_bags = blend_bags
        self.wl_iterations = int(wl_iterations)
        self.graph_view = check_view(graph_view)
        self.pretrain_view = check_view(pretrain_view)
        self.member_names = list(members)
        self.member_kwargs = dict(member_kwargs or {})
        self.kgnn_epochs, self.weight_temperature, self.source_task = int(kgnn_epochs), float(weight_temperature), source_task
        self.root, self.mirror = root, mirror
        self.cache = cache if cache is not None else EncoderCache()
        self._workers: int | None = None
        self.members: list[Predictor] = []
        self.register_buffer("weights", torch.full((len(self.member_names),), 1.0 / len(self.member_names), dtype=torch.float64))
        self.register_buffer("out_map", torch.tensor([0.0, 1.0], dtype=torch.float64))
        self.register_buffer("taus", torch.zeros(len(self.member_names), dtype=torch.float64))
        self.register_buffer("scales", torch.ones(len(self.member_names), dtype=torch.float64))

    # -- config / checkpoints ---------------------------------------------------------------
    def checkpoint_config(self) -> dict[str, Any]:
        cfg = super().checkpoint_config()
        cfg.pop("cache", None)
        cfg["member_dirs"] = [f"{i:02d}-{n.replace(':', '-').replace('+', '-')}" for i, n in enumerate(self.member_names)]
        return cfg

    def _shared_on_clone(self) -> dict[int, Any]:
        return {id(self.cache): self.cache}

    def _save_pretrained(self, save_directory: Path) -> None:
        if len(self.members) != len(self.member_names):
            raise InvalidArgumentError("the ensemble is not fitted; expected fit() before save_pretrained()")
        super()._save_pretrained(save_directory)
        save_members(Path(save_directory), list(zip(self.member_names, self.members)))

    def _load_extra(self, folder: str) -> None:
        from napbench.zoo._checkpoint import read_config

        config = read_config(folder)
        if "graph_view" not in config:  # saved before graph views: it read the graphs as converted
            self.graph_view = "as_converted"
        if "blend_bags" not in config:  # saved before bagged blend weights: fine-tunes as it did
            self.blend_bags = 0
        subdirs = config.get("member_dirs") or []
        members = load_members(folder, subdirs)
        first: GennapePredictor | None = None
        for m in members:
            if isinstance(m, GennapePredictor):
                if first is None:
                    first = m
                    first.cache = self.cache
                elif m.fingerprint() == first.fingerprint():
                    m.share_encoder(first)
                else:
                    m.cache = self.cache
        self.members = members

    # -- fitting ----------------------------------------------------------------------------
    def _build(self) -> list[Predictor]:
        out: list[Predictor] = []
        for name in self.member_names:
            if name in _GENNAPE_MEMBERS:
                kw = {"root": self.root, "mirror": self.mirror, "cache": self.cache, "source_task": self.source_task,
                      "pretrain_view": self.pretrain_view, **self.member_kwargs}
                out.append(get_predictor(name, **kw))
            elif name == "kgnn":
                out.append(get_predictor("kgnn", epochs=self.kgnn_epochs))
            else:
                out.append(get_predictor(name))
        return out

    def pretrain(self, graphs: GraphsLike, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> GennapeEnsemble:
        """Pretrain the shared encoder on ``graphs`` (no labels)."""
        graphs = self._view(graphs, progress=progress)
        self.members = self._build()
        first = self._first_gennape()
        first.pretrain(graphs, epochs=epochs, seed=seed, progress=progress)
        for m in self.members:
            if isinstance(m, GennapePredictor) and m is not first:
                m.share_encoder(first)
        self.training_info["pretrain"] = dict(first.training_info.get("pretrain") or {})
        return self

    def _first_gennape(self) -> GennapePredictor:
        for m in self.members:
            if isinstance(m, GennapePredictor):
                return m
        raise InvalidArgumentError("the ensemble has no GENNAPE member; expected at least one gennape:* member")

    def fit(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> GennapeEnsemble:
        """Fit every member (GENNAPE members share one pretrained encoder); equal weights."""
        from tqdm.auto import tqdm

        y = check_graphs_labels(graphs, y)
        graphs = self._view(graphs, progress=progress)
        pretrained = bool(self.members) and any(isinstance(m, GennapePredictor) and bool(m.pretrained) for m in self.members)
        if not pretrained:
            self.members = self._build()
        first = None
        for m in self.members:
            if isinstance(m, GennapePredictor):
                if first is None:
                    first = m
                else:
                    m.share_encoder(first)
        g_z, z = _family_z(graphs, y, self.source_task)
        for name, m in tqdm(list(zip(self.member_names, self.members)), desc="fit gennape", unit="member", disable=not progress):
            if isinstance(m, GennapePredictor):
                m.fit(graphs, y, epochs=epochs, seed=seed, progress=progress)
                if m is first:
                    for other in self.members:
                        if isinstance(other, GennapePredictor) and other is not first:
                            other.share_encoder(first)
            else:
                m.fit(g_z, z, seed=seed, progress=False)
        n = len(self.members)
        self.weights = torch.as_tensor(self.equal_weights(), dtype=torch.float64)
        self.out_map = torch.tensor([0.0, 1.0], dtype=torch.float64)
        self.taus = torch.zeros(n, dtype=torch.float64)
        self.scales = torch.as_tensor(self._member_spreads(graphs, seed), dtype=torch.float64)
        pre = first.training_info.get("pretrain") if first is not None else None
        self._record("fit", graphs, y, seed=seed, members=self.member_names, when=utc_now())
        if pre:
            self.training_info["pretrain"] = dict(pre)
        return self

    def equal_weights(self, kind: str | None = None) -> np.ndarray:
        """Zero-shot weights of ``kind`` (default :attr:`zero_shot_weights`): ``"members"``, one equal share per
        member; ``"encoders"``, one equal share per independent model, the members that share one
        pretrained encoder splitting one share (their errors are the encoder's, so they are one vote)."""
        kind = self.zero_shot_weights if kind is None else kind
        if kind not in ZERO_SHOT_WEIGHTS:
            raise InvalidArgumentError(f"zero-shot weights {kind!r}; expected one of {list(ZERO_SHOT_WEIGHTS)}")
        n = len(self.members) or len(self.member_names)
        if kind == "members" or not self.members:
            return np.full(n, 1.0 / n)
        keys = [m.fingerprint() if isinstance(m, GennapePredictor) else f"#{i}" for i, m in enumerate(self.members)]
        size = {k: keys.count(k) for k in keys}
        return np.asarray([1.0 / (len(size) * size[k]) for k in keys])

    def _member_spreads(self, graphs: GraphsLike, seed: int, cap: int = 2000) -> np.ndarray:
        """Each member's mean within-family standard deviation of its predictions on (up to ``cap``
        of) the training graphs; zero-shot predictions are divided by it so that every member
        enters the equal-weight mean on one scale (a least-squares member such as ``flops``
        predicts a shrunken z-score). Rank-based (pairwise) members have unit spread already.
        Repeated graphs count once, as in :meth:`member_predictions`."""
        graphs, _ = _distinct(graphs)
        fams = np.asarray(graph_family_of_each(graphs), dtype=object)
        rows = np.arange(len(fams))
        if len(rows) > cap:
            rows = np.sort(np.random.default_rng((seed, 17)).choice(len(rows), size=cap, replace=False))
        sub = take_graphs(graphs, rows)
        out = []
        for m in self.members:
            if isinstance(m, GennapePairwise):
                out.append(1.0)
                continue
            p = np.asarray(m.predict(sub), dtype=np.float64)
            sds = [p[fams[rows] == f].std() for f in dict.fromkeys(fams[rows].tolist()) if (fams[rows] == f).sum() > 1]
            sd = float(np.mean(sds)) if sds else 0.0
            out.append(sd if np.isfinite(sd) and sd > 1e-8 else 1.0)
        return np.asarray(out)

    def fine_tune(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> GennapeEnsemble:
        """Fine-tune every member on the standardised k samples; weights = softmax(out-of-fold Kendall tau /
        temperature); then blend the mix with target models fitted on the sample alone (see the module docstring).
        With ``fine_tune_members=False`` the members and their zero-shot weights stay as they are and only the
        blend is fitted."""
        y = check_graphs_labels(graphs, y)
        self._check_fitted()
        graphs = self._view(graphs)
        n = len(y)
        if n < 2:
            raise InvalidArgumentError(f"{n} fine-tuning architecture(s); expected at least 2")
        mu, sd = float(y.mean()), float(y.std()) if y.std() > 0 else 1.0
        z = (y - mu) / sd
        if self.fine_tune_members:
            mix_oof, info = self._fine_tune_members(graphs, z, epochs=epochs, seed=seed)
        else:  # the members' zero-shot predictions of the sample are out of sample already
            zero = self._predict_members(graphs)  # on the zero-shot scale (a positive scale: taus as unscaled)
            self.weights = torch.as_tensor(self.equal_weights(), dtype=torch.float64)
            self.taus = torch.tensor([_tau(p, z) for p in zero], dtype=torch.float64)
            mix_oof = self.weights.numpy() @ zero
            info = {"taus": [round(float(t), 4) for t in self.taus], "members_fine_tuned": False}
        c0, c1 = float(mix_oof.mean()), float(mix_oof.std()) if mix_oof.std() > 1e-12 else 1.0
        # the members' mix maps to label units as its out-of-fold values do to the sample's z-scores
        self.out_map = label_map(mu, sd, c0, c1)
        self.training_info.pop("wl_residual", None)
        self.training_info.pop("blend", None)
        if self.target_models and n >= MIN_TARGET_SAMPLES:
            blend = self._fit_blend(graphs, z, mix_oof, seed=seed)
            self.training_info["blend"] = blend
            self.out_map = label_map(mu, sd, *blend["out"])
            info["blend_weights"] = dict(zip(["members", *blend["models"]], blend["weights"]))
            info["blend_loo_srcc"] = blend["loo_srcc"]
        self._record("fine_tune", graphs, y, seed=seed, **info)
        return self

    def _fine_tune_members(self, graphs: GraphsLike, z: np.ndarray, *, epochs: int | None, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Fine-tune the members (those that gain out of fold) and weigh them by the softmax of their
        out-of-fold Kendall taus; returns the weighted out-of-fold mix of the sample and what was chosen."""
        from scipy.stats import spearmanr

        kept: list[bool] = []
        if self.out_of_fold:
            # each member as it is (its predictions of the sample are out of sample already) against the
            # member fine-tuned, measured out of fold; a member is fine-tuned only when that ranks the sample better
            zero = np.stack([np.asarray(m.predict(graphs), dtype=np.float64) for m in self.members])
            oof = self._out_of_fold(graphs, z, epochs=epochs, seed=seed)
            for i in range(len(self.members)):
                keep = _tau(zero[i], z) >= _tau(oof[i], z)
                kept.append(bool(keep))
                if keep:
                    oof[i] = zero[i]
        preds = []
        for i, m in enumerate(self.members):
            if kept and kept[i]:  # unchanged: its predictions of the sample are the zero-shot ones
                preds.append(zero[i])
                continue
            m.fine_tune(graphs, z, epochs=epochs if isinstance(m, GennapePredictor) else None, seed=seed, progress=False)
            preds.append(np.asarray(m.predict(graphs), dtype=np.float64))
        if not self.out_of_fold:  # the literal weighting: taus of the fine-tuned members on their own sample
            oof = np.stack(preds)
        taus = [_tau(p, z) for p in oof]
        self.taus = torch.tensor(taus, dtype=torch.float64)
        # every member on one scale again (its spread on the sample), as zero-shot
        self.scales = torch.tensor([float(p.std()) if p.std() > 1e-8 else 1.0 for p in preds], dtype=torch.float64)
        scaled_oof = oof / self.scales.numpy()[:, None]
        # the temperature whose weighted out-of-fold mix ranks the sample best (ties: the plainest softmax)
        best = (-np.inf, self.weight_temperature)
        for temp in sorted({self.weight_temperature, *(self.temperatures if self.out_of_fold else ())}, reverse=True):
            w = torch.softmax(self.taus / temp, dim=0).numpy()
            mix = w @ scaled_oof
            s = float(spearmanr(mix, z).statistic) if np.ptp(mix) > 0 else -1.0
            if np.isfinite(s) and s > best[0] + 1e-9:
                best = (s, temp)
        temp = best[1]
        self.weights = torch.softmax(self.taus / temp, dim=0)
        mix_oof = self.weights.numpy() @ scaled_oof
        info: dict[str, Any] = {"taus": [round(t, 4) for t in taus], "weights": [round(float(w), 4) for w in self.weights],
                                "temperature": temp, "out_of_fold_srcc": round(best[0], 4),
                                "kept_zero_shot": [n for n, k in zip(self.member_names, kept) if k]}
        return mix_oof, info

    def _fit_blend(self, graphs: GraphsLike, z: np.ndarray, mix: np.ndarray, *, seed: int,
                   encoders: Sequence[GennapePredictor] | None = None) -> dict[str, Any]:
        """Fit the target models on the sample and choose the blend weights (module docstring).

        ``mix``: the members' out-of-fold mix of the sample. ``encoders``: whose embeddings the GP
        reads (default this ensemble's shared encoder; a bag passes one per fit, and the GP part is
        then the mean of one GP per encoder, each standardised by its own out-of-sample values).
        Returns the blend's state: the target ``models`` fitted (``gp`` needs a GENNAPE member's
        encoder), each part's ``loc`` / ``scale`` (of its out-of-sample values; part 0 is the
        members' mix), the ``weights``, ``out`` (the blend's out-of-sample mean and standard
        deviation) and each target model's fitted state."""
        has_encoder = encoders is not None or any(isinstance(m, GennapePredictor) for m in self.members)
        models = [t for t in self.target_models if t != "gp" or has_encoder]
        if len(z) > MAX_TARGET_SAMPLES:  # kernel models cost O(k^3): a seeded subsample of the sample
            rows = np.sort(np.random.default_rng((seed, 29)).choice(len(z), size=MAX_TARGET_SAMPLES, replace=False))
            graphs, z, mix = take_graphs(graphs, rows), z[rows], mix[rows]
        parts, state = [mix], {}
        for name in models:
            if name == "gp" and encoders is not None:
                gps = [EmbeddingGP().fit(e.embed(graphs), z, seed=seed) for e in encoders]
                std = [(float(g.loo.mean()), float(g.loo.std()) if g.loo.std() > 1e-12 else 1.0) for g in gps]
                parts.append(np.mean([(g.loo - a) / b for g, (a, b) in zip(gps, std)], axis=0))
                state["gp"] = [{"gp": g.state(), "loc": a, "scale": b} for g, (a, b) in zip(gps, std)]
            elif name == "gp":
                gp = EmbeddingGP().fit(self._first_gennape().embed(graphs), z, seed=seed)
                parts.append(gp.loo)
                state["gp"] = gp.state()
            else:
                wl = WLRidge(iterations=self.wl_iterations).fit(graphs, z)
                parts.append(wl.loo)
                state["wl"] = wl.state()
        loc = [float(p.mean()) for p in parts]
        scale = [float(p.std()) if p.std() > 1e-12 else 1.0 for p in parts]
        loo = np.stack([(p - a) / b for p, a, b in zip(parts, loc, scale)])
        w, srcc = simplex_weights(loo, z, step=self.blend_step, bags=self.blend_bags, seed=seed)
        b = w @ loo
        return {"models": models, "loc": loc, "scale": scale, "weights": [float(v) for v in w], "loo_srcc": round(srcc, 4),
                "out": [float(b.mean()), float(b.std()) if b.std() > 1e-12 else 1.0], **state}

    def _target_parts(self, graphs: GraphsLike, blend: Mapping[str, Any],
                      encoders: Sequence[GennapePredictor] | None = None) -> list[np.ndarray]:
        """The fitted target models' predictions of ``graphs``, standardised as in the blend
        (``encoders``: those the blend's GPs were fitted on, see :meth:`_fit_blend`)."""
        out = []
        for i, name in enumerate(blend["models"], start=1):
            if name == "gp" and isinstance(blend["gp"], list):  # one GP per encoder (a bag's fits)
                if encoders is None or len(encoders) != len(blend["gp"]):
                    raise InvalidArgumentError(f"the blend holds {len(blend['gp'])} GPs; expected as many encoders")
                p = np.mean([(EmbeddingGP.from_state(g["gp"]).predict(e.embed(graphs)) - g["loc"]) / g["scale"]
                             for g, e in zip(blend["gp"], encoders)], axis=0)
            elif name == "gp":
                p = EmbeddingGP.from_state(blend["gp"]).predict(self._first_gennape().embed(graphs))
            else:
                p = WLRidge.from_state(blend["wl"]).predict(graphs)
            out.append((p - blend["loc"][i]) / blend["scale"][i])
        return out

    def _out_of_fold(self, graphs: GraphsLike, z: np.ndarray, *, epochs: int | None, seed: int) -> np.ndarray:
        """``(members, k)``: each sample predicted by a copy of each member fine-tuned on the other folds
        (``folds``-fold, seeded), so that a member's tau on the sample is measured out of sample."""
        n = len(z)
        k = min(self.folds, n)
        fold = np.random.default_rng((seed, 23)).permutation(n) % k
        out = np.zeros((len(self.members), n))
        for f in range(k):
            tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            if len(tr) < 2:
                continue
            g_tr, g_te = take_graphs(graphs, tr), take_graphs(graphs, te)
            for i, m in enumerate(self.members):
                c = m.clone()
                c.fine_tune(g_tr, z[tr], epochs=epochs if isinstance(c, GennapePredictor) else None, seed=seed, progress=False)
                out[i, te] = np.asarray(c.predict(g_te), dtype=np.float64)
        return out

    def calibrate(self, graphs: GraphsLike, *, seed: int = 0) -> GennapeEnsemble:
        """Calibrate every member on the unlabelled ``graphs`` (see :meth:`Predictor.calibrate`); returns self."""
        from collections import Counter

        self._check_fitted()
        graphs, _ = _distinct(self._view(graphs))  # the population the members then predict (repeats once)
        for m in self.members:
            m.calibrate(graphs, seed=seed)
        cal = dict(self.training_info.get("calibration") or {})
        cal.update({f: {"n": n, "seed": int(seed)} for f, n in Counter(graph_family_of_each(graphs)).items()})
        self.training_info["calibration"] = cal
        return self

    # -- prediction -------------------------------------------------------------------------
    def _view(self, graphs: GraphsLike, *, progress: bool = False) -> GraphsLike:
        """``graphs`` as :attr:`graph_view` sees them (see :mod:`napbench.zoo._views`)."""
        return graph_view(graphs, self.graph_view, root=self.root, progress=progress)

    def _check_fitted(self) -> None:
        if not self.members or not self.is_fitted:
            raise InvalidArgumentError("the gennape ensemble is not fitted; expected fit() or a checkpoint first")

    def member_predictions(self, graphs: GraphsLike) -> np.ndarray:
        """``(members, N)`` predictions on the ensemble's scale (before the target mapping).

        Graphs with one canonical hash in one family are one computation graph (NB-201 has 15,625
        cells but 11,640 distinct graphs), so each is predicted once and its values copied."""
        self._check_fitted()
        sub, inverse = _distinct(self._view(graphs))
        p = self._predict_members(sub)
        return p if inverse is None else p[:, inverse]

    @property
    def workers(self) -> int | None:
        """Members predicted at once, in threads (None, the default: one per CPU core); a run-time
        setting, not saved with the checkpoint."""
        return self._workers

    @workers.setter
    def workers(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidArgumentError(f"workers is {value!r}; expected an int >= 1, or None for one per CPU core")
        self._workers = value

    def _predict_members(self, graphs: GraphsLike) -> np.ndarray:
        """Each member's prediction, ``workers`` members at a time in threads (torch and numpy
        release the GIL; every member runs the same ops as alone, so the values do not depend on
        ``workers``). The members that read the embeddings of the first member's encoder are
        queued last, longest first (:func:`_queue_key`): they would only wait for them
        (:meth:`GennapePredictor.embed` computes them once), while the others (``kgnn``,
        ``flops``) use the other cores."""
        from concurrent.futures import ThreadPoolExecutor

        n = len(self.members)
        workers = max(1, min(n, self.workers if self.workers is not None else os.cpu_count() or 1))
        if workers == 1:
            out = [np.asarray(m.predict(graphs), dtype=np.float64) for m in self.members]
        else:
            if is_dataset(graphs):
                pack(graphs)  # featurised once, before the members read it
            order = sorted(range(n), key=lambda i: _queue_key(self.members, i))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gennape-member") as pool:
                futures = {i: pool.submit(self.members[i].predict, graphs) for i in order}
                out = [np.asarray(futures[i].result(), dtype=np.float64) for i in range(n)]
        return np.stack(out) / self.scales.numpy()[:, None]

    def predict_with_uncertainty(self, graphs: GraphsLike) -> dict[str, Any]:
        """``mean`` (the prediction), ``std`` (weighted spread of the members), ``members`` (name -> values), ``weights``.

        After fine-tuning with target models, ``members`` and ``weights`` also hold ``target:gp`` and
        ``target:wl`` (each part in label units, as if it had all the weight) and ``std`` is the weighted
        spread of all parts."""
        self._check_fitted()
        sub, inverse = _distinct(self._view(graphs))
        p = self._predict_members(sub)
        names, w = list(self.member_names), self.weights.numpy()
        blend = self.training_info.get("blend")
        if blend:  # fine-tuned with target models: members (standardised as the mix) and target models, blended
            p, names, w = blend_parts(p, names, w, blend, self._target_parts(sub, blend))
        p = p if inverse is None else p[:, inverse]
        out = weighted_report(p, names, w, self.out_map)
        state = self.training_info.get("wl_residual")  # fine-tuned before the blend: a WL residual correction
        if state:
            corr = float(state["label_std"]) * WLRidge.from_state(state).predict(sub)
            corr = corr if inverse is None else corr[inverse]
            out["correction"] = corr
            out["mean"] = out["mean"] + corr
        return out

    def predict(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        """The weighted mean of the members (see the module docstring for its scale)."""
        return self.predict_with_uncertainty(graphs)["mean"]


def label_map(mu: float, sd: float, loc: float, scale: float) -> torch.Tensor:
    """``[a, b]`` with ``a + b * v`` in label units: out-of-sample values of mean ``loc`` and standard
    deviation ``scale`` map to the sample's labels (mean ``mu``, std ``sd``) as they map to its z-scores."""
    return torch.tensor([mu - sd * loc / scale, sd / scale], dtype=torch.float64)


def blend_parts(p: np.ndarray, names: list[str], w: np.ndarray, blend: Mapping[str, Any],
                targets: Sequence[np.ndarray]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The blend's parts: ``p`` (rows weighted by ``w``, standardised as the blend's part 0) and the
    fitted ``targets`` (standardised, see :meth:`GennapeEnsemble._target_parts`), with their names and weights."""
    bw = np.asarray(blend["weights"], dtype=np.float64)
    p = np.concatenate([(p - blend["loc"][0]) / blend["scale"][0], *(t[None] for t in targets)])
    return p, names + [f"target:{t}" for t in blend["models"]], np.concatenate([bw[0] * w, bw[1:]])


def weighted_report(p: np.ndarray, names: list[str], w: np.ndarray, out_map: torch.Tensor) -> dict[str, Any]:
    """``mean``, ``std`` (weighted spread), ``members`` and ``weights`` of the weighted parts ``p``
    ``(parts, N)``, mapped to label units by ``out_map``."""
    mean = (w[:, None] * p).sum(0)  # column by column: a graph's value does not depend on the call's size
    std = np.sqrt((w[:, None] * (p - mean) ** 2).sum(0))
    a, b = (float(v) for v in out_map)
    return {"mean": a + b * mean, "std": b * std, "members": {n: a + b * p[i] for i, n in enumerate(names)},
            "weights": dict(zip(names, w.tolist()))}


def _shares_encoder(member: Predictor, first: Predictor) -> bool:
    return isinstance(member, GennapePredictor) and isinstance(first, GennapePredictor) and member.fingerprint() == first.fingerprint()


def _queue_key(members: list[Predictor], i: int) -> tuple[bool, bool, int]:
    """Order of the members in the thread pool: the first member (it computes the shared
    embeddings), the members that do not wait for them, then those that do, longest first: the
    pairwise rankers (a merge sort, about n log2 n comparisons), more clusters first."""
    m = members[i]
    waits = i > 0 and _shares_encoder(m, members[0])
    clusters = int(m.centroids.shape[0]) if isinstance(m, GennapePredictor) and m.centroids is not None else 1
    return waits, not isinstance(m, GennapePairwise), -clusters


def _tau(p: np.ndarray, z: np.ndarray) -> float:
    from scipy.stats import kendalltau

    t = float(kendalltau(p, z).statistic) if np.ptp(p) > 0 else 0.0
    return t if np.isfinite(t) else 0.0


def _distinct(graphs: GraphsLike) -> tuple[GraphsLike, np.ndarray | None]:
    """``(sub, inverse)``: the first graph of each (canonical hash, family), in the graphs' order, and
    each graph's position in ``sub``; ``(graphs, None)`` when all differ."""
    if is_dataset(graphs):
        keys = [f"{h}|{f}" for h, f in zip(dataset_column(graphs, "graph_id").to_pylist(), dataset_column(graphs, "family").to_pylist())]
    else:
        keys = [f"{g.canonical_hash}|{g.meta.get('family')}" for g in graphs]
    # in the graphs' order (population statistics do not care, merge sort ties do)
    rows, position = distinct_in_order(np.asarray(keys, dtype=object))
    if len(rows) == len(keys):
        return graphs, None
    if is_dataset(graphs):
        # featurise the whole table once (kept with the dataset): the subset then takes rows of the
        # packed arrays, and its own Arrow rows are never taken (GraphDataset.subset is lazy)
        pack(graphs)
    return take_graphs(graphs, rows), position


def _family_z(graphs: GraphsLike, y: np.ndarray, source_task: str | None) -> tuple[GraphsLike, np.ndarray]:
    fams = graph_family_of_each(graphs)
    keep = [i for i, f in enumerate(fams) if source_task is None or LABEL_TASK.get(f) == source_task]
    if len(keep) < len(fams):
        graphs = take_graphs(graphs, keep)
        y, fams = y[keep], [fams[i] for i in keep]
    stats = T.family_stats(y, fams)
    return graphs, T.to_target(y, transform="family", families=fams, macs=np.zeros(len(y)), stats=stats)


_GENNAPE_MEMBERS = frozenset({"gennape:cl", "gennape:cl+t", "gennape:cl+fcm+t", "gennape:cl+pairwise", "gennape:cl+fcm+pairwise"})


def member_kwargs_from(params: Mapping[str, Any]) -> dict[str, Any]:
    """The GENNAPE member options among ``params`` (keys of ``GennapePredictor.__init__``)."""
    import inspect

    names = set(inspect.signature(GennapePredictor.__init__).parameters) - {"self", "variant", "fcm", "transform", "cache"}
    return {k: v for k, v in params.items() if k in names}
