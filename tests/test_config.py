"""napbench.config: params.yaml read once into typed dataclasses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from napbench.config import Config, SourceSpec, TrainParams, load_config, read_params
from napbench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_project_params_file_loads_into_every_section() -> None:
    cfg = load_config(ROOT / "params.yaml")
    assert isinstance(cfg, Config) and cfg.path == str(ROOT / "params.yaml")
    assert cfg.build.limit is None and "nb201" in cfg.build.families and cfg.build.root == "data/datasets"
    assert cfg.refresh.source("nb201") == SourceSpec() and cfg.refresh.cron
    assert cfg.pipeline.predictors == ("kgnn", "flops", "gennape") and cfg.evaluate.shots == 50
    gennape = cfg.pipeline.train_params(cfg.train, "gennape")  # the small budget of `make run`
    assert gennape.predictor == "gennape" and gennape.max_train and gennape.kwargs["member_kwargs"]["pretrain_families"]
    assert cfg.pipeline.train_params(cfg.train, "kgnn") == dataclasses.replace(cfg.train, predictor="kgnn")
    assert isinstance(cfg.train.sources, tuple)


def test_defaults_when_absent_and_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config() == Config()
    p = tmp_path / "p.yaml"
    p.write_text("train:\n  epochs: 0\n  sources: [nb101, nb201]\n")
    tp = read_params(p, "train", TrainParams)
    assert tp.epochs is None and tp.sources == ("nb101", "nb201")


def test_sources_forms(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    sha = "a" * 64
    p.write_text(f"refresh:\n  sources:\n    nb201: mirror\n    nb101: https://h/x/\n    nb301: {{url: 'https://h/', sha256: {{t.csv: {sha}}}}}\n"
                 "    hiaml: /some/folder\n")
    src = load_config(p).refresh.sources
    assert src["nb201"] == SourceSpec() and src["nb101"].url == "https://h/x/" and src["nb101"].kind == "url"
    assert src["nb301"].sha256 == {"t.csv": sha} and src["hiaml"].mirror == "/some/folder"


@pytest.mark.parametrize(("text", "match"), [
    ("refresh:\n  sources:\n    nb201: {url: 'ftp://x/'}\n", "not HTTP"),
    ("refresh:\n  sources:\n    nb201: {url: 'https://x/', sha256: {a: xyz}}\n", "64-digit"),
    ("refresh:\n  sources:\n    nb201: {url: 'https://x/', mirror: /m}\n", "both mirror"),
    ("refresh:\n  sources:\n    nb201: {where: x}\n", "expected mirror, url, sha256"),
    ("train: [1, 2]\n", "expected a mapping"),
    ("train: {epochs: [\n", "not valid YAML"),
])
def test_bad_params_fail_with_one_line(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as ei:
        load_config(p)
    assert "\n" not in str(ei.value)


def test_unknown_keys_warn(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("train:\n  epoch: 3\n")
    with pytest.warns(UserWarning, match="ignoring unknown train: keys \\['epoch'\\]"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_train_options_give_a_predictor_its_own_defaults(tmp_path) -> None:
    from napbench.config import TrainParams, read_params

    p = tmp_path / "params.yaml"
    p.write_text("train:\n  predictor: kgnn\n  sources: [nb201]\n  max_train: 100\n"
                 "  options:\n    gennape: {sources: [nb101, nb301], max_train: 0, kwargs: {kgnn_epochs: 2}}\n")
    tp = read_params(p, "train", TrainParams)
    assert tp.for_predictor("kgnn") == tp
    g = tp.for_predictor("gennape")
    assert (g.predictor, g.sources, g.max_train, dict(g.kwargs)) == ("gennape", ("nb101", "nb301"), None, {"kgnn_epochs": 2})
    assert tp.for_predictor("flops").sources == ("nb201",) and tp.for_predictor("flops").predictor == "flops"


def test_train_options_must_be_a_mapping(tmp_path) -> None:
    import pytest

    from napbench.config import TrainParams, read_params
    from napbench.errors import ConfigError

    p = tmp_path / "params.yaml"
    p.write_text("train:\n  options: [gennape]\n")
    with pytest.raises(ConfigError, match="train.options"):
        read_params(p, "train", TrainParams)
