"""Infer :class:`Expectations` from a :class:`Profile`: the contract its data satisfied.

Everything inferred is satisfied by the profiled data itself, so validating that data
against its own expectations finds nothing. Patterns are inferred conservatively: only
for strings made of ASCII digits and letters of a single case, with bounded length.

>>> from prodml.validation._profile import ColumnProfile, Profile
>>> code = ColumnProfile(dtype="string", count=3, null_count=0, null_rate=0.0,
...                      categories=["AA", "B6", "UA"], distinct_count=3,
...                      char_classes=["digit", "upper"], min_length=2, max_length=2)
>>> delay = ColumnProfile(dtype="float64", count=3, null_count=1, null_rate=0.25, min=-10.0, max=90.0)
>>> exp = infer_expectations(Profile(row_count=4, columns={"carrier": code, "delay": delay}))
>>> exp.columns["carrier"].pattern.regex, exp.columns["carrier"].categories.values
('^[A-Z0-9]{2}$', ['AA', 'B6', 'UA'])
>>> exp.columns["delay"].range.min, exp.columns["delay"].range.max, exp.columns["delay"].nulls.max_rate
(-20.0, 100.0, 0.3)
"""

from __future__ import annotations

import math
from typing import Any

from prodml.core._types import DTYPES
from prodml.validation._expectations import (
    FLOAT_DTYPES,
    NUMERIC_DTYPES,
    CategoryExpectation,
    ColumnExpectation,
    Expectations,
    FiniteExpectation,
    NullExpectation,
    PatternExpectation,
    RangeExpectation,
)
from prodml.validation._profile import CharClass, ColumnProfile, Profile

__all__ = ["infer_expectations", "infer_pattern"]

#: Arrow types outside ``DTYPES`` that a ``DTYPES`` name holds losslessly.
_WIDER = {
    "uint8": "int16",
    "uint16": "int32",
    "uint32": "int64",
    "uint64": "int64",
    "halffloat": "float32",
}
_CLASSES: dict[frozenset[CharClass], str] = {
    frozenset({"digit"}): "[0-9]",
    frozenset({"upper"}): "[A-Z]",
    frozenset({"lower"}): "[a-z]",
    frozenset({"digit", "upper"}): "[A-Z0-9]",
    frozenset({"digit", "lower"}): "[a-z0-9]",
}
_MAX_PATTERN_LENGTH = 64


def infer_expectations(
    profile: Profile,
    *,
    range_tolerance: float = 0.1,
    null_rate_margin: float = 0.05,
    max_categories: int = 50,
) -> Expectations:
    """Expectations every column of the profiled data meets.

    Numeric ranges widen ``[min, max]`` by ``range_tolerance`` of the span on each side;
    null-rate bounds add ``null_rate_margin`` to the observed rate (capped to 1); a column
    without nulls is not nullable; floats without NaN or inf must stay finite; string
    columns with at most ``max_categories`` distinct values get their category list.
    """
    if not (range_tolerance >= 0 and math.isfinite(range_tolerance)):
        raise ValueError(f"range_tolerance must be a finite number >= 0, got {range_tolerance!r}")
    if not 0 <= null_rate_margin <= 1:
        raise ValueError(f"null_rate_margin must lie in [0, 1], got {null_rate_margin!r}")
    if max_categories < 0:
        raise ValueError(f"max_categories must be >= 0, got {max_categories!r}")
    columns = {
        name: _column(column, range_tolerance, null_rate_margin, max_categories)
        for name, column in profile.columns.items()
    }
    return Expectations(columns=columns)


def infer_pattern(classes: list[CharClass], min_length: int, max_length: int) -> str | None:
    """A regex for strings of these character classes and lengths, or None when the
    classes are mixed-case, include other characters, or the length is unbounded.

    >>> infer_pattern(["digit"], 3, 4), infer_pattern(["lower", "upper"], 2, 2)
    ('^[0-9]{3,4}$', None)
    """
    chars = _CLASSES.get(frozenset(classes))
    if chars is None or max_length > _MAX_PATTERN_LENGTH or max_length < 1:
        return None
    repeat = f"{{{max_length}}}" if min_length == max_length else f"{{{min_length},{max_length}}}"
    return f"^{chars}{repeat}$"


def _column(
    column: ColumnProfile, tolerance: float, margin: float, max_categories: int
) -> ColumnExpectation:
    dtype = column.dtype if column.dtype in DTYPES else _WIDER.get(column.dtype)
    checks: dict[str, Any] = {
        "nulls": NullExpectation(
            nullable=column.null_count > 0, max_rate=min(1.0, column.null_rate + margin)
        )
    }
    if dtype in FLOAT_DTYPES and column.nan_count == 0 and column.inf_count == 0:
        checks["finite"] = FiniteExpectation()
    if dtype in NUMERIC_DTYPES:
        checks["range"] = _range(column, tolerance, integer=dtype not in FLOAT_DTYPES)
    if dtype == "string":
        categories = column.categories
        if categories and len(categories) <= max_categories:
            checks["categories"] = CategoryExpectation(values=categories)
        if column.char_classes and column.min_length is not None and column.max_length is not None:
            regex = infer_pattern(column.char_classes, column.min_length, column.max_length)
            if regex is not None:
                checks["pattern"] = PatternExpectation(regex=regex)
    return ColumnExpectation(dtype=dtype, **checks)


def _range(column: ColumnProfile, tolerance: float, *, integer: bool) -> RangeExpectation | None:
    low, high = column.min, column.max
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    if integer and isinstance(low, int) and isinstance(high, int):
        widen = math.ceil(tolerance * (high - low))
        return RangeExpectation(min=low - widen, max=high + widen)
    widen_float = tolerance * (float(high) - float(low))
    lower, upper = low - widen_float, high + widen_float
    return RangeExpectation(
        min=lower if math.isfinite(lower) else None,
        max=upper if math.isfinite(upper) else None,
    )
