"""Parquet storage of computation graphs.

Schema (one row per architecture; ``SCHEMA_VERSION``):

=============== =========================== =============================================
column          type                        meaning
=============== =========================== =============================================
graph_id        string                      canonical structural hash
family          string (nullable)           benchmark family
arch            string (nullable)           the family's canonical architecture encoding
name            string                      model name
input_shape     list<int32>                 (C, H, W) without batch
num_classes     int32 (nullable)            classes of the head
flops           int64                       multiply-adds (see ``graph`` module)
params          int64                       learnable parameters
n_nodes         int32                       number of nodes
nodes           list<struct<...>>           one field per ``Node`` field but ``inputs``, derived
                                            from the Node declaration (op, input_shapes, ...)
edges           list<struct<src, dst>>      directed edges, grouped by dst in argument order
outputs         list<int32>                 output node indices
meta            string                      JSON of the full graph metadata (the columns
                                            family..num_classes are queryable copies)
<label columns> typed (float64, list<...>)  labels joined from upstream tables (wide)
=============== =========================== =============================================

Labels are wide typed columns (not a long table) so that lazy polars queries can filter and
sort on them without exploding rows, and a missing label is a null, never a NaN. The file's
key-value metadata records ``napbench.schema_version``, ``napbench.vocab_version``,
``napbench.converter_version``, ``napbench.label_columns`` (JSON list) and any dataset
metadata. Writes go through :mod:`napbench._io` (atomic; an existing file is replaced only
when it is a napbench Parquet file). Reads refuse, with one line, a file that is not Parquet,
has no napbench metadata, has another ``schema_version`` than :data:`SCHEMA_VERSION`, lacks a
graph column or holds a ``meta`` value that is not JSON.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from napbench._io import atomic_file
from napbench.conversion.graph import NODE_FIELDS, CompGraph, Node
from napbench.conversion.vocab import VOCAB_VERSION
from napbench.errors import SchemaError, VersionMismatchError

SCHEMA_VERSION = "1"
_I32 = pa.int32()
_SHAPE = pa.list_(_I32)

def _arrow_type(annotation: Any) -> pa.DataType:
    """Arrow type of a Node field, from its annotation (the one declaration in ``graph.Node``)."""
    a = str(annotation)
    if a == "str":
        return pa.string()
    if a == "bool":
        return pa.bool_()
    if a == "int":
        return _I32
    if a == "Shape":
        return _SHAPE
    if a == "tuple[Shape, ...]":
        return pa.list_(_SHAPE)
    raise SchemaError(f"Node field annotation {a!r} has no Parquet type; expected str, bool, int, Shape or tuple[Shape, ...]")


#: stored node fields: every Node field but ``inputs`` (stored as edges), in declaration order
NODE_COLUMNS: tuple[str, ...] = tuple(f for f in NODE_FIELDS if f != "inputs")
_ANNOT = {f.name: f.type for f in dataclasses.fields(Node)}
NODE_TYPE = pa.struct(
    [("op", pa.dictionary(_I32, pa.string()))] + [(f, _arrow_type(_ANNOT[f])) for f in NODE_COLUMNS if f != "op"]
)
EDGE_TYPE = pa.struct([("src", _I32), ("dst", _I32)])
GRAPH_FIELDS = [
    pa.field("graph_id", pa.string(), nullable=False),
    pa.field("family", pa.string()),
    pa.field("arch", pa.string()),
    pa.field("name", pa.string()),
    pa.field("input_shape", _SHAPE),
    pa.field("num_classes", _I32),
    pa.field("flops", pa.int64()),
    pa.field("params", pa.int64()),
    pa.field("n_nodes", _I32),
    pa.field("nodes", pa.list_(NODE_TYPE)),
    pa.field("edges", pa.list_(EDGE_TYPE)),
    pa.field("outputs", pa.list_(_I32)),
    pa.field("meta", pa.string()),
]
GRAPH_COLUMNS = [f.name for f in GRAPH_FIELDS]
_TOP_META = ("family", "arch", "name", "input_shape", "num_classes")


def _shape_list(values: Sequence[Sequence[int]]) -> pa.ListArray:
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=len(values)), dtype=np.int64)
    flat = np.fromiter(itertools.chain.from_iterable(values), dtype=np.int32, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))


def _list_of(child: pa.Array, lengths: Sequence[int]) -> pa.ListArray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(lengths, dtype=np.int64)
    return pa.ListArray.from_arrays(pa.array(offsets), child)


def _encode_field(name: str, nodes: Sequence[Node]) -> pa.Array:
    """One Node field of every node as an Arrow array of the field's stored type."""
    typ = NODE_TYPE.field(name).type
    values = list(map(attrgetter(name), nodes))
    if name == "op":
        return pa.array(values, pa.string()).dictionary_encode()
    if typ == _SHAPE:
        return _shape_list(values)
    if typ == pa.list_(_SHAPE):
        return _list_of(_shape_list(list(itertools.chain.from_iterable(values))), list(map(len, values)))
    return pa.array(values, typ)


