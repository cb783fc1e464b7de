"""Hardware cost: HW-NAS-Bench columns for NB-201 and measured onnxruntime latency.

* :data:`HW_DEVICES` names the HW-NAS-Bench latency columns (``hw_<device>_latency`` in ms)
  that NB-201 datasets carry as label columns (see
  :func:`napbench.datasets.families.nb201.load_hw_nas_bench`); :func:`hw_columns` joins them
  onto any list of NB-201 architectures (for datasets built before the columns existed).
* :func:`measure_latency` measures the real latency of a model on *this* machine with
  onnxruntime: ``warmup`` untimed runs, then ``repeats`` timed runs of batch ``batch`` on
  ``threads`` intra-op threads (a session option, so nothing process-wide changes);
  it reports the median and the spread (IQR, p10/p90, std). A model onnxruntime cannot
  load or run is refused with one :class:`~napbench.errors.ConversionError` line.
"""

from __future__ import annotations

import io
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napbench.errors import ConversionError, InvalidArgumentError, NoLabelsError

#: HW-NAS-Bench devices with a latency column, as ``hw_<device>_latency``
HW_DEVICES: tuple[str, ...] = ("edgegpu", "raspi4", "edgetpu", "pixel3", "eyeriss", "fpga")


def latency_column(device: str) -> str:
    """The NB-201 label column of ``device``'s HW-NAS-Bench latency."""
    if device not in HW_DEVICES:
        from napbench.errors import UnknownNameError

        raise UnknownNameError("HW-NAS-Bench device", device, list(HW_DEVICES))
    return f"hw_{device}_latency"


def hw_columns(family: str, archs: Sequence[str], columns: Sequence[str], *, mirror: str | None = None,
               dataset: str = "cifar10-valid") -> dict[str, np.ndarray]:
    """HW-NAS-Bench ``columns`` (``hw_<metric>``) for NB-201 ``archs`` as float arrays (NaN where missing)."""
    if family != "nb201":
        raise NoLabelsError(f"family {family!r} has no hardware cost columns {list(columns)}; expected family 'nb201' (HW-NAS-Bench)")
    import polars as pl

    from napbench.datasets.families.nb201 import load_hw_nas_bench

    hw = load_hw_nas_bench(dataset, mirror=mirror)
    bad = [c for c in columns if c not in hw.columns]
    if bad:
        raise InvalidArgumentError(f"unknown hardware column(s) {bad}; expected among {[c for c in hw.columns if c != 'arch']}")
    joined = pl.DataFrame({"arch": list(archs)}).join(hw, on="arch", how="left", maintain_order="left")
    return {c: joined[c].cast(pl.Float64).fill_null(float("nan")).to_numpy() for c in columns}


@dataclass(frozen=True)
class LatencyMeasurement:
    """One latency measurement (milliseconds per batch)."""

    model: str
    input_shape: tuple[int, ...]
    batch: int
    threads: int
    warmup: int
    repeats: int
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    def summary(self) -> str:
        """One line for the CLI."""
        return (
            f"{self.model}: median {self.median_ms:.3f} ms (IQR {self.iqr_ms:.3f}, p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, "
            f"std {self.std_ms:.3f}) over {self.repeats} runs after {self.warmup} warm-up, batch {self.batch}, "
            f"input {'x'.join(map(str, self.input_shape))}, {self.threads} thread(s), onnxruntime CPU"
        )


