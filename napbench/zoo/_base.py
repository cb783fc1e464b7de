"""Compatibility re-exports: the interface, checkpoints, cards, graph adapters and registry
now live in :mod:`napbench.zoo._interface`, :mod:`~napbench.zoo._checkpoint`,
:mod:`~napbench.zoo._card`, :mod:`~napbench.zoo._graphs` and :mod:`~napbench.zoo._registry`.
This module names no predictor: predictors register themselves and are discovered."""

from napbench.zoo._checkpoint import (  # noqa: F401
    CARD_NAME,
    CONFIG_NAME,
    RESERVED_CONFIG_KEYS,
    WEIGHTS_NAME,
    CheckpointError,
    check_checkpoint_config,
    is_checkpoint_folder,
    load,
)
from napbench.zoo._graphs import (  # noqa: F401
    GraphsLike,
    _is_dataset,
    check_graphs_labels,
    graph_families,
    graph_keys,
    graph_totals,
    num_graphs,
)
from napbench.zoo._interface import Predictor, torch_threads, utc_now  # noqa: F401
from napbench.zoo._registry import (  # noqa: F401
    _ensure_loaded,
    get_predictor,
    list_predictors,
    predictor_class,
    register_plugin,
    register_predictor,
)
