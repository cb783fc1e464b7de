"""Publish to and load from a local Hub-protocol server with the real huggingface_hub client."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from _hubserver import HubServer

from napbench import hub
from napbench.errors import HubError

TOKEN = "hf_napbench_test_token"


@pytest.fixture()
def server() -> Iterator[HubServer]:
    srv = HubServer(token=TOKEN).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory, mirror: str) -> dict[str, Path]:
    """A small NB-201 dataset, a fitted checkpoint and their Hub-layout folders."""
    import napbench.datasets as nd
    from napbench.zoo import get_predictor

    d = tmp_path_factory.mktemp("hub_art")
    path = nd.build("nb201", d / "data", mirror=mirror, limit=40, workers=1, progress=False)
    ds = nd.load_file(path)
    pred = get_predictor("flops").fit(ds, ds.labels())
    pred.save_pretrained(d / "ckpt", card={"metrics": {"validation nb201": {"srcc": 0.5}}})
    return {
        "parquet": path,
        "ckpt": d / "ckpt",
        "ds_repo": hub.export_dataset(path, d / "export" / "ds", upstream={"nasbench201/nb201_merged.csv": "0" * 64}),
        "model_repo": hub.export_checkpoint(d / "ckpt", d / "export" / "model"),
    }


def _env(server_url: str, cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=server_url, HF_TOKEN=TOKEN, HF_HUB_CACHE=str(cache), HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]), **extra)
    return env


_LOADER = textwrap.dedent("""
    import hashlib, json, os, sys
    import napbench.datasets as nd, napbench.zoo as nz
    ds = nd.load("nb201", source="hub", repo_id=sys.argv[1], revision=sys.argv[2])
    p = nz.load(sys.argv[3], revision=sys.argv[4])
    out = {"sha": hashlib.sha256(open(ds.path, "rb").read()).hexdigest(), "n": len(ds), "pred": p.predict(ds).tolist()}
    # then offline, pointed at an endpoint where nothing listens: served from the cache
    os.environ.update(HF_HUB_OFFLINE="1", HF_ENDPOINT=sys.argv[5])
    ds2 = nd.load("nb201", source="hub", repo_id=sys.argv[1], revision=sys.argv[2])
    p2 = nz.load(sys.argv[3], revision=sys.argv[4])
    out["offline_sha"] = hashlib.sha256(open(ds2.path, "rb").read()).hexdigest()
    out["offline_pred"] = p2.predict(ds2).tolist()
    print(json.dumps(out))
