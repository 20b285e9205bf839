"""A large point-in-time join runs partition by partition (``_pit_plan._partitioned``):
both sides split by a hash of their keys. It must pick exactly what one plan over all
rows picks — for every plan (packed, running, grouped, the NumPy one), key kinds of
different widths and layouts on the two sides, several keys, null keys, ties, TTL
bounds, guard on and off, inclusive and strict. The partition threshold is lowered so
that small hypothesis-generated joins split into many partitions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml.features import _pit_plan
from prodml.features._pit import JoinView, point_in_time_join
from prodml.features._pit_plan import pick_rows

KEY_KINDS = {
    "int64/int64": (pa.int64(), pa.int64()),
    "int32/int64": (pa.int32(), pa.int64()),
    "uint8/int64": (pa.uint8(), pa.int64()),
    "string/large_string": (pa.string(), pa.large_string()),
    "float32/float64": (pa.float32(), pa.float64()),
    "binary/binary": (pa.binary(), pa.binary()),
}


def _key_values(kind: pa.DataType, raw: np.ndarray, nulls: np.ndarray) -> pa.ChunkedArray:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values: Any = [f"k{v}" for v in raw.tolist()]
    elif pa.types.is_binary(kind):
        values = [f"k{v}".encode() for v in raw.tolist()]
    elif pa.types.is_floating(kind):
        values = (raw / 2).tolist()  # halves: exact in float32 and float64
    else:
        values = raw.tolist()
    return pa.chunked_array([pa.array(values, kind, mask=nulls)])


def _case(
    seed: int, n: int, kinds: tuple[pa.DataType, pa.DataType], keys: int, per_row: float = 0.5
) -> dict[str, Any]:
    """``n`` feature rows and ``per_row`` entity rows per feature row."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 12, (keys, n))
    event = rng.integers(0, 100, n) * 10
    created = event + np.where(rng.random(n) < 0.3, rng.integers(0, 200, n), 0)
    m = max(1, int(n * per_row))
    pick = rng.integers(0, n, m)
    kind = rng.random(m)
    entity_raw = np.where(kind < 0.7, raw[:, pick], rng.integers(0, 14, (keys, m)))
    times = rng.integers(-10, 1_200, m)
    times = np.where(kind < 0.25, event[pick], times)
    times = np.where((kind >= 0.25) & (kind < 0.4), created[pick], times)
    times = np.where((kind >= 0.4) & (kind < 0.5), event[pick] + 300, times)  # the TTL bound

    def nulls(size: int, share: float) -> np.ndarray:
        return rng.random(size) < share

    return {
        "entity_keys": [_key_values(kinds[0], entity_raw[k], nulls(m, 0.03)) for k in range(keys)],
        "feature_keys": [_key_values(kinds[1], raw[k], nulls(n, 0.03)) for k in range(keys)],
        "entity_times": pa.chunked_array([pa.array(times, pa.int64())]),
        "event": pa.chunked_array([pa.array(event, pa.int64(), mask=nulls(n, 0.02))]),
        "created": pa.chunked_array([pa.array(created, pa.int64(), mask=nulls(n, 0.1))]),
    }


def _pick(
    case: dict[str, Any], partition_rows: int, probe_rows: int | None = None, **options: Any
) -> list[tuple[int, int]]:
    """The picks with partitions of ``partition_rows`` rows and, with ``probe_rows``, the
    NumPy plan's entity side in pieces of that many rows on threads."""
    names = ("_PARTITION_ROWS", "_PROBE_ROWS", "_PARALLEL_ROWS")
    saved = [getattr(_pit_plan, name) for name in names]
    _pit_plan._PARTITION_ROWS = partition_rows
    if probe_rows is not None:
        _pit_plan._PROBE_ROWS, _pit_plan._PARALLEL_ROWS = probe_rows, 0
    try:
        rows, ords = pick_rows(duckdb.connect(), name="t", **case, **options)
    finally:
        for name, value in zip(names, saved, strict=True):
            setattr(_pit_plan, name, value)
    assert len(set(rows.tolist())) == len(rows)  # one pick per entity row at most
    return sorted(zip(rows.tolist(), ords.tolist(), strict=True))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    kinds=st.sampled_from(sorted(KEY_KINDS)),
    keys=st.integers(1, 2),
    created=st.booleans(),
    guard=st.booleans(),
    ttl=st.sampled_from([None, 0, 300, 5_000]),
    inclusive=st.booleans(),
    partition_rows=st.integers(2, 60),
    probe_rows=st.sampled_from([None, 1, 7, 50]),
    per_row=st.sampled_from([0.5, 4.0]),
)
def test_partitions_pick_what_one_plan_over_all_rows_picks(
    seed: int, n: int, kinds: str, keys: int, created: bool, guard: bool, ttl: int | None,
    inclusive: bool, partition_rows: int, probe_rows: int | None, per_row: float,
) -> None:  # fmt: skip
    case = _case(seed, n, KEY_KINDS[kinds], keys, per_row)
    if not created:
        case["created"] = None
    options = {"guard": guard and created, "ttl": ttl, "inclusive": inclusive}
    whole = _pick(case, 10**12, **options)
    assert _pick(case, partition_rows, **options) == whole
    assert _pick(case, 10**12, probe_rows, **options) == whole  # entity side in pieces


@pytest.mark.parametrize("parts", [3, 17])
def test_a_partitioned_join_returns_the_same_table(monkeypatch: pytest.MonkeyPatch, parts: int) -> None:  # fmt: skip
    rng = np.random.default_rng(parts)
    n = 2_000
    t0 = datetime(2024, 1, 1)
    event = [t0 + timedelta(minutes=int(m)) for m in rng.integers(0, 5_000, n)]
    con = duckdb.connect()
    con.register("trips", pa.table({
        "driver": rng.integers(0, 50, n), "ts": event, "x": rng.random(n),
        "created": [e + timedelta(minutes=int(d)) for e, d in zip(event, rng.integers(0, 90, n), strict=True)],
    }))  # fmt: skip
    entities = pa.table({
        "driver": rng.integers(0, 55, n),
        "at": [t0 + timedelta(minutes=int(m)) for m in rng.integers(0, 5_200, n)],
    })  # fmt: skip
    view = JoinView("trips", "trips", (("driver", "driver"),), "ts", "created",
                    timedelta(days=2), (("x", "trips__x"),))  # fmt: skip
    whole = point_in_time_join(con, entities, "at", [view])
    monkeypatch.setattr(_pit_plan, "_PARTITION_ROWS", (2 * n) // parts)
    split = point_in_time_join(con, entities, "at", [view])
    assert split.equals(whole)
    assert whole["trips__x"].null_count < n  # the join found something
