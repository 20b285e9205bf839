"""Bayesian A/B comparisons: the golden beta-binomial value, the closed forms against an
independent numerical integral (hypothesis inputs, integer and fractional parameters)
and against Monte Carlo draws from the posteriors with a fixed seed, the tolerance set
from the Monte Carlo standard error."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

from prodml.core.errors import ConfigError, SchemaError
from prodml.stats._bayes import beta_binomial, normal_means, prob_beta_greater

#: Monte Carlo draws per check; tolerances are 5 standard errors of the MC estimate.
DRAWS = 400_000


def _quad(f: Callable[[float], float], a1: float, b1: float) -> float:
    """∫₀¹ f(x)·pdf_Beta(a1, b1)(x) dx, split at A's quantiles so the bulk is resolved; the
    end pieces carry the ``x^(a1−1)`` and ``(1−x)^(b1−1)`` factors as QUADPACK's algebraic
    weights, so a parameter below 1 (an infinite density at 0 or 1) is integrated well.
    QUADPACK's advice on hard pieces is returned (full_output), not warned: the
    comparisons' tolerances say how good the reference is."""
    dist = stats.beta(a1, b1)
    norm = math.exp(-special.betaln(a1, b1))
    first, last = min(float(dist.ppf(0.01)), 0.3), max(float(dist.isf(0.01)), 0.7)
    inner = np.clip(dist.ppf([0.1, 0.5, 0.9]), first, last).tolist()
    cuts = sorted({first, *inner, last})
    total = integrate.quad(
        lambda x: (1 - x) ** (b1 - 1) * f(x) * norm,
        0.0,
        first,
        weight="alg",
        wvar=(a1 - 1, 0),
        full_output=1,
    )[0]
    total += integrate.quad(
        lambda x: x ** (a1 - 1) * f(x) * norm,
        last,
        1.0,
        weight="alg",
        wvar=(0, b1 - 1),
        full_output=1,
    )[0]
    for lo, hi in itertools.pairwise(cuts):
        total += integrate.quad(
            lambda x: float(dist.pdf(x)) * f(x),
            lo,
            hi,
            epsabs=1e-11,
            epsrel=1e-10,
            limit=200,
            full_output=1,
        )[0]
    return total


def _reference_prob(a1: float, b1: float, a2: float, b2: float) -> float:
    return _quad(lambda x: float(stats.beta.sf(x, a2, b2)), a1, b1)


def _reference_loss(a1: float, b1: float, a2: float, b2: float) -> float:
    """E[max(X2 − X1, 0)] = ∫ f1(x) ∫ₓ¹ (t − x) f2(t) dt dx, the inner integral by quad."""

    def inner(x: float) -> float:
        dist = stats.beta(a2, b2)
        return float(
            integrate.quad(lambda t: (t - x) * dist.pdf(t), x, 1.0, epsabs=1e-11, limit=100)[0]
        )

    return _quad(inner, a1, b1)


def test_golden_beta_binomial() -> None:
    r = beta_binomial(100, 1000, 120, 1000)
    assert round(r.prob_b_beats_a, 4) == 0.9232
    assert r.prob_b_beats_a == pytest.approx(_reference_prob(101, 901, 121, 881), abs=1e-9)
    assert r.mean_a == 101 / 1002
    assert r.mean_b == 121 / 1002


integer = st.integers(1, 120)
fraction = st.floats(0.2, 120.0)


@settings(max_examples=60, deadline=None)
@given(a1=integer, b1=integer, a2=integer, b2=integer)
def test_prob_integer_parameters_against_integral(a1: int, b1: int, a2: int, b2: int) -> None:
    assert prob_beta_greater(a1, b1, a2, b2) == pytest.approx(
        _reference_prob(a1, b1, a2, b2), abs=1e-8
    )


