"""Crash safety (issue 7): ``kill -9`` at seeded random moments of a dataset build and of checkpoint saves.

After every kill: no process of ours is left alive (pool workers die with their parent), the
target is the previous dataset/checkpoint byte for byte or a complete new one (never half),
it loads, and a rerun completes and removes the temp files the killed writer left.

A fork server (``crash_driver.py``) imports napbench once; each repetition forks a child that
runs the real CLI (``datasets build nb201 --limit 300 --workers 2``: two chunks, so the
process pool is used) or a loop of ``save_pretrained`` calls, and is SIGKILLed after a seeded
delay. Children carry a marker in their environment, so survivors are found among all processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

SEED = 7
BUILD_REPS = 6
SAVE_REPS = 14
TAG_ENV = "NAPBENCH_CRASH_TAG"


class Driver:
    """The fork server: ``run(request, kill_after=None)`` -> wait status."""

    def __init__(self, tag: str) -> None:
        env = {**os.environ, TAG_ENV: tag, "PYTHONPATH": os.pathsep.join(filter(None, [
            str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("crash_driver.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line

    def run(self, request: dict, kill_after: float | None = None) -> tuple[int, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        t0 = time.perf_counter()
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        pid = int(self.proc.stdout.readline())
        if kill_after is not None:
            time.sleep(kill_after)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        status = json.loads(self.proc.stdout.readline())["status"]
        return status, time.perf_counter() - t0

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()


def ours_alive(tag: str, exclude: int) -> list[int]:
    """Pids of live (non-zombie) processes whose environment carries our marker, except ``exclude``."""
    found = []
    for p in psutil.process_iter(["pid"]):
        if p.pid in (exclude, os.getpid()):
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get(TAG_ENV) == tag:
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def assert_no_orphans(tag: str, driver: Driver) -> None:
    deadline = time.monotonic() + 5
    while True:
        left = ours_alive(tag, driver.proc.pid)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == [], f"processes survived their parent's kill -9: {left}"


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")) if path.is_dir() else [path]:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


@pytest.fixture(scope="module")
def driver():
    tag = uuid.uuid4().hex
    d = Driver(tag)
    d.tag = tag  # type: ignore[attr-defined]
    yield d
    d.close()


def test_kill9_during_dataset_build(tmp_path, driver, mirror) -> None:
    from napbench.datasets import load_file

    rng = random.Random(SEED)
    root = tmp_path / "root"
    argv = ["datasets", "build", "nb201", "--limit", "300", "--workers", "2", "--quiet", "--root", str(root)]
    status, full = driver.run({"op": "cli", "argv": argv})
    assert status == 0
    target = root / "nb201.parquet"
    assert len(load_file(target)) == 300
    previous = digest(target)
    kinds = {"old": 0, "new": 0}
    for _ in range(BUILD_REPS):
        status, _ = driver.run({"op": "cli", "argv": argv}, kill_after=rng.uniform(0.0, full * 1.1))
        assert_no_orphans(driver.tag, driver)
        now = digest(target)
        assert len(load_file(target)) == 300  # complete, whichever it is
        kinds["old" if now == previous else "new"] += 1
        previous = now
    status, _ = driver.run({"op": "cli", "argv": argv})  # a rerun completes and cleans what the kills left
    assert status == 0 and len(load_file(target)) == 300
    assert_no_orphans(driver.tag, driver)
    assert leftovers(root, "nb201.parquet") == []
    assert kinds["old"] >= 1, kinds  # some kills landed before the rename (the old file survived intact)


def test_kill9_during_checkpoint_save(tmp_path, driver) -> None:
    import torch

    from napbench.zoo import get_predictor, load

    rng = random.Random(SEED + 1)
    target = tmp_path / "ck"
    get_predictor("flops").save_pretrained(target)
    previous = digest(target)
    reference = tmp_path / "ref"

    def expected_digest(i: int) -> str:
        p = get_predictor("flops")
        p.coef = torch.tensor([float(i), 0.0], dtype=torch.float64)
        p.save_pretrained(reference)
        return digest(reference)

    status, full = driver.run({"op": "save_loop", "target": str(target), "n": 40})
    assert status == 0 and float(load(target).coef[0]) == 40.0
    previous = digest(target)
    for _ in range(SAVE_REPS):
        driver.run({"op": "save_loop", "target": str(target), "n": 40}, kill_after=rng.uniform(0.0, full))
        assert_no_orphans(driver.tag, driver)
        loaded = load(target)  # a complete checkpoint, whichever it is
        i = int(float(loaded.coef[0]))
        now = digest(target)
        assert sorted(p.name for p in target.iterdir()) == ["README.md", "config.json", "model.safetensors"]
        if now != previous:  # not the previous checkpoint: then byte for byte the complete save number i
            assert now == expected_digest(i), "the checkpoint is neither the previous one nor a complete new one"
        previous = now
    status, _ = driver.run({"op": "save_loop", "target": str(target), "n": 1})
    assert status == 0 and float(load(target).coef[0]) == 1.0
    assert leftovers(tmp_path, "ck") == []