""")


def test_export_layout_has_card_configs_and_manifest(artefacts: dict[str, Path]) -> None:
    repo = artefacts["ds_repo"]
    card = (repo / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["configs"][0]["data_files"][0]["path"] == hub.DATA_FILE
    assert (repo / front["configs"][0]["data_files"][0]["path"]).is_file()
    assert "c10valid_validacc_200ep_mean" in card and "40" in card and "nasbench201/nb201_merged.csv" in card
    man = json.loads((repo / hub.MANIFEST).read_text())
    assert man["files"][hub.DATA_FILE] == hashlib.sha256(artefacts["parquet"].read_bytes()).hexdigest()
    model = artefacts["model_repo"]
    assert {"config.json", "model.safetensors", "README.md", hub.MANIFEST} <= {p.name for p in model.iterdir()}
    assert "srcc" in (model / "README.md").read_text()


def test_publish_then_load_in_fresh_process(artefacts: dict[str, Path], server: HubServer, tmp_path: Path) -> None:
    record = tmp_path / "published.json"
    env = _env(server.url, tmp_path / "cache")
    rev_ds = hub.push_folder(artefacts["ds_repo"], "napbench/napbench-nb201", repo_type="dataset", endpoint=server.url,
                             token=TOKEN, record=record)
    rev_m = hub.push_folder(artefacts["model_repo"], "napbench/flops-nb201", repo_type="model", endpoint=server.url,
                            token=TOKEN, record=record)
    rec = hub.read_record(record)
    assert rec["dataset/napbench/napbench-nb201"]["revision"] == rev_ds
    assert rec["model/napbench/flops-nb201"]["revision"] == rev_m
    dead = HubServer()
    dead.server_close()
    args = [sys.executable, "-c", _LOADER, "napbench/napbench-nb201", rev_ds, "napbench/flops-nb201", rev_m, dead.url]
    out = json.loads(subprocess.run(args, env=env, capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()[-1])
    import napbench.datasets as nd
    from napbench.zoo import load

    local = nd.load_file(artefacts["parquet"])
    assert out["sha"] == hashlib.sha256(artefacts["parquet"].read_bytes()).hexdigest()
    assert out["n"] == len(local)
    np.testing.assert_array_equal(np.asarray(out["pred"]), load(artefacts["ckpt"]).predict(local))
    assert out["offline_sha"] == out["sha"] and out["offline_pred"] == out["pred"]


def test_unauthorized_push_fails_in_one_line_and_records_nothing(artefacts: dict[str, Path], server: HubServer,
                                                                 tmp_path: Path) -> None:
    record = tmp_path / "published.json"
    with pytest.raises(HubError, match="refused \\(401\\).*HF_TOKEN") as ei:
        hub.push_folder(artefacts["ds_repo"], "napbench/x", endpoint=server.url, token="wrong", record=record, retry_delay_s=0)
    assert "\n" not in str(ei.value)
    assert not record.exists() and server.state.repos == {}


def test_5xx_mid_upload_is_retried_and_never_recorded_half(artefacts: dict[str, Path], server: HubServer, tmp_path: Path) -> None:
    record = tmp_path / "published.json"
    server.state.fail("commit", 503, times=2)
    with pytest.raises(HubError, match="failed after 2 attempt") as ei:
        hub.push_folder(artefacts["ds_repo"], "napbench/x", endpoint=server.url, token=TOKEN, record=record,
                        retries=1, retry_delay_s=0)
    assert "\n" not in str(ei.value)
    assert not record.exists()
    repo = server.state.repos[("dataset", "napbench/x")]
    assert repo.history == []  # the failed commits left no revision behind
    # an upload cut off halfway, then a 500: both retried, then one complete revision
    server.state.commit_drop = 1
    server.state.fail("commit", 500, times=1)
    rev = hub.push_folder(artefacts["ds_repo"], "napbench/x", endpoint=server.url, token=TOKEN, record=record,
                          retries=2, retry_delay_s=0)
    assert repo.history == [rev]
    assert set(repo.commits[rev]) == {p.relative_to(artefacts["ds_repo"]).as_posix()
                                      for p in artefacts["ds_repo"].rglob("*") if p.is_file()}
    assert hub.read_record(record)["dataset/napbench/x"]["revision"] == rev


def test_server_down_and_missing_repo(artefacts: dict[str, Path], tmp_path: Path) -> None:
    srv = HubServer(token=TOKEN)
    url = srv.url
    srv.server_close()  # nothing listens there any more
    with pytest.raises(HubError, match="failed after 1 attempt"):
        hub.push_folder(artefacts["ds_repo"], "napbench/x", endpoint=url, token=TOKEN, retries=0)
    with pytest.raises(HubError, match="cannot fetch dataset 'napbench/nothing'"):
        hub.download("napbench/nothing", endpoint=url, token=TOKEN, cache_dir=tmp_path)


def test_corrupt_download_is_refused(artefacts: dict[str, Path], server: HubServer, tmp_path: Path) -> None:
    rev = hub.push_folder(artefacts["model_repo"], "napbench/m", repo_type="model", endpoint=server.url, token=TOKEN)
    files = server.state.repos[("model", "napbench/m")].commits[rev]
    files["model.safetensors"] = files["model.safetensors"][:-8] + b"\0" * 8  # the server now serves other bytes
    with pytest.raises(HubError, match=r"model.safetensors has sha256 .* \(corrupt download\)"):
        hub.download("napbench/m", repo_type="model", revision=rev, endpoint=server.url, token=TOKEN, cache_dir=tmp_path)


_HF_DATASETS = textwrap.dedent("""
    import sys
    import datasets, pyarrow as pa
    ds = datasets.load_dataset(sys.argv[1], revision=sys.argv[2], split="train")
    with pa.OSFile(sys.argv[3], "wb") as sink, pa.ipc.new_file(sink, ds.data.table.schema) as w:
        w.write_table(ds.data.table)
""")


def test_hf_datasets_load_dataset_reads_the_published_repo(artefacts: dict[str, Path], server: HubServer,
                                                           tmp_path: Path) -> None:
    """The unmodified ``datasets`` client, in a fresh process with empty caches, reads what publish pushed."""
    pytest.importorskip("datasets")  # the [test] extra pins it
    import pyarrow as pa
    import pyarrow.parquet as pq

    rev = hub.push_folder(artefacts["ds_repo"], "napbench/napbench-nb201", endpoint=server.url, token=TOKEN)
    out = tmp_path / "rows.arrow"
    env = _env(server.url, tmp_path / "hub-cache", HF_HOME=str(tmp_path / "hf-home"),
               HF_DATASETS_CACHE=str(tmp_path / "ds-cache"))
    subprocess.run([sys.executable, "-c", _HF_DATASETS, "napbench/napbench-nb201", rev, str(out)], env=env,
                   capture_output=True, text=True, check=True, timeout=180)
    got = pa.ipc.open_file(str(out)).read_all()
    want = pq.read_table(artefacts["parquet"])
    assert got.column_names == want.column_names and got.num_rows == want.num_rows == 40
    # same values; ``datasets``' Features model drops "not null" and names list items "item",
    # so the schema is compared after casting onto the Parquet file's own
    assert got.cast(want.schema).equals(want)
    # it came through the server: the card's data file at the published revision
    assert ("GET", f"/datasets/napbench/napbench-nb201/resolve/{rev}/{hub.DATA_FILE}") in server.state.requests