@settings(max_examples=30, deadline=None)
@given(a1=fraction, b1=fraction, a2=fraction, b2=st.one_of(fraction, integer))
def test_prob_fractional_parameters_against_integral(
    a1: float, b1: float, a2: float, b2: float
) -> None:
    # 1e-6: the reference itself is only that good where a density is infinite at 1.
    assert prob_beta_greater(a1, b1, a2, b2) == pytest.approx(
        _reference_prob(a1, b1, a2, b2), abs=1e-6
    )


@settings(max_examples=40, deadline=None)
@given(
    a1=st.floats(0.05, 1e6),
    b1=st.floats(0.05, 1e6),
    a2=st.integers(1, 300_000),
    b2=st.floats(0.05, 1e6),
)
def test_integral_against_closed_form(a1: float, b1: float, a2: int, b2: float) -> None:
    """The numerical path (no integer parameter) against Evan Miller's sum, over counts
    up to a million and parameters below 1 on either side."""
    from prodml.stats._bayes import _integrate, _miller

    assert _integrate(a1, b1, a2, b2) == pytest.approx(_miller(a1, b1, a2, b2), abs=1e-7)


@settings(max_examples=8, deadline=None)
@given(sa=st.integers(0, 60), fa=st.integers(0, 60), sb=st.integers(0, 60), fb=st.integers(0, 60))
def test_expected_loss_against_double_integral(sa: int, fa: int, sb: int, fb: int) -> None:
    r = beta_binomial(sa, sa + fa, sb, sb + fb)
    a1, b1, a2, b2 = 1 + sa, 1 + fa, 1 + sb, 1 + fb
    assert r.expected_loss_a == pytest.approx(_reference_loss(a1, b1, a2, b2), abs=1e-8)
    assert r.expected_loss_b == pytest.approx(_reference_loss(a2, b2, a1, b1), abs=1e-8)
    # E[max(B − A, 0)] − E[max(A − B, 0)] = E[B − A]
    assert r.expected_loss_a - r.expected_loss_b == pytest.approx(r.mean_b - r.mean_a, abs=1e-12)


@pytest.mark.parametrize(
    ("counts", "prior"),
    [
        ((100, 1000, 120, 1000), (1.0, 1.0)),
        ((3, 40, 7, 45), (0.5, 0.5)),
        ((40, 90, 35, 80), (2.0, 5.0)),
    ],
)
def test_beta_binomial_against_monte_carlo(
    counts: tuple[int, int, int, int], prior: tuple[float, float]
) -> None:
    sa, na, sb, nb = counts
    r = beta_binomial(sa, na, sb, nb, prior=prior)
    rng = np.random.default_rng(20240515)
    xa = rng.beta(prior[0] + sa, prior[1] + na - sa, DRAWS)
    xb = rng.beta(prior[0] + sb, prior[1] + nb - sb, DRAWS)
    _close_to_mc(r.prob_b_beats_a, (xb > xa).astype(float))
    _close_to_mc(r.expected_loss_a, np.maximum(xb - xa, 0.0))
    _close_to_mc(r.expected_loss_b, np.maximum(xa - xb, 0.0))


def _close_to_mc(value: float, samples: np.ndarray) -> None:
    se = float(samples.std(ddof=1)) / math.sqrt(len(samples))
    assert abs(value - float(samples.mean())) <= 5 * se + 1e-12


def test_large_counts_closed_form_and_integral_agree() -> None:
    from prodml.stats._bayes import _integrate

    exact = prob_beta_greater(100_001, 900_001, 100_501, 899_501)
    assert exact == pytest.approx(_integrate(100_001, 900_001, 100_501, 899_501), abs=1e-9)
    # The normal approximation is excellent at this size.
    ma, mb = 100_001 / 1_000_002, 100_501 / 1_000_002
    sd = math.sqrt(ma * (1 - ma) / 1_000_003 + mb * (1 - mb) / 1_000_003)
    assert exact == pytest.approx(stats.norm.cdf((mb - ma) / sd), abs=1e-3)
    r = beta_binomial(10_000_000, 100_000_000, 10_010_000, 100_000_000, prior=(0.5, 0.5))
    assert 0.99 < r.prob_b_beats_a <= 1.0
    assert r.expected_loss_b >= 0.0


