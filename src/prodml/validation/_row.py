"""Check one row (a mapping of column → value) on the request path.

:class:`RowValidator` compiles the expectations once into one closure per column,
specialised by dtype: exact-type tests first, precomputed bounds, frozensets and
compiled patterns, and violation objects built in advance (messages never contain the
row's values, so they can be prebuilt and safely returned to callers). A valid row
costs one dict lookup and a closure call per column, with no pydantic on the path.

The row check agrees with :func:`~prodml.validation.validate` on a single-row table:
a null is a violation in a non-nullable column, and rate bounds apply only when
``min_rows_for_rates`` is 1 (one null row then has a null rate of 1).

>>> from prodml.validation._expectations import ColumnExpectation, Expectations, RangeExpectation
>>> exp = Expectations(columns={"x": ColumnExpectation(dtype="float64", range=RangeExpectation(min=0, max=1))})
>>> validator = RowValidator(exp)
>>> validator.check({"x": 0.5})
[]
>>> [(v.column, v.kind, v.severity) for v in validator.check({"x": 7})]
[('x', 'out_of_range', 'warning')]
>>> validator.check({"x": "secret"})[0].message
"column 'x': wrong_type, expected dtype float64"
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

from prodml.validation._expectations import (
    FLOAT_DTYPES,
    ColumnExpectation,
    Expectations,
    Severity,
    ViolationKind,
    compile_pattern,
)
from prodml.validation._messages import message

__all__ = ["RowValidator", "RowViolation"]

Found = tuple["RowViolation", ...]
Check = Callable[[Any], Found]

_OK: Found = ()
_MISSING = object()
_INT_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}
_PLAIN: dict[str, tuple[tuple[type, ...], Callable[[Any], bool]]] = {
    "bool": ((bool,), lambda v: isinstance(v, np.bool_)),
    "binary": ((bytes,), lambda v: isinstance(v, bytes | bytearray | memoryview)),
    "date": ((dt.date,), lambda v: isinstance(v, dt.date) and not isinstance(v, dt.datetime)),
    "timestamp": ((dt.datetime,), lambda v: isinstance(v, dt.datetime | np.datetime64)),
}


@dataclass(frozen=True, slots=True)
class RowViolation:
    """One column of one row breaking an expectation; ``message`` names the column,
    the kind and what was expected — never the value."""

    column: str
    kind: ViolationKind
    severity: Severity
    message: str


class RowValidator:
    """Expectations compiled for checking single rows fast.

    ``check(row)`` returns the violations of one row, an empty list when it is valid.
    """

    __slots__ = ("_columns", "_forbid_extra", "_known")

    def __init__(self, expectations: Expectations) -> None:
        single_row_rates = expectations.min_rows_for_rates <= 1
        self._columns: tuple[tuple[str, Check, RowViolation | None], ...] = tuple(
            (name, _compile(name, expectation, single_row_rates), _missing(name, expectation))
            for name, expectation in expectations.columns.items()
        )
        self._known = frozenset(expectations.columns)
        self._forbid_extra = expectations.extra_columns == "forbid"

    def check(self, row: Mapping[str, Any]) -> list[RowViolation]:
        """Violations of ``row``, in column order (extra columns last)."""
        found: list[RowViolation] = []
        matched = 0
        get = row.get
        for name, check, missing in self._columns:
            value = get(name, _MISSING)
            if value is _MISSING:
                if missing is not None:
                    found.append(missing)
                continue
            matched += 1
            bad = check(value)
            if bad:
                found.extend(bad)
        if self._forbid_extra and matched < len(row):
            found.extend(
                RowViolation(
                    str(key), "extra_column", "error", message(str(key), "extra_column", None)
                )
                for key in row
                if key not in self._known
            )
        return found


def _missing(name: str, expectation: ColumnExpectation) -> RowViolation | None:
    if not expectation.required:
        return None
    kind: ViolationKind = "missing_column"
    return RowViolation(name, kind, expectation.severity, message(name, kind, expectation))


def _compile(name: str, expectation: ColumnExpectation, single_row_rates: bool) -> Check:
    """The check of one column's value, specialised to its dtype; ``single_row_rates``
    when rate bounds apply even to one row (a null is then a rate of 1)."""

    def violation(kind: ViolationKind, severity: Severity) -> RowViolation:
        return RowViolation(name, kind, severity, message(name, kind, expectation))

    nulls = expectation.nulls
    on_null = _OK
    if nulls is not None and (not nulls.nullable or (single_row_rates and nulls.max_rate < 1)):
        on_null = (violation("null_rate", nulls.severity),)
    dtype = expectation.dtype
    wrong = (violation("wrong_type", expectation.severity),) if dtype is not None else _OK
    bounds = expectation.range
    low = -math.inf if bounds is None or bounds.min is None else bounds.min
    high = math.inf if bounds is None or bounds.max is None else bounds.max
    outside = (violation("out_of_range", bounds.severity),) if bounds else _OK
    finite = expectation.finite
    non_finite = (violation("non_finite", finite.severity),) if finite else _OK
    if dtype in _INT_BITS:
        return _integer_check(_INT_BITS[dtype], low, high, on_null, wrong, outside)
    if dtype in FLOAT_DTYPES:
        return _number_check(low, high, on_null, wrong, outside, non_finite)
    categories = expectation.categories
    pattern = expectation.pattern
    text = _text_check(
        frozenset(categories.values) if categories else None,
        compile_pattern(pattern.regex).fullmatch if pattern else None,
        (violation("unseen_category", categories.severity),) if categories else _OK,
        (violation("pattern_mismatch", pattern.severity),) if pattern else _OK,
        on_null,
        wrong,
    )
    if dtype == "string":
        return text
    if dtype is not None:
        exact, accepts = _PLAIN[dtype]
        return _plain_check(frozenset(exact), accepts, on_null, wrong)
    number = _number_check(low, high, on_null, _OK, outside, non_finite)

    def any_type(value: Any) -> Found:
        return text(value) if isinstance(value, str) else number(value)

    return any_type


def _is_integer(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool | np.bool_)


def _integer_check(
    bits: int, low: float, high: float, on_null: Found, wrong: Found, outside: Found
) -> Check:
    smallest, largest = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    fast_low, fast_high = max(smallest, low), min(largest, high)

    def check(value: Any) -> Found:
        if type(value) is not int:
            if value is None:
                return on_null
            if not _is_integer(value):
                return wrong
            value = int(value)
        if fast_low <= value <= fast_high:
            return _OK
        if not smallest <= value <= largest:
            return wrong
        return outside

    return check


def _number_check(
    low: float, high: float, on_null: Found, wrong: Found, outside: Found, non_finite: Found
) -> Check:
    inf = math.inf

    def check(value: Any) -> Found:
        kind = type(value)
        if kind is not float and kind is not int:
            if value is None:
                return on_null
            if not _is_number(value):
                return wrong
            value = float(value) if not _is_integer(value) else int(value)
        if low <= value <= high:
            if non_finite and (value == inf or value == -inf):
                return non_finite
            return _OK
        if value != value or value == inf or value == -inf:
            return non_finite  # never out of range
        return outside

    return check


def _text_check(
    categories: frozenset[str] | None,
    fullmatch: Callable[[str], object] | None,
    unseen: Found,
    mismatch: Found,
    on_null: Found,
    wrong: Found,
) -> Check:
    # A known category that itself matches the pattern needs no regex at request time.
    known_match = frozenset(
        c for c in categories or () if fullmatch is None or fullmatch(c) is not None
    )

    def check(value: Any) -> Found:
        if type(value) is not str:
            if value is None:
                return on_null
            if not isinstance(value, str):
                return wrong
        if value in known_match:
            return _OK
        bad_category = categories is not None and value not in categories
        bad_pattern = fullmatch is not None and fullmatch(value) is None
        if bad_category:
            return unseen + mismatch if bad_pattern else unseen
        return mismatch if bad_pattern else _OK

    return check


def _plain_check(
    exact: frozenset[type], accepts: Callable[[Any], bool], on_null: Found, wrong: Found
) -> Check:
    def check(value: Any) -> Found:
        if type(value) in exact:
            return _OK
        if value is None:
            return on_null
        return _OK if accepts(value) else wrong

    return check