def _onnx_bytes(source: Any, input_shape: Sequence[int] | None) -> tuple[bytes, str]:
    """Serialised ONNX for a path, ModelProto, torch module/factory or CompGraph."""
    import onnx

    if isinstance(source, onnx.ModelProto):
        return source.SerializeToString(), str(source.graph.name or "onnx model")
    if isinstance(source, (str, Path)) and str(source).endswith(".onnx"):
        p = Path(source)
        if not p.is_file():
            raise ConversionError(f"ONNX file {str(p)!r} not found; expected an existing .onnx file")
        return p.read_bytes(), str(p)
    from napbench.conversion.graph import CompGraph

    if isinstance(source, CompGraph):
        from napbench.search.mutation import to_onnx

        return to_onnx(source).SerializeToString(), str(source.meta.get("name") or source.meta.get("arch") or "graph")
    import torch

    name = str(source)
    if isinstance(source, str):
        from napbench.conversion.frontends import load_factory

        source = load_factory(source)
    if not isinstance(source, torch.nn.Module):
        raise ConversionError(
            f"{name!r} is a {type(source).__name__}; expected an .onnx file, a torch module or 'module:callable' factory, or a CompGraph"
        )
    if input_shape is None:
        raise InvalidArgumentError(f"torch model {name!r} needs an input shape; expected --input-shape C,H,W")
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(source.eval(), (torch.randn(1, *input_shape),), buf, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - any exporter failure is one line
        raise ConversionError(f"torch model {name!r} could not be exported to ONNX ({type(exc).__name__}: {_first(exc)})") from None
    return buf.getvalue(), name


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def measure_latency(
    source: Any,
    *,
    input_shape: Sequence[int] | None = None,
    batch: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    threads: int = 1,
) -> LatencyMeasurement:
    """Median latency (ms) of ``source`` on this machine's CPU with onnxruntime (see module docstring).

    ``source``: an ``.onnx`` path or ``ModelProto``, a torch module or ``module:callable``
    factory (exported with ``input_shape``), or a CompGraph (through the CG executor).
    ``input_shape`` (C, H, W) also fills symbolic non-batch input dimensions of ONNX models.
    """
    import onnxruntime as ort

    for name, v, lo in (("batch", batch, 1), ("warmup", warmup, 0), ("repeats", repeats, 1), ("threads", threads, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise InvalidArgumentError(f"{name} is {v!r}; expected an int >= {lo}")
    data, label = _onnx_bytes(source, input_shape)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise ConversionError(f"model {label!r} cannot be loaded by onnxruntime ({_first(exc)}); expected a valid, runnable ONNX model") from None
    feeds = {}
    shape_used: tuple[int, ...] = ()
    for i, inp in enumerate(sess.get_inputs()):
        dims = list(inp.shape)
        if dims and not isinstance(dims[0], int):
            dims[0] = batch
        rest = dims[1:]
        if any(not isinstance(d, int) or d < 1 for d in rest):
            if input_shape is None or len(input_shape) != len(rest):
                raise ConversionError(
                    f"model {label!r} input {inp.name!r} has symbolic dims {inp.shape}; expected --input-shape with {len(rest)} dims"
                )
            rest = list(input_shape)
        dims = [dims[0] if isinstance(dims[0], int) else batch, *rest]
        if "float" not in inp.type:
            raise ConversionError(f"model {label!r} input {inp.name!r} has type {inp.type}; expected a float tensor input")
        dtype = np.float16 if "float16" in inp.type else np.float64 if "double" in inp.type else np.float32
        feeds[inp.name] = np.random.default_rng(i).standard_normal(dims).astype(dtype)
        if i == 0:
            shape_used = tuple(dims[1:])
    try:
        sess.run(None, feeds)
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"model {label!r} cannot run on onnxruntime ({_first(exc)}); expected a runnable ONNX model") from None
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    arr = np.asarray(times)
    q10, q25, q75, q90 = np.percentile(arr, [10, 25, 75, 90])
    return LatencyMeasurement(
        model=label, input_shape=shape_used, batch=batch, threads=threads, warmup=warmup, repeats=repeats,
        median_ms=float(np.median(arr)), mean_ms=float(arr.mean()), std_ms=float(statistics.pstdev(times)),
        min_ms=float(arr.min()), p10_ms=float(q10), p90_ms=float(q90), iqr_ms=float(q75 - q25),
    )
