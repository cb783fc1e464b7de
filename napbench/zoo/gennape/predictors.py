"""GENNAPE predictors: a contrastive encoder with regression or pairwise heads.

Registered names (each an ablation row of GENNAPE's Table 8):

=========================  ========================================================================
``gennape:cl``             contrastive encoder + one MLP on raw labels (no FCM, no transform)
``gennape:cl+t``           + label transforms (per-family z-score, GENNAPE's FLOPs transform)
``gennape:cl+fcm+t``       + Fuzzy C-Means: one MLP head per cluster, outputs mixed by membership
``gennape:cl+pairwise``    contrastive encoder + a pairwise comparator; populations ranked by merge sort
``gennape:cl+fcm+pairwise`` + one comparator head per fuzzy cluster
=========================  ========================================================================

Pipeline (every stage usable on its own):

1. :meth:`GennapePredictor.pretrain` -- label-free contrastive pretraining of the
   :class:`~napbench.zoo.gennape.encoder.GraphEncoder` on graphs of every family
   (:func:`pretraining_set`: ``pretrain_per_family`` seeded graphs of each of
   ``pretrain_families``, default every registered family, unlabelled ones included), read
   through ``pretrain_view`` (:mod:`napbench.zoo._views`; default ``"as_converted"``, and the
   ensemble passes its own ``pretrain_view`` to its members).
   ``fit`` runs it first when the encoder is not pretrained yet; a shared
   :class:`EncoderCache` keeps pretrained encoders per (configuration, seed) and
   embeddings per (encoder, graph), so leave-one-family-out folds and k-shot clones reuse them.
2. Embeddings (128-d) -> PCA to ``pca_dims`` (scikit-learn ``PCA``, fitted on the training
   graphs) plus ``log10`` MACs, each standardised *within the graph's family*
   (``feature_norm="family"``, the default; ``"pooled"`` uses the training graphs' statistics):
   the *features*. Family-wise standardisation is what lets a head trained on NB-101 read
   NB-201, whose graphs lie far outside NB-101's feature ranges (measured: CL+FCM+T
   NB-101 -> NB-201 zero-shot SRCC 0.147 pooled, 0.569 per family).
3. Fuzzy C-Means (:mod:`~napbench.zoo.gennape.fcm`) on the features; the cluster count and
   fuzziness are chosen from ``clusters`` x ``fuzziness`` by the mean per-family SRCC
   (regression) or pair accuracy (pairwise) on a seeded ``val_frac`` validation split, then
   refitted on all training graphs. New graphs get memberships from the fixed centroids.
4. Heads (:mod:`~napbench.zoo.gennape.heads`): one MLP (``mlp_layers`` x ``mlp_hidden``) per
   cluster trained on the transformed labels (:mod:`~napbench.zoo.gennape.transforms`) weighted
   by membership; or a pairwise comparator trained on within-family pairs.

Calibration (``calibrate``, label-free): steps 2 and 5 are relative to the graphs predicted in one
call -- features are standardised by each family's statistics *in the call*, and a pairwise
head ranks the call's graphs against each other -- so a small call (a search screening ten
children) scores graphs on another scale than a large one. :meth:`GennapePredictor.calibrate`
freezes, from an unlabelled sample of a family, that family's feature mean and standard
deviation and (pairwise heads) ``CALIBRATION_ANCHORS`` seeded anchor graphs' features; from then
on a graph of that family is standardised with the frozen statistics and a pairwise head scores
it by its wins against the anchors (the normal quantile of ``(wins + mean win probability) /
(anchors + 1)``), so its prediction no longer depends on the other graphs in the call. The
calibration lives in ``training_info`` (saved in ``config.json``), survives ``fine_tune`` and is
dropped by ``fit`` (which refits the PCA the statistics are taken on).

Fine-tuning (``fine_tune``) keeps the encoder, PCA, centroids and all hidden layers fixed and
trains the heads' output layers on the k target samples (a 4 x 256 MLP re-trained on 50
samples lost its source ranking in our trials), whose mean and standard deviation map the z-score back to the
target's label units. Training can be restricted to sources of one task (``source_task``,
e.g. ``"cifar10"``): TransNAS-Bench-101's Taskonomy labels can rank cells in another order.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from napbench._scoped import reset_parameters, seeded_torch
from napbench.conversion.vocab import OPS
from napbench.errors import InvalidArgumentError
from napbench.zoo._graphs import (
    GraphsLike,
    check_graphs_labels,
    dataset_column,
    graph_family_of_each,
    graph_totals,
    is_dataset,
    take_graphs,
)
from napbench.zoo._interface import Predictor, torch_threads, utc_now
from napbench.zoo._registry import register_predictor
from napbench.zoo._views import check_view, graph_view
from napbench.zoo.features import PackedGraphs, pack, packed_if_cached
from napbench.zoo.gennape import transforms as T
from napbench.zoo.gennape.encoder import GraphEncoder, laplacian_spectra, log_macs, spectral_contrastive_loss
from napbench.zoo.gennape.fcm import fit_fcm, memberships
from napbench.zoo.gennape.heads import ClusterMLP, merge_sort_rank, normal_scores, pair_logits, train_pairwise, train_regression

#: task of each labelled family's default label (sources of another task can teach the opposite ranking)
LABEL_TASK: dict[str, str] = {"nb101": "cifar10", "nb201": "cifar10", "nb301": "cifar10",
                              "transnas101_micro": "taskonomy:class_object", "transnas101_macro": "taskonomy:class_object"}

#: how features are standardised (see :meth:`GennapePredictor.features`)
FEATURE_NORMS: tuple[str, ...] = ("pooled", "family")

#: anchor graphs per family a calibrated pairwise head scores new graphs against (see :meth:`GennapePredictor.calibrate`)
CALIBRATION_ANCHORS = 256

__all__ = ["CALIBRATION_ANCHORS", "FEATURE_NORMS", "LABEL_TASK", "EncoderCache", "GennapePairwise", "GennapePredictor", "GennapeRegressor", "pretraining_set"]


class EncoderCache:
    """Pretrained encoder weights per (configuration, seed), embeddings per (encoder fingerprint,
    graph id) and the pretraining set per (families, size, seed). Not saved; clones share it."""

    def __init__(self) -> None:
        self.encoders: dict[Any, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}
        self.embeddings: dict[str, dict[str, np.ndarray]] = {}
        self.datasets: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self.encoders) + sum(len(v) for v in self.embeddings.values())


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(fingerprint: str) -> threading.Lock:
    """One lock per encoder fingerprint: threads embed with one encoder one at a time, other encoders freely."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(fingerprint, threading.Lock())


