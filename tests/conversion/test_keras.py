"""Keras frontend: reference networks and golden ops give the torch frontend's graph exactly."""

from __future__ import annotations

import json

import pytest

keras = pytest.importorskip("keras")

from golden_ops import CASES, CASES_BY_NAME, check_graph  # noqa: E402
from refnets import REFNETS, keras_nb201_cell, refnet, torch_nb201_cell  # noqa: E402

from napbench.conversion import convert, from_keras, from_torch  # noqa: E402
from napbench.errors import ConversionError, UnsupportedOpError  # noqa: E402

pytestmark = pytest.mark.tf

L = keras.layers
KERAS_CASES = [c for c in CASES if c.keras is not None]


@pytest.fixture(scope="module")
def refnet_models() -> dict[str, tuple[object, object]]:
    """name -> (torch graph, keras model), built once per module."""
    out = {}
    for name in REFNETS:
        torch_fn, keras_fn, shape = refnet(name)
        out[name] = (from_torch(torch_fn(), shape), keras_fn())
    return out


@pytest.mark.parametrize("name", REFNETS)
def test_refnet_matches_torch(name: str, refnet_models: dict) -> None:
    gt, km = refnet_models[name]
    gk = from_keras(km)
    assert gk.canonical_hash == gt.canonical_hash, f"{name}:\n{gk.op_counts()}\n{gt.op_counts()}"
    assert (gk.flops, gk.params) == (gt.flops, gt.params)
    assert gk.param_count(include_buffers=True) == km.count_params()
    assert gk.meta["frontend"] == "keras" and gk.meta["input_shape"] == [3, 32, 32]


def test_layer_names_recorded(refnet_models: dict) -> None:
    _, km = refnet_models["inception"]
    g = from_keras(km)
    layer_names = {lyr.name for lyr in km.layers}
    conv_names = [n.name for n in g.nodes if n.op == "conv"]
    assert conv_names and all(n in layer_names for n in conv_names)
    # a layer's own activation= becomes its own node, named after the layer
    assert all(n.name.endswith("/relu") and n.name.split("/")[0] in layer_names for n in g.nodes if n.op == "relu")


def test_preact_vs_postact_differ() -> None:
    """ReLU-Conv-BN and Conv-BN-ReLU edges: different graphs, each the same in both frameworks."""
    pre_t, post_t = from_torch(torch_nb201_cell(), (3, 32, 32)), from_torch(torch_nb201_cell(preact=False), (3, 32, 32))
    pre_k, post_k = from_keras(keras_nb201_cell()), from_keras(keras_nb201_cell(preact=False))
    assert pre_t.canonical_hash != post_t.canonical_hash
    assert (pre_k.canonical_hash, post_k.canonical_hash) == (pre_t.canonical_hash, post_t.canonical_hash)
    assert pre_k.flops == post_k.flops and pre_k.params == post_k.params  # only the order differs


def test_zero_layer_tag() -> None:
    g = from_keras(keras_nb201_cell())
    assert g.op_counts()["zero"] == 1
    assert next(n for n in g.nodes if n.op == "zero").name.startswith("zero")


@pytest.mark.parametrize("case", KERAS_CASES, ids=[c.name for c in KERAS_CASES])
def test_golden_op(case: object) -> None:
    g = from_keras(case.keras())
    check_graph(g, case)
    assert g.canonical_hash == from_torch(case.torch(), case.input_shape).canonical_hash


@pytest.mark.parametrize(
    ("case_name", "build"),
    [
        ("zero", lambda x: x * 0.0),
        ("scale", lambda x: x * 0.5),
        ("add_const_pruned", lambda x: keras.ops.relu(x + 1.0)),
        ("global_avgpool_mean", lambda x: keras.ops.mean(x, axis=(1, 2))),
    ],
)
def test_keras_ops_calls(case_name: str, build: object) -> None:
    """keras.ops calls recorded in a functional graph map like the torch functional calls."""
    case = CASES_BY_NAME[case_name]
    c, h, w = case.input_shape
    inp = keras.Input((h, w, c))
    g = from_keras(keras.Model(inp, build(inp)))
    assert g.canonical_hash == from_torch(case.torch(), case.input_shape).canonical_hash


def _torch_graph(build: object, shape: tuple[int, ...] = (3, 8, 8)) -> object:
    import torch

    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = build()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.m(x)

    return from_torch(M(), shape)


