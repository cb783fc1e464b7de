"""The pipeline trains GENNAPE on the small budget of ``pipeline.options``; its Hub export loads back."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from _flowutil import write_params

from napbench.config import load_config
from napbench.errors import ConfigError

#: a budget small enough for a unit test (the pipeline's own is in params.yaml)
MEMBER_KWARGS = {"pretrain_families": ["nb201"], "pretrain_per_family": 24, "pretrain_epochs": 1, "batch_size": 12,
                 "epochs": 4, "grid_epochs": 1, "clusters": [2], "fuzziness": [2.0], "pairs_per_epoch": 200,
                 "fine_tune_epochs": 10}


def test_gennape_trained_with_pipeline_options_exports_and_round_trips(tmp_path: Path, mirror: str) -> None:
    import napbench.datasets as nd
    from napbench import hub
    from napbench.evaluation import train
    from napbench.flows.train import checkpoint_dir, train_params
    from napbench.zoo import load

    root = tmp_path / "data"
    nd.build("nb201", root, mirror=mirror, limit=60, workers=1, progress=False)
    p = write_params(
        tmp_path / "params.yaml",
        build={"families": ["nb201"], "root": str(root)},
        train={"sources": ["nb201"], "epochs": 2, "max_train": 60, "val_frac": 0.2},
        pipeline={"predictors": ["kgnn", "gennape"], "checkpoints": str(tmp_path / "ckpt"),
                  "options": {"gennape": {"max_train": 50, "epochs": 0,
                                          "kwargs": {"kgnn_epochs": 1, "member_kwargs": MEMBER_KWARGS}}}},
    )
    cfg = load_config(p)
    assert train_params(cfg, "kgnn").max_train == 60 and train_params(cfg, "kgnn").kwargs == {}
    tp = train_params(cfg, "gennape")
    assert (tp.max_train, tp.epochs, tp.sources) == (50, None, ("nb201",))
    res = train(dataclasses.replace(tp, out=str(checkpoint_dir(cfg, "gennape")), root=str(root)), progress=False)
    assert res.path == tmp_path / "ckpt" / "gennape-nb201" and res.n_train == 40  # 50 sampled, 20% held out
    config = json.loads((res.path / "config.json").read_text())
    assert config["predictor"] == "gennape" and config["member_kwargs"] == MEMBER_KWARGS and config["kgnn_epochs"] == 1
    repo = hub.export_checkpoint(res.path, tmp_path / "hub" / "models" / "napbench" / "gennape-nb201")
    card = (repo / "README.md").read_text()
    assert "validation nb201 (n=10)" in card and "srcc" in card  # the held-out metrics, in the model card
    ds = nd.load("nb201", root, progress=False)
    want = res.predictor.predict(ds)
    np.testing.assert_array_equal(load(repo).predict(ds), want)
    assert np.ptp(want) > 0


@pytest.mark.parametrize(("options", "match"), [
    ({"gennape": {"max_train": -1}}, "max_train is -1"),
    ({"gennape": {"sources": "nb201"}}, "sources is 'nb201'"),
    ({"gennape": {"epoch": 3}}, "expected a mapping with keys among"),
    ({"gennape": {"kwargs": [1]}}, "kwargs is \\[1\\]"),
    ([1], "expected a mapping predictor -> options"),
])
def test_bad_pipeline_options_fail_with_one_line(tmp_path: Path, options: object, match: str) -> None:
    p = write_params(tmp_path / "params.yaml", pipeline={"options": options})
    with pytest.raises(ConfigError, match=match) as ei:
        load_config(p)
    assert "\n" not in str(ei.value)
