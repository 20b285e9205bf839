"""Paired model comparisons: DeLong's fast midrank variance against the O(n²)
structural-components formula, the AUCs against scikit-learn, the paired t tests against
SciPy's ttest_rel, and the vectorised bootstrap against the same resamples scored one at
a time by scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as skm

from prodml.core.errors import ConfigError, SchemaError
from prodml.stats._paired import delong_test, paired_bootstrap, paired_differences

score = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), st.floats(0.0, 1.0))
rows = st.lists(st.tuples(st.booleans(), score, score), min_size=2, max_size=60)


def _structural(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """DeLong, DeLong & Clarke-Pearson (1988) directly: ψ(x, y) = 1 if x > y, ½ if equal,
    over every positive–negative pair; V10, V01 are its row and column means."""
    aucs, v10s, v01s = [], [], []
    for s in (a, b):
        pos, neg = s[y], s[~y]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        aucs.append(psi.mean())
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
    s10, s01 = np.cov(np.stack(v10s)), np.cov(np.stack(v01s))
    m, n = len(v10s[0]), len(v01s[0])
    contrast = np.array([-1.0, 1.0])
    var = contrast @ s10 @ contrast / m + contrast @ s01 @ contrast / n
    return np.array(aucs), float(var)


@settings(max_examples=200, deadline=None)
@given(data=rows)
def test_delong_matches_structural_components(data: list[tuple[bool, float, float]]) -> None:
    y = np.array([r[0] for r in data])
    a = np.array([r[1] for r in data])
    b = np.array([r[2] for r in data])
    r = delong_test(y, a, b)
    m = int(y.sum())
    if m in (0, len(y)):
        assert math.isnan(r.p_value)
        assert r.to_dict()["value_a"] is None
        return
    aucs, var = _structural(y, a, b) if m > 1 and len(y) - m > 1 else (None, None)
    assert r.value_a == pytest.approx(skm.roc_auc_score(y, a), abs=1e-12)
    assert r.value_b == pytest.approx(skm.roc_auc_score(y, b), abs=1e-12)
    if var is not None:
        assert (r.value_a, r.value_b) == (pytest.approx(aucs[0]), pytest.approx(aucs[1]))
        assert r.se**2 == pytest.approx(max(var, 0.0), rel=1e-9, abs=1e-15)
    if r.se > 0:
        z = r.difference / r.se
        assert r.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-12)
        half = stats.norm.ppf(0.975) * r.se
        assert r.ci_low == pytest.approx(r.difference - half)


def test_delong_detects_a_better_model() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(4000) < 0.3
    signal = y + rng.normal(0, 1, 4000)
    a = signal + rng.normal(0, 1.2, 4000)
    b = signal + rng.normal(0, 0.4, 4000)
    r = delong_test(y, a, b)  # unbounded scores are fine for AUC
    assert r.difference > 0
    assert r.p_value < 1e-6
    assert r.ci_low > 0
    assert r.value_b == pytest.approx(skm.roc_auc_score(y, b), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(data=rows, threshold=st.sampled_from([0.3, 0.5, 0.75]))
def test_paired_differences_match_ttest_rel(
    data: list[tuple[bool, float, float]], threshold: float
) -> None:
    y = np.array([r[0] for r in data])
    a = np.array([r[1] for r in data])
    b = np.array([r[2] for r in data])
    out = paired_differences(y, a, b, threshold=threshold, alpha=0.1)
    assert out["log_loss"].value_a == pytest.approx(skm.log_loss(y, a, labels=[0, 1]), rel=1e-12)
    assert out["brier"].value_b == pytest.approx(skm.brier_score_loss(y, b, pos_label=1), abs=1e-15)
    assert out["accuracy"].value_a == skm.accuracy_score(y, a >= threshold)
    per_row = {
        "brier": ((a - y) ** 2, (b - y) ** 2),
        "accuracy": ((a >= threshold) == y, (b >= threshold) == y),
    }
    for metric, (la, lb) in per_row.items():
        r = out[metric]
        d = lb.astype(float) - la
        assert r.difference == pytest.approx(d.mean(), abs=1e-15)
        if r.se == 0:
            assert r.p_value == (1.0 if r.difference == 0 else 0.0)
            continue
        if np.std(d) < 1e-12:  # constant up to rounding: the t statistic is noise
            continue
        t = stats.ttest_rel(lb.astype(float), la.astype(float))
        ci = t.confidence_interval(0.9)
        assert r.p_value == pytest.approx(t.pvalue, rel=1e-9)
        assert (r.ci_low, r.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_paired_t_with_no_spread() -> None:
    same = paired_differences([0, 1, 1], [0.2, 0.7, 0.9], [0.2, 0.7, 0.9])
    assert same["brier"].p_value == 1.0
    assert same["brier"].ci_low == 0.0
    flip = paired_differences([0, 1], [0.75, 0.25], [0.25, 0.75])
    assert (flip["accuracy"].difference, flip["accuracy"].p_value) == (1.0, 0.0)
    one = paired_differences([1], [0.2], [0.9])
    assert math.isnan(one["brier"].p_value)
    assert one["brier"].to_dict()["se"] is None


def _sk_auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(skm.roc_auc_score(y, s)) if 0 < y.sum() < len(y) else math.nan


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("roc_auc", _sk_auc),
        ("log_loss", lambda y, s: float(skm.log_loss(y, s, labels=[0, 1]))),
        ("brier", lambda y, s: float(skm.brier_score_loss(y, s, pos_label=1))),
        ("accuracy", lambda y, s: float(skm.accuracy_score(y, s >= 0.5))),
    ],
)
def test_bootstrap_vectorised_equals_one_resample_at_a_time(name: str, reference: object) -> None:
    rng = np.random.default_rng(5)
    y = rng.random(12) < 0.3  # small: some resamples have one class
    a, b = rng.random(12), np.clip(y * 0.5 + rng.random(12) * 0.5, 0, 1)
    fast = paired_bootstrap(y, a, b, name, n_resamples=300, seed=9)  # type: ignore[arg-type]
    slow = paired_bootstrap(y, a, b, reference, n_resamples=300, seed=9)  # type: ignore[arg-type]
    assert fast.resamples == slow.resamples
    for field in ("value_a", "value_b", "difference", "se", "ci_low", "ci_high", "p_value"):
        assert getattr(fast, field) == pytest.approx(getattr(slow, field), rel=1e-9, abs=1e-12)
    assert paired_bootstrap(y, a, b, name, n_resamples=300, seed=9) == fast  # type: ignore[arg-type]


def test_bootstrap_finds_a_clear_difference_and_chunks() -> None:
    rng = np.random.default_rng(8)
    n = 3000
    y = rng.random(n) < 0.4
    a = np.clip(0.4 + 0.1 * (y - 0.4) + rng.normal(0, 0.1, n), 0, 1)
    b = np.clip(0.4 + 0.4 * (y - 0.4) + rng.normal(0, 0.1, n), 0, 1)
    r = paired_bootstrap(y, a, b, "roc_auc", n_resamples=1500, seed=1)  # several chunks
    assert r.resamples == 1500
    assert r.ci_low > 0
    assert r.p_value == pytest.approx(2 / 1501)
    assert r.difference == pytest.approx(skm.roc_auc_score(y, b) - skm.roc_auc_score(y, a))
    assert r.to_dict()["method"] == "bootstrap"


def test_invalid_inputs() -> None:
    with pytest.raises(SchemaError, match="score_b"):
        delong_test([0, 1], [0.1, 0.2], [0.3])
    with pytest.raises(SchemaError, match="y_score"):
        paired_differences([0, 1], [0.1, 1.2], [0.3, 0.4])
    with pytest.raises(ConfigError, match="metric"):
        paired_bootstrap([0, 1], [0.1, 0.2], [0.3, 0.4], "f1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="n_resamples"):
        paired_bootstrap([0, 1], [0.1, 0.2], [0.3, 0.4], "brier", n_resamples=0)
    with pytest.raises(ConfigError, match="alpha"):
        delong_test([0, 1], [0.1, 0.2], [0.3, 0.4], alpha=0)