def test_separable_conv_is_depthwise_then_pointwise() -> None:
    import torch.nn as nn

    inp = keras.Input((8, 8, 4))
    g = from_keras(keras.Model(inp, L.SeparableConv2D(6, 3, strides=2, padding="same", depth_multiplier=2, activation="relu")(inp)))
    t = _torch_graph(lambda: nn.Sequential(nn.Conv2d(4, 8, 3, 2, 1, groups=4, bias=False), nn.Conv2d(8, 6, 1), nn.ReLU()), (4, 8, 8))
    assert [n.op for n in g.nodes] == ["input", "conv", "conv", "relu"]
    assert g.canonical_hash == t.canonical_hash


def test_average_is_sum_then_scale() -> None:
    import torch.nn as nn

    class Avg(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 3, 1)

        def forward(self, x: object) -> object:
            return (self.c(x) + x) / 2

    inp = keras.Input((8, 8, 3))
    g = from_keras(keras.Model(inp, L.Average()([L.Conv2D(3, 1)(inp), inp])))
    assert g.canonical_hash == _torch_graph(Avg).canonical_hash


def test_dense_on_feature_map_acts_on_channels() -> None:
    inp = keras.Input((8, 8, 3))
    g = from_keras(keras.Model(inp, L.Dense(5)(inp)))
    lin = g.nodes[1]
    assert (lin.op, lin.weight_shape, lin.output_shape, lin.bias) == ("linear", (5, 3), (5, 8, 8), True)
    assert g.flops == 5 * 3 * 64


def test_layer_scale_is_a_learned_tensor() -> None:
    """ConvNeXt's LayerScale is ``x * gamma``: a ``param`` node times x, as ``x * nn.Parameter`` in torch (vocabulary 2.0)."""
    import torch
    from keras.src.applications.convnext import LayerScale

    class TorchLS(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3, 3)
            self.gamma = torch.nn.Parameter(torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.mean((2, 3))) * self.gamma

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, LayerScale(1e-6, 3)(L.Dense(3)(L.GlobalAveragePooling2D()(inp))))
    g = from_keras(model)
    assert g.canonical_hash == _torch_graph(TorchLS).canonical_hash
    assert "uncounted_weights" not in g.meta and g.param_count(include_buffers=True) == model.count_params()
    assert [n.weight_shape for n in g.nodes if n.op == "param"] == [(3,)]


def test_nested_submodels_flattened(refnet_models: dict) -> None:
    """A functional model and a Sequential used as layers give the flat graph (names prefixed)."""
    gt, _ = refnet_models["conv_bn_relu"]
    body = keras.Sequential(
        [keras.Input((32, 32, 16)), L.Conv2D(32, 3, strides=2, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU()],
        name="body",
    )
    s_in = keras.Input((16, 16, 32))
    stage = keras.Model(s_in, L.ReLU()(L.BatchNormalization()(L.Conv2D(64, 3, strides=2, padding="same", use_bias=False)(s_in))), name="stage")
    inp = keras.Input((32, 32, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False)(inp)))
    y = L.Dense(10)(L.GlobalAveragePooling2D()(stage(body(x))))
    model = keras.Model(inp, y)
    g = from_keras(model)
    assert g.canonical_hash == gt.canonical_hash
    assert g.param_count(include_buffers=True) == model.count_params()
    assert any(n.name.startswith("body/") for n in g.nodes) and any(n.name.startswith("stage/") for n in g.nodes)


def test_channels_first() -> None:
    import torch.nn as nn

    inp = keras.Input((3, 16, 16))
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, data_format="channels_first")(inp)
    x = L.ReLU()(L.BatchNormalization(axis=1)(x))
    x = L.GlobalAveragePooling2D(data_format="channels_first")(x)
    g = from_keras(keras.Model(inp, L.Dense(4)(x)))
    t = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    assert g.canonical_hash == from_torch(t, (3, 16, 16)).canonical_hash


def test_unknown_spatial_dims_need_input_shape(refnet_models: dict) -> None:
    inp = keras.Input((None, None, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False)(inp)))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(x)))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(64, 3, strides=2, padding="same", use_bias=False)(x)))
    model = keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))
    with pytest.raises(ConversionError, match="unknown dimensions.*input_shape"):
        from_keras(model)
    g = from_keras(model, input_shape=(3, 32, 32))
    assert g.canonical_hash == refnet_models["conv_bn_relu"][0].canonical_hash
    with pytest.raises(ConversionError, match="does not fit"):
        from_keras(refnet_models["conv_bn_relu"][1], input_shape=(3, 64, 64))


# -- saved models ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", REFNETS)
def test_keras_file_roundtrip(name: str, refnet_models: dict, tmp_path: object) -> None:
    gt, km = refnet_models[name]
    path = tmp_path / f"{name}.keras"
    km.save(path)
    g = from_keras(path)
    assert g.canonical_hash == gt.canonical_hash
    assert convert(str(path)).canonical_hash == gt.canonical_hash  # through the frontend registry


