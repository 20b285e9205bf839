"""Properties over random tables: data meets the expectations inferred from it, and the
row check agrees with validate() on single-row tables."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prodml.validation import (
    Expectations,
    RowValidator,
    infer_expectations,
    profile,
    validate,
)

START = dt.datetime(2013, 1, 1, tzinfo=dt.UTC)
CODES = st.text(alphabet="ABCXYZ019", min_size=1, max_size=4)
FLOATS = st.one_of(
    st.floats(-1e6, 1e6), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0])
)
INTS = st.integers(-(2**62), 2**62) | st.integers(-5, 5)
TIMES = st.integers(0, 10**6).map(lambda minutes: START + dt.timedelta(minutes=minutes))
DATES = st.integers(0, 3000).map(lambda days: dt.date(2013, 1, 1) + dt.timedelta(days=days))

#: Column kinds: (values strategy, Arrow type).
KINDS: dict[str, tuple[st.SearchStrategy[Any], pa.DataType]] = {
    "float": (FLOATS, pa.float64()),
    "int": (INTS, pa.int64()),
    "code": (CODES, pa.string()),
    "text": (st.text(max_size=5), pa.string()),
    "bool": (st.booleans(), pa.bool_()),
    "time": (TIMES, pa.timestamp("us", tz="UTC")),
    "date": (DATES, pa.date32()),
    "null": (st.none(), pa.null()),
}
#: Any value a row might hold, of any column's type.
ANY_VALUE = st.one_of(
    st.none(), FLOATS, INTS, CODES, st.text(max_size=3), st.booleans(), TIMES, DATES
)


@st.composite
def tables(draw: st.DrawFn, *, max_rows: int = 25) -> pa.Table:
    rows = draw(st.integers(0, max_rows))
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=6))
    columns = {}
    for index, kind in enumerate(kinds):
        values, arrow = KINDS[kind]
        nullable = draw(st.booleans())
        cell = st.one_of(st.none(), values) if nullable else values
        columns[f"{kind}{index}"] = pa.array(
            draw(st.lists(cell, min_size=rows, max_size=rows)), arrow
        )
    return pa.table(columns)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), split=st.integers(0, 25))
def test_data_meets_its_inferred_expectations(table: pa.Table, split: int) -> None:
    chunked = pa.concat_tables([table.slice(0, split), table.slice(split)])
    expectations = infer_expectations(profile(chunked), range_tolerance=0.0, null_rate_margin=0.0)
    report = validate(chunked, expectations)
    assert report.violations == [], report.summary()
    again = Expectations.from_json(expectations.to_json())
    assert validate(table, again).violations == []
    validator = RowValidator(again)
    for row in table.to_pylist():
        assert validator.check(row) == [], row


@st.composite
def rows_and_expectations(draw: st.DrawFn) -> tuple[dict[str, Any], Expectations]:
    reference = draw(tables(max_rows=8))
    expectations = infer_expectations(
        profile(reference), max_categories=draw(st.sampled_from([0, 50]))
    )
    update: dict[str, Any] = {
        "min_rows_for_rates": draw(st.sampled_from([1, 100])),
        "extra_columns": draw(st.sampled_from(["allow", "forbid"])),
    }
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(expectations.columns)))
        column = expectations.columns[name].model_copy(update={"required": False})
        update["columns"] = {**expectations.columns, name: column}
    expectations = expectations.model_copy(update=update)
    row: dict[str, Any] = {}
    for name in reference.column_names:
        if draw(st.integers(0, 9)) == 0:
            continue  # the row lacks this column
        if draw(st.booleans()):
            row[name] = draw(ANY_VALUE)
        elif reference.num_rows:
            row[name] = reference.column(name)[draw(st.integers(0, reference.num_rows - 1))].as_py()
    if draw(st.integers(0, 4)) == 0:
        row["extra"] = draw(ANY_VALUE)
    return row, expectations


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=rows_and_expectations())
def test_row_check_agrees_with_validate_on_one_row(
    case: tuple[dict[str, Any], Expectations],
) -> None:
    row, expectations = case
    table = pa.table({name: pa.array([value]) for name, value in row.items()}) if row else None
    if table is None:
        return
    batch = {(v.column, v.kind, v.severity) for v in validate(table, expectations).violations}
    single = {(v.column, v.kind, v.severity) for v in RowValidator(expectations).check(row)}
    assert single == batch, (row, expectations.to_json())
