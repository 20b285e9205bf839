"""Sequential tests: group-sequential boundaries against published tables (O'Brien–Fleming
and Pocock, Jennison & Turnbull 2000; Lan–DeMets spending as gsDesign/rpact compute it),
against SciPy's multivariate normal CDF and against Monte Carlo; the mSPRT against a
numerical integration of its mixture likelihood ratio, the test statistics against
statsmodels, and the always-valid guarantees (monotone p-values, nested intervals,
duality, type I error under continuous peeking)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import integrate, stats
from statsmodels.stats.proportion import test_proportions_2indep as proportions_2indep
from statsmodels.stats.weightstats import ttest_ind

from prodml.core.errors import ConfigError, SchemaError
from prodml.stats._sequential import (
    alpha_spent,
    classical_boundaries,
    crossing_probabilities,
    first_crossing,
    mixing_ratio,
    msprt,
    msprt_means,
    msprt_proportions,
    spending_boundaries,
)

EQUAL5 = [0.2, 0.4, 0.6, 0.8, 1.0]


@st.composite
def fractions(draw: st.DrawFn, max_looks: int = 6) -> list[float]:
    k = draw(st.integers(1, max_looks))
    gaps = draw(st.lists(st.floats(0.05, 1.0), min_size=k, max_size=k))
    t = np.cumsum(gaps)
    return (t / t[-1]).tolist()


# -- group-sequential: golden values --------------------------------------------------


def test_classical_obrien_fleming_k5_golden() -> None:
    b = classical_boundaries(EQUAL5, "obrien_fleming", 0.05)
    assert np.round(b.z, 3).tolist() == [4.562, 3.226, 2.634, 2.281, 2.040]
    assert b.spent[-1] == pytest.approx(0.05, abs=1e-9)
    assert round(b.inflation_factor(0.8), 3) == 1.028  # Jennison & Turnbull, Table 2.4


def test_classical_pocock_k5_golden() -> None:
    b = classical_boundaries(EQUAL5, "pocock", 0.05)
    assert np.round(b.z, 3).tolist() == [2.413] * 5  # Jennison & Turnbull, Table 2.1
    assert round(b.inflation_factor(0.8), 3) == 1.229  # Table 2.2


def test_lan_demets_k5_golden() -> None:
    obf = spending_boundaries(EQUAL5, "obrien_fleming", 0.05)
    assert np.round(obf.z, 3).tolist() == [4.877, 3.357, 2.680, 2.290, 2.031]
    pocock = spending_boundaries(EQUAL5, "pocock", 0.05)
    assert np.round(pocock.z, 3).tolist() == [2.438, 2.427, 2.410, 2.397, 2.386]


def test_spending_functions_match_their_formulas() -> None:
    t = np.array([0.1, 0.37, 0.5, 1.0])
    side = 0.025
    per_side = 2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - side / 2) / np.sqrt(t))
    np.testing.assert_allclose(
        alpha_spent(t, "obrien_fleming", 0.05), 2 * per_side, rtol=1e-9, atol=1e-15
    )
    pocock = 0.05 * np.log(1 + (math.e - 1) * t)
    np.testing.assert_allclose(alpha_spent(t, "pocock", 0.05), pocock, rtol=1e-12)
    assert alpha_spent([0.0, 1.5], "pocock").tolist() == [0.0, 0.05]


# -- group-sequential: against independent computations -------------------------------


def _mvn_continue(bounds: NDArray[np.float64], t: NDArray[np.float64]) -> float:
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    mvn = stats.multivariate_normal(np.zeros(len(t)), cov, maxpts=200_000, abseps=1e-8, releps=1e-8)
    return float(mvn.cdf(bounds, lower_limit=-bounds))


@settings(max_examples=20, deadline=None)
@given(fractions(max_looks=3), st.sampled_from(["obrien_fleming", "pocock"]))
def test_spending_boundaries_against_multivariate_normal_cdf(t: list[float], kind: str) -> None:
    b = spending_boundaries(t, kind, 0.05)  # type: ignore[arg-type]
    tt, z = np.array(t), np.array(b.z)
    spent = alpha_spent(tt, kind, 0.05)  # type: ignore[arg-type]
    for k in range(len(t)):
        if math.isfinite(z[k]):
            prob = _mvn_continue(z[: k + 1], tt[: k + 1])
            assert 1 - prob == pytest.approx(spent[k], abs=2e-5)


@settings(max_examples=30, deadline=None)
@given(fractions(), st.sampled_from(["obrien_fleming", "pocock"]), st.floats(0.01, 0.2))
def test_each_look_spends_its_share(t: list[float], kind: str, alpha: float) -> None:
    b = spending_boundaries(t, kind, alpha)  # type: ignore[arg-type]
    up, down = crossing_probabilities(b.z, t)
    np.testing.assert_allclose(up, down, atol=1e-12)
    np.testing.assert_allclose(np.cumsum(up + down), b.spent, atol=1e-7)


@pytest.mark.parametrize(
    ("t", "kind"),
    [(EQUAL5, "obrien_fleming"), ([0.15, 0.5, 0.55, 1.0], "pocock"),
     ([0.3, 0.45, 0.9, 1.0], "obrien_fleming")],
)  # fmt: skip
def test_boundaries_under_h0_by_monte_carlo(t: list[float], kind: str) -> None:
    b = spending_boundaries(t, kind, 0.05)  # type: ignore[arg-type]
    rng = np.random.default_rng(15)
    steps = np.diff(np.array([0.0, *t]))
    score = np.cumsum(rng.standard_normal((400_000, len(t))) * np.sqrt(steps), axis=1)
    z = score / np.sqrt(t)
    crossed = np.abs(z) >= np.array(b.z)
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    per_look = np.array([(first == k).mean() for k in range(len(t))])
    assert crossed.any(axis=1).mean() == pytest.approx(0.05, abs=0.002)
    np.testing.assert_allclose(per_look, np.diff(b.spent, prepend=0.0), atol=0.0015)


def test_crossing_probabilities_under_drift_by_monte_carlo() -> None:
    b = spending_boundaries(EQUAL5)
    drift = 2.8
    up, down = crossing_probabilities(b.z, EQUAL5, drift)
    rng = np.random.default_rng(7)
    t = np.array(EQUAL5)
    score = np.cumsum(rng.standard_normal((200_000, 5)) * np.sqrt(0.2) + drift * 0.2, axis=1)
    z = score / np.sqrt(t)
    crossed = np.abs(z) >= np.array(b.z)
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    for k in range(5):
        mc_up = ((first == k) & (z[:, k] > 0)).mean()
        assert up[k] == pytest.approx(mc_up, abs=0.004)
    assert down.sum() < 1e-4


def test_boundaries_of_early_looks_do_not_depend_on_later_ones() -> None:
    full = spending_boundaries([0.1, 0.3, 0.7, 1.0], "pocock")
    early = spending_boundaries([0.1, 0.3], "pocock")
    np.testing.assert_allclose(early.z, full.z[:2], rtol=1e-9)


def test_nothing_left_to_spend_gives_an_infinite_boundary() -> None:
    b = spending_boundaries([0.5, 1.0, 1.4])
    assert math.isinf(b.z[2])
    assert b.spent[2] == pytest.approx(0.05)
    assert json.loads(json.dumps(b.to_dict()))["z"][2] is None


# -- decision helper ------------------------------------------------------------------


def test_first_crossing() -> None:
    t = [0.2, 0.4, 0.6]
    crossing = first_crossing(t, [1.0, -3.5, 2.9])
    assert (crossing.crossed, crossing.look, crossing.direction) == (True, 1, -1)
    none = first_crossing(t, [4.0, 3.0, 2.0])
    assert (none.crossed, none.look, none.direction) == (False, None, 0)
    exact = first_crossing([1.0], [spending_boundaries([1.0]).z[0]])
    assert exact.crossed
    assert exact.look == 0
    assert json.loads(json.dumps(crossing.to_dict()))["look"] == 1


# -- mSPRT ----------------------------------------------------------------------------


def _mixture_lr(estimate: float, variance: float, tau2: float) -> float:
    """∫ N(θ̂; θ, V) N(θ; 0, τ²) dθ / N(θ̂; 0, V), by quadrature."""
    tau = math.sqrt(tau2)

    def integrand(theta: float) -> float:  # N(θ̂; θ, V) / N(θ̂; 0, V) × N(θ; 0, τ²)
        log_ratio = (estimate**2 - (estimate - theta) ** 2) / (2 * variance)
        return math.exp(log_ratio - theta**2 / (2 * tau2)) / (tau * math.sqrt(2 * math.pi))

    points = [0.0, estimate] if abs(estimate) > 1e-3 else [0.0]
    value, _ = integrate.quad(integrand, -40 * tau, 40 * tau, points=points, limit=200)
    return float(value)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-3, 3), st.floats(0.01, 4)), min_size=1, max_size=8),
    st.floats(0.01, 4),
)
def test_msprt_pvalue_is_the_running_minimum_of_the_inverse_mixture_lr(
    looks: list[tuple[float, float]], tau2: float
) -> None:
    est = np.array([e for e, _ in looks])
    var = np.array([v for _, v in looks])
    assume(np.all(est**2 / var < 400))  # keep the quadrature in range
    r = msprt(est, var, tau2=tau2)
    inv = np.array([1 / _mixture_lr(e, v, tau2) for e, v in looks])
    np.testing.assert_allclose(r.pvalue, np.minimum.accumulate(np.minimum(inv, 1)), rtol=1e-6)
    assert np.all(np.diff(r.pvalue) <= 0)
    assert np.all(np.diff(r.lower) >= 0)
    assert np.all(np.diff(r.upper) <= 0)


@settings(max_examples=60, deadline=None)
@given(st.floats(-3, 3), st.floats(0.01, 4), st.floats(0.01, 4), st.floats(0.01, 0.3))
def test_msprt_interval_ends_are_where_the_lr_reaches_one_over_alpha(
    est: float, var: float, tau2: float, alpha: float
) -> None:
    r = msprt([est], [var], tau2=tau2, alpha=alpha)
    for end in (r.lower[0], r.upper[0]):
        shifted = msprt([est], [var], tau2=tau2, alpha=alpha, null=float(end))
        assert shifted.pvalue[0] == pytest.approx(alpha, rel=1e-8)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(-2, 2), st.floats(0.01, 1)), min_size=1, max_size=10))
def test_msprt_rejects_exactly_when_the_null_leaves_the_sequence(
    looks: list[tuple[float, float]],
) -> None:
    r = msprt([e for e, _ in looks], [v for _, v in looks], tau2=0.5)
    margin = np.minimum(np.abs(r.lower), np.abs(r.upper))
    assume(np.all(margin > 1e-9))
    outside = (r.lower > 0) | (r.upper < 0) | (r.lower > r.upper)
    np.testing.assert_array_equal(r.rejected, outside)


def test_msprt_vectorises_over_leading_axes_and_skips_uninformative_looks() -> None:
    est = np.array([[0.1, 0.3, 0.2], [0.0, -0.5, -0.6]])
    var = np.array([[0.0, 0.02, 0.01], [0.5, 0.02, 0.01]])
    both = msprt(est, var, tau2=0.05)
    for i in range(2):
        one = msprt(est[i], var[i], tau2=0.05)
        np.testing.assert_array_equal(both.pvalue[i], one.pvalue)
    assert both.pvalue[0, 0] == 1.0
    assert math.isinf(both.lower[0, 0])
    assert json.loads(json.dumps(both.to_dict()))["lower"][0][0] is None


def test_msprt_proportions_statistic_matches_statsmodels_wald() -> None:
    na, xa, nb, xb = [400, 900, 1500], [40, 95, 150], [410, 880, 1490], [52, 118, 190]
    r = msprt_proportions(na, xa, nb, xb, tau2=1e-3)
    for k in range(3):
        res = proportions_2indep(xb[k], nb[k], xa[k], na[k], method="wald", compare="diff")
        var = (
            xa[k] / na[k] * (1 - xa[k] / na[k]) / na[k]
            + xb[k] / nb[k] * (1 - xb[k] / nb[k]) / nb[k]
        )
        assert r.estimate[k] / math.sqrt(var) == pytest.approx(res.statistic, rel=1e-12)
        assert r.estimate[k] == pytest.approx(res.diff, rel=1e-12)


def test_msprt_means_statistic_matches_statsmodels_welch() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 300), rng.normal(0.2, 1.5, 260)
    r = msprt_means(
        [300], [a.mean()], [a.var(ddof=1)], [260], [b.mean()], [b.var(ddof=1)], planned_n=500
    )
    stat, _, _ = ttest_ind(b, a, usevar="unequal")
    ratio = mixing_ratio() * (2 / (1 / 300 + 1 / 260)) / 500
    var = a.var(ddof=1) / 300 + b.var(ddof=1) / 260
    assert r.estimate[0] / math.sqrt(var) == pytest.approx(stat, rel=1e-12)
    direct = msprt(r.estimate, [var], tau2=ratio * var)
    assert r.pvalue[0] == pytest.approx(direct.pvalue[0], rel=1e-12)


def test_msprt_type_one_error_under_continuous_peeking() -> None:
    rng = np.random.default_rng(11)
    experiments, looks, batch, p = 2_000, 60, 250, 0.1
    xa = np.cumsum(rng.binomial(batch, p, (experiments, looks)), axis=1)
    xb = np.cumsum(rng.binomial(batch, p, (experiments, looks)), axis=1)
    n = np.broadcast_to(batch * np.arange(1, looks + 1), xa.shape)
    r = msprt_proportions(n, xa, n, xb, planned_n=batch * looks)
    assert r.rejected[:, -1].mean() <= 0.05
    z = (xb - xa) / n / np.sqrt((xa * (n - xa) + xb * (n - xb)) / n**3)
    assert (np.abs(z) > 1.96).any(axis=1).mean() > 0.2  # naive peeking, same data


# -- arguments ------------------------------------------------------------------------


def test_invalid_arguments_name_the_argument() -> None:
    with pytest.raises(ConfigError, match="alpha"):
        spending_boundaries(EQUAL5, alpha=1.5)
    with pytest.raises(ConfigError, match="kind"):
        alpha_spent([0.5], "linear")  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="fractions"):
        spending_boundaries([0.5, 0.5, 1.0])
    with pytest.raises(SchemaError, match="z"):
        first_crossing([0.5, 1.0], [1.0])
    with pytest.raises(ConfigError, match="tau2"):
        msprt([0.1], [0.1], tau2=0.0)
    with pytest.raises(ConfigError, match="planned_n, tau2"):
        msprt_proportions([10], [1], [10], [2])
    with pytest.raises(ConfigError, match="planned_n, tau2"):
        msprt_proportions([10], [1], [10], [2], planned_n=100, tau2=0.1)
    with pytest.raises(ConfigError, match="planned_n"):
        msprt_proportions([10], [1], [10], [2], planned_n=-5)
    with pytest.raises(SchemaError, match="successes"):
        msprt_proportions([10], [11], [10], [2], planned_n=100)
    with pytest.raises(SchemaError, match="variance"):
        msprt([0.1], [-1.0], tau2=1.0)
    with pytest.raises(SchemaError, match="estimate"):
        msprt([math.nan], [1.0], tau2=1.0)
