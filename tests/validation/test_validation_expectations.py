"""Expectations: inference rules, JSON file round trip and clear errors on bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest

from prodml.core.errors import DefinitionError, NotFoundError
from prodml.validation import (
    ColumnExpectation,
    Expectations,
    FiniteExpectation,
    PatternExpectation,
    RangeExpectation,
    infer_expectations,
    infer_pattern,
    profile,
)


@pytest.fixture
def reference() -> pa.Table:
    return pa.table(
        {
            "carrier": ["AA", "B6", "UA", "AA", None],
            "tail": ["N123", "N4", "N77", "N9", "N10"],
            "delay": [-10.0, 0.0, 90.0, math.nan, None],
            "distance": [100, 200, 300, 400, 1100],
            "ratio": [0.5, 0.25, 0.75, 1.0, 0.0],
            "flag": [True, False, True, True, False],
            "name": ["Alice", "bob", "Carol", "dave", "Eve"],
        }
    )


def test_inferred_schema_nulls_and_ranges(reference: pa.Table) -> None:
    exp = infer_expectations(profile(reference))
    delay, distance = exp.columns["delay"], exp.columns["distance"]
    assert (delay.dtype, delay.required, delay.severity) == ("float64", True, "error")
    assert delay.nulls is not None
    assert delay.nulls.nullable
    assert delay.nulls.max_rate == pytest.approx(0.2 + 0.05)
    assert delay.finite is None  # the reference held a NaN
    assert delay.range == RangeExpectation(min=-20.0, max=100.0)
    assert distance.range == RangeExpectation(min=0, max=1200)
    assert isinstance(distance.range.min, int)
    ratio = exp.columns["ratio"]
    assert ratio.finite is not None
    assert ratio.finite.severity == "error"
    assert ratio.nulls is not None
    assert not ratio.nulls.nullable
    assert ratio.range is not None
    assert ratio.range.severity == "warning"
    assert exp.columns["flag"].range is None


def test_inferred_categories_and_patterns(reference: pa.Table) -> None:
    exp = infer_expectations(profile(reference), max_categories=3)
    carrier, tail, name = exp.columns["carrier"], exp.columns["tail"], exp.columns["name"]
    assert carrier.categories is not None
    assert carrier.categories.values == ["AA", "B6", "UA"]
    assert carrier.pattern == PatternExpectation(regex="^[A-Z0-9]{2}$")
    assert tail.categories is None  # 5 distinct > max_categories
    assert tail.pattern is not None
    assert tail.pattern.regex == "^[A-Z0-9]{2,4}$"
    assert name.pattern is None  # mixed case: no pattern inferred


def test_tolerance_and_margin_parameters(reference: pa.Table) -> None:
    exp = infer_expectations(profile(reference), range_tolerance=0.0, null_rate_margin=0.9)
    delay = exp.columns["delay"]
    assert delay.range == RangeExpectation(min=-10.0, max=90.0)
    assert delay.nulls is not None
    assert delay.nulls.max_rate == 1.0
    with pytest.raises(ValueError, match="range_tolerance"):
        infer_expectations(profile(reference), range_tolerance=-1)
    with pytest.raises(ValueError, match="null_rate_margin"):
        infer_expectations(profile(reference), null_rate_margin=2)


@pytest.mark.parametrize(
    ("classes", "low", "high", "regex"),
    [
        (["digit"], 5, 5, "^[0-9]{5}$"),
        (["upper"], 1, 3, "^[A-Z]{1,3}$"),
        (["digit", "lower"], 32, 32, "^[a-z0-9]{32}$"),
        (["digit", "upper"], 0, 2, "^[A-Z0-9]{0,2}$"),
        (["lower", "upper"], 2, 2, None),
        (["digit", "other"], 2, 2, None),
        (["digit"], 1, 200, None),
        ([], 0, 0, None),
    ],
)
def test_infer_pattern(classes: list[str], low: int, high: int, regex: str | None) -> None:
    assert infer_pattern(classes, low, high) == regex  # type: ignore[arg-type]


def test_unusual_dtypes_are_widened_or_left_open() -> None:
    table = pa.table(
        {
            "u8": pa.array([1, 2], pa.uint8()),
            "u64": pa.array([1, 2], pa.uint64()),
            "nothing": pa.nulls(2),
            "lists": [[1], [2]],
        }
    )
    exp = infer_expectations(profile(table))
    assert exp.columns["u8"].dtype == "int16"
    assert exp.columns["u64"].dtype == "int64"
    assert exp.columns["nothing"].dtype is None
    assert exp.columns["lists"].dtype is None


def test_save_and_load_round_trip(reference: pa.Table, tmp_path: Path) -> None:
    exp = infer_expectations(profile(reference))
    path = tmp_path / "expectations.json"
    exp.save(path)
    text = path.read_text()
    assert text.endswith("}\n")
    assert '"severity": "warning"' in text
    assert "range" not in json.loads(text)["columns"]["flag"]  # absent checks are left out
    assert Expectations.load(path) == exp


def test_hand_edited_file(tmp_path: Path) -> None:
    path = tmp_path / "exp.json"
    path.write_text(
        json.dumps(
            {
                "columns": {
                    "carrier": {"dtype": "str", "pattern": {"regex": "[A-Z]{2}"}},
                    "delay": {"dtype": "double", "range": {"max": 600}},
                },
                "extra_columns": "forbid",
            }
        )
    )
    exp = Expectations.load(path)
    assert exp.columns["carrier"].dtype == "string"
    assert exp.columns["delay"].dtype == "float64"
    assert exp.columns["delay"].range == RangeExpectation(max=600)
    assert exp.extra_columns == "forbid"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"columns": {"x": {"dtype": "float99"}}}, r"columns\.x\.dtype.*float99"),
        (
            {"columns": {"x": {"range": {"min": 5, "max": 1}}}},
            r"columns\.x\.range.*must not exceed",
        ),
        ({"columns": {"x": {"nulls": {"max_rate": 1.5}}}}, r"columns\.x\.nulls\.max_rate"),
        ({"columns": {"x": {"pattern": {"regex": "(["}}}}, r"columns\.x\.pattern\.regex"),
        ({"columns": {"x": {"pattern": {"regex": "(?<=a)b"}}}}, r"columns\.x\.pattern\.regex.*RE2"),
        ({"columns": {"x": {"severity": "fatal"}}}, r"columns\.x\.severity"),
        (
            {"columns": {"x": {"dtype": "string", "range": {"min": 0}}}},
            r"columns\.x.*range.*'string'",
        ),
        ({"columns": {"x": {"colour": "red"}}}, r"columns\.x\.colour"),
        ({"columns": {}, "extra_columns": "maybe"}, r"extra_columns"),
        ({}, r"columns: Field required"),
    ],
)
def test_invalid_file_names_file_and_field(tmp_path: Path, document: object, field: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(DefinitionError, match=field) as caught:
        Expectations.load(path)
    assert "bad.json" in str(caught.value)


def test_unparsable_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"columns": ')
    with pytest.raises(DefinitionError, match=r"broken\.json.*(?i:json)"):
        Expectations.load(path)
    with pytest.raises(NotFoundError, match=r"nowhere\.json"):
        Expectations.load(tmp_path / "nowhere.json")


def test_models_are_strict() -> None:
    with pytest.raises(ValueError, match=r"finite number"):
        RangeExpectation(min=-math.inf)
    with pytest.raises(ValueError, match="does not apply"):
        ColumnExpectation(dtype="int64", finite=FiniteExpectation())
