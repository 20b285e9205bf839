"""check_columns: the hard input contract shared by every wire format."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prodml.core import DTYPES, SchemaError
from prodml.registry import ColumnSpec, Signature
from prodml.serving._wire import FieldProblem, RequestInvalid, check_columns, expected_values

SECRETS = ("s3cr3t-value", "123456.789", "987654321")


def sig(**dtypes: str) -> Signature:
    return Signature(tuple(ColumnSpec(name, dtype) for name, dtype in dtypes.items()), "float64")


def invalid(columns: dict[str, Any], signature: Signature, **kwargs: Any) -> RequestInvalid:
    with pytest.raises(RequestInvalid) as info:
        check_columns(columns, signature, **kwargs)
    error = info.value
    text = str(error) + repr([p.to_dict() for p in error.details])
    for secret in SECRETS:
        assert secret not in text
    return error


def fields(error: RequestInvalid) -> list[str]:
    return [problem.field for problem in error.details]


ALL = sig(
    b="bool", i8="int8", i16="int16", i32="int32", i64="int64", f32="float32", f64="float64",
    s="string", bin="binary", d="date", t="timestamp",
)  # fmt: skip
ROW = {
    "b": [True, False], "i8": [-128, 127], "i16": [1, 2.0], "i32": [2**31 - 1, 0],
    "i64": [2**62, -1], "f32": [0.5, 2], "f64": [1, 2.5], "s": ["x", "ü"],
    "bin": ["a", b"\x00\xff"], "d": ["2013-01-01", "2013-12-31"],
    "t": ["2013-01-01T05:00:00Z", "2013-07-01 12:30:00+02:00"],
}  # fmt: skip


def test_every_dtype_round_trips_in_signature_order() -> None:
    frame = check_columns(dict(reversed(ROW.items())), ALL)
    assert list(frame.columns) == ALL.columns
    assert frame.dtypes.astype(str).to_dict() == {
        "b": "bool", "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64",
        "f32": "float32", "f64": "float64", "s": "object", "bin": "object", "d": "object",
        "t": "datetime64[ns, UTC]",
    }  # fmt: skip
    assert frame["i16"].tolist() == [1, 2]
    assert frame["bin"].tolist() == [b"a", b"\x00\xff"]
    assert frame["d"].tolist() == [dt.date(2013, 1, 1), dt.date(2013, 12, 31)]
    assert frame["t"].tolist() == [
        pd.Timestamp("2013-01-01T05:00", tz="UTC"),
        pd.Timestamp("2013-07-01T10:30", tz="UTC"),
    ]
    assert ALL.check(frame) is frame


def test_nulls_pass_and_null_ints_become_float() -> None:
    frame = check_columns({name: [None, None] for name in ALL.columns}, ALL)
    assert frame["i64"].dtype == np.float64
    assert frame["i64"].isna().all()
    assert frame["b"].dtype == object
    assert frame["s"].tolist() == [None, None]
    assert frame["t"].isna().all()
    ALL.check(frame)
    mixed = check_columns({"n": [1, None], "b": [True, None]}, sig(n="int32", b="bool"))
    assert mixed["n"].tolist()[0] == 1
    assert math.isnan(mixed["n"].tolist()[1])
    assert mixed["b"].tolist() == [True, None]


def test_all_float_fast_path_matches_general_path() -> None:
    floats = sig(a="float64", b="float64", c="float64")
    fast = check_columns({"a": [1, 2.5], "b": [None, 3], "c": [0.0, -1.0]}, floats)
    general = check_columns({"a": (1, 2.5), "b": (None, 3), "c": (0.0, -1.0)}, floats)
    pd.testing.assert_frame_equal(fast, general)
    assert fast.dtypes.tolist() == [np.dtype("float64")] * 3
    single = check_columns({"a": [0.5]}, sig(a="float32"))
    assert single.dtypes.tolist() == [np.dtype("float32")]


@pytest.mark.parametrize(
    ("dtype", "value", "problem"),
    [
        ("float64", "s3cr3t-value", "holds a str value at row 1"),
        ("float64", True, "holds a bool value at row 1"),
        ("float32", 1e300, "too large for float32"),
        ("float64", 10**400, "too large for a float"),
        ("int64", 123456.789, "not a whole int64 at row 1"),
        ("int64", 2**64, "outside the int64 range"),
        ("int8", 987654321, "outside the int8 range"),
        ("int16", [1], "holds a list value at row 1"),
        ("bool", 1, "holds a int value at row 1"),
        ("bool", "s3cr3t-value", "holds a str value at row 1"),
        ("string", 123456.789, "holds a float value at row 1"),
        ("binary", {"a": 1}, "holds a dict value at row 1"),
        ("date", "s3cr3t-value", "not an ISO 8601 date at row 1"),
        ("date", "2013-01-01T05:00:00", "not an ISO 8601 date at row 1"),
        ("timestamp", "s3cr3t-value", "not an ISO 8601 date-time"),
        ("timestamp", 987654321, "holds a int value at row 1"),
    ],
)
def test_wrong_types_are_named_without_their_values(dtype: str, value: Any, problem: str) -> None:
    good = {"float64": 1.0, "float32": 1.0, "int64": 1, "int8": 1, "int16": 1, "bool": True}
    first = good.get(dtype, "2013-01-01" if dtype in ("date", "timestamp") else "x")
    error = invalid({"col": [first, value]}, sig(col=dtype))
    assert error.status == 422
    assert error.details == [FieldProblem("col", error.details[0].problem, expected_values(dtype))]
    assert problem in error.details[0].problem
    assert isinstance(error, SchemaError)


def test_every_bad_field_is_reported_at_once() -> None:
    signature = sig(a="float64", b="int64", c="string", d="bool", e="float64")
    columns = {"a": ["s3cr3t-value"], "b": [1.5], "d": [1, 2], "zz": [123456.789], "e": 1.0}
    error = invalid(columns, signature)
    assert fields(error) == ["request", "a", "b", "c", "d", "e"]
    by_field = {p.field: p for p in error.details}
    assert by_field["request"].problem == "has 1 name not among the model's inputs"
    assert by_field["c"].problem == "is missing"
    assert by_field["d"].problem == "has 2 values, not 1 like the first input"
    assert by_field["e"].problem == "is a float, not a list of values"
    assert str(error).startswith("request has 6 invalid fields: 'request' has 1 name not among")
    assert "zz" not in str(error)  # a made-up name is counted, not repeated
    assert str(error).endswith("; and 1 more")
    assert by_field["a"].to_dict() == {
        "field": "a",
        "problem": "holds a str value at row 0",
        "expected": "float64: numbers or null",
    }


def test_extra_fields_pass_when_allowed_and_are_never_named() -> None:
    frame = check_columns({"a": [1.0], "extra": ["x"]}, sig(a="float64"), allow_extra=True)
    assert list(frame.columns) == ["a"]
    error = invalid({"a": [1.0], "x" * 500: [1]}, sig(a="float64"))
    assert "xx" not in str(error)
    assert "xx" not in str([p.to_dict() for p in error.details])


def test_numpy_columns_are_cast_without_python_loops() -> None:
    signature = sig(f="float64", i="int32", n="int64", b="bool", s="string", t="timestamp")
    frame = check_columns(
        {
            "f": np.array([1, 2], dtype=np.int16),
            "i": np.array([[1.0], [2.0]]),
            "n": np.array([1.0, np.nan]),
            "b": np.array([True, False]),
            "s": np.array(["x", "y"]),
            "t": np.array(["2013-01-01T00:00", "2013-01-02T00:00"], dtype="datetime64[s]"),
        },
        signature,
    )
    assert frame.dtypes.astype(str).tolist() == [
        "float64", "int32", "float64", "bool", "object", "datetime64[ns, UTC]",
    ]  # fmt: skip
    assert frame["t"].iloc[1] == pd.Timestamp("2013-01-02", tz="UTC")
    signature.check(frame)
    objects = check_columns({"s": np.array(["a", None], dtype=object)}, sig(s="string"))
    assert objects["s"].tolist() == ["a", None]
    texts = check_columns({"t": np.array(["2013-01-01"]), "d": np.array(["2013-01-01"])},
                          sig(t="timestamp", d="date"))  # fmt: skip
    assert texts["d"].tolist() == [dt.date(2013, 1, 1)]


@pytest.mark.parametrize(
    ("dtype", "array", "problem"),
    [
        ("int64", np.array([1.5, 2.0]), "holds numbers that are not whole"),
        ("int64", np.array([2**64 - 1], dtype=np.uint64), "outside the int64 range"),
        ("int8", np.array([1000]), "outside the int8 range"),
        ("float64", np.array(["1.5"]), "holds values of NumPy dtype <U3"),
        ("bool", np.array([1, 0]), "holds values of NumPy dtype int64"),
        ("float64", np.ones((2, 2)), "is a 2-D array"),
        ("float64", np.float64(1.0), "is a float64, not a list of values"),
        ("float32", np.array([1e300]), "too large for float32"),
    ],
)
def test_numpy_columns_of_the_wrong_kind(dtype: str, array: Any, problem: str) -> None:
    error = invalid({"col": array}, sig(col=dtype))
    assert problem in error.details[0].problem


def test_public_constructor_fallback_gives_the_same_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    columns = dict(ROW.items())
    fast = check_columns(columns, ALL)
    monkeypatch.delattr(pd.DataFrame, "_from_arrays")
    pd.testing.assert_frame_equal(check_columns(columns, ALL), fast)


def test_zero_rows_and_empty_signature() -> None:
    frame = check_columns({name: [] for name in ALL.columns}, ALL)
    assert len(frame) == 0
    assert list(frame.columns) == ALL.columns
    ALL.check(frame)
    assert check_columns({}, sig()).shape == (0, 0)


# -- property: valid rows for random signatures round-trip --------------------------

_UTC = dt.UTC
_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "bool": st.booleans(),
    "int8": st.integers(-(2**7), 2**7 - 1),
    "int16": st.integers(-(2**15), 2**15 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "int64": st.integers(-(2**63), 2**63 - 1),
    "float32": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "float64": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
    "string": st.text(max_size=8),
    "binary": st.binary(max_size=8),
    "date": st.dates(),
    "timestamp": st.datetimes(
        min_value=dt.datetime(1900, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.just(_UTC),
    ),
}
assert set(_VALUES) == set(DTYPES)


@st.composite
def signatures_and_rows(draw: st.DrawFn) -> tuple[Signature, dict[str, list[Any]], int]:
    names = draw(
        st.lists(st.text("abcdefgh", min_size=1, max_size=4), min_size=1, max_size=6, unique=True)
    )
    dtypes = [draw(st.sampled_from(sorted(DTYPES))) for _ in names]
    rows = draw(st.integers(0, 5))
    nulls = draw(st.booleans())
    columns = {}
    for name, dtype in zip(names, dtypes, strict=True):
        value = _VALUES[dtype] | st.none() if nulls else _VALUES[dtype]
        columns[name] = draw(st.lists(value, min_size=rows, max_size=rows))
    return sig(**dict(zip(names, dtypes, strict=True))), columns, rows


def _wire(value: Any) -> Any:
    """A value as it arrives in JSON (dates and times as ISO strings)."""
    return value.isoformat() if isinstance(value, dt.date) else value


@given(signatures_and_rows())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_valid_rows_round_trip(case: tuple[Signature, dict[str, list[Any]], int]) -> None:
    signature, columns, rows = case
    frame = check_columns({n: [_wire(v) for v in vs] for n, vs in columns.items()}, signature)
    assert list(frame.columns) == signature.columns
    assert len(frame) == rows
    signature.check(frame)
    for spec in signature.inputs:
        sent, got = columns[spec.name], frame[spec.name].tolist()
        has_null = None in sent
        if spec.dtype.startswith("int"):
            assert frame[spec.name].dtype == (np.float64 if has_null else np.dtype(spec.dtype))
        elif spec.dtype.startswith("float"):
            assert frame[spec.name].dtype == np.dtype(spec.dtype)
        elif spec.dtype == "timestamp":
            assert str(frame[spec.name].dtype) == "datetime64[ns, UTC]"
        elif spec.dtype != "bool" or has_null:
            assert frame[spec.name].dtype == object
        for want, have in zip(sent, got, strict=True):
            if want is None:
                assert have is None or pd.isna(have)
            elif spec.dtype == "float32":
                assert have == float(np.float32(want))
            elif spec.dtype.startswith("int") and has_null:
                assert have == float(want)
            elif spec.dtype == "timestamp":
                assert have == pd.Timestamp(want)
            else:
                assert have == want
