"""The MLflow scoring protocol (``POST /invocations``), as MLflow's scoring server speaks it.

JSON bodies carry exactly one of ``dataframe_split``, ``dataframe_records``,
``instances`` or ``inputs`` (plus optional ``params``); a record missing a key reads it
as null and binary columns travel base64-encoded, as in MLflow; ``text/csv`` and
Parquet bodies are read with pandas. A body that is not one of these raises :class:`RequestInvalid`
400 (415 for an unsupported content type) with MLflow's wording minus the echo of the
input; a well-formed body that does not fit the model raises 422 from
:func:`check_columns`. :func:`encode_predictions` writes ``{"predictions": ...}`` with
the values ``mlflow.pyfunc.scoring_server.predictions_to_json`` writes, through orjson,
except that NaN and infinities become ``null`` (MLflow writes non-standard ``NaN``).

>>> from prodml.registry import ColumnSpec, Signature
>>> sig = Signature((ColumnSpec("x", "float64"), ColumnSpec("c", "string")), "float64")
>>> body = b'{"dataframe_split": {"columns": ["c", "x"], "data": [["a", 1.5]]}}'
>>> decode_invocations(body, "application/json", sig).to_dict("records")
[{'x': 1.5, 'c': 'a'}]
>>> encode_predictions(np.array([0.25, 1.0]))
b'{"predictions":[0.25,1.0]}'
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prodml.core.errors import BadOutputError
from prodml.registry import Signature
from prodml.serving._wire import (
    FieldProblem,
    RequestInvalid,
    check_columns,
    check_row_limit,
    float_rows_frame,
)

__all__ = ["Invocation", "decode_invocations", "encode_predictions", "read_invocations"]

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_SPLIT_FIELDS = frozenset({"columns", "data", "index"})
_REQUIRED = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}"
)
_TABLE_HINT = (
    "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
    "{0}-formatted Pandas DataFrame produced using the `pandas.DataFrame.to_{1}()` method."
)
_TEXT_LIKE = frozenset({"string", "binary", "date", "timestamp"})


@dataclass(frozen=True)
class Invocation:
    """A decoded ``/invocations`` body: the model's input frame and MLflow ``params``."""

    frame: pd.DataFrame
    params: dict[str, Any] | None


def _bad(
    message: str, field: str, problem: str, expected: str, status: int = 400
) -> RequestInvalid:
    return RequestInvalid(
        f"Invalid input. {message}", status=status, details=[FieldProblem(field, problem, expected)]
    )


def decode_invocations(
    body: bytes, content_type: str, signature: Signature, *, max_rows: int | None = None
) -> pd.DataFrame:
    """The model's input frame from an ``/invocations`` body (see :func:`read_invocations`)."""
    return read_invocations(body, content_type, signature, max_rows=max_rows).frame


def read_invocations(
    body: bytes, content_type: str, signature: Signature, *, max_rows: int | None = None
) -> Invocation:
    """The frame and ``params`` of an ``/invocations`` body of ``content_type``. A body
    of more than ``max_rows`` rows is refused (413) before its values are read: CSV
    lines are counted (a newline inside a quoted value counts as one), Parquet rows read
    from the file's footer, JSON rows counted in the parsed layout."""
    mime, *options = (part.strip().lower() for part in (content_type or "").split(";"))
    settings = dict(option.partition("=")[::2] for option in options)
    if mime not in _MIMES:  # no content type at all included
        raise _bad(
            f"This predictor only supports the following content types: {list(_MIMES)}.",
            "content-type",
            "is not supported",
            ", ".join(_MIMES),
            415,
        )
    if settings.get("charset", "utf-8") != "utf-8" or set(settings) - {"charset"}:
        raise _bad(
            "The scoring server only supports UTF-8 and no other content type parameters.",
            "content-type",
            "has unsupported parameters",
            "charset=utf-8 or none",
            415,
        )
    if mime == "application/json":
        return _read_json(body, signature, max_rows)
    if max_rows is not None:  # CSV or Parquet
        check_row_limit(_table_rows(body, mime), max_rows, "body")
    try:
        frame = _read_table(body, mime, signature)
    except (ValueError, UnicodeDecodeError, OSError, pd.errors.ParserError):
        kind = "CSV" if mime == "text/csv" else "Parquet"
        raise _bad(
            _TABLE_HINT.format(kind, kind.lower()),
            "body",
            f"is not valid {kind}",
            f"a {kind} table with a header row",
        ) from None
    columns = {str(name): _column(frame[name]) for name in frame.columns}
    return Invocation(check_columns(columns, signature), None)


