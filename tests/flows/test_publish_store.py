"""The publish flow pushes the DVC store (the build outputs' DVC objects) next to the datasets."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _flowutil import write_params


def _dvc(args: list[str], cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=True, capture_output=True, timeout=300,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})


def test_publish_flow_pushes_the_dvc_store_of_the_recorded_builds(tmp_path: Path, mirror: str, prefect_server: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from _hubserver import HubServer

    import napbench.datasets as nd
    from napbench.flows.publish import publish

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "dvc.yaml").write_text("stages:\n  build:\n    foreach: [nb201]\n    do:\n"
                                   "      cmd: napbench datasets build ${item} --root data/datasets --limit 6\n"
                                   "      outs:\n      - data/datasets/${item}.parquet\n")
    p = write_params(repo / "params.yaml", build={"families": ["nb201"], "limit": 6, "root": "data/datasets"},
                     pipeline={"predictors": [], "checkpoints": "results/checkpoints"},
                     publish={"export_dir": "results/hub"})
    _dvc(["init", "--no-scm", "-q"], repo)
    parquet = nd.build("nb201", repo / "data" / "datasets", mirror=mirror, limit=6, workers=1, progress=False)
    _dvc(["commit", "--force", "-q", "build@nb201"], repo)  # recorded in dvc.lock, object in .dvc/cache
    md5 = hashlib.md5(parquet.read_bytes()).hexdigest()
    monkeypatch.chdir(repo)
    srv = HubServer(token="t").start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        monkeypatch.setenv("HF_TOKEN", "t")
        out = publish(params=str(p), push=True)
    finally:
        srv.stop()
    assert set(out["pushed"]) == {"dataset/napbench/napbench-nb201", "dataset/napbench/dvc-store"}
    store = srv.state.repos[("dataset", "napbench/dvc-store")]
    files = store.commits[out["pushed"]["dataset/napbench/dvc-store"]]
    assert files[f"files/md5/{md5[:2]}/{md5[2:]}"] == parquet.read_bytes()
    assert "dvc pull -r hub" in files["README.md"].decode()
