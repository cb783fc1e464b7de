"""A tiny synthetic search space of real computation graphs (3 widths x 3 widths x 3 kernels = 27 networks)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from search_toy import KERNELS, WIDTHS, toy_graph

from napbench.search import SearchSpace


@pytest.fixture(scope="session")
def toy_space() -> SearchSpace:
    """27 rows; label = log MACs plus a small kernel term, so the unique optimum is the largest network."""
    specs = list(itertools.product(WIDTHS, WIDTHS, KERNELS))
    graphs = [toy_graph(*s) for s in specs]
    labels = np.array([math.log(g.flops) + 0.01 * s[2] for g, s in zip(graphs, specs)])
    return SearchSpace.from_arrays(
        [g.meta["arch"] for g in graphs], labels, family="toy", label="toy_acc", encodings=specs,
        columns={"flops": np.array([g.flops for g in graphs], float), "params": np.array([g.params for g in graphs], float),
                 "latency": np.array([0.1 * len(g.nodes) + g.flops * 1e-5 for g in graphs])},
        graphs=lambda rows: [graphs[int(r)] for r in rows],
    )
