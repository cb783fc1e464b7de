"""dvc.lock is in step with the committed code, params and dvc.yaml (what a fresh clone sees)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
#: what a clone without built data may report; anything else means dvc.lock is out of step
_ALLOWED = {"not in cache", "deleted"}


def test_every_stage_is_locked_and_its_deps_params_and_command_match() -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    status = json.loads(res.stdout or "{}")
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    produced = {o["path"] for entry in lock.values() for o in entry.get("outs", [])}
    problems = []
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):  # "changed checksum", "always changed", ...
                problems.append(f"{stage}: {entry}")
                continue
            for kind, what in entry.items():
                if kind == "changed outs" and set(what.values()) <= _ALLOWED:
                    continue
                if kind == "changed deps":  # another stage's output, not built in this clone
                    what = {k: v for k, v in what.items() if not (k in produced and v in _ALLOWED)}
                    if not what:
                        continue
                problems.append(f"{stage}: {kind} {what}")
    assert not problems, ("dvc.lock is out of step with the code (run `dvc repro`, or `python -m napbench._dvc relock` "
                          "for changes that leave outputs alone):\n" + "\n".join(problems))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    expected = {f"build@{f}" for f in params["build"]["families"]} | {"train", "evaluate"}
    assert expected <= set(lock), f"stages missing from dvc.lock: {sorted(expected - set(lock))}"


def test_no_build_debris_is_hashed() -> None:
    lock = (ROOT / "dvc.lock").read_text()
    ignored = (ROOT / ".dvcignore").read_text()
    assert "__pycache__/" in ignored and "*.pyc" in ignored
    families = len([p for p in (ROOT / "napbench" / "datasets" / "families").iterdir() if p.suffix == ".py"])
    for entry in yaml.safe_load(lock)["stages"].values():
        for dep in entry.get("deps", []):
            if dep["path"] == "napbench/datasets/families":
                assert dep["nfiles"] == families, dep
