"""Small valid inputs (made here, in tmp folders) that the reliability and fuzz tests damage.

Everything is built without TensorFlow and without the network: a torch model file, an ONNX
file written with ``onnx.helper``, a napbench Parquet dataset, a ``flops`` and a tiny ``kgnn``
checkpoint. ``run_cli`` runs the CLI in-process and returns ``(code, stdout, stderr)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import textwrap
from pathlib import Path

MODEL_PY = textwrap.dedent(
    """
    import torch.nn as nn
    def small():
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    """
)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``napbench.cli.main(argv)`` with stdout/stderr captured."""
    from napbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def model_file(d: Path) -> Path:
    """A python file with a tiny torch factory ``small`` (use ``f'{path}:small'``)."""
    p = d / "tinymodels.py"
    p.write_text(MODEL_PY)
    return p


def onnx_model(*, in_ch: int = 3, w_in: int = 3, out_ch: int = 4, bias: bool = True) -> bytes:
    """A serialised ONNX Conv(+bias)->Relu on a 1 x in_ch x 8 x 8 input; ``w_in != in_ch`` makes the weight not fit."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((out_ch, w_in, 3, 3), 0.1, dtype=np.float32), "w")
    inits = [w]
    ins = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(np.zeros(out_ch, dtype=np.float32), "b"))
        ins.append("b")
    nodes = [helper.make_node("Conv", ins, ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, in_ch, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_ch, 8, 8])], initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def onnx_file(d: Path, **kw: int | bool) -> Path:
    """``onnx_model(**kw)`` written to ``d/tiny.onnx``."""
    p = d / "tiny.onnx"
    p.write_bytes(onnx_model(**kw))  # type: ignore[arg-type]
    return p


def dataset_file(d: Path, name: str = "ds.parquet") -> Path:
    """A two-row napbench Parquet dataset converted from the tiny ONNX model."""
    import warnings

    from napbench.conversion import from_onnx, write_graphs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = from_onnx(onnx_model(bias=False))
    p = d / name
    write_graphs([g, g.with_meta(name="second")], p)
    return p


def flops_checkpoint(d: Path, name: str = "ck") -> Path:
    """A saved ``flops`` predictor folder (its weights: the 2-element linear map)."""
    from napbench.zoo import get_predictor

    p = d / name
    get_predictor("flops").save_pretrained(p)
    return p


def kgnn_checkpoint(d: Path, name: str = "kg") -> Path:
    """A saved (unfitted) tiny ``kgnn`` predictor folder."""
    from napbench.zoo import get_predictor

    p = d / name
    get_predictor("kgnn", hidden=4, layers=1, mlp_layers=1).save_pretrained(p)
    return p


def snapshot(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file and folder under ``root`` (folders map to 'dir')."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames:
            out[os.path.relpath(os.path.join(dirpath, n), root)] = "dir"
        for n in filenames:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out