def _graph_ids(graphs: GraphsLike) -> list[str]:
    """Cache keys: canonical hash + family + arch (graphs with one hash may list their nodes in
    another order, which the transformer's node subsample of large graphs can see)."""
    if is_dataset(graphs):
        cols = zip(*(dataset_column(graphs, c).to_pylist() for c in ("graph_id", "family", "arch")))
        return [f"{h}|{f}|{a}" for h, f, a in cols]
    return [f"{g.canonical_hash}|{g.meta.get('family')}|{g.meta.get('arch')}" for g in graphs]


def _pack(graphs: GraphsLike, rows: Sequence[int] | None = None) -> PackedGraphs:
    if is_dataset(graphs):
        if rows is None or np.array_equal(np.asarray(rows), np.arange(len(graphs))):
            return pack(graphs)  # kept with the dataset: the k-GNN and WL members reuse it
        cached = packed_if_cached(graphs)
        if cached is not None:
            return cached.take(rows)
        return PackedGraphs.from_arrow(graphs.table.take(np.asarray(rows, dtype=np.int64)))
    items = list(graphs) if rows is None else [graphs[int(i)] for i in rows]
    return PackedGraphs.from_graphs(items)


def pretraining_set(families: Sequence[str] | None, per_family: int, *, seed: int, root: str | None = None,
                    mirror: str | None = None, progress: bool = False) -> Any:
    """``per_family`` seeded graphs of each family (every registered family when None) as one dataset.

    A family missing under ``root`` is built: labelled ones in full (their label tables), the
    others limited to ``per_family`` architectures of their seeded sample.
    """
    import pyarrow as pa

    from napbench.conversion.storage import GRAPH_COLUMNS
    from napbench.datasets import GraphDataset, build, dataset_path, get_family, list_families, load

    fams = list(families) if families else list_families()
    parts = []
    for i, f in enumerate(fams):
        if not dataset_path(f, root).exists() and not get_family(f).labelled:
            build(f, root, mirror=mirror, limit=per_family, progress=progress)
        ds = load(f, root, mirror=mirror, progress=progress)
        rng = np.random.default_rng((seed, 7, i))
        rows = np.sort(rng.choice(len(ds), size=min(per_family, len(ds)), replace=False))
        parts.append(ds.table.take(rows).select(GRAPH_COLUMNS))
    from pathlib import Path

    return GraphDataset("pretrain", Path("pretrain"), pa.concat_tables(parts), {"family": "pretrain"})


