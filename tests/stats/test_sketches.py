"""Mergeable sketches: Histogram merge against the histogram of the concatenation and
its edge checks; QuantileSketch moments against NumPy (also merged from partitions),
quantiles by their exact rank, and its profile against the exact one; DistinctCount
against the true distinct count; FrequentItems exactness under capacity and its
guarantees (no false negatives, bounds around the true counts) on a heavy-tailed stream."""

from __future__ import annotations

import math
from collections import Counter
from functools import reduce
from typing import Any

import datasketches as ds
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from prodml.stats import (
    DistinctCount,
    FrequentItems,
    Histogram,
    NumericProfile,
    QuantileSketch,
    ks,
    wasserstein,
)

VALUES = st.lists(
    st.one_of(
        st.floats(-100, 100, allow_nan=False),
        st.integers(-5, 5).map(float),
        st.sampled_from([math.nan, math.inf, -math.inf]),
    ),
    max_size=60,
)
EDGES = st.lists(st.integers(-6, 6).map(float), max_size=6, unique=True).map(sorted)


def _close(got: float, expected: float, rel: float = 1e-9) -> bool:
    return math.isclose(got, expected, rel_tol=rel, abs_tol=1e-12)


# -- Histogram ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(EDGES, VALUES, VALUES)
def test_histogram_merge_equals_the_histogram_of_the_concatenation(
    edges: list[float], left: list[float], right: list[float]
) -> None:
    merged = Histogram.of(edges, np.array(left)).merge(Histogram.of(edges, np.array(right)))
    whole = Histogram.of(edges, np.array(left + right))
    assert merged.counts.tolist() == whole.counts.tolist()
    assert merged.missing == whole.missing == sum(math.isnan(v) for v in left + right)
    assert merged.n == whole.n == len(left + right) - merged.missing
    # Against a brute-force count with the documented rule edges[i-1] <= x < edges[i].
    brute = [0] * (len(edges) + 1)
    for v in left + right:
        if not math.isnan(v):
            brute[sum(e <= v for e in edges)] += 1
    assert whole.counts.tolist() == brute


def test_histogram_update_accumulates_and_accepts_columns_with_nulls() -> None:
    h = Histogram([0.0, 10.0])
    h.update(pd.Series([-1.0, pd.NA, 0.0, 10.0], dtype="Float64"))
    h.update(pa.array([5.0, None, math.inf, -math.inf]))
    h.update([None, 9.99])
    assert h.counts.tolist() == [2, 3, 2]
    assert h.missing == 3
    assert h.n == 7


def test_histogram_merge_requires_equal_edges() -> None:
    with pytest.raises(ValueError, match="different edges"):
        Histogram([0.0, 1.0]).merge(Histogram([0.0, 2.0]))
    with pytest.raises(ValueError, match="different edges"):
        Histogram([0.0, 1.0]).merge(Histogram([0.0, 1.0, 2.0]))


@pytest.mark.parametrize(
    "edges",
    [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0, 1.0], [[0.0, 1.0]], [0.0, math.nan, 1.0], [math.nan]],
    ids=["decreasing", "repeated", "repeated-last", "2-D", "nan-inside", "nan"],
)
def test_histogram_rejects_edges_that_are_not_strictly_increasing(edges: Any) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram(edges)


def test_histogram_rejects_counts_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="expected 3 counts"):
        Histogram([0.0, 1.0], counts=[1, 2])
    assert Histogram([], counts=[4]).n == 4


# -- QuantileSketch -------------------------------------------------------------------


def _rank_errors(
    sketch: QuantileSketch, data: NDArray[np.float64], levels: NDArray[np.float64]
) -> NDArray[np.float64]:
    """How far each level lies outside the exact normalised rank interval of the value
    the sketch returns for it."""
    ordered = np.sort(data)
    values = sketch.quantiles(levels.tolist())
    below = np.searchsorted(ordered, values, side="left") / len(ordered)
    at_or_below = np.searchsorted(ordered, values, side="right") / len(ordered)
    return np.maximum(below - levels, levels - at_or_below).clip(0.0)


def _assert_moments(sketch: QuantileSketch, finite: NDArray[np.float64]) -> None:
    assert sketch.n == len(finite)
    assert _close(sketch.mean, float(np.mean(finite)))
    assert _close(sketch.std, float(np.std(finite)))
    assert (sketch.min, sketch.max) == (float(finite.min()), float(finite.max()))


