"""Training's views of the :mod:`prodml.stats` metrics: their names (``positive_rate``),
plain floats with NaN where undefined, refusal of empty inputs, the threshold and bins
passed through, the grouped views named as the whole-set ones, and the gate's metric
directions. The metrics themselves are checked against scikit-learn in
``tests/stats/test_stats_metrics.py``."""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml import stats
from prodml.core.errors import ConfigError, SchemaError
from prodml.training._metrics import (
    METRIC_DIRECTIONS,
    classification_metrics,
    expected_calibration_error,
    grouped_classification_metrics,
    grouped_regression_metrics,
    regression_metrics,
    reliability_curve,
)

Y = [0, 1, 1, 0, 1]
P = [0.05, 0.15, 0.55, 0.62, 0.95]


def _brute_auc(y: list[int], p: list[float]) -> float:
    pos = [s for s, label in zip(p, y, strict=True) if label]
    neg = [s for s, label in zip(p, y, strict=True) if not label]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def test_classification_metrics_match_hand_computation() -> None:
    m = classification_metrics(Y, P, threshold=0.5)
    # predictions at 0.5: 0, 0, 1, 1, 1 → tp=2, fp=1, fn=1, tn=1
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(_brute_auc(Y, P))
    assert m["brier"] == pytest.approx(np.mean((np.array(P) - np.array(Y)) ** 2))
    nll = [-math.log(p) if y else -math.log(1 - p) for y, p in zip(Y, P, strict=True)]
    assert m["log_loss"] == pytest.approx(sum(nll) / len(nll))
    assert m["positive_rate"] == pytest.approx(0.6)
    assert m["mean_score"] == pytest.approx(sum(P) / 5)
    assert all(type(v) is float for v in m.values())


def test_threshold_moves_the_thresholded_metrics() -> None:
    m = classification_metrics(Y, P, threshold=0.9)  # predicts only the 0.95 row positive
    assert (m["precision"], m["recall"], m["accuracy"]) == (1.0, pytest.approx(1 / 3), 0.6)
    nothing = classification_metrics(Y, P, threshold=1.0)
    assert (nothing["precision"], nothing["recall"], nothing["f1"]) == (0.0, 0.0, 0.0)


def test_reliability_curve_is_the_stats_curve_and_ece_by_hand() -> None:
    curve = reliability_curve(Y, P, bins=4)
    assert curve == stats.reliability_curve(Y, P, bins=4)  # values by hand: tests/stats
    expected = 2 / 5 * 0.4 + 2 / 5 * 0.085 + 1 / 5 * 0.05
    assert expected_calibration_error(Y, P, bins=4) == pytest.approx(expected)
    assert classification_metrics(Y, P, bins=4)["ece"] == pytest.approx(expected)
    json.dumps(curve, allow_nan=False)


def test_bin_edges_are_left_closed_and_the_last_bin_holds_one() -> None:
    curve = reliability_curve([1, 0, 1], [0.0, 0.5, 1.0], bins=2)
    assert curve["count"] == [1, 2]
    assert curve["mean_predicted"] == [0.0, 0.75]


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0], [True, True], [False]])
def test_one_class_gives_nan_auc_without_warning(labels: list[int]) -> None:
    scores = [0.3] * len(labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = classification_metrics(labels, scores)
    assert caught == []
    assert math.isnan(m["roc_auc"])
    assert all(math.isfinite(v) for k, v in m.items() if k != "roc_auc")


@pytest.mark.parametrize("metrics", [classification_metrics, regression_metrics])
def test_empty_input_is_refused(metrics: Callable[[Any, Any], Any]) -> None:
    with pytest.raises(SchemaError, match="y_true: expected a non-empty"):
        metrics([], [])


def test_bad_threshold_and_bins_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        classification_metrics(Y, P, threshold=1.5)
    with pytest.raises(ConfigError, match="bins"):
        reliability_curve(Y, P, bins=0)


def test_regression_metrics_match_numpy() -> None:
    y = np.array([3.0, -1.0, 0.0, 2.0, 5.0])
    p = np.array([2.5, -1.5, 1.0, 2.0, 4.0])
    m = regression_metrics(y, p)
    err = y - p
    assert m["rmse"] == pytest.approx(math.sqrt(np.mean(err**2)))
    assert m["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert m["r2"] == pytest.approx(1 - np.sum(err**2) / np.sum((y - y.mean()) ** 2))
    nz = y != 0
    assert m["mape"] == pytest.approx(np.mean(np.abs(err[nz]) / np.abs(y[nz])))
    assert m["mean_prediction"] == pytest.approx(p.mean())
    assert all(type(v) is float for v in m.values())


def test_regression_edge_cases() -> None:
    assert math.isnan(regression_metrics([0.0, 0.0], [1.0, 2.0])["mape"])
    assert math.isnan(regression_metrics([2.0], [1.0])["r2"])
    with pytest.raises(SchemaError, match="y_pred"):
        regression_metrics([1.0, 2.0], [1.0, math.nan])
    with pytest.raises(SchemaError, match="y_pred"):
        regression_metrics([1.0, 2.0], [1.0])


def test_metric_directions_cover_every_scored_metric() -> None:
    scored = {*classification_metrics(Y, P), *regression_metrics([1.0, 2.0], [1.0, 3.0])}
    descriptive = {"positive_rate", "mean_score", "mean_prediction"}
    assert scored - descriptive <= METRIC_DIRECTIONS.keys()
    assert METRIC_DIRECTIONS["roc_auc"] == "higher"
    assert METRIC_DIRECTIONS["rmse"] == "lower"
    assert METRIC_DIRECTIONS["latency_p99_ms"] == "lower"
    assert METRIC_DIRECTIONS["throughput_rows_per_s"] == "higher"


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_calibrated_scores_have_small_ece(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.random(5000)
    y = rng.random(5000) < p
    assert expected_calibration_error(y, p) < 0.05
    assert expected_calibration_error(y, np.clip(p + 0.3, 0, 1)) > 0.15


def test_grouped_views_name_each_groups_metrics_as_the_whole_set_views_do() -> None:
    y, p = np.array(Y, dtype=np.bool_), np.array(P)
    group = np.array([0, 1, 0, 1, 1], dtype=np.intp)
    grouped = {
        **grouped_classification_metrics(y, p, group, 2, threshold=0.4, bins=5),
        **grouped_regression_metrics(p, 1 - p, group, 2),
    }
    for g in range(2):
        rows = group == g
        want = {
            **classification_metrics(y[rows], p[rows], threshold=0.4, bins=5),
            **regression_metrics(p[rows], 1 - p[rows]),
        }
        assert grouped.keys() == want.keys()
        assert all(_same(float(grouped[name][g]), value) for name, value in want.items()), g
