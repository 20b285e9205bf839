"""Delta-method lift and ratio metrics: the closed forms against a direct computation
(the linearised ratio), against large-sample simulations (spread and CI coverage), and
errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from prodml.core.errors import SchemaError
from prodml.stats._delta_method import (
    ratio_metric,
    ratio_metric_test,
    relative_lift,
    relative_lift_from_stats,
)

stats_arms = st.tuples(st.floats(0.5, 100), st.floats(0.01, 50), st.integers(2, 10_000))


@settings(max_examples=200, deadline=None)
@given(stats_arms, stats_arms, st.sampled_from(["two-sided", "greater", "less"]))
def test_lift_matches_the_formula(
    c: tuple[float, float, int], t: tuple[float, float, int], alternative: str
) -> None:
    (m_c, s_c, n_c), (m_t, s_t, n_t) = c, t
    r = relative_lift_from_stats(
        mean_control=m_c,
        sd_control=s_c,
        n_control=n_c,
        mean_treatment=m_t,
        sd_treatment=s_t,
        n_treatment=n_t,
        alternative=alternative,  # type: ignore[arg-type]
    )
    # Var(T / C) ≈ (μ_T / μ_C)² (Var T / μ_T² + Var C / μ_C²)
    ratio = m_t / m_c
    se = abs(ratio) * math.sqrt((s_t**2 / n_t) / m_t**2 + (s_c**2 / n_c) / m_c**2)
    assert r.estimate == pytest.approx(ratio - 1, rel=1e-12, abs=1e-15)
    assert r.std_error == pytest.approx(se, rel=1e-10)
    z = (ratio - 1) / se
    p = {"two-sided": 2 * norm.sf(abs(z)), "greater": norm.sf(z), "less": norm.cdf(z)}
    assert r.pvalue == pytest.approx(float(p[alternative]), rel=1e-9, abs=1e-300)


def test_lift_simulation_spread_and_coverage() -> None:
    rng = np.random.default_rng(7)
    reps, n = 2000, 2000
    control = rng.exponential(10.0, size=(reps, n))  # skewed, like revenue
    treatment = rng.exponential(10.5, size=(reps, n))
    lifts = treatment.mean(axis=1) / control.mean(axis=1) - 1
    results = [relative_lift(control[i], treatment[i]) for i in range(reps)]
    mean_se = np.mean([r.std_error for r in results])
    assert mean_se == pytest.approx(lifts.std(ddof=1), rel=0.05)
    covered = np.mean([r.ci_low <= 0.05 <= r.ci_high for r in results])
    assert 0.93 <= covered <= 0.97


def test_ratio_metric_matches_the_linearisation() -> None:
    rng = np.random.default_rng(1)
    sessions = rng.poisson(3.0, 500) + 1
    clicks = rng.binomial(sessions, 0.3)
    r = ratio_metric(clicks, sessions)
    ratio = clicks.sum() / sessions.sum()
    residual = (clicks - ratio * sessions) / sessions.mean()
    assert r.value == pytest.approx(ratio, rel=1e-12)
    assert r.std_error == pytest.approx(math.sqrt(residual.var(ddof=1) / 500), rel=1e-10)
    assert r.n == 500
    assert r.to_dict()["n"] == 500


def test_ratio_metric_simulation_spread_and_coverage() -> None:
    rng = np.random.default_rng(3)
    reps, n = 2000, 1000
    # users differ in click propensity: sessions of one user are correlated
    propensity = rng.beta(2, 5, size=(reps, n))
    sessions = rng.poisson(4.0, size=(reps, n)) + 1
    clicks = rng.binomial(sessions, propensity)
    truth = 2 / 7  # E[clicks] / E[sessions], propensity independent of sessions
    ratios = clicks.sum(axis=1) / sessions.sum(axis=1)
    results = [ratio_metric(clicks[i], sessions[i]) for i in range(reps)]
    mean_se = np.mean([r.std_error for r in results])
    assert mean_se == pytest.approx(ratios.std(ddof=1), rel=0.05)
    z = norm.isf(0.025)
    covered = np.mean([abs(r.value - truth) <= z * r.std_error for r in results])
    assert 0.93 <= covered <= 0.97
    # the naive per-session binomial error is too small here
    naive = np.sqrt(ratios * (1 - ratios) / sessions.sum(axis=1)).mean()
    assert naive < 0.8 * ratios.std(ddof=1)


def test_ratio_metric_test_difference_and_lift() -> None:
    rng = np.random.default_rng(5)
    s_c, s_t = rng.poisson(3, 800) + 1, rng.poisson(3, 900) + 1
    c_c, c_t = rng.binomial(s_c, 0.30), rng.binomial(s_t, 0.33)
    rc, rt = ratio_metric(c_c, s_c), ratio_metric(c_t, s_t)
    diff = ratio_metric_test(c_c, s_c, c_t, s_t)
    assert diff.estimate == pytest.approx(rt.value - rc.value, rel=1e-12)
    assert diff.std_error == pytest.approx(math.hypot(rc.std_error, rt.std_error), rel=1e-12)
    lift = ratio_metric_test(c_c, s_c, c_t, s_t, relative=True, alternative="greater")
    assert lift.estimate == pytest.approx(rt.value / rc.value - 1, rel=1e-12)
    expected = (rt.value / rc.value) * math.hypot(rt.std_error / rt.value, rc.std_error / rc.value)
    assert lift.std_error == pytest.approx(expected, rel=1e-10)
    assert lift.ci_high == math.inf


def test_errors() -> None:
    with pytest.raises(SchemaError, match="control mean"):
        relative_lift([0.0, 0.0], [1.0, 2.0])
    with pytest.raises(SchemaError, match="denominator"):
        ratio_metric([1, 2, 3], [1, 2])
    with pytest.raises(SchemaError, match="denominator"):
        ratio_metric([1, 2], [0, 0])
    with pytest.raises(SchemaError, match="numerator"):
        ratio_metric([1], [1])
    with pytest.raises(SchemaError, match="n_control"):
        relative_lift_from_stats(
            mean_control=1,
            sd_control=1,
            n_control=0,
            mean_treatment=1,
            sd_treatment=1,
            n_treatment=5,
        )
