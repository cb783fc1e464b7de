"""DVC pipeline: a real DVC repo built from the project's dvc.yaml, repro, push and pull."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("dvcrepo")
    shutil.copytree(ROOT / "napbench", d / "napbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", d / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["build"].update(families=["nb201", "hiaml"], limit=6)
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    _run(["git", "init", "-q"], d)
    _run(["dvc", "init", "-q"], d)
    shutil.copy(ROOT / ".dvc" / "config", d / ".dvc" / "config")  # the project's default remote
    return d


def test_default_remote_is_configured() -> None:
    cfg = (ROOT / ".dvc" / "config").read_text()
    assert 'remote = local' in cfg and "url = " in cfg


def test_hub_remote_points_at_the_published_dvc_store() -> None:
    from napbench import hub

    res = subprocess.run([sys.executable, "-m", "dvc", "remote", "list"], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    remotes = dict(line.split(None, 1) for line in res.stdout.splitlines() if line.strip())
    publish = yaml.safe_load((ROOT / "params.yaml").read_text())["publish"]
    want = hub.dvc_remote_url(f"{publish['namespace']}/{publish.get('dvc_store', hub.DVC_STORE)}", endpoint="https://huggingface.co")
    assert remotes["hub"].split()[0] == want


def test_repro_push_pull(repo: Path) -> None:
    out = _run(["dvc", "repro", "build"], repo)  # the dataset stages (train/evaluate: test_repro_whole_pipeline)
    built = sorted(p.name for p in (repo / "data" / "datasets").glob("*.parquet"))
    assert built == ["hiaml.parquet", "nb201.parquet"], out
    import pyarrow.parquet as pq

    assert pq.read_metadata(repo / "data/datasets/nb201.parquet").num_rows == 6
    # nothing changed: nothing re-runs
    again = _run(["dvc", "repro", "build"], repo)
    assert "didn't change" in again and "Running stage" not in again
    # one output removed: only its stage runs
    (repo / "data/datasets/hiaml.parquet").unlink()
    third = _run(["dvc", "repro", "build"], repo)
    assert "build@hiaml" in third and "Running stage 'build@nb201'" not in third
    # push to the default local remote, wipe outputs and cache, pull back
    _run(["dvc", "push"], repo)
    remote = (repo / ".napbench" / "dvc-remote")
    assert remote.is_dir() and any(remote.rglob("*"))
    digest = (repo / "data/datasets/nb201.parquet").read_bytes()
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    _run(["dvc", "pull", "build"], repo)  # the dataset stages (train/evaluate outputs were never pushed here)
    assert (repo / "data/datasets/nb201.parquet").read_bytes() == digest


@pytest.mark.slow  # two Prefect flow runs through DVC; the flows themselves are covered by tests/flows
def test_repro_whole_pipeline_and_metrics_diff(tmp_path: Path) -> None:
    d = tmp_path / "repo"
    shutil.copytree(ROOT / "napbench", d / "napbench", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / f, d / f)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["build"].update(families=["nb201", "nb101"], limit=30)
    params["train"].update(epochs=1, max_train=30)
    params["evaluate"].update(shots=5, seeds=1, max_eval=30)
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    env_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(d)  # the stages import this copy
    try:
        _run(["git", "init", "-q"], d)
        _run(["dvc", "init", "-q"], d)
        _run(["dvc", "repro"], d)
        metrics = yaml.safe_load((d / "results" / "metrics.json").read_text())
        assert set(metrics) == {"nb201", "nb101"} and "srcc" in metrics["nb101"]["zero-shot"]["kgnn"]
        assert (d / "results" / "evaluate" / "pred_vs_true_nb101.png").is_file()
        _run(["git", "add", "-A"], d)
        _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "first"], d)
        params["evaluate"]["shots"] = 10
        (d / "params.yaml").write_text(yaml.safe_dump(params))
        out = _run(["dvc", "repro"], d)
        assert "Running stage 'evaluate'" in out and "Running stage 'train'" not in out
        diff = _run(["dvc", "metrics", "diff", "--json"], d)
        assert "nb101" in diff
    finally:
        if env_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_path


def test_refresh_then_dvc_commit_and_push(repo: Path) -> None:
    """What the refresh flow does with ``refresh.dvc``: rebuild outside dvc repro, then record and push it."""
    from napbench import _dvc
    from napbench.config import SourceSpec
    from napbench.datasets._refresh import refresh_family

    _run(["dvc", "repro", "build@nb201"], repo)
    res = refresh_family("nb201", repo / "data" / "datasets", SourceSpec(), limit=6, workers=1, force=True)
    assert res.status == "rebuilt"
    assert "build@nb201" in _run(["dvc", "status", "build@nb201"], repo)  # the new file is not recorded yet
    _dvc.commit(["build@nb201"], repo=repo)
    assert "up to date" in _run(["dvc", "status", "build@nb201"], repo)
    _dvc.push(["build@nb201"], repo=repo)
    assert "in sync" in _run(["dvc", "status", "--cloud", "build@nb201"], repo)


def test_fresh_clone_pulls_the_datasets_from_the_hub_dvc_store(repo: Path, tmp_path: Path) -> None:
    """publish's DVC store on a (local) Hub is a DVC HTTP remote: wipe cache and outputs, `dvc pull -r hub`, same bytes."""
    from _hubserver import HubServer

    from napbench import _dvc, hub
    from napbench.errors import HubError

    _run(["dvc", "repro", "build"], repo)
    stages = ["build@nb201", "build@hiaml"]
    objects = _dvc.cache_objects(stages, repo=repo)
    assert [(o.stage, o.path) for o in objects] == [(s, f"data/datasets/{s[6:]}.parquet") for s in stages]
    assert all(o.key == f"files/md5/{o.md5[:2]}/{o.md5[2:]}" and o.source is not None for o in objects)
    want = {o.path: (repo / o.path).read_bytes() for o in objects}
    srv = HubServer(token="t").start()
    try:
        # what the publish flow does: the DVC repo beside params.yaml, the build stages' objects
        from napbench.config import load_config
        from napbench.flows.publish import dvc_repo, export_dvc_store

        assert dvc_repo(load_config(repo / "params.yaml")) == repo.resolve()
        store = export_dvc_store.fn(str(repo), [*stages, "build@nothing"], str(tmp_path / "store"), "napbench/dvc-store")
        assert store["objects"] == 2 and store["missing"] == []
        folder = Path(store["folder"])
        assert "dvc pull -r hub" in (folder / "README.md").read_text()
        hub.push_folder(folder, "napbench/dvc-store", endpoint=srv.url, token="t")
        # the project's `hub` remote, pointed at the local server the way a user overrides a URL
        _run(["dvc", "remote", "modify", "--local", "hub", "url", hub.dvc_remote_url("napbench/dvc-store", endpoint=srv.url)], repo)
        shutil.rmtree(repo / "data")
        shutil.rmtree(repo / ".dvc" / "cache")
        _run(["dvc", "pull", "-r", "hub", *stages], repo)
        for path, data in want.items():
            assert (repo / path).read_bytes() == data
        fetched = {p for m, p in srv.state.requests if m == "GET" and "/resolve/main/files/md5/" in p}
        assert fetched == {f"/datasets/napbench/dvc-store/resolve/main/{o.key}" for o in objects}
    finally:
        srv.stop()
    # cache gone, workspace file rebuilt with the recorded content: the workspace file is the object's source
    shutil.rmtree(repo / ".dvc" / "cache")
    again = _dvc.cache_objects(["build@nb201"], repo=repo)
    assert again[0].source == repo / "data/datasets/nb201.parquet"
    (repo / "data/datasets/nb201.parquet").unlink()
    assert _dvc.cache_objects(["build@nb201"], repo=repo)[0].source is None
    with pytest.raises(HubError, match="not in the cache"):
        hub.export_dvc_store(_dvc.cache_objects(["build@nb201"], repo=repo), tmp_path / "store2")


