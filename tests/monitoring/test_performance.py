"""Window performance metrics against sklearn.metrics to 1e-12 (hypothesis inputs, NaN
rows, one class, empty windows, ties); ECE against a brute-force loop; the isotonic
Calibrator against scikit-learn, through a JSON round trip and on miscalibrated scores;
and label-free estimation checked on labels truly drawn from Bernoulli(p): point
estimates against the mean realized metric, interval coverage, tied scores, edge cases."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy.stats import rankdata
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

from prodml.core.errors import SchemaError, StateError
from prodml.monitoring import _performance
from prodml.monitoring._performance import (
    Calibrator,
    Estimate,
    calibration,
    classification_metrics,
    estimate_classification,
    regression_metrics,
)

Floats = NDArray[np.float64]
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def _close(got: float | None, expected: float) -> bool:
    if got is None:
        return math.isnan(expected)
    return math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-12)


# -- strategies -----------------------------------------------------------------------

GRID = [0.0, 0.25, 0.5, 0.75, 1.0]
score = st.one_of(st.floats(0, 1), st.sampled_from(GRID))


@st.composite
def binary_windows(draw: st.DrawFn) -> tuple[Floats, Floats]:
    """Labels and scores of one length, ties likely, some rows NaN on either side."""
    n = draw(st.integers(0, 60))
    y = np.array(draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n)))
    s = np.array(draw(st.lists(score, min_size=n, max_size=n)), dtype=np.float64)
    for column in (y, s):
        for i in draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=3)) if n else []:
            column[i] = np.nan
    return y.astype(np.float64), s


@st.composite
def regression_windows(draw: st.DrawFn) -> tuple[Floats, Floats]:
    n = draw(st.integers(0, 40))
    value = st.floats(-1e3, 1e3, allow_subnormal=False)
    y = draw(st.lists(value, min_size=n, max_size=n))
    f = draw(st.lists(value, min_size=n, max_size=n))
    return np.array(y, dtype=np.float64), np.array(f, dtype=np.float64)


# -- classification metrics -----------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(binary_windows(), st.sampled_from([0.0, 0.3, 0.5, 0.75, 1.0]))
def test_classification_matches_sklearn(window: tuple[Floats, Floats], threshold: float) -> None:
    y_raw, s_raw = window
    keep = ~(np.isnan(y_raw) | np.isnan(s_raw))
    y, s = y_raw[keep], s_raw[keep]
    got = classification_metrics(y_raw, s_raw, threshold=threshold)
    assert got["rows"] == y.size
    assert got["dropped"] == y_raw.size - y.size
    if y.size == 0:
        assert all(v is None for k, v in got.items() if k not in ("rows", "dropped"))
        return
    pred = s >= threshold
    nan = np.nan
    expected = {
        "roc_auc": skm.roc_auc_score(y, s) if 0 < y.sum() < y.size else nan,
        "log_loss": skm.log_loss(y, s, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, s),
        "accuracy": skm.accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred, zero_division=0.0),
        "precision": skm.precision_score(y, pred, zero_division=0.0),
        "recall": skm.recall_score(y, pred, zero_division=0.0),
        "positive_rate": pred.mean(),
        "label_rate": y.mean(),
    }
    for name, value in expected.items():
        assert _close(got[name], float(value)), (name, got[name], value)


def test_classification_edge_cases() -> None:
    one_class = classification_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert one_class["roc_auc"] is None
    assert one_class["recall"] == pytest.approx(2 / 3)
    assert one_class["log_loss"] == pytest.approx(-np.mean(np.log([0.2, 0.7, 0.9])))
    empty = classification_metrics([], [])
    assert empty == dict.fromkeys(empty, None) | {"rows": 0, "dropped": 0}
    all_nan = classification_metrics([np.nan, 1], [0.5, np.nan])
    assert all_nan["rows"] == 0
    assert all_nan["dropped"] == 2
    assert all_nan["brier"] is None
    tied = classification_metrics([0, 1, 0, 1], [0.4] * 4)
    assert tied["roc_auc"] == 0.5
    # nothing predicted positive at 0.5: scikit-learn's zero_division=0, as training reports
    assert (tied["precision"], tied["recall"], tied["f1"]) == (0.0, 0.0, 0.0)
    certain = classification_metrics([True, False], [1.0, 0.0])
    assert certain["log_loss"] == pytest.approx(-math.log(1 - np.finfo(float).eps))
    assert certain["roc_auc"] == certain["accuracy"] == certain["f1"] == 1.0


@pytest.mark.parametrize(
    ("labels", "scores", "field"),
    [
        ([0, 2], [0.1, 0.2], "y_true"),
        ([0, 1], [0.1, 1.2], "scores"),
        ([0, 1], [0.1, np.inf], "scores"),
        ([0, 1], [0.1], "length"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
        (["a", "b"], [0.1, 0.2], "y_true"),
    ],
)
def test_classification_rejects_bad_input(labels: Any, scores: Any, field: str) -> None:
    with pytest.raises(SchemaError, match=field):
        classification_metrics(labels, scores)


# -- regression metrics ---------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(regression_windows())
def test_regression_matches_sklearn(window: tuple[Floats, Floats]) -> None:
    y, f = window
    got = regression_metrics(y, f)
    assert got["rows"] == y.size
    if y.size == 0:
        assert got["rmse"] is got["mae"] is got["r2"] is got["bias"] is None
        return
    assert _close(got["rmse"], skm.root_mean_squared_error(y, f))
    assert _close(got["mae"], skm.mean_absolute_error(y, f))
    assert _close(got["bias"], float(np.mean(f - y)))
    # R² of a constant y is scikit-learn's force_finite value (1.0 if fitted exactly, else
    # 0.0), including values a denormal apart whose squares underflow to 0
    if y.size >= 2:
        assert _close(got["r2"], skm.r2_score(y, f))
    else:
        assert got["r2"] is None


def test_regression_edge_cases() -> None:
    one = regression_metrics([1.0], [3.0])
    assert (one["rmse"], one["bias"], one["r2"]) == (2.0, 2.0, None)
    assert regression_metrics([2.0, 2.0], [1.0, 3.0])["r2"] == 0.0
    assert regression_metrics([2.0, 2.0], [2.0, 2.0])["r2"] == 1.0
    dropped = regression_metrics([1.0, np.nan, 3.0], [1.0, 2.0, np.nan])
    assert (dropped["rows"], dropped["dropped"], dropped["mae"]) == (1, 2, 0.0)
    with pytest.raises(SchemaError, match="y_pred"):
        regression_metrics([1.0], [np.inf])


# -- calibration ----------------------------------------------------------------------


def _brute_calibration(y: Floats, s: Floats, bins: int) -> tuple[float, float, list[int]]:
    edges = np.linspace(0, 1, bins + 1)
    ece, worst, counts = 0.0, 0.0, []
    for b in range(bins):
        last = b == bins - 1
        members = [i for i in range(s.size) if edges[b] <= s[i] and (s[i] < edges[b + 1] or last)]
        counts.append(len(members))
        if members:
            gap = abs(math.fsum(s[members]) / len(members) - math.fsum(y[members]) / len(members))
            ece += len(members) / s.size * gap
            worst = max(worst, gap)
    return ece, worst, counts


@settings(max_examples=60, deadline=None)
@given(binary_windows(), st.sampled_from([1, 2, 4, 10, 15]))
def test_ece_matches_brute_force(window: tuple[Floats, Floats], bins: int) -> None:
    y_raw, s_raw = window
    keep = ~(np.isnan(y_raw) | np.isnan(s_raw))
    got = calibration(y_raw, s_raw, bins=bins)
    assert len(got.table) == bins
    if not keep.any():
        assert got.ece is got.max_error is None
        assert all(b.count == 0 and b.mean_score is None for b in got.table)
        return
    ece, worst, counts = _brute_calibration(y_raw[keep], s_raw[keep], bins)
    assert _close(got.ece, ece)
    assert _close(got.max_error, worst)
    assert [b.count for b in got.table] == counts
    assert got.rows == keep.sum()
    assert got.dropped == (~keep).sum()


def test_calibration_table_and_dict() -> None:
    got = calibration([0, 1, 1], [0.0, 0.5, 1.0], bins=2)
    assert [(b.lower, b.upper, b.count) for b in got.table] == [(0.0, 0.5, 1), (0.5, 1.0, 2)]
    assert got.table[1].mean_score == 0.75
    assert got.table[1].label_rate == 1.0
    data = json.loads(json.dumps(got.to_dict()))
    assert data["table"][0] == {
        "lower": 0.0,
        "upper": 0.5,
        "count": 1,
        "mean_score": 0.0,
        "label_rate": 0.0,
    }
    assert data["ece"] == pytest.approx(2 / 3 * 0.25)
    with pytest.raises(SchemaError, match="bins"):
        calibration([0], [0.5], bins=0)


# -- Calibrator -----------------------------------------------------------------------


def _bernoulli_scores(n: int, seed: int) -> tuple[Floats, Floats]:
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return p, (rng.random(n) < p).astype(np.float64)


def test_calibrator_matches_isotonic_and_round_trips() -> None:
    p, y = _bernoulli_scores(500, 1)
    s = np.round(p**2, 2)  # ties in the reference
    cal = Calibrator().fit(s, y)
    assert not cal.identity_
    grid = np.concatenate([np.linspace(-0.5, 1.5, 401), [np.nan]])
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s, y)
    np.testing.assert_allclose(cal.apply(grid[:-1]), iso.predict(grid[:-1]), rtol=0, atol=1e-12)
    assert np.isnan(cal.apply(grid)[-1])
    loaded = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_array_equal(loaded.apply(grid), cal.apply(grid))
    assert loaded.to_dict() == cal.to_dict()


def test_calibrator_improves_ece_on_miscalibrated_scores() -> None:
    p_ref, y_ref = _bernoulli_scores(20_000, 2)
    p_cur, y_cur = _bernoulli_scores(20_000, 3)
    cal = Calibrator().fit(p_ref**3, y_ref)
    before = calibration(y_cur, p_cur**3).ece
    after = calibration(y_cur, cal.apply(p_cur**3)).ece
    assert before is not None
    assert after is not None
    assert before > 0.15
    assert after < 0.02


@pytest.mark.parametrize(
    ("scores", "labels"),
    [([0.1, 0.9] * 5, [0, 1] * 5), (np.linspace(0, 1, 30), [1] * 30), ([], [])],
    ids=["few-rows", "one-class", "empty"],
)
def test_calibrator_identity(scores: Any, labels: Any) -> None:
    cal = Calibrator().fit(scores, labels)
    assert cal.identity_
    np.testing.assert_array_equal(cal.apply([-1, 0, 0.3, 1, 2]), [0, 0, 0.3, 1, 1])


def test_calibrator_errors() -> None:
    with pytest.raises(StateError, match="not fitted"):
        Calibrator().apply([0.5])
    good = Calibrator().fit(np.linspace(0, 1, 40), [0, 1] * 20).to_dict()
    with pytest.raises(SchemaError, match="lacks keys"):
        Calibrator.from_dict({"x": [0, 1]})
    with pytest.raises(SchemaError, match="increasing"):
        Calibrator.from_dict(good | {"x": [1.0, 0.0], "y": [0.0, 1.0]})
    with pytest.raises(SchemaError, match="non-decreasing"):
        Calibrator.from_dict(good | {"x": [0.0, 1.0], "y": [1.0, 0.0]})
    with pytest.raises(SchemaError, match="one length"):
        Calibrator.from_dict(good | {"x": [0.0, 1.0], "y": [0.5]})


# -- estimation without labels --------------------------------------------------------


def _realized(labels: NDArray[np.bool_], p: Floats, threshold: float = 0.5) -> dict[str, Floats]:
    """Each metric for every row of a (draws × n) label matrix, computed directly."""
    n = p.size
    pred = p >= threshold
    k = pred.sum()
    positives = labels.sum(axis=1).astype(np.float64)
    tp = labels[:, pred].sum(axis=1).astype(np.float64)
    rank_sum = labels.astype(np.float64) @ rankdata(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "accuracy": (tp + (n - k) - (positives - tp)) / n,
            "precision": tp / k,
            "recall": tp / positives,
            "f1": 2 * tp / (k + positives),
            "roc_auc": (rank_sum - positives * (positives + 1) / 2) / (positives * (n - positives)),
        }


def test_realized_helper_matches_sklearn() -> None:
    p, _ = _bernoulli_scores(300, 4)
    p = np.round(p, 1)
    labels = np.random.default_rng(5).random((3, p.size)) < p
    realized = _realized(labels, p)
    for row, y in enumerate(labels):
        pred = p >= 0.5
        assert _close(realized["accuracy"][row], skm.accuracy_score(y, pred))
        assert _close(realized["f1"][row], skm.f1_score(y, pred))
        assert _close(realized["roc_auc"][row], skm.roc_auc_score(y, p))


def test_point_estimates_match_mean_realized_metric() -> None:
    rng = np.random.default_rng(6)
    p = rng.beta(2, 3, 4000)
    est = estimate_classification(p, simulations=0)
    means: dict[str, list[Floats]] = {m: [] for m in METRICS}
    for _ in range(4):
        labels = rng.random((500, p.size)) < p
        for name, values in _realized(labels, p).items():
            means[name].append(values)
    for name in METRICS:
        value = est[name].value
        assert value is not None
        assert est[name].lower is est[name].upper is None
        assert value == pytest.approx(np.mean(np.concatenate(means[name])), abs=1e-3), name


def test_interval_covers_realized_metric_at_level() -> None:
    rng = np.random.default_rng(7)
    trials, n = 200, 1500
    inside = dict.fromkeys(METRICS, 0)
    for trial in range(trials):
        p = rng.beta(rng.uniform(0.5, 3), rng.uniform(0.5, 3), n)
        est = estimate_classification(p, threshold=0.4, seed=trial)
        realized = _realized(rng.random((1, n)) < p, p, threshold=0.4)
        for name in METRICS:
            lower, upper = est[name].lower, est[name].upper
            assert lower is not None
            assert upper is not None
            inside[name] += bool(lower <= realized[name][0] <= upper)
    coverage = {name: count / trials for name, count in inside.items()}
    assert all(0.88 <= c <= 0.99 for c in coverage.values()), coverage


def _brute_expected(p: Floats, threshold: float) -> dict[str, float]:
    pred = p >= threshold
    tp, fp = p[pred].sum(), (1 - p[pred]).sum()
    fn, tn = p[~pred].sum(), (1 - p[~pred]).sum()
    pairs = 0.0
    nan = float("nan")
    for i in range(p.size):
        for j in range(p.size):
            weight = 1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0
            pairs += p[i] * (1 - p[j]) * weight
    return {
        "accuracy": (tp + tn) / p.size,
        "precision": tp / (tp + fp) if tp + fp > 0 else nan,
        "recall": tp / (tp + fn),
        "f1": 2 * tp / (2 * tp + fp + fn),
        "roc_auc": pairs / (p.sum() * (1 - p).sum()),
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.05, 0.2, 0.5, 0.7, 0.95]) | st.floats(0.01, 0.99),
        min_size=2,
        max_size=30,
    ),
    st.sampled_from([0.3, 0.5, 0.6]),
)
def test_point_estimates_match_brute_force(values: list[float], threshold: float) -> None:
    p = np.array(values)
    est = estimate_classification(p, threshold=threshold, simulations=0)
    expected = _brute_expected(p, threshold)
    for name in METRICS:
        if name == "precision" and not (p >= threshold).any():
            assert est[name].value is None
        else:
            assert _close(est[name].value, expected[name]), name


def test_tied_scores() -> None:
    rng = np.random.default_rng(8)
    p = rng.choice([0.1, 0.3, 0.6, 0.8], 3000)
    est = estimate_classification(p)
    shuffled = estimate_classification(rng.permutation(p))
    assert shuffled["roc_auc"].value == pytest.approx(est["roc_auc"].value, rel=1e-12)
    realized = _realized(rng.random((2000, p.size)) < p, p)["roc_auc"]
    assert est["roc_auc"].value == pytest.approx(realized.mean(), abs=1e-3)
    flat = estimate_classification(np.full(500, 0.3))
    assert flat["roc_auc"] == Estimate(0.5, 0.5, 0.5)
    assert flat["precision"] == Estimate(None, None, None)
    assert flat["accuracy"].value == pytest.approx(0.7)


def test_estimation_edge_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    assert estimate_classification([]) == dict.fromkeys(METRICS, Estimate(None, None, None))
    certain = estimate_classification([1.0, 1.0, np.nan])
    assert certain["recall"] == Estimate(1.0, 1.0, 1.0)
    assert certain["roc_auc"] == Estimate(None, None, None)
    p = np.random.default_rng(9).random(1000)
    first = estimate_classification(p, seed=3)
    assert estimate_classification(p, seed=3) == first
    monkeypatch.setattr(_performance, "_CHUNK_ELEMENTS", 3 * p.size)
    assert estimate_classification(p, seed=3) == first  # same draws, other chunking
    assert first["f1"].to_dict().keys() == {"value", "lower", "upper"}
    with pytest.raises(SchemaError, match="level"):
        estimate_classification(p, level=1.0)
    with pytest.raises(SchemaError, match="simulations"):
        estimate_classification(p, simulations=-1)
    with pytest.raises(SchemaError, match="probabilities"):
        estimate_classification([0.5, 1.5])


def test_estimates_decide_and_rank_by_the_model_scores_when_given() -> None:
    from prodml.core import SchemaError
    from prodml.monitoring import estimate_classification

    rng = np.random.default_rng(5)
    scores = rng.random(2000)
    p = scores**2  # a monotone calibration: same ranking, different decisions at 0.5
    by_scores = estimate_classification(p, scores=scores, simulations=0)
    by_p = estimate_classification(p, simulations=0)
    decided = scores >= 0.5
    expected = (p[decided].sum() + (1 - p[~decided]).sum()) / len(p)
    assert by_scores["accuracy"].value == pytest.approx(expected)
    assert by_scores["accuracy"].value != pytest.approx(by_p["accuracy"].value)
    assert by_scores["roc_auc"].value == pytest.approx(by_p["roc_auc"].value)
    with pytest.raises(SchemaError, match="one score per row"):
        estimate_classification(p, scores=scores[:10])


def test_regression_r2_follows_sklearn_when_the_variance_underflows() -> None:
    """y's values differ, but by so little that their variance is 0.0 in floating point."""
    y, f = [0.0, 4.09737596e-241], [0.0, 0.0]
    got = regression_metrics(y, f)
    assert got["r2"] == skm.r2_score(y, f) == 1.0
    assert regression_metrics(y, [1.0, 1.0])["r2"] == skm.r2_score(y, [1.0, 1.0]) == 0.0
    assert got["rows"] == 2
