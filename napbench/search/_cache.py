"""Per-cell score caches that outlive a process (zero-cost proxies cost CPU; labels do not).

Zero-cost predictors (``zc:*``) keep every proxy value per key (``PROXY_KEY_FIELDS``: family, arch,
proxy, input size, batch size, seed, input source, network maker) in their :class:`~napbench.zoo.baselines.ProxyCache`;
:func:`save_score_cache` writes those values to a Parquet file and :func:`load_score_cache`
seeds a predictor's cache from one, so repeated searches (seeds, strategies, N) score each
cell once. Predictors without such a cache are left alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from napbench._io import atomic_file
from napbench.errors import SchemaError
from napbench.zoo.baselines import PROXY_KEY_FIELDS

_KEY_TYPES = {"family": pa.string(), "arch": pa.string(), "proxy": pa.string(), "input_size": pa.int64(),
              "batch_size": pa.int64(), "seed": pa.int64(), "inputs": pa.string(), "network": pa.string()}
SCHEMA = pa.schema([*((f, _KEY_TYPES[f]) for f in PROXY_KEY_FIELDS), ("value", pa.float64())])


def _values(predictor: Any) -> dict[tuple[Any, ...], float | None] | None:
    cache = getattr(predictor, "cache", None)
    values = getattr(cache, "values", None)
    return values if isinstance(values, dict) else None


def _is_cache_file(path: Path) -> bool:
    try:
        return {"family", "arch", "proxy", "value"} <= set(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - unreadable: not ours
        return False


def load_score_cache(predictor: Any, path: str | os.PathLike[str]) -> int:
    """Seed ``predictor``'s proxy cache from ``path`` (missing file: nothing); returns entries added."""
    values = _values(predictor)
    p = Path(path)
    if values is None or not p.exists():
        return 0
    if not _is_cache_file(p):
        raise SchemaError(f"{str(p)!r} is not a napbench score cache; expected a Parquet file with columns {SCHEMA.names}")
    missing = sorted(set(SCHEMA.names) - set(pq.read_schema(p).names))
    if missing:
        raise SchemaError(f"score cache {str(p)!r} lacks columns {missing} (written by an older napbench); "
                          f"expected columns {SCHEMA.names}: delete it to recompute")
    t = pq.read_table(p, columns=SCHEMA.names).to_pylist()
    n = 0
    for r in t:
        key = tuple(r[f] for f in PROXY_KEY_FIELDS)
        if key not in values:
            values[key] = r["value"]
            n += 1
    return n


def save_score_cache(predictor: Any, path: str | os.PathLike[str]) -> int:
    """Write ``predictor``'s proxy cache to ``path`` (replacing only a score cache); returns rows written."""
    values = _values(predictor)
    if not values:
        return 0
    rows = [dict(zip(SCHEMA.names, (*k, v))) for k, v in values.items()]
    with atomic_file(path, is_ours=_is_cache_file, what="score cache", suffix=".parquet") as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp)
    return len(rows)
