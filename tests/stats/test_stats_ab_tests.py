"""Fixed-horizon tests: the golden values, statsmodels' two-proportion z tests and SciPy's
Welch t test and χ² goodness of fit on random inputs, JSON results, degenerate inputs
and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    confint_proportions_2indep,
    proportions_ztest,
)
from statsmodels.stats.proportion import (
    test_proportions_2indep as sm_proportions_2indep,
)

from prodml.core.errors import ConfigError, SchemaError
from prodml.stats._ab_tests import (
    SRM_THRESHOLD,
    normal_test,
    sample_ratio_mismatch,
    two_proportion_ztest,
    welch_ttest,
    welch_ttest_from_stats,
)

ALTERNATIVES = st.sampled_from(["two-sided", "greater", "less"])
SM_ALTERNATIVE = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}


@st.composite
def arms(draw: st.DrawFn) -> tuple[int, int, int, int]:
    n_c, n_t = draw(st.integers(2, 10**6)), draw(st.integers(2, 10**6))
    x_c, x_t = draw(st.integers(1, n_c - 1)), draw(st.integers(1, n_t - 1))
    return x_c, n_c, x_t, n_t


# -- two proportions ------------------------------------------------------------------


def test_golden_pooled_ztest() -> None:
    r = two_proportion_ztest(1000, 10_000, 1100, 10_000)
    assert round(r.pvalue, 7) == 0.0210752
    assert r.estimate == pytest.approx(0.01)
    assert r.df == math.inf


@settings(max_examples=200, deadline=None)
@given(arms(), ALTERNATIVES, st.sampled_from([0.01, 0.05, 0.1]))
def test_pooled_ztest_matches_statsmodels(
    counts: tuple[int, int, int, int], alternative: str, alpha: float
) -> None:
    x_c, n_c, x_t, n_t = counts
    r = two_proportion_ztest(x_c, n_c, x_t, n_t, alpha=alpha, alternative=alternative)  # type: ignore[arg-type]
    z, p = proportions_ztest([x_t, x_c], [n_t, n_c], alternative=SM_ALTERNATIVE[alternative])
    assert r.statistic == pytest.approx(float(z), rel=1e-9, abs=1e-12)
    assert r.pvalue == pytest.approx(float(p), rel=1e-9, abs=1e-300)


@settings(max_examples=200, deadline=None)
@given(arms(), ALTERNATIVES, st.sampled_from([0.01, 0.05, 0.1]))
def test_unpooled_ztest_and_interval_match_statsmodels(
    counts: tuple[int, int, int, int], alternative: str, alpha: float
) -> None:
    x_c, n_c, x_t, n_t = counts
    r = two_proportion_ztest(x_c, n_c, x_t, n_t, pooled=False, alpha=alpha, alternative=alternative)  # type: ignore[arg-type]
    sm = sm_proportions_2indep(
        x_t, n_t, x_c, n_c, method="wald", alternative=SM_ALTERNATIVE[alternative]
    )
    assert r.statistic == pytest.approx(float(sm.statistic), rel=1e-9, abs=1e-12)
    assert r.pvalue == pytest.approx(float(sm.pvalue), rel=1e-9, abs=1e-300)
    level = alpha if alternative == "two-sided" else 2 * alpha
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="wald", alpha=level)
    if alternative != "less":
        assert r.ci_low == pytest.approx(float(low), rel=1e-9, abs=1e-12)
    if alternative != "greater":
        assert r.ci_high == pytest.approx(float(high), rel=1e-9, abs=1e-12)
    # the interval excludes 0 exactly when the (unpooled) test rejects
    if abs(r.pvalue - alpha) > 1e-9:
        assert (r.pvalue < alpha) == (not r.ci_low <= 0 <= r.ci_high)


def test_ztest_without_information_is_nan_and_json_ready() -> None:
    r = two_proportion_ztest(0, 100, 0, 50)
    assert math.isnan(r.pvalue)
    assert math.isnan(r.statistic)
    data = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert data["pvalue"] is None
    assert data["df"] is None
    assert data["estimate"] == 0.0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((5, 0, 1, 10), "n_control"),
        ((11, 10, 1, 10), "successes"),
        ((-1, 10, 1, 10), "successes_control"),
        ((1.5, 10, 1, 10), "successes_control"),
    ],
)
def test_ztest_rejects_bad_counts(args: tuple[float, ...], field: str) -> None:
    with pytest.raises(SchemaError, match=field):
        two_proportion_ztest(*args)  # type: ignore[arg-type]


def test_bad_alpha_and_alternative() -> None:
    with pytest.raises(ConfigError, match="alpha"):
        two_proportion_ztest(1, 10, 2, 10, alpha=1.5)
    with pytest.raises(ConfigError, match="alternative"):
        two_proportion_ztest(1, 10, 2, 10, alternative="larger")  # type: ignore[arg-type]


# -- Welch ----------------------------------------------------------------------------


def test_golden_welch() -> None:
    r = welch_ttest_from_stats(
        mean_control=11,
        sd_control=3,
        n_control=60,
        mean_treatment=10,
        sd_treatment=2,
        n_treatment=50,
    )
    assert round(r.statistic, 6) == -2.085144
    assert round(r.df, 4) == 103.3267
    assert round(r.pvalue, 7) == 0.0395205
    assert r.estimate == -1.0
    assert r.ci_high < 0


stats_arms = st.tuples(st.floats(-100, 100), st.floats(0.01, 50), st.integers(2, 10_000))


@settings(max_examples=200, deadline=None)
@given(stats_arms, stats_arms, ALTERNATIVES)
def test_welch_from_stats_matches_scipy(
    c: tuple[float, float, int], t: tuple[float, float, int], alternative: str
) -> None:
    r = welch_ttest_from_stats(
        mean_control=c[0],
        sd_control=c[1],
        n_control=c[2],
        mean_treatment=t[0],
        sd_treatment=t[1],
        n_treatment=t[2],
        alternative=alternative,  # type: ignore[arg-type]
    )
    ref = sps.ttest_ind_from_stats(*t, *c, equal_var=False, alternative=alternative)
    assert r.statistic == pytest.approx(float(ref.statistic), rel=1e-9, abs=1e-12)
    assert r.pvalue == pytest.approx(float(ref.pvalue), rel=1e-8, abs=1e-300)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60),
    st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60),
    ALTERNATIVES,
    st.sampled_from([0.01, 0.05, 0.2]),
)
def test_welch_from_samples_matches_scipy(
    control: list[float], treatment: list[float], alternative: str, alpha: float
) -> None:
    c, t = np.array(control), np.array(treatment)
    if c.std() < 1e-6 * max(1.0, abs(c).max()) or t.std() < 1e-6 * max(1.0, abs(t).max()):
        return  # (near-)constant samples: rounding noise, not statistics
    r = welch_ttest(c, t, alpha=alpha, alternative=alternative)  # type: ignore[arg-type]
    ref = sps.ttest_ind(t, c, equal_var=False, alternative=alternative)
    ci = ref.confidence_interval(1 - alpha)
    assert r.statistic == pytest.approx(float(ref.statistic), rel=1e-8)
    assert r.df == pytest.approx(float(ref.df), rel=1e-9)
    assert r.pvalue == pytest.approx(float(ref.pvalue), rel=1e-7, abs=1e-300)
    assert (r.ci_low, r.ci_high) == pytest.approx((float(ci.low), float(ci.high)), rel=1e-8)


def test_welch_errors() -> None:
    with pytest.raises(SchemaError, match="control"):
        welch_ttest([1.0], [1.0, 2.0])
    with pytest.raises(SchemaError, match="treatment"):
        welch_ttest([1.0, 2.0], [1.0, math.nan])
    with pytest.raises(SchemaError, match="sd_treatment"):
        welch_ttest_from_stats(
            mean_control=0,
            sd_control=1,
            n_control=5,
            mean_treatment=0,
            sd_treatment=-1,
            n_treatment=5,
        )


def test_normal_test_one_sided_interval_is_open_on_one_side() -> None:
    up = normal_test(1.0, 0.5, alternative="greater")
    down = normal_test(1.0, 0.5, alternative="less")
    assert up.ci_high == math.inf
    assert down.ci_low == -math.inf
    assert up.pvalue + down.pvalue == pytest.approx(1.0)
    assert up.ci_low == pytest.approx(1.0 - 0.5 * float(sps.norm.isf(0.05)))


# -- sample-ratio mismatch ------------------------------------------------------------


def test_golden_srm() -> None:
    r = sample_ratio_mismatch([50_000, 50_500])
    assert round(r.pvalue, 6) == 0.114749
    assert not r.mismatch
    assert r.threshold == SRM_THRESHOLD == 0.001
    assert r.expected == (50_250.0, 50_250.0)
    assert r.df == 1
    assert json.loads(json.dumps(r.to_dict()))["observed"] == [50_000, 50_500]


def test_srm_alarm() -> None:
    r = sample_ratio_mismatch([50_000, 51_200])  # p = 0.00016
    assert r.pvalue < 0.001
    assert r.mismatch
    assert not sample_ratio_mismatch([50_000, 51_200], threshold=1e-4).mismatch
    # a 1:2 split observed as intended is no mismatch; observed as 1:1 it is
    assert not sample_ratio_mismatch([1000, 2000], [1, 2]).mismatch
    assert sample_ratio_mismatch([1500, 1500], [1, 2]).mismatch


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 10**6), min_size=2, max_size=6).filter(lambda c: sum(c) > 0),
    st.data(),
)
def test_srm_matches_scipy_chisquare(counts: list[int], data: st.DataObject) -> None:
    weights = data.draw(st.lists(st.floats(0.1, 10), min_size=len(counts), max_size=len(counts)))
    r = sample_ratio_mismatch(counts, weights)
    w = np.array(weights)
    expected = sum(counts) * w / w.sum()
    ref = sps.chisquare(counts, expected)
    assert r.statistic == pytest.approx(float(ref.statistic), rel=1e-9, abs=1e-12)
    assert r.pvalue == pytest.approx(float(ref.pvalue), rel=1e-8, abs=1e-300)
    assert r.mismatch == (r.pvalue < 0.001)


def test_srm_edge_cases_and_errors() -> None:
    empty = sample_ratio_mismatch([0, 0])
    assert math.isnan(empty.pvalue)
    assert not empty.mismatch
    assert json.dumps(empty.to_dict(), allow_nan=False)
    with pytest.raises(SchemaError, match="observed"):
        sample_ratio_mismatch([10])
    with pytest.raises(SchemaError, match="observed"):
        sample_ratio_mismatch([10, -1])
    with pytest.raises(SchemaError, match="observed"):
        sample_ratio_mismatch([10, 1.5])
    with pytest.raises(ConfigError, match="weights"):
        sample_ratio_mismatch([10, 10], [1, 0])
    with pytest.raises(ConfigError, match="weights"):
        sample_ratio_mismatch([10, 10], [1, 1, 1])
