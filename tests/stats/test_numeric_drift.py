"""Numeric drift profiles: Wasserstein and KS against SciPy on exact profiles (both sides
of the 10,000-row exact/asymptotic switch), normed Wasserstein, the compaction bounds,
null handling across NumPy / pandas / Arrow inputs, merge against the profile of the
concatenation, serialisation, quantile bins and the bin-boundary rule."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats as sps  # type: ignore[import-untyped]

from prodml.stats import (
    DEFAULT_RESOLUTION,
    NumericProfile,
    as_float_array,
    binned,
    ks,
    wasserstein,
)

FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
ANY_FLOAT = st.one_of(
    FINITE, st.integers(-3, 3).map(float), st.sampled_from([math.nan, math.inf, -math.inf])
)


def _close(got: float, expected: float, rel: float = 1e-9, near_zero: float = 1e-12) -> bool:
    return math.isclose(got, expected, rel_tol=rel, abs_tol=near_zero)


@st.composite
def samples(draw: st.DrawFn) -> NDArray[np.float64]:
    """A non-empty finite sample: arbitrary floats, small integers (many ties), or a
    seeded continuous / discrete draw of up to 3,000 rows."""
    kind = draw(st.sampled_from(["floats", "integers", "normal", "discrete"]))
    if kind == "floats":
        return np.array(draw(st.lists(FINITE, min_size=1, max_size=50)))
    if kind == "integers":
        return np.array(draw(st.lists(st.integers(-4, 4), min_size=1, max_size=50)), dtype=float)
    size = draw(st.integers(1, 3000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "normal":
        return rng.normal(draw(st.floats(-2, 2)), draw(st.floats(0.1, 10)), size)
    return rng.integers(0, draw(st.integers(1, 30)), size).astype(float)


def _assert_matches_scipy(a: NDArray[np.float64], b: NDArray[np.float64]) -> None:
    with warnings.catch_warnings():
        # SciPy warns (and falls back to its asymptotic p-value) when its exact
        # computation fails, e.g. for equal sizes and a statistic of 1/n; ks() passes
        # the same warning on. Compared here are the values.
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
        _compare_with_scipy(a, b)


def _compare_with_scipy(a: NDArray[np.float64], b: NDArray[np.float64]) -> None:
    ref, cur = NumericProfile.fit(a), NumericProfile.fit(b)
    assert ref.exact
    assert cur.exact
    expected_w = sps.wasserstein_distance(a, b)
    assert _close(wasserstein(ref, cur), expected_w), (wasserstein(ref, cur), expected_w)
    assert _close(wasserstein(cur, ref), expected_w)
    expected = sps.ks_2samp(a, b)  # method="auto"
    statistic, pvalue = ks(ref, cur)
    assert _close(statistic, float(expected.statistic)), (statistic, expected.statistic)
    assert _close(pvalue, float(expected.pvalue)), (pvalue, expected.pvalue)


# -- against SciPy --------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(samples(), samples())
def test_wasserstein_and_ks_match_scipy_on_exact_profiles(
    a: NDArray[np.float64], b: NDArray[np.float64]
) -> None:
    _assert_matches_scipy(a, b)


@pytest.mark.parametrize(
    ("n", "m"),
    [
        (1, 1),
        (1, 5000),
        (3, 10_000),
        (10_000, 10_000),  # largest exact case
        (10_001, 40),  # smallest asymptotic case, very unequal
        (12_000, 9_000),
        (30_000, 25_000),
    ],
)
@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_ks_and_wasserstein_match_scipy_across_exact_asymptotic_boundary(
    n: int, m: int, kind: str
) -> None:
    rng = np.random.default_rng(n * 7 + m)
    if kind == "continuous":
        a, b = rng.normal(0.0, 1.0, n), rng.normal(0.05, 1.1, m)
    else:
        a, b = rng.poisson(5.0, n).astype(float), rng.poisson(5.2, m).astype(float)
    _assert_matches_scipy(a, b)


def test_ks_pvalue_is_small_for_a_clear_shift_and_large_for_none() -> None:
    rng = np.random.default_rng(11)
    ref = NumericProfile.fit(rng.normal(0, 1, 20_000))
    assert ks(ref, NumericProfile.fit(rng.normal(0.2, 1, 15_000)))[1] < 1e-12
    assert ks(ref, NumericProfile.fit(rng.normal(0.0, 1, 15_000)))[1] > 1e-3


def test_normed_wasserstein_divides_by_population_std() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.gamma(2.0, 3.0, 4000), rng.gamma(2.2, 3.0, 3000)
    ref, cur = NumericProfile.fit(a), NumericProfile.fit(b)
    assert _close(ref.std, float(np.std(a)), rel=1e-12)
    assert _close(wasserstein(ref, cur, normed=True), wasserstein(ref, cur) / np.std(a), 1e-12)
    assert _close(wasserstein(ref, cur, normed=True), sps.wasserstein_distance(a, b) / np.std(a))


def test_normed_wasserstein_divides_by_at_least_a_thousandth() -> None:
    # A constant (or nearly constant) reference divides by the documented floor 0.001.
    ref, cur = NumericProfile.fit(np.full(10, 2.0)), NumericProfile.fit(np.array([1.0, 5.0]))
    assert wasserstein(ref, cur) == 2.0
    assert _close(wasserstein(ref, cur, normed=True), 2000.0, 1e-12)
    tight = NumericProfile.fit(np.array([1.0, 1.0002]))  # std 1e-4
    assert _close(wasserstein(tight, cur, normed=True), wasserstein(tight, cur) / 0.001, 1e-12)
    assert wasserstein(ref, ref, normed=True) == 0.0


# -- compaction -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(200, 6000),
    resolution=st.integers(2, 150),
    kind=st.sampled_from(["normal", "lognormal", "ties", "integers"]),
)
def test_compacted_profiles_stay_within_their_bounds(
    seed: int, n: int, resolution: int, kind: str
) -> None:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        a = rng.normal(0, 1, n)
    elif kind == "lognormal":
        a = rng.lognormal(0, 1.5, n)
    elif kind == "ties":  # a point mass of 40% among continuous values
        a = np.where(rng.random(n) < 0.4, 1.0, rng.normal(0, 1, n))
    else:
        a = rng.integers(0, 400, n).astype(float)
    b = rng.normal(0.3, 1.2, 800)
    exact = NumericProfile.fit(a)
    compact = NumericProfile.fit(a, resolution=resolution)
    if len(exact.values) <= resolution:
        assert compact == exact
        assert compact.exact
        return
    assert not compact.exact
    assert int(compact.counts.sum()) == compact.n == n
    assert len(compact.values) <= resolution
    assert np.all(np.diff(compact.values) > 0)
    assert np.all(compact.counts > 0)
    assert exact.min <= compact.values[0]
    assert compact.values[-1] <= exact.max
    # Moments, extremes and counts stay exact.
    assert (compact.mean, compact.std, compact.min, compact.max) == (
        exact.mean, exact.std, exact.min, exact.max,
    )  # fmt: skip
    run = math.ceil(n / resolution) / n  # the widest run's share (1 / resolution if it divides)
    cur = NumericProfile.fit(b)
    assert abs(ks(compact, cur)[0] - ks(exact, cur)[0]) <= run + 1e-12
    assert abs(ks(cur, compact)[0] - ks(cur, exact)[0]) <= run + 1e-12
    spread = exact.max - exact.min
    assert abs(wasserstein(compact, cur) - wasserstein(exact, cur)) <= spread * run * (1 + 1e-9)
    assert wasserstein(compact, exact) <= spread * run * (1 + 1e-9)
    # Both sides compacted: each moves the statistic by at most its own bound.
    both = NumericProfile.fit(b, resolution=resolution)
    assert abs(ks(compact, both)[0] - ks(exact, cur)[0]) <= run + math.ceil(800 / resolution) / 800


def test_compaction_with_the_documented_bound_on_a_large_column() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 50_000), rng.normal(0.1, 1, 20_000)
    exact, compact = NumericProfile.fit(a), NumericProfile.fit(a, resolution=500)
    assert exact.exact
    assert not compact.exact
    assert len(compact.values) == 500
    assert np.all(compact.counts == 100)
    assert compact.counts.sum() == 50_000
    cur = NumericProfile.fit(b)
    assert abs(ks(compact, cur)[0] - ks(exact, cur)[0]) <= 1 / 500 + 1e-12
    bound = (a.max() - a.min()) / 500
    assert abs(wasserstein(compact, cur) - sps.wasserstein_distance(a, b)) <= bound


def test_resolution_zero_keeps_everything_and_default_is_documented() -> None:
    a = np.arange(DEFAULT_RESOLUTION + 10, dtype=float)
    assert not NumericProfile.fit(a).exact
    assert len(NumericProfile.fit(a).values) == DEFAULT_RESOLUTION
    kept = NumericProfile.fit(a, resolution=0)
    assert kept.exact
    assert len(kept.values) == len(a)


# -- inputs, nulls and empty sides ----------------------------------------------------


@pytest.mark.parametrize(
    "column",
    [
        pytest.param(np.array([1.5, np.nan, np.inf, 2.5, -np.inf, 1.5]), id="numpy"),
        pytest.param(np.array([1.5, None, np.inf, 2.5, -np.inf, 1.5], dtype=object), id="object"),
        pytest.param([1.5, None, math.inf, 2.5, -math.inf, 1.5], id="list"),
        pytest.param(
            pd.Series([1.5, pd.NA, np.inf, 2.5, -np.inf, 1.5], dtype="Float64"), id="pd-Float64"
        ),
        pytest.param(pd.Series([1.5, None, np.inf, 2.5, -np.inf, 1.5]), id="pd-float64"),
        pytest.param(
            pd.Series([1.5, None, np.inf, 2.5, -np.inf, 1.5], dtype=object), id="pd-object"
        ),
        pytest.param(pa.array([1.5, None, math.inf, 2.5, -math.inf, 1.5]), id="arrow"),
        pytest.param(
            pa.chunked_array([[1.5, None, math.inf], [2.5, -math.inf, 1.5]]), id="arrow-chunked"
        ),
    ],
)
def test_fit_counts_missing_and_infinite_for_every_column_type(column: Any) -> None:
    profile = NumericProfile.fit(column)
    assert (profile.n, profile.missing, profile.infinite, profile.rows) == (3, 1, 2, 6)
    assert profile.values.tolist() == [1.5, 2.5]
    assert profile.counts.tolist() == [2, 1]
    assert profile.exact
    assert profile.values.dtype == np.float64
    assert _close(profile.mean, float(np.mean([1.5, 2.5, 1.5])), 1e-15)
    assert _close(profile.std, float(np.std([1.5, 2.5, 1.5])), 1e-15)
    assert (profile.min, profile.max) == (1.5, 2.5)


UNSORTED = [3.0, 1.0, 2.0, 5.0, 4.0]


@pytest.mark.parametrize(
    "make",
    [
        np.array,
        list,
        lambda v: np.array(v, dtype=np.int64),
        pd.Series,
        lambda v: pd.Series(v, dtype="Float64"),
        lambda v: pd.Series(v, dtype="float64[pyarrow]"),
        pa.array,
        lambda v: pa.chunked_array([v]),
        lambda v: pa.chunked_array([v[:2], v[2:]]),
        lambda v: pa.array(v, pa.int64()),
    ],
    ids=[
        "numpy", "list", "numpy-int", "pd", "pd-Float64", "pd-arrow", "arrow",
        "arrow-chunked", "arrow-2-chunks", "arrow-int",
    ],
)  # fmt: skip
def test_fit_leaves_its_input_unchanged(make: Any) -> None:
    column = make(UNSORTED)
    profile = NumericProfile.fit(column)
    assert profile.values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    after = column.to_pylist() if hasattr(column, "to_pylist") else list(column)
    assert [float(v) for v in after] == UNSORTED


def test_fit_integer_columns_with_nulls() -> None:
    expected = ([1.0, 3.0], [1, 2], 3, 1)
    for column in (
        pd.Series([1, pd.NA, 3, 3], dtype="Int64"),
        pa.array([1, None, 3, 3]),
        [1, None, 3, 3],
    ):
        profile = NumericProfile.fit(column)
        got = (profile.values.tolist(), profile.counts.tolist(), profile.n, profile.missing)
        assert got == expected


@pytest.mark.parametrize(
    "column",
    [[], np.array([]), np.full(4, np.nan), [None, None], pd.Series([pd.NA], dtype="Float64")],
    ids=["list", "numpy", "all-nan", "all-none", "pd-NA"],
)
def test_empty_and_all_null_columns_give_an_empty_profile(column: Any) -> None:
    profile = NumericProfile.fit(column, bins=5)
    assert profile.n == 0
    assert len(profile.values) == 0
    assert len(profile.counts) == 0
    assert profile.missing == len(column)
    assert profile.infinite == 0
    assert all(math.isnan(v) for v in (profile.mean, profile.std, profile.min, profile.max))
    assert profile.bin_counts.tolist() == [0]


def test_all_infinite_column_has_no_finite_values() -> None:
    profile = NumericProfile.fit([math.inf, -math.inf, math.inf])
    assert (profile.n, profile.missing, profile.infinite) == (0, 0, 3)


@pytest.mark.parametrize("statistic", [ks, wasserstein])
def test_statistics_name_the_empty_side(statistic: Any) -> None:
    full, empty = NumericProfile.fit([1.0, 2.0]), NumericProfile.fit([math.nan, math.inf])
    with pytest.raises(ValueError, match="reference sample has no finite values"):
        statistic(empty, full)
    with pytest.raises(ValueError, match="current sample has no finite values"):
        statistic(full, empty)
    with pytest.raises(ValueError, match="reference"):
        statistic(empty, empty)


def test_as_float_array_rejects_two_dimensional_input() -> None:
    with pytest.raises(ValueError, match="1-D"):
        as_float_array(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="1-D"):
        NumericProfile.fit([[1.0, 2.0]])


# -- merge and serialisation ----------------------------------------------------------


def _assert_same_profile(got: NumericProfile, expected: NumericProfile, scale: float) -> None:
    assert np.array_equal(got.values, expected.values)
    assert np.array_equal(got.counts, expected.counts)
    assert got.counts.dtype == np.int64
    assert (got.n, got.missing, got.infinite, got.exact) == (
        expected.n, expected.missing, expected.infinite, expected.exact,
    )  # fmt: skip
    assert np.array_equal([got.min, got.max], [expected.min, expected.max], equal_nan=True)
    for a, b in ((got.mean, expected.mean), (got.std, expected.std)):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(
            a, b, rel_tol=1e-12, abs_tol=1e-12 * scale
        )


@settings(max_examples=150, deadline=None)
@given(st.lists(ANY_FLOAT, max_size=80), st.lists(ANY_FLOAT, max_size=80))
def test_merge_equals_the_profile_of_the_concatenation(
    left: list[float], right: list[float]
) -> None:
    whole = np.array(left + right, dtype=float)
    finite = whole[np.isfinite(whole)]
    scale = float(np.max(np.abs(finite))) if len(finite) else 1.0
    merged = NumericProfile.fit(left).merge(NumericProfile.fit(right))
    _assert_same_profile(merged, NumericProfile.fit(whole), max(scale, 1.0))
    assert merged.exact


def test_merge_of_partitions_of_a_large_column() -> None:
    rng = np.random.default_rng(9)
    x = np.round(rng.normal(100.0, 15.0, 30_000), 2)
    parts = np.array_split(x, 5)
    merged = NumericProfile.fit(parts[0])
    for part in parts[1:]:
        merged = merged.merge(NumericProfile.fit(part))
    _assert_same_profile(merged, NumericProfile.fit(x), 200.0)


def test_merge_compacts_past_the_resolution_and_keeps_the_bin_count() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 3000), rng.normal(0, 1, 2000)
    ref = NumericProfile.fit(a, bins=8)
    merged = ref.merge(NumericProfile.fit(b), resolution=1000)
    assert not merged.exact
    assert len(merged.values) <= 1000
    assert merged.counts.sum() == merged.n == 5000
    assert len(merged.bin_counts) == 8
    assert merged.bin_counts.sum() == 5000
    assert abs(ks(merged, NumericProfile.fit(np.concatenate([a, b])))[0]) <= 1 / 1000 + 1e-12
    # A compacted side makes the merge inexact even when the union is small.
    small = NumericProfile.fit(np.arange(50.0), resolution=10)
    assert not small.merge(NumericProfile.fit([1.0])).exact


@settings(max_examples=60, deadline=None)
@given(
    st.lists(ANY_FLOAT, max_size=60),
    st.one_of(st.none(), st.integers(1, 12)),
    st.one_of(st.none(), st.integers(1, 20)),
)
def test_to_bytes_round_trips(
    values: list[float], bins: int | None, resolution: int | None
) -> None:
    profile = NumericProfile.fit(values, bins=bins, resolution=resolution)
    data = profile.to_bytes()
    assert isinstance(data, bytes)
    back = NumericProfile.from_bytes(data)
    assert back == profile
    assert back.counts.dtype == np.int64
    assert back.values.dtype == np.float64
    assert type(back.n) is int
    assert type(back.exact) is bool
    if profile.n:
        other = NumericProfile.fit([0.5, 1.0])
        assert wasserstein(back, other) == wasserstein(profile, other)


def test_profiles_compare_by_content_and_are_unhashable() -> None:
    a = NumericProfile.fit([1.0, 2.0, 2.0])
    assert a == NumericProfile.fit(np.array([2.0, 1.0, 2.0]))
    assert a != NumericProfile.fit([1.0, 2.0])
    assert a != NumericProfile.fit([1.0, 2.0, 2.0], bins=2)
    assert a.__eq__("x") is NotImplemented
    with pytest.raises(TypeError):
        hash(a)


# -- bins -----------------------------------------------------------------------------


@pytest.mark.parametrize("bins", [2, 7, 10, 20])
def test_quantile_bins_of_continuous_data_hold_equal_shares(bins: int) -> None:
    x = np.random.default_rng(bins).normal(0, 1, 10_000)
    profile = NumericProfile.fit(x, bins=bins)
    assert len(profile.edges) == bins - 1
    assert np.all(np.diff(profile.edges) > 0)
    assert len(profile.bin_counts) == bins
    assert profile.bin_counts.sum() == 10_000
    shares = profile.bin_counts / profile.n
    assert np.all(np.abs(shares - 1 / bins) <= 2 / profile.n)
    p, q = binned(profile, profile)
    assert np.array_equal(p, q)
    assert math.isclose(p.sum(), 1.0)


def test_quantile_bins_of_discrete_data_merge_repeated_edges() -> None:
    x = np.random.default_rng(1).choice([0.0, 1.0, 2.0], size=5000, p=[0.7, 0.2, 0.1])
    profile = NumericProfile.fit(x, bins=10)
    assert 1 <= len(profile.bin_counts) <= 3
    assert np.all(profile.bin_counts > 0)
    assert profile.bin_counts.sum() == 5000
    assert set(profile.edges.tolist()) <= {1.0, 2.0}
    constant = NumericProfile.fit(np.full(100, 3.0), bins=10)
    assert constant.edges.size == 0
    assert constant.bin_counts.tolist() == [100]


def test_with_bins_rejects_fewer_than_one_bin_and_binned_needs_bins() -> None:
    profile = NumericProfile.fit([1.0, 2.0])
    with pytest.raises(ValueError, match="bins"):
        profile.with_bins(0)
    with pytest.raises(ValueError, match="no bins"):
        binned(profile, profile)
    assert profile.with_bins(1).bin_counts.tolist() == [2]


def test_count_bins_puts_a_value_on_an_edge_in_the_upper_bin() -> None:
    profile = NumericProfile.fit([0.5, 1.0, 1.5, 2.0, 3.0, 3.5, -math.inf, math.nan])
    edges = np.array([1.0, 2.0, 3.0])
    assert profile.count_bins(edges).tolist() == [1, 2, 1, 2]
    assert profile.count_bins(np.empty(0)).tolist() == [6]
    assert NumericProfile.fit([]).count_bins(edges).tolist() == [0, 0, 0, 0]


@settings(max_examples=80, deadline=None)
@given(samples(), samples(), st.integers(1, 15))
def test_binned_shares_sum_to_one_and_follow_the_edges(
    a: NDArray[np.float64], b: NDArray[np.float64], bins: int
) -> None:
    ref = NumericProfile.fit(a, bins=bins)
    p, q = binned(ref, NumericProfile.fit(b))
    assert len(p) == len(q) == len(ref.edges) + 1 <= bins
    assert math.isclose(p.sum(), 1.0)
    assert math.isclose(q.sum(), 1.0)
    brute_p = np.bincount(np.searchsorted(ref.edges, a, side="right"), minlength=len(p))
    brute_q = np.bincount(np.searchsorted(ref.edges, b, side="right"), minlength=len(q))
    assert np.allclose(p, brute_p / len(a), rtol=0, atol=1e-15)
    assert np.allclose(q, brute_q / len(b), rtol=0, atol=1e-15)
    assert len(ref.edges) == 0 or ref.edges[0] > a.min()  # no empty first bin
