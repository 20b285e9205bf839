"""The records query's rows come back in any batch order (DuckDB interleaves its
threads' batches), a record answered several times has a row per answer: the analysis
puts every column back in record order and keeps each record's best answer — checked
against a brute-force reordering on hypothesis-generated batch splits."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml.rollout._analysis_data import _Records
from prodml.rollout._analysis_sources import Sources

FILE_BITS = 32


def _sources(file_rows: list[int]) -> Sources:
    offsets = np.concatenate([[0], np.cumsum(file_rows)[:-1]]).astype(np.int64)
    return Sources(True, True, offsets, int(sum(file_rows)))


def _keys(file_rows: list[int]) -> np.ndarray:
    return np.concatenate(
        [(np.int64(f) << FILE_BITS) + np.arange(n, dtype=np.int64) for f, n in enumerate(file_rows)]
    )


@st.composite
def query_output(draw: Any) -> dict[str, Any]:
    """Records of a few files, some left out (a time window), some answered several
    times (each answer its own rank and pos), as a table cut into batches in any order."""
    file_rows = draw(st.lists(st.integers(1, 12), min_size=1, max_size=4))
    keys = _keys(file_rows)
    size = len(keys)
    kept = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    if not any(kept):
        kept[0] = True
    answers = draw(st.lists(st.integers(1, 3), min_size=size, max_size=size))
    duplicated = draw(st.booleans())
    rows: list[tuple[int, int, float, int, int]] = []  # (global id, key, label, rank, pos)
    for gid in range(size):
        if not kept[gid]:
            continue
        for a in range(answers[gid] if duplicated else 1):
            label = draw(st.sampled_from([0.0, 1.0, math.nan]))
            rows.append((gid, int(keys[gid]), label, draw(st.integers(0, 3)), gid * 10 + a))
    order = draw(st.permutations(range(len(rows))))
    rows = [rows[i] for i in order]
    cuts = sorted(draw(st.sets(st.integers(1, max(len(rows) - 1, 1)), max_size=5)))
    return {"file_rows": file_rows, "rows": rows, "cuts": cuts}


def _table(rows: list[tuple[int, int, float, int, int]], cuts: list[int]) -> pa.Table:
    columns = {
        "_i": pa.array([r[1] for r in rows], pa.int64()),
        "time_us": pa.array([r[0] * 7 for r in rows], pa.int64()),
        "latency_ms": pa.array([float(r[0]) / 3 for r in rows]),
        "label": pa.array([r[2] for r in rows], pa.float64()),
        "reward": pa.array([r[2] * 2 for r in rows], pa.float64()),
        "rank": pa.array([r[3] for r in rows], pa.int64()),
        "pos": pa.array([r[4] for r in rows], pa.int64()),
    }
    table = pa.table(columns)
    bounds = [0, *[c for c in cuts if c < len(rows)], len(rows)]
    batches = [table.slice(a, b - a).to_batches()[0] for a, b in itertools.pairwise(bounds) if b > a]  # fmt: skip
    return pa.Table.from_batches(batches, table.schema)


@settings(max_examples=200, deadline=None)
@given(query_output())
def test_rows_come_back_in_record_order_with_each_records_best_answer(case: dict[str, Any]) -> None:
    rows, sources = case["rows"], _sources(case["file_rows"])
    table = _table(rows, case["cuts"])
    ids = sorted({r[0] for r in rows})
    once = len(ids) == len(rows)
    unranked = _Records.of(table, sources, ranked=False)
    if not once:
        assert unranked is None  # the caller reruns the query with ranks
    records = _Records.of(table, sources, ranked=True)
    assert records is not None
    assert records.ids.tolist() == ids
    assert records.column("time_us", np.int64).tolist() == [i * 7 for i in ids]
    assert records.column("latency_ms", np.float64).tolist() == [i / 3 for i in ids]
    best: dict[int, tuple[int, int, float]] = {}  # brute force: finite, largest (rank, pos)
    for gid, _, label, rank, pos in rows:
        if math.isfinite(label) and (gid not in best or (rank, pos) > best[gid][:2]):
            best[gid] = (rank, pos, label)
    expected = [best[i][2] if i in best else math.nan for i in ids]
    np.testing.assert_array_equal(records.label, expected)
    np.testing.assert_array_equal(records.reward, np.asarray(expected) * 2)
    extra = records.extra(["time_us"])
    assert extra["time_us"].to_pylist() == [i * 7 for i in ids]
