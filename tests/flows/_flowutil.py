"""Helpers shared by the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import yaml

NB101_TABLE = "nasbench101/nb101_500_zc.csv"


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
