"""CUPED: the adjusted difference and θ against OLS (NumPy lstsq on random inputs,
statsmodels once), the variance reduction against the within-arm correlation and a
simulation, the degenerate covariate, JSON results and errors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml.core.errors import SchemaError
from prodml.stats._ab_tests import welch_ttest
from prodml.stats._cuped import cuped


def _ols(yc: np.ndarray, xc: np.ndarray, yt: np.ndarray, xt: np.ndarray) -> Any:
    y = np.concatenate([yc, yt])
    x = np.concatenate([xc, xt])
    treated = np.concatenate([np.zeros(len(yc)), np.ones(len(yt))])
    design = np.column_stack([np.ones(len(y)), treated, x - x.mean()])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coef


@settings(max_examples=200, deadline=None)
@given(
    st.integers(3, 80),
    st.integers(3, 80),
    st.floats(-3, 3),
    st.floats(-2, 2),
    st.floats(0, 2),
    st.integers(0, 2**32 - 1),
)
def test_adjusted_difference_is_the_ols_treatment_coefficient(
    n_c: int, n_t: int, slope: float, effect: float, shift: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    xc, xt = rng.normal(0, 1, n_c), rng.normal(shift, 1, n_t)  # unlucky covariate balance
    yc = slope * xc + rng.normal(0, 1, n_c)
    yt = slope * xt + effect + rng.normal(0, 1, n_t)
    res = cuped(yc, xc, yt, xt)
    coef = _ols(yc, xc, yt, xt)
    scale = max(1.0, float(np.abs(coef).max()))
    assert res.adjusted_mean_treatment - res.adjusted_mean_control == pytest.approx(
        coef[1], abs=1e-9 * scale
    )
    assert res.test.estimate == pytest.approx(coef[1], abs=1e-9 * scale)
    assert res.theta == pytest.approx(coef[2], abs=1e-9 * scale)
    # the variance removed is the squared pooled within-arm correlation
    dx = np.concatenate([xc - xc.mean(), xt - xt.mean()])
    dy = np.concatenate([yc - yc.mean(), yt - yt.mean()])
    rho = (dx @ dy) / np.sqrt((dx @ dx) * (dy @ dy))
    assert res.variance_reduction == pytest.approx(rho**2, abs=1e-10)
    assert res.mean_control == pytest.approx(yc.mean())


def test_matches_statsmodels_ols() -> None:
    rng = np.random.default_rng(11)
    xc, xt = rng.gamma(2, 5, 300), rng.gamma(2, 5, 350)
    yc = 0.8 * xc + rng.normal(0, 3, 300)
    yt = 0.8 * xt + 1.5 + rng.normal(0, 3, 350)
    x = np.concatenate([xc, xt])
    treated = np.r_[np.zeros(300), np.ones(350)]
    design = sm.add_constant(np.column_stack([treated, x - x.mean()]))
    fit = sm.OLS(np.concatenate([yc, yt]), design).fit()
    res = cuped(yc, xc, yt, xt)
    assert res.test.estimate == pytest.approx(fit.params[1], rel=1e-10)
    assert res.theta == pytest.approx(fit.params[2], rel=1e-10)
    # Welch on the adjusted values is close to the OLS standard error at this size
    assert res.test.std_error == pytest.approx(fit.bse[1], rel=0.05)


def test_variance_reduction_in_simulation() -> None:
    rng = np.random.default_rng(2)
    reps, n, rho = 500, 1000, 0.7
    raw, adjusted, reductions = [], [], []
    for _ in range(reps):
        x = rng.normal(size=(2, n))
        y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=(2, n))
        res = cuped(y[0], x[0], y[1], x[1])
        raw.append(res.mean_treatment - res.mean_control)
        adjusted.append(res.test.estimate)
        reductions.append(res.variance_reduction)
    assert np.mean(reductions) == pytest.approx(rho**2, abs=0.01)
    observed = 1 - np.var(adjusted) / np.var(raw)
    assert observed == pytest.approx(rho**2, abs=0.05)
    assert np.mean(adjusted) == pytest.approx(0.0, abs=0.01)  # unbiased


def test_constant_covariate_changes_nothing() -> None:
    yc, yt = [1.0, 2.0, 4.0], [2.0, 5.0, 3.0, 6.0]
    res = cuped(yc, [3.0, 3.0, 3.0], yt, [7.0, 7.0, 7.0, 7.0])
    assert res.theta == 0.0
    assert res.variance_reduction == 0.0
    assert res.test == welch_ttest(yc, yt)
    data = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert data["test"]["estimate"] == pytest.approx(res.test.estimate)


def test_errors() -> None:
    with pytest.raises(SchemaError, match="x_control"):
        cuped([1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(SchemaError, match="y_treatment"):
        cuped([1.0, 2.0], [1.0, 2.0], [1.0], [1.0])
    with pytest.raises(SchemaError, match="x_treatment"):
        cuped([1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, np.inf])
