"""Zero-cost proxies on any computation graph (CG executor) and natural-image inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napbench.cli import main
from napbench.conversion import from_torch
from napbench.errors import InvalidArgumentError, UnknownNameError
from napbench.zoo import get_predictor
from napbench.zoo._images import IMAGE_FILES, image_pool, natural_images
from napbench.zoo.proxies import compute_proxies, graph_network, make_inputs


def _refnets():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "conversion" / "refnets.py"
    if "refnets" in sys.modules:
        return sys.modules["refnets"]
    spec = importlib.util.spec_from_file_location("refnets", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["refnets"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


refnets = _refnets()


def _neighbour_corr(x: torch.Tensor) -> float:
    a, b = x[..., :, :-1].reshape(-1), x[..., :, 1:].reshape(-1)
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_natural_images_are_seeded_normalised_photographs() -> None:
    x = natural_images((3, 32, 32), 64, seed=0)
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x, natural_images((3, 32, 32), 64, seed=0))
    assert not torch.equal(x, natural_images((3, 32, 32), 64, seed=1))
    assert abs(float(x.mean())) < 0.5 and 0.5 < float(x.std()) < 1.5
    # photographs are spatially smooth; Gaussian pixels are not
    assert _neighbour_corr(x) > 0.7
    assert abs(_neighbour_corr(torch.randn(64, 3, 32, 32))) < 0.05
    images, mean, std = image_pool()
    assert len(images) == len(IMAGE_FILES) and mean.shape == std.shape == (3,)


@pytest.mark.parametrize("shape", [(1, 28, 28), (5, 16, 24), (3, 7, 7)])
def test_natural_images_any_input_shape(shape: tuple[int, int, int]) -> None:
    x = natural_images(shape, 4, seed=2)
    assert x.shape == (4, *shape) and torch.isfinite(x).all()


def test_make_inputs_sources() -> None:
    xg, _ = make_inputs((3, 8, 8), 10, batch_size=4, seed=0)
    xi, _ = make_inputs((3, 8, 8), 10, batch_size=4, seed=0, source="images")
    assert xg.shape == xi.shape and not torch.equal(xg, xi)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(xg, torch.randn((4, 3, 8, 8), generator=gen))  # the Gaussian stream is unchanged
    with pytest.raises(UnknownNameError, match="expected one of: gaussian, images"):
        make_inputs((3, 8, 8), 10, source="cifar10")


def test_graph_network_scores_any_graph() -> None:
    g = from_torch(refnets.torch_residual(), refnets.INPUT_SHAPE_CHW)
    net, shape, classes = graph_network(g, seed=0)
    assert shape == (3, 32, 32) and classes == 10
    vals = compute_proxies(["naswot", "synflow", "jacob_cov"], net, shape, classes, batch_size=8, inputs="images")
    assert all(np.isfinite(v) for v in vals.values())
    seq = from_torch(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4), torch.nn.ReLU()), (3, 2, 2))
    graph_network(seq)  # (C, H, W) in, (4,) out: fine
    with pytest.raises(InvalidArgumentError, match=r"expected one \(C, H, W\) input"):
        graph_network(from_torch(torch.nn.Linear(12, 4), (12,)))


def test_zero_cost_predictor_runs_graphs_without_family_through_the_executor() -> None:
    graphs = [from_torch(getattr(refnets, f"torch_{n}")(), refnets.INPUT_SHAPE_CHW) for n in ("conv_bn_relu", "residual", "inception")]
    p = get_predictor("zc:naswot", batch_size=8)
    s = p.predict(graphs)
    assert s.shape == (3,) and np.isfinite(s).all()
    assert np.array_equal(s, get_predictor("zc:naswot", batch_size=8).predict(graphs))  # seeded
    with pytest.raises(InvalidArgumentError, match="network='builder'"):
        get_predictor("zc:naswot", network="builder").predict(graphs)
    with pytest.raises(UnknownNameError, match="expected one of: auto, builder, executor"):
        get_predictor("zc:naswot", network="onnxruntime")


def test_zero_cost_predictor_executor_on_a_family_graph() -> None:
    from napbench.datasets import get_family

    fam = get_family("nb201")
    graphs = [fam.build_cg(a) for a in fam.sample(3, seed=0)]
    s = get_predictor("zc:synflow", batch_size=4, network="executor").predict(graphs)
    b = get_predictor("zc:synflow", batch_size=4, network="builder").predict(graphs)
    assert np.isfinite(s).all() and np.isfinite(b).all()
    # different random weights (the executor's vs the builder's), same architecture: same ranking here
    assert list(np.argsort(s)) == list(np.argsort(b))


def test_cli_predict_zero_cost_on_an_onnx_model(tmp_path, capsys) -> None:
    path = tmp_path / "res.onnx"
    torch.onnx.export(refnets.torch_residual().eval(), torch.zeros(1, 3, 32, 32), str(path), dynamo=False)
    assert main(["predict", "zc:naswot", str(path), "--quiet"]) == 0
    value = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.isfinite(value)
    assert main(["predict", "zc:nonexistent", str(path)]) == 2


@pytest.mark.tf
def test_cli_predict_zero_cost_on_a_keras_model(tmp_path, capsys) -> None:
    pytest.importorskip("keras")
    path = tmp_path / "res.keras"
    refnets.keras_residual().save(path)
    assert main(["predict", "zc:synflow", str(path), "--quiet"]) == 0
    assert np.isfinite(float(capsys.readouterr().out.strip().splitlines()[-1]))


def test_auto_inputs_give_each_proxy_its_measured_source() -> None:
    from napbench.zoo.proxies import AUTO_INPUTS, input_source

    g = from_torch(refnets.torch_residual(), refnets.INPUT_SHAPE_CHW)
    net, shape, classes = graph_network(g, seed=0)
    names = ["naswot", "grad_norm"]
    assert input_source("naswot", "auto") == AUTO_INPUTS["naswot"] == "images"
    assert input_source("grad_norm", "auto") == "gaussian" and input_source("naswot", "gaussian") == "gaussian"
    auto = compute_proxies(names, net, shape, classes, batch_size=8, inputs="auto")
    assert auto["naswot"] == compute_proxies(["naswot"], net, shape, classes, batch_size=8, inputs="images")["naswot"]
    assert auto["grad_norm"] == compute_proxies(["grad_norm"], net, shape, classes, batch_size=8)["grad_norm"]
    assert auto["naswot"] != compute_proxies(["naswot"], net, shape, classes, batch_size=8)["naswot"]
    assert get_predictor("zc:naswot").inputs == "auto"  # the zero-cost predictors' default
    with pytest.raises(UnknownNameError, match="expected one of: auto, gaussian, images"):
        compute_proxies(names, net, shape, classes, inputs="cifar10")
