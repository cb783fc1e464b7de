"""Reference networks with attention and channels-last blocks (token_nets.py) across frontends.

For each network: ``from_torch`` counts exactly ``sum(p.numel())`` parameters and the
multiply-adds of torch's ``FlopCounterMode`` (halved), and the ONNX export (TorchScript
exporter, constant folding off so learned tensors stay initializers) gives the same
canonical hash, parameters and multiply-adds. Parameters are randomised first: exporters merge
initializers that hold identical values (two layer scales both initialised to 1e-6).
"""

from __future__ import annotations

import pytest
import torch
from onnx_export import torch_to_onnx
from token_nets import INPUT_SHAPE, KERAS, TOKEN_NETS, torch_macs, torch_net, torch_params

from napbench.conversion import CompGraph, from_onnx, from_torch


def _randomized(name: str) -> torch.nn.Module:
    m = torch_net(name)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
    return m


@pytest.fixture(scope="module")
def graphs() -> dict[str, tuple[torch.nn.Module, CompGraph]]:
    out = {}
    for name in TOKEN_NETS:
        m = _randomized(name)
        out[name] = (m, from_torch(m, INPUT_SHAPE))
    return out


@pytest.mark.parametrize("name", TOKEN_NETS)
def test_torch_counts_are_exact(name: str, graphs: dict) -> None:
    m, g = graphs[name]
    assert g.params == torch_params(m)
    assert g.flops == torch_macs(m)
    assert "unknown" not in g.op_counts()


@pytest.mark.parametrize("name", TOKEN_NETS)
def test_onnx_export_agrees(name: str, graphs: dict) -> None:
    m, g = graphs[name]
    o = from_onnx(torch_to_onnx(m, INPUT_SHAPE, keep_bn=True))
    assert (o.params, o.flops) == (g.params, g.flops)
    assert o.canonical_hash == g.canonical_hash


def test_attention_is_primitive_nodes(graphs: dict) -> None:
    """Attention is matmul -> softmax -> matmul whether written by hand, with SDPA or nn.MultiheadAttention."""
    for name in ("vit", "swin", "mobilevit", "se_hybrid"):
        ops = [n.op for n in graphs[name][1].nodes]
        assert ops.count("matmul") == 2 * ops.count("softmax") > 0, name
        assert "scale" not in ops


@pytest.mark.tf
@pytest.mark.parametrize("name", sorted(KERAS))
def test_keras_twin_agrees(name: str, graphs: dict) -> None:
    pytest.importorskip("keras")
    from napbench.conversion import from_keras

    model = KERAS[name]()
    k = from_keras(model)
    assert k.canonical_hash == graphs[name][1].canonical_hash
    assert (k.params, k.flops) == (graphs[name][1].params, graphs[name][1].flops)
    assert k.param_count(include_buffers=True) == model.count_params()


_TF2ONNX_GAPS = {  # measured: what differs in the export
    "swin": "tf2onnx folds the gather of each relative-position table into a (heads, N, N) initializer and exports the "
            "shift mask as one: ONNX cannot tell them from learned tensors (params 9,882, not 8,030; MACs exact)",
}


@pytest.mark.tf
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.xfail(reason=_TF2ONNX_GAPS[n], strict=True)) if n in _TF2ONNX_GAPS else n
             for n in sorted(KERAS)],
)
def test_keras_twin_through_tf2onnx(name: str, graphs: dict) -> None:
    """Keras -> ONNX (tf2onnx, one node group per layer) -> ``from_onnx`` gives the torch twin's graph: exact GELU
    (``Erfc``), layer norm as moments arithmetic and Dense as Tensordot are read back as their layers."""
    pytest.importorskip("tf2onnx")
    from onnx_export import keras_to_onnx, randomize_keras

    o = from_onnx(keras_to_onnx(randomize_keras(KERAS[name]()), faithful=True))
    assert (o.params, o.flops) == (graphs[name][1].params, graphs[name][1].flops)
    assert o.canonical_hash == graphs[name][1].canonical_hash