def test_quantile_sketch_moments_are_exact_also_after_merging_partitions() -> None:
    rng = np.random.default_rng(21)
    x = np.concatenate([rng.lognormal(3.0, 1.0, 60_000), [math.nan] * 5, [math.inf, -math.inf]])
    rng.shuffle(x)
    finite = x[np.isfinite(x)]
    whole = QuantileSketch()
    for chunk in np.array_split(x, 7):
        whole.update(chunk)
    _assert_moments(whole, finite)
    assert (whole.missing, whole.infinite) == (5, 2)
    parts = []
    for chunk in np.array_split(x, 4):
        part = QuantileSketch()
        part.update(chunk)
        parts.append(part)
    merged = reduce(QuantileSketch.merge, parts)
    _assert_moments(merged, finite)
    assert (merged.missing, merged.infinite) == (5, 2)
    assert merged.merge(QuantileSketch()).n == merged.n
    _assert_moments(QuantileSketch().merge(merged), finite)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(-1e3, 1e3, allow_nan=False), max_size=30), max_size=5))
def test_quantile_sketch_moments_match_numpy_for_any_partitioning(parts: list[list[float]]) -> None:
    sketches = []
    for values in parts:
        sketch = QuantileSketch()
        sketch.update(np.array(values))
        sketches.append(sketch)
    merged = reduce(QuantileSketch.merge, sketches, QuantileSketch())
    finite = np.array([v for values in parts for v in values])
    if not len(finite):
        assert merged.n == 0
        assert math.isnan(merged.mean)
        assert math.isnan(merged.std)
        return
    assert merged.n == len(finite)
    scale = max(1.0, float(np.max(np.abs(finite))))
    assert math.isclose(merged.mean, float(np.mean(finite)), rel_tol=1e-9, abs_tol=1e-12 * scale)
    assert math.isclose(merged.std, float(np.std(finite)), rel_tol=1e-9, abs_tol=1e-9 * scale)
    assert (merged.min, merged.max) == (float(finite.min()), float(finite.max()))


def test_quantiles_lie_within_the_rank_error_of_their_exact_rank() -> None:
    rng = np.random.default_rng(8)
    data = np.concatenate([rng.lognormal(0, 1, 80_000), np.full(20_000, 2.0)])  # with a tie
    rng.shuffle(data)
    levels = np.linspace(0.0, 1.0, 101)
    whole = QuantileSketch()
    for chunk in np.array_split(data, 10):
        whole.update(chunk)
    assert 0 < whole.rank_error < 0.02
    assert np.all(_rank_errors(whole, data, levels) <= whole.rank_error)
    parts = [QuantileSketch() for _ in range(4)]
    for part, chunk in zip(parts, np.array_split(data, 4), strict=True):
        part.update(chunk)
    merged = reduce(QuantileSketch.merge, parts)
    assert np.all(_rank_errors(merged, data, levels) <= merged.rank_error)


def test_a_small_stream_is_kept_exactly() -> None:
    data = np.arange(1.0, 101.0)
    sketch = QuantileSketch()
    sketch.update(data)
    assert np.all(_rank_errors(sketch, data, np.linspace(0, 1, 21)) == 0)


def test_quantile_sketch_profile_is_close_to_the_exact_profile() -> None:
    rng = np.random.default_rng(13)
    x = rng.normal(10.0, 2.0, 100_000)
    sketch = QuantileSketch()
    for chunk in np.array_split(x, 5):
        sketch.update(chunk)
    sketch.update([math.nan, math.inf])
    exact = NumericProfile.fit(x)
    profile = sketch.profile(points=1000, bins=10)
    assert not profile.exact
    assert profile.n == int(profile.counts.sum()) == 100_000
    assert (profile.missing, profile.infinite) == (1, 1)
    assert (profile.mean, profile.std, profile.min, profile.max) == (
        sketch.mean,
        sketch.std,
        sketch.min,
        sketch.max,
    )
    assert np.all(np.diff(profile.values) > 0)
    assert wasserstein(exact, profile, normed=True) < 0.05
    assert ks(exact, profile)[0] <= 2 * sketch.rank_error
    assert len(profile.bin_counts) == 10
    assert np.all(np.abs(profile.bin_counts / profile.n - 0.1) <= 2 * sketch.rank_error)


