"""Per-segment and per-day (novelty) effects: each segment against SciPy's Welch test
and statsmodels' Wald test of two proportions, the family adjustment against Holm/BH on
the segment p-values, the bincount sums against a per-segment loop, and the novelty
slope against statsmodels' weighted least squares with the variances taken as known."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats import proportion as smp

from prodml.core.errors import ConfigError, SchemaError
from prodml.stats._multiple_testing import benjamini_hochberg, holm
from prodml.stats._segments import novelty_effects, segment_effects


def _data(seed: int, n: int, segments: int, proportion: bool) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    arm = rng.random(n) < 0.5
    seg = rng.integers(0, segments, n)
    if proportion:
        y = (rng.random(n) < 0.1 + 0.03 * arm + 0.02 * seg).astype(float)
    else:
        y = rng.normal(5 + 0.3 * arm + seg, 1 + seg, n)
    return arm, y, seg


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(20, 400), segments=st.integers(1, 6))
def test_mean_effects_match_scipy_welch(seed: int, n: int, segments: int) -> None:
    arm, y, seg = _data(seed, n, segments, proportion=False)
    r = segment_effects(arm, y, seg, alpha=0.1, method="bh")
    for i, label in enumerate(r.segments):
        b, a = y[(seg == label) & arm], y[(seg == label) & ~arm]
        if len(a) < 2 or len(b) < 2:
            assert np.isnan(r.p_value[i])
            assert np.isnan(r.effect[i])
            continue
        t = stats.ttest_ind(b, a, equal_var=False)
        ci = t.confidence_interval(0.9)
        assert r.effect[i] == pytest.approx(b.mean() - a.mean(), rel=1e-12, abs=1e-12)
        assert r.p_value[i] == pytest.approx(t.pvalue, rel=1e-9, abs=1e-15)
        assert (r.ci_low[i], r.ci_high[i]) == (
            pytest.approx(ci.low, rel=1e-9),
            pytest.approx(ci.high, rel=1e-9),
        )
        assert (r.n_a[i], r.n_b[i]) == (len(a), len(b))
    np.testing.assert_array_equal(r.p_adjusted, benjamini_hochberg(r.p_value, 0.1)[0])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(40, 2000), segments=st.integers(1, 5))
def test_proportion_effects_match_statsmodels_wald(seed: int, n: int, segments: int) -> None:
    arm, y, seg = _data(seed, n, segments, proportion=True)
    r = segment_effects(arm, y, seg, kind="proportion")
    for i, label in enumerate(r.segments):
        b, a = y[(seg == label) & arm], y[(seg == label) & ~arm]
        if len(a) == 0 or len(b) == 0 or r.se[i] == 0:
            continue
        args = (b.sum(), len(b), a.sum(), len(a))
        with np.errstate(divide="ignore", invalid="ignore"):  # its ratio of a zero rate
            test = smp.test_proportions_2indep(*args, method="wald", compare="diff")
            low, high = smp.confint_proportions_2indep(*args, method="wald", compare="diff")
        assert r.p_value[i] == pytest.approx(test.pvalue, rel=1e-9, abs=1e-15)
        assert (r.ci_low[i], r.ci_high[i]) == (pytest.approx(low), pytest.approx(high))
    np.testing.assert_array_equal(r.p_adjusted, holm(r.p_value)[0])


def test_string_segments_edge_cases_and_json() -> None:
    arm = np.array([True, False, True, True, False, False, True])
    y = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    seg = np.array(["a", "a", "b", "b", "b", "c", "c"])
    r = segment_effects(arm.astype(int), y, seg, kind="proportion")
    assert r.segments.tolist() == ["a", "b", "c"]
    # a: 1/1 vs 0/1 — zero standard error, a real difference → p 0; b: 1/2 vs 0/1.
    assert (r.effect[0], r.se[0], r.p_value[0]) == (1.0, 0.0, 0.0)
    assert r.effect[1] == 0.5
    rows = r.to_dict()["segments"]
    assert rows[0]["segment"] == "a"
    assert rows[0]["n_b"] == 1
    means = segment_effects(arm, y, seg)  # a mean needs two rows per arm: all undefined
    assert np.isnan(means.effect).all()
    assert means.to_dict()["segments"][0]["p_value"] is None


def test_invalid_inputs_name_the_argument() -> None:
    with pytest.raises(SchemaError, match="treatment"):
        segment_effects([0, 2], [1.0, 2.0], [0, 0])
    with pytest.raises(SchemaError, match="outcome"):
        segment_effects([0, 1], [1.0, 2.0], [0, 0], kind="proportion")
    with pytest.raises(SchemaError, match="segment"):
        segment_effects([0, 1], [1.0, 2.0], [0])
    with pytest.raises(ConfigError, match="kind"):
        segment_effects([0, 1], [1.0, 2.0], [0, 0], kind="median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="method"):
        segment_effects([0, 1], [1.0, 2.0], [0, 0], method="sidak")  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="event_time"):
        novelty_effects([0, 1], [1.0, 2.0], [10.0, 10.0], [5.0, 20.0])
    with pytest.raises(ConfigError, match="bucket"):
        novelty_effects([0, 1], [1.0, 2.0], [0.0, 0.0], [5.0, 20.0], bucket=0.0)


def test_novelty_per_day_and_slope_against_statsmodels_wls() -> None:
    rng = np.random.default_rng(11)
    n = 6000
    first = rng.uniform(0, 3 * 86_400, n)
    day = rng.integers(0, 7, n)
    event = first + day * 86_400 + rng.uniform(0, 86_400, n)
    arm = rng.random(n) < 0.5
    y = rng.normal(1.0 + arm * (0.6 - 0.08 * day), 1.0, n)  # the effect wears off
    r = novelty_effects(arm, y, first, event, alpha=0.1)
    assert r.days.segments.tolist() == list(range(7))
    same = segment_effects(arm, y, day, alpha=0.1)
    np.testing.assert_array_equal(r.days.effect, same.effect)
    np.testing.assert_array_equal(r.days.p_adjusted, same.p_adjusted)
    x = sm.add_constant(np.arange(7.0))
    fit = sm.WLS(r.days.effect, x, weights=1 / r.days.se**2).fit(cov_type="fixed scale")
    assert r.slope == pytest.approx(fit.params[1], rel=1e-10)
    assert r.slope_se == pytest.approx(fit.bse[1], rel=1e-10)
    assert r.slope_p_value == pytest.approx(fit.pvalues[1], rel=1e-8)
    low, high = fit.conf_int(alpha=0.1)[1]
    assert (r.slope_ci_low, r.slope_ci_high) == (pytest.approx(low), pytest.approx(high))
    assert r.slope < 0
    assert r.slope_p_value < 0.01
    # datetime64 times give the same buckets as seconds
    start = np.datetime64("2024-03-01T00:00:00", "us")
    as_time = novelty_effects(
        arm, y, start + (first * 1e6).astype("timedelta64[us]"),
        start + (event * 1e6).astype("timedelta64[us]"), alpha=0.1,
    )  # fmt: skip
    np.testing.assert_array_equal(as_time.days.effect, r.days.effect)
    assert as_time.to_dict()["slope"] == r.slope


def test_novelty_with_one_day_has_no_trend() -> None:
    r = novelty_effects([0, 1, 0, 1], [1.0, 2.0, 2.0, 4.0], [0.0] * 4, [10.0] * 4)
    assert r.days.effect.tolist() == [1.5]
    assert np.isnan(r.slope)
    assert r.to_dict()["slope_p_value"] is None
