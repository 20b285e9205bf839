"""evaluate(): slices against brute-force per-group metrics, pooling, nulls, JSON round
trips and speed; measure_performance() on a real sklearn model."""

from __future__ import annotations

import json
import math
import pickle
import tracemalloc
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from prodml.core.errors import ConfigError, SchemaError, TrainingError
from prodml.training._evaluate import EvaluationReport, evaluate, measure_performance
from prodml.training._metrics import classification_metrics, regression_metrics

MIN_ROWS = 40


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _assert_metrics(got: dict[str, float], want: dict[str, float]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        assert _same(got[name], want[name]), (name, got[name], want[name])


@pytest.fixture
def data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], pd.DataFrame]:
    rng = np.random.default_rng(7)
    n = 1500
    p = rng.random(n)
    y = rng.random(n) < p
    origin = rng.choice(["JFK", "LGA", "EWR"], n, p=[0.5, 0.3, 0.2]).astype(object)
    origin[:120] = None  # nulls get their own slice
    # carrier: two big values, many rare ones that pool into <other>
    rare = [f"R{i}" for i in range(30)]
    carrier = rng.choice(["UA", "AA", *rare], n, p=[0.4, 0.3, *([0.3 / 30] * 30)])
    # hour: every value rare, and the pool is everything
    hour = rng.integers(0, 200, n)
    segments = pd.DataFrame({"origin": origin, "carrier": carrier, "hour": hour})
    return y, p, segments


def test_slices_equal_brute_force_per_group_metrics(data: Any) -> None:
    y, p, segments = data
    report = evaluate(y, p, task="classification", segments=segments, slice_min_rows=MIN_ROWS)
    _assert_metrics(report.metrics, classification_metrics(y, p))
    assert set(report.slices) == {"origin", "carrier", "hour"}
    for column in segments.columns:
        names = segments[column].map(lambda v: "<null>" if pd.isna(v) else str(v))
        counts = names.value_counts()
        big = counts[counts >= MIN_ROWS].index
        expected = {str(v) for v in big}
        pooled = ~names.isin(big).to_numpy()
        if pooled.sum() >= MIN_ROWS:
            expected.add("<other>")
        assert set(report.slices[column]) == expected
        for name, result in report.slices[column].items():
            rows = pooled if name == "<other>" else (names == name).to_numpy()
            assert result.rows == rows.sum()
            _assert_metrics(result.metrics, classification_metrics(y[rows], p[rows]))


def test_null_and_other_slices(data: Any) -> None:
    y, p, segments = data
    slices = evaluate(
        y, p, task="classification", segments=segments, slice_min_rows=MIN_ROWS
    ).slices
    assert slices["origin"]["<null>"].rows == 120
    assert "<other>" not in slices["origin"]  # nothing is rare
    assert list(slices["hour"]) == ["<other>"]
    assert slices["hour"]["<other>"].rows == len(y)
    assert list(slices["carrier"])[-1] == "<other>"


def test_small_pool_is_omitted() -> None:
    y = np.array([0, 1] * 10)
    p = np.linspace(0.1, 0.9, 20)
    seg = pd.DataFrame({"c": ["a"] * 17 + ["b", "c", "d"]})
    slices = evaluate(y, p, task="classification", segments=seg, slice_min_rows=5).slices["c"]
    assert list(slices) == ["a"]


def test_values_with_the_same_name_share_a_slice() -> None:
    y = np.array([0, 1, 0, 1])
    seg = pd.DataFrame({"c": pd.Series([1, "1", 1, "1"], dtype=object)})
    slices = evaluate(
        y, [0.2, 0.7, 0.4, 0.6], task="classification", segments=seg, slice_min_rows=1
    )
    assert slices.slices["c"]["1"].rows == 4


def test_regression_slices_equal_brute_force() -> None:
    rng = np.random.default_rng(3)
    y = np.round(rng.normal(size=600), 1)
    pred = y + rng.normal(size=600) * 0.5
    seg = pd.DataFrame({"g": rng.choice(["a", "b", "c", "d"], 600, p=[0.5, 0.3, 0.15, 0.05])})
    report = evaluate(y, pred, task="regression", segments=seg, slice_min_rows=60)
    assert report.reliability is None
    _assert_metrics(report.metrics, regression_metrics(y, pred))
    for name, result in report.slices["g"].items():
        rows = seg["g"].isin(["c", "d"]) if name == "<other>" else seg["g"] == name
        _assert_metrics(result.metrics, regression_metrics(y[rows], pred[rows]))


