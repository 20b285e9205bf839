"""Training (evaluation and gate) and monitoring (window metrics and label checks) score
the same rows with the same numbers: every shared metric is equal to the last bit,
including a one-class window (ROC-AUC undefined on both sides, stored as null), a window
with nothing predicted positive, a constant regression target, and an empty input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from prodml import stats
from prodml.core import GateConfig, MonitoringConfig, SchemaError
from prodml.monitoring import (
    DriftReference,
    MonitorReference,
    calibration,
    classification_metrics,
    regression_metrics,
)
from prodml.monitoring._checks import label_checks
from prodml.training import EvaluationReport, evaluate, judge

#: Metrics both sides report under one name; training's ``positive_rate`` is the share
#: of positive labels, which monitoring calls ``label_rate``.
SHARED_CLASSIFICATION = ("roc_auc", "log_loss", "brier", "accuracy", "f1", "precision", "recall")
SHARED_REGRESSION = ("rmse", "mae", "r2")


def _rows(seed: int, n: int, *, one_class: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(n), 2)  # ties
    labels = (rng.random(n) < scores).astype(np.float64)
    if one_class:
        labels[:] = 1.0
    return labels, scores


def _window(labels: np.ndarray, outputs: np.ndarray, segment: list[str]) -> tuple[pa.Table, ...]:
    """A window's records (one row per request) and their labels, all labelled."""
    n = len(labels)
    ids = [f"r{i}" for i in range(n)]
    records = pa.table(
        {
            "request_id": ids,
            "output": outputs,
            "time": pa.array(1_700_000_000_000_000 + np.arange(n) * 1_000_000).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "feature.origin": segment,
        }
    )
    labelled = pa.table(
        {
            "request_id": ids,
            "row": pa.array([None] * n, pa.int64()),
            "label": labels,
            "label_time": np.full(n, 1.8e9),
        }
    )
    return records, labelled


def _label_check_values(
    labels: np.ndarray, outputs: np.ndarray, task: str, segment: list[str]
) -> tuple[dict[str, Any], dict[tuple[str, str], Any]]:
    """Monitoring's ``performance`` values by metric and ``segment`` values by (column,
    metric), from the label checks of one window."""
    frame = pd.DataFrame({"x": [0.0, 1.0]})
    reference = MonitorReference(DriftReference.fit(frame, numeric=["x"]), {"task": task})
    records, labelled = _window(labels, outputs, segment)
    results, rows = label_checks(
        records, labelled, reference, MonitoringConfig(segments=("origin",))
    )
    assert rows == len(labels)
    performance = {r.metric: r.value for r in results if r.check == "performance"}
    segments = {(r.column, r.metric): r.value for r in results if r.check == "segment"}
    return performance, segments


def _stored(report: EvaluationReport) -> dict[str, Any]:
    """The metrics as the registry stores them (JSON, undefined as null)."""
    return dict(report.to_dict()["metrics"])


@pytest.mark.parametrize(
    ("seed", "n", "one_class", "threshold"),
    [(1, 500, False, 0.5), (2, 37, False, 0.3), (3, 200, True, 0.5), (4, 50, False, 1.0)],
    ids=["mixed", "small", "one-class", "nothing-predicted"],
)
def test_classification_metrics_agree(seed: int, n: int, one_class: bool, threshold: float) -> None:
    y, s = _rows(seed, n, one_class=one_class)
    segment = ["JFK" if i % 3 else "LGA" for i in range(n)]
    report = evaluate(
        y,
        s,
        task="classification",
        threshold=threshold,
        segments=pd.DataFrame({"origin": segment}),
        slice_min_rows=1,
    )
    training = _stored(report)
    window = classification_metrics(y, s, threshold=threshold)
    for name in SHARED_CLASSIFICATION:
        assert training[name] == window[name], name
    assert training["positive_rate"] == window["label_rate"]
    assert training["ece"] == calibration(y, s).ece
    if threshold == 1.0:  # nothing predicted positive: 0.0 on both sides, not undefined
        assert training["precision"] == window["precision"] == 0.0
    if threshold == 0.5:
        performance, segments = _label_check_values(y, s, "classification", segment)
        for name in SHARED_CLASSIFICATION:
            assert training[name] == performance[name], name
        assert training["ece"] == performance["ece"]
        for value, result in report.slices["origin"].items():
            assert result.metrics["accuracy"] == segments[(f"origin={value}", "accuracy")]
            # slices are computed for all values at once (bincount sums), so to rounding
            auc = segments[(f"origin={value}", "roc_auc")]
            assert (auc is None) == one_class
            assert result.metrics["roc_auc"] == pytest.approx(
                auc if auc is not None else np.nan, nan_ok=True, rel=1e-12
            )
    if one_class:
        # undefined the same way: null where stored and emitted, a failed gate check
        assert training["roc_auc"] is None
        assert window["roc_auc"] is None
        assert stats.roc_auc(y, s) is None
        gate = judge(report, config=GateConfig(thresholds=("roc_auc >= 0.5",), robustness=False))
        assert gate.reasons == ["roc_auc is undefined (NaN) on this data; needs >= 0.500"]


