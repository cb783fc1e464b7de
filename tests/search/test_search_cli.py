"""``napbench search`` end to end on a small NB-201 dataset; score caches round-trip."""

from __future__ import annotations

import polars as pl
import pytest

import napbench.datasets as nd
from napbench.cli import main
from napbench.search import load_score_cache, run, save_score_cache
from napbench.zoo import get_predictor


@pytest.fixture(scope="module")
def small_root(tmp_path_factory, mirror: str):
    root = tmp_path_factory.mktemp("search_root")
    nd.build("nb201", root, mirror=mirror, limit=400, workers=1, progress=False)
    return root


def test_search_cli_prints_and_writes(small_root, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(["search", "area", "--root", str(small_root), "--predictor", "flops", "--queries", "20",
               "--option", "n_candidates=100", "--seeds", "0-1", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.count("best       |") == 2 and "20 queries, 100 predictor calls" in text and "over 2 seeds" in text
    t = pl.read_parquet(out / "trajectory.parquet")
    assert t.height == 40 and set(t["seed"].to_list()) == {0, 1}
    assert (out / "search.png").stat().st_size > 1000 and (out / "results.json").is_file()
    # --calibrate N counts N predictor calls (FLOPs is pointwise: calibrating it changes no score)
    rc = main(["search", "naswot", "--root", str(small_root), "--predictor", "flops", "--queries", "0", "--calibrate", "50",
               "--option", "n_candidates=100", "--seeds", "0"])
    assert rc == 0 and "0 queries, 150 predictor calls" in capsys.readouterr().out


def test_search_with_latency_constraint(small_root) -> None:
    rs = run("rea", root=str(small_root), queries=30, seeds=[0], device="edgegpu", latency_limit=5.0, latency_train=100)
    r = rs[0]
    assert r.cost is not None and r.cost <= 5.0  # the estimate the hard constraint kept
    assert r.cost_true is not None and r.config["constraint"]["column"] == "hw_edgegpu_latency"


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["search", "nope"], "unknown search strategy 'nope'"),
        (["search", "naswot", "--queries", "0"], "needs a predictor"),
        (["search", "rea", "--predictor", "nope"], "unknown predictor 'nope'"),
        (["search", "rea", "--device", "edgegpu"], "needs both device and latency_limit"),
        (["search", "rea", "--device", "toaster", "--latency-limit", "3"], "unknown HW-NAS-Bench device 'toaster'"),
        (["search", "naswot", "--predictor", "flops", "--calibrate", "300", "--predictor-calls", "200"], "calibration on 300 rows"),
        (["search", "rea", "--device", "edgegpu", "--latency-limit", "3", "--latency-margin", "1.5"], "constraint margin 1.5"),
    ],
)
def test_search_cli_errors(small_root, capsys, argv: list[str], expect: str) -> None:
    assert main([*argv, "--root", str(small_root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0]


def test_score_cache_round_trip(tmp_path) -> None:
    p = get_predictor("zc:synflow")
    p.cache.values[p._key("nb201", "a", "synflow")] = 1.5  # the key the predictor itself uses
    p.cache.values[p._key("nb201", "b", "synflow")] = None  # undefined proxy
    path = tmp_path / "cache.parquet"
    assert save_score_cache(p, path) == 2
    q = get_predictor("zc:synflow")
    assert load_score_cache(q, path) == 2 and q.cache.values == p.cache.values
    (tmp_path / "other.parquet").write_text("not ours")
    with pytest.raises(Exception, match="not a napbench score cache|not a score cache"):
        load_score_cache(q, tmp_path / "other.parquet")
    with pytest.raises(Exception, match="score cache"):
        save_score_cache(p, tmp_path / "other.parquet")


def test_search_list(capsys) -> None:
    assert main(["search", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("random", "naswot", "rea", "area", "guided"):
        assert out.count(f"{name} ") >= 1
    assert "needs --predictor" in out