def test_length_mismatches_name_the_input() -> None:
    with pytest.raises(SchemaError, match="y_score"):
        evaluate([0, 1, 1], [0.1, 0.2], task="classification")
    with pytest.raises(SchemaError, match="y_score"):
        evaluate([0.0, 1.0, 1.0], [0.1, 0.2], task="regression")
    with pytest.raises(SchemaError, match="segments"):
        evaluate([0, 1], [0.1, 0.2], task="classification", segments=pd.DataFrame({"a": [1]}))


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="task"):
        evaluate([0, 1], [0.1, 0.2], task="ranking")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="slice_min_rows"):
        evaluate([0, 1], [0.1, 0.2], task="classification", slice_min_rows=0)


def test_round_trip_through_json_keeps_nan(data: Any) -> None:
    y, p, segments = data
    y = y.copy()
    y[segments["origin"].isna().to_numpy()] = True  # one class in the null slice → NaN AUC
    report = evaluate(y, p, task="classification", segments=segments, slice_min_rows=MIN_ROWS)
    report = report.with_performance({"latency_p99_ms": 1.5, "model_memory_bytes": math.nan})
    assert math.isnan(report.slices["origin"]["<null>"].metrics["roc_auc"])
    text = json.dumps(report.to_dict(), allow_nan=False)
    back = EvaluationReport.from_dict(json.loads(text))
    assert back == report
    assert back.to_dict() == report.to_dict()
    assert math.isnan(back.performance["model_memory_bytes"])
    assert back.reliability is not None
    assert back.reliability["count"] == report.reliability["count"]


def test_from_dict_rejects_malformed_data() -> None:
    good = evaluate([0, 1], [0.1, 0.9], task="classification").to_dict()
    with pytest.raises(SchemaError, match="metrics"):
        EvaluationReport.from_dict({k: v for k, v in good.items() if k != "metrics"})
    with pytest.raises(SchemaError, match="task"):
        EvaluationReport.from_dict({**good, "task": "ranking"})


def test_evaluate_handles_100k_rows_and_300_slices() -> None:
    """Correctness at scale; its speed is a benchmark's business, not a timed test's."""
    rng = np.random.default_rng(0)
    n = 100_000
    p = rng.random(n)
    y = rng.random(n) < p
    values = np.array([f"v{i}" for i in range(100)], dtype=object)
    seg = pd.DataFrame({c: values[rng.integers(0, 100, n)] for c in ("a", "b", "c")})
    report = evaluate(y, p, task="classification", segments=seg)
    assert sum(len(v) for v in report.slices.values()) == 300


@pytest.fixture
def model() -> tuple[LogisticRegression, pd.DataFrame]:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500)})
    y = (X["a"] + rng.normal(size=500)) > 0
    return LogisticRegression().fit(X, y), X


def test_measure_performance_on_a_sklearn_model(model: Any) -> None:
    clf, X = model
    blob = pickle.dumps(clf)
    perf = measure_performance(
        lambda frame: clf.predict_proba(frame)[:, 1],
        X,
        single_rows=50,
        batch_rows=300,
        load=lambda: pickle.loads(blob),
    )
    assert set(perf) == {
        "latency_p50_ms",
        "latency_p99_ms",
        "throughput_rows_per_s",
        "model_memory_bytes",
    }
    assert all(type(v) is float and v > 0 for v in perf.values())
    assert perf["latency_p99_ms"] >= perf["latency_p50_ms"]
    assert not tracemalloc.is_tracing()


def test_measure_performance_leaves_existing_tracing_on(model: Any) -> None:
    clf, X = model
    tracemalloc.start()
    try:
        perf = measure_performance(clf.predict, X, single_rows=5, load=lambda: np.zeros(1_000_000))
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()
    assert perf["model_memory_bytes"] >= 8_000_000
    assert "model_memory_bytes" not in measure_performance(clf.predict, X, single_rows=5)


def test_measure_performance_reports_model_failures(model: Any) -> None:
    _, X = model

    def broken(frame: pd.DataFrame) -> np.ndarray[Any, Any]:
        raise ValueError("boom")

    with pytest.raises(TrainingError, match="boom"):
        measure_performance(broken, X)
    with pytest.raises(TrainingError, match="returned 1 values"):
        measure_performance(lambda frame: np.zeros(1), X.iloc[:3])
    with pytest.raises(SchemaError, match="no rows"):
        measure_performance(lambda frame: np.zeros(len(frame)), X.iloc[:0])
