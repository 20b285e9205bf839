"""On large joins the picked feature values are gathered as rows (``_pit._gather_rows``:
the 64-bit columns side by side with a word of validity bits): the result must be
Arrow's ``take`` exactly — every type, nulls in the values and in the picks, sliced and
multi-chunk columns, no pick at all. The size thresholds are lowered so that small
hypothesis-generated inputs take the row path in several pieces."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml.features import _pit


def _columns(rng: np.random.Generator, n: int, chunks: int) -> list[pa.ChunkedArray]:
    def nulls() -> np.ndarray:
        return rng.random(n + 3) < 0.2

    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    arrays = [
        pa.array(rng.random(n + 3), mask=nulls()),
        pa.array(rng.integers(-(2**62), 2**62, n + 3), pa.int64(), mask=nulls()),
        pa.array(rng.integers(0, 2**63, n + 3).astype(np.uint64), pa.uint64()),
        pa.array(
            [t0 + timedelta(seconds=int(s)) for s in rng.integers(0, 10**6, n + 3)],
            pa.timestamp("us", tz="UTC"),
            mask=nulls(),
        ),
        pa.array(rng.integers(0, 10**9, n + 3), pa.duration("ms"), mask=nulls()),
        pa.array([f"v{v}" for v in rng.integers(0, 99, n + 3)], mask=nulls()),  # a taken column
        pa.array(rng.random(n + 3).astype(np.float32), mask=nulls()),  # 32-bit: taken
        pa.array(rng.random(n + 3) < 0.5, mask=nulls()),  # bool: taken
    ]
    out = []
    for array in arrays:
        array = array.slice(3)  # an offset into the buffers
        cuts = sorted(set(rng.integers(0, n + 1, chunks).tolist()) | {0, n})
        pieces = [array.slice(a, b - a) for a, b in itertools.pairwise(cuts)]
        out.append(pa.chunked_array(pieces, array.type))
    return out


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 200),
    m=st.integers(0, 400),
    chunks=st.integers(1, 4),
    unpicked=st.sampled_from([0.0, 0.3, 1.0]),
    piece=st.sampled_from([8, 40, 1 << 16]),  # entity rows per piece: a multiple of 8
)
def test_gathered_rows_are_arrows_take(seed: int, n: int, m: int, chunks: int, unpicked: float, piece: int) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    columns = _columns(rng, n, chunks)
    picks = np.where(rng.random(m) < unpicked, -1, rng.integers(0, n, m)).astype(np.int64)
    expected = [column.take(pa.array(picks, mask=picks < 0)) for column in columns]
    saved = _pit._PARALLEL_GATHER_ROWS, _pit._GATHER_PIECE_ROWS, _pit._ROWS_GATHER_FROM
    _pit._PARALLEL_GATHER_ROWS, _pit._GATHER_PIECE_ROWS, _pit._ROWS_GATHER_FROM = 0, piece, 0
    try:
        got = _pit._gather(columns, picks)
    finally:
        _pit._PARALLEL_GATHER_ROWS, _pit._GATHER_PIECE_ROWS, _pit._ROWS_GATHER_FROM = saved
    for column, want, have in zip(columns, expected, got, strict=True):
        assert have.type == column.type
        assert have.to_pylist() == want.to_pylist()


def test_the_row_path_is_taken_for_64_bit_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    columns = _columns(rng, 50, 2)
    seen: list[int] = []
    original = _pit._gather_rows

    def spy(cols: list[pa.ChunkedArray], picks: np.ndarray) -> list[pa.ChunkedArray]:
        seen.append(len(cols))
        return original(cols, picks)

    monkeypatch.setattr(_pit, "_gather_rows", spy)
    monkeypatch.setattr(_pit, "_PARALLEL_GATHER_ROWS", 0)
    _pit._gather(columns, rng.integers(0, 50, 149).astype(np.int64))
    assert seen == []  # under three picks per feature row: Arrow's take
    _pit._gather(columns, rng.integers(0, 50, 150).astype(np.int64))
    assert seen == [5]  # float64, int64, uint64, timestamp, duration
