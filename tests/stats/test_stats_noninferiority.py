"""Non-inferiority: absolute margins against statsmodels (proportions) and SciPy's
Welch test on a shifted mean, relative margins against the delta-method formula, the
mirror between higher- and lower-is-better, the bound agreeing with the decision, and
errors."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    test_proportions_2indep as sm_proportions_2indep,
)

from prodml.core.errors import ConfigError
from prodml.stats._noninferiority import noninferiority_means, noninferiority_proportions


@st.composite
def arms(draw: st.DrawFn) -> tuple[int, int, int, int]:
    n_c, n_t = draw(st.integers(10, 10**6)), draw(st.integers(10, 10**6))
    x_c, x_t = draw(st.integers(1, n_c - 1)), draw(st.integers(1, n_t - 1))
    return x_c, n_c, x_t, n_t


margins = st.floats(0.0, 0.05)
alphas = st.sampled_from([0.01, 0.05, 0.1])


@settings(max_examples=200, deadline=None)
@given(arms(), margins, alphas)
def test_absolute_proportions_match_statsmodels(
    counts: tuple[int, int, int, int], margin: float, alpha: float
) -> None:
    x_c, n_c, x_t, n_t = counts
    r = noninferiority_proportions(x_c, n_c, x_t, n_t, margin=margin, alpha=alpha)
    ref = sm_proportions_2indep(
        x_t, n_t, x_c, n_c, value=-margin, method="wald", alternative="larger"
    )
    assert r.pvalue == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-300)
    assert r.non_inferior == (r.pvalue < alpha)
    assert r.estimate == pytest.approx(x_t / n_t - x_c / n_c, rel=1e-12, abs=1e-15)
    if abs(r.pvalue - alpha) > 1e-9:
        assert r.non_inferior == (r.bound > -margin)


@settings(max_examples=200, deadline=None)
@given(arms(), margins, st.booleans())
@example((1, 330485, 1, 330485), 7.194843683036024e-05, False)  # p ≈ 1e-64
def test_lower_is_better_mirrors_higher_is_better(
    counts: tuple[int, int, int, int], margin: float, relative: bool
) -> None:
    x_c, n_c, x_t, n_t = counts
    # error rates: lower is better; the success rates are their complements
    errors = noninferiority_proportions(x_c, n_c, x_t, n_t, margin=margin, higher_is_better=False)
    successes = noninferiority_proportions(n_c - x_c, n_c, n_t - x_t, n_t, margin=margin)
    assert errors.statistic == pytest.approx(successes.statistic, rel=1e-9, abs=1e-12)
    if successes.pvalue > 1e-12:
        assert errors.pvalue == pytest.approx(successes.pvalue, rel=1e-9)
    else:  # far in the tail the rates' last bits (x/n against 1 - x/n) move p by z·Δz
        assert errors.pvalue < 1e-10
    assert errors.bound == pytest.approx(-successes.bound, rel=1e-9, abs=1e-15)
    if abs(errors.pvalue - 0.05) > 1e-9:
        assert errors.non_inferior == (errors.bound < margin)


stats_arms = st.tuples(st.floats(1, 100), st.floats(0.1, 50), st.integers(2, 10_000))


@settings(max_examples=200, deadline=None)
@given(stats_arms, stats_arms, st.floats(0, 5), st.booleans())
def test_absolute_means_match_scipy_welch(
    c: tuple[float, float, int], t: tuple[float, float, int], margin: float, higher: bool
) -> None:
    r = noninferiority_means(
        mean_control=c[0],
        sd_control=c[1],
        n_control=c[2],
        mean_treatment=t[0],
        sd_treatment=t[1],
        n_treatment=t[2],
        margin=margin,
        higher_is_better=higher,
    )
    # H0 of "not worse by margin" is a one-sided Welch test of the shifted treatment
    shifted = t[0] + margin if higher else t[0] - margin
    alternative = "greater" if higher else "less"
    ref = sps.ttest_ind_from_stats(
        shifted, t[1], t[2], *c, equal_var=False, alternative=alternative
    )
    assert r.pvalue == pytest.approx(float(ref.pvalue), rel=1e-8, abs=1e-300)
    v_c, v_t = c[1] ** 2 / c[2], t[1] ** 2 / t[2]
    df = (v_c + v_t) ** 2 / (v_c**2 / (c[2] - 1) + v_t**2 / (t[2] - 1))
    assert r.df == pytest.approx(df, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(stats_arms, stats_arms, st.floats(0, 0.3))
def test_relative_means_use_the_delta_method(
    c: tuple[float, float, int], t: tuple[float, float, int], margin: float
) -> None:
    r = noninferiority_means(
        mean_control=c[0],
        sd_control=c[1],
        n_control=c[2],
        mean_treatment=t[0],
        sd_treatment=t[1],
        n_treatment=t[2],
        margin=margin,
        relative=True,
    )
    lift = t[0] / c[0] - 1
    se = (t[0] / c[0]) * math.sqrt(t[1] ** 2 / t[2] / t[0] ** 2 + c[1] ** 2 / c[2] / c[0] ** 2)
    assert r.estimate == pytest.approx(lift, rel=1e-12, abs=1e-15)
    assert r.pvalue == pytest.approx(float(sps.norm.sf((lift + margin) / se)), rel=1e-8)
    assert r.bound == pytest.approx(lift - float(sps.norm.isf(0.05)) * se, rel=1e-9, abs=1e-12)
    assert r.df == math.inf
    assert r.relative


def test_guardrail_examples() -> None:
    # latency 2% worse with a 5% relative margin: fine; with 1%: not shown
    kw = {
        "mean_control": 100.0,
        "sd_control": 30.0,
        "n_control": 20_000,
        "mean_treatment": 102.0,
        "sd_treatment": 30.0,
        "n_treatment": 20_000,
        "relative": True,
        "higher_is_better": False,
    }
    assert noninferiority_means(margin=0.05, **kw).non_inferior  # type: ignore[arg-type]
    worse = noninferiority_means(margin=0.01, **kw)  # type: ignore[arg-type]
    assert not worse.non_inferior
    assert worse.bound > 0.01
    data = json.loads(json.dumps(worse.to_dict(), allow_nan=False))
    assert data["df"] is None
    assert data["non_inferior"] is False


def test_errors() -> None:
    with pytest.raises(ConfigError, match="margin"):
        noninferiority_proportions(10, 100, 10, 100, margin=-0.01)
    with pytest.raises(ConfigError, match="alpha"):
        noninferiority_proportions(10, 100, 10, 100, margin=0.01, alpha=0)
