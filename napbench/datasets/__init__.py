"""Benchmark families as versioned Parquet datasets of computation graphs with real labels.

``list_families()``, ``get_family(name)``, ``build(name, root=...)``, ``load(name)``;
``load(name, source="hub")`` downloads the published dataset (see :mod:`napbench.hub`).
"""

from __future__ import annotations

import os
from typing import Any

from napbench.datasets._build import GraphDataset, build, dataset_path, default_root, load_file
from napbench.datasets._build import load as _load_local
from napbench.datasets._registry import Family, NotEnumerableError, get_family, list_families, register_family

__all__ = [
    "Family", "GraphDataset", "NotEnumerableError", "build", "dataset_path", "default_root", "get_family",
    "list_families", "load", "load_file", "register_family",
]


def load(
    name: str, root: str | os.PathLike[str] | None = None, *, source: str = "local", repo_id: str | None = None,
    revision: str | None = None, **kwargs: Any,
) -> GraphDataset:
    """The dataset of family ``name``.

    ``source="local"`` (default): read ``<root>/<name>.parquet``, building it when missing or
    stale. ``source="hub"``: download the Hub dataset repo (``repo_id``, default
    ``<namespace>/napbench-<name>``) at ``revision``, verify it and load it from the cache.
    """
    if source == "local":
        return _load_local(name, root, **kwargs)
    if source == "hub":
        from napbench.hub import load_dataset

        return load_dataset(name, repo_id=repo_id, revision=revision, **kwargs)
    from napbench.errors import InvalidArgumentError

    raise InvalidArgumentError(f"dataset source {source!r}; expected 'local' or 'hub'")
