"""The ONNX frontend: loading and error paths, unknown ops, BN folding, layouts, exporter idioms."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper
from onnx_export import randomize_torch, torch_to_onnx
from refnets import refnet

from napbench.conversion import convert, from_onnx, from_torch
from napbench.conversion.onnx_frontend import BatchNormFoldedWarning
from napbench.errors import ConversionError, InvalidGraphError, UnsupportedOpError
from napbench.examples import mobilenet_v2

pytestmark = pytest.mark.filterwarnings("ignore::napbench.conversion.onnx_frontend.BatchNormFoldedWarning")


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _model(nodes: list[onnx.NodeProto], inits: list[TensorProto], in_shape: list, out_shape: list | None = None,
           opset: int = 17, producer: str = "test") -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=producer)
    m.ir_version = 8
    return m


def _w(name: str, *shape: int) -> TensorProto:
    return numpy_helper.from_array(np.random.default_rng(0).standard_normal(shape).astype(np.float32), name)


@pytest.fixture(scope="module")
def resnetish_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    m = refnet("residual")[0]()
    return _save(torch_to_onnx(m, (3, 32, 32)), tmp_path_factory.mktemp("onnx") / "residual.onnx")


# -- loading and errors -----------------------------------------------------------------------
def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_path_str_bytes_proto_and_registry_agree(resnetish_onnx: Path) -> None:
    ref = from_onnx(resnetish_onnx)
    for src in (str(resnetish_onnx), resnetish_onnx.read_bytes(), onnx.load(str(resnetish_onnx))):
        assert from_onnx(src).canonical_hash == ref.canonical_hash
    assert convert(str(resnetish_onnx)).canonical_hash == ref.canonical_hash
    assert ref.meta["frontend"] == "onnx" and ref.meta["input_shape"] == [3, 32, 32]
    assert from_onnx(resnetish_onnx, meta={"arch": "r"}).meta["arch"] == "r"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConversionError) as exc:
        from_onnx(tmp_path / "nope.onnx")
    assert "not found" in _one_line(exc)


def test_truncated_file(tmp_path: Path, resnetish_onnx: Path) -> None:
    data = resnetish_onnx.read_bytes()
    bad = tmp_path / "half.onnx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError) as exc:
        from_onnx(bad)
    assert "is not a valid ONNX model" in _one_line(exc) and "expected" in str(exc.value)


@pytest.mark.parametrize("content", [np.random.default_rng(1).bytes(4096), b"hello, I am a text file\n", b""])
def test_garbage_file(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(ConversionError) as exc:
        from_onnx(bad)
    assert "is not a valid ONNX model" in _one_line(exc)


def test_wrong_type() -> None:
    with pytest.raises(ConversionError, match="expected a path to an .onnx file or an onnx.ModelProto"):
        from_onnx(42)


@pytest.mark.parametrize("op", ["Einsum", "NonZero"])
def test_unsupported_op_raises_or_is_kept(op: str) -> None:
    if op == "Einsum":
        node = helper.make_node("Einsum", ["r", "r"], ["y"], equation="bchw,bchw->bchw")
    else:
        node = helper.make_node("NonZero", ["r"], ["y"])
    m = _model([helper.make_node("Relu", ["x"], ["r"]), node], [], [1, 3, 4, 4])
    with pytest.raises(UnsupportedOpError) as exc:
        from_onnx(m)
    assert f"onnx op '{op}' is not in the napbench op vocabulary" in _one_line(exc) and "allow_unknown=True" in str(exc.value)
    g = from_onnx(m, allow_unknown=True)
    assert [n.op for n in g.nodes] == ["input", "relu", "unknown"] and g.nodes[2].detail == op


def test_two_inputs_rejected() -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    with pytest.raises(ConversionError, match="2 graph inputs.*expected exactly one input"):
        from_onnx(helper.make_model(graph))


def test_symbolic_batch_ok_symbolic_spatial_rejected(tmp_path: Path) -> None:
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.zeros(2, 3, 8, 8),), buf, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
    with pytest.warns(BatchNormFoldedWarning) as rec:  # convs with biases, no BN: looks folded
        g = from_onnx(buf.getvalue())
    assert rec[0].filename == __file__  # attributed to the caller, not to napbench
    assert g.canonical_hash == from_torch(m, (3, 8, 8)).canonical_hash
    conv = _model([helper.make_node("Relu", ["x"], ["y"])], [], ["n", 3, "h", 8])
    with pytest.raises(ConversionError, match="dimension 2 is symbolic.*only the batch"):
        from_onnx(conv)


# -- BatchNorm folding ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["conv_bn_relu", "mbconv_se"])
def test_bn_kept_export_equals_torch(name: str) -> None:
    build, _, shape = refnet(name)
    m = build()
    with warnings.catch_warnings():
        warnings.simplefilter("error", BatchNormFoldedWarning)
        g = from_onnx(torch_to_onnx(m, shape, keep_bn=True))
    assert g.canonical_hash == from_torch(m, shape).canonical_hash
    assert g.meta["bn_folded"] is False and not g.is_bn_folded


def test_training_mode_export_keeps_bn() -> None:
    build, _, shape = refnet("mbconv_se")
    m = build()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m.eval(), (torch.zeros(1, *shape),), buf, dynamo=False, training=torch.onnx.TrainingMode.TRAINING)
    assert from_onnx(buf.getvalue()).canonical_hash == from_torch(m, shape).canonical_hash


def test_eval_export_is_detected_as_folded() -> None:
    m = mobilenet_v2(num_classes=10)
    with pytest.warns(BatchNormFoldedWarning, match=r"bn_folded\(\)"):
        g = from_onnx(torch_to_onnx(m, (3, 32, 32), keep_bn=False))
    gt = from_torch(m, (3, 32, 32))
    assert g.meta["bn_folded"] is True and g.op_counts().get("bn", 0) == 0
    assert g.canonical_hash != gt.canonical_hash
    assert g.bn_folded().canonical_hash == gt.bn_folded().canonical_hash
    assert g.flops == gt.flops


def test_dynamo_exporter() -> None:
    """torch.onnx.export(dynamo=True) (onnxscript): BN folded, ReduceMean/Reshape plumbing, same graph up to folding."""
    pytest.importorskip("onnxscript")
    build, _, shape = refnet("mbconv_se")
    m = randomize_torch(build())  # a folded bias of exactly zero would be dropped
    with pytest.warns(BatchNormFoldedWarning):
        g = from_onnx(torch_to_onnx(m, shape, dynamo=True))
    assert g.bn_folded().canonical_hash == from_torch(m, shape).bn_folded().canonical_hash


# -- exporter idioms ----------------------------------------------------------------------------
def test_erf_gelu_pattern() -> None:
    """Opsets before 20 have no Gelu: torch writes x * 0.5 * (1 + erf(x / sqrt 2))."""
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GELU(), nn.Conv2d(4, 4, 1))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.zeros(1, 3, 8, 8),), buf, dynamo=False, opset_version=17)
    assert "Erf" in [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node]
    g = from_onnx(buf.getvalue())
    assert [n.op for n in g.nodes] == ["input", "conv", "gelu", "conv"]
    assert g.canonical_hash == from_torch(m, (3, 8, 8)).canonical_hash


def test_channels_last_graph_reports_channel_first_shapes() -> None:
    """A hand-written tf2onnx-style NHWC graph: Transpose in, Conv, Transpose out, NHWC Mul/Add (BN), Relu, ReduceMean."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Transpose", ["c"], ["cl"], perm=[0, 2, 3, 1]),
        helper.make_node("Mul", ["cl", "s"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("ReduceMean", ["r"], ["p"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["p", "fc"], ["y"]),
    ]
    inits = [_w("w", 8, 3, 3, 3), _w("s", 8), _w("b", 8), _w("fc", 8, 5)]
    m = _model(nodes, inits, ["N", 16, 12, 3], opset=13)
    g = from_onnx(m)
    assert g.meta["layout"] == "channels_last"
    assert [(n.op, n.output_shape) for n in g.nodes] == [
        ("input", (3, 16, 12)), ("conv", (8, 8, 6)), ("bn", (8, 8, 6)), ("relu", (8, 8, 6)),
        ("global_avgpool", (8,)), ("linear", (5,)),
    ]
    assert g.nodes[2].weight_shape == (8,) and g.nodes[2].bias
    # read as channel-first, the input has 16 channels, but the conv reads 3 (the Transpose that made
    # them 3 is plumbing): since vocabulary 2.0 the graph validates weights against inputs and says so
    with pytest.raises(InvalidGraphError, match=r"reads 3 channels but its input \(16, 12, 3\) has 16"):
        from_onnx(m, channels_last=False)


def test_shape_arithmetic_and_constant_subgraphs_fold() -> None:
    """Reshape targets computed from Shape/Gather/Concat and weights computed by constant nodes."""
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["tgt"], axis=0),
        helper.make_node("Transpose", ["wt"], ["w"], perm=[1, 0]),  # a constant weight computed in-graph
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Reshape", ["r", "tgt"], ["f"]),
        helper.make_node("Gemm", ["f", "w", "bias"], ["y"], transB=1),
    ]
    inits = [
        numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array([0], np.int64), "zero1"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus1"), _w("wt", 48, 7), _w("bias", 7),
    ]
    g = from_onnx(_model(nodes, inits, ["N", 3, 4, 4]))
    assert [(n.op, n.output_shape, n.weight_shape, n.bias) for n in g.nodes[1:]] == [
        ("relu", (3, 4, 4), (), False), ("linear", (7,), (7, 48), True),
    ]


