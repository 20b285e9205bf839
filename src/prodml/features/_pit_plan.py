"""Choosing and running the query that picks one feature row per entity row.

Three plans (SQL in ``_pit_sql``):

- **packed** — no created time: ``(event time, ordinal)`` packed into one int64 when the
  event-time span and the row count fit in 62 bits (30 days in microseconds and a
  million rows take 62), so one as-of join resolves ties without a group-by;
- **latest** — created time without the guard, or times too wide to pack: per
  ``(keys, event time)`` the latest ``(created time, ordinal)``, then the as-of join;
- **visible** — created time with the guard: running best over visibility time.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from prodml.features._pit_sql import latest_sql, packed_sql, visible_sql

__all__ = ["INT64_MIN", "pick_rows"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_PACK_BITS = 62

Positions = npt.NDArray[np.int64]


def pick_rows(
    con: duckdb.DuckDBPyConnection,
    *,
    entity_keys: Sequence[pa.ChunkedArray],
    entity_times: pa.ChunkedArray,
    feature_keys: Sequence[pa.ChunkedArray],
    event: pa.ChunkedArray,
    created: pa.ChunkedArray | None,
    guard: bool,
    ttl: int | None,
    name: str,
) -> tuple[Positions, Positions]:
    """Positions ``(entity row, feature row)`` of every entity row that picks a feature row.

    Times are int64 epoch counts of one unit, ``ttl`` in the same unit; ``name`` prefixes
    the two Arrow tables registered on ``con`` while the query runs.
    """
    if event.null_count == len(event):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if ttl is not None and ttl > INT64_MAX:
        ttl = None  # longer than any span between two int64 times in the same unit
    n_entities = len(entity_times)
    entity_cols = {f"__k{i}": _plain(key) for i, key in enumerate(entity_keys)}
    entity_cols["__row"] = pa.chunked_array([np.arange(n_entities, dtype=np.int64)])
    feature_cols = {f"__k{i}": _plain(key) for i, key in enumerate(feature_keys)}
    lows = None if ttl is None else _lower_bounds(entity_times, ttl)
    ords = pa.chunked_array([np.arange(len(event), dtype=np.int64)])
    entities, features = f"{name}_entities", f"{name}_features"
    bits = _pack_bits(event) if created is None else None
    if bits is not None:
        low, high = _min_max(event)
        mask = (1 << bits) - 1
        feature_cols["__v"] = pc.bit_wise_or(pc.multiply(pc.subtract(event, low), 1 << bits), ords)
        entity_cols["__v"] = pc.bit_wise_or(_packed(entity_times, low, high, bits), mask)
        if lows is not None:
            entity_cols["__lo"] = _packed(lows, low, high + 1, bits)
        sql = packed_sql(entities, features, n_keys=len(entity_keys), mask=mask, ttl=ttl is not None)
    else:
        feature_cols["__et"] = event
        feature_cols["__ct"] = (
            pa.chunked_array([np.full(len(event), INT64_MIN, dtype=np.int64)])
            if created is None
            else pc.fill_null(created, INT64_MIN)
        )
        feature_cols["__ord"] = ords
        entity_cols["__t"] = entity_times
        if lows is not None:
            entity_cols["__lo"] = lows
        plan = visible_sql if guard and created is not None else latest_sql
        sql = plan(entities, features, n_keys=len(entity_keys), ttl=ttl is not None)
    con.register(entities, pa.table(entity_cols))
    con.register(features, pa.table(feature_cols))
    try:
        result = con.sql(sql).to_arrow_table()
    finally:
        con.unregister(entities)
        con.unregister(features)
    return _positions(result.column("__row")), _positions(result.column("__ord"))


def _plain(key: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary-encoded keys decoded, so DuckDB compares values rather than two enum types."""
    if pa.types.is_dictionary(key.type):
        return key.cast(key.type.value_type)
    return key


def _positions(column: pa.ChunkedArray) -> Positions:
    if column.num_chunks == 0:
        return np.empty(0, np.int64)
    return np.asarray(column.to_numpy(), dtype=np.int64)


def _min_max(values: pa.ChunkedArray) -> tuple[int, int]:
    bounds = pc.min_max(values)
    return int(bounds["min"].as_py()), int(bounds["max"].as_py())


def _pack_bits(event: pa.ChunkedArray) -> int | None:
    """Bits for the ordinal when ``(event time - min, ordinal)`` packs into 62 bits, else None."""
    low, high = _min_max(event)
    if low == INT64_MIN or high == INT64_MAX:
        return None
    bits = max(1, len(event).bit_length())
    span = high + 1 - low
    return bits if span.bit_length() + bits <= _PACK_BITS else None


def _packed(times: pa.ChunkedArray, low: int, high: int, bits: int) -> pa.ChunkedArray:
    """``(clip(times, low - 1, high) - low) << bits``: below ``low`` packs to ``-2**bits``
    (before every feature row), above ``high`` to ``high`` (after every one)."""
    clipped = pc.min_element_wise(pc.max_element_wise(times, low - 1), high)
    return pc.multiply(pc.subtract(clipped, low), 1 << bits)


def _lower_bounds(times: pa.ChunkedArray, ttl: int) -> pa.ChunkedArray:
    """``times - ttl``, saturating at the smallest int64 instead of wrapping."""
    return pc.subtract(pc.max_element_wise(times, INT64_MIN + ttl), ttl)
