"""profile(): statistics checked against NumPy/pandas brute force, and robustness."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml.core.errors import DefinitionError, SchemaError
from prodml.validation import QUANTILES, ColumnProfile, Profile, profile

LEVELS = list(QUANTILES.values())
SPECIAL = st.sampled_from([math.nan, math.inf, -math.inf])
FLOATS = st.one_of(st.floats(-1e9, 1e9), SPECIAL, st.none())


def _chunked(
    values: Sequence[object], split: int, kind: pa.DataType | None = None
) -> pa.ChunkedArray:
    """The values as a chunked array cut at ``split`` (chunking must not matter)."""
    split = min(split, len(values))
    chunks = [pa.array(values[:split], type=kind), pa.array(values[split:], type=kind)]
    return pa.chunked_array(chunks, type=chunks[0].type)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(FLOATS, max_size=60), split=st.integers(0, 60))
def test_float_profile_matches_numpy(values: list[float | None], split: int) -> None:
    column = profile(pa.table({"x": _chunked(values, split, pa.float64())})).column("x")
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    finite = present[np.isfinite(present)]
    assert column.dtype == "float64"
    assert column.count == len(present)
    assert column.null_count == len(values) - len(present)
    assert column.null_rate == (column.null_count / len(values) if values else 0.0)
    assert column.nan_count == int(np.isnan(present).sum())
    assert column.inf_count == int(np.isinf(present).sum())
    assert column.distinct_count == pd.Series(present, dtype="float64").nunique(dropna=False)
    if len(finite) == 0:
        assert column.min is None
        assert column.mean is None
        assert column.quantiles is None
        return
    assert (column.min, column.max) == (finite.min(), finite.max())
    assert column.mean == pytest.approx(finite.mean(), rel=1e-9, abs=1e-6)
    if len(finite) > 1:
        assert column.std == pytest.approx(finite.std(ddof=1), rel=1e-9, abs=1e-6)
    else:
        assert column.std is None
    assert column.quantiles is not None
    expected = np.quantile(finite, LEVELS)
    assert list(column.quantiles.values()) == pytest.approx(expected.tolist(), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.one_of(st.integers(-(2**40), 2**40), st.none()), max_size=50),
    split=st.integers(0, 50),
)
def test_int_profile_matches_pandas(values: list[int | None], split: int) -> None:
    column = profile(pa.table({"n": _chunked(values, split, pa.int64())})).column("n")
    series = pd.Series(values, dtype="Int64").dropna()
    assert column.count == len(series)
    assert column.distinct_count == series.nunique()
    if series.empty:
        return
    assert column.min == int(series.min())
    assert isinstance(column.min, int)
    assert column.max == int(series.max())
    assert column.mean == pytest.approx(float(series.mean()), rel=1e-9)
    assert column.quantiles is not None
    expected = np.quantile(series.to_numpy(dtype=np.int64), LEVELS)
    assert list(column.quantiles.values()) == pytest.approx(expected.tolist(), rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.text(max_size=6), st.sampled_from(["AA", "B6"]), st.none()), max_size=40
    ),
    dictionary=st.booleans(),
)
def test_string_profile_matches_brute_force(values: list[str | None], dictionary: bool) -> None:
    array = pa.array(values, type=pa.string())
    if dictionary:
        array = array.dictionary_encode()
    column = profile(pa.table({"s": array}), top_k=3, category_limit=10).column("s")
    present = [v for v in values if v is not None]
    counts = Counter(present)
    assert column.dtype == "string"
    assert column.count == len(present)
    assert column.distinct_count == len(counts)
    if not present:
        return
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0].encode()))[:3]
    assert [(c.value, c.count) for c in column.top_categories or []] == ranked
    assert column.categories == (sorted(counts, key=str.encode) if len(counts) <= 10 else None)
    assert (column.min, column.max) == (min(present), max(present))
    assert (column.min_length, column.max_length) == (
        min(map(len, present)),
        max(map(len, present)),
    )
    assert column.char_classes == _char_classes(present)


def _char_classes(values: list[str]) -> list[str]:
    chars = set("".join(values))
    found = {
        "digit": any("0" <= c <= "9" for c in chars),
        "lower": any("a" <= c <= "z" for c in chars),
        "upper": any("A" <= c <= "Z" for c in chars),
        "other": any(not (c.isascii() and c.isalnum()) for c in chars),
    }
    return sorted(name for name, present in found.items() if present)


@pytest.mark.parametrize("tz", [None, "UTC", "America/New_York"])
def test_timestamps_naive_and_aware(tz: str | None) -> None:
    start = dt.datetime(2013, 1, 1)
    values = [start + dt.timedelta(hours=h) for h in (0, 5, 10, 20)] + [None]
    column = profile(pa.table({"t": pa.array(values, type=pa.timestamp("us", tz=tz))})).column("t")
    suffix = "" if tz is None else "Z"
    assert column.dtype == "timestamp"
    assert (column.count, column.null_count, column.distinct_count) == (4, 1, 4)
    assert column.min == "2013-01-01T00:00:00.000000" + suffix
    assert column.max == "2013-01-01T20:00:00.000000" + suffix
    assert column.quantiles is not None
    assert column.quantiles["p50"] == "2013-01-01T07:30:00.000000" + suffix


def test_dates_and_date64() -> None:
    days = [dt.date(2013, 1, 1), dt.date(2013, 12, 31), None]
    table = pa.table({"d": pa.array(days, pa.date32()), "d64": pa.array(days, pa.date64())})
    result = profile(table)
    for name in ("d", "d64"):
        column = result.column(name)
        assert (column.dtype, column.min, column.max) == ("date", "2013-01-01", "2013-12-31")


def test_booleans_top_categories() -> None:
    column = profile(pa.table({"b": [True, False, True, None]})).column("b")
    assert column.dtype == "bool"
    assert [(c.value, c.count) for c in column.top_categories or []] == [(True, 2), (False, 1)]
    assert column.distinct_count == 2


def test_empty_table() -> None:
    table = pa.table(
        {
            "f": pa.array([], pa.float64()),
            "s": pa.array([], pa.string()),
            "t": pa.array([], pa.timestamp("ns")),
            "b": pa.array([], pa.bool_()),
        }
    )
    result = profile(table)
    assert result.row_count == 0
    for column in result.columns.values():
        assert (column.count, column.null_count, column.null_rate) == (0, 0, 0.0)
        assert column.min is None
        assert column.quantiles is None


@pytest.mark.parametrize(
    "kind", [pa.float64(), pa.int32(), pa.string(), pa.null(), pa.timestamp("s")]
)
def test_all_null_column(kind: pa.DataType) -> None:
    column = profile(pa.table({"x": pa.array([None] * 5, type=kind)})).column("x")
    assert (column.count, column.null_count, column.null_rate) == (0, 5, 1.0)
    assert column.distinct_count == 0
    assert column.min is None


def test_constant_column() -> None:
    column = profile(pa.table({"x": [7.0] * 10})).column("x")
    assert (column.min, column.max, column.mean, column.std) == (7.0, 7.0, 7.0, 0.0)
    assert column.quantiles is not None
    assert set(column.quantiles.values()) == {7.0}
    assert column.distinct_count == 1


def test_only_non_finite_floats() -> None:
    column = profile(pa.table({"x": [math.nan, math.inf, -math.inf, None]})).column("x")
    assert (column.nan_count, column.inf_count, column.count) == (1, 2, 3)
    assert column.min is None
    assert column.mean is None
    assert column.std is None
    assert column.distinct_count == 3


def test_float32_float16_and_unsigned() -> None:
    table = pa.table(
        {
            "f32": pa.array([1.5, None, 2.5], pa.float32()),
            "f16": pa.array(np.array([1.5, 2.5], dtype=np.float16)).take([0, 1, 1]),
            "u8": pa.array([1, 2, 255], pa.uint8()),
        }
    )
    result = profile(table)
    assert (result.column("f32").min, result.column("f32").max) == (1.5, 2.5)
    assert result.column("f16").mean == pytest.approx(13 / 6)
    assert (result.column("u8").dtype, result.column("u8").max) == ("uint8", 255)


def test_other_types_do_not_crash() -> None:
    table = pa.table({"l": [[1], None, [2, 3]], "bin": [b"a", b"bc", None]})
    result = profile(table)
    assert result.column("l").count == 2
    assert (result.column("bin").min_length, result.column("bin").max_length) == (1, 2)


def test_record_batch_and_many_chunks() -> None:
    batch = pa.record_batch({"x": [1, 2, 3]})
    assert profile(batch).column("x").max == 3
    table = pa.concat_tables([pa.table({"x": [i, None]}) for i in range(5)])
    assert (
        profile(table).column("x").quantiles
        == profile(table.combine_chunks()).column("x").quantiles
    )


def test_parallel_path_matches_serial() -> None:
    rng = np.random.default_rng(3)
    table = pa.table({"a": rng.normal(size=150_000), "b": rng.integers(0, 9, 150_000)})
    result = profile(table)
    assert result.column("a").count == 150_000
    assert result.column("b").distinct_count == 9


def test_json_round_trip() -> None:
    table = pa.table(
        {
            "f": [1.0, math.nan, None],
            "i": [1, 2, 3],
            "s": ["a", "b", None],
            "b": [True, False, None],
            "t": pa.array([dt.datetime(2013, 1, 1, tzinfo=dt.UTC)] * 3),
        }
    )
    result = profile(table)
    text = result.to_json()
    again = Profile.from_json(text)
    assert again == result
    assert isinstance(again.column("i").min, int)
    assert isinstance(again.column("f").min, float)
    assert again.column("b").top_categories == result.column("b").top_categories


def test_errors_name_the_column() -> None:
    with pytest.raises(SchemaError, match="'missing'"):
        profile(pa.table({"x": [1]})).column("missing")
    duplicated = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["x", "x"])
    with pytest.raises(SchemaError, match=r"\['x'\]"):
        profile(duplicated)
    with pytest.raises(DefinitionError, match=r"columns\.x\.count"):
        Profile.from_json(
            '{"row_count": 1, "columns": {"x": {"dtype": "int64", "count": "many", "null_count": 0, "null_rate": 0}}}'
        )


def test_column_profile_is_frozen() -> None:
    column = ColumnProfile(dtype="int64", count=1, null_count=0, null_rate=0.0)
    with pytest.raises(ValueError, match="frozen"):
        column.count = 2  # type: ignore[misc]