def test_an_empty_quantile_sketch() -> None:
    sketch = QuantileSketch()
    sketch.update([math.nan, None])
    assert (sketch.n, sketch.missing) == (0, 2)
    assert np.isnan(sketch.quantiles([0.1, 0.9])).all()
    assert math.isnan(sketch.std)
    profile = sketch.profile(bins=4)
    assert profile.n == 0
    assert profile.bin_counts.tolist() == [0]


def test_quantile_sketch_serialises_to_a_datasketches_kll() -> None:
    sketch = QuantileSketch()
    sketch.update(np.arange(5000.0))
    restored = ds.kll_doubles_sketch.deserialize(sketch.to_bytes())
    assert restored.n == 5000
    assert (restored.get_min_value(), restored.get_max_value()) == (0.0, 4999.0)


# -- DistinctCount --------------------------------------------------------------------


def test_distinct_count_is_within_its_bounds_also_merged() -> None:
    rng = np.random.default_rng(17)
    values = rng.integers(0, 80_000, 100_000)
    true = len(np.unique(values))
    whole = DistinctCount()
    whole.update(values)
    low, high = whole.bounds(2)
    assert low <= true <= high
    assert abs(whole.estimate - true) / true < 0.04  # 2.5 sigma at lg_k=12
    parts = [DistinctCount() for _ in range(4)]
    for part, chunk in zip(parts, np.array_split(values, 4), strict=True):
        part.update(chunk)
    merged = reduce(DistinctCount.merge, parts)
    low, high = merged.bounds(2)
    assert low <= true <= high
    assert abs(merged.estimate - whole.estimate) / true < 0.04


def test_distinct_count_ignores_nulls_and_repeats() -> None:
    sketch = DistinctCount()
    sketch.update(np.array(["a", None, "b", math.nan, "a"], dtype=object))
    sketch.update(["b", "c"])
    assert round(sketch.estimate) == 3
    assert DistinctCount().estimate == 0.0


# -- FrequentItems --------------------------------------------------------------------


def test_frequent_items_are_exact_under_capacity() -> None:
    rng = np.random.default_rng(3)
    stream = rng.integers(0, 500, 50_000).astype(str)
    sketch = FrequentItems()
    for chunk in np.array_split(stream, 3):
        sketch.update(chunk)
    truth = Counter(stream.tolist())
    assert sketch.counts() == truth
    assert sketch.total == 50_000
    for item, estimate, lower, upper in sketch.items():
        assert estimate == lower == upper == truth[item]
    estimates = [estimate for _, estimate, _, _ in sketch.items()]
    assert estimates == sorted(estimates, reverse=True)


def test_frequent_items_ignore_nulls() -> None:
    sketch = FrequentItems()
    sketch.update(np.array(["x", None, "x", math.nan, "y"], dtype=object))
    assert sketch.counts() == {"x": 2, "y": 1}
    assert sketch.total == 3


@pytest.mark.parametrize("partitions", [1, 4])
def test_frequent_items_guarantees_on_a_heavy_tailed_stream(partitions: int) -> None:
    rng = np.random.default_rng(29)
    stream = rng.zipf(1.3, 200_000)
    stream = stream[stream < 1_000_000].astype(str)
    truth = Counter(stream.tolist())
    assert len(truth) > 10 * 768  # far more distinct items than the sketch tracks
    sketches = [FrequentItems() for _ in range(partitions)]
    for sketch, chunk in zip(sketches, np.array_split(stream, partitions), strict=True):
        for batch in np.array_split(chunk, 3):
            sketch.update(batch)
    sketch = reduce(FrequentItems.merge, sketches)
    assert sketch.total == len(stream)
    assert 0 < sketch.max_error < 0.01 * len(stream)
    reported = {item: (lower, upper) for item, _, lower, upper in sketch.items()}
    heavy = {item for item, count in truth.items() if count > sketch.max_error}
    assert heavy  # the stream does have items above the error bound
    assert heavy <= set(reported)
    for item, (lower, upper) in reported.items():
        assert lower <= truth[item] <= upper
