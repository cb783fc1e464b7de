"""Fixtures for the pipeline tests: a writable mirror copy, small params files, one Prefect test server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

NB101_TABLE = "nasbench101/nb101_500_zc.csv"


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


def change_nb101_label(m: Path) -> None:
    """Change one NB-101 label value in the mirror copy (a new upstream release)."""
    p = m / NB101_TABLE
    lines = p.read_text().splitlines(keepends=True)
    assert lines[0].rstrip("\n").endswith(",val_accuracy")
    head, last = lines[1].rstrip("\n").rsplit(",", 1)
    lines[1] = f"{head},{round(float(last) + 0.5, 4)}\n"
    p.write_text("".join(lines))


def write_params(path: Path, **sections: dict) -> Path:
    """A params.yaml with these sections."""
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """One Prefect test server (``prefect_test_harness``) for every flow test; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())