def test_relock_keeps_the_record_of_a_dependency_the_workspace_lacks(tmp_path: Path) -> None:
    """``python -m napbench._dvc relock``: a changed code dependency is re-recorded, another stage's missing output kept."""
    from napbench import _dvc

    d = tmp_path / "r"
    d.mkdir()
    (d / "code.py").write_text("x = 1\n")
    (d / "dvc.yaml").write_text("stages:\n  a:\n    cmd: echo data > x.txt\n    outs: [x.txt]\n"
                                "  b:\n    cmd: cat x.txt > y.txt\n    deps: [x.txt, code.py]\n    outs: [y.txt]\n")
    _run(["dvc", "init", "--no-scm", "-q"], d)
    _run(["dvc", "repro"], d)
    before = {dep["path"]: dep["md5"] for dep in yaml.safe_load((d / "dvc.lock").read_text())["stages"]["b"]["deps"]}
    (d / "x.txt").unlink()
    (d / "code.py").write_text("x = 2\n")
    assert _dvc.relock_deps(["b"], repo=d) == ["b"]
    after = {dep["path"]: dep["md5"] for dep in yaml.safe_load((d / "dvc.lock").read_text())["stages"]["b"]["deps"]}
    assert after["x.txt"] == before["x.txt"]
    assert after["code.py"] != before["code.py"]
