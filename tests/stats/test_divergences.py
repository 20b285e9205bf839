"""Share-vector divergences against SciPy and brute-force formulas (PSI, KL, Jensen–Shannon,
Hellinger, L-infinity): zero on identical shares, symmetry, bounds, smoothing and shape
errors; and Benjamini–Hochberg against SciPy's false_discovery_control, NaN handling and
the step-up rejection rule in exact arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats as sps  # type: ignore[import-untyped]
from scipy.spatial.distance import jensenshannon  # type: ignore[import-untyped]

from prodml.stats import (
    ZERO_SHARE,
    benjamini_hochberg,
    hellinger,
    jensen_shannon,
    kl,
    linf,
    psi,
    shares,
    smooth,
)

SQRT_LN2 = math.sqrt(math.log(2))
ALL = [psi, kl, jensen_shannon, hellinger, linf]
SYMMETRIC = [psi, jensen_shannon, hellinger, linf]


def _close(got: float, expected: float, rel: float = 1e-9, near_zero: float = 1e-12) -> bool:
    return math.isclose(got, expected, rel_tol=rel, abs_tol=near_zero)


@st.composite
def share_pairs(draw: st.DrawFn) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two share vectors over the same bins, from counts (empty bins included; each
    side has at least one row): independent, or the second a ±1 perturbation of the
    first (nearly identical distributions)."""
    k = draw(st.integers(1, 12))
    top = draw(st.sampled_from([1, 10, 1000, 10**6]))
    counts = st.lists(st.integers(0, top), min_size=k, max_size=k).filter(lambda c: sum(c) > 0)
    a = draw(counts)
    if draw(st.booleans()):
        b = draw(counts)
    else:
        steps = draw(st.lists(st.integers(-1, 1), min_size=k, max_size=k))
        b = [max(x + d, 0) for x, d in zip(a, steps, strict=True)]
        if not sum(b):
            b = a
    return shares(a), shares(b)


# -- against SciPy and brute force ----------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(share_pairs())
def test_jensen_shannon_matches_scipy(pair: tuple[NDArray[np.float64], ...]) -> None:
    p, q = pair
    with np.errstate(invalid="ignore"):  # SciPy may take the root of a -1e-17
        expected = float(jensenshannon(p, q))
    expected = 0.0 if math.isnan(expected) else expected
    got = jensen_shannon(p, q)
    # The divergence (the square) carries absolute rounding error ~1e-17 in both, which
    # the root amplifies for nearly identical shares (both are then ~1e-5 off in
    # relative terms from the exact value): compare the divergences absolutely near 0.
    assert _close(got**2, expected**2, 1e-9, 1e-15), (got, expected)
    if expected**2 > 1e-6:
        assert _close(got, expected), (got, expected)


@settings(max_examples=200, deadline=None)
@given(share_pairs())
def test_kl_matches_scipy_entropy_on_smoothed_shares(pair: tuple[NDArray[np.float64], ...]) -> None:
    p, q = pair
    expected = float(sps.entropy(smooth(q), smooth(p)))  # KL(current ‖ reference)
    assert _close(kl(p, q), expected), (kl(p, q), expected)


@settings(max_examples=200, deadline=None)
@given(share_pairs())
def test_hellinger_and_psi_match_brute_force(pair: tuple[NDArray[np.float64], ...]) -> None:
    p, q = (v.tolist() for v in pair)
    sp, sq = sum(p), sum(q)
    brute_h = math.sqrt(
        sum((math.sqrt(a / sp) - math.sqrt(b / sq)) ** 2 for a, b in zip(p, q, strict=True)) / 2
    )
    assert _close(hellinger(*pair), brute_h)
    ps = [a if a > 0 else ZERO_SHARE for a in p]
    qs = [b if b > 0 else ZERO_SHARE for b in q]
    brute_psi = sum((b - a) * math.log(b / a) for a, b in zip(ps, qs, strict=True))
    assert _close(psi(*pair), brute_psi)
    assert linf(*pair) == max(abs(a - b) for a, b in zip(p, q, strict=True))


def test_documented_values() -> None:
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.3, 0.4])
    assert _close(psi(p, q), -0.2 * math.log(0.3 / 0.5) + 0.2 * math.log(0.4 / 0.2))
    assert _close(kl(p, q), 0.3 * math.log(0.3 / 0.5) + 0.4 * math.log(0.4 / 0.2))
    assert _close(jensen_shannon(p, q), float(jensenshannon(p, q)))
    assert linf(p, q) == pytest.approx(0.2)


