"""HW-NAS-Bench columns, the latency predictor and onnxruntime latency measurement."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from scipy.stats import spearmanr
from search_toy import toy_graph

from napbench.cli import main
from napbench.errors import ConversionError, InvalidArgumentError, NoLabelsError
from napbench.search.latency import HW_DEVICES, hw_columns, latency_column, measure_latency
from napbench.zoo import get_predictor, load


def _tiny_onnx() -> bytes:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.randn(1, 3, 8, 8),), buf, dynamo=False)
    return buf.getvalue()


def test_hw_columns_match_the_table(mirror: str) -> None:
    # first data row of hw_cifar10.csv: NASLib (4, 3, 3, 0, 0, 0) -> edge GPU 5.807..., Pixel 3 3.60585 ms
    from napbench.datasets.families.nb201 import naslib_to_arch

    arch = naslib_to_arch((4, 3, 3, 0, 0, 0))
    cols = hw_columns("nb201", [arch, "not-an-arch"], ["hw_edgegpu_latency", "hw_pixel3_latency"], mirror=mirror)
    assert cols["hw_edgegpu_latency"][0] == pytest.approx(5.807418537139893)
    assert cols["hw_pixel3_latency"][0] == pytest.approx(3.60585)
    assert np.isnan(cols["hw_edgegpu_latency"][1])
    assert latency_column("raspi4") == "hw_raspi4_latency" and len(HW_DEVICES) == 6
    with pytest.raises(NoLabelsError, match="nb201"):
        hw_columns("nb101", [arch], ["hw_edgegpu_latency"], mirror=mirror)
    with pytest.raises(InvalidArgumentError, match="hw_nope"):
        hw_columns("nb201", [arch], ["hw_nope"], mirror=mirror)


def test_nb201_labels_carry_hw_columns(mirror: str) -> None:
    from napbench.datasets import get_family

    labels = get_family("nb201").load_labels(mirror=mirror)
    for d in HW_DEVICES:
        assert labels[latency_column(d)].dtype.is_float()
    assert labels["hw_edgegpu_latency"].null_count() == 0
    assert 0 < labels["hw_edgetpu_latency"].null_count() < labels.height  # the -1 sentinels are nulls, nothing else
    assert labels["hw_edgetpu_latency"].min() > 0


def test_latency_predictor_learns_an_additive_cost(tmp_path) -> None:
    rng = np.random.default_rng(0)
    specs = [(int(rng.choice([4, 8, 16, 32])), int(rng.choice([4, 8, 16, 32])), int(rng.choice([1, 3, 5]))) for _ in range(60)]
    graphs = [toy_graph(*s) for s in specs]
    cost = np.array([0.05 * len(g.nodes) + 2e-6 * g.flops + 1e-5 * sum(np.prod(n.output_shape) for n in g.nodes) for g in graphs])
    p = get_predictor("latency", alpha=1e-3).fit(graphs[:40], cost[:40])
    rho = spearmanr(p.predict(graphs[40:]), cost[40:]).statistic
    assert rho > 0.95
    p.save_pretrained(tmp_path / "lat")
    q = load(tmp_path / "lat")
    assert np.allclose(q.predict(graphs[40:]), p.predict(graphs[40:]))
    with pytest.raises(InvalidArgumentError, match="not fitted"):
        get_predictor("latency").predict(graphs[:2])


def test_measure_latency_of_a_runnable_model(tmp_path) -> None:
    path = tmp_path / "tiny.onnx"
    path.write_bytes(_tiny_onnx())
    m = measure_latency(path, warmup=2, repeats=7)
    assert m.repeats == 7 and m.input_shape == (3, 8, 8)
    assert 0 < m.min_ms <= m.median_ms <= max(m.p90_ms, m.median_ms) and m.iqr_ms >= 0
    assert main(["latency", str(path), "--warmup", "1", "--repeats", "3", "--json", str(tmp_path / "m.json")]) == 0
    assert (tmp_path / "m.json").is_file()


def test_latency_refuses_an_unrunnable_model(tmp_path, capsys) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    bad = helper.make_model(helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], domain="napbench.bogus")], "g", [x], [y]))
    path = tmp_path / "bad.onnx"
    path.write_bytes(bad.SerializeToString())
    with pytest.raises(ConversionError, match="onnxruntime"):
        measure_latency(path)
    assert main(["latency", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("napbench: error: model") and "bad.onnx" in err[0]
    # a missing file and a file that is not ONNX at all: one line each, exit 2
    assert main(["latency", str(tmp_path / "missing.onnx")]) == 2
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["latency", str(tmp_path / "junk.onnx")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
    assert onnx  # imported for the helper
