"""Refresh as library calls: skip unchanged, rebuild changed, keep the old dataset on a bad upstream, survive kill -9."""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _flowutil import NB101_TABLE, change_nb101_label

from napbench.config import SourceSpec
from napbench.datasets._refresh import check, record_path, refresh_family


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_skips_unchanged_and_rebuilds_changed_family(tmp_path: Path, mirror_copy: Path) -> None:
    root = tmp_path / "data"
    spec = SourceSpec(mirror=str(mirror_copy))
    limits = {"two_path": 3, "nb101": 20}
    first = {f: refresh_family(f, root, spec, limit=n, workers=1) for f, n in limits.items()}
    assert {f: r.status for f, r in first.items()} == {"two_path": "rebuilt", "nb101": "rebuilt"}
    assert first["nb101"].upstream == {NB101_TABLE: _sha(mirror_copy / NB101_TABLE)}
    before = {f: _sha(root / f"{f}.parquet") for f in first}
    again = {f: refresh_family(f, root, spec, limit=n, workers=1) for f, n in limits.items()}
    assert {f: r.status for f, r in again.items()} == {"two_path": "skipped", "nb101": "skipped"}
    assert {f: _sha(root / f"{f}.parquet") for f in first} == before
    # a new upstream release of NB-101, adopted by pinning its sha256
    change_nb101_label(mirror_copy)
    new_pin = _sha(mirror_copy / NB101_TABLE)
    assert check("nb101", root, spec, limit=20).reason.startswith(f"upstream {NB101_TABLE} changed")
    pinned = SourceSpec(mirror=str(mirror_copy), sha256={NB101_TABLE: new_pin})
    third = {f: refresh_family(f, root, pinned, limit=n, workers=1) for f, n in limits.items()}
    assert third["two_path"].status == "skipped"
    assert third["nb101"].status == "rebuilt" and "changed" in third["nb101"].reason
    assert _sha(root / "nb101.parquet") != before["nb101"]
    assert refresh_family("nb101", root, pinned, limit=20, workers=1).status == "skipped"
    # another limit or a replaced file is a change too
    assert check("two_path", root, spec, limit=30).reason == "limit 3 -> 30"
    (root / "two_path.parquet").write_bytes(b"PAR1 not ours")
    assert check("two_path", root, spec, limit=3).rebuild


def test_corrupt_upstream_leaves_old_dataset_and_record(tmp_path: Path, mirror_copy: Path) -> None:
    root = tmp_path / "data"
    spec = SourceSpec(mirror=str(mirror_copy))
    assert refresh_family("nb101", root, spec, limit=20, workers=1).status == "rebuilt"
    data, rec = (root / "nb101.parquet").read_bytes(), record_path("nb101", root).read_text()
    change_nb101_label(mirror_copy)  # changed, but not pinned: corrupt as far as napbench knows
    res = refresh_family("nb101", root, spec, limit=20, workers=1, force=True)
    assert res.status == "failed" and "sha256" in res.reason and "\n" not in res.reason
    assert (root / "nb101.parquet").read_bytes() == data
    assert record_path("nb101", root).read_text() == rec
    assert sorted(p.name for p in root.iterdir()) == [".refresh", "nb101.parquet"]


@pytest.fixture()
def http_mirror(mirror_copy: Path):
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(mirror_copy))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def test_url_source_downloads_checks_and_swaps(tmp_path: Path, mirror_copy: Path, http_mirror) -> None:
    srv, url = http_mirror
    root = tmp_path / "data"
    spec = SourceSpec(url=url)
    res = refresh_family("nb101", root, spec, limit=20, workers=1)
    assert res.status == "rebuilt", res.reason
    cached = root / ".refresh" / "upstream" / NB101_TABLE
    assert _sha(cached) == _sha(mirror_copy / NB101_TABLE)
    data = (root / "nb101.parquet").read_bytes()
    assert refresh_family("nb101", root, spec, limit=20, workers=1).status == "skipped"
    # the pin moves to a new release, but the server hands out something else: nothing changes
    bad = SourceSpec(url=url, sha256={NB101_TABLE: "0" * 64})
    res = refresh_family("nb101", root, bad, limit=20, workers=1)
    assert res.status == "failed" and "expected the pinned 000000000000" in res.reason
    assert (root / "nb101.parquet").read_bytes() == data and _sha(cached) == _sha(mirror_copy / NB101_TABLE)
    assert not [p for p in cached.parent.iterdir() if p.name != cached.name]  # the temp download is gone
    srv.shutdown()
    srv.server_close()
    res = refresh_family("nb101", root, bad, limit=20, workers=1)
    assert res.status == "failed" and "cannot download" in res.reason
    assert (root / "nb101.parquet").read_bytes() == data


_KILLED = textwrap.dedent("""
    import sys
    from napbench.config import SourceSpec
    from napbench.datasets._refresh import refresh_family
    print(refresh_family("nb201", sys.argv[1], SourceSpec(), limit=int(sys.argv[2]), workers=1, force=True).status)
""")


def test_kill_9_mid_build_then_clean_rerun(tmp_path: Path, mirror: str) -> None:
    root = tmp_path / "data"
    assert refresh_family("nb201", root, SourceSpec(), limit=20, workers=1).status == "rebuilt"
    data, rec = (root / "nb201.parquet").read_bytes(), record_path("nb201", root).read_text()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(root), "3000"], env=env, stdout=subprocess.PIPE)
    stage = root / ".refresh" / "stage" / "nb201"
    deadline = time.monotonic() + 60
    while not stage.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)
    assert proc.poll() is None, "the refresh finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (root / "nb201.parquet").read_bytes() == data  # the old dataset, untouched
    assert record_path("nb201", root).read_text() == rec
    res = refresh_family("nb201", root, SourceSpec(), limit=40, workers=1)
    assert res.status == "rebuilt"
    assert pq.read_metadata(root / "nb201.parquet").num_rows == 40
    assert not stage.exists()
    assert sorted(p.name for p in root.iterdir()) == [".refresh", "nb201.parquet"]