def test_psi_and_kl_smooth_empty_bins_and_stay_finite() -> None:
    p, q = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    expected_psi = 2 * (1 - ZERO_SHARE) * math.log(1 / ZERO_SHARE)
    assert _close(psi(p, q), expected_psi)
    assert math.isfinite(kl(p, q))
    # Smoothing is not renormalisation: a new category is bounded, not infinite.
    assert smooth(np.array([0.0, 0.25, 0.75])).tolist() == [ZERO_SHARE, 0.25, 0.75]
    assert smooth(np.array([0.0, 1.0]), zero=0.5).tolist() == [0.5, 1.0]


# -- identities, symmetry, bounds -----------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(share_pairs())
def test_every_divergence_is_zero_on_identical_shares(
    pair: tuple[NDArray[np.float64], ...],
) -> None:
    p = pair[0]
    for divergence in ALL:
        assert divergence(p, p.copy()) == 0.0, divergence.__name__


@settings(max_examples=200, deadline=None)
@given(share_pairs())
def test_symmetric_divergences_are_symmetric(pair: tuple[NDArray[np.float64], ...]) -> None:
    p, q = pair
    for divergence in SYMMETRIC:
        assert _close(divergence(p, q), divergence(q, p), 1e-12, 1e-15), divergence.__name__


def test_kl_is_not_symmetric() -> None:
    p, q = np.array([0.9, 0.1]), np.array([0.5, 0.5])
    assert not _close(kl(p, q), kl(q, p))


@settings(max_examples=200, deadline=None)
@given(share_pairs())
def test_divergences_are_nonnegative_and_bounded(pair: tuple[NDArray[np.float64], ...]) -> None:
    p, q = pair
    for divergence in ALL:
        assert divergence(p, q) >= 0.0, divergence.__name__
    assert jensen_shannon(p, q) <= SQRT_LN2 + 1e-12
    assert hellinger(p, q) <= 1.0 + 1e-12
    assert linf(p, q) <= 1.0


def test_disjoint_supports_reach_the_bounds() -> None:
    p, q = np.array([0.5, 0.5, 0.0, 0.0]), np.array([0.0, 0.0, 0.25, 0.75])
    assert _close(jensen_shannon(p, q), SQRT_LN2)
    assert _close(hellinger(p, q), 1.0)
    assert linf(p, q) == 0.75


def test_jensen_shannon_and_hellinger_renormalise_counts() -> None:
    a, b = np.array([2.0, 6.0, 2.0]), np.array([1.0, 1.0, 2.0])
    assert _close(jensen_shannon(a, b), jensen_shannon(shares(a), shares(b)), 1e-12)
    assert _close(hellinger(a, b), hellinger(shares(a), shares(b)), 1e-12)


# -- inputs and errors ----------------------------------------------------------------


@pytest.mark.parametrize("divergence", ALL)
@pytest.mark.parametrize(
    ("p", "q"),
    [([0.5, 0.5], [1.0]), ([[0.5, 0.5]], [[0.5, 0.5]]), (0.5, 0.5)],
    ids=["lengths", "2-D", "scalars"],
)
def test_mismatched_or_non_vector_shares_are_an_error(divergence: Any, p: Any, q: Any) -> None:
    with pytest.raises(ValueError, match="1-D and of one length"):
        divergence(p, q)


@pytest.mark.parametrize("divergence", [jensen_shannon, hellinger])
def test_an_all_zero_side_is_an_error_for_normalising_distances(divergence: Any) -> None:
    with pytest.raises(ValueError, match="sums to 0"):
        divergence([0.0, 0.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="sums to 0"):
        divergence([0.5, 0.5], [0.0, 0.0])


def test_shares_of_counts() -> None:
    assert shares([0, 2, 3]).tolist() == [0.0, 0.4, 0.6]
    assert shares([0, 0]).tolist() == [0.0, 0.0]
    assert shares([]).tolist() == []
    assert linf([], []) == 0.0


# -- Benjamini–Hochberg ---------------------------------------------------------------

PVALUES = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 0.01, 0.05, 0.5]))