def _decode_field(name: str, arr: pa.Array) -> list[Any]:
    """The inverse of :func:`_encode_field` for one stored column (missing columns: the field default)."""
    typ = NODE_TYPE.field(name).type
    if name == "op":
        if pa.types.is_dictionary(arr.type):
            dic = arr.dictionary.to_pylist()
            return [dic[i] for i in arr.indices.to_numpy(zero_copy_only=False).tolist()]
        return arr.to_pylist()
    if typ == _SHAPE:
        return _decode_shapes(arr)
    if typ == pa.list_(_SHAPE):
        flat = _decode_shapes(arr.flatten())
        off = arr.offsets.to_numpy()
        off = (off - off[0]).tolist()
        return [tuple(flat[a:b]) if b - a != 1 else (flat[a],) for a, b in itertools.pairwise(off)]
    return arr.to_pylist()


def graphs_to_arrow(graphs: Sequence[CompGraph], labels: Mapping[str, Sequence[Any]] | None = None) -> pa.Table:
    """Columnar Arrow table of ``graphs`` (plus optional label columns) in the napbench schema."""
    nodes: list[Node] = [n for g in graphs for n in g.nodes]
    node_arr = pa.StructArray.from_arrays([_encode_field(f, nodes) for f in NODE_COLUMNS], fields=list(NODE_TYPE))
    # edges grouped by destination in argument order (CompGraph.edges), without building pairs
    n_in = [len(n.inputs) for n in nodes]
    src = np.fromiter(itertools.chain.from_iterable(n.inputs for n in nodes), dtype=np.int32, count=sum(n_in))
    dst = np.repeat(np.concatenate([np.arange(len(g.nodes), dtype=np.int32) for g in graphs]) if graphs else
                    np.zeros(0, np.int32), n_in)
    edge_arr = pa.StructArray.from_arrays([pa.array(src), pa.array(dst)], fields=list(EDGE_TYPE))
    n_edges = np.add.reduceat(np.asarray(n_in, dtype=np.int64), np.cumsum([0] + [len(g.nodes) for g in graphs[:-1]])) \
        if graphs else np.zeros(0, np.int64)
    metas = [dict(g.meta) for g in graphs]
    cols: dict[str, pa.Array] = {
        "graph_id": pa.array([g.canonical_hash for g in graphs], pa.string()),
        "family": pa.array([m.get("family") for m in metas], pa.string()),
        "arch": pa.array([m.get("arch") for m in metas], pa.string()),
        "name": pa.array([m.get("name") or m.get("arch") or "" for m in metas], pa.string()),
        "input_shape": _shape_list([tuple(g.input_shape) for g in graphs]),
        "num_classes": pa.array([m.get("num_classes") for m in metas], _I32),
        "flops": pa.array([g.flops for g in graphs], pa.int64()),
        "params": pa.array([g.params for g in graphs], pa.int64()),
        "n_nodes": pa.array([len(g.nodes) for g in graphs], _I32),
        "nodes": _list_of(node_arr, [len(g.nodes) for g in graphs]),
        "edges": _list_of(edge_arr, n_edges),
        "outputs": _shape_list([g.outputs for g in graphs]),
        "meta": pa.array(
            [json.dumps(m, sort_keys=True, default=str) for m in metas],
            pa.string(),
        ),
    }
    table = pa.table(cols, schema=pa.schema(GRAPH_FIELDS))
    for name, values in (labels or {}).items():
        if name in cols:
            raise SchemaError(f"label column {name!r} clashes with a graph column; expected a name outside {GRAPH_COLUMNS}")
        table = table.append_column(name, values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values))
    return table


