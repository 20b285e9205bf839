"""Data-quality checks on one window's records, column by column."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from prodml.monitoring import DriftReference, MonitorReference
from prodml.monitoring._checks import quality_checks


def _reference() -> MonitorReference:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, None], "c": ["a", "b", "a", "b"]})
    drift = DriftReference.fit(frame, numeric=["x"], categorical=["c"])
    return MonitorReference(drift, {"task": "classification", "inputs": ["x", "c", "gone"]})


def test_quality_reports_format_range_missing_and_unseen_per_column() -> None:
    table = pa.table(
        {
            "feature.x": pa.array(["1", "abc", None, "5", "inf"]),  # logged as text
            "feature.c": pa.array(["a", "z", "z", None, "b"]),
            "violations": pa.array([None, "x:out_of_range", None, None, None]),
        }
    )
    found = {(r.metric, r.column): r for r in quality_checks(table, _reference())}
    assert found[("format_error_rate", "x")].value == pytest.approx(0.2)  # "abc"
    assert found[("format_error_rate", "x")].status == "breach"
    assert found[("non_finite_rate", "x")].value == pytest.approx(0.2)  # "inf"
    assert found[("out_of_range_rate", "x")].value == pytest.approx(0.2)  # 5 > max 3
    assert found[("missing_rate", "x")].value == pytest.approx(0.4)
    assert found[("missing_rate", "x")].details == {"reference": 0.25}
    assert found[("unseen_category_rate", "c")].value == pytest.approx(0.4)
    assert found[("unseen_category_rate", "c")].details == {"top": {"z": 2}}
    assert found[("violation_rate", "")].value == pytest.approx(0.2)
    assert found[("absent_features", "")].details == {"features": ["gone"]}


def test_an_empty_window_has_no_quality_results() -> None:
    assert quality_checks(pa.table({"feature.x": pa.array([], pa.float64())}), _reference()) == []
