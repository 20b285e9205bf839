"""Holm and BH adjustment against statsmodels' multipletests on hypothesis inputs (ties,
zeros and ones included), NaN handling, and the explicit-family wrapper."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from prodml.core.errors import ConfigError, SchemaError
from prodml.stats._multiple_testing import adjust_family, benjamini_hochberg, holm

pvalue = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.01, 0.025, 0.05, 0.5, 1.0]))
pvalues = st.lists(pvalue, min_size=1, max_size=40)
alphas = st.sampled_from([0.01, 0.05, 0.1, 0.2])


@pytest.fixture(autouse=True)
def _no_full_collections(monkeypatch: pytest.MonkeyPatch) -> None:
    """statsmodels' Holm runs ``gc.collect()`` on every call: with a large heap
    (the whole suite's, in one process) each call takes up to a second and the
    property tests minutes. Collections change no number; they are skipped here."""
    monkeypatch.setattr(gc, "collect", lambda generation=2: 0)


#: Subnormal p-values (below 2.2e-308) carry fewer significant digits than ``rtol``
#: asks for: a few units in their last place is equal there.
SUBNORMAL_ULPS = 8 * np.finfo(np.float64).smallest_subnormal


@settings(max_examples=150, deadline=None)
@given(p=pvalues, alpha=alphas)
def test_holm_matches_statsmodels(p: list[float], alpha: float) -> None:
    reject, corrected, _, _ = multipletests(p, alpha=alpha, method="holm")
    adjusted, rejected = holm(p, alpha)
    np.testing.assert_allclose(adjusted, corrected, rtol=1e-15, atol=SUBNORMAL_ULPS)
    assert rejected.tolist() == reject.tolist()


@settings(max_examples=150, deadline=None)
@given(p=pvalues, alpha=alphas)
def test_bh_matches_statsmodels(p: list[float], alpha: float) -> None:
    reject, corrected, _, _ = multipletests(p, alpha=alpha, method="fdr_bh")
    adjusted, rejected = benjamini_hochberg(p, alpha)
    np.testing.assert_allclose(adjusted, corrected, rtol=1e-12, atol=SUBNORMAL_ULPS)
    assert rejected.tolist() == reject.tolist()


@settings(max_examples=100, deadline=None)
@given(p=pvalues, missing=st.lists(st.booleans(), min_size=40, max_size=40))
def test_holm_ignores_nan(p: list[float], missing: list[bool]) -> None:
    arr = np.array(p)
    nan = np.array(missing[: len(p)])
    arr[nan] = np.nan
    adjusted, rejected = holm(arr)
    assert np.isnan(adjusted[nan]).all()
    assert not rejected[nan].any()
    sub_adjusted, sub_rejected = holm(arr[~nan])
    np.testing.assert_array_equal(adjusted[~nan], sub_adjusted)
    np.testing.assert_array_equal(rejected[~nan], sub_rejected)


def test_holm_step_down_stops_at_first_failure() -> None:
    adjusted, rejected = holm([0.01, 0.02, 0.04, 0.001], alpha=0.05)
    # sorted: 0.001·4, 0.01·3, 0.02·2 = 0.04 (step-down continues), 0.04·1 = 0.04
    np.testing.assert_allclose(adjusted, [0.03, 0.04, 0.04, 0.004])
    assert rejected.tolist() == [True, True, True, True]
    assert holm([0.01, 0.04, 0.03])[1].tolist() == [True, False, False]
    assert holm([])[0].size == 0


def test_adjust_family_mapping_and_list() -> None:
    family = adjust_family({"ctr": 0.01, "revenue": None, "latency": 0.04}, method="holm")
    assert family.adjusted == {"ctr": 0.02, "revenue": None, "latency": 0.04}
    assert family.rejected == {"ctr": True, "revenue": False, "latency": True}
    assert family.to_dict()["pvalues"]["revenue"] is None
    bh = adjust_family([0.01, 0.04, math.nan], method="bh", alpha=0.05)
    assert bh.adjusted == {"0": 0.02, "1": 0.04, "2": None}
    with pytest.raises(ConfigError, match="method"):
        adjust_family([0.1], method="bonferroni")  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="pvalues"):
        adjust_family(["x"])  # type: ignore[list-item]
    with pytest.raises(SchemaError, match="pvalues"):
        holm([0.5, 1.5])
    with pytest.raises(ConfigError, match="alpha"):
        holm([0.5], alpha=1.0)