def _decode_shapes(arr: pa.ListArray) -> list[tuple[int, ...]]:
    """Decode a list<int32> column into tuples; equal shapes share one interned tuple."""
    n = len(arr)
    if n == 0:
        return []
    raw = arr.offsets.to_numpy().astype(np.int64)
    values = arr.values.to_numpy(zero_copy_only=False).astype(np.int64)[raw[0] : raw[-1]]
    offsets = raw - raw[0]
    lens = np.diff(offsets)
    width = int(lens.max()) + 1
    mat = np.zeros((n, width), dtype=np.int64)
    mat[:, 0] = lens
    if len(values):
        rows = np.repeat(np.arange(n), lens)
        cols = np.arange(len(values)) - np.repeat(offsets[:-1], lens) + 1
        mat[rows, cols] = values
    keys = np.ascontiguousarray(mat).view(np.dtype((np.void, 8 * width))).ravel().tolist()
    memo: dict[bytes, tuple[int, ...]] = {}
    out: list[tuple[int, ...]] = []
    append = out.append
    for i, k in enumerate(keys):
        t = memo.get(k)
        if t is None:
            row = mat[i].tolist()
            t = memo[k] = tuple(row[1 : 1 + row[0]])
        append(t)
    return out


def graphs_from_arrow(table: pa.Table, *, validate: bool = True) -> list[CompGraph]:
    """Rebuild CompGraphs from a table in the napbench schema (exact round trip)."""
    missing = [c for c in ("nodes", "edges", "outputs") if c not in table.column_names]
    if missing:
        raise SchemaError(f"table lacks graph column(s) {missing}; expected the napbench schema columns {GRAPH_COLUMNS}")
    if table.num_rows == 0:
        return []
    table = table.combine_chunks()
    nodes_col = table.column("nodes").chunk(0)
    edges_col = table.column("edges").chunk(0)
    # raw offsets index the full child arrays (a sliced table keeps its parents' buffers);
    # StructArray.flatten() gives children aligned with the struct, whatever its offset
    nstruct = nodes_col.values
    fields = dict(zip([f.name for f in NODE_TYPE], nstruct.flatten()))
    node_off = nodes_col.offsets.to_numpy().tolist()
    n_nodes = len(nstruct)
    defaults = {f.name: f.default for f in dataclasses.fields(Node)}
    columns = {
        f: _decode_field(f, fields[f]) if f in fields else [defaults[f]] * n_nodes for f in NODE_COLUMNS
    }
    # per-node input tuples, vectorised: edges are grouped by (graph, dst) in argument order
    e_off = edges_col.offsets.to_numpy().astype(np.int64)
    e_src_arr, e_dst_arr = edges_col.values.flatten()
    e_src = e_src_arr.to_numpy().astype(np.int64)[e_off[0] : e_off[-1]]
    e_dst = e_dst_arr.to_numpy().astype(np.int64)[e_off[0] : e_off[-1]]
    e_graph = np.repeat(np.arange(table.num_rows), np.diff(e_off))
    n_total = len(nstruct)
    e_node = e_dst + np.asarray(node_off[:-1], dtype=np.int64)[e_graph]
    order = np.argsort(e_node, kind="stable")
    src_sorted = e_src[order].tolist()
    in_off = np.zeros(n_total + 1, dtype=np.int64)
    np.cumsum(np.bincount(e_node, minlength=n_total), out=in_off[1:])
    in_off_l = in_off.tolist()
    all_inputs = [tuple(src_sorted[a:b]) for a, b in itertools.pairwise(in_off_l)]
    outputs = _decode_shapes(table.column("outputs").chunk(0))
    extra = table.column("meta").to_pylist() if "meta" in table.column_names else [None] * table.num_rows
    graphs: list[CompGraph] = []
    for r in range(table.num_rows):
        lo, hi = node_off[r], node_off[r + 1]
        nodes = tuple(map(Node, *(all_inputs[lo:hi] if f == "inputs" else columns[f][lo:hi] for f in NODE_FIELDS)))
        meta: dict[str, Any] = _decode_meta(extra[r], r)
        if validate:
            g = CompGraph(nodes, outputs[r], meta)
        else:
            g = CompGraph.__new__(CompGraph)
            object.__setattr__(g, "nodes", nodes)
            object.__setattr__(g, "outputs", outputs[r])
            object.__setattr__(g, "meta", meta)
        graphs.append(g)
    return graphs