def _step_up(pvalues: list[float], alpha: float) -> list[bool]:
    """The BH rule in exact arithmetic: reject the k smallest, k the largest rank with
    p_(k) <= k·alpha/m."""
    m = len(pvalues)
    ordered = sorted(pvalues)
    k = max(
        (i for i in range(1, m + 1) if Fraction(ordered[i - 1]) <= Fraction(alpha) * i / m),
        default=0,
    )
    return [k > 0 and p <= ordered[k - 1] for p in pvalues]


@settings(max_examples=200, deadline=None)
@given(st.lists(PVALUES, min_size=1, max_size=40))
def test_bh_adjusted_pvalues_match_scipy(pvalues: list[float]) -> None:
    adjusted, rejected = benjamini_hochberg(pvalues, alpha=0.1)
    expected = sps.false_discovery_control(np.array(pvalues))
    assert np.allclose(adjusted, expected, rtol=1e-9, atol=1e-12)
    assert np.array_equal(rejected, adjusted <= 0.1)
    assert adjusted.dtype == np.float64
    assert rejected.dtype == np.bool_


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(PVALUES, st.just(math.nan)), max_size=40), st.floats(0.001, 0.5))
def test_bh_ignores_nan_pvalues(pvalues: list[float], alpha: float) -> None:
    p = np.array(pvalues, dtype=np.float64)
    nan = np.isnan(p)
    adjusted, rejected = benjamini_hochberg(p, alpha=alpha)
    assert np.array_equal(np.isnan(adjusted), nan)
    assert not rejected[nan].any()
    valid_adjusted, valid_rejected = benjamini_hochberg(p[~nan], alpha=alpha)
    assert np.array_equal(adjusted[~nan], valid_adjusted)
    assert np.array_equal(rejected[~nan], valid_rejected)
    if (~nan).any():
        expected = sps.false_discovery_control(p[~nan])
        assert np.allclose(adjusted[~nan], expected, rtol=1e-9, atol=1e-12)


ROUND_PVALUES = st.sampled_from([0.0, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0])
ROUND_ALPHAS = st.sampled_from([0.01, 0.05, 0.1, 0.2])


@settings(max_examples=200, deadline=None)
@given(st.lists(ROUND_PVALUES, min_size=1, max_size=12), ROUND_ALPHAS)
def test_bh_rejections_follow_the_step_up_rule(pvalues: list[float], alpha: float) -> None:
    # Round p-values and levels often put p_(k) exactly on k·alpha/m, where the
    # rounding of the adjusted p-value decides.
    assert benjamini_hochberg(pvalues, alpha=alpha)[1].tolist() == _step_up(pvalues, alpha)


@pytest.mark.parametrize(
    ("pvalues", "alpha"),
    [([0.05] * 3, 0.05), ([0.05] * 6, 0.05), ([0.0, 0.0, 0.1], 0.1), ([0.05], 0.05)],
)
def test_bh_rejects_a_pvalue_exactly_on_the_step_up_line(
    pvalues: list[float], alpha: float
) -> None:
    # The largest p-value equals m·alpha/m = alpha: BH rejects all m (and SciPy's
    # adjusted p-values are exactly alpha there).
    assert sps.false_discovery_control(pvalues).max() == alpha
    rejected = benjamini_hochberg(pvalues, alpha=alpha)[1]
    assert rejected.tolist() == _step_up(pvalues, alpha) == [True] * len(pvalues)


def test_bh_documented_example_and_edge_cases() -> None:
    adjusted, rejected = benjamini_hochberg([0.04, 0.001, 0.5, 0.03, 0.01], alpha=0.05)
    assert np.allclose(adjusted, [0.05, 0.005, 0.5, 0.05, 0.025])
    assert rejected.tolist() == [True, True, False, True, True]
    adjusted, rejected = benjamini_hochberg([])
    assert adjusted.shape == rejected.shape == (0,)
    adjusted, rejected = benjamini_hochberg([math.nan, math.nan])
    assert np.isnan(adjusted).all()
    assert not rejected.any()


@pytest.mark.parametrize(
    ("pvalues", "alpha", "message"),
    [
        ([0.1], 0.0, "alpha"),
        ([0.1], 1.0, "alpha"),
        ([-0.1], 0.05, r"\[0, 1\]"),
        ([1.5], 0.05, r"\[0, 1\]"),
        ([[0.1]], 0.05, "1-D"),
    ],
)
def test_bh_rejects_bad_input(pvalues: Any, alpha: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        benjamini_hochberg(pvalues, alpha=alpha)
