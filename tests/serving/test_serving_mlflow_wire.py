"""The MLflow scoring protocol, compared with MLflow's own scoring server functions."""

from __future__ import annotations

import io
import json
import math
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prodml.core import BadOutputError
from prodml.registry import ColumnSpec, Signature
from prodml.serving._mlflow_wire import decode_invocations, encode_predictions, read_invocations
from prodml.serving._wire import RequestInvalid

JSON = "application/json"
SECRETS = ("s3cr3t-value", "123456.789")
COLUMNS = {"x": ("float64", "double"), "n": ("int64", "long"), "i": ("int32", "integer"),
           "b": ("bool", "boolean"), "s": ("string", "string"), "t": ("timestamp", "datetime")}  # fmt: skip
SIGNATURE = Signature(tuple(ColumnSpec(n, d) for n, (d, _) in COLUMNS.items()), "float64")
ROWS = [
    [0.5, 1, 7, True, "a", "2013-01-01T05:00:00"],
    [1.5, 2, 8, False, "b", "2013-07-02T00:00:00"],
]
RECORDS = [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]
BY_COLUMN = {name: [row[j] for row in ROWS] for j, name in enumerate(COLUMNS)}


@pytest.fixture(scope="module")
def mlflow() -> SimpleNamespace:
    """MLflow's scoring-server functions (its pyfunc package warns on import)."""
    pytest.importorskip(
        "mlflow", reason="mlflow is an optional extra: pip install 'prodml[mlflow]'"
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*Any type hint is inferred as AnyType", UserWarning)
        warnings.filterwarnings("ignore", "The ``noload`` loader strategy is deprecated")
        from mlflow.pyfunc import scoring_server
        from mlflow.types import ColSpec, Schema

    def schema(columns: dict[str, tuple[str, str]] = COLUMNS) -> Any:
        return Schema([ColSpec(kind, name) for name, (_, kind) in columns.items()])

    return SimpleNamespace(server=scoring_server, schema=schema, ColSpec=ColSpec, Schema=Schema)


def normalized(frame: pd.DataFrame) -> pd.DataFrame:
    """Text as object and timestamps as naive UTC, so frames from both sides compare."""
    out = frame.reset_index(drop=True)
    for name in out.columns:
        if isinstance(out[name].dtype, pd.StringDtype):
            out[name] = out[name].astype(object)
        if isinstance(out[name].dtype, pd.DatetimeTZDtype):
            out[name] = out[name].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def mlflow_frame(
    mlflow: SimpleNamespace, body: dict[str, Any], schema: Any = None
) -> tuple[pd.DataFrame, Any]:
    schema = schema or mlflow.schema()
    data, params = mlflow.server._split_data_and_params(json.dumps(body))
    parsed = mlflow.server.infer_and_parse_data(data, schema)
    if isinstance(parsed, np.ndarray):
        parsed = pd.DataFrame(parsed, columns=schema.input_names())
    return pd.DataFrame(parsed), params


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": list(COLUMNS), "data": ROWS}},
        {"dataframe_split": {"columns": list(COLUMNS), "data": ROWS, "index": [5, 6]}},
        {"dataframe_records": RECORDS},
        {"instances": RECORDS},
        {"inputs": RECORDS},
        {"inputs": BY_COLUMN},
        {"instances": BY_COLUMN},
    ],
    ids=[
        "split",
        "split-index",
        "records",
        "instances",
        "inputs",
        "inputs-columns",
        "instances-columns",
    ],
)
def test_json_formats_decode_like_mlflow(mlflow: SimpleNamespace, body: dict[str, Any]) -> None:
    body = {**body, "params": {"top_k": 3}}
    invocation = read_invocations(
        json.dumps(body).encode(), "application/json; charset=UTF-8", SIGNATURE
    )
    expected, params = mlflow_frame(mlflow, body)
    assert invocation.params == params == {"top_k": 3}
    pd.testing.assert_frame_equal(normalized(invocation.frame), normalized(expected))
    SIGNATURE.check(invocation.frame)