def test_the_gate_judges_the_numbers_monitoring_reports() -> None:
    y, s = _rows(5, 300)
    report = evaluate(y, s, task="classification")
    gate = judge(
        report,
        config=GateConfig(
            thresholds=("roc_auc >= 0.5", "log_loss <= 5", "brier <= 1"), robustness=False
        ),
    )
    window = classification_metrics(y, s)
    assert gate.blessed
    assert {c.metric: c.value for c in gate.checks} == {
        name: window[name] for name in ("roc_auc", "log_loss", "brier")
    }


@pytest.mark.parametrize("constant", [False, True], ids=["spread", "constant-target"])
def test_regression_metrics_agree(constant: bool) -> None:
    rng = np.random.default_rng(6)
    y = np.full(80, 3.0) if constant else np.round(rng.normal(10, 3, 80), 1)
    f = y + rng.normal(0, 1, 80)
    segment = ["a" if i % 2 else "b" for i in range(80)]
    report = evaluate(
        y, f, task="regression", segments=pd.DataFrame({"origin": segment}), slice_min_rows=1
    )
    training = _stored(report)
    window = regression_metrics(y, f)
    performance, segments = _label_check_values(y, f, "regression", segment)
    for name in SHARED_REGRESSION:
        assert training[name] == window[name] == performance[name], name
    if constant:  # scikit-learn's force_finite on both sides
        assert training["r2"] == window["r2"] == 0.0
    for value, result in report.slices["origin"].items():
        for name in ("rmse", "mae"):
            assert result.metrics[name] == pytest.approx(
                segments[(f"origin={value}", name)], rel=1e-12
            )


def test_an_empty_input_is_undefined_for_monitoring_and_refused_by_training() -> None:
    window = classification_metrics([], [])
    assert {window[name] for name in SHARED_CLASSIFICATION} == {None}
    assert {stats.classification_metrics([], [])[name] for name in SHARED_CLASSIFICATION} == {None}
    assert {regression_metrics([], [])[name] for name in SHARED_REGRESSION} == {None}
    assert {stats.regression_metrics([], [])[name] for name in SHARED_REGRESSION} == {None}
    # an evaluation needs rows: no report (and so no gate verdict) on nothing
    with pytest.raises(SchemaError, match="y_true"):
        evaluate([], [], task="classification")
    with pytest.raises(SchemaError, match="y_true"):
        evaluate([], [], task="regression")
    # a window whose records have no labels yet emits coverage only, no metric
    records, labelled = _window(np.array([1.0]), np.array([0.5]), ["a"])
    frame = pd.DataFrame({"x": [0.0, 1.0]})
    reference = MonitorReference(
        DriftReference.fit(frame, numeric=["x"]), {"task": "classification"}
    )
    results, rows = label_checks(records, labelled.slice(0, 0), reference, MonitoringConfig())
    assert rows == 0
    assert [(r.metric, r.value) for r in results] == [("label_coverage", 0.0)]
