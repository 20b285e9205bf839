"""RowValidator: the request-path check of one row."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pytest

from prodml.validation import (
    CategoryExpectation,
    ColumnExpectation,
    Expectations,
    FiniteExpectation,
    NullExpectation,
    PatternExpectation,
    RangeExpectation,
    RowValidator,
    RowViolation,
)

SECRET = "s3cr3t-Value"


@pytest.fixture(scope="module")
def validator() -> RowValidator:
    not_null = NullExpectation(nullable=False)
    return RowValidator(
        Expectations(
            columns={
                "carrier": ColumnExpectation(
                    dtype="string",
                    nulls=not_null,
                    categories=CategoryExpectation(values=["AA", "UA"]),
                    pattern=PatternExpectation(regex="^[A-Z0-9]{2}$"),
                ),
                "delay": ColumnExpectation(
                    dtype="float64",
                    nulls=NullExpectation(nullable=True, max_rate=0.2),
                    finite=FiniteExpectation(),
                    range=RangeExpectation(min=-60, max=600),
                ),
                "seats": ColumnExpectation(dtype="int16", range=RangeExpectation(min=1, max=500)),
                "late": ColumnExpectation(dtype="bool", nulls=not_null),
                "departed": ColumnExpectation(dtype="timestamp"),
                "day": ColumnExpectation(dtype="date", required=False),
                "tail": ColumnExpectation(dtype="string", severity="warning"),
            },
            extra_columns="forbid",
        )
    )


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "carrier": "AA",
        "delay": 12.5,
        "seats": 180,
        "late": False,
        "departed": dt.datetime(2013, 1, 1, 5, tzinfo=dt.UTC),
        "day": dt.date(2013, 1, 1),
        "tail": "N123",
    }
    row.update(changes)
    return row


def _kinds(found: list[RowViolation]) -> list[tuple[str, str, str]]:
    return [(v.column, v.kind, v.severity) for v in found]


def test_valid_rows(validator: RowValidator) -> None:
    assert validator.check(_row()) == []
    assert validator.check(_row(delay=None, day=None, tail=None)) == []
    assert validator.check(_row(delay=3)) == []  # an int is a valid float64
    numpy_values = _row(delay=np.float32(1.5), seats=np.int64(7), late=np.bool_(True))
    assert validator.check(numpy_values) == []
    row = _row()
    del row["day"]  # optional column
    assert validator.check(row) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"carrier": "ZZ"}, [("carrier", "unseen_category", "warning")]),
        (
            {"carrier": "a-1"},
            [("carrier", "unseen_category", "warning"), ("carrier", "pattern_mismatch", "warning")],
        ),
        ({"carrier": None}, [("carrier", "null_rate", "error")]),
        ({"carrier": 7}, [("carrier", "wrong_type", "error")]),
        ({"delay": 601.0}, [("delay", "out_of_range", "warning")]),
        ({"delay": math.nan}, [("delay", "non_finite", "error")]),
        ({"delay": -math.inf}, [("delay", "non_finite", "error")]),
        ({"delay": "12"}, [("delay", "wrong_type", "error")]),
        ({"delay": True}, [("delay", "wrong_type", "error")]),
        ({"seats": 0}, [("seats", "out_of_range", "warning")]),
        ({"seats": 40_000}, [("seats", "wrong_type", "error")]),  # beyond int16
        ({"seats": 180.0}, [("seats", "wrong_type", "error")]),
        ({"late": 0}, [("late", "wrong_type", "error")]),
        ({"departed": dt.date(2013, 1, 1)}, [("departed", "wrong_type", "error")]),
        ({"day": dt.datetime(2013, 1, 1)}, [("day", "wrong_type", "error")]),
        ({"tail": b"N1"}, [("tail", "wrong_type", "warning")]),
        ({"gate": "B12"}, [("gate", "extra_column", "error")]),
    ],
)
def test_each_kind_detected(
    validator: RowValidator, changes: dict[str, object], expected: list[tuple[str, str, str]]
) -> None:
    assert _kinds(validator.check(_row(**changes))) == expected


def test_missing_required_column(validator: RowValidator) -> None:
    row = _row()
    del row["late"]
    assert _kinds(validator.check(row)) == [("late", "missing_column", "error")]


@pytest.mark.parametrize(
    "changes",
    [{"carrier": SECRET}, {"delay": 987654.25}, {"seats": "s3cr3t"}, {SECRET: 1}, {"late": SECRET}],
)
def test_messages_name_column_never_value(
    validator: RowValidator, changes: dict[str, object]
) -> None:
    (found, *rest) = validator.check(_row(**changes))
    for violation in (found, *rest):
        assert f"column {violation.column!r}" in violation.message
        assert "expected" in violation.message
        if violation.kind != "extra_column":
            assert "s3cr3t" not in violation.message
            assert "987654" not in violation.message


def test_untyped_column_checks_by_value() -> None:
    exp = Expectations(
        columns={
            "x": ColumnExpectation(
                range=RangeExpectation(max=10),
                categories=CategoryExpectation(values=["a"]),
            )
        }
    )
    validator = RowValidator(exp)
    assert validator.check({"x": dt.date(2013, 1, 1)}) == []
    assert _kinds(validator.check({"x": 11})) == [("x", "out_of_range", "warning")]
    assert _kinds(validator.check({"x": "b"})) == [("x", "unseen_category", "warning")]


def test_single_row_rates() -> None:
    nulls = NullExpectation(nullable=True, max_rate=0.5)
    lenient = Expectations(columns={"x": ColumnExpectation(nulls=nulls)})
    strict = lenient.model_copy(update={"min_rows_for_rates": 1})
    assert RowValidator(lenient).check({"x": None}) == []
    assert _kinds(RowValidator(strict).check({"x": None})) == [("x", "null_rate", "error")]


def test_row_violation_is_immutable(validator: RowValidator) -> None:
    (violation,) = validator.check(_row(carrier="ZZ"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        violation.column = "other"  # type: ignore[misc]


def test_a_category_that_does_not_match_the_pattern_still_reports_the_mismatch() -> None:
    """Known categories skip the regex only when they match it themselves."""
    check = RowValidator(
        Expectations(
            columns={
                "code": ColumnExpectation(
                    dtype="string",
                    categories=CategoryExpectation(values=["AA", "UA", "legacy-1"]),
                    pattern=PatternExpectation(regex="^[A-Z0-9]{2}$"),
                )
            }
        )
    ).check
    kinds = {value: [v.kind for v in check({"code": value})]
             for value in ("AA", "legacy-1", "ZZ", "z-9")}  # fmt: skip
    assert kinds == {
        "AA": [],
        "legacy-1": ["pattern_mismatch"],
        "ZZ": ["unseen_category"],
        "z-9": ["unseen_category", "pattern_mismatch"],
    }