def test_matmul_add_is_one_linear_and_sigmoid_mul_is_silu() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.silu(self.fc(x))  # 3-D input: MatMul + Add in ONNX

    g = from_onnx(torch_to_onnx(Net(), (5, 8)))
    assert [(n.op, n.output_shape, n.bias) for n in g.nodes[1:]] == [("linear", (5, 6), True), ("silu", (5, 6), False)]
    assert g.canonical_hash == from_torch(Net(), (5, 8)).canonical_hash


class _Formula(nn.Module):
    def __init__(self, which: str) -> None:
        super().__init__()
        self.which = which
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.which == "hsigmoid":  # OFA's Hsigmoid
            return nn.functional.relu6(x + 3.0) / 6.0
        if self.which == "hswish":  # OFA's Hswish: (x * relu6(x + 3)) / 6
            return x * nn.functional.relu6(x + 3.0) / 6.0
        return x * torch.sigmoid(x)


@pytest.mark.parametrize("which,ops", [
    ("hsigmoid", ["conv", "relu6", "scale"]),
    ("hswish", ["conv", "relu6", "mul", "scale"]),
    ("swish", ["conv", "silu"]),  # how F.silu is exported, so it is silu, unlike torch's sigmoid + mul
])
def test_formulas_are_read_as_written(which: str, ops: list[str]) -> None:
    g = from_onnx(torch_to_onnx(_Formula(which), (3, 8, 8)))
    assert [n.op for n in g.nodes[1:]] == ops
    if which != "swish":
        assert g.canonical_hash == from_torch(_Formula(which), (3, 8, 8)).canonical_hash