def test_h5_roundtrip(refnet_models: dict, tmp_path: object) -> None:
    gt, km = refnet_models["mbconv_se"]
    path = tmp_path / "mbconv.h5"
    km.save(path)
    assert from_keras(str(path)).canonical_hash == gt.canonical_hash


def test_tf_keras_savedmodel_metadata(tmp_path: object) -> None:
    """A tf.keras (Keras 2) SavedModel: the architecture is rebuilt from keras_metadata.pb."""
    import tensorflow as tf
    from tensorflow.python.keras.protobuf import saved_metadata_pb2

    conv = {
        "name": "conv2d", "trainable": True, "dtype": "float32", "filters": 4, "kernel_size": [3, 3], "strides": [1, 1],
        "padding": "same", "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1, "activation": "relu",
        "use_bias": True, "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None, "bias_regularizer": None,
        "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None,
    }
    config = {  # the Keras 2 functional config format, as tf.keras wrote it
        "name": "model",
        "layers": [
            {"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
             "config": {"batch_input_shape": [None, 8, 8, 3], "dtype": "float32", "sparse": False, "ragged": False, "name": "input_1"}},
            {"class_name": "Conv2D", "name": "conv2d", "config": conv, "inbound_nodes": [[["input_1", 0, 0, {}]]]},
        ],
        "input_layers": [["input_1", 0, 0]],
        "output_layers": [["conv2d", 0, 0]],
    }
    tf.saved_model.save(tf.Module(), str(tmp_path))
    meta = saved_metadata_pb2.SavedMetadata()
    root = meta.nodes.add(node_id=0, node_path="root", identifier="_tf_keras_network")
    root.metadata = json.dumps({"name": "model", "class_name": "Functional", "config": config})
    (tmp_path / "keras_metadata.pb").write_bytes(meta.SerializeToString())
    g = from_keras(tmp_path)
    ref = keras.Model(inp := keras.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same", activation="relu")(inp))
    assert g.canonical_hash == from_keras(ref).canonical_hash


def test_keras3_export_savedmodel_error(tmp_path: object) -> None:
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3)])
    model.export(str(tmp_path / "exported"), verbose=False)
    with pytest.raises(ConversionError, match="no Keras metadata.*expected a .keras/.h5 file") as info:
        from_keras(tmp_path / "exported")
    assert "\n" not in str(info.value)


# -- errors -------------------------------------------------------------------------------------------
def _prelu_model() -> object:
    inp = keras.Input((8, 8, 3))
    x = L.PReLU(name="my_prelu")(L.Conv2D(4, 3, name="c1")(inp))
    return keras.Model(inp, L.Conv2D(2, 1, name="c2")(x))


def test_unknown_layer_raises_one_line() -> None:
    with pytest.raises(UnsupportedOpError) as info:
        from_keras(_prelu_model())
    msg = str(info.value)
    assert "\n" not in msg and "'PReLU'" in msg and "'my_prelu'" in msg and "allow_unknown=True" in msg
    assert info.value.frontend == "keras" and info.value.op == "PReLU"


def test_lambda_is_not_opaque_plumbing() -> None:
    inp = keras.Input((8, 8, 3))
    with pytest.raises(UnsupportedOpError, match="'Lambda'.*'lam'"):
        from_keras(keras.Model(inp, L.Lambda(lambda t: t * 2.0, name="lam")(inp)))


def test_allow_unknown_keeps_layer() -> None:
    g = from_keras(_prelu_model(), allow_unknown=True)
    assert [n.op for n in g.nodes] == ["input", "conv", "unknown", "conv"]
    unk = g.nodes[2]
    assert (unk.detail, unk.name, unk.output_shape) == ("PReLU", "my_prelu", (4, 6, 6))


def test_bad_inputs(tmp_path: object) -> None:
    with pytest.raises(ConversionError, match="not found"):
        from_keras(tmp_path / "missing.keras")
    with pytest.raises(ConversionError, match="expected a keras.Model"):
        from_keras(42)
    with pytest.raises(ConversionError, match="no input shape"):
        from_keras(keras.Sequential([L.Dense(3)]))

    class Sub(keras.Model):
        def call(self, x: object) -> object:
            return x

    with pytest.raises(ConversionError, match="subclassed"):
        from_keras(Sub())
    a, b = keras.Input((4,)), keras.Input((4,))
    with pytest.raises(ConversionError, match="2 inputs"):
        from_keras(keras.Model([a, b], L.Add()([a, b])))
