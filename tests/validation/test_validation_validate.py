"""validate(): injected violations are found with exact counts, examples and severities."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pytest

from prodml.core.errors import DataValidationError
from prodml.validation import (
    ColumnExpectation,
    Expectations,
    NullExpectation,
    RangeExpectation,
    ValidationReport,
    infer_expectations,
    profile,
    validate,
)

ROWS = 1_000


@pytest.fixture(scope="module")
def reference() -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table(
        {
            "carrier": rng.choice(["AA", "B6", "DL", "UA"], ROWS),
            "delay": rng.normal(10, 30, ROWS).clip(-60, 600),
            "distance": rng.integers(100, 5000, ROWS),
            "late": rng.random(ROWS) < 0.2,
            "departed": pa.array(
                [
                    dt.datetime(2013, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i)
                    for i in range(ROWS)
                ]
            ),
        }
    )


@pytest.fixture(scope="module")
def expectations(reference: pa.Table) -> Expectations:
    return infer_expectations(profile(reference))


def _replace(table: pa.Table, name: str, values: list[object] | pa.Array) -> pa.Table:
    index = table.column_names.index(name)
    array = (
        values
        if isinstance(values, pa.Array)
        else pa.array(values, type=table.schema.field(name).type)
    )
    return table.set_column(index, name, array)


def _kinds(report: ValidationReport) -> list[tuple[str, str, str, int]]:
    return [(v.column, v.kind, v.severity, v.count) for v in report.violations]


def test_reference_passes(reference: pa.Table, expectations: Expectations) -> None:
    report = validate(reference, expectations)
    assert report.ok
    assert report.violations == []
    assert report.summary() == "passed with no violations over 1,000 rows"


def test_injected_violations_exact_counts(reference: pa.Table, expectations: Expectations) -> None:
    carrier = reference.column("carrier").to_pylist()
    for row in (3, 50, 51):
        carrier[row] = "ZZ"
    carrier[60] = "zz9"
    delay = reference.column("delay").to_pylist()
    delay[5], delay[6], delay[7] = math.nan, math.inf, 10_000.0
    delay[8] = None
    distance = reference.column("distance").to_pylist()
    distance[1], distance[2] = -1_000, 10**9
    batch = _replace(
        _replace(_replace(reference, "carrier", carrier), "delay", delay), "distance", distance
    )
    report = validate(batch, expectations)
    assert _kinds(report) == [
        ("carrier", "unseen_category", "warning", 4),
        ("carrier", "pattern_mismatch", "warning", 1),
        ("delay", "null_rate", "error", 1),
        ("delay", "non_finite", "error", 2),
        ("delay", "out_of_range", "warning", 1),  # 10,000; inf is only non-finite
        ("distance", "out_of_range", "warning", 2),
    ]
    unseen = report.violations[0]
    assert unseen.rows == [3, 50, 51, 60]
    assert unseen.examples == ["ZZ", "ZZ", "ZZ", "zz9"]
    assert unseen.fraction == pytest.approx(4 / ROWS)
    non_finite = report.violations[3]
    assert (non_finite.rows, non_finite.examples) == ([5, 6], ["nan", "inf"])
    assert not report.ok
    assert len(report.errors) == 2
    assert len(report.warnings) == 4
    assert "column 'delay': non_finite" in report.summary()


def test_examples_capped_at_five(reference: pa.Table, expectations: Expectations) -> None:
    batch = _replace(reference, "carrier", ["XX"] * ROWS)
    (violation,) = validate(batch, expectations).violations
    assert violation.count == ROWS
    assert violation.fraction == 1.0
    assert violation.rows == [0, 1, 2, 3, 4]


def test_schema_violations(reference: pa.Table, expectations: Expectations) -> None:
    batch = reference.drop_columns(["late"]).append_column("extra", pa.array([1] * ROWS))
    batch = _replace(batch, "distance", pa.array(["far"] * ROWS))
    report = validate(batch, expectations)
    assert _kinds(report) == [
        ("distance", "wrong_type", "error", ROWS),
        ("late", "missing_column", "error", ROWS),
    ]
    strict = expectations.model_copy(update={"extra_columns": "forbid"})
    assert ("extra", "extra_column", "error", ROWS) in _kinds(validate(batch, strict))
    assert (
        "column 'late': missing_column, expected a required column of dtype bool"
        in report.summary()
    )


def test_optional_column_may_be_missing() -> None:
    exp = Expectations(columns={"x": ColumnExpectation(dtype="int64", required=False)})
    assert validate(pa.table({"y": [1]}), exp).violations == []


def test_null_rate_bound_applies_to_large_batches() -> None:
    exp = Expectations(
        columns={"x": ColumnExpectation(nulls=NullExpectation(nullable=True, max_rate=0.1))},
        min_rows_for_rates=100,
    )
    small = pa.table({"x": [None] * 50})
    assert validate(small, exp).violations == []
    big = pa.table({"x": [None] * 20 + [1.0] * 80})
    (violation,) = validate(big, exp).violations
    assert (violation.kind, violation.count, violation.fraction) == ("null_rate", 20, 0.2)
    assert "expected a null rate of at most 0.1" in violation.message
    fine = pa.table({"x": [None] * 10 + [1.0] * 90})
    assert validate(fine, exp).violations == []


def test_empty_batch(expectations: Expectations, reference: pa.Table) -> None:
    report = validate(reference.slice(0, 0), expectations)
    assert report.ok
    assert report.row_count == 0
    assert report.violations == []


def test_all_null_batch_columns(reference: pa.Table, expectations: Expectations) -> None:
    batch = pa.table({name: pa.nulls(10) for name in reference.column_names})
    report = validate(batch, expectations)
    assert {(v.column, v.kind, v.count) for v in report.violations} == {
        (name, "null_rate", 10) for name in reference.column_names
    }
    assert report.violations[0].examples == [None] * 5


def test_dictionary_and_large_strings(reference: pa.Table, expectations: Expectations) -> None:
    carriers = pa.array(["AA", "ZZ", "UA"]).dictionary_encode()
    batch = reference.slice(0, 3)
    kinds = _kinds(validate(_replace(batch, "carrier", carriers), expectations))
    assert kinds == [("carrier", "unseen_category", "warning", 1)]
    large = pa.array(["AA", "ZZ", "UA"], pa.large_string())
    assert _kinds(validate(_replace(batch, "carrier", large), expectations)) == kinds


def test_int_bounds_compare_exactly_beyond_2_53() -> None:
    exp = Expectations(
        columns={"n": ColumnExpectation(dtype="int64", range=RangeExpectation(max=2**60))}
    )
    batch = pa.table({"n": [2**60, 2**60 + 1, None]})
    (violation,) = validate(batch, exp).violations
    assert (violation.count, violation.rows) == (1, [1])
    assert (
        validate(pa.table({"n": pa.array([2**64 - 1], pa.uint64())}), exp).violations[0].count == 1
    )


def test_record_batch_input(expectations: Expectations, reference: pa.Table) -> None:
    batch = reference.slice(0, 10).to_batches()[0]
    assert validate(batch, expectations).ok


def test_to_dict_and_raise(reference: pa.Table, expectations: Expectations) -> None:
    batch = _replace(reference.slice(0, 4), "delay", [1.0, None, math.nan, -math.inf])
    report = validate(batch, expectations)
    data = report.to_dict()
    assert data["ok"] is False
    assert data["row_count"] == 4
    assert data["violations"][1]["examples"] == ["nan", "-inf"]
    with pytest.raises(DataValidationError, match="column 'delay'") as caught:
        report.raise_for_errors()
    assert caught.value.report is report
    validate(reference, expectations).raise_for_errors()  # no error: nothing raised
