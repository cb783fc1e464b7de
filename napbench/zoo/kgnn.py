"""``kgnn``: a k-GNN (Morris et al., 2019) regressor on computation graphs.

Architecture (GENNAPE's k-GNN baseline): the node features of :mod:`napbench.zoo.features`
(the log1p numeric block multiplied by ``numeric_scale``, default 0.05, which brings values
of up to ~20 to the one-hot's scale; on 200 NB-201 training graphs this halved the training
loss and raised held-out SRCC from 0.76 to 0.86) -> ``layers`` x ``torch_geometric.nn.GraphConv`` (hidden ``hidden``, sum aggregation, ReLU)
-> mean pooling over nodes -> an MLP of ``mlp_layers`` linear layers (ReLU between) -> one
number. Messages flow along the data-flow edges and, with ``bidirectional`` (default), also
against them.

Training: MSE on labels standardised with the training set's mean and standard deviation
(kept as buffers, so predictions come back in label units), Adam, shuffled mini-batches,
``epochs`` passes. :meth:`KGNN.fit` starts from a fresh initialisation seeded by ``seed``;
:meth:`KGNN.fine_tune` continues training the current weights on the few target samples
for ``fine_tune_epochs`` passes at ``fine_tune_lr``, with the labels standardised by the
sample's own mean and standard deviation: a model fitted on another family's labels (or on
z-scores) keeps its ranking instead of chasing a new scale. Keeping the source scaling made
the ensemble's k-GNN member, fitted on z-scores and fine-tuned alone on CIFAR-10 accuracies
in %, fall from SRCC 0.781 to -0.278 on NB-201.

Training and prediction run with ``threads`` torch intra-op threads (default 1, restored
afterwards): the tensors are small, so extra threads only add synchronisation, and on a
shared CPU oversubscription made training ~50x slower in our measurements.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from napbench._scoped import reset_parameters, seeded_torch
from napbench.errors import InvalidArgumentError, NumericalError
from napbench.zoo._base import GraphsLike, Predictor, check_graphs_labels, register_predictor, torch_threads, utc_now
from napbench.zoo.features import NUM_FEATURES, NUM_OPS, PackedGraphs, pack


@register_predictor("kgnn")
class KGNN(Predictor):
    """k-GNN: GraphConv stack + mean pooling + MLP regressor (see the module docstring)."""

    description = "k-GNN (GraphConv x6, hidden 32, mean pooling, 4-layer MLP) trained end to end with MSE on standardised labels."

    def __init__(
        self,
        hidden: int = 32,
        layers: int = 6,
        mlp_layers: int = 4,
        bidirectional: bool = True,
        epochs: int = 40,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 32,
        fine_tune_epochs: int = 30,
        fine_tune_lr: float = 5e-4,
        threads: int | None = 1,
        numeric_scale: float = 0.05,
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GraphConv

        for name, v, lo in (("hidden", hidden, 1), ("layers", layers, 1), ("mlp_layers", mlp_layers, 1), ("batch_size", batch_size, 1)):
            if not isinstance(v, int) or v < lo:
                raise InvalidArgumentError(f"{name} is {v!r}; expected an int >= {lo}")
        self.hidden, self.bidirectional = hidden, bool(bidirectional)
        self.epochs, self.lr, self.weight_decay, self.batch_size = int(epochs), float(lr), float(weight_decay), int(batch_size)
        self.fine_tune_epochs, self.fine_tune_lr = int(fine_tune_epochs), float(fine_tune_lr)
        self.threads = threads
        self.numeric_scale = float(numeric_scale)
        self.convs = nn.ModuleList([GraphConv(NUM_FEATURES if i == 0 else hidden, hidden) for i in range(layers)])
        mlp: list[nn.Module] = []
        for i in range(mlp_layers):
            mlp.append(nn.Linear(hidden, 1 if i == mlp_layers - 1 else hidden))
            if i < mlp_layers - 1:
                mlp.append(nn.ReLU())
        self.mlp = nn.Sequential(*mlp)
        self.register_buffer("y_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("y_std", torch.ones((), dtype=torch.float64))
        #: mean training loss (standardised MSE) per epoch of the last fit / fine_tune
        self.history: list[float] = []

    # -- model --------------------------------------------------------------------------
    def forward(self, batch: Any) -> torch.Tensor:  # type: ignore[override]
        """Standardised prediction per graph of a ``torch_geometric`` batch."""
        from torch_geometric.nn import global_mean_pool

        x, ei = self._scale(batch.x), batch.edge_index
        if self.bidirectional:
            ei = torch.cat([ei, ei.flip(0)], dim=1)
        for conv in self.convs:
            x = torch.relu(conv(x, ei))
        return self.mlp(global_mean_pool(x, batch.batch, size=batch.num_graphs)).squeeze(-1)

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        """Raw node features -> the first layer's input (numeric part scaled)."""
        return torch.cat([x[:, :NUM_OPS], x[:, NUM_OPS:] * self.numeric_scale], dim=1)

    def reset_parameters(self, seed: int) -> None:
        """Fresh weights drawn under ``seeded_torch(seed)`` (global RNG state untouched, thread-safe)."""
        with seeded_torch(seed):
            reset_parameters(self)

    # -- training -----------------------------------------------------------------------
    def _train(self, packed: PackedGraphs, t: np.ndarray, *, epochs: int, lr: float, seed: int, progress: bool, desc: str) -> None:
        from tqdm.auto import tqdm

        target = torch.as_tensor((t - float(self.y_mean)) / float(self.y_std), dtype=torch.float32)
        opt = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=self.weight_decay)
        gen = np.random.default_rng(seed)
        n = len(packed)
        self.history = []
        self.train()
        bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress)
        with torch_threads(self.threads):  # the loop draws no torch randomness (order: ``gen``)
            for _ in bar:
                order = gen.permutation(n)
                total = 0.0
                for lo in range(0, n, self.batch_size):
                    idx = order[lo : lo + self.batch_size]
                    batch = packed.batch(idx)
                    loss = torch.nn.functional.mse_loss(self(batch), target[torch.as_tensor(idx)])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                epoch_loss = total / n
                if not np.isfinite(epoch_loss):
                    raise NumericalError(f"k-GNN training loss became {epoch_loss}; expected finite (try a lower lr)")
                self.history.append(epoch_loss)
                bar.set_postfix(loss=f"{epoch_loss:.4f}")
        self.eval()

    def fit(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> KGNN:
        """Train from a fresh seeded initialisation on ``graphs`` / ``y``."""
        t = check_graphs_labels(graphs, y)
        packed = pack(graphs)
        epochs = self.epochs if epochs is None else int(epochs)
        self.reset_parameters(seed)
        std = float(t.std())
        self.y_mean = torch.tensor(float(t.mean()), dtype=torch.float64)
        self.y_std = torch.tensor(std if std > 0 else 1.0, dtype=torch.float64)
        self._train(packed, t, epochs=epochs, lr=self.lr, seed=seed, progress=progress, desc="fit kgnn")
        self._record("fit", graphs, t, epochs=epochs, seed=seed, lr=self.lr, final_loss=round(self.history[-1], 6) if self.history else None,
                     label_mean=float(self.y_mean), label_std=float(self.y_std), when=utc_now())
        return self

    def fine_tune(self, graphs: GraphsLike, y: Any, *, epochs: int | None = None, seed: int = 0, progress: bool = True) -> KGNN:
        """Continue training the current weights on a few target samples, their labels standardised
        with the sample's own mean and standard deviation (which then map predictions back)."""
        t = check_graphs_labels(graphs, y)
        epochs = self.fine_tune_epochs if epochs is None else int(epochs)
        std = float(t.std())
        if len(t) >= 2 and std > 0:
            self.y_mean = torch.tensor(float(t.mean()), dtype=torch.float64)
            self.y_std = torch.tensor(std, dtype=torch.float64)
        self._train(pack(graphs), t, epochs=epochs, lr=self.fine_tune_lr, seed=seed, progress=progress, desc="fine-tune kgnn")
        self._record("fine_tune", graphs, t, epochs=epochs, seed=seed, lr=self.fine_tune_lr)
        return self

    @torch.no_grad()
    def predict(self, graphs: GraphsLike, *, progress: bool = False, batch_size: int = 512) -> np.ndarray:
        """Predicted labels (label units), one per graph."""
        from tqdm.auto import tqdm

        from napbench.zoo.colours import pooled_graphconv

        packed = pack(graphs)
        was_training = self.training
        self.eval()
        out = []
        with torch_threads(self.threads):
            # all graphs at once on distinct WL colours (equal to forward() up to float rounding)
            g = pooled_graphconv(packed, self.convs, self._scale, bidirectional=self.bidirectional)
            for lo in tqdm(range(0, len(packed), batch_size), desc="predict kgnn", unit="batch", disable=not progress):
                out.append(self.mlp(g[lo : lo + batch_size]).squeeze(-1).double())
        self.train(was_training)
        z = torch.cat(out).numpy()
        return z * float(self.y_std) + float(self.y_mean)