def test_rows_without_names_decode_like_mlflow(mlflow: SimpleNamespace) -> None:
    signature = Signature((ColumnSpec("x", "float64"), ColumnSpec("y", "float64")), "float64")
    schema = mlflow.schema({"x": ("float64", "double"), "y": ("float64", "double")})
    for key in ("instances", "inputs"):
        body = {key: [[1.0, 2.0], [3.0, 4]]}
        frame = decode_invocations(json.dumps(body).encode(), JSON, signature)
        pd.testing.assert_frame_equal(frame, mlflow_frame(mlflow, body, schema)[0])
    split = {"dataframe_split": {"data": [[1.0, 2.0]]}}
    assert decode_invocations(json.dumps(split).encode(), JSON, signature).to_dict("list") == {
        "x": [1.0],
        "y": [2.0],
    }


def test_single_column_and_single_row_shorthands() -> None:
    one = Signature((ColumnSpec("x", "float64"),), "float64")
    for body in ({"instances": [1.0, 2.0]}, {"inputs": {"x": [1.0, 2.0]}},
                 {"dataframe_split": {"columns": ["x"], "data": [1.0, 2.0]}}):  # fmt: skip
        assert decode_invocations(json.dumps(body).encode(), JSON, one)["x"].tolist() == [1.0, 2.0]
    row = {"inputs": {"x": 0.5, "n": 1, "i": 2, "b": True, "s": "a", "t": "2013-01-01"}}
    assert len(decode_invocations(json.dumps(row).encode(), JSON, SIGNATURE)) == 1
    empty = decode_invocations(b'{"dataframe_split": {"columns": ["x"], "data": []}}', JSON, one)
    assert empty.shape == (0, 1)


def test_binary_columns_are_base64_like_mlflow(mlflow: SimpleNamespace) -> None:
    columns = {"raw": ("binary", "binary"), "x": ("float64", "double")}
    signature = Signature((ColumnSpec("raw", "binary"), ColumnSpec("x", "float64")), "float64")
    body = {"dataframe_records": [{"raw": "AP8=", "x": 1.0}, {"raw": "YWI=", "x": 2.0}]}
    frame = decode_invocations(json.dumps(body).encode(), JSON, signature)
    expected, _ = mlflow_frame(mlflow, body, mlflow.schema(columns))
    assert frame["raw"].tolist() == expected["raw"].tolist() == [b"\x00\xff", b"ab"]
    bad = {"inputs": {"raw": ["s3cr3t-value!"], "x": [1.0]}}
    error = invalid(json.dumps(bad).encode(), signature, 422)
    assert [(p.field, p.problem) for p in error.details] == [
        ("raw", "holds a string that is not base64")
    ]


def test_records_with_missing_keys_read_them_as_null() -> None:
    body = {
        "dataframe_records": [
            {"x": 1.0, "n": 1, "i": 1, "b": True, "s": "a", "t": None},
            {"x": 2.0},
        ]
    }
    frame = decode_invocations(json.dumps(body).encode(), JSON, SIGNATURE)
    assert frame["n"].isna().tolist() == [False, True]
    assert frame["s"].tolist() == ["a", None]


def test_csv_decodes_like_mlflow(mlflow: SimpleNamespace) -> None:
    no_time = {k: v for k, v in COLUMNS.items() if k != "t"}
    signature = Signature(tuple(ColumnSpec(n, d) for n, (d, _) in no_time.items()), "float64")
    schema = mlflow.schema(no_time)
    text = pd.DataFrame([row[:-1] for row in ROWS], columns=list(no_time)).to_csv(index=False)
    frame = decode_invocations(text.encode(), "text/csv", signature)
    pd.testing.assert_frame_equal(
        normalized(frame), normalized(mlflow.server.parse_csv_input(io.StringIO(text), schema))
    )
    with_time = decode_invocations(pd.DataFrame(ROWS, columns=list(COLUMNS)).to_csv(index=False).encode(),
                                   "text/csv", SIGNATURE)  # fmt: skip
    assert with_time["t"].tolist()[0] == pd.Timestamp("2013-01-01T05:00", tz="UTC")


