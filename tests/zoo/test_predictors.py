"""Predictor interface, registry, featurisation and checkpoints (napbench.zoo)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import napbench.zoo as zoo
from napbench.conversion.vocab import OPS, VOCAB_VERSION
from napbench.errors import InvalidArgumentError, NapbenchError, UnknownNameError, VersionMismatchError
from napbench.zoo import Predictor, get_predictor, list_predictors
from napbench.zoo.features import (
    FEATURE_NAMES,
    NUM_FEATURES,
    NUMERIC_FEATURES,
    PackedGraphs,
    graph_to_data,
    graphs_to_batch,
    node_features,
)


# -- registry -----------------------------------------------------------------------------
def test_registry_walk() -> None:
    names = list_predictors()
    assert {"kgnn", "flops", "params", "zc:vote", "zc:synflow"} <= set(names)
    from napbench.zoo.proxies import list_proxies

    assert {f"zc:{p}" for p in list_proxies()} <= set(names)
    for name in names:
        p = get_predictor(name)
        assert isinstance(p, Predictor)
        assert p.predictor_name == name
        assert p.description, name
        assert not p.is_fitted
        cfg = p.checkpoint_config()
        assert cfg["predictor"] == name and cfg["vocab_version"] == VOCAB_VERSION
        json.dumps(cfg)  # JSON-able
        assert zoo.predictor_class(name) is type(p)


def test_unknown_predictor_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as exc:
        get_predictor("gennape-xl")
    msg = str(exc.value)
    assert "gennape-xl" in msg and "kgnn" in msg and "zc:vote" in msg and "\n" not in msg
    with pytest.raises(UnknownNameError):
        get_predictor("zc:not-a-proxy")


def test_bad_init_argument_is_a_napbench_error() -> None:
    with pytest.raises(InvalidArgumentError, match="hidden"):
        get_predictor("kgnn", hiden=3)


# -- features -----------------------------------------------------------------------------
def test_feature_layout(nb201) -> None:
    ds, _ = nb201
    g = ds.graphs[0]
    assert NUM_FEATURES == len(OPS) + len(NUMERIC_FEATURES) == len(FEATURE_NAMES)
    x = node_features(g)
    assert x.shape == (len(g), NUM_FEATURES)
    np.testing.assert_array_equal(x[:, : len(OPS)].sum(1), 1.0)
    assert x[0, list(OPS).index("input")] == 1.0
    conv = next(i for i, n in enumerate(g.nodes) if n.op == "conv")
    assert x[conv, FEATURE_NAMES.index("flops")] == pytest.approx(np.log1p(g.nodes[conv].flops))
    assert x[conv, FEATURE_NAMES.index("params")] == pytest.approx(np.log1p(g.nodes[conv].params))
    d = graph_to_data(g)
    assert d.num_nodes == len(g) and d.edge_index.shape == (2, len(g.edges))
    assert [tuple(e) for e in d.edge_index.T.tolist()] == g.edges


def test_arrow_and_graph_featurisation_agree(nb201) -> None:
    ds, _ = nb201
    rows = [5, 0, 17, 3]
    a = PackedGraphs.from_arrow(ds.subset(rows).table)
    b = PackedGraphs.from_graphs([ds.graphs[i] for i in rows])
    for f in ("op", "numeric", "src", "dst", "node_ptr", "edge_ptr"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    batch = a.batch([2, 0])
    ref = graphs_to_batch([ds.graphs[17], ds.graphs[5]])
    np.testing.assert_array_equal(batch.x.numpy(), ref.x.numpy())
    np.testing.assert_array_equal(batch.edge_index.numpy(), ref.edge_index.numpy())
    assert batch.num_graphs == 2 and int(batch.batch.max()) == 1


# -- baselines ----------------------------------------------------------------------------
def test_flops_params_rank_by_log_quantity_and_fit_linear_map(nb201) -> None:
    from napbench.evaluation.metrics import mae, srcc

    ds, y = nb201
    flops = np.array([g.flops for g in ds.graphs], dtype=float)
    p = get_predictor("flops")
    raw = p.predict(ds)
    np.testing.assert_allclose(raw, np.log(flops))
    p.fit(ds, y, progress=False)
    fitted = p.predict(ds)
    assert float(p.coef[0]) > 0
    assert srcc(y, fitted) == pytest.approx(srcc(y, np.log(flops)))
    assert mae(y, fitted) < mae(y, raw)
    np.testing.assert_allclose(p.predict(ds.graphs), fitted)  # CompGraph list == dataset path
    q = get_predictor("params").fit(ds, y, progress=False)
    assert srcc(y, q.predict(ds)) == pytest.approx(srcc(y, [g.params for g in ds.graphs]))


def test_fit_rejects_nan_labels(nb201) -> None:
    ds, y = nb201
    bad = y.copy()
    bad[3] = np.nan
    with pytest.raises(InvalidArgumentError, match="NaN"):
        get_predictor("flops").fit(ds, bad, progress=False)
    with pytest.raises(InvalidArgumentError, match="one label per graph"):
        get_predictor("kgnn").fit(ds, y[:-1], progress=False)


def test_zero_cost_predictor_caches_per_arch_and_clones_share_cache(nb201) -> None:
    ds, y = nb201
    sub = ds.subset([0, 1, 2])
    p = get_predictor("zc:synflow", input_size=16, batch_size=4)
    s1 = p.predict(sub)
    assert np.isfinite(s1).all() and len(p.cache) == 3
    clone = p.clone()
    assert clone.cache is p.cache
    np.testing.assert_array_equal(clone.predict(sub), s1)
    assert len(p.cache) == 3
    p.fit(sub, y[:3], progress=False)
    assert p.is_fitted and not clone.is_fitted
    # a graph without family metadata runs through the CG executor; network="builder" refuses it
    assert np.isfinite(p.predict([ds.graphs[0].with_meta(family=None)])).all()
    with pytest.raises(InvalidArgumentError, match="family/arch"):
        get_predictor("zc:synflow", network="builder").predict([ds.graphs[0].with_meta(family=None)])


# -- k-GNN --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_kgnn(nb201):
    ds, y = nb201
    return get_predictor("kgnn").fit(ds, y, epochs=15, seed=0, progress=False)


def test_kgnn_loss_falls(trained_kgnn) -> None:
    h = trained_kgnn.history
    assert len(h) == 15 and all(np.isfinite(h))
    assert h[-1] < 0.8 * h[0]


def test_kgnn_fit_is_seeded(nb201, trained_kgnn) -> None:
    ds, y = nb201
    sub = ds.subset(range(16))
    again = get_predictor("kgnn").fit(ds, y, epochs=15, seed=0, progress=False)
    np.testing.assert_allclose(again.predict(sub), trained_kgnn.predict(sub), rtol=1e-5)


def test_kgnn_fine_tune_changes_a_clone_only(nb201, trained_kgnn) -> None:
    ds, y = nb201
    before = trained_kgnn.predict(ds)
    tuned = trained_kgnn.clone().fine_tune(ds.subset(range(10)), y[:10], epochs=3, progress=False)
    np.testing.assert_array_equal(trained_kgnn.predict(ds), before)
    assert not np.allclose(tuned.predict(ds), before)
    assert tuned.training_info["fine_tune"][0]["n"] == 10


# -- checkpoints --------------------------------------------------------------------------
def test_save_load_gives_identical_predictions(tmp_path: Path, nb201, trained_kgnn) -> None:
    ds, y = nb201
    ck = tmp_path / "kgnn-nb201"
    trained_kgnn.save_pretrained(ck, card={"metrics": {"srcc": 0.5, "kt": 0.4}, "notes": "test run"})
    assert {p.name for p in ck.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    cfg = json.loads((ck / "config.json").read_text())
    assert cfg["predictor"] == "kgnn" and cfg["vocab_version"] == VOCAB_VERSION and cfg["hidden"] == 32
    assert cfg["training"]["fit"]["families"] == ["nb201"]
    card = (ck / "README.md").read_text()
    assert "nb201" in card and "| srcc |" in card and "library_name: napbench" in card
    loaded = zoo.load(ck)
    assert type(loaded) is type(trained_kgnn) and loaded.is_fitted
    np.testing.assert_array_equal(loaded.predict(ds), trained_kgnn.predict(ds))
    np.testing.assert_array_equal(loaded.predict(ds.graphs[:5]), trained_kgnn.predict(ds.graphs[:5]))
    # saving again replaces the folder
    get_predictor("flops").fit(ds, y, progress=False).save_pretrained(ck)
    again = zoo.load(str(ck))
    assert again.predictor_name == "flops"
    np.testing.assert_allclose(again.predict(ds), get_predictor("flops").fit(ds, y, progress=False).predict(ds))


def test_zero_cost_checkpoint_round_trip(tmp_path: Path) -> None:
    p = get_predictor("zc:naswot", input_size=16)
    p.save_pretrained(tmp_path / "zc")
    cfg = json.loads((tmp_path / "zc" / "config.json").read_text())
    assert cfg["proxy"] == "naswot" and cfg["predictor"] == "zc:naswot" and "cache" not in cfg
    q = zoo.load(tmp_path / "zc")
    assert q.predictor_name == "zc:naswot" and q.input_size == 16


def test_vocab_mismatch_names_both_versions(tmp_path: Path) -> None:
    ck = tmp_path / "old"
    get_predictor("params").save_pretrained(ck)
    cfg_file = ck / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["vocab_version"] = "0.1"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(VersionMismatchError) as exc:
        zoo.load(ck)
    assert "0.1" in str(exc.value) and VOCAB_VERSION in str(exc.value)
    with pytest.raises(VersionMismatchError):  # from_pretrained checks too
        Predictor.from_pretrained(str(ck))


def test_missing_or_incomplete_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(NapbenchError, match="not found") as exc:
        zoo.load(tmp_path / "nope")
    assert "\n" not in str(exc.value)
    with pytest.raises(NapbenchError, match="get_predictor"):
        zoo.load("kgnn")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NapbenchError, match="config.json"):
        zoo.load(tmp_path / "empty")
    ck = tmp_path / "noweights"
    get_predictor("flops").save_pretrained(ck)
    (ck / "model.safetensors").unlink()
    with pytest.raises(NapbenchError, match="model.safetensors"):
        zoo.load(ck)
