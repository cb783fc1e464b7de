"""Fixtures for the pipeline tests: a writable mirror copy, small params files, one Prefect test server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _flowutil import NB101_TABLE


@pytest.fixture()
def mirror_copy(tmp_path: Path, mirror: str) -> Path:
    """A mirror whose NB-101 table is a private copy (so a test can change it); the rest are links."""
    m = tmp_path / "mirror"
    for d in Path(mirror).iterdir():
        if d.name == "nasbench101":
            (m / d.name).mkdir(parents=True)
            shutil.copyfile(d / "nb101_500_zc.csv", m / NB101_TABLE)
        elif d.is_dir():
            m.mkdir(exist_ok=True)
            os.symlink(d, m / d.name)
    return m


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """One Prefect test server (``prefect_test_harness``) for every flow test; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())
