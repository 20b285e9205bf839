"""Validate a batch (an Arrow table) against :class:`Expectations`, column at a time.

Each check is one vectorised ``pyarrow.compute`` expression producing a mask of
offending rows; counts come from summing the mask, examples from its first indices.

>>> import pyarrow as pa
>>> from prodml.validation._expectations import ColumnExpectation, Expectations, RangeExpectation
>>> exp = Expectations(columns={"x": ColumnExpectation(dtype="float64", range=RangeExpectation(min=0, max=1))})
>>> report = validate(pa.table({"x": [0.5, 2.0, None, -1.0]}), exp)
>>> [(v.kind, v.count, v.rows, v.examples) for v in report.violations]
[('out_of_range', 2, [1, 3], [2.0, -1.0])]
"""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.compute as pc

from prodml.core._types import is_compatible
from prodml.validation._expectations import (
    ColumnExpectation,
    Expectations,
    Severity,
    ViolationKind,
    anchored,
)
from prodml.validation._messages import message
from prodml.validation._report import ValidationReport, Violation
from prodml.validation._values import jsonable

__all__ = ["compatible", "validate"]

_EXAMPLES = 5
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def validate(batch: pa.Table | pa.RecordBatch, expectations: Expectations) -> ValidationReport:
    """Check every expected column of ``batch``; the report lists each violation."""
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    rows = batch.num_rows
    names = batch.column_names
    present = set(names)
    found: list[Violation] = []
    for name, expectation in expectations.columns.items():
        if name not in present:
            if expectation.required:
                found.append(
                    _whole(name, "missing_column", expectation.severity, expectation, rows)
                )
            continue
        column = batch.column(names.index(name))
        found.extend(_check(name, column, expectation, rows, expectations.min_rows_for_rates))
    if expectations.extra_columns == "forbid":
        for name in names:
            if name not in expectations.columns:
                found.append(_whole(name, "extra_column", "error", None, rows))
    return ValidationReport(row_count=rows, violations=found)


def compatible(actual: pa.DataType, dtype: str) -> bool:
    """Whether a column of ``actual`` type satisfies the expected ``dtype`` name."""
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if pa.types.is_date64(actual):
        return dtype == "date"
    return is_compatible(actual, dtype)


def _check(
    name: str,
    column: pa.ChunkedArray,
    expectation: ColumnExpectation,
    rows: int,
    min_rows_for_rates: int,
) -> list[Violation]:
    if expectation.dtype is not None and not compatible(column.type, expectation.dtype):
        return [_whole(name, "wrong_type", expectation.severity, expectation, rows)]
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    kind = column.type
    checks: list[tuple[ViolationKind, Severity, pa.ChunkedArray]] = []
    nulls = expectation.nulls
    if nulls is not None and column.null_count:
        over_rate = rows >= min_rows_for_rates and column.null_count / rows > nulls.max_rate
        if not nulls.nullable or over_rate:
            checks.append(("null_rate", nulls.severity, pc.is_null(column)))
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
    if expectation.finite is not None and pa.types.is_floating(kind):
        bad = pc.and_kleene(pc.is_valid(column), pc.invert(pc.is_finite(column)))
        checks.append(("non_finite", expectation.finite.severity, bad))
    bounds = expectation.range
    if bounds is not None and numeric and (bounds.min is not None or bounds.max is not None):
        checks.append(("out_of_range", bounds.severity, _outside(column, bounds.min, bounds.max)))
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if expectation.categories is not None and text:
        allowed = pa.array(expectation.categories.values, type=kind)
        unseen = pc.and_kleene(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=allowed)))
        checks.append(("unseen_category", expectation.categories.severity, unseen))
    if expectation.pattern is not None and text:
        matches = pc.match_substring_regex(column, anchored(expectation.pattern.regex))
        mismatched = pc.and_kleene(pc.is_valid(column), pc.invert(matches))
        checks.append(("pattern_mismatch", expectation.pattern.severity, mismatched))
    found = []
    for violation_kind, severity, mask in checks:
        violation = _masked(name, column, violation_kind, severity, expectation, mask, rows)
        if violation is not None:
            found.append(violation)
    return found


def _outside(column: pa.ChunkedArray, low: float | None, high: float | None) -> pa.ChunkedArray:
    """Mask of finite values below ``low`` or above ``high`` (at least one is set); NaN,
    ±inf (the ``non_finite`` check's business) and nulls are never outside. Integer columns are compared with integer bounds (ceil and
    floor, clamped to int64) so that values beyond 2**53 compare exactly, as in Python."""
    if pa.types.is_uint64(column.type):
        column = column.cast(pa.float64(), safe=False)
    if pa.types.is_integer(column.type):
        lower = None if low is None else pa.scalar(_clamp(math.ceil(low)), pa.int64())
        upper = None if high is None else pa.scalar(_clamp(math.floor(high)), pa.int64())
    else:
        lower = None if low is None else pa.scalar(float(low), pa.float64())
        upper = None if high is None else pa.scalar(float(high), pa.float64())
    masks = []
    if lower is not None:
        masks.append(pc.less(column, lower))
    if upper is not None:
        masks.append(pc.greater(column, upper))
    mask = masks[0] if len(masks) == 1 else pc.or_kleene(*masks)
    if pa.types.is_floating(column.type):
        mask = pc.and_kleene(mask, pc.is_finite(column))
    return pc.fill_null(mask, False)


def _clamp(value: int) -> int:
    return max(_INT64_MIN, min(_INT64_MAX, value))


def _masked(
    name: str,
    column: pa.ChunkedArray,
    kind: ViolationKind,
    severity: Severity,
    expectation: ColumnExpectation,
    mask: pa.ChunkedArray,
    rows: int,
) -> Violation | None:
    count = int(pc.sum(mask).as_py() or 0)
    if not count:
        return None
    where = pc.indices_nonzero(mask).slice(0, _EXAMPLES)
    return Violation(
        column=name,
        kind=kind,
        severity=severity,
        count=count,
        fraction=count / rows,
        examples=[jsonable(value) for value in column.take(where).to_pylist()],
        rows=where.to_pylist(),
        message=message(name, kind, expectation),
    )


def _whole(
    name: str,
    kind: ViolationKind,
    severity: Severity,
    expectation: ColumnExpectation | None,
    rows: int,
) -> Violation:
    """A violation of the whole column (schema): every row counts."""
    return Violation(
        column=name,
        kind=kind,
        severity=severity,
        count=rows,
        fraction=1.0 if rows else 0.0,
        message=message(name, kind, expectation),
    )
