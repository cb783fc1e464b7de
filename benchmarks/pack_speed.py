"""Featurisation speed: ``PackedGraphs.from_arrow`` on a whole family against the previous implementation.

    python benchmarks/pack_speed.py                       # NB-201, 15,625 graphs, from $NAPBENCH_HOME
    python benchmarks/pack_speed.py --family nb301 --repeats 5

The family's table is loaded once (``napbench.datasets.load``; not timed). Then, alternately,
``--repeats`` times each (best run printed):

* **baseline**: the previous ``from_arrow`` (kept below, verbatim apart from names, as
  ``_baseline_from_arrow`` / ``_BaselineLists``): every shape list becomes an ``(N, max_len)``
  NaN-padded float64 matrix built column by column, then reduced with ``nan_to_num``;
  ``combine_chunks`` of the whole ``nodes`` column;
* **new**: :meth:`napbench.zoo.features.PackedGraphs.from_arrow` (segment reductions and
  gathers on the flat list values; only the node fields it reads are gathered).

Prints seconds, graphs/s and nodes/s of both and the speed-up, and checks that the six arrays
(``op``, ``numeric``, ``src``, ``dst``, ``node_ptr``, ``edge_ptr``) are bit-identical. The
baseline's two rules the new code corrects (``matmul`` FLOPs used the first input's last axis
instead of the stored contracted length ``inner``; a norm's bias counted the output's first
axis instead of the scale's size, see ``node_flops``/``node_params``) can only differ on
``matmul`` and norm rows; those rows are counted and printed, every other row must match.
Exit status 1 when anything else differs.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np


# ---- baseline: the previous implementation (napbench/zoo/features.py before the flat rewrite) ----
@dataclass
class _BaselineLists:
    values: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    @classmethod
    def of(cls, arr):  # noqa: ANN001, ANN206 - verbatim baseline
        off = arr.offsets.to_numpy().astype(np.int64)
        vals = arr.values.to_numpy(zero_copy_only=False).astype(np.float64)
        return cls(vals, off[:-1], np.diff(off))

    @classmethod
    def first_of_nested(cls, arr):  # noqa: ANN001, ANN206
        outer = arr.offsets.to_numpy().astype(np.int64)
        inner = arr.values.offsets.to_numpy().astype(np.int64)
        vals = arr.values.values.to_numpy(zero_copy_only=False).astype(np.float64)
        has = np.diff(outer) > 0
        first = np.where(has, outer[:-1], 0)
        starts = inner[first]
        lengths = np.where(has, inner[np.minimum(first + 1, inner.size - 1)] - starts, 0)
        return cls(vals, starts, lengths)

    @cached_property
    def dense(self) -> np.ndarray:
        width = int(self.lengths.max(initial=0))
        out = np.full((self.starts.size, width), np.nan)
        for k in range(width):
            m = self.lengths > k
            out[m, k] = self.values[self.starts[m] + k]
        return out

    def item(self, k: int, default: float) -> np.ndarray:
        if k >= self.dense.shape[1]:
            return np.full(self.starts.size, default)
        col = self.dense[:, k]
        return np.where(np.isnan(col), default, col)

    def last(self, default: float) -> np.ndarray:
        ok = self.lengths > 0
        idx = np.where(ok, self.starts + self.lengths - 1, 0)
        return np.where(ok, self.values[idx] if self.values.size else 0.0, default)

    def prod(self, start: int = 0) -> np.ndarray:
        return np.nan_to_num(self.dense[:, start:], nan=1.0).prod(axis=1)

    def max(self) -> np.ndarray:
        return np.nan_to_num(self.dense, nan=0.0).max(axis=1, initial=0.0)


def _baseline_from_arrow(table):  # noqa: ANN001, ANN202 - verbatim baseline (validation omitted)
    import pyarrow as pa

    from napbench.conversion.vocab import OPS
    from napbench.zoo.features import NUMERIC_FEATURES, PackedGraphs, _op_id

    nodes = table.column("nodes").combine_chunks()
    node_off = nodes.offsets.to_numpy().astype(np.int64)
    lo, hi = int(node_off[0]), int(node_off[-1])
    fields = dict(zip([f.name for f in nodes.type.value_type], nodes.values.flatten()))
    fields = {k: v.slice(lo, hi - lo) for k, v in fields.items()}
    ops_arr = fields["op"]
    if pa.types.is_dictionary(ops_arr.type):
        lut = np.array([_op_id(o) for o in ops_arr.dictionary.to_pylist()], dtype=np.int64)
        op = lut[ops_arr.indices.to_numpy(zero_copy_only=False).astype(np.int64)] if len(lut) else np.zeros(0, np.int64)
    else:
        op = np.array([_op_id(o) for o in ops_arr.to_pylist()], dtype=np.int64)
    out = _BaselineLists.of(fields["output_shape"])
    ws = _BaselineLists.of(fields["weight_shape"])
    ker = _BaselineLists.of(fields["kernel"])
    strd = _BaselineLists.of(fields["stride"])
    in0 = _BaselineLists.first_of_nested(fields["input_shapes"])
    groups = fields["groups"].to_numpy(zero_copy_only=False).astype(np.float64)
    bias = fields["bias"].to_numpy(zero_copy_only=False).astype(bool)
    names = list(OPS)
    is_op = {o: op == names.index(o) for o in ("conv", "conv_transpose", "linear", "matmul")}
    p_out, p_ws1 = out.prod(), ws.prod(start=1)
    flops = np.zeros(op.size)
    has_w = ws.lengths > 0
    m = (is_op["conv"] | is_op["linear"]) & has_w
    flops[m] = p_out[m] * p_ws1[m]
    m = is_op["conv_transpose"] & has_w
    flops[m] = in0.prod()[m] * p_ws1[m]
    m = is_op["matmul"]
    flops[m] = p_out[m] * in0.last(1.0)[m]
    params = np.where(has_w, ws.prod(), 0.0)
    b_ct = is_op["conv_transpose"] & has_w
    b_cl = (is_op["conv"] | is_op["linear"]) & has_w
    b_other = np.where(out.lengths > 0, out.item(0, 1.0), 1.0)
    params += bias * np.where(b_ct, ws.item(1, 0.0) * groups, np.where(b_cl, ws.item(0, 0.0), b_other))
    grp = np.where(is_op["conv"] | is_op["conv_transpose"], groups, has_w.astype(np.float64))
    numeric = np.empty((op.size, len(NUMERIC_FEATURES)))
    for j, col in enumerate(
        (in0.item(0, 0.0), out.item(0, 0.0), out.item(1, 1.0), out.item(2, 1.0), ker.max(), strd.max(), grp, flops, params)
    ):
        numeric[:, j] = col
    edges = table.column("edges").combine_chunks()
    e_off = edges.offsets.to_numpy().astype(np.int64)
    e_fields = dict(zip([f.name for f in edges.type.value_type], edges.values.flatten()))
    elo, ehi = int(e_off[0]), int(e_off[-1])
    src = e_fields["src"].slice(elo, ehi - elo).to_numpy(zero_copy_only=False).astype(np.int64)
    dst = e_fields["dst"].slice(elo, ehi - elo).to_numpy(zero_copy_only=False).astype(np.int64)
    return PackedGraphs(op=op, numeric=numeric, src=src, dst=dst, node_ptr=node_off - lo, edge_ptr=e_off - elo)


# ---- end of baseline ----------------------------------------------------------------------------


def _compare(old, new) -> bool:  # noqa: ANN001 - two PackedGraphs
    """Print whether each array is bit-identical; True when all are (outside the corrected rows)."""
    from napbench.conversion.vocab import NORMS, OP_INDEX

    ok = True
    for f in ("op", "src", "dst", "node_ptr", "edge_ptr"):
        a, b = getattr(old, f), getattr(new, f)
        same = a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        ok &= same
        print(f"  {f:9s} {'identical' if same else 'DIFFERENT'} ({b.dtype}, {b.shape})")
    a, b = old.numeric, new.numeric
    if a.dtype != b.dtype or a.shape != b.shape:
        print(f"  numeric   DIFFERENT layout: {a.dtype} {a.shape} vs {b.dtype} {b.shape}")
        return False
    rows = np.flatnonzero((a.view(np.uint64) != b.view(np.uint64)).any(axis=1))
    corrected = np.isin(new.op, [OP_INDEX["matmul"], *(OP_INDEX[o] for o in NORMS)])
    other = rows[~corrected[rows]]
    print(
        f"  numeric   {'identical' if rows.size == 0 else f'{rows.size:,} rows differ'} ({b.dtype}, {b.shape}); "
        f"rows that differ outside matmul/norm nodes: {other.size:,}"
    )
    return ok and other.size == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="nb201", help="family name, loaded from $NAPBENCH_HOME (default nb201)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each implementation (best is printed)")
    args = ap.parse_args(argv)

    import napbench.datasets as datasets
    from napbench.zoo.features import PackedGraphs

    t0 = time.perf_counter()
    table = datasets.load(args.family, progress=False).table
    n_graphs = table.num_rows
    print(
        f"{args.family}: {n_graphs:,} graphs, {table.column('nodes').num_chunks} chunk(s), loaded in {time.perf_counter() - t0:.2f} s"
    )
    times: dict[str, list[float]] = {"baseline": [], "new": []}
    impls = {"baseline": _baseline_from_arrow, "new": PackedGraphs.from_arrow}
    results = {}
    for _ in range(max(1, args.repeats)):
        for name, fn in impls.items():  # alternate, so that changing machine load hits both
            t = time.perf_counter()
            results[name] = fn(table)
            times[name].append(time.perf_counter() - t)
    n_nodes = results["new"].op.size
    for name in impls:
        best = min(times[name])
        print(
            f"{name:8s}: best {best:.3f} s of {len(times[name])} ({', '.join(f'{t:.3f}' for t in times[name])}); "
            f"{n_graphs / best:,.0f} graphs/s, {n_nodes / best / 1e6:.2f} M nodes/s"
        )
    print(f"speed-up (baseline best / new best): {min(times['baseline']) / min(times['new']):.2f}x")
    print("outputs:")
    ok = _compare(results["baseline"], results["new"])
    print("identical: yes" if ok else "identical: NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
