"""The hard input contract of every wire format: request columns checked against a
model's :class:`~prodml.registry.Signature` and turned into the DataFrame the model reads.

A missing, extra, mistyped or ragged field raises :class:`RequestInvalid` (status 422)
with one :class:`FieldProblem` per bad field. Messages name fields, types, rows and
counts, never a request's values (they may be private data). Nulls pass; soft checks
(ranges, expectations) run elsewhere. This is on the hot path of every request, so a
signature's column index and layout are computed once, columns are converted with one
NumPy call each, and a uniform numeric frame is built from one 2-D array. Mixed frames
use pandas' ``DataFrame._from_arrays`` (ten times faster than the dict constructor, which
in pandas 3 re-infers every column), with the public constructor as fallback.

>>> from prodml.registry import ColumnSpec, Signature
>>> sig = Signature((ColumnSpec("x", "float64"), ColumnSpec("n", "int64")), "float64")
>>> check_columns({"n": [1, 2], "x": [0.5, None]}, sig).dtypes.astype(str).to_dict()
{'x': 'float64', 'n': 'int64'}
>>> try:
...     check_columns({"x": ["oops"], "z": [1]}, sig)
... except RequestInvalid as exc:
...     print(exc.status, [p.to_dict()["field"] for p in exc.details])
422 ['request', 'x', 'n']
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from prodml.core.errors import SchemaError
from prodml.registry import Signature

__all__ = [
    "FieldProblem",
    "RequestInvalid",
    "check_columns",
    "check_row_limit",
    "expected_values",
    "float_rows_frame",
    "typed_columns",
    "unknown_fields",
]

_NONE = type(None)
_MISSING: Any = object()
_NUMBERS: frozenset[type] = frozenset({int, float, _NONE})
_BOOLS: frozenset[type] = frozenset({bool, _NONE})
_STRINGS: frozenset[type] = frozenset({str, _NONE})
_BYTES: frozenset[type] = frozenset({bytes, str, _NONE})
_DATES: frozenset[type] = frozenset({str, dt.date, _NONE})
_TIMES: frozenset[type] = frozenset({str, dt.datetime, pd.Timestamp, _NONE})
_INTS: dict[str, type[np.signedinteger[Any]]] = {
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
}  # fmt: skip
_FLOATS: dict[str, type[np.floating[Any]]] = {"float32": np.float32, "float64": np.float64}
_F32_MAX = float(np.finfo(np.float32).max)
_EXPECTED = {
    "bool": "true, false or null",
    "float32": "numbers or null",
    "float64": "numbers or null",
    "string": "strings or null",
    "binary": "strings, bytes or null",
    "date": "ISO 8601 dates (YYYY-MM-DD) or null",
    "timestamp": "ISO 8601 date-times (naive ones read as UTC) or null",
}


@dataclass(frozen=True)
class FieldProblem:
    """What is wrong with one field of a request, and what was expected."""

    field: str
    problem: str
    expected: str

    def to_dict(self) -> dict[str, str]:
        """The problem as JSON-ready data."""
        return {"field": self.field, "problem": self.problem, "expected": self.expected}


class RequestInvalid(SchemaError):
    """A request body is malformed (status 400) or does not fit the model's input
    contract (422); ``details`` holds one :class:`FieldProblem` per bad field."""

    def __init__(self, message: str, *, status: int, details: Sequence[FieldProblem] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.details = list(details)

    @classmethod
    def of(
        cls, details: Sequence[FieldProblem], *, status: int = 422, subject: str = "request"
    ) -> RequestInvalid:
        """The error for ``details``, its message summarising the first five.

        >>> str(RequestInvalid.of([FieldProblem("x", "is missing", "float64")]))
        "request has 1 invalid field: 'x' is missing (expected float64)"
        """
        shown = "; ".join(
            f"{_quote(p.field)} {p.problem} (expected {p.expected})" for p in details[:5]
        )
        more = f"; and {len(details) - 5} more" if len(details) > 5 else ""
        noun = "field" if len(details) == 1 else "fields"
        return cls(
            f"{subject} has {len(details)} invalid {noun}: {shown}{more}",
            status=status,
            details=details,
        )


def unknown_fields(count: int, what: str, expected: str, *, where: str = "request") -> FieldProblem:
    """The problem of ``where`` holding ``count`` names not among ``what``: a name the
    client made up is client input like a value (a CSV body without a header row makes
    its first row the names), so such names are counted, never repeated; ``expected``
    says which names are.

    >>> unknown_fields(2, "the model's inputs", "f0, f1").to_dict()
    {'field': 'request', 'problem': "has 2 names not among the model's inputs", 'expected': 'f0, f1'}
    """
    return FieldProblem(where, f"has {count} name{'s' * (count != 1)} not among {what}", expected)


def check_row_limit(rows: int, limit: int, field: str, *, subject: str = "request") -> None:
    """Refuse (413) a request part of more than ``limit`` rows (``[serving]
    max_batch_rows``), counted before any of its values is read; every protocol answers
    the same.

    >>> check_row_limit(10, 10, "entities")
    >>> check_row_limit(11, 10, "entities")
    Traceback (most recent call last):
    ...
    prodml.serving._wire.RequestInvalid: request has 1 invalid field: 'entities' holds more rows than the limit (expected at most 10 rows per request: [serving] max_batch_rows)
    """
    if rows > limit:
        expected = f"at most {limit} rows per request: [serving] max_batch_rows"
        problem = FieldProblem(field, "holds more rows than the limit", expected)
        raise RequestInvalid.of([problem], status=413, subject=subject)


def _quote(name: str) -> str:
    """A client-supplied field name fit for a message: quoted and at most 64 characters."""
    return repr(name if len(name) <= 64 else name[:63] + "…")


def expected_values(dtype: str, *, nullable: bool = True) -> str:
    """What a column of ``dtype`` accepts, for messages.

    >>> expected_values("int8")
    'int8: whole numbers in [-128, 127] or null'
    >>> expected_values("string", nullable=False)
    'string: strings'
    """
    if dtype in _INTS:
        info = np.iinfo(_INTS[dtype])
        text = f"{dtype}: whole numbers in [{info.min}, {info.max}] or null"
    else:
        text = f"{dtype}: {_EXPECTED.get(dtype, 'values')}"
    return text if nullable else text.removesuffix(" or null")


class _Invalid(Exception):
    """Internal: one column's problem text."""


