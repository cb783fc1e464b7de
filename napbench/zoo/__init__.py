"""Performance predictors: one interface, a registry, checkpoints as folders.

``napbench.zoo.load("path/to/checkpoint")`` loads any saved predictor in one line (a Hugging
Face Hub repo only when written ``hf://owner/name``). ``list_predictors()`` names the
registered predictors (``kgnn``, ``flops``, ``params``, ``zc:<proxy>``, ``zc:vote``) and
``get_predictor(name, **kwargs)`` builds a fresh one. See :mod:`napbench.zoo._base` for the
:class:`Predictor` interface and the checkpoint layout.
"""

from napbench.zoo._base import (
    CheckpointError,
    Predictor,
    get_predictor,
    list_predictors,
    load,
    predictor_class,
    register_predictor,
)

__all__ = ["CheckpointError", "Predictor", "get_predictor", "list_predictors", "load", "predictor_class", "register_predictor"]
