"""Real Prefect flow runs (on the test server): refresh, the pipeline, Dask, and a scheduled run fired by serve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _flowutil import write_params


def _params(tmp_path: Path, **over: dict) -> Path:
    d = tmp_path
    sections = {
        "build": {"families": ["nb201", "nb101"], "limit": 40, "root": str(d / "data")},
        "refresh": {"families": ["nb201", "nb101"], "max_workers": 2, "interval_s": 3},
        "train": {"sources": ["nb201"], "epochs": 2, "max_train": 40},
        "evaluate": {"targets": ["nb101"], "shots": 10, "seeds": 1, "max_eval": 40, "out": str(d / "results" / "evaluate")},
        "pipeline": {"predictors": ["kgnn", "flops"], "checkpoints": str(d / "results" / "checkpoints"),
                     "results": str(d / "results")},
        "publish": {"export_dir": str(d / "results" / "hub")},
    }
    for k, v in over.items():
        sections[k] = {**sections[k], **v}
    return write_params(d / "params.yaml", **sections)


def test_refresh_flow_runs_mapped_families_and_skips_on_rerun(tmp_path: Path, prefect_server: str) -> None:
    from napbench.flows.refresh import refresh

    p = _params(tmp_path)
    first = refresh(params=str(p))
    assert sorted((r["family"], r["status"]) for r in first) == [("nb101", "rebuilt"), ("nb201", "rebuilt")]
    second = refresh(params=str(p))
    assert sorted((r["family"], r["status"], r["reason"]) for r in second) == [
        ("nb101", "skipped", "sources, versions and limit unchanged"),
        ("nb201", "skipped", "sources, versions and limit unchanged"),
    ]


def test_pipeline_flow_trains_two_predictors_at_once(tmp_path: Path, prefect_server: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from napbench.flows.pipeline import pipeline

    threads = torch.get_num_threads()
    p = _params(tmp_path)
    state = pipeline(params=str(p), return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert torch.get_num_threads() == threads  # scoped: restored after two concurrent trainings
    assert "| nb101 | zero-shot |" in out["table"] and "| kgnn | flops |" in out["table"]
    res = tmp_path / "results"
    summary = json.loads((res / "evaluate" / "metrics.json").read_text())
    assert {(r["target"], r["setting"], r["predictor"]) for r in summary["results"]} >= {("nb101", "zero-shot", "kgnn"),
                                                                                      ("nb101", "fine-tuned", "flops")}
    assert (res / "evaluate" / "pred_vs_true_nb101.png").is_file()
    assert set(json.loads((res / "metrics.json").read_text())) == {"nb101"}
    for name in ("kgnn-nb201", "flops-nb201"):
        assert (res / "checkpoints" / name / "model.safetensors").is_file()
        assert (res / "hub" / "models" / "napbench" / name / "napbench.json").is_file()
    assert (res / "hub" / "datasets" / "napbench" / "napbench-nb101" / "data" / "train.parquet").is_file()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    train = [r for r in runs if r.name.startswith("train ")]
    assert sorted(r.name for r in train) == ["train flops", "train kgnn"]
    a, b = train
    assert a.start_time < b.end_time and b.start_time < a.end_time, "the two training tasks did not run at once"
    # napbench publish: the exported repos pushed to a (local) Hub, revisions recorded
    from _hubserver import HubServer

    from napbench.cli import main

    hub = HubServer(token="t").start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "t")
        assert main(["publish", "--params", str(p)]) == 0
    finally:
        hub.stop()
    record = json.loads((res / "hub" / "published.json").read_text())
    assert set(record) == {"dataset/napbench/napbench-nb201", "dataset/napbench/napbench-nb101",
                           "model/napbench/kgnn-nb201", "model/napbench/flops-nb201"}


def test_refresh_on_dask_localcluster_with_two_workers(tmp_path: Path, prefect_server: str) -> None:
    from distributed import LocalCluster

    from napbench.flows.refresh import refresh_with_runner

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        p = _params(tmp_path, refresh={"task_runner": "dask", "dask_address": cluster.scheduler_address},
                    build={"limit": 20})
        res = refresh_with_runner(str(p))
        assert sorted((r["family"], r["status"]) for r in res) == [("nb101", "rebuilt"), ("nb201", "rebuilt")]
        with cluster.get_client() if hasattr(cluster, "get_client") else __import__("distributed").Client(cluster) as c:
            done = c.run(lambda: __import__("napbench.datasets._refresh", fromlist=["x"]).__name__)
        assert len(done) == 2  # the refresh code was imported on both workers
    assert (tmp_path / "data" / "nb201.parquet").is_file()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server_with_scheduler(tmp_path_factory: pytest.TempPathFactory):
    """A real ``prefect server start`` (with its scheduler service, looping every second) on a free port."""
    import urllib.request

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect_home")), "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "prefect server did not start"
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=60)


def test_serve_fires_a_scheduled_refresh_and_stops_on_sigterm(tmp_path: Path, prefect_server_with_scheduler: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = prefect_server_with_scheduler
    p = _params(tmp_path, build={"families": ["nb101"], "limit": 10}, refresh={"families": ["nb101"], "interval_s": 5})
    env = {**os.environ, "PREFECT_API_URL": url, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "napbench.cli", "serve", "--params", str(p)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        done: list = []
        while time.monotonic() < deadline and not done:
            time.sleep(2)
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
                runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["napbench-refresh"])))
            done = [r for r in runs if r.state and r.state.is_completed()]
        assert done, "no scheduled refresh completed"
        assert done[0].auto_scheduled  # created by the server's scheduler from the deployment's schedule
        assert (tmp_path / "data" / "nb101.parquet").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("serve did not stop on SIGTERM")
    assert rc == 0


@pytest.mark.slow  # a worker process starts a flow-run process; 5 min on the shared 2-core machine (make test-all)
def test_process_work_pool_worker_runs_the_deployment(tmp_path: Path, prefect_server_with_scheduler: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from napbench.flows.refresh import refresh

    url = prefect_server_with_scheduler
    root = Path(__file__).resolve().parents[2]
    p = _params(tmp_path, build={"families": ["nb101"], "limit": 10}, refresh={"families": ["nb101"]})
    with temporary_settings({PREFECT_API_URL: url}):
        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name="napbench-test", type="process"), overwrite=True)
        refresh.from_source(source=str(root), entrypoint="napbench/flows/refresh.py:refresh").deploy(
            name="napbench-refresh-pool", work_pool_name="napbench-test", parameters={"params": str(p)}, build=False,
            push=False, print_next_steps=False)
        run = run_deployment("refresh/napbench-refresh-pool", timeout=0)
    env = {**os.environ, "PREFECT_API_URL": url, "PYTHONPATH": str(root)}
    worker = subprocess.run([sys.executable, "-m", "prefect", "worker", "start", "--pool", "napbench-test", "--run-once"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400, check=False)
    assert worker.returncode == 0, worker.stdout[-2000:] + worker.stderr[-2000:]
    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert state.is_completed(), state
    assert (tmp_path / "data" / "nb101.parquet").is_file()


def test_search_flow_runs_one_mapped_task_per_seed(tmp_path: Path, prefect_server: str) -> None:
    from napbench.datasets import build
    from napbench.flows.search import search

    root = tmp_path / "data"
    build("nb201", root, limit=60, progress=False)
    out = search("random", seeds=(0, 1), family="nb201", queries=20, root=str(root))
    assert [r["seed"] for r in out] == [0, 1]
    for r in out:  # a random search of 20 queries returns a real row of the built table with its true label
        assert r["strategy"] == "random" and r["family"] == "nb201" and 0.0 < r["true"] <= 100.0
