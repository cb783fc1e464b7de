"""Performance predictors: one interface, a registry, checkpoints as folders.

``napbench.zoo.load("path/to/checkpoint")`` loads any saved predictor (composites with their
members) in one line; a Hugging Face Hub repo is written ``hf://owner/name`` (or a bare
``owner/name`` with ``revision=``). ``list_predictors()`` names the registered predictors
(``kgnn``, ``flops``, ``params``, ``zc:<proxy>``, ``zc:vote``, ``fourier``, ``latency``,
``gennape`` and its ablations ``gennape:*``) and ``get_predictor(name, **kwargs)`` builds a
fresh one. A new predictor is one module under this package that decorates its class with
:func:`register_predictor`.
"""

from napbench.zoo._checkpoint import CheckpointError, load
from napbench.zoo._interface import Predictor
from napbench.zoo._registry import get_predictor, list_predictors, predictor_class, register_predictor

__all__ = ["CheckpointError", "Predictor", "get_predictor", "list_predictors", "load", "predictor_class", "register_predictor"]
