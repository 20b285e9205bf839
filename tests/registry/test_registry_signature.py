"""Model signatures: inference from a frame and predictions, checks before prediction,
and the exact dict round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prodml.core import DTYPES, DefinitionError, SchemaError
from prodml.registry import ColumnSpec, Signature, infer_signature


def mixed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "carrier": pd.Series(["AA", "UA", None], dtype=object),
            "origin": pd.Series(["JFK", "LGA", "EWR"], dtype="str"),
            "distance": [100.0, 2500.5, np.nan],
            "hour": np.array([5, 12, 23], dtype=np.int64),
            "seats": pd.Series([120, None, 180], dtype="Int32"),
            "small": np.array([1, 2, 3], dtype=np.int8),
            "ratio": np.array([0.5, 0.25, 1.0], dtype=np.float32),
            "holiday": [True, False, True],
            "segment": pd.Categorical(["a", "b", "a"]),
            "departed": pd.to_datetime(
                ["2013-01-01 05:00", "2013-06-01 00:00", "2013-12-31 23:59"], utc=True
            ),
        }
    )


EXPECTED_DTYPES = {
    "carrier": "string",
    "origin": "string",
    "distance": "float64",
    "hour": "int64",
    "seats": "int32",
    "small": "int8",
    "ratio": "float32",
    "holiday": "bool",
    "segment": "string",
    "departed": "timestamp",
}


def test_registry_infer_signature_on_mixed_frame() -> None:
    sig = infer_signature(mixed_frame(), np.array([0.1, 0.5, 0.9]))
    assert {spec.name: spec.dtype for spec in sig.inputs} == EXPECTED_DTYPES
    assert sig.columns == list(EXPECTED_DTYPES)
    assert (sig.output_dtype, sig.output_shape) == ("float64", ())


def test_registry_infer_signature_outputs() -> None:
    X = mixed_frame()
    assert infer_signature(X, np.zeros((3, 4), dtype=np.float32)).output_shape == (4,)
    assert infer_signature(X, np.zeros((3, 4), dtype=np.float32)).output_dtype == "float32"
    assert infer_signature(X, np.array([1, 0, 1])).output_dtype == "int64"
    assert infer_signature(X, np.array(["late", "ok", "ok"], dtype=object)).output_dtype == "string"
    with pytest.raises(SchemaError, match=r"expected one row per input row \(3\)"):
        infer_signature(X, np.zeros(2))
    with pytest.raises(SchemaError, match=r"'empty' has type null.*only nulls"):
        infer_signature(pd.DataFrame({"empty": [None, None]}), np.zeros(2))


def test_registry_check_reorders_and_drops_extras() -> None:
    X = mixed_frame()
    sig = infer_signature(X, np.zeros(3))
    shuffled = X[list(reversed(X.columns))].assign(unused=[1, 2, 3])
    checked = sig.check(shuffled)
    assert list(checked.columns) == sig.columns
    pd.testing.assert_frame_equal(checked, X)


def test_registry_check_accepts_int_for_float_and_nulls_for_anything() -> None:
    sig = Signature((ColumnSpec("distance", "float64"), ColumnSpec("carrier", "string")), "float64")
    X = pd.DataFrame({"carrier": [None, None], "distance": [1, 2]})
    assert list(sig.check(X).columns) == ["distance", "carrier"]


@pytest.mark.parametrize(
    ("frame", "pattern"),
    [
        (
            pd.DataFrame({"distance": [1.0]}),
            r"'flight_delay:3': input column 'hour' is missing: expected int64",
        ),
        (
            pd.DataFrame({"distance": [1.0], "hour": [1.5]}),
            r"'flight_delay:3': input column 'hour' has type float64: expected int64",
        ),
        (
            pd.DataFrame({"distance": ["far"], "hour": [1]}),
            r"input column 'distance' has type string: expected float64",
        ),
        (
            pd.DataFrame({"distance": pd.Series([1.0, "x"], dtype=object), "hour": [1, 2]}),
            r"input column 'distance' holds values of mixed or unsupported types",
        ),
    ],
    ids=["missing", "float-for-int", "string-for-float", "mixed"],
)
def test_registry_check_raises_naming_model_column_and_type(
    frame: pd.DataFrame, pattern: str
) -> None:
    sig = Signature((ColumnSpec("distance", "float64"), ColumnSpec("hour", "int64")), "float64")
    with pytest.raises(SchemaError, match=pattern):
        sig.check(frame, model="'flight_delay:3'")


def test_registry_check_rejects_duplicated_columns() -> None:
    sig = Signature((ColumnSpec("a", "float64"),), "float64")
    frame = pd.DataFrame([[1.0, 2.0]], columns=["a", "a"])
    with pytest.raises(SchemaError, match=r"\['a'\] appear more than once"):
        sig.check(frame)


def test_registry_signature_round_trip_through_json() -> None:
    sig = infer_signature(mixed_frame(), np.zeros((3, 2)))
    data = json.loads(json.dumps(sig.to_dict()))
    assert Signature.from_dict(data) == sig
    assert data["inputs"][0] == {"name": "carrier", "dtype": "string"}


@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=12), st.sampled_from(sorted(DTYPES))),
        max_size=8,
    ),
    st.sampled_from(sorted(DTYPES)),
    st.lists(st.integers(1, 16), max_size=2),
)
def test_registry_signature_round_trip_property(
    columns: list[tuple[str, str]], output: str, shape: list[int]
) -> None:
    sig = Signature(tuple(ColumnSpec(n, d) for n, d in columns), output, tuple(shape))
    assert Signature.from_dict(json.loads(json.dumps(sig.to_dict()))) == sig


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"inputs": [{"name": "a"}], "output": {"dtype": "float64", "shape": []}},
        {
            "inputs": [{"name": "a", "dtype": "decimal"}],
            "output": {"dtype": "float64", "shape": []},
        },
        {"inputs": [], "output": {"dtype": "float64", "shape": ["x"]}},
    ],
    ids=["empty", "no-dtype", "unknown-dtype", "bad-shape"],
)
def test_registry_signature_from_dict_rejects_malformed(data: dict[str, object]) -> None:
    with pytest.raises(DefinitionError, match="signature"):
        Signature.from_dict(data)