@pytest.mark.tf
def test_keras_channel_last_idioms() -> None:
    """Dense on a map (MatMul on a (positions, channels) view), separable/transposed convs, pad/crop,
    nearest up-sampling (Unsqueeze/Tile/Reshape), squeeze-excite, NHWC flatten: the tf2onnx export
    gives from_keras's graph, and with tf2onnx's defaults the same graph up to BN folding."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    from onnx_export import keras_to_onnx, randomize_keras

    from napbench.conversion import from_keras

    L = keras.layers
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = L.Concatenate(axis=-1)([L.Dense(6)(x), L.SeparableConv2D(6, 3, padding="same")(x)])
    y = L.Cropping2D(((0, 1), (1, 0)))(L.ZeroPadding2D(((1, 0), (0, 1)))(y))
    y = L.UpSampling2D(2)(L.MaxPooling2D(2)(y))
    s = L.GlobalAveragePooling2D(keepdims=True)(y)
    s = L.Conv2D(12, 1, activation="sigmoid")(L.Conv2D(4, 1, activation="swish")(s))
    y = L.BatchNormalization()(L.Conv2DTranspose(4, 2, strides=2)(L.Multiply()([y, s])))
    y = L.Dropout(0.3)(L.Flatten()(L.AveragePooling2D(4)(L.Activation("tanh")(y))))
    m = randomize_keras(keras.Model(inp, L.Softmax()(L.Dense(5)(y))))
    gk = from_keras(m)
    assert from_onnx(keras_to_onnx(m, faithful=True)).canonical_hash == gk.canonical_hash
    assert from_onnx(keras_to_onnx(m, faithful=False)).bn_folded().canonical_hash == gk.bn_folded().canonical_hash


def test_external_weights_need_not_be_present(tmp_path: Path) -> None:
    """Only weight shapes matter: a model saved with external data converts without the data file."""
    build, _, shape = refnet("conv_bn_relu")
    model = torch_to_onnx(build(), shape)
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin", size_threshold=64)
    (tmp_path / "w.bin").unlink()
    assert from_onnx(path).canonical_hash == from_onnx(model).canonical_hash