def test_csv_nulls_text_that_looks_numeric_and_parquet() -> None:
    signature = Signature(
        (ColumnSpec("zip", "string"), ColumnSpec("n", "int64"), ColumnSpec("b", "bool")), "float64"
    )
    frame = decode_invocations(b"zip,n,b\n01234,1,True\n,,\n", "text/csv", signature)
    assert frame["zip"].tolist() == ["01234", None]
    assert frame["b"].tolist() == [True, None]
    assert frame["n"].tolist()[0] == 1
    assert math.isnan(frame["n"].tolist()[1])
    signature.check(frame)
    buffer = io.BytesIO()
    pd.DataFrame({"zip": ["1", None], "n": [1, 2], "b": [True, False]}).to_parquet(buffer)
    parquet = decode_invocations(buffer.getvalue(), "application/vnd.apache.parquet", signature)
    assert parquet.to_dict("list") == {"zip": ["1", None], "n": [1, 2], "b": [True, False]}


def invalid(
    body: bytes, signature: Signature, status: int, content_type: str = JSON
) -> RequestInvalid:
    with pytest.raises(RequestInvalid) as info:
        decode_invocations(body, content_type, signature)
    error = info.value
    text = str(error) + repr([p.to_dict() for p in error.details])
    assert all(secret not in text for secret in SECRETS), text
    assert error.status == status
    return error


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            b'{"dataframe_split": s3cr3t-value}',
            400,
            "Ensure that input is a valid JSON formatted string",
        ),
        (b"\xff\xfe", 400, "valid JSON"),
        (b"[1, 2]", 400, "Received a list"),
        (b'{"data": [123456.789]}', 400, "exactly one of the input fields"),
        (
            b'{"inputs": [1], "instances": [2]}',
            400,
            "Received a dictionary with 2 of them and 2 fields in all.",
        ),
        (
            b'{"dataframe_split": [1]}',
            400,
            "Dataframe split format must be a dictionary. Got list.",
        ),
        (b'{"dataframe_split": {"columns": ["x"]}}', 400, "must have 'data' field"),
        (b'{"dataframe_split": {"data": [], "extra": 1}}', 400, "must have 'data' field"),
        (
            b'{"dataframe_split": {"columns": [1], "data": []}}',
            400,
            "'columns' must be a list of strings",
        ),
        (b'{"dataframe_split": {"columns": ["x"], "data": 5}}', 400, "must be a list of rows"),
        (b'{"dataframe_records": {"x": [1]}}', 400, "must be a list of records. Got dictionary."),
        (b'{"dataframe_records": [[123456.789]]}', 400, "must be a list of records."),
        (b'{"inputs": "s3cr3t-value"}', 400, "must be a list or an object of columns"),
        (b'{"inputs": [[1.0]], "params": [1]}', 400, "params must be a JSON object"),
        (b'{"dataframe_split": {"data": [[1.0, 2.0]]}}', 422, "Row 0 of 'dataframe_split.data'"),
        (b'{"inputs": [[1.0, 123456.789]]}', 422, "Row 0 of 'inputs'"),
    ],
)
def test_bad_bodies_name_the_problem_without_echoing_input(
    body: bytes, status: int, message: str
) -> None:
    signature = Signature(
        (ColumnSpec("x", "float64"), ColumnSpec("y", "float64"), ColumnSpec("z", "int64")),
        "float64",
    )
    error = invalid(body, signature, status)
    assert message in str(error)
    assert str(error).startswith("Invalid input.")
    assert len(error.details) == 1


