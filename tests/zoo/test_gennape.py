"""GENNAPE: contrastive loss, FCM, label transforms, heads, ensemble, a bag of ensembles, checkpoints, predict CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from napbench import zoo
from napbench.errors import InvalidArgumentError
from napbench.zoo.gennape import transforms as T
from napbench.zoo.gennape.bag import GennapeBag
from napbench.zoo.gennape.encoder import laplacian_spectra, spectral_contrastive_loss, spectral_weights
from napbench.zoo.gennape.ensemble import GennapeEnsemble
from napbench.zoo.gennape.fcm import fit_fcm, memberships
from napbench.zoo.gennape.heads import ClusterMLP, merge_sort_order, merge_sort_rank, train_pairwise, train_regression

#: tiny but complete settings (encoder sizes are the paper's; only data and epochs shrink)
TINY = {"pretrain_families": ["nb201"], "pretrain_per_family": 24, "pretrain_epochs": 3, "batch_size": 12, "epochs": 8,
        "grid_epochs": 2, "clusters": [2], "fuzziness": [1.5, 2.0], "pairs_per_epoch": 400, "fine_tune_epochs": 20}


@pytest.fixture(scope="module")
def ensemble(home: Path, nb201):
    ds, y = nb201
    p = zoo.get_predictor("gennape", member_kwargs=TINY, kgnn_epochs=2, folds=2, root=str(home))  # 2 folds: fast fine-tuning
    return p.fit(ds.subset(list(range(48))), y[:48], progress=False)


def _eff(ens, ds):
    return ens._view(ds)  # the graphs as the ensemble reads them


# -- contrastive loss ---------------------------------------------------------------------
def test_contrastive_loss_equals_hand_computed_value() -> None:
    # two graphs; view 1 and view 2 identical unit vectors e1, e2; spectra 0 and 0.1; tau 1, T 0.05
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    eigs = torch.tensor([[0.0], [0.1]])
    got = float(spectral_contrastive_loss(z, z.clone(), eigs, tau=1.0, spectral_temperature=0.05))
    w_self = 1.0 / (1.0 + math.exp(-2.0))  # softmax of (-0/0.05, -0.1/0.05)
    w_other = 1.0 - w_self
    # every anchor sees the other 3 embeddings: its twin (cos 1) and two orthogonal ones (cos 0)
    lse = math.log(math.e + 2.0)
    log_twin, log_orth = 1.0 - lse, 0.0 - lse
    per_anchor = w_self * log_twin + w_other * log_orth
    expected = -(4 * per_anchor) / (2 * 2)
    assert got == pytest.approx(expected, rel=1e-6)
    w = spectral_weights(eigs, 0.05)
    assert torch.allclose(w.sum(1), torch.ones(2)) and float(w[0, 0]) == pytest.approx(w_self)


def test_contrastive_loss_rejects_mismatched_views() -> None:
    with pytest.raises(InvalidArgumentError, match="views"):
        spectral_contrastive_loss(torch.zeros(3, 4), torch.zeros(2, 4), torch.zeros(3, 11))


def test_spectra_match_compgraph(nb201) -> None:
    from napbench.zoo.features import PackedGraphs

    ds, _ = nb201
    graphs = ds.graphs[:3]
    got = laplacian_spectra(PackedGraphs.from_graphs(graphs), 11)
    for g, row in zip(graphs, got):
        np.testing.assert_allclose(row, g.laplacian_eigenvalues(11), atol=1e-9)


# -- FCM ------------------------------------------------------------------------------------
def test_fcm_memberships_sum_to_one_and_recover_planted_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    labels = np.repeat(np.arange(3), 60)
    x = centres[labels] + rng.normal(scale=0.7, size=(180, 2))
    res = fit_fcm(x, 3, 2.0, seed=1)
    assert res.converged and res.iterations > 0
    np.testing.assert_allclose(res.u.sum(1), 1.0, atol=1e-12)
    found = res.u.argmax(1)
    for k in range(3):  # each planted cluster maps onto exactly one found cluster
        assert len(set(found[labels == k])) == 1
    assert len(set(found)) == 3
    # new points get memberships from the fixed centroids
    u_new = memberships(centres + 0.1, res.centroids, 2.0)
    np.testing.assert_allclose(u_new.sum(1), 1.0, atol=1e-12)
    assert sorted(u_new.argmax(1).tolist()) == [0, 1, 2] and (u_new.max(1) > 0.9).all()
    with pytest.raises(InvalidArgumentError, match="fuzziness"):
        memberships(x, res.centroids, 1.0)


# -- label transforms -----------------------------------------------------------------------
def test_label_transforms_round_trip() -> None:
    rng = np.random.default_rng(3)
    y = np.concatenate([rng.normal(90, 3, 20), rng.normal(45, 8, 10)])
    fams = ["nb201"] * 20 + ["transnas101_micro"] * 10
    macs = rng.uniform(1e7, 5e9, 30)
    stats = T.family_stats(y, fams)
    for name in T.TRANSFORMS:
        t = T.to_target(y, transform=name, families=fams, macs=macs, stats=stats)
        z = T.from_target(t, transform=name, macs=macs)
        back = z if name == "none" else T.to_labels(z, fams, stats)
        np.testing.assert_allclose(back, y, rtol=1e-12)
    t = T.to_target(y, transform="flops", families=fams, macs=macs, stats=stats)
    z = T.to_target(y, transform="family", families=fams, macs=macs, stats=stats)
    np.testing.assert_allclose(t, z / (np.log10(macs / 1e9 + 1) + 1))
    assert abs(z[:20].mean()) < 1e-12 and z[:20].std() == pytest.approx(1.0)
    with pytest.raises(InvalidArgumentError, match="transform"):
        T.check_transform("log")


# -- heads: each member's loss falls --------------------------------------------------------
def test_regression_and_pairwise_heads_learn() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = x[:, 0] - 0.5 * x[:, 1]
    u = np.full((200, 2), 0.5)
    torch.manual_seed(0)
    reg = ClusterMLP(2, 5, 32, 2)
    hist = train_regression(reg, x, y, u, epochs=15, lr=3e-3, batch_size=50, seed=0)
    assert hist[-1] < 0.5 * hist[0]
    torch.manual_seed(0)
    pair = ClusterMLP(2, 10, 32, 2)
    hist = train_pairwise(pair, x, y, u, [np.arange(200)], epochs=5, pairs_per_epoch=1500, lr=3e-3, batch_size=256, seed=0)
    assert hist[-1] < 0.7 * hist[0]
    calls = [0]
    rank = merge_sort_rank(pair, x, u, counter=calls)
    assert sorted(rank.tolist()) == list(range(200)) and 0 < calls[0] <= 200 * 8 * 8 // 2
    from scipy.stats import spearmanr

    assert spearmanr(rank, y).statistic > 0.8


@pytest.mark.parametrize("n", [1, 2, 3, 17, 64, 1000])
def test_merge_sort_is_exact_and_stable_for_a_transitive_comparator(n: int) -> None:
    v = np.random.default_rng(n).integers(0, max(2, n // 3), size=n).astype(float)  # with ties
    calls = [0]
    order = merge_sort_order(n, lambda a, b: v[a] > v[b], counter=calls)
    assert order.tolist() == np.argsort(v, kind="stable").tolist()
    assert calls[0] <= n * max(1, int(np.ceil(np.log2(max(n, 2)))))  # about n log2 n, as a sequential merge sort


def test_merge_sort_stays_close_to_the_truth_when_a_few_comparisons_are_wrong() -> None:
    """A learned comparator errs on some pairs; one wrong answer must misplace about one element,
    not a whole run (a binary search of every left element made monotone by a running maximum
    gave SRCC 0.63-0.78 here)."""
    from scipy.stats import spearmanr

    n = 2000
    for seed in range(3):
        v = np.random.default_rng(seed).normal(size=n)
        noise = np.random.default_rng(100 + seed)
        order = merge_sort_order(n, lambda a, b: (v[a] > v[b]) ^ (noise.random(len(a)) < 0.01))
        rank = np.empty(n)
        rank[order] = np.arange(n)
        assert spearmanr(rank, v).statistic > 0.95


def test_merge_sort_gives_a_permutation_for_an_inconsistent_comparator() -> None:
    rng = np.random.default_rng(0)
    order = merge_sort_order(300, lambda a, b: rng.random(len(a)) < 0.5)
    assert sorted(order.tolist()) == list(range(300))


def test_every_member_loss_falls(ensemble) -> None:
    for name, m in zip(ensemble.member_names, ensemble.members):
        if name == "flops":
            continue  # a closed-form least-squares map
        hist = m.history if isinstance(m.history, dict) else {"fit": m.history}
        for stage, h in hist.items():
            assert len(h) >= 2 and h[-1] < h[0], (name, stage, h)


# -- the ensemble ---------------------------------------------------------------------------
def test_zero_shot_weights_equal_and_prediction_is_member_mean(ensemble, nb201) -> None:
    ds, _ = nb201
    tgt = ds.subset(list(range(48, 64)))
    r = ensemble.predict_with_uncertainty(tgt)
    w = ensemble.weights.numpy()
    np.testing.assert_allclose(w, 1.0 / len(w))
    members = np.stack(list(r["members"].values()))
    np.testing.assert_allclose(r["mean"], members.mean(0), atol=1e-12)
    np.testing.assert_allclose(r["std"], members.std(0), atol=1e-12)


def test_fine_tuned_weights_follow_out_of_fold_kendall_taus(ensemble, nb201) -> None:
    ds, y = nb201
    shots = ds.subset(list(range(40, 64)))
    tuned = ensemble.clone().fine_tune(shots, y[40:], progress=False)
    taus = tuned.taus.numpy()
    z = (y[40:] - y[40:].mean()) / y[40:].std()
    sv = _eff(ensemble, shots)  # what the ensemble reads (its graph view)
    oof = ensemble.clone()._out_of_fold(sv, z, epochs=None, seed=0)
    kept = tuned.training_info["fine_tune"][-1]["kept_zero_shot"]
    for name, m, row, tau in zip(ensemble.member_names, ensemble.members, oof, taus):
        # a member stays as it was when fine-tuning it does not rank the sample better out of fold
        zero = kendalltau(m.predict(sv), z).statistic
        tuned_tau = kendalltau(row, z).statistic
        assert (name in kept) == (zero >= tuned_tau)
        assert tau == pytest.approx(zero if name in kept else tuned_tau, abs=1e-9)
    # out of fold: a sample's own label never reaches its prediction
    z2 = z.copy()
    z2[3] += 5.0
    oof2 = ensemble.clone()._out_of_fold(sv, z2, epochs=None, seed=0)
    np.testing.assert_allclose(oof2[:, 3], oof[:, 3], atol=1e-6)
    assert not np.allclose(oof2, oof)
    temp = tuned.training_info["fine_tune"][-1]["temperature"]
    assert temp in (1.0, *tuned.temperatures)
    np.testing.assert_allclose(tuned.weights.numpy(), np.exp(taus / temp) / np.exp(taus / temp).sum(), rtol=1e-9)
    assert np.array_equal(np.argsort(tuned.weights.numpy(), kind="stable"), np.argsort(taus, kind="stable"))
    # predictions come back in label units; the original ensemble is untouched
    assert abs(float(np.mean(tuned.predict(shots))) - float(y[40:].mean())) < 3 * float(y[40:].std())
    np.testing.assert_allclose(ensemble.weights.numpy(), 1.0 / len(taus))


def test_fine_tuned_prediction_is_the_blend_of_members_and_target_models(ensemble, nb201) -> None:
    from napbench.zoo.gennape.blend import EmbeddingGP
    from napbench.zoo.wl import WLRidge

    ds, y = nb201
    shots, tgt = ds.subset(list(range(40, 64))), ds.subset(list(range(64)))
    tuned = ensemble.clone().fine_tune(shots, y[40:], progress=False)
    blend = tuned.training_info["blend"]
    assert blend["models"] == ["gp", "wl"] and sum(blend["weights"]) == pytest.approx(1.0)
    # rebuilt by hand: members standardised as their out-of-fold mix, target models as their leave-one-out values
    members = (tuned.member_predictions(tgt) - blend["loc"][0]) / blend["scale"][0]
    tv = _eff(tuned, tgt)  # the target models read the ensemble's graph view
    gp = (EmbeddingGP.from_state(blend["gp"]).predict(tuned.members[0].embed(tv)) - blend["loc"][1]) / blend["scale"][1]
    wl = (WLRidge.from_state(blend["wl"]).predict(tv) - blend["loc"][2]) / blend["scale"][2]
    bw = blend["weights"]
    z = bw[0] * tuned.weights.numpy() @ members + bw[1] * gp + bw[2] * wl
    a, b = tuned.out_map.numpy()
    r = tuned.predict_with_uncertainty(tgt)
    np.testing.assert_allclose(r["mean"], a + b * z, atol=1e-9)
    assert set(r["members"]) == {*tuned.member_names, "target:gp", "target:wl"}
    assert sum(r["weights"].values()) == pytest.approx(1.0)
    np.testing.assert_allclose(r["members"]["target:gp"], a + b * gp, atol=1e-9)
    assert (r["std"] >= 0).all() and np.ptp(r["std"]) > 0
    # the blend's out-of-sample values map to the sample's labels: mean and spread of the labels
    fitted = tuned.training_info["fine_tune"][-1]
    assert fitted["blend_loo_srcc"] >= fitted["out_of_fold_srcc"] - 1e-9  # the members alone are on the grid
    plain = ensemble.clone()
    plain.target_models = ()
    p = plain.fine_tune(shots, y[40:], progress=False)
    assert "blend" not in p.training_info and set(p.predict_with_uncertainty(tgt)["members"]) == set(p.member_names)
    a, b = p.out_map.numpy()
    np.testing.assert_allclose(p.predict(tgt), a + b * p.weights.numpy() @ p.member_predictions(tgt), atol=1e-9)


def test_save_load_identical_predictions_members_included(tmp_path: Path, ensemble, nb201) -> None:
    ds, y = nb201
    tuned = ensemble.clone().fine_tune(ds.subset(list(range(40, 64))), y[40:], progress=False)
    ck = tmp_path / "ck"
    tuned.save_pretrained(ck, card={"results": [{"dataset": "nb201", "setting": "test", "metrics": {"srcc": 0.5}}]})
    assert sorted(p.name for p in (ck / "members").iterdir()) == [
        "00-gennape-cl-fcm-t", "01-gennape-cl-t", "02-gennape-cl-pairwise", "03-gennape-cl-fcm-pairwise", "04-kgnn", "05-flops"]
    back = zoo.load(ck)
    assert back.member_names == tuned.member_names
    tgt = ds.subset(list(range(64)))
    np.testing.assert_array_equal(back.predict(tgt), tuned.predict(tgt))
    for a, b in zip(tuned.members, back.members):
        np.testing.assert_array_equal(a.predict(tgt), b.predict(tgt))
    # members that shared one encoder share it again after loading
    encs = {id(m.encoder) for m in back.members if hasattr(m, "encoder")}
    assert len(encs) == 1
    from huggingface_hub import ModelCard

    card = ModelCard.load(ck / "README.md")
    assert card.data.eval_results[0].metric_value == 0.5 and card.data.library_name == "napbench"
    # a single member loads alone, too
    member = zoo.load(ck / "members" / "00-gennape-cl-fcm-t")
    np.testing.assert_array_equal(member.predict(tgt), tuned.members[0].predict(tgt))


def test_checkpoint_records_vocabulary_size(ensemble) -> None:
    from napbench.conversion.vocab import OPS

    cfg = ensemble.members[0].checkpoint_config()
    assert cfg["num_ops"] == len(OPS) and cfg["ops"] == list(OPS)
    assert ensemble.members[0].encoder.in_dim == len(OPS) + 9


def test_registry_discovers_gennape_without_base_edits() -> None:
    names = zoo.list_predictors()
    for n in ("gennape", "gennape-bag", "gennape:cl", "gennape:cl+t", "gennape:cl+fcm+t", "gennape:cl+pairwise", "gennape:cl+fcm+pairwise"):
        assert n in names
        assert zoo.get_predictor(n).predictor_name == n
    import inspect

    import napbench.zoo._base as base

    assert "gennape" not in inspect.getsource(base) and "kgnn" not in inspect.getsource(base)


# -- predict CLI: every frontend ----------------------------------------------------------
FACTORY = '''
from torch import nn
def tiny():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
'''


def _models(tmp_path: Path) -> dict[str, list[str]]:
    import importlib.util

    factory = tmp_path / "tinynet.py"
    factory.write_text(FACTORY)
    spec = importlib.util.spec_from_file_location("tinynet", factory)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    onnx_path = tmp_path / "tiny.onnx"
    torch.onnx.export(mod.tiny().eval(), (torch.zeros(1, 3, 32, 32),), str(onnx_path), dynamo=False)
    import keras

    km = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, padding="same"), keras.layers.BatchNormalization(),
                           keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    keras_path = tmp_path / "tiny.keras"
    km.save(keras_path)
    return {"torch": [f"{factory}:tiny", "--input-shape", "3,32,32"], "onnx": [str(onnx_path)], "keras": [str(keras_path)]}


def test_predict_prints_prediction_interval_meaning_percentile(tmp_path: Path, home: Path, ensemble,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from napbench.cli import main

    ck = tmp_path / "ck"
    ensemble.save_pretrained(ck)
    for frontend, model in _models(tmp_path).items():
        assert main(["predict", str(ck), *model, "--root", str(home), "--reference-size", "30"]) == 0, frontend
        out = capsys.readouterr().out
        assert "prediction:" in out and "+-" in out and "interval:" in out, (frontend, out)
        assert "meaning:" in out and "z-score" in out
        assert "percentile:" in out and "among 30 nb201 architectures" in out
        pct = float(out.split("percentile:")[1].split()[0])
        assert 0.0 <= pct <= 100.0
        assert main(["predict", str(ck), *model, "--quiet"]) == 0
        assert np.isfinite(float(capsys.readouterr().out.strip()))


def test_zero_shot_members_enter_on_one_scale(ensemble, nb201) -> None:
    ds, _ = nb201
    train = ds.subset(list(range(48)))
    p = ensemble.member_predictions(train)
    _, first = np.unique(_eff(ensemble, train).column("graph_id").to_pylist(), return_index=True)
    p = p[:, first]  # a graph repeated in the call is one graph of its population
    for name, row in zip(ensemble.member_names, p):
        if "pairwise" in name:
            continue  # normal scores of ranks: unit spread by construction
        assert row.std() == pytest.approx(1.0, rel=1e-6), name  # one family: spread divided out exactly
    assert (ensemble.scales.numpy() > 0).all()


def test_batched_comparator_agrees_with_pair_logits() -> None:
    from napbench.zoo.gennape.heads import _BatchComparator, pair_logits

    rng = np.random.default_rng(3)
    x, u = rng.normal(size=(40, 6)), rng.dirichlet(np.ones(3), size=40)
    torch.manual_seed(0)
    model = ClusterMLP(3, 12, 16, 2)
    a, b = rng.integers(0, 40, size=200), rng.integers(0, 40, size=200)
    with torch.no_grad():
        ref = pair_logits(model, torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(u, dtype=torch.float32),
                          torch.as_tensor(a), torch.as_tensor(b)).numpy()
    keep = np.abs(ref) > 1e-5  # float32 round-off may flip exact ties
    assert (_BatchComparator(model, x, u).beats(a, b)[keep] == (ref > 0)[keep]).all()


# -- calibration ------------------------------------------------------------------------------
def _unlabelled(ds):
    """``ds`` with only the graph columns: calibrating on it cannot read a label."""
    from napbench.conversion.storage import GRAPH_COLUMNS
    from napbench.datasets import GraphDataset

    return GraphDataset("unlabelled", Path("unlabelled"), ds.table.select(GRAPH_COLUMNS), {"family": "unlabelled"})


def test_calibrated_predictions_do_not_depend_on_the_call(tmp_path: Path, ensemble, nb201) -> None:
    ds, _ = nb201
    assert ensemble.population_relative and "calibration" not in ensemble.training_info
    small, rows = ds.subset([3, 50, 61]), [3, 50, 61]
    before_big = ensemble.member_predictions(ds)
    # uncalibrated, a small call standardises on its own three graphs: another answer (the test can fail)
    assert not np.allclose(ensemble.predict(small), ensemble.predict(ds)[rows], atol=1e-3)
    cal = ensemble.clone().calibrate(_unlabelled(ds), seed=0)
    assert set(cal.training_info["calibration"]) == {"nb201"} and "calibration" not in ensemble.training_info
    big = cal.predict(ds)
    np.testing.assert_allclose(cal.predict(small), big[rows], atol=1e-6)
    np.testing.assert_allclose(cal.predict(ds.subset([50])), big[[50]], atol=1e-6)
    np.testing.assert_allclose(cal.predict(ds.subset([61, 3])), big[[61, 3]], atol=1e-6)
    # regression members give inside the calibration call what they gave there before calibrating
    after_big = cal.member_predictions(ds)
    for i, m in enumerate(cal.members):
        if m.predictor_name in ("gennape:cl+fcm+t", "gennape:cl+t", "kgnn", "flops"):
            np.testing.assert_allclose(after_big[i], before_big[i], atol=1e-6)
    # fine-tuning keeps the calibration; the checkpoint carries it
    tuned = cal.clone().fine_tune(ds.subset(list(range(40, 64))), nb201[1][40:], progress=False)
    np.testing.assert_allclose(tuned.predict(small), tuned.predict(ds)[rows], atol=1e-6)
    tuned.save_pretrained(tmp_path / "ck")
    back = zoo.load(tmp_path / "ck")
    np.testing.assert_allclose(back.predict(small), tuned.predict(ds)[rows], atol=1e-6)
    # fit starts over: the statistics it calibrated are gone with the PCA they were taken on
    member = cal.members[0].clone().fit(ds.subset(list(range(48))), nb201[1][:48], progress=False)
    assert member.calibration() == {}


def test_frozen_group_statistics_replace_the_calls_own() -> None:
    from napbench.zoo.gennape.predictors import standardise_by_group

    x = np.arange(12.0).reshape(6, 2)
    frozen = {"a": (np.array([1.0, 1.0]), np.array([2.0, 2.0]))}
    out = standardise_by_group(x, ["a"] * 3 + ["b"] * 3, min_size=3, fallback=(np.zeros(2), np.ones(2)), frozen=frozen)
    np.testing.assert_allclose(out[:3], (x[:3] - 1.0) / 2.0)
    np.testing.assert_allclose(out[3:], (x[3:] - x[3:].mean(0)) / x[3:].std(0))


def test_calibrate_needs_enough_graphs_of_each_family(ensemble, nb201) -> None:
    ds, _ = nb201
    with pytest.raises(InvalidArgumentError, match="min_family_size"):
        ensemble.clone().calibrate(ds.subset(list(range(5))))


def test_repeated_graphs_are_predicted_once_and_alike(ensemble, nb201) -> None:
    ds, _ = nb201
    rows = list(range(20))
    base = ensemble.predict(ds.subset(rows))
    twice = ensemble.predict(ds.subset(rows + rows[:7]))
    np.testing.assert_array_equal(twice[:20], base)
    np.testing.assert_array_equal(twice[20:], base[:7])


def test_members_predicted_in_threads_equal_members_predicted_one_by_one(ensemble, nb201) -> None:
    ds, _ = nb201
    rows = list(range(40))
    saved = ensemble.workers
    try:
        ensemble.workers = 1
        ensemble.cache.embeddings.clear()
        one = ensemble.predict_with_uncertainty(ds.subset(rows))
        ensemble.workers = 3
        ensemble.cache.embeddings.clear()
        many = ensemble.predict_with_uncertainty(ds.subset(rows))
    finally:
        ensemble.workers = saved
    for name in ensemble.member_names:
        np.testing.assert_array_equal(many["members"][name], one["members"][name])
    np.testing.assert_array_equal(many["mean"], one["mean"])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidArgumentError, match="workers"):
            ensemble.workers = bad
    assert ensemble.workers == saved


def test_fits_in_threads_equal_a_fit_alone(home: Path, nb201) -> None:
    # a threaded task runner fits several predictors in one process: seeded draws must not interleave
    from concurrent.futures import ThreadPoolExecutor

    ds, y = nb201
    train, test = ds.subset(list(range(32))), ds.subset(list(range(32, 48)))

    def fit_predict() -> np.ndarray:
        p = zoo.get_predictor("gennape:cl+t", root=str(home), **TINY)
        return p.fit(train, y[:32], seed=5, progress=False).predict(test)

    alone = fit_predict()
    with ThreadPoolExecutor(3) as pool:
        results = [f.result() for f in [pool.submit(fit_predict) for _ in range(3)]]
    for r in results:
        np.testing.assert_array_equal(r, alone)


def test_zero_shot_weights_per_member_or_per_independent_model(ensemble) -> None:
    np.testing.assert_allclose(ensemble.equal_weights("members"), np.full(6, 1 / 6))
    w = ensemble.equal_weights("encoders")  # four members on one encoder share one vote with kgnn and flops
    np.testing.assert_allclose(w, [1 / 12] * 4 + [1 / 3, 1 / 3])
    np.testing.assert_allclose(ensemble.weights.numpy(), ensemble.equal_weights())  # fit used the configured kind
    with pytest.raises(InvalidArgumentError, match="zero-shot weights 'votes'"):
        ensemble.equal_weights("votes")
    with pytest.raises(InvalidArgumentError, match="zero_shot_weights is 'votes'"):
        zoo.get_predictor("gennape", zero_shot_weights="votes")


def test_fine_tuning_can_leave_the_members_as_they_are(ensemble, nb201) -> None:
    ds, y = nb201
    shots, tgt = ds.subset(list(range(40, 64))), ds.subset(list(range(64)))
    p = ensemble.clone()
    p.fine_tune_members = False
    before = p.member_predictions(tgt)
    p.fine_tune(shots, y[40:], progress=False)
    np.testing.assert_array_equal(p.member_predictions(tgt), before)  # no member was trained
    np.testing.assert_allclose(p.weights.numpy(), ensemble.weights.numpy())
    info = p.training_info["fine_tune"][-1]
    assert info["members_fine_tuned"] is False and "blend" in p.training_info
    sv = _eff(p, shots)
    taus = [kendalltau(m.predict(sv), (y[40:] - y[40:].mean()) / y[40:].std()).statistic for m in p.members]
    np.testing.assert_allclose(info["taus"], np.round(taus, 4), atol=1e-4)
    # in label units, like the full fine-tuning
    assert abs(float(np.mean(p.predict(shots))) - float(y[40:].mean())) < 3 * float(y[40:].std())


def test_target_models_of_a_large_sample_are_fitted_on_a_seeded_subsample(ensemble, nb201, monkeypatch) -> None:
    from napbench.zoo.gennape import ensemble as E

    ds, y = nb201
    monkeypatch.setattr(E, "MAX_TARGET_SAMPLES", 12)
    shots = ds.subset(list(range(40, 64)))
    a = ensemble.clone()
    a.fine_tune_members = False
    a.fine_tune(shots, y[40:], seed=3, progress=False)
    b = ensemble.clone()
    b.fine_tune_members = False
    b.fine_tune(shots, y[40:], seed=3, progress=False)
    blend = a.training_info["blend"]
    assert len(blend["gp"]["x_train"]) == 12 and blend["wl"]["shape"][0] == 12
    assert blend == b.training_info["blend"]  # the same seed draws the same subsample


def test_ensemble_reads_effective_graphs_and_older_checkpoints_keep_theirs(tmp_path: Path, ensemble, nb201) -> None:
    import json

    from napbench.zoo._views import graph_view

    ds, _ = nb201
    assert ensemble.graph_view == "effective"
    tgt = ds.subset(list(range(64)))
    plain = ensemble.clone()
    plain.graph_view = "as_converted"
    view = graph_view(tgt, "effective", root=ensemble.root)
    np.testing.assert_array_equal(ensemble.member_predictions(tgt), plain.member_predictions(view))
    assert not np.array_equal(plain.member_predictions(tgt), plain.member_predictions(view))  # the view matters here
    ck = tmp_path / "ck"
    ensemble.save_pretrained(ck)
    assert zoo.load(ck).graph_view == "effective"
    cfg = json.loads((ck / "config.json").read_text())
    assert cfg["blend_bags"] == ensemble.blend_bags == 50 and zoo.load(ck).blend_bags == 50
    del cfg["graph_view"], cfg["blend_bags"]  # as saved before graph views and bagged blend weights
    (ck / "config.json").write_text(json.dumps(cfg))
    old = zoo.load(ck)
    assert old.graph_view == "as_converted" and old.blend_bags == 0  # fine-tunes as it did
    with pytest.raises(InvalidArgumentError, match="graph view"):
        zoo.get_predictor("gennape", graph_view="pruned")


def test_the_encoder_is_pretrained_on_the_view_it_is_given(home: Path, ensemble) -> None:
    from napbench.zoo._views import graph_view, zero_rows
    from napbench.zoo.gennape.predictors import pretraining_set

    assert ensemble.pretrain_view == "as_converted" == ensemble._first_gennape().pretrain_view  # the default
    ens = zoo.get_predictor("gennape", member_kwargs=TINY, pretrain_view="effective", root=str(home))
    assert {m.pretrain_view for m in ens._build() if hasattr(m, "pretrain_view")} == {"effective"}  # passed on
    member = zoo.get_predictor("gennape:cl+t", **TINY, pretrain_view="effective", root=str(home))
    member._ensure_pretrained(0, False)
    (seen,) = member.cache.datasets.values()
    raw = pretraining_set(["nb201"], 24, seed=0, root=str(home))
    assert len(zero_rows(raw)) > 0 and len(zero_rows(seen)) == 0  # it read them without their constant branches
    view = graph_view(raw, "effective", root=str(home))
    assert seen.table.column("graph_id").to_pylist() == view.table.column("graph_id").to_pylist()
    assert bool(member.pretrained)
    with pytest.raises(InvalidArgumentError, match="graph view"):
        zoo.get_predictor("gennape:cl+t", pretrain_view="pruned")
    with pytest.raises(InvalidArgumentError, match="graph view"):
        zoo.get_predictor("gennape", pretrain_view="pruned")


def test_predict_says_when_it_reads_the_effective_graph(tmp_path: Path, home: Path, ensemble,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from napbench.cli import main

    ck = tmp_path / "ck"
    ensemble.save_pretrained(ck)
    # NB-201's ResNet cell has two 'none' edges: its zeros are constant branches
    args = ["predict", str(ck), "napbench.examples:nb201_resnet_cell", "--input-shape", "3,32,32", "--root", str(home),
            "--reference-size", "30"]
    assert main(args) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("graph:"))
    converted, effective = (int(part.split(" nodes")[0].replace(",", "").split()[-1]) for part in line.split("effective graph:"))
    assert effective < converted

# -- gennape-bag: a bag of GENNAPE ensembles fitted with consecutive seeds --------------------
@pytest.fixture(scope="module")
def bag(home: Path, nb201):  # noqa: ANN201 - a fitted GennapeBag
    ds, y = nb201
    p = zoo.get_predictor("gennape-bag", fits=2, root=str(home),
                          ensemble_kwargs={"member_kwargs": TINY, "kgnn_epochs": 2, "folds": 2})
    return p.fit(ds.subset(list(range(48))), y[:48], progress=False)


def test_a_bag_predicts_the_mean_of_its_fits_each_fitted_with_its_own_seed(bag, nb201) -> None:
    ds, _ = nb201
    assert [f.training_info["fit"]["seed"] for f in bag.fits] == [0, 1]
    tgt = ds.subset(list(range(48, 64)))
    each = np.stack([f.predict(tgt) for f in bag.fits])
    assert not np.allclose(each[0], each[1])  # two seeds, two fits
    np.testing.assert_allclose(bag.predict(tgt), each.mean(0), rtol=1e-12, atol=1e-12)
    r = bag.predict_with_uncertainty(tgt)
    assert list(r["members"]) == ["fit:0", "fit:1"]
    np.testing.assert_allclose(r["std"], np.abs(each[0] - each[1]) / 2, rtol=1e-9, atol=1e-12)


def test_bag_checkpoints_round_trip_and_fine_tuning_blends_without_touching_the_fits(
        tmp_path: Path, bag, nb201) -> None:
    ds, y = nb201
    tgt, rest = ds.subset(list(range(20))), ds.subset(list(range(20, 64)))
    bag.save_pretrained(tmp_path / "zero")
    loaded = zoo.load(tmp_path / "zero")
    assert isinstance(loaded, GennapeBag) and len(loaded.fits) == 2
    np.testing.assert_array_equal(loaded.predict(rest), bag.predict(rest))
    before = np.stack([f.predict(rest) for f in loaded.fits])
    tuned = loaded.clone().fine_tune(tgt, y[:20], seed=0)
    np.testing.assert_array_equal(np.stack([f.predict(rest) for f in tuned.fits]), before)  # the fits as they were
    r = tuned.predict_with_uncertainty(rest)
    assert list(r["members"]) == ["fit:0", "fit:1", "target:gp", "target:wl"]
    assert sum(r["weights"].values()) == pytest.approx(1.0)
    parts = np.stack(list(r["members"].values()))
    w = np.array(list(r["weights"].values()))
    np.testing.assert_allclose(r["mean"], w @ parts, rtol=1e-9)
    assert abs(float(np.mean(tuned.predict(tgt))) - float(np.mean(y[:20]))) < 3 * float(np.std(y[:20]))  # label units
    tuned.save_pretrained(tmp_path / "tuned")
    np.testing.assert_array_equal(zoo.load(tmp_path / "tuned").predict(rest), tuned.predict(rest))


def test_a_fine_tuned_bag_averages_one_gp_per_fit(bag, nb201) -> None:
    from napbench.zoo.gennape.blend import EmbeddingGP

    ds, y = nb201
    tgt, rest = ds.subset(list(range(20))), ds.subset(list(range(20, 64)))
    tuned = bag.clone().fine_tune(tgt, y[:20], seed=0)
    gps = tuned.training_info["blend"]["gp"]
    assert len(gps) == len(tuned.fits) == 2
    z = (y[:20] - y[:20].mean()) / y[:20].std()
    view, later = tuned.fits[0]._view(tgt), tuned.fits[0]._view(rest)
    by_hand = []
    for f, g in zip(tuned.fits, gps):  # each fit's GP on its own encoder, standardised by its own LOO values
        gp = EmbeddingGP().fit(f._first_gennape().embed(view), z, seed=0)
        assert g["loc"] == pytest.approx(gp.loo.mean()) and g["scale"] == pytest.approx(gp.loo.std())
        by_hand.append((gp.predict(f._first_gennape().embed(later)) - g["loc"]) / g["scale"])
    part = tuned.predict_with_uncertainty(rest)["members"]["target:gp"]  # the averaged part, mapped to label units
    assert np.corrcoef(part, np.mean(by_hand, axis=0))[0, 1] == pytest.approx(1.0, abs=1e-9)
    assert np.corrcoef(part, by_hand[0])[0, 1] < 1 - 1e-6  # not the first fit's GP alone


def test_a_bag_is_assembled_from_ensembles_fitted_apart(bag, nb201) -> None:
    ds, _ = nb201
    tgt = ds.subset(list(range(48, 64)))
    again = GennapeBag.from_fits(bag.fits)
    np.testing.assert_array_equal(again.predict(tgt), bag.predict(tgt))
    with pytest.raises(InvalidArgumentError, match="not fitted gennape ensembles"):
        GennapeBag.from_fits([GennapeEnsemble()])
    with pytest.raises(InvalidArgumentError, match="fits"):
        GennapeBag(fits=0)
    with pytest.raises(InvalidArgumentError, match="graph view"):
        GennapeBag(ensemble_kwargs={"graph_view": "pruned"})


def test_predict_prints_a_bag_prediction_with_its_interval(tmp_path: Path, home: Path, bag,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from napbench.cli import main

    bag.save_pretrained(tmp_path / "ck")
    args = ["predict", str(tmp_path / "ck"), "napbench.examples:nb201_resnet_cell", "--input-shape", "3,32,32",
            "--root", str(home), "--reference-size", "30"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("prediction:") and "interval:" in out and "fit:1" in out
