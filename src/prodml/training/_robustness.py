"""The robustness suite: edge-case inputs a model must score without crashing.

Cases are generated from the model's signature and, when given, the profile of its
training data (nulls, numeric extremes, unseen and empty strings, a single row, typical
rows); the project adds its own cases as Parquet files — each incident that broke a model
becomes a case, so the suite grows with the project. A case passes when ``predict`` returns
one finite value (or one output of any fixed shape) per row, within [0, 1] for a
classifier's scores; exceptions are recorded, never propagated.

>>> import numpy as np
>>> from prodml.registry import ColumnSpec, Signature
>>> sig = Signature(inputs=(ColumnSpec("x", "float64"),), output_dtype="float64")
>>> cases = generated_cases(sig)
>>> [case.name for case in cases]
['all_nulls', 'single_row', 'typical_rows', 'extremes:x']
>>> result = run_robustness(lambda X: X["x"].to_numpy(), cases, task="regression")
>>> result.passed
False
>>> print(result.detail.replace("; ", "\\n"))
2/4 cases passed
failed: all_nulls: non-finite output in 2 of 2 rows (first: row 0)
extremes:x: non-finite output in 1 of 6 rows (first: row 5)
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from prodml.core import ConfigError, DefinitionError, SchemaError, check_name, dtype_name
from prodml.registry import Signature
from prodml.storage import read_table, write_table
from prodml.validation import ColumnProfile, Profile

__all__ = [
    "CaseResult",
    "RobustnessCase",
    "RobustnessResult",
    "add_case",
    "generated_cases",
    "project_cases",
    "run_robustness",
]

_INTS = ("int8", "int16", "int32", "int64")
_FLOATS = ("float32", "float64")
_HUGE = 1e12
_TYPICAL_ROWS = 8
_ERROR_CHARS = 300


@dataclass(frozen=True, eq=False)
class RobustnessCase:
    """A named input frame with exactly the signature's columns."""

    name: str
    frame: pd.DataFrame
    source: Literal["generated", "project"]


@dataclass(frozen=True)
class CaseResult:
    """How the model fared on one case; ``error`` says why it failed."""

    name: str
    rows: int
    ok: bool
    error: str | None