def _file_metadata(extra: Mapping[str, Any] | None, label_columns: Sequence[str]) -> dict[bytes, bytes]:
    from napbench.conversion import CONVERTER_VERSION

    md = {
        "napbench.schema_version": SCHEMA_VERSION,
        "napbench.vocab_version": VOCAB_VERSION,
        "napbench.converter_version": CONVERTER_VERSION,
        "napbench.label_columns": json.dumps(list(label_columns)),
    }
    for k, v in (extra or {}).items():
        md[f"napbench.{k}"] = v if isinstance(v, str) else json.dumps(v, default=str)
    return {k.encode(): v.encode() for k, v in md.items()}


def is_napbench_parquet(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a Parquet file written by napbench (its footer has napbench metadata)."""
    try:
        md = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError, ValueError):
        return False
    return b"napbench.schema_version" in md or b"napbench.vocab_version" in md


def atomic_write_table(table: pa.Table, path: str | os.PathLike[str], *, row_group_size: int = 2048) -> Path:
    """Write ``table`` to ``path`` atomically; an existing file is replaced only if it is a napbench Parquet file."""
    path = Path(path)
    with atomic_file(path, is_ours=is_napbench_parquet, what="napbench Parquet file", suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size, write_page_checksum=True)
    return path


def write_graphs(
    graphs: Sequence[CompGraph],
    path: str | os.PathLike[str],
    *,
    labels: Mapping[str, Sequence[Any]] | None = None,
    metadata: Mapping[str, Any] | None = None,
    append: bool = False,
) -> Path:
    """Write graphs (and label columns) to a Parquet dataset file, atomically.

    With ``append=True`` an existing file's rows are kept and the new ones added after them
    (its vocabulary version must match).
    """
    table = graphs_to_arrow(graphs, labels)
    path = Path(path)
    label_cols = list(labels or {})
    if append and path.exists():
        old = read_table(path)
        old_labels = json.loads((old.schema.metadata or {}).get(b"napbench.label_columns", b"[]"))
        table = pa.concat_tables([old.replace_schema_metadata(None), table], promote_options="default")
        label_cols = list(dict.fromkeys(old_labels + label_cols))
    table = table.replace_schema_metadata(_file_metadata(metadata, label_cols))
    return atomic_write_table(table, path)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The napbench key-value metadata of a Parquet file (values JSON-decoded where possible).

    Raises :class:`SchemaError` for a file that is not Parquet, has no napbench metadata or
    was written with another schema version than this napbench reads.
    """
    path = Path(path)
    if path.is_dir():
        raise SchemaError(f"dataset {str(path)!r} is a folder; expected a napbench Parquet file")
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {str(path)!r} not found; expected a napbench Parquet file")
    try:
        md = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SchemaError(f"{str(path)!r} is not a readable Parquet file ({_first_line(exc)}); expected a napbench dataset") from None
    out: dict[str, Any] = {}
    for k, v in md.items():
        key = k.decode("utf-8", "replace")
        if key.startswith("napbench."):
            val = v.decode("utf-8", "replace")
            try:
                out[key[9:]] = json.loads(val)
            except json.JSONDecodeError:
                out[key[9:]] = val
    if "vocab_version" not in out:
        raise SchemaError(f"{str(path)!r} has no napbench metadata; expected a file written by napbench")
    found = str(out.get("schema_version"))
    if found != SCHEMA_VERSION:
        raise SchemaError(
            f"{str(path)!r} has napbench schema version {found}; this napbench reads schema version {SCHEMA_VERSION}"
            " (rebuild or reconvert the dataset with this napbench)"
        )
    return {k: (str(v) if k.endswith("_version") else v) for k, v in out.items()}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _decode_meta(text: str | None, row: int) -> dict[str, Any]:
    if not text:
        return {}
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise SchemaError(f"row {row}: the 'meta' column is not JSON ({text[:40]!r}); expected a JSON object") from None
    if not isinstance(meta, dict):
        raise SchemaError(f"row {row}: the 'meta' column holds a JSON {type(meta).__name__}; expected a JSON object")
    return meta


def check_versions(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Raise :class:`VersionMismatchError` if ``path`` was written with another vocabulary."""
    md = read_metadata(path)
    if md.get("vocab_version") != VOCAB_VERSION:
        raise VersionMismatchError(
            f"{str(path)!r} uses op vocabulary {md.get('vocab_version')}, expected {VOCAB_VERSION}; rebuild the dataset"
        )
    return md


def num_rows(path: str | os.PathLike[str]) -> int:
    """How many graphs a napbench Parquet file holds (read from its footer)."""
    check_versions(path)
    try:
        return int(pq.read_metadata(path).num_rows)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SchemaError(f"{str(path)!r} is not a readable Parquet file ({_first_line(exc)}); expected a napbench dataset") from None


def read_table(path: str | os.PathLike[str], *, columns: Sequence[str] | None = None) -> pa.Table:
    """The raw Arrow table of a napbench Parquet file (every graph column must be present)."""
    check_versions(path)
    try:
        names = pq.read_schema(path).names
        missing = [c for c in (columns or GRAPH_COLUMNS) if c not in names]
        if missing:
            raise SchemaError(
                f"{str(path)!r} lacks column(s) {missing}; expected the napbench schema columns {GRAPH_COLUMNS}"
            )
        return pq.read_table(path, columns=list(columns) if columns else None, page_checksum_verification=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc, SchemaError):
            raise
        raise SchemaError(f"{str(path)!r} is corrupt ({_first_line(exc)}); expected a readable napbench dataset") from None


def read_graphs(
    path: str | os.PathLike[str], *, rows: Iterable[int] | None = None, validate: bool = True
) -> list[CompGraph]:
    """All graphs of a napbench Parquet file (or the given row indices)."""
    table = read_table(path, columns=GRAPH_COLUMNS)
    if rows is not None:
        table = table.take(list(rows))
    try:
        return graphs_from_arrow(table, validate=validate)
    except (pa.ArrowException, IndexError, KeyError, TypeError, OverflowError) as exc:
        raise SchemaError(f"{str(path)!r} holds malformed graph rows ({type(exc).__name__}: {_first_line(exc)}); "
                          "expected graphs written by napbench") from None


def scan_graphs(path: str | os.PathLike[str]) -> Any:
    """A lazy ``polars.LazyFrame`` over a napbench Parquet file (nothing is read until collect)."""
    import polars as pl

    check_versions(path)
    return pl.scan_parquet(path)