def _check_types(values: Sequence[Any], allowed: frozenset[type]) -> set[type]:
    """The value types in ``values``; raises naming the first row of a type not allowed."""
    kinds = set(map(type, values))
    if not kinds <= allowed:
        row, kind = next((i, type(v)) for i, v in enumerate(values) if type(v) not in allowed)
        raise _Invalid(f"holds a {kind.__name__} value at row {row}")
    return kinds


def _floats(values: list[Any], dtype: str) -> np.ndarray:
    _check_types(values, _NUMBERS)
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:
        raise _Invalid("holds an integer too large for a float") from None
    return _narrow_float(array, dtype)


def _narrow_float(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        present = array[np.isfinite(array)]
        if present.size and np.abs(present).max() > _F32_MAX:
            raise _Invalid("holds a number too large for float32")
    return array.astype(_FLOATS[dtype], copy=False)


def _ints(values: list[Any], dtype: str) -> np.ndarray:
    kinds = _check_types(values, _NUMBERS)
    if float in kinds:
        for row, value in enumerate(values):
            if type(value) is float and not (value.is_integer() and abs(value) < 2.0**63):
                raise _Invalid(f"holds a number that is not a whole int64 at row {row}")
    try:
        array = np.array(values, dtype=np.float64 if _NONE in kinds else np.int64)
    except OverflowError:
        raise _Invalid("holds an integer outside the int64 range") from None
    return _narrow_int(array, dtype)


def _narrow_int(array: np.ndarray, dtype: str) -> np.ndarray:
    """An integer (or float with NaN for nulls, whole values) array in ``dtype``'s range,
    cast to ``dtype`` unless it holds nulls."""
    if array.dtype == _INTS[dtype]:
        return array
    info = np.iinfo(_INTS[dtype])
    present = array[~np.isnan(array)] if array.dtype.kind == "f" else array
    if present.size and (present.min() < info.min or present.max() > info.max):
        raise _Invalid(f"holds an integer outside the {dtype} range")
    if array.dtype.kind == "f" and present.size < array.size:
        return array
    return array.astype(_INTS[dtype], copy=False)


def _bools(values: list[Any], dtype: str) -> np.ndarray:
    kinds = _check_types(values, _BOOLS)
    return np.array(values, dtype=object if _NONE in kinds else np.bool_)


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _strings(values: list[Any], dtype: str) -> np.ndarray:
    _check_types(values, _STRINGS)
    return _objects(values)


def _binaries(values: list[Any], dtype: str) -> np.ndarray:
    kinds = _check_types(values, _BYTES)
    if str in kinds:
        values = [v.encode() if type(v) is str else v for v in values]
    return _objects(values)


def _dates(values: list[Any], dtype: str) -> np.ndarray:
    _check_types(values, _DATES)
    parsed = []
    for row, value in enumerate(values):
        try:
            parsed.append(dt.date.fromisoformat(value) if type(value) is str else value)
        except ValueError:
            raise _Invalid(f"holds a string that is not an ISO 8601 date at row {row}") from None
    return _objects(parsed)


def _timestamps(values: list[Any], dtype: str) -> Any:
    kinds = _check_types(values, _TIMES)
    if not kinds <= {str, _NONE}:
        values = [v.isoformat() if isinstance(v, dt.datetime) else v for v in values]
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601")
        return parsed.as_unit("ns").array
    except (ValueError, OverflowError):
        raise _Invalid("holds a string that is not an ISO 8601 date-time in range") from None


_CONVERTERS: dict[str, Callable[[list[Any], str], Any]] = {
    "bool": _bools,
    "string": _strings,
    "binary": _binaries,
    "date": _dates,
    "timestamp": _timestamps,
    **dict.fromkeys(_INTS, _ints),
    **dict.fromkeys(_FLOATS, _floats),
}


def _from_array(array: np.ndarray, dtype: str) -> Any:
    """One column given as a NumPy array: cast without a Python loop where its dtype fits."""
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise _Invalid(f"is a {array.ndim}-D array")
    kind = array.dtype.kind
    if kind == "O" or (kind == "U" and dtype in ("binary", "date", "timestamp")):
        return _CONVERTERS[dtype](array.tolist(), dtype)
    if dtype in _FLOATS and kind in "iuf":
        return _narrow_float(array.astype(np.float64, copy=False), dtype)
    if dtype in _INTS and kind in "iu":
        if kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
            raise _Invalid(f"holds an integer outside the {dtype} range")
        return _narrow_int(array.astype(np.int64, copy=False), dtype)
    if dtype in _INTS and kind == "f":
        present = array[~np.isnan(array)]
        if not np.all(present == np.trunc(present)):
            raise _Invalid("holds numbers that are not whole")
        return _narrow_int(array.astype(np.float64, copy=False), dtype)
    if (dtype, kind) in {("bool", "b"), ("string", "U"), ("binary", "S")}:
        return array.astype(np.bool_ if kind == "b" else object, copy=False)
    if dtype == "timestamp" and kind == "M":
        return pd.to_datetime(array, utc=True).as_unit("ns").array
    raise _Invalid(f"holds values of NumPy dtype {array.dtype}")


@dataclass(frozen=True)
class _Plan:
    names: tuple[str, ...]
    dtypes: tuple[str, ...]
    index: pd.Index
    wanted: frozenset[str]
    extra: str
    floats: str | None


_PLANS: dict[int, tuple[Signature, _Plan]] = {}


def _plan(signature: Signature) -> _Plan:
    """What :func:`check_columns` needs from a signature, computed once per signature
    object (looked up by identity: hashing a wide signature costs more than the check)."""
    cached = _PLANS.get(id(signature))
    if cached is not None and cached[0] is signature:
        return cached[1]
    if len(_PLANS) >= 256:
        _PLANS.clear()
    plan = _new_plan(signature)
    _PLANS[id(signature)] = (signature, plan)
    return plan


def _new_plan(signature: Signature) -> _Plan:
    names = tuple(spec.name for spec in signature.inputs)
    dtypes = tuple(spec.dtype for spec in signature.inputs)
    floats = dtypes[0] if len(set(dtypes)) == 1 and dtypes[0] in _FLOATS else None
    shown = ", ".join(names[:10]) + (f", … ({len(names)} in all)" if len(names) > 10 else "")
    extra = f"only the model's inputs: {shown}"
    return _Plan(names, dtypes, pd.Index(names), frozenset(names), extra, floats)


def _convert(values: Any, dtype: str) -> Any:
    if type(values) is list:
        return _CONVERTERS[dtype](values, dtype)
    if isinstance(values, np.ndarray):
        return _from_array(values, dtype)
    return _CONVERTERS[dtype](list(values), dtype)


def check_columns(
    columns: Mapping[str, Sequence[Any] | np.ndarray],
    signature: Signature,
    *,
    allow_extra: bool = False,
) -> pd.DataFrame:
    """The model's input frame from ``{field: values}``: columns in signature order with
    the signature's dtypes (an integer column holding nulls arrives as float64 with NaN,
    a string column as object, a timestamp column as ``datetime64[ns, UTC]``). Raises
    :class:`RequestInvalid` (422) with one problem per bad field; extra fields are
    problems unless ``allow_extra``."""
    plan = _plan(signature)
    extra = [] if allow_extra else [name for name in columns if name not in plan.wanted]
    if plan.floats is not None and not extra:
        frame = _float_frame(columns, plan)
        if frame is not None:
            return frame
    problems = [unknown_fields(len(extra), "the model's inputs", plan.extra)] if extra else []
    arrays: list[Any] = []
    rows: int | None = None
    for name, dtype in zip(plan.names, plan.dtypes, strict=True):
        values = columns.get(name, _MISSING)
        try:
            if values is _MISSING:
                raise _Invalid("is missing")
            if not isinstance(values, list | tuple | np.ndarray) or getattr(values, "ndim", 1) == 0:
                raise _Invalid(f"is a {type(values).__name__}, not a list of values")
            rows = len(values) if rows is None else rows
            if len(values) != rows:
                raise _Invalid(f"has {len(values)} values, not {rows} like the first input")
            arrays.append(_convert(values, dtype))
        except _Invalid as exc:
            problems.append(FieldProblem(name, str(exc), expected_values(dtype)))
    if problems:
        raise RequestInvalid.of(problems)
    return _frame(arrays, plan, rows or 0)


def _float_frame(columns: Mapping[str, Any], plan: _Plan) -> pd.DataFrame | None:
    """The fast path for all-float signatures fed lists of numbers: one type scan, one
    2-D array. ``None`` when anything is off; the general path then names the problem."""
    lists: list[Any] = [columns.get(name) for name in plan.names]
    if set(map(type, lists)) != {list} or len(set(map(len, lists))) != 1:
        return None
    if not set(map(type, chain.from_iterable(lists))) <= _NUMBERS:
        return None
    try:
        array = _narrow_float(np.array(lists, dtype=np.float64), plan.floats or "float64")
    except (OverflowError, _Invalid):
        return None
    return pd.DataFrame(array.T, columns=plan.index.view(), copy=False)


def float_rows_frame(rows: Any, names: Any, signature: Signature) -> pd.DataFrame | None:
    """The model's input frame from row-major ``rows`` whose values are in the order of
    ``names``, fast, for an all-float signature fed rows of numbers in its own column
    order (the common one-row request): one 2-D array straight from the rows, none of
    :func:`check_columns`' column lists. ``None`` when anything is off (other columns or
    order, ragged rows, other values, no rows); :func:`check_columns` then reads the
    columns and names the problem. The frame equals the one it would build."""
    plan = _plan(signature)
    if plan.floats is None or type(rows) is not list or not rows:
        return None
    if not isinstance(names, list | tuple) or tuple(names) != plan.names:
        return None
    if set(map(type, rows)) != {list} or not set(map(type, chain.from_iterable(rows))) <= _NUMBERS:
        return None
    try:
        array = np.array(rows, dtype=np.float64)
        if array.shape != (len(rows), len(plan.names)):
            return None
        # column-major, as check_columns' frame: a model's sums then add in the same
        # order, to the last bit (BLAS takes another path over a row-major matrix)
        array = _narrow_float(np.ascontiguousarray(array.T), plan.floats)
    except (OverflowError, ValueError, _Invalid):  # ValueError: rows of unequal lengths
        return None
    return pd.DataFrame(array.T, columns=plan.index.view(), copy=False)


def _frame(arrays: list[Any], plan: _Plan, rows: int) -> pd.DataFrame:
    """A frame over ``arrays`` without copying or re-inferring them (a view of the cached
    column index each time, so renaming one frame's columns touches no other)."""
    first = arrays[0].dtype if arrays else None
    if first is not None and first.kind in "fiub" and all(a.dtype == first for a in arrays):
        return pd.DataFrame(np.vstack(arrays).T, columns=plan.index.view(), copy=False)
    from_arrays = getattr(pd.DataFrame, "_from_arrays", None)
    if from_arrays is not None:
        frame: pd.DataFrame = from_arrays(
            arrays, columns=plan.index.view(), index=pd.RangeIndex(rows), verify_integrity=False
        )
        return frame
    series = {
        n: pd.Series(a, dtype=a.dtype, copy=False) for n, a in zip(plan.names, arrays, strict=True)
    }
    return pd.DataFrame(series, index=pd.RangeIndex(rows), columns=plan.index)


def typed_columns(
    columns: Mapping[str, list[Any]],
    dtypes: Mapping[str, str],
    *,
    prefix: str = "",
    required: Collection[str] = (),
) -> dict[str, list[Any]]:
    """``columns`` with every column ``dtypes`` names checked against its dtype (as
    :func:`check_columns` checks a model input) and given back as plain Python values of
    it: whole numbers for integers (a whole float is taken losslessly), floats, ISO 8601
    strings as dates or UTC datetimes. A column in ``required`` may hold no null. Other
    columns pass unchanged. Raises :class:`RequestInvalid` (422) with one problem per bad
    column, named ``prefix + name``.

    >>> typed_columns({"id": [15, 2.0], "x": ["a"]}, {"id": "int64"})
    {'id': [15, 2], 'x': ['a']}
    >>> try:
    ...     typed_columns({"id": ["15"]}, {"id": "int64"}, prefix="entities.", required={"id"})
    ... except RequestInvalid as exc:
    ...     print([(p.field, p.problem, p.expected) for p in exc.details])
    [('entities.id', 'holds a str value at row 0', 'int64: whole numbers in [-9223372036854775808, 9223372036854775807]')]
    """
    out = dict(columns)
    problems: list[FieldProblem] = []
    for name, values in columns.items():
        dtype = dtypes.get(name)
        if dtype not in _CONVERTERS:
            continue
        not_null = name in required
        try:
            converted = _CONVERTERS[dtype](list(values), dtype)
            if not_null and None in values:
                raise _Invalid(f"is null at row {values.index(None)}")
            out[name] = _python_values(values, converted, dtype)
        except _Invalid as exc:
            problems.append(
                FieldProblem(prefix + name, str(exc), expected_values(dtype, nullable=not not_null))
            )
    if problems:
        raise RequestInvalid.of(problems)
    return out


def _python_values(values: list[Any], converted: Any, dtype: str) -> list[Any]:
    """A checked column as plain Python values (nulls stay None)."""
    if dtype in _INTS:
        return [None if v is None else int(v) for v in values]
    if dtype in _FLOATS:
        return [None if v is None else float(v) for v in values]
    if dtype == "timestamp":
        return [
            None if v is None else t.to_pydatetime() for v, t in zip(values, converted, strict=True)
        ]
    if dtype == "date":
        return list(converted)
    return list(values)