def test_contract_problems_are_422_per_field() -> None:
    body = {"dataframe_records": [{"x": "s3cr3t-value", "n": 1.5, "extra": 123456.789}]}
    error = invalid(json.dumps(body).encode(), SIGNATURE, 422)
    assert [p.field for p in error.details] == ["request", "x", "n", "i", "b", "s", "t"]
    dup = invalid(b'{"dataframe_split": {"columns": ["x", "x"], "data": [[1, 2]]}}', SIGNATURE, 422)
    assert [(p.field, p.problem) for p in dup.details] == [("x", "appears more than once")]


def test_content_types() -> None:
    one = Signature((ColumnSpec("x", "float64"),), "float64")
    assert invalid(b"x\n1\n", one, 415, "text/plain").details[0].field == "content-type"
    assert "UTF-8" in str(invalid(b"{}", one, 415, "application/json; charset=latin-1"))
    invalid(b"{}", one, 415, "application/json; format=pandas-split")
    invalid(b"{}", one, 415, "")
    assert decode_invocations(
        b'{"inputs": [1.5]}', "Application/JSON; Charset=UTF-8", one
    ).shape == (1, 1)
    assert "valid CSV" in str(invalid(b"", one, 400, "text/csv"))
    assert "valid Parquet" in str(
        invalid(b"s3cr3t-value", one, 400, "application/vnd.apache.parquet")
    )
    assert "valid CSV" in str(invalid(b"x\n\xff\n", one, 400, "text/csv"))


# -- encode_predictions against mlflow's predictions_to_json ------------------------


def mlflow_json(mlflow: SimpleNamespace, output: Any) -> Any:
    buffer = io.StringIO()
    mlflow.server.predictions_to_json(output, buffer)
    return json.loads(buffer.getvalue())


@pytest.mark.parametrize(
    "output",
    [
        np.array([0.1, 0.25, 1e300]),
        np.array([0.1, 0.7], dtype=np.float32),
        np.array([0.5], dtype=np.float16),
        np.array([1, -2, 2**62]),
        np.array([1, 2], dtype=np.uint8),
        np.array([True, False]),
        np.array(["late", "ü"]),
        np.array([b"\x00\xff", b"ab"]),
        np.array(["a", 1, 2.5, None, np.float64(0.5)], dtype=object),
        np.array([[0.1, 0.9], [0.3, 0.7]]),
        np.array([[0.1, 0.9], [0.3, 0.7]])[:, ::-1],
        np.array([[1, 2], [3, 4]], dtype=np.int32).T,
        np.array(3.5),
        np.array(["2013-01-01T00:00"], dtype="datetime64[us]"),
        pd.Series([0.25, 0.75]),
        pd.Series([1, 2], name="late"),
        pd.Series(["a", "b"], name="label"),
        pd.DataFrame({"p": [0.1, 0.9], "label": ["a", "b"], "n": [1, 2], "ok": [True, False]}),
        pd.DataFrame(
            {"t": pd.to_datetime(["2013-01-01T05:00", "2013-01-02T00:00"], utc=True), "d": [1.5, 2]}
        ),
        pd.DataFrame({"p": np.array([0.1, 0.2], dtype=np.float32)}),
        [0.5, 1, "x", None],
        {"p": np.array([0.5, 0.25]), "k": [1, 2]},
        "text",
    ],
)
def test_encode_predictions_matches_mlflow(mlflow: SimpleNamespace, output: Any) -> None:
    ours = encode_predictions(output)
    assert json.loads(ours) == mlflow_json(mlflow, output)


def test_encode_predictions_writes_null_for_non_finite() -> None:
    assert json.loads(encode_predictions(np.array([1.0, np.nan, np.inf]))) == {
        "predictions": [1.0, None, None]
    }
    assert encode_predictions(pd.DataFrame({"p": [np.nan]})) == b'{"predictions":[{"p":null}]}'


def test_encode_predictions_rejects_what_json_cannot_carry() -> None:
    with pytest.raises(BadOutputError, match="model output of type ndarray"):
        encode_predictions(np.array([object()]))
    with pytest.raises(BadOutputError):
        encode_predictions(np.array([1 + 2j]))