@dataclass(frozen=True)
class RobustnessResult:
    """The results of every case, in the order run."""

    cases: tuple[CaseResult, ...]

    @property
    def passed(self) -> bool:
        """Whether every case passed (vacuously true for no cases)."""
        return all(case.ok for case in self.cases)

    @property
    def detail(self) -> str:
        """``"12/12 cases passed"``, or the same count followed by each failure."""
        ok = sum(case.ok for case in self.cases)
        summary = f"{ok}/{len(self.cases)} cases passed"
        failures = [f"{case.name}: {case.error}" for case in self.cases if not case.ok]
        return f"{summary}; failed: {'; '.join(failures)}" if failures else summary

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (read it back with :meth:`from_dict`)."""
        return {"cases": [asdict(case) for case in self.cases]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RobustnessResult:
        """The result written by :meth:`to_dict`; raises :class:`DefinitionError`."""
        try:
            cases = tuple(
                CaseResult(
                    name=str(item["name"]),
                    rows=int(item["rows"]),
                    ok=bool(item["ok"]),
                    error=None if item["error"] is None else str(item["error"]),
                )
                for item in data["cases"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DefinitionError(
                f"robustness result data is malformed ({type(exc).__name__}: {exc}): expected "
                "{'cases': [{'name', 'rows', 'ok', 'error'}, ...]}"
            ) from exc
        return cls(cases)


def _pandas_dtype(dtype: str, values: Sequence[Any]) -> str:
    """The pandas dtype prodml hands a model for ``values`` of signature ``dtype``: what
    Arrow's ``to_pandas`` gives training and serving frames (integers with nulls become
    float64 with NaN, booleans with nulls object)."""
    nulls = any(value is None for value in values)
    if dtype in _INTS:
        return "float64" if nulls else dtype
    if dtype == "bool":
        return "object" if nulls else "bool"
    if dtype in _FLOATS:
        return dtype
    if dtype == "timestamp":
        return "datetime64[us, UTC]"
    return "object"


def _frame(signature: Signature, columns: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    data = {}
    for spec in signature.inputs:
        values = list(columns[spec.name])
        data[spec.name] = pd.Series(values, dtype=_pandas_dtype(spec.dtype, values))
    return pd.DataFrame(data)


def _as_number(dtype: str, value: float) -> int | float:
    """``value`` rounded and clipped into what ``dtype`` can hold (NaN kept for floats)."""
    if dtype in _INTS:
        info = np.iinfo(dtype)
        return int(min(max(round(value), int(info.min)), int(info.max)))
    if math.isnan(value):
        return value
    limit = float(np.finfo(dtype).max)
    return min(max(float(value), -limit), limit)


def _utc(text: str) -> pd.Timestamp:
    """An ISO-8601 instant as a UTC timestamp (naive text is read as UTC)."""
    stamp = pd.Timestamp(text)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _typical(dtype: str, column: ColumnProfile | None) -> Any:
    """A typical value: the median of a number or time, the most frequent category."""
    median = column.quantiles.get("p50") if column and column.quantiles else None
    if dtype in _INTS or dtype in _FLOATS:
        center = 0.0
        if isinstance(median, int | float):
            center = float(median)
        elif column and column.mean is not None and math.isfinite(column.mean):
            center = column.mean
        return _as_number(dtype, center)
    if dtype in ("string", "bool"):
        if column and column.top_categories:
            return column.top_categories[0].value
        if column and column.categories:
            return column.categories[0]
        return "a" if dtype == "string" else False
    if dtype == "timestamp":
        return _utc(median if isinstance(median, str) else "2000-01-01")
    if dtype == "date":
        return dt.date.fromisoformat(median if isinstance(median, str) else "2000-01-01")
    return b""


def _numeric_extremes(dtype: str, column: ColumnProfile | None) -> list[Any]:
    values: list[float] = [0.0, _HUGE, -_HUGE]
    low, high = (column.min, column.max) if column else (None, None)
    if isinstance(low, int | float) and isinstance(high, int | float):
        span = max(float(high) - float(low), 1.0)
        values = [float(low), float(high), high + 10 * span, low - 10 * span, *values]
    else:
        values = [1.0, -1.0, *values]
    if dtype in _FLOATS:
        values.append(math.nan)
    return [_as_number(dtype, value) for value in values]


def _string_extremes(typical: Any, column: ColumnProfile | None) -> list[Any]:
    known = set(column.categories or []) if column else set()
    if column and column.top_categories:
        known |= {str(item.value) for item in column.top_categories}
    unseen = "__unseen__"
    while unseen in known:
        unseen += "_"
    return [unseen, "", f" {typical} ", "ünïcödé ✓"]


def _time_extremes(dtype: str, column: ColumnProfile | None) -> list[Any]:
    texts = ["1970-01-01", "2100-01-01"]
    if column:
        texts += [value for value in (column.min, column.max) if isinstance(value, str)]
    if dtype == "date":
        return [dt.date.fromisoformat(text[:10]) for text in texts]
    return [_utc(text) for text in texts]


def _sample(
    dtype: str, column: ColumnProfile | None, typical: Any, rng: np.random.Generator
) -> list[Any]:
    quantiles = (column.quantiles or {}) if column else {}
    low = quantiles.get("p05", column.min if column else None)
    high = quantiles.get("p95", column.max if column else None)
    if dtype in _INTS or dtype in _FLOATS:
        if isinstance(low, int | float) and isinstance(high, int | float):
            draws = rng.uniform(float(low), float(high), _TYPICAL_ROWS)
        else:
            draws = float(typical) + rng.standard_normal(_TYPICAL_ROWS)
        return [_as_number(dtype, float(value)) for value in draws]
    if dtype == "bool":
        return [bool(value) for value in rng.integers(0, 2, _TYPICAL_ROWS)]
    if dtype == "string" and column and (column.categories or column.top_categories):
        pool = column.categories or [str(item.value) for item in column.top_categories or []]
        return [pool[int(index)] for index in rng.integers(0, len(pool), _TYPICAL_ROWS)]
    return [typical] * _TYPICAL_ROWS


def generated_cases(
    signature: Signature, profile: Profile | None = None, *, seed: int = 0
) -> list[RobustnessCase]:
    """Edge cases for ``signature``'s columns, using the training ``profile`` when given:
    ``all_nulls``; ``single_row`` (typical values); ``typical_rows`` (drawn with ``seed``
    between the 5th and 95th percentiles, or among the categories); then per column
    ``extremes:<col>`` (min, max, ten ranges beyond each, 0, ±1e12, NaN for floats),
    ``strings:<col>`` (an unseen category, an empty, a padded and a non-ASCII string) and
    ``times:<col>`` (1970, 2100, min, max). Other columns hold their typical value."""
    rng = np.random.default_rng(seed)
    columns = {
        spec.name: profile.columns.get(spec.name) if profile else None for spec in signature.inputs
    }
    typical = {spec.name: _typical(spec.dtype, columns[spec.name]) for spec in signature.inputs}

    def case(name: str, values: Mapping[str, Sequence[Any]], rows: int) -> RobustnessCase:
        data = {col: values.get(col, [typical[col]] * rows) for col in typical}
        return RobustnessCase(name, _frame(signature, data), "generated")

    cases = [
        case("all_nulls", {col: [None, None] for col in typical}, 2),
        case("single_row", {}, 1),
        case(
            "typical_rows",
            {
                s.name: _sample(s.dtype, columns[s.name], typical[s.name], rng)
                for s in signature.inputs
            },
            _TYPICAL_ROWS,
        ),
    ]
    for spec in signature.inputs:
        column = columns[spec.name]
        if spec.dtype in _INTS or spec.dtype in _FLOATS:
            kind, values = "extremes", _numeric_extremes(spec.dtype, column)
        elif spec.dtype == "string":
            kind, values = "strings", _string_extremes(typical[spec.name], column)
        elif spec.dtype in ("timestamp", "date"):
            kind, values = "times", _time_extremes(spec.dtype, column)
        else:
            continue
        cases.append(case(f"{kind}:{spec.name}", {spec.name: values}, len(values)))
    return cases


def _to_table(name: str, frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table; tz-aware timestamps go through NumPy UTC values because
    pyarrow's pandas conversion of them is deprecated in pandas 3."""
    arrays = []
    for column in frame.columns:
        if not isinstance(column, str):
            raise SchemaError(
                f"robustness case {name!r}: column {column!r} must be named by a string"
            )
        series = frame[column]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            utc = series.dt.tz_convert(None).to_numpy()
            kind = pa.timestamp(series.dtype.unit, tz="UTC")
            arrays.append(pa.array(utc, from_pandas=True).cast(kind))
        else:
            arrays.append(pa.Array.from_pandas(series))
    return pa.table(arrays, names=list(frame.columns))


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """``table`` as pandas, with nullable dtypes for integer and boolean columns holding
    nulls (rather than float64 or object)."""
    data: dict[str, Any] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if column.null_count and (pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
            values = column.to_pylist()
            data[name] = pd.Series(values, dtype=_pandas_dtype(dtype_name(kind), values))
        else:
            data[name] = column.to_pandas()
    return pd.DataFrame(data, index=pd.RangeIndex(table.num_rows))


def project_cases(directory: Path, signature: Signature) -> list[RobustnessCase]:
    """Every ``*.parquet`` in ``directory`` (sorted by name; none if it does not exist),
    with exactly the signature columns: extra columns dropped, missing ones filled with
    nulls and listed in the case name."""
    root = Path(directory)
    if not root.is_dir():
        return []
    cases = []
    for path in sorted(root.glob("*.parquet")):
        frame = _to_frame(read_table(path))
        missing = [spec for spec in signature.inputs if spec.name not in frame.columns]
        for spec in missing:
            nulls = [None] * len(frame)
            frame[spec.name] = pd.Series(
                nulls, dtype=_pandas_dtype(spec.dtype, nulls), index=frame.index
            )
        name = path.stem
        if missing:
            name += f" (null-filled: {', '.join(spec.name for spec in missing)})"
        cases.append(RobustnessCase(name, frame.loc[:, signature.columns], "project"))
    return cases


def add_case(directory: Path, name: str, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as the project case ``<directory>/<name>.parquet`` (atomically,
    replacing a case of that name) and return its path."""
    check_name(name, kind="robustness case")
    try:
        table = _to_table(name, frame)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise SchemaError(
            f"robustness case {name!r}: frame cannot be stored as Parquet ({exc})"
        ) from exc
    return write_table(table, Path(directory) / f"{name}.parquet")


def _problem(output: np.ndarray, rows: int, task: str) -> str | None:
    """Why ``output`` is not an acceptable answer for ``rows`` rows, or None."""
    if output.ndim == 0 or output.shape[0] != rows:
        return f"returned output of shape {output.shape}: expected {rows} rows"
    if output.dtype.kind not in "biuf":
        return f"returned values of dtype {output.dtype}: expected numbers"
    values = output.astype(np.float64).reshape(rows, -1)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        return f"non-finite output in {int(bad.sum())} of {rows} rows (first: row {first})"
    outside = ((values < 0.0) | (values > 1.0)).any(axis=1)
    if task == "classification" and outside.any():
        first = int(np.argmax(outside))
        return (
            f"scores outside [0, 1] in {int(outside.sum())} of {rows} rows "
            f"(first: row {first}, {values[first].tolist()})"
        )
    return None


def _run_case(
    predict: Callable[[pd.DataFrame], np.ndarray], case: RobustnessCase, task: str
) -> CaseResult:
    rows = len(case.frame)
    try:
        problem = _problem(np.asarray(predict(case.frame)), rows, task)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None and len(problem) > _ERROR_CHARS:
        problem = problem[: _ERROR_CHARS - 1] + "…"
    return CaseResult(case.name, rows, problem is None, problem)


def run_robustness(
    predict: Callable[[pd.DataFrame], np.ndarray],
    cases: Sequence[RobustnessCase],
    *,
    task: Literal["classification", "regression"],
) -> RobustnessResult:
    """Run ``predict`` on every case; a case fails when it raises (the error is recorded
    as type name and message), returns other than one finite output per row, or, for
    classification, a score outside [0, 1]."""
    if task not in ("classification", "regression"):
        raise ConfigError(
            f"robustness task {task!r} is unknown: expected 'classification' or 'regression'"
        )
    return RobustnessResult(tuple(_run_case(predict, case, task) for case in cases))