_MIMES = ("text/csv", "application/json", "application/vnd.apache.parquet")


def _table_rows(body: bytes, mime: str) -> int:
    """The rows of a CSV (lines after the header) or Parquet body, without parsing it
    (0 for a Parquet body whose footer cannot be read: parsing it reports that)."""
    if mime == "text/csv":
        lines = body.count(b"\n") + (bool(body) and not body.endswith(b"\n"))
        return max(0, lines - 1)
    try:
        return int(pq.ParquetFile(io.BytesIO(body)).metadata.num_rows)
    except (pa.ArrowException, OSError, ValueError):
        return 0


def _json_rows(key: str, payload: Any) -> int:
    """The rows a JSON layout holds (its longest list), counted before any is read."""
    if key == "dataframe_split" and isinstance(payload, dict):
        payload = payload.get("data")
    if isinstance(payload, list):
        return len(payload)
    if isinstance(payload, dict):
        return max((len(v) for v in payload.values() if isinstance(v, list)), default=1)
    return 1


def _read_table(body: bytes, mime: str, signature: Signature) -> pd.DataFrame:
    if mime == "text/csv":
        text_like = {s.name: str for s in signature.inputs if s.dtype in _TEXT_LIKE}
        return pd.read_csv(io.BytesIO(body), dtype=text_like, encoding="utf-8")
    return pd.read_parquet(io.BytesIO(body))


def _column(series: pd.Series) -> np.ndarray:
    """A column of a parsed table as NumPy, nulls as ``None`` outside numeric columns."""
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "fiubM":
        return series.to_numpy()
    values = series.to_numpy(dtype=object, copy=True)
    values[series.isna().to_numpy()] = None
    return values


def _read_json(body: bytes, signature: Signature, max_rows: int | None = None) -> Invocation:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        where = f"at line {exc.lineno} column {exc.colno}"
        raise _bad(
            f"Ensure that input is a valid JSON formatted string ({where}).",
            "body",
            f"is not valid JSON ({where})",
            "a JSON object",
        ) from None
    if not isinstance(data, dict):
        raise _bad(
            f"{_REQUIRED}. Received a {type(data).__name__}.",
            "body",
            f"is a {type(data).__name__}",
            "a JSON object",
        )
    found = [key for key in FORMATS if key in data]
    if len(found) != 1:
        raise _bad(  # the keys are counted, not repeated: a made-up name is client input
            f"{_REQUIRED}. Received a dictionary with {len(found)} of them and "
            f"{len(data)} fields in all.",
            "body",
            f"has {len(found)} input fields",
            f"exactly one of {', '.join(FORMATS)}",
        )
    params = data.get("params")
    if params is not None and not isinstance(params, dict):
        raise _bad("params must be a JSON object.", "params", "is not an object", "a JSON object")
    key = found[0]
    if max_rows is not None:
        check_row_limit(_json_rows(key, data[key]), max_rows, key)
    if key == "dataframe_split":
        frame = _split_frame(data[key], signature)
        if frame is not None:
            return Invocation(frame, params)
    columns = _unbase64(_columns(key, data[key], signature), signature)
    return Invocation(check_columns(columns, signature), params)


def _split_frame(payload: Any, signature: Signature) -> pd.DataFrame | None:
    """A well-formed ``dataframe_split`` payload of numbers for an all-float signature,
    read straight from its rows (:func:`float_rows_frame`); None for anything else, which
    the general path reads (or refuses, naming the problem)."""
    if type(payload) is not dict or not payload.keys() <= _SPLIT_FIELDS or "data" not in payload:
        return None
    return float_rows_frame(payload["data"], payload.get("columns", signature.columns), signature)


def _unbase64(columns: Mapping[str, Any], signature: Signature) -> Mapping[str, Any]:
    """Binary columns decoded from base64, as MLflow expects them in JSON."""
    names = [s.name for s in signature.inputs if s.dtype == "binary" and s.name in columns]
    if not names:
        return columns
    decoded = dict(columns)
    for name in names:
        values = decoded[name]
        if isinstance(values, list):
            try:
                decoded[name] = [base64.b64decode(v) if type(v) is str else v for v in values]
            except ValueError:
                problem = FieldProblem(name, "holds a string that is not base64", "binary: base64")
                raise RequestInvalid.of([problem]) from None
    return decoded


