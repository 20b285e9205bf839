"""Categorical drift profiles: counting across list / NumPy / pandas / Arrow inputs with
nulls, new categories, merge against the profile of the concatenation, JSON round trip,
aligned shares, and the chi-square and G tests against SciPy's chi2_contingency."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps  # type: ignore[import-untyped]

from prodml.stats import CategoricalProfile, aligned, chi_square, g_test

LABELS = st.sampled_from(["a", "b", "c", "dd", "é", "10"])
CELLS = st.one_of(LABELS, st.none(), st.just(math.nan))
COUNTS = st.dictionaries(LABELS, st.integers(1, 400), min_size=1, max_size=6)
DATA = ["b", "a", None, "b", math.nan, "c", "b"]
EXPECTED = (("a", "b", "c"), (1, 3, 1), 5, 2)


def _close(got: float, expected: float) -> bool:
    return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)


def _summary(profile: CategoricalProfile) -> tuple[Any, ...]:
    return profile.categories, profile.counts, profile.n, profile.missing


# -- fitting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column",
    [
        pytest.param(DATA, id="list"),
        pytest.param(iter(DATA), id="iterator"),
        pytest.param(np.array(DATA, dtype=object), id="numpy-object"),
        pytest.param(pd.Series(DATA), id="pd-object"),
        pytest.param(pd.Series(DATA, dtype="category"), id="pd-category"),
        pytest.param(pd.Series(DATA, dtype="string"), id="pd-string"),
        pytest.param(pd.Categorical(DATA), id="pd-Categorical"),
        pytest.param(pa.array(DATA, from_pandas=True), id="arrow"),
        pytest.param(
            pa.chunked_array([pa.array(DATA[:3]), pa.array(DATA[3:], from_pandas=True)]),
            id="arrow-chunked",
        ),
        pytest.param(pa.array(DATA, from_pandas=True).dictionary_encode(), id="arrow-dictionary"),
    ],
)
def test_fit_counts_categories_and_nulls_for_every_column_type(column: Any) -> None:
    profile = CategoricalProfile.fit(column)
    assert _summary(profile) == EXPECTED
    assert profile.rows == 7
    assert all(type(c) is str for c in profile.categories)
    assert all(type(c) is int for c in profile.counts)


def test_fit_keeps_non_string_categories_as_their_str() -> None:
    assert _summary(CategoricalProfile.fit([3, 1, 3, None])) == (("1", "3"), (1, 2), 3, 1)
    assert _summary(CategoricalProfile.fit(np.array(["x", "y", "x"]))) == (
        ("x", "y"),
        (2, 1),
        3,
        0,
    )
    booleans = (("False", "True"), (1, 2), 3, 1)
    assert _summary(CategoricalProfile.fit([True, False, True, None])) == booleans
    assert _summary(CategoricalProfile.fit(pd.Series([True, False, True, None]))) == booleans
    assert _summary(CategoricalProfile.fit(pa.array([True, False, True, None]))) == booleans


def test_fit_counts_nan_as_missing_in_float_columns_of_every_type() -> None:
    # The class contract: ``missing`` counts nulls (None, NA, NaN).
    expected = (("1.5",), (2,), 2, 2)
    assert _summary(CategoricalProfile.fit([1.5, math.nan, None, 1.5])) == expected
    assert _summary(CategoricalProfile.fit(pd.Series([1.5, math.nan, None, 1.5]))) == expected
    assert _summary(CategoricalProfile.fit(pa.array([1.5, math.nan, None, 1.5]))) == expected


@pytest.mark.parametrize(
    "column",
    [[], np.array([], dtype=object), pd.Series([], dtype=object), pa.array([], pa.string())],
)
def test_fit_of_an_empty_column(column: Any) -> None:
    assert _summary(CategoricalProfile.fit(column)) == ((), (), 0, 0)


def test_fit_of_an_all_null_column() -> None:
    for column in ([None, math.nan], pd.Series([None, None], dtype="category"), pa.nulls(2)):
        assert _summary(CategoricalProfile.fit(column)) == ((), (), 0, 2)


def test_from_counts_sorts_and_totals() -> None:
    profile = CategoricalProfile.from_counts({"z": 2, "a": 5}, missing=3)
    assert _summary(profile) == (("a", "z"), (5, 2), 7, 3)
    assert profile == CategoricalProfile.fit(["z", "a", "a", None, "z", "a", None, "a", "a", None])


# -- merge, JSON, alignment -----------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(CELLS, max_size=60), st.lists(CELLS, max_size=60))
def test_merge_equals_the_profile_of_the_concatenation(left: list[Any], right: list[Any]) -> None:
    merged = CategoricalProfile.fit(left).merge(CategoricalProfile.fit(right))
    assert merged == CategoricalProfile.fit(left + right)
    assert merged == CategoricalProfile.fit(pd.Series(left + right, dtype=object))
    nonnull = [v for v in left + right if isinstance(v, str)]
    assert dict(zip(merged.categories, merged.counts, strict=True)) == Counter(nonnull)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.integers(0, 10**12), max_size=8), st.integers(0, 99))
def test_json_round_trips(counts: dict[str, int], missing: int) -> None:
    profile = CategoricalProfile.from_counts(counts, missing)
    assert CategoricalProfile.from_json(profile.to_json()) == profile


def test_new_categories_in_the_current_window_get_their_own_bin() -> None:
    ref = CategoricalProfile.fit(["a"] * 6 + ["b"] * 4)
    cur = CategoricalProfile.fit(["b"] * 5 + ["new"] * 3 + ["a"] * 2 + [None])
    keys, p, q = aligned(ref, cur)
    assert keys == ["a", "b", "new"]
    assert p.tolist() == [0.6, 0.4, 0.0]
    assert q.tolist() == [0.2, 0.5, 0.3]
    keys, p, q = aligned(cur, ref)
    assert keys == ["a", "b", "new"]
    assert q.tolist() == [0.6, 0.4, 0.0]


@settings(max_examples=100, deadline=None)
@given(COUNTS, COUNTS)
def test_aligned_shares_cover_the_union_and_sum_to_one(
    ref_counts: dict[str, int], cur_counts: dict[str, int]
) -> None:
    ref = CategoricalProfile.from_counts(ref_counts, 4)
    cur = CategoricalProfile.from_counts(cur_counts)
    keys, p, q = aligned(ref, cur)
    assert keys == sorted(set(ref_counts) | set(cur_counts))
    assert math.isclose(p.sum(), 1.0)
    assert math.isclose(q.sum(), 1.0)
    for key, share_p, share_q in zip(keys, p, q, strict=True):
        assert share_p == ref_counts.get(key, 0) / ref.n
        assert share_q == cur_counts.get(key, 0) / cur.n


def test_aligned_with_an_empty_side_gives_zero_shares() -> None:
    keys, p, q = aligned(CategoricalProfile.fit([None]), CategoricalProfile.fit(["a"]))
    assert keys == ["a"]
    assert p.tolist() == [0.0]
    assert q.tolist() == [1.0]


# -- tests of homogeneity -------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(COUNTS, COUNTS)
def test_chi_square_and_g_test_match_scipy(
    ref_counts: dict[str, int], cur_counts: dict[str, int]
) -> None:
    ref = CategoricalProfile.from_counts(ref_counts)
    cur = CategoricalProfile.from_counts(cur_counts)
    keys = sorted(set(ref_counts) | set(cur_counts))
    table = np.array([[c.get(k, 0) for k in keys] for c in (ref_counts, cur_counts)])
    if len(keys) < 2:
        assert chi_square(ref, cur) == (0.0, 1.0)
        assert g_test(ref, cur) == (0.0, 1.0)
        return
    pearson = sps.chi2_contingency(table, correction=False)
    likelihood = sps.chi2_contingency(table, correction=False, lambda_="log-likelihood")
    for (statistic, pvalue), expected in (
        (chi_square(ref, cur), pearson),
        (g_test(ref, cur), likelihood),
    ):
        assert _close(statistic, float(expected.statistic)), (statistic, expected.statistic)
        assert _close(pvalue, float(expected.pvalue)), (pvalue, expected.pvalue)
    assert chi_square(ref, cur)[1] == pytest.approx(chi_square(cur, ref)[1], rel=1e-9)


def test_chi_square_detects_a_shift_and_accepts_equal_proportions() -> None:
    ref = CategoricalProfile.from_counts({"a": 500, "b": 300, "c": 200})
    statistic, pvalue = chi_square(ref, CategoricalProfile.from_counts({"a": 50, "b": 30, "c": 20}))
    assert statistic == pytest.approx(0.0, abs=1e-12)
    assert pvalue == pytest.approx(1.0)
    shifted = CategoricalProfile.from_counts({"a": 300, "b": 300, "c": 400})
    assert chi_square(ref, shifted)[1] < 1e-12
    assert g_test(ref, shifted)[1] < 1e-12


@pytest.mark.parametrize("test", [chi_square, g_test])
def test_a_single_shared_category_gives_no_evidence(test: Any) -> None:
    ref, cur = CategoricalProfile.fit(["a"] * 5), CategoricalProfile.fit(["a", "a", None])
    assert test(ref, cur) == (0.0, 1.0)


@pytest.mark.parametrize("test", [chi_square, g_test])
def test_unused_pandas_categories_do_not_break_the_tests(test: Any) -> None:
    # A category dtype declares categories that need not occur; an unused one is no
    # evidence of drift, so the result must equal that of the same data as strings.
    dtype = pd.CategoricalDtype(["a", "b", "c"])
    ref_values, cur_values = ["a"] * 6 + ["b"] * 4, ["a"] * 3 + ["b"] * 7
    ref, cur = (CategoricalProfile.fit(pd.Series(v, dtype=dtype)) for v in (ref_values, cur_values))
    plain_ref, plain_cur = CategoricalProfile.fit(ref_values), CategoricalProfile.fit(cur_values)
    assert test(ref, cur) == pytest.approx(test(plain_ref, plain_cur), rel=1e-12)
    only_a = CategoricalProfile.fit(pd.Series(["a", "a"], dtype=dtype))
    assert test(only_a, only_a) == (0.0, 1.0)
    assert ref == plain_ref  # no zero-count categories


@pytest.mark.parametrize("test", [chi_square, g_test])
def test_zero_counts_from_counts_do_not_break_the_tests(test: Any) -> None:
    # from_counts (SQL, a sketch) may carry a category with count 0 on both sides.
    ref = CategoricalProfile.from_counts({"a": 6, "b": 4, "c": 0})
    cur = CategoricalProfile.from_counts({"a": 3, "b": 7, "c": 0})
    plain_ref = CategoricalProfile.from_counts({"a": 6, "b": 4})
    plain_cur = CategoricalProfile.from_counts({"a": 3, "b": 7})
    assert test(ref, cur) == pytest.approx(test(plain_ref, plain_cur), rel=1e-12)


@pytest.mark.parametrize("test", [chi_square, g_test])
def test_an_empty_side_is_an_error_naming_it(test: Any) -> None:
    full, empty = CategoricalProfile.fit(["a", "b"]), CategoricalProfile.fit([None, math.nan])
    with pytest.raises(ValueError, match="reference sample has no non-null values"):
        test(empty, full)
    with pytest.raises(ValueError, match="current sample has no non-null values"):
        test(full, empty)
