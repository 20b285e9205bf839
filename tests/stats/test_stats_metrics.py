"""The metrics of prodml.stats against scikit-learn, to the last bit where scikit-learn
defines them (hypothesis inputs with ties, one class, one row, scores at 0 and 1), the
calibration bins against scikit-learn's calibration_curve and a brute-force loop, the
grouped variants against the whole-set functions, and every edge convention."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from prodml.core.errors import ConfigError, SchemaError
from prodml.stats import (
    LOG_LOSS_EPS,
    brier,
    calibration_bins,
    classification_metrics,
    expected_calibration_error,
    grouped_classification_metrics,
    grouped_regression_metrics,
    log_loss,
    regression_metrics,
    reliability_curve,
    roc_auc,
)

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]

#: Scores that tie often, lie on bin edges, or sit within the clipping ε of 0 and 1.
SPECIAL = [0.0, 1e-300, 1e-17, 1e-15, 0.1, 0.25, 0.5, 0.7, 1 - 1e-15, 1 - 1e-16, 1.0]
score = st.one_of(st.floats(0.0, 1.0), st.sampled_from(SPECIAL))


@st.composite
def binary_rows(draw: st.DrawFn, min_size: int = 1) -> tuple[Bools, Floats]:
    rows = draw(st.lists(st.tuples(st.booleans(), score), min_size=min_size, max_size=80))
    y = np.array([r[0] for r in rows], dtype=np.bool_)
    p = np.array([r[1] for r in rows], dtype=np.float64)
    return y, p


@st.composite
def regression_rows(draw: st.DrawFn) -> tuple[Floats, Floats]:
    n = draw(st.integers(1, 60))
    value = st.one_of(
        st.floats(-1e4, 1e4, allow_subnormal=False), st.sampled_from([0.0, 1.0, -2.5])
    )
    y = np.array(draw(st.lists(value, min_size=n, max_size=n)), dtype=np.float64)
    p = np.array(draw(st.lists(value, min_size=n, max_size=n)), dtype=np.float64)
    return y, p


def _same(a: float | None, b: float) -> bool:
    if a is None:
        return math.isnan(b)
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


# -- classification against scikit-learn -----------------------------------------------


@settings(max_examples=200, deadline=None)
@given(binary_rows(), st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]))
def test_classification_equals_sklearn(rows: tuple[Bools, Floats], threshold: float) -> None:
    y, p = rows
    got = classification_metrics(y, p, threshold=threshold)
    pred = p >= threshold
    yi = y.astype(int)
    expected: dict[str, Any] = {
        "log_loss": skm.log_loss(yi, p, labels=[0, 1]),
        "brier": skm.brier_score_loss(yi, p, pos_label=1),
        "accuracy": skm.accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred, zero_division=0.0),
        "precision": skm.precision_score(y, pred, zero_division=0.0),
        "recall": skm.recall_score(y, pred, zero_division=0.0),
        "label_rate": y.mean(),
        "predicted_positive_rate": pred.mean(),
        "mean_score": p.mean(),
        "roc_auc": skm.roc_auc_score(y, p) if 0 < y.sum() < y.size else None,
    }
    for name, value in expected.items():
        assert got[name] == (None if value is None else float(value)), name
    assert log_loss(y, p) == got["log_loss"]
    assert brier(y, p) == got["brier"]
    assert roc_auc(y, p) == got["roc_auc"]
    assert all(v is None or type(v) is float for v in got.values())


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 3000), st.sampled_from([None, 1, 2]))
def test_roc_auc_equals_sklearn_on_large_tied_inputs(seed: int, n: int, digits: int | None) -> None:
    rng = np.random.default_rng(seed)
    p = rng.random(n) if digits is None else np.round(rng.random(n), digits)
    y = rng.random(n) < rng.random()
    if 0 < y.sum() < n:
        assert roc_auc(y, p) == skm.roc_auc_score(y, p)
    else:
        assert roc_auc(y, p) is None


def test_hand_computed_classification() -> None:
    y, p = [0, 1, 1, 0, 1], [0.05, 0.15, 0.55, 0.62, 0.95]
    m = classification_metrics(y, p)  # predicted 0, 0, 1, 1, 1: tp 2, fp 1, fn 1, tn 1
    assert (m["accuracy"], m["label_rate"], m["predicted_positive_rate"]) == (0.6, 0.6, 0.6)
    assert m["precision"] == m["recall"] == m["f1"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(4 / 6)  # pairs (pos > neg): 4 of 6
    nll = [-math.log(0.95), -math.log(0.15), -math.log(0.55), -math.log(0.38), -math.log(0.95)]
    assert m["log_loss"] == pytest.approx(sum(nll) / 5)


# -- regression against scikit-learn ---------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(regression_rows())
def test_regression_equals_sklearn(rows: tuple[Floats, Floats]) -> None:
    y, p = rows
    got = regression_metrics(y, p)
    assert got["rmse"] == skm.root_mean_squared_error(y, p)
    assert got["mae"] == skm.mean_absolute_error(y, p)
    assert got["r2"] == (skm.r2_score(y, p) if y.size >= 2 else None)
    nonzero = y != 0
    mape = skm.mean_absolute_percentage_error(y[nonzero], p[nonzero]) if nonzero.any() else None
    assert got["mape"] == mape
    assert got["bias"] == float(np.mean(p - y))
    assert got["mean_prediction"] == float(np.mean(p))


def test_regression_edge_conventions() -> None:
    one = regression_metrics([2.0], [1.0])
    assert (one["rmse"], one["mae"], one["bias"], one["r2"]) == (1.0, 1.0, -1.0, None)
    assert regression_metrics([2.0, 2.0], [2.0, 2.0])["r2"] == 1.0  # constant, fitted exactly
    assert regression_metrics([2.0, 2.0], [1.0, 3.0])["r2"] == 0.0  # constant, not fitted
    assert regression_metrics([0.0, 0.0], [1.0, 2.0])["mape"] is None
    assert regression_metrics([], []) == dict.fromkeys(regression_metrics([1.0], [1.0]))


# -- calibration -----------------------------------------------------------------------


def _brute_ece(y: Bools, p: Floats, bins: int) -> float:
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for b in range(bins):
        last = b == bins - 1
        members = [i for i in range(p.size) if edges[b] <= p[i] and (p[i] < edges[b + 1] or last)]
        if members:
            gap = math.fsum(p[members]) / len(members) - math.fsum(y[members]) / len(members)
            total += len(members) / p.size * abs(gap)
    return total


@settings(max_examples=100, deadline=None)
@given(binary_rows(), st.sampled_from([1, 2, 4, 10, 15]))
def test_calibration_matches_brute_force_and_sklearn(rows: tuple[Bools, Floats], bins: int) -> None:
    y, p = rows
    assert _same(expected_calibration_error(y, p, bins=bins), _brute_ece(y, p, bins))
    assert classification_metrics(y, p, bins=bins)["ece"] == expected_calibration_error(
        y, p, bins=bins
    )
    edges, count, _, _ = calibration_bins(y, p, bins=bins)
    if np.isin(p, edges[1:-1]).any():
        return  # scikit-learn puts a score on an inner edge in the lower bin, prodml the upper
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, pos_label=True)
    curve = reliability_curve(y, p, bins=bins)
    filled = count > 0
    np.testing.assert_allclose(
        np.array(curve["fraction_positive"], dtype=object)[filled].astype(float), prob_true
    )
    np.testing.assert_allclose(
        np.array(curve["mean_predicted"], dtype=object)[filled].astype(float), prob_pred
    )


def test_reliability_bins_by_hand() -> None:
    curve = reliability_curve([0, 1, 1, 0, 1], [0.05, 0.15, 0.55, 0.62, 0.95], bins=4)
    assert curve["bin_edges"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve["count"] == [2, 0, 2, 1]
    assert curve["mean_predicted"] == pytest.approx([0.1, None, 0.585, 0.95])
    assert curve["fraction_positive"] == pytest.approx([0.5, None, 0.5, 1.0])
    # left-closed bins; the last bin holds 1.0
    assert reliability_curve([1, 0, 1], [0.0, 0.5, 1.0], bins=2)["count"] == [1, 2]


# -- grouped variants ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 200))
def test_grouped_classification_equals_whole_set_per_group(seed: int, groups: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < rng.random()
    p = np.round(rng.random(n), 1)  # many ties, which ROC-AUC must average
    group = rng.integers(0, groups, n).astype(np.intp)
    got = grouped_classification_metrics(y, p, group, groups, threshold=0.4, bins=5)
    for g in range(groups):
        rows = group == g
        want = classification_metrics(y[rows], p[rows], threshold=0.4, bins=5)
        assert want.keys() == got.keys()
        if rows.any():
            for name, value in want.items():
                assert _same(value, float(got[name][g])), (name, g)
        else:
            assert math.isnan(got["accuracy"][g])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 200))
def test_grouped_regression_equals_whole_set_per_group(seed: int, groups: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.round(rng.normal(size=n), 1)  # some exact zeros, for MAPE
    p = y + rng.normal(size=n) * rng.random()
    group = rng.integers(0, groups, n).astype(np.intp)
    got = grouped_regression_metrics(y, p, group, groups)
    for g in range(groups):
        rows = group == g
        want = regression_metrics(y[rows], p[rows])
        assert want.keys() == got.keys()
        if rows.any():
            for name, value in want.items():
                assert _same(value, float(got[name][g])), (name, g)


@pytest.mark.parametrize("value", [0.1, 0.7, 1 / 3, 123.456])
def test_grouped_r2_of_a_constant_target_follows_sklearn(value: float) -> None:
    y = np.full(33, value)
    p = y.copy()
    p[0] += 1.0
    group = np.zeros(33, np.intp)
    assert grouped_regression_metrics(y, p, group, 1)["r2"][0] == skm.r2_score(y, p) == 0.0
    assert grouped_regression_metrics(y, y, group, 1)["r2"][0] == skm.r2_score(y, y) == 1.0


# -- edge conventions ------------------------------------------------------------------


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0], [True], [False, False]])
def test_one_class_roc_auc_is_none_and_the_rest_defined(labels: list[int]) -> None:
    m = classification_metrics(labels, [0.3] * len(labels))  # warnings are errors here
    assert m["roc_auc"] is None
    assert roc_auc(labels, [0.3] * len(labels)) is None
    assert all(isinstance(v, float) for k, v in m.items() if k != "roc_auc")


def test_empty_input_gives_none_everywhere() -> None:
    m = classification_metrics([], [])
    assert m.keys() == classification_metrics([1], [0.5]).keys()
    assert set(m.values()) == {None}
    assert log_loss([], []) is brier([], []) is roc_auc([], []) is None
    assert expected_calibration_error([], []) is None
    curve = reliability_curve([], [], bins=3)
    assert curve["count"] == [0, 0, 0]
    assert curve["mean_predicted"] == [None, None, None]
    assert set(regression_metrics([], []).values()) == {None}


def test_ties_and_zero_denominators() -> None:
    tied = classification_metrics([0, 1, 0, 1], [0.4] * 4)
    assert tied["roc_auc"] == 0.5
    assert (tied["precision"], tied["recall"], tied["f1"]) == (0.0, 0.0, 0.0)
    negatives = classification_metrics([0, 0], [0.1, 0.2])
    assert (negatives["precision"], negatives["recall"], negatives["f1"]) == (0.0, 0.0, 0.0)
    assert negatives["accuracy"] == 1.0


def test_log_loss_clips_at_machine_epsilon_as_sklearn() -> None:
    assert np.finfo(np.float64).eps == LOG_LOSS_EPS
    wrong = log_loss([1, 0], [0.0, 1.0])
    assert wrong == -math.log(LOG_LOSS_EPS) == skm.log_loss([1, 0], [0.0, 1.0])
    right = log_loss([True, False], [1.0, 0.0])
    assert right == -float(np.log(1 - LOG_LOSS_EPS)) == skm.log_loss([1, 0], [1.0, 0.0])


@pytest.mark.parametrize(
    ("y", "p", "field"),
    [
        ([0, 1], [0.2, 1.5], "y_score"),
        ([0, 1], [-0.1, 0.5], "y_score"),
        ([0, 1], [math.nan, 0.5], "y_score"),
        ([0, 1], [math.inf, 0.5], "y_score"),
        ([0, 2], [0.2, 0.5], "y_true"),
        ([0, math.nan], [0.2, 0.5], "y_true"),
        (["a", "b"], [0.2, 0.5], "y_true"),
        ([[0, 1]], [[0.2, 0.5]], "y_true"),
        ([0, 1, 1], [0.2, 0.5], "y_score"),
    ],
)
def test_bad_classification_inputs_name_the_field(y: Any, p: Any, field: str) -> None:
    with pytest.raises(SchemaError, match=field):
        classification_metrics(y, p)


def test_bad_regression_inputs_and_parameters() -> None:
    with pytest.raises(SchemaError, match="y_pred"):
        regression_metrics([1.0, 2.0], [1.0, math.nan])
    with pytest.raises(SchemaError, match="y_true"):
        regression_metrics([1.0, math.inf], [1.0, 2.0])
    with pytest.raises(SchemaError, match="y_pred"):
        regression_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match="threshold"):
        classification_metrics([0, 1], [0.2, 0.8], threshold=1.5)
    with pytest.raises(ConfigError, match="bins"):
        reliability_curve([0, 1], [0.2, 0.8], bins=0)
    with pytest.raises(ConfigError, match="bins"):
        classification_metrics([0, 1], [0.2, 0.8], bins=True)