def test_symmetries() -> None:
    assert prob_beta_greater(7, 3, 7, 3) == pytest.approx(0.5, abs=1e-15)
    p = prob_beta_greater(4, 9, 6, 5)
    assert prob_beta_greater(6, 5, 4, 9) == pytest.approx(1 - p, abs=1e-14)
    assert prob_beta_greater(5, 6, 9, 4) == pytest.approx(p, abs=1e-14)  # 1 − X reversed
    r = beta_binomial(0, 0, 0, 0)
    assert (r.prob_b_beats_a, r.mean_a) == (0.5, 0.5)
    assert r.expected_loss_a == pytest.approx(1 / 6, abs=1e-15)  # E[max(U2 − U1, 0)]
    assert set(r.to_dict()) == {
        "prob_b_beats_a",
        "expected_loss_a",
        "expected_loss_b",
        "mean_a",
        "mean_b",
    }


@pytest.mark.parametrize("prior", [None, (10.5, 0.25)])
def test_normal_means_against_monte_carlo(prior: tuple[float, float] | None) -> None:
    r = normal_means(10.0, 4.0, 50, 10.4, 9.0, 60, prior=prior)
    if prior is None:
        ma, va, mb, vb = 10.0, 4.0 / 50, 10.4, 9.0 / 60
    else:  # conjugate update written as a weighted average with shrinkage weight w
        wa, wb = 0.25 / (0.25 + 4.0 / 50), 0.25 / (0.25 + 9.0 / 60)
        ma, mb = wa * 10.0 + (1 - wa) * 10.5, wb * 10.4 + (1 - wb) * 10.5
        va, vb = wa * 4.0 / 50, wb * 9.0 / 60
    assert (r.mean_a, r.mean_b) == (pytest.approx(ma, abs=1e-12), pytest.approx(mb, abs=1e-12))
    rng = np.random.default_rng(7)
    xa = rng.normal(ma, math.sqrt(va), DRAWS)
    xb = rng.normal(mb, math.sqrt(vb), DRAWS)
    _close_to_mc(r.prob_b_beats_a, (xb > xa).astype(float))
    _close_to_mc(r.expected_loss_a, np.maximum(xb - xa, 0.0))
    _close_to_mc(r.expected_loss_b, np.maximum(xa - xb, 0.0))
    assert r.expected_loss_a - r.expected_loss_b == pytest.approx(mb - ma, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    mean=st.floats(-100, 100),
    gap=st.floats(-5, 5),
    var=st.floats(0.01, 50),
    n=st.integers(1, 10_000),
)
def test_normal_means_expected_loss_identity(mean: float, gap: float, var: float, n: int) -> None:
    r = normal_means(mean, var, n, mean + gap, var * 2, n)
    assert 0.0 <= r.prob_b_beats_a <= 1.0
    assert r.expected_loss_a >= 0
    assert r.expected_loss_b >= -1e-12
    assert r.expected_loss_a - r.expected_loss_b == pytest.approx(r.mean_b - r.mean_a, abs=1e-9)


def test_invalid_arguments_name_the_field() -> None:
    with pytest.raises(SchemaError, match="successes_a"):
        beta_binomial(5, 4, 1, 10)
    with pytest.raises(SchemaError, match="trials_b"):
        beta_binomial(1, 4, 1, -1)
    with pytest.raises(ConfigError, match=r"prior\[1\]"):
        beta_binomial(1, 4, 1, 4, prior=(1.0, 0.0))
    with pytest.raises(ConfigError, match="a2"):
        prob_beta_greater(1, 1, math.nan, 1)
    with pytest.raises(SchemaError, match="n_b"):
        normal_means(0.0, 1.0, 5, 0.0, 1.0, 0)
    with pytest.raises(SchemaError, match="variance_a"):
        normal_means(0.0, -1.0, 5, 0.0, 1.0, 5)
