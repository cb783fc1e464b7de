"""GENNAPE's contrastive graph encoder and its spectral-weighted contrastive loss.

Encoder (:class:`GraphEncoder`)
-------------------------------
Input: the node features of :mod:`napbench.zoo.features` (a one-hot of the op over the
vocabulary *read at run time* from :mod:`napbench.conversion.vocab`, whose size the
checkpoint records as ``num_ops``, then ``log1p`` of nine numbers scaled by
``numeric_scale``). Two branches, concatenated into a ``2 * hidden`` (128-d) embedding:

* a **k-GNN**: ``gnn_layers`` (4) ``torch_geometric`` ``GraphConv`` layers of ``hidden`` (64)
  units, messages along and against the data-flow edges, ReLU and dropout, mean pooling;
* a **transformer** over the CG nodes: a linear projection to ``hidden``, one
  ``TransformerEncoderLayer`` (``heads`` = 2 heads, feed-forward ``2 * hidden``, dropout),
  masked mean pooling. Graphs with more than ``max_attention_nodes`` nodes attend over an
  evenly strided subset of that many nodes (in topological order) so that attention cost
  stays bounded on 1,500-node Inception graphs; the GNN branch always sees every node.

Loss (:func:`spectral_contrastive_loss`)
----------------------------------------
For a batch of ``B`` graphs the encoder (in train mode) runs twice: two dropout views
``z1, z2`` per graph. With ``s(a, b)`` the cosine similarity over ``tau`` and, for an anchor
``i`` of view 1, ``p(i -> k) = softmax_k s(z1_i, .)`` over the ``2B - 1`` other embeddings of
both views, the loss is

    L = -1/(2B) sum_i sum_j w_ij [log p(z1_i -> z2_j) + log p(z2_i -> z1_j)]

where the positive weights ``w_i. = softmax_j(-||lambda_i - lambda_j|| / T)`` come from the
distances between the graphs' ``n_eigs`` (11) smallest normalised-Laplacian eigenvalues
``lambda`` (zero-padded for smaller graphs) with temperature ``T`` = 0.05: a graph's own
other view is its strongest positive, spectrally similar graphs are weaker positives and
the rest are negatives. A second head regresses standardised ``log10`` MACs from the
embedding (MSE, weight ``flops_weight``) as a regulariser.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from napbench.errors import InvalidArgumentError
from napbench.zoo.features import NUMERIC_FEATURES, PackedGraphs

__all__ = ["GraphEncoder", "laplacian_spectra", "spectral_contrastive_loss", "spectral_weights"]


class GraphEncoder(nn.Module):
    """k-GNN + node transformer -> ``2 * hidden`` embedding, plus a FLOPs regression head."""

    def __init__(self, *, num_ops: int, hidden: int = 64, gnn_layers: int = 4, heads: int = 2, dropout: float = 0.1,
                 numeric_scale: float = 0.05, max_attention_nodes: int = 64) -> None:
        super().__init__()
        from torch_geometric.nn import GraphConv

        for name, v in (("num_ops", num_ops), ("hidden", hidden), ("gnn_layers", gnn_layers), ("heads", heads),
                        ("max_attention_nodes", max_attention_nodes)):
            if not isinstance(v, int) or v < 1:
                raise InvalidArgumentError(f"{name} is {v!r}; expected an int >= 1")
        if hidden % heads:
            raise InvalidArgumentError(f"hidden {hidden} is not divisible by heads {heads}; expected a multiple")
        self.num_ops = num_ops
        self.in_dim = num_ops + len(NUMERIC_FEATURES)
        self.hidden = hidden
        self.numeric_scale = float(numeric_scale)
        self.max_attention_nodes = max_attention_nodes
        self.convs = nn.ModuleList([GraphConv(self.in_dim if i == 0 else hidden, hidden) for i in range(gnn_layers)])
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(self.in_dim, hidden)
        self.attn = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=dropout, batch_first=True)
        self.flops_head = nn.Linear(2 * hidden, 1)

    @property
    def dim(self) -> int:
        """Embedding size (``2 * hidden``)."""
        return 2 * self.hidden

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_dim:
            raise InvalidArgumentError(
                f"node features have {x.shape[1]} columns; this encoder expects {self.in_dim} "
                f"({self.num_ops} ops + {len(NUMERIC_FEATURES)} numbers) - the vocabulary changed; retrain"
            )
        return torch.cat([x[:, : self.num_ops], x[:, self.num_ops :] * self.numeric_scale], dim=1)

    def forward(self, batch: object) -> torch.Tensor:  # type: ignore[override]
        """``(B, 2*hidden)`` embeddings of a ``torch_geometric`` batch (with ``ptr``)."""
        from torch_geometric.nn import global_mean_pool

        x = self._features(batch.x)
        ei = batch.edge_index
        ei = torch.cat([ei, ei.flip(0)], dim=1)
        h = x
        for conv in self.convs:
            h = self.drop(torch.relu(conv(h, ei)))
        g = global_mean_pool(h, batch.batch, size=batch.num_graphs)
        return torch.cat([g, self._transformer(self.proj(x), batch.ptr)], dim=1)

    @torch.no_grad()
    def embed_packed(self, packed: PackedGraphs, *, batch_size: int = 256) -> torch.Tensor:
        """``(G, 2*hidden)`` eval-mode embeddings of packed graphs, equal to :meth:`forward`'s up to
        float rounding: the GNN branch runs on distinct WL colours (:mod:`napbench.zoo.colours`);
        the transformer reads only the nodes it attends over, once per distinct sequence of them
        (NB-201: 6,672 among 11,640 distinct graphs, which differ only in nodes the stride skips)."""
        if self.training:
            raise InvalidArgumentError("embed_packed is an inference path; expected the encoder in eval mode")
        from concurrent.futures import ThreadPoolExecutor

        from napbench.zoo.colours import pooled_graphconv

        def gnn_branch() -> torch.Tensor:
            with torch.no_grad():  # grad mode is per thread
                return pooled_graphconv(packed, self.convs, self._features)

        # the GNN branch in a second thread while this one runs the transformer (torch releases the
        # GIL; the two branches share only the colour refinement, which is thread-safe)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="napbench-gnn") as pool:
            gnn = pool.submit(gnn_branch)
            t = self._embed_sequences(packed, batch_size)
            g = gnn.result()
        return torch.cat([g, t], dim=1)

    def _embed_sequences(self, packed: PackedGraphs, batch_size: int) -> torch.Tensor:
        """``(G, hidden)``: the transformer branch of :meth:`embed_packed`."""
        from napbench.zoo.colours import colour_refinement
        from napbench.zoo.features import distinct_in_order

        index, mask = (t.numpy() for t in self._attention_index(torch.from_numpy(packed.node_ptr)))
        same_input = colour_refinement(packed, 0)[0].inverse  # round 0: equal node features
        reps, position = distinct_in_order(np.where(mask, -1, same_input[index]), axis=0)  # one graph per sequence
        # batches of sequences of one length: no padding, so no mask (the unmasked kernel is faster)
        length = (~mask[reps]).sum(1)
        by_length = np.argsort(length, kind="stable")
        t = torch.empty((len(reps), self.hidden))
        sorted_length = length[by_length]
        bounds = np.flatnonzero(np.r_[True, sorted_length[1:] != sorted_length[:-1], True])
        for g0, g1 in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            width = int(sorted_length[g0])
            for lo in range(g0, g1, batch_size):
                which = by_length[lo : min(g1, lo + batch_size)]
                idx = index[reps[which], :width].reshape(-1)
                x = self.proj(self._features(torch.from_numpy(packed.node_features_at(idx))))
                t[torch.from_numpy(which)] = self.attn(x.reshape(len(which), width, -1)).mean(1)
        return t[torch.from_numpy(position)]

    def _attention_index(self, ptr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index, mask)``, both ``(B, W)``: the node rows each graph of ``ptr`` attends over (all
        its nodes, or ``max_attention_nodes`` of them evenly strided) and ``True`` at padding."""
        cap = self.max_attention_nodes
        n = ptr[1:] - ptr[:-1]
        width = int(torch.clamp(n, max=cap).max())
        index = torch.zeros((len(n), width), dtype=torch.long)
        mask = torch.ones((len(n), width), dtype=torch.bool)  # True = padding
        for k in torch.unique(n).tolist():  # one stride pattern per graph size
            rows = torch.nonzero(n == k).squeeze(1)
            sel = torch.linspace(0, k - 1, cap).round().long() if k > cap else torch.arange(k)
            index[rows[:, None], torch.arange(len(sel))] = ptr[rows][:, None] + sel
            mask[rows, : len(sel)] = False
        return index, mask

    def _attend(self, dense: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.attn(dense, src_key_padding_mask=mask)
        keep = (~mask).unsqueeze(-1).to(out.dtype)
        return (out * keep).sum(1) / keep.sum(1)

    def _transformer(self, x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
        """Masked-mean transformer output per graph over the rows of ``x`` (one batch, ``ptr`` its graph offsets)."""
        index, mask = self._attention_index(ptr)
        return self._attend(x[index], mask)


def spectral_weights(eigs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``(B, B)`` positive weights: row-wise softmax of ``-||lambda_i - lambda_j|| / temperature``."""
    if temperature <= 0:
        raise InvalidArgumentError(f"spectral temperature is {temperature}; expected > 0")
    d = torch.cdist(eigs.double(), eigs.double())
    return torch.softmax(-d / temperature, dim=1).to(eigs.dtype if eigs.is_floating_point() else torch.float32)


def spectral_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, eigs: torch.Tensor, *, tau: float = 0.1,
                              spectral_temperature: float = 0.05) -> torch.Tensor:
    """GENNAPE's spectral-weighted contrastive loss of two views (see the module docstring)."""
    if z1.shape != z2.shape or z1.ndim != 2 or eigs.shape[0] != z1.shape[0]:
        raise InvalidArgumentError(f"views {tuple(z1.shape)} / {tuple(z2.shape)} and spectra {tuple(eigs.shape)} disagree; "
                                   "expected two (B, d) views and (B, k) spectra")
    if tau <= 0:
        raise InvalidArgumentError(f"tau is {tau}; expected > 0")
    b = z1.shape[0]
    z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))
    logp = torch.log_softmax(sim, dim=1)
    w = spectral_weights(eigs, spectral_temperature).to(logp.dtype)
    return -((w * logp[:b, b:]).sum() + (w * logp[b:, :b]).sum()) / (2 * b)


def laplacian_spectra(packed: PackedGraphs, k: int = 11) -> np.ndarray:
    """``(G, k)``: the ``k`` smallest eigenvalues of each graph's normalised Laplacian (undirected),
    zero-padded for graphs with fewer nodes; equal to :meth:`CompGraph.laplacian_eigenvalues`."""
    out = np.zeros((len(packed), k))
    for i in range(len(packed)):
        lo, hi = int(packed.node_ptr[i]), int(packed.node_ptr[i + 1])
        elo, ehi = int(packed.edge_ptr[i]), int(packed.edge_ptr[i + 1])
        n = hi - lo
        a = np.zeros((n, n))
        s, d = packed.src[elo:ehi], packed.dst[elo:ehi]
        a[s, d] = 1.0
        a[d, s] = 1.0
        deg = a.sum(1)
        with np.errstate(divide="ignore"):
            dinv = np.where(deg > 0, 1.0 / np.sqrt(deg), 0.0)
        vals = np.linalg.eigvalsh(np.eye(n) - dinv[:, None] * a * dinv[None, :])
        m = min(k, n)
        out[i, :m] = np.clip(vals[:m], 0.0, None)
    return out


def log_macs(packed: PackedGraphs) -> np.ndarray:
    """``log10(1 + total MACs)`` of each packed graph (from the per-node FLOPs column)."""
    flops = packed.numeric[:, NUMERIC_FEATURES.index("flops")]
    per = np.add.reduceat(flops, packed.node_ptr[:-1]) if len(flops) else np.zeros(len(packed))
    return np.log10(1.0 + per)


def n_batches(n: int, batch_size: int) -> int:
    """How many mini-batches of ``batch_size`` cover ``n`` items."""
    return math.ceil(n / batch_size)
