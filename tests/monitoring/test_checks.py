"""Data-quality checks on one window's records, column by column."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from prodml.core import ConfigError, MonitoringConfig, load_config_text
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


def _large_reference(rows: int = 1000, missing: int = 16) -> MonitorReference:
    """x in [0, 100) with ``missing`` of ``rows`` null (1.6% by default), c in {a, b}."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, rows)
    x[:missing] = np.nan
    frame = pd.DataFrame({"x": x, "c": rng.choice(["a", "b"], rows)})
    drift = DriftReference.fit(frame, numeric=["x"], categorical=["c"])
    return MonitorReference(drift, {"task": "classification", "inputs": ["x", "c"]})


def _window(rows: int, *, missing: float = 0.0, outside: float = 0.0, unseen: float = 0.0,
            infinite: int = 0) -> pa.Table:  # fmt: skip
    """``rows`` records with the given shares of missing and out-of-range ``x`` and of
    unseen categories of ``c``, and ``infinite`` infinite ``x`` values."""
    x = np.linspace(1, 99, rows)
    n_missing, n_outside = round(rows * missing), round(rows * outside)
    x[:n_missing] = np.nan
    x[n_missing : n_missing + n_outside] = 500.0
    x[n_missing + n_outside : n_missing + n_outside + infinite] = np.inf
    c = np.where(np.arange(rows) < round(rows * unseen), "z", "a")
    return pa.table({"feature.x": pa.array(x, from_pandas=True), "feature.c": c})


def _quality(table: pa.Table, config: MonitoringConfig | None = None) -> dict[tuple[str, str], Any]:
    found = quality_checks(table, _large_reference(), config or MonitoringConfig())
    return {(r.metric, r.column): r for r in found}


def test_a_missing_rate_far_above_the_reference_is_flagged_with_its_threshold() -> None:
    found = _quality(_window(400, missing=0.85))
    missing = found[("missing_rate", "x")]
    assert missing.value == pytest.approx(0.85)
    assert missing.details == {"reference": pytest.approx(0.016)}
    assert missing.threshold == pytest.approx(0.016 + 0.10)  # the default absolute increase
    assert missing.status == "breach"
    slightly = _quality(_window(400, missing=0.05))[("missing_rate", "x")]
    assert slightly.threshold == pytest.approx(0.116)
    assert slightly.status == "ok"


def test_a_high_reference_missing_rate_needs_a_relative_increase_too() -> None:
    reference = _large_reference(missing=500)  # 50% missing in training
    config = MonitoringConfig()
    found = {(r.metric, r.column): r
             for r in quality_checks(_window(400, missing=0.70), reference, config)}  # fmt: skip
    assert found[("missing_rate", "x")].threshold == pytest.approx(0.5 * 1.5)
    assert found[("missing_rate", "x")].status == "ok"  # +0.20 of 0.50: ordinary variation


def test_out_of_range_unseen_and_non_finite_shares_are_flagged_by_default() -> None:
    found = _quality(_window(400, outside=0.2, unseen=0.3, infinite=4))
    assert found[("out_of_range_rate", "x")].value == pytest.approx(0.2)
    assert found[("out_of_range_rate", "x")].threshold == 0.05
    assert found[("out_of_range_rate", "x")].status == "breach"
    assert found[("unseen_category_rate", "c")].value == pytest.approx(0.3)
    assert found[("unseen_category_rate", "c")].threshold == 0.05
    assert found[("unseen_category_rate", "c")].status == "breach"
    assert found[("non_finite_rate", "x")].value == pytest.approx(0.01)
    assert found[("non_finite_rate", "x")].threshold == 0.0
    assert found[("non_finite_rate", "x")].status == "breach"
    clean = _quality(_window(400, outside=0.02, unseen=0.02))
    for key in (("out_of_range_rate", "x"), ("unseen_category_rate", "c"),
                ("non_finite_rate", "x"), ("missing_rate", "x"), ("missing_rate", "c")):  # fmt: skip
        assert clean[key].status == "ok", key
        assert clean[key].threshold is not None, key


def test_quality_thresholds_are_overridable_in_config_per_feature() -> None:
    config = load_config_text(
        "[monitoring.quality]\nout_of_range_rate = 0.5\nmissing_rate_increase = 0.9\n"
        "[monitoring.quality.columns.c]\nunseen_category_rate = 0.4\n",
        environ={},
    ).monitoring
    found = _quality(_window(400, missing=0.85, outside=0.1, unseen=0.3), config)
    assert (found[("out_of_range_rate", "x")].threshold, found[("out_of_range_rate", "x")].status) \
        == (0.5, "ok")  # fmt: skip
    assert found[("missing_rate", "x")].status == "ok"
    assert found[("unseen_category_rate", "c")].threshold == 0.4
    assert found[("unseen_category_rate", "c")].status == "ok"
    with pytest.raises(ConfigError, match=r"monitoring\.quality\.out_of_range_rate"):
        load_config_text("[monitoring.quality]\nout_of_range_rate = 1.5\n", environ={})


def test_a_window_under_min_rows_reports_shares_without_flagging_them() -> None:
    found = _quality(_window(20, missing=0.85, outside=0.1))
    assert found[("missing_rate", "x")].status == "too_few_rows"
    assert found[("missing_rate", "x")].threshold == pytest.approx(0.116)
    assert found[("out_of_range_rate", "x")].status == "too_few_rows"
