from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hypothesis.strategies as st
import pyarrow as pa
from hypothesis import given, settings

from prodml.core import fingerprint_file, fingerprint_table

values = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(-(2**40), 2**40)),
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
        st.one_of(st.none(), st.text(max_size=6)),
        st.one_of(st.none(), st.booleans()),
        st.one_of(st.none(), st.integers(0, 10**6)),
    ),
    max_size=40,
)


def _table(rows: list[tuple[object, ...]]) -> pa.Table:
    base = datetime(2013, 1, 1, tzinfo=UTC)
    return pa.table(
        {
            "i": pa.array([r[0] for r in rows], pa.int64()),
            "f": pa.array([r[1] for r in rows], pa.float64()),
            "s": pa.array([r[2] for r in rows], pa.string()),
            "b": pa.array([r[3] for r in rows], pa.bool_()),
            "t": pa.array(
                [None if r[4] is None else base + timedelta(seconds=r[4]) for r in rows],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


@settings(max_examples=150, deadline=None)
@given(values, st.lists(st.integers(0, 40), max_size=4))
def test_fingerprint_ignores_chunking(rows: list[tuple[object, ...]], cuts: list[int]) -> None:
    table = _table(rows)
    points = sorted({min(c, table.num_rows) for c in cuts} | {0, table.num_rows})
    pieces = [table.slice(a, b - a) for a, b in itertools.pairwise(points)]
    rechunked = pa.concat_tables(pieces) if pieces else table
    assert fingerprint_table(rechunked) == fingerprint_table(table)


@settings(max_examples=150, deadline=None)
@given(values, values)
def test_different_tables_have_different_fingerprints(
    a: list[tuple[object, ...]], b: list[tuple[object, ...]]
) -> None:
    ta, tb = _table(a), _table(b)
    if ta.equals(tb):
        assert fingerprint_table(ta) == fingerprint_table(tb)
    elif not _same_up_to_nan(ta, tb):
        assert fingerprint_table(ta) != fingerprint_table(tb)


def _same_up_to_nan(a: pa.Table, b: pa.Table) -> bool:
    return a.num_rows == b.num_rows and a.to_pandas().equals(b.to_pandas())


def test_every_row_counts_beyond_ten_thousand() -> None:
    n = 50_000
    a = pa.table({"x": pa.array(range(n), pa.int64())})
    b = pa.table({"x": pa.array([*range(n - 1), -1], pa.int64())})
    assert fingerprint_table(a) != fingerprint_table(b)


def test_schema_counts() -> None:
    a = pa.table({"x": pa.array([1, 2], pa.int64())})
    assert fingerprint_table(a) != fingerprint_table(pa.table({"y": pa.array([1, 2], pa.int64())}))
    assert fingerprint_table(a) != fingerprint_table(pa.table({"x": pa.array([1, 2], pa.int32())}))


def test_null_slot_bytes_do_not_count() -> None:
    a = pa.array([1, None, 3], pa.int64())
    b = pa.array([1, 99, 3], pa.int64())
    masked = pa.Array.from_buffers(pa.int64(), 3, [a.buffers()[0], b.buffers()[1]])
    assert fingerprint_table(pa.table({"x": a})) == fingerprint_table(pa.table({"x": masked}))


def test_file_fingerprint_reads_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 3_000_000)
    first = fingerprint_file(path)
    path.write_bytes(b"a" * 2_999_999 + b"b")
    assert fingerprint_file(path) != first
