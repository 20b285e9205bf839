"""What each kind of violation expected, in words shared by batch reports and row checks.

Messages name the column, the kind and the expectation — never the offending value, so
that a row check's message can be logged or returned to a caller safely.

>>> from prodml.validation._expectations import ColumnExpectation, RangeExpectation
>>> column = ColumnExpectation(dtype="float64", range=RangeExpectation(min=0, max=10))
>>> message("delay", "out_of_range", column)
"column 'delay': out_of_range, expected values in [0, 10]"
>>> message("x", "extra_column", None)
"column 'x': extra_column, expected only the columns named in the expectations"
"""

from __future__ import annotations

from prodml.validation._expectations import ColumnExpectation, ViolationKind

__all__ = ["expected", "message"]

_PREVIEW = 10


def message(column: str, kind: ViolationKind, expectation: ColumnExpectation | None) -> str:
    """One line naming the column, the kind of violation and what was expected."""
    return f"column {column!r}: {kind}, expected {expected(kind, expectation)}"


def expected(kind: ViolationKind, expectation: ColumnExpectation | None) -> str:
    """What ``expectation`` asked for, for a violation of ``kind``."""
    if expectation is None or kind == "extra_column":
        return "only the columns named in the expectations"
    if kind == "missing_column":
        return f"a required column of dtype {expectation.dtype or 'any'}"
    if kind == "wrong_type":
        return f"dtype {expectation.dtype}"
    if kind == "null_rate":
        nulls = expectation.nulls
        if nulls is None or not nulls.nullable:
            return "no nulls"
        return f"a null rate of at most {nulls.max_rate:.4g}"
    if kind == "non_finite":
        return "finite numbers (no NaN or infinity)"
    if kind == "out_of_range":
        bounds = expectation.range
        low = "-inf" if bounds is None or bounds.min is None else repr(bounds.min)
        high = "inf" if bounds is None or bounds.max is None else repr(bounds.max)
        return f"values in [{low}, {high}]"
    if kind == "unseen_category":
        values = expectation.categories.values if expectation.categories else []
        shown = ", ".join(repr(value) for value in values[:_PREVIEW])
        more = f", … ({len(values)} in all)" if len(values) > _PREVIEW else ""
        return f"one of {shown}{more}"
    regex = expectation.pattern.regex if expectation.pattern else ""
    return f"values matching {regex!r}"