class GennapePredictor(Predictor):
    """Shared machinery of the GENNAPE heads (see the module docstring); not registered itself."""

    pretrainable = True
    cache_factory = EncoderCache
    population_relative = True

    def __init__(
        self,
        variant: str = "cl+fcm+t",
        fcm: bool = True,
        transform: str = "flops",
        source_task: str | None = None,
        hidden: int = 64,
        gnn_layers: int = 4,
        heads: int = 2,
        dropout: float = 0.1,
        max_attention_nodes: int = 64,
        pretrain_families: list[str] | None = None,
        pretrain_per_family: int = 128,
        pretrain_epochs: int = 5,
        pretrain_lr: float = 1e-3,
        pretrain_view: str = "as_converted",
        batch_size: int = 128,
        tau: float = 0.1,
        spectral_temperature: float = 0.05,
        n_eigs: int = 11,
        flops_weight: float = 0.5,
        pca_dims: int = 32,
        feature_norm: str = "family",
        min_family_size: int = 20,
        clusters: list[int] = (2, 3, 4),  # type: ignore[assignment]
        fuzziness: list[float] = (1.5, 2.0),  # type: ignore[assignment]
        fcm_tol: float = 1e-5,
        fcm_max_iter: int = 300,
        val_frac: float = 0.15,
        mlp_hidden: int = 256,
        mlp_layers: int = 4,
        epochs: int = 60,
        grid_epochs: int = 20,
        lr: float = 1e-3,
        head_batch_size: int = 256,
        fine_tune_epochs: int = 100,
        fine_tune_lr: float = 5e-4,
        pairs_per_epoch: int = 20000,
        pair_hidden: int = 128,
        pair_layers: int = 2,
        threads: int | None = 1,
        root: str | None = None,
        mirror: str | None = None,
        cache: EncoderCache | None = None,
    ) -> None:
        super().__init__()
        T.check_transform(transform)
        for name, v in (("pca_dims", pca_dims), ("pretrain_per_family", pretrain_per_family), ("batch_size", batch_size),
                        ("epochs", epochs), ("mlp_hidden", mlp_hidden), ("mlp_layers", mlp_layers), ("n_eigs", n_eigs)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InvalidArgumentError(f"{name} is {v!r}; expected an int >= 1")
        if not clusters or any(not isinstance(c, int) or c < 1 for c in clusters):
            raise InvalidArgumentError(f"clusters is {clusters!r}; expected positive ints")
        if not fuzziness or any(float(m) <= 1.0 for m in fuzziness):
            raise InvalidArgumentError(f"fuzziness is {fuzziness!r}; expected values > 1")
        if feature_norm not in FEATURE_NORMS:
            raise InvalidArgumentError(f"feature_norm is {feature_norm!r}; expected one of {list(FEATURE_NORMS)}")
        if not isinstance(min_family_size, int) or isinstance(min_family_size, bool) or min_family_size < 2:
            raise InvalidArgumentError(f"min_family_size is {min_family_size!r}; expected an int >= 2")
        if not 0.0 < val_frac < 0.5:
            raise InvalidArgumentError(f"val_frac is {val_frac}; expected 0 < val_frac < 0.5")
        self.variant, self.use_fcm, self.transform, self.source_task = str(variant), bool(fcm), transform, source_task
        self.pretrain_families = list(pretrain_families) if pretrain_families else None
        self.pretrain_per_family, self.pretrain_epochs, self.pretrain_lr = pretrain_per_family, int(pretrain_epochs), float(pretrain_lr)
        self.pretrain_view = check_view(pretrain_view)
        self.batch_size, self.tau, self.spectral_temperature = batch_size, float(tau), float(spectral_temperature)
        self.n_eigs, self.flops_weight, self.pca_dims = n_eigs, float(flops_weight), pca_dims
        self.feature_norm, self.min_family_size = feature_norm, min_family_size
        self.clusters, self.fuzziness = [int(c) for c in clusters], [float(m) for m in fuzziness]
        self.fcm_tol, self.fcm_max_iter, self.val_frac = float(fcm_tol), int(fcm_max_iter), float(val_frac)
        self.mlp_hidden, self.mlp_layers = mlp_hidden, mlp_layers
        self.epochs, self.grid_epochs, self.lr, self.head_batch_size = int(epochs), int(grid_epochs), float(lr), int(head_batch_size)
        self.fine_tune_epochs, self.fine_tune_lr = int(fine_tune_epochs), float(fine_tune_lr)
        self.threads, self.root, self.mirror = threads, root, mirror
        self.pairs_per_epoch, self.pair_hidden, self.pair_layers = int(pairs_per_epoch), int(pair_hidden), int(pair_layers)
        self.cache = cache if cache is not None else EncoderCache()
        self.encoder = GraphEncoder(num_ops=len(OPS), hidden=hidden, gnn_layers=gnn_layers, heads=heads, dropout=dropout,
                                    max_attention_nodes=max_attention_nodes)
        d = self.encoder.dim
        self.register_buffer("pretrained", torch.zeros((), dtype=torch.bool))
        self.register_buffer("lm_stats", torch.tensor([0.0, 1.0], dtype=torch.float64))
        self.register_buffer("pca_mean", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("pca_components", torch.zeros(pca_dims, d, dtype=torch.float64))
        self.register_buffer("feat_stats", torch.stack([torch.zeros(pca_dims + 1), torch.ones(pca_dims + 1)]).double())
        self.register_buffer("head_stats", torch.tensor([0.0, 1.0], dtype=torch.float64))
        self.register_buffer("out_map", torch.tensor([0.0, 1.0], dtype=torch.float64))
        self.register_buffer("fuzz", torch.tensor(2.0, dtype=torch.float64))
        self.register_buffer("centroids", torch.zeros(1, pca_dims + 1, dtype=torch.float64))
        self.head = self._new_head(1)
        self._fingerprint: str | None = None
        #: loss per epoch of the last pretrain / head training
        self.history: dict[str, list[float]] = {}

    # -- naming / config ---------------------------------------------------------------------
    @property
    def predictor_name(self) -> str:
        return f"gennape:{self.variant}"

    @property
    def description(self) -> str:  # type: ignore[override]
        return _DESCRIPTIONS.get(self.variant, "GENNAPE-style predictor on a contrastive graph encoder.")

    def checkpoint_config(self) -> dict[str, Any]:
        cfg = super().checkpoint_config()
        cfg.pop("cache", None)
        cfg["num_ops"] = len(OPS)
        cfg["ops"] = list(OPS)
        return cfg

    def _shared_on_clone(self) -> dict[int, Any]:
        return {id(self.cache): self.cache}

    def _prepare_load(self, config: Mapping[str, Any]) -> None:
        if config.get("num_ops") not in (None, len(OPS)):
            raise InvalidArgumentError(f"checkpoint one-hot has {config.get('num_ops')} ops; this vocabulary has {len(OPS)}; retrain")
        c = int(((config.get("training") or {}).get("fit") or {}).get("clusters", 1))
        self.centroids = torch.zeros(c, self.pca_dims + 1, dtype=torch.float64)
        self.head = self._new_head(c)

    def _new_head(self, clusters: int) -> ClusterMLP:
        raise NotImplementedError

    # -- encoder ----------------------------------------------------------------------------
    def _pretrain_key(self, seed: int) -> tuple[Any, ...]:
        cfg = self.checkpoint_config()
        keys = ("hidden", "gnn_layers", "heads", "dropout", "max_attention_nodes", "pretrain_families", "pretrain_per_family",
                "pretrain_epochs", "pretrain_lr", "pretrain_view", "batch_size", "tau", "spectral_temperature", "n_eigs", "flops_weight", "num_ops")
        return (*(repr(cfg.get(k)) for k in keys), seed)

    def pretrain(self, graphs: GraphsLike, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> GennapePredictor:
        """Contrastive pretraining of the encoder on ``graphs`` (no labels; batches within a family)."""
        from tqdm.auto import tqdm

        epochs = self.pretrain_epochs if epochs is None else int(epochs)
        packed = _pack(graphs)
        fams = np.asarray(graph_family_of_each(graphs), dtype=object)
        eig = torch.as_tensor(laplacian_spectra(packed, self.n_eigs), dtype=torch.float32)
        lm = log_macs(packed)
        self.lm_stats = torch.tensor([lm.mean(), lm.std() if lm.std() > 0 else 1.0], dtype=torch.float64)
        lm_t = torch.as_tensor((lm - lm.mean()) / float(self.lm_stats[1]), dtype=torch.float32)
        groups = [np.flatnonzero(fams == f) for f in dict.fromkeys(fams.tolist())]
        gen = np.random.default_rng(seed)
        enc = self.encoder
        opt = torch.optim.Adam(enc.parameters(), lr=self.pretrain_lr)
        hist: list[float] = []
        with seeded_torch(seed), torch_threads(self.threads):  # the process lock: threads never interleave draws
            reset_parameters(enc)
            enc.train()
            for _ in tqdm(range(epochs), desc="pretrain encoder", unit="epoch", disable=not progress):
                batches = []
                for g in groups:
                    perm = gen.permutation(g)
                    batches += [perm[lo : lo + self.batch_size] for lo in range(0, len(perm), self.batch_size)]
                batches = [b for b in batches if len(b) >= 2]
                total = 0.0
                for bi in gen.permutation(len(batches)):
                    idx = np.sort(batches[bi])
                    batch = packed.batch(idx)
                    z1, z2 = enc(batch), enc(batch)
                    loss = spectral_contrastive_loss(z1, z2, eig[idx], tau=self.tau, spectral_temperature=self.spectral_temperature)
                    reg = torch.nn.functional.mse_loss(enc.flops_head(z1).squeeze(-1), lm_t[idx])
                    total_loss = loss + self.flops_weight * reg
                    opt.zero_grad(set_to_none=True)
                    total_loss.backward()
                    opt.step()
                    total += float(total_loss.detach())
                hist.append(total / max(1, len(batches)))
            enc.eval()
        self.history["pretrain"] = hist
        self.pretrained = torch.tensor(True)
        self._fingerprint = None
        self.training_info["pretrain"] = {"n": len(packed), "families": list(dict.fromkeys(fams.tolist())), "epochs": epochs,
                                          "seed": seed, "final_loss": round(hist[-1], 6) if hist else None}
        return self

    def _ensure_pretrained(self, seed: int, progress: bool) -> None:
        if bool(self.pretrained):
            return
        key = self._pretrain_key(seed)
        hit = self.cache.encoders.get(key)
        if hit is None:
            dkey = (repr(self.pretrain_families), self.pretrain_per_family, seed, self.root, self.pretrain_view)
            ds = self.cache.datasets.get(dkey)
            if ds is None:
                ds = pretraining_set(self.pretrain_families, self.pretrain_per_family, seed=seed, root=self.root,
                                     mirror=self.mirror, progress=progress)
                ds = graph_view(ds, self.pretrain_view, root=self.root, progress=progress)
                self.cache.datasets[dkey] = ds
            self.pretrain(ds, seed=seed, progress=progress)
            self.cache.encoders[key] = ({k: v.clone() for k, v in self.encoder.state_dict().items()},
                                        {"pretrain": self.training_info["pretrain"], "lm_stats": self.lm_stats.clone(),
                                         "history": list(self.history.get("pretrain", []))})
            return
        state, info = hit
        self.encoder.load_state_dict(state)
        self.lm_stats = info["lm_stats"].clone()
        self.training_info["pretrain"] = dict(info["pretrain"])
        self.history["pretrain"] = list(info["history"])
        self.pretrained = torch.tensor(True)
        self._fingerprint = None

    def share_encoder(self, other: GennapePredictor) -> None:
        """Use ``other``'s (pretrained) encoder object and cache (members of an ensemble share one)."""
        self.encoder = other.encoder
        self.cache = other.cache
        self.lm_stats = other.lm_stats.clone()
        self.pretrained = other.pretrained.clone()
        if "pretrain" in other.training_info:
            self.training_info["pretrain"] = dict(other.training_info["pretrain"])
        self._fingerprint = None

    def fingerprint(self) -> str:
        """Hash of the encoder weights (keys the embedding cache)."""
        if self._fingerprint is None:
            h = hashlib.sha1()
            for k, v in sorted(self.encoder.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    @torch.no_grad()
    def embed(self, graphs: GraphsLike, *, batch_size: int = 256) -> np.ndarray:
        """``(N, 128)`` encoder embeddings (eval mode), cached per graph id."""
        ids = _graph_ids(graphs)
        fp = self.fingerprint()
        with _lock_for(fp):  # members sharing this encoder in threads wait for one computation
            store = self.cache.embeddings.setdefault(fp, {})
            todo = [i for i, g in enumerate(ids) if g not in store]
            todo = list({ids[i]: i for i in todo}.values())
            if todo:
                packed = _pack(graphs, todo)
                self.encoder.eval()
                with torch_threads(self.threads):
                    e = self.encoder.embed_packed(packed, batch_size=batch_size).double().numpy()
                for k, row in enumerate(e):
                    store[ids[todo[k]]] = row
            return np.stack([store[g] for g in ids])

    def features(self, graphs: GraphsLike, emb: np.ndarray | None = None) -> np.ndarray:
        """Standardised ``[PCA(embedding), log10 MACs]`` per graph.

        ``feature_norm="pooled"`` standardises with the training graphs' statistics;
        ``"family"`` (default) standardises each family's graphs with that family's own
        statistics in the call (families are told apart by their ``family`` metadata), so a
        feature says where a graph stands *within its family*, the way the labels are
        z-scored. Groups smaller than ``min_family_size`` (e.g. one user model) take the
        statistics of the largest group predicted with them (the reference population), or the
        training statistics when there is none.
        """
        emb = self.embed(graphs) if emb is None else emb
        x = self._raw_features(graphs, emb)
        st = self.feat_stats.numpy()
        if self.feature_norm == "pooled":
            return (x - st[0]) / st[1]
        frozen = {f: (np.asarray(e["mean"]), np.asarray(e["std"])) for f, e in self.calibration().items()}
        return standardise_by_group(x, graph_family_of_each(graphs), min_size=self.min_family_size, fallback=(st[0], st[1]),
                                    frozen=frozen)

    def calibration(self) -> dict[str, dict[str, Any]]:
        """The calibrated families: ``{family: {"n", "seed", "mean", "std"[, "anchors"]}}`` (empty when never calibrated)."""
        return dict(self.training_info.get("calibration") or {})

    def calibrate(self, graphs: GraphsLike, *, seed: int = 0) -> GennapePredictor:
        """Freeze each family's feature statistics (and a pairwise head's anchors) from the unlabelled ``graphs``.

        Every family in ``graphs`` needs at least ``min_family_size`` graphs; its earlier
        calibration, if any, is replaced (other families' are kept). No label is read.
        """
        if not self.is_fitted:
            raise InvalidArgumentError(f"{self.predictor_name} is not fitted; expected fit() or a checkpoint before calibrate()")
        x = self._raw_features(graphs, self.embed(graphs))
        fams = np.asarray(graph_family_of_each(graphs), dtype=object)
        cal = self.calibration()
        st = self.feat_stats.numpy()
        for f in dict.fromkeys(fams.tolist()):
            m = fams == f
            n = int(m.sum())
            if n < self.min_family_size:
                raise InvalidArgumentError(
                    f"calibration sample has {n} graphs of family {f!r}; expected at least min_family_size={self.min_family_size}")
            v = x[m]
            mu, sd = column_stats(v)
            feats = (v - st[0]) / st[1] if self.feature_norm == "pooled" else (v - mu) / sd
            cal[str(f)] = {"n": n, "seed": int(seed), "mean": mu.tolist(), "std": sd.tolist(),
                           **self._calibrate_head(feats, np.random.default_rng((seed, 23)))}
        self.training_info["calibration"] = cal
        return self

    def _calibrate_head(self, x: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        """What the head freezes from a family's calibrated features ``x`` (nothing for regression heads)."""
        return {}

    def _raw_features(self, graphs: GraphsLike, emb: np.ndarray) -> np.ndarray:
        p = (emb - self.pca_mean.numpy()) @ self.pca_components.numpy().T
        return np.concatenate([p, np.log10(1.0 + graph_totals(graphs)[0])[:, None]], axis=1)

    def _fit_features(self, graphs: GraphsLike) -> np.ndarray:
        from sklearn.decomposition import PCA

        emb = self.embed(graphs)
        k = min(self.pca_dims, emb.shape[0], emb.shape[1])
        pca = PCA(n_components=k, random_state=0).fit(emb)
        comp = np.zeros((self.pca_dims, emb.shape[1]))
        comp[:k] = pca.components_
        self.pca_mean = torch.as_tensor(pca.mean_, dtype=torch.float64)
        self.pca_components = torch.as_tensor(comp, dtype=torch.float64)
        x = self._raw_features(graphs, emb)
        sd = x.std(0)
        self.feat_stats = torch.as_tensor(np.stack([x.mean(0), np.where(sd > 0, sd, 1.0)]), dtype=torch.float64)
        return self.features(graphs, emb)

    def memberships(self, x: np.ndarray) -> np.ndarray:
        """FCM memberships ``(N, C)`` of features ``x`` (all ones for one cluster)."""
        c = self.centroids.numpy()
        return np.ones((len(x), 1)) if len(c) == 1 else memberships(x, c, float(self.fuzz))

    # -- the Predictor interface ------------------------------------------------------------
    def _select_sources(self, graphs: GraphsLike, y: np.ndarray) -> tuple[GraphsLike, np.ndarray, list[str]]:
        fams = graph_family_of_each(graphs)
        if self.source_task is None:
            return graphs, y, fams
        keep = [i for i, f in enumerate(fams) if LABEL_TASK.get(f) == self.source_task]
        if not keep:
            raise InvalidArgumentError(f"no training family has task {self.source_task!r}; found {sorted(set(fams))}")
        sub = take_graphs(graphs, keep)
        return sub, y[keep], [fams[i] for i in keep]

    def fit(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> GennapePredictor:
        """Pretrain the encoder if needed (label-free), then fit PCA, FCM and heads on ``graphs`` / ``y``."""
        y = check_graphs_labels(graphs, y)
        graphs, y, fams = self._select_sources(graphs, y)
        self._ensure_pretrained(seed, progress)
        with seeded_torch(seed), torch_threads(self.threads):  # the process lock: threads never interleave draws
            x = self._fit_features(graphs)
            info = self._fit_head(x, y, fams, graph_totals(graphs)[0], epochs=self.epochs if epochs is None else int(epochs), seed=seed)
        self.out_map = torch.tensor([0.0, 1.0], dtype=torch.float64)
        pre = self.training_info.get("pretrain")
        self._record("fit", graphs, y, seed=seed, when=utc_now(), **info)
        if pre:
            self.training_info["pretrain"] = pre
        return self

    def fine_tune(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> GennapePredictor:
        """Train the heads on a few target samples; their mean/std map predictions to the target's label units."""
        y = check_graphs_labels(graphs, y)
        if not self.is_fitted:
            raise InvalidArgumentError(f"{self.predictor_name} is not fitted; expected fit() (or a checkpoint) before fine_tune()")
        x = self.features(graphs)
        mu, sd = float(y.mean()), float(y.std()) if y.std() > 0 else 1.0
        with seeded_torch(seed), torch_threads(self.threads):  # the process lock: threads never interleave draws
            self._fine_tune_head(x, y, mu, sd, graph_totals(graphs)[0], epochs=self.fine_tune_epochs if epochs is None else int(epochs), seed=seed)
        self._record("fine_tune", graphs, y, seed=seed, label_mean=mu, label_std=sd)
        return self

    @torch.no_grad()
    def predict(self, graphs: GraphsLike, *, progress: bool = False) -> np.ndarray:
        """Predictions: z-scores zero-shot (raw labels for ``gennape:cl``), target label units after fine-tuning."""
        if not self.is_fitted:
            raise InvalidArgumentError(f"{self.predictor_name} is not fitted; expected fit() or a checkpoint before predict()")
        x = self.features(graphs)
        with torch_threads(self.threads):
            z = self._predict_head(x, graph_totals(graphs)[0], graph_family_of_each(graphs))
        a, b = (float(v) for v in self.out_map)
        return a + b * z

    # -- heads (subclasses) -----------------------------------------------------------------
    def _fit_head(self, x: np.ndarray, y: np.ndarray, fams: list[str], macs: np.ndarray, *, epochs: int, seed: int) -> dict[str, Any]:
        raise NotImplementedError

    def _fine_tune_head(self, x: np.ndarray, y: np.ndarray, mu: float, sd: float, macs: np.ndarray, *, epochs: int, seed: int) -> None:
        raise NotImplementedError

    def _predict_head(self, x: np.ndarray, macs: np.ndarray, families: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def _grid(self) -> list[tuple[int, float]]:
        return [(c, m) for c in self.clusters for m in self.fuzziness] if self.use_fcm else [(1, 2.0)]

    def _split(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        perm = np.random.default_rng((seed, 11)).permutation(n)
        k = max(2, round(self.val_frac * n))
        return np.sort(perm[k:]), np.sort(perm[:k])

    def _set_fcm(self, x: np.ndarray, c: int, m: float, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        res = fit_fcm(x, c, m, tol=self.fcm_tol, max_iter=self.fcm_max_iter, seed=seed)
        self.centroids = torch.as_tensor(res.centroids, dtype=torch.float64)
        self.fuzz = torch.tensor(float(m), dtype=torch.float64)
        return res.u, {"clusters": c, "fuzziness": m, "fcm_iterations": res.iterations, "fcm_converged": res.converged}


def column_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation of ``x`` (constant columns: std 1)."""
    sd = x.std(0)
    return x.mean(0), np.where(sd > 0, sd, 1.0)


def standardise_by_group(x: np.ndarray, groups: Sequence[str], *, min_size: int,
                         fallback: tuple[np.ndarray, np.ndarray],
                         frozen: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """``x`` with each group's rows standardised by that group's mean and standard deviation.

    Groups of fewer than ``min_size`` rows use the largest group's statistics when it has at
    least ``min_size`` rows, else ``fallback`` (mean, std). Constant columns keep std 1.
    A group named in ``frozen`` (calibrated: ``{group: (mean, std)}``) uses those statistics
    whatever its size, so its rows' values do not depend on the other rows.
    """
    g = np.asarray(list(groups), dtype=object)
    if g.size != len(x):
        raise InvalidArgumentError(f"{g.size} group names for {len(x)} rows; expected one per row")
    out = np.empty_like(x, dtype=np.float64)
    names, counts = np.unique(g.astype(str), return_counts=True) if g.size else (np.array([]), np.array([]))
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, n in zip(names.tolist(), counts.tolist()):
        if n >= min_size:
            stats[name] = column_stats(x[g == name])
    stats.update(frozen or {})
    big = names[np.argmax(counts)] if len(names) else None
    small = stats.get(big, fallback) if big is not None else fallback
    for name in names.tolist():
        m = g == name
        mu, sd = stats.get(name, small)
        out[m] = (x[m] - mu) / sd
    return out


def _per_family_srcc(pred: np.ndarray, true: np.ndarray, fams: Sequence[str]) -> float:
    from scipy.stats import spearmanr

    fam = np.asarray(fams, dtype=object)
    vals = []
    for f in dict.fromkeys(fam.tolist()):
        m = fam == f
        if m.sum() >= 3 and np.ptp(true[m]) > 0 and np.ptp(pred[m]) > 0:
            vals.append(spearmanr(pred[m], true[m]).statistic)
    return float(np.mean(vals)) if vals else -1.0


class GennapeRegressor(GennapePredictor):
    """CL(+FCM)(+T): membership-weighted MLP heads regressing the transformed label."""

    def _new_head(self, clusters: int) -> ClusterMLP:
        return ClusterMLP(clusters, self.pca_dims + 1, self.mlp_hidden, self.mlp_layers)

    def _targets(self, y: np.ndarray, fams: list[str], macs: np.ndarray, stats: Mapping[str, tuple[float, float]]) -> np.ndarray:
        return T.to_target(y, transform=self.transform, families=fams, macs=macs, stats=stats)

    def _train(self, x: np.ndarray, t: np.ndarray, u: np.ndarray, c: int, *, epochs: int, lr: float, seed: int, batch: int,
               last_layer_only: bool = False) -> list[float]:
        hs = self.head_stats.numpy()
        return train_regression(self.head, x, (t - hs[0]) / hs[1], u, epochs=epochs, lr=lr, batch_size=batch, seed=seed,
                                last_layer_only=last_layer_only)

    def _mix(self, x: np.ndarray) -> np.ndarray:
        out = self.head(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
        hs = self.head_stats.numpy()
        return (out * self.memberships(x)).sum(1) * hs[1] + hs[0]

    def _fit_head(self, x: np.ndarray, y: np.ndarray, fams: list[str], macs: np.ndarray, *, epochs: int, seed: int) -> dict[str, Any]:
        stats = T.family_stats(y, fams) if self.transform != "none" else {}
        t = self._targets(y, fams, macs, stats)
        self.head_stats = torch.tensor([t.mean(), t.std() if t.std() > 0 else 1.0], dtype=torch.float64)
        grid = self._grid()
        scores: dict[str, float] = {}
        if len(grid) > 1:
            tr, va = self._split(len(x), seed)
            fam_va = [fams[i] for i in va]
            for c, m in grid:
                u, _ = self._set_fcm(x[tr], c, m, seed)
                torch.manual_seed(seed)
                self.head = self._new_head(c)
                self._train(x[tr], t[tr], u, c, epochs=self.grid_epochs, lr=self.lr, seed=seed, batch=self.head_batch_size)
                with torch.no_grad():
                    z = T.from_target(self._mix(x[va]), transform=self.transform, macs=macs[va])
                scores[f"C={c},m={m}"] = round(_per_family_srcc(z, y[va], fam_va), 4)
            best = max(grid, key=lambda cm: scores[f"C={cm[0]},m={cm[1]}"])
        else:
            best = grid[0]
        u, info = self._set_fcm(x, best[0], best[1], seed)
        torch.manual_seed(seed)
        self.head = self._new_head(best[0])
        hist = self._train(x, t, u, best[0], epochs=epochs, lr=self.lr, seed=seed, batch=self.head_batch_size)
        self.history["fit"] = hist
        self._family_stats = stats
        return {**info, "grid_val_srcc": scores, "transform": self.transform, "epochs": epochs,
                "final_loss": round(hist[-1], 6) if hist else None,
                "family_label_stats": {k: [round(a, 6), round(b, 6)] for k, (a, b) in stats.items()}}

    def _fine_tune_head(self, x: np.ndarray, y: np.ndarray, mu: float, sd: float, macs: np.ndarray, *, epochs: int, seed: int) -> None:
        if self.transform == "none":
            t, self.out_map = y, torch.tensor([0.0, 1.0], dtype=torch.float64)
        else:
            t = T.to_target(y, transform=self.transform, families=["target"] * len(y), macs=macs, stats={"target": (mu, sd)})
            self.out_map = torch.tensor([mu, sd], dtype=torch.float64)
        c = int(self.centroids.shape[0])
        self.history["fine_tune"] = self._train(x, t, self.memberships(x), c, epochs=epochs, lr=self.fine_tune_lr, seed=seed,
                                                batch=len(x), last_layer_only=True)

    def _predict_head(self, x: np.ndarray, macs: np.ndarray, families: Sequence[str]) -> np.ndarray:
        return T.from_target(self._mix(x), transform=self.transform, macs=macs)


class GennapePairwise(GennapePredictor):
    """CL(+FCM)+Pairwise: a comparator of two graphs' features; populations ranked by merge sort.

    Predictions are the ranks' standard normal quantiles (a z-score scale; 0 for a single
    graph), mapped to the target's label units after fine-tuning.
    """

    def _new_head(self, clusters: int) -> ClusterMLP:
        return ClusterMLP(clusters, 2 * (self.pca_dims + 1), self.pair_hidden, self.pair_layers)

    def _pair_accuracy(self, x: np.ndarray, y: np.ndarray, u: np.ndarray, groups: list[np.ndarray], seed: int) -> float:
        from napbench.zoo.gennape.heads import sample_pairs

        a, b = sample_pairs(groups, y, 5000, np.random.default_rng((seed, 5)))
        with torch.no_grad():
            s = pair_logits(self.head, torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(u, dtype=torch.float32),
                            torch.as_tensor(a), torch.as_tensor(b)).numpy()
        return float(np.mean((s > 0) == (y[a] > y[b])))

    @staticmethod
    def _groups(fams: Sequence[str]) -> list[np.ndarray]:
        fam = np.asarray(list(fams), dtype=object)
        return [np.flatnonzero(fam == f) for f in dict.fromkeys(fam.tolist())]

    def _fit_head(self, x: np.ndarray, y: np.ndarray, fams: list[str], macs: np.ndarray, *, epochs: int, seed: int) -> dict[str, Any]:
        grid = self._grid()
        scores: dict[str, float] = {}
        kw = {"pairs_per_epoch": self.pairs_per_epoch, "lr": self.lr, "batch_size": self.head_batch_size, "seed": seed}
        if len(grid) > 1:
            tr, va = self._split(len(x), seed)
            for c, m in grid:
                u, _ = self._set_fcm(x[tr], c, m, seed)
                torch.manual_seed(seed)
                self.head = self._new_head(c)
                train_pairwise(self.head, x[tr], y[tr], u, self._groups([fams[i] for i in tr]), epochs=max(1, self.grid_epochs // 4), **kw)
                scores[f"C={c},m={m}"] = round(self._pair_accuracy(x[va], y[va], self.memberships(x[va]), self._groups([fams[i] for i in va]), seed), 4)
            best = max(grid, key=lambda cm: scores[f"C={cm[0]},m={cm[1]}"])
        else:
            best = grid[0]
        u, info = self._set_fcm(x, best[0], best[1], seed)
        torch.manual_seed(seed)
        self.head = self._new_head(best[0])
        hist = train_pairwise(self.head, x, y, u, self._groups(fams), epochs=max(1, epochs // 4), **kw)
        self.history["fit"] = hist
        return {**info, "grid_val_pair_accuracy": scores, "epochs": max(1, epochs // 4), "pairs_per_epoch": self.pairs_per_epoch,
                "final_loss": round(hist[-1], 6) if hist else None}

    def _fine_tune_head(self, x: np.ndarray, y: np.ndarray, mu: float, sd: float, macs: np.ndarray, *, epochs: int, seed: int) -> None:
        n = len(y)
        self.out_map = torch.tensor([mu, sd], dtype=torch.float64)
        self.history["fine_tune"] = train_pairwise(self.head, x, y, self.memberships(x), [np.arange(n)], epochs=max(1, epochs // 10),
                                                   pairs_per_epoch=n * (n - 1) // 2, lr=self.fine_tune_lr,
                                                   batch_size=self.head_batch_size, seed=seed, last_layer_only=True)

    def _calibrate_head(self, x: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        keep = np.sort(rng.permutation(len(x))[:CALIBRATION_ANCHORS])
        return {"anchors": x[keep].tolist()}

    def _predict_head(self, x: np.ndarray, macs: np.ndarray, families: Sequence[str]) -> np.ndarray:
        """Calibrated families: wins against their anchors; the rest: merge-sort ranks among themselves."""
        fams = np.asarray(list(families), dtype=object)
        out = np.zeros(len(x))
        anchors = {f: np.asarray(e["anchors"]) for f, e in self.calibration().items() if e.get("anchors")}
        rest = np.ones(len(x), dtype=bool)
        for f, a in anchors.items():
            m = fams == f
            if m.any():
                out[m] = self._anchor_scores(x[m], a)
                rest &= ~m
        if rest.any():
            out[rest] = normal_scores(merge_sort_rank(self.head, x[rest], self.memberships(x[rest])))
        return out

    @torch.no_grad()
    def _anchor_scores(self, x: np.ndarray, anchors: np.ndarray, chunk: int = 256) -> np.ndarray:
        """``Phi^-1((wins + mean win probability) / (anchors + 1))`` of each graph against the anchors."""
        from scipy.stats import norm

        k = len(anchors)
        out = np.empty(len(x))
        ta = torch.as_tensor(anchors, dtype=torch.float32)
        ua = torch.as_tensor(self.memberships(anchors), dtype=torch.float32)
        for lo in range(0, len(x), chunk):
            xq = torch.as_tensor(x[lo : lo + chunk], dtype=torch.float32)
            n = len(xq)
            xs = torch.cat([xq, ta])
            us = torch.cat([torch.as_tensor(self.memberships(x[lo : lo + chunk]), dtype=torch.float32), ua])
            a = torch.arange(n).repeat_interleave(k)
            b = n + torch.arange(k).repeat(n)
            logit = pair_logits(self.head, xs, us, a, b).reshape(n, k).double()
            q = ((logit > 0).sum(1).double() + torch.sigmoid(logit).mean(1)) / (k + 1)
            out[lo : lo + n] = norm.ppf(q.numpy())
        return out


_DESCRIPTIONS = {
    "cl": "GENNAPE ablation CL: contrastive graph encoder (k-GNN + transformer, spectral-weighted contrastive loss) + one MLP on raw labels.",
    "cl+t": "GENNAPE ablation CL+T: contrastive encoder + one MLP on per-family z-scored, FLOPs-transformed labels.",
    "cl+fcm+t": "GENNAPE CL+FCM+T: contrastive encoder, Fuzzy C-Means clusters with one MLP head each, FLOPs label transform.",
    "cl+pairwise": "GENNAPE ablation CL+Pairwise: contrastive encoder + a pairwise comparator; populations ranked by merge sort.",
    "cl+fcm+pairwise": "GENNAPE CL+FCM+Pairwise: contrastive encoder + one pairwise comparator head per fuzzy cluster.",
}

register_predictor("gennape:cl", GennapeRegressor, variant="cl", fcm=False, transform="none")
register_predictor("gennape:cl+t", GennapeRegressor, variant="cl+t", fcm=False, transform="flops")
register_predictor("gennape:cl+fcm+t", GennapeRegressor, variant="cl+fcm+t", fcm=True, transform="flops")
register_predictor("gennape:cl+pairwise", GennapePairwise, variant="cl+pairwise", fcm=False, transform="none")
register_predictor("gennape:cl+fcm+pairwise", GennapePairwise, variant="cl+fcm+pairwise", fcm=True, transform="none")