def _columns(key: str, payload: Any, signature: Signature) -> Mapping[str, Any]:
    """``{column: values}`` from any of the four JSON layouts."""
    if key == "dataframe_split":
        if not isinstance(payload, dict):
            raise _bad(
                f"Dataframe split format must be a dictionary. Got {type(payload).__name__}.",
                key,
                "is not an object",
                "{columns, data, index?}",
            )
        keys = set(payload)
        if "data" not in keys or keys - {"columns", "data", "index"}:
            raise _bad(
                "Dataframe split format must have 'data' field and optionally "
                f"'columns' and 'index' fields. Got {sorted(map(str, keys))[:10]}.",
                key,
                "has missing or unknown fields",
                "{columns, data, index?}",
            )
        names = payload.get("columns", signature.columns)
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise _bad(
                "Dataframe split 'columns' must be a list of strings.",
                f"{key}.columns",
                "is not a list of strings",
                "column names",
            )
        return _rows(payload["data"], names, f"{key}.data")
    if key == "dataframe_records" and not isinstance(payload, list):
        what = "dictionary" if isinstance(payload, dict) else f"type {type(payload).__name__}"
        raise _bad(
            f"Dataframe records format must be a list of records. Got {what}.",
            key,
            "is not a list",
            "a list of records",
        )
    if isinstance(payload, dict):
        if payload and not any(isinstance(v, list) for v in payload.values()):
            return {name: [value] for name, value in payload.items()}
        return payload
    if not isinstance(payload, list):
        raise _bad(
            f"'{key}' must be a list or an object of columns.",
            key,
            f"is a {type(payload).__name__}",
            "a list of records or rows",
        )
    if all(isinstance(record, dict) for record in payload):
        names = list(dict.fromkeys(chain.from_iterable(payload)))
        return {name: [record.get(name) for record in payload] for name in names}
    if key == "dataframe_records":
        raise _bad(
            "Dataframe records format must be a list of records.",
            key,
            "holds items that are not objects",
            "a list of records",
        )
    if len(signature.inputs) == 1 and not any(isinstance(v, list) for v in payload):
        return {signature.inputs[0].name: payload}
    return _rows(payload, signature.columns, key)


def _rows(rows: Any, names: list[str], field: str) -> dict[str, Any]:
    """Columns from row-major ``rows`` whose values are in the order of ``names``."""
    if not isinstance(rows, list):
        raise _bad(f"'{field}' must be a list of rows.", field, "is not a list", "a list of rows")
    if len(names) == 1 and not any(isinstance(row, list) for row in rows):
        return {names[0]: rows}
    bad = next(
        (i for i, row in enumerate(rows) if not (isinstance(row, list) and len(row) == len(names))),
        None,
    )
    if bad is not None:
        raise _bad(
            f"Row {bad} of '{field}' does not have one value per column.",
            field,
            f"row {bad} is not a list of {len(names)} values",
            f"{len(names)} values per row",
            422,
        )
    duplicated = (
        sorted({name for name in names if names.count(name) > 1})
        if len(set(names)) != len(names)
        else ()
    )
    if duplicated:
        raise RequestInvalid.of(
            [FieldProblem(n, "appears more than once", "each column once") for n in duplicated]
        )
    if not rows:
        return {name: [] for name in names}
    return dict(zip(names, map(list, zip(*rows, strict=True)), strict=True))


def _jsonable(output: Any) -> Any:
    """``output`` made serialisable the way MLflow's ``_get_jsonable_obj`` makes it."""
    if isinstance(output, pd.DataFrame):
        return output.to_dict(orient="records")
    if isinstance(output, pd.Series):
        return pd.DataFrame(output).to_dict(orient="records")
    if isinstance(output, np.ndarray):
        if output.dtype.kind == "f" and output.dtype != np.float64:
            output = output.astype(np.float64)
        if output.ndim and (output.dtype.kind in "biu" or output.dtype == np.float64):
            return np.ascontiguousarray(output)
        return output.tolist()
    if isinstance(output, dict):
        return {key: _jsonable(value) for key, value in output.items()}
    return output


def _default(value: Any) -> Any:
    """What MLflow's ``NumpyEncoder`` writes for values orjson does not write itself."""
    if isinstance(value, np.ndarray):
        return _jsonable(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray):
        return base64.encodebytes(value).decode("ascii")
    if isinstance(value, pd.Timestamp | dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump()
    raise TypeError


def encode_predictions(output: Any) -> bytes:
    """``{"predictions": ...}`` for a model's output (array, Series, DataFrame, list, dict)."""
    try:
        return orjson.dumps(
            {"predictions": _jsonable(output)},
            default=_default,
            option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
        )
    except orjson.JSONEncodeError as exc:
        raise BadOutputError(
            f"model output of type {type(output).__name__} holds a value JSON cannot carry: "
            "expected numbers, strings, booleans, bytes, dates or null"
        ) from exc
