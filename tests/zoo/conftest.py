"""Fixtures shared by the predictor tests: a small NB-201 dataset root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from napbench.datasets import build, dataset_path, load

N_NB201 = 64


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset root shared by the test modules of one session (first 64 NB-201 archs)."""
    if not os.environ.get("NAPBENCH_MIRROR"):
        pytest.fail("NAPBENCH_MIRROR is not set; point it at the shared data mirror (e.g. /work/shared/data)")
    root = tmp_path_factory.getbasetemp() / "napbench-home"
    root.mkdir(exist_ok=True)
    if not dataset_path("nb201", root).exists():
        build("nb201", root, limit=N_NB201, progress=False)
    return root


@pytest.fixture(scope="module")
def nb201(home: Path):  # noqa: ANN201 - (dataset, labels)
    """The NB-201 dataset of :func:`home` and its default labels."""
    ds = load("nb201", home, progress=False)
    return ds, ds.labels()
