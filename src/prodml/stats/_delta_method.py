"""Delta-method standard errors for two estimates that are not plain means: the
**relative lift** ``mean_t / mean_c − 1`` and a **ratio metric** ``ΣY / ΣX`` over units
(clicks per session when users are randomised: the sessions of one user are not
independent, so the per-session variance would be too small).

First-order Taylor expansion, with sample (co)variances at ddof 1:

* lift ``L = m_t / m_c − 1``: ``Var L ≈ v_t / m_c² + m_t² v_c / m_c⁴``, where ``v`` is
  the variance of the arm's mean (``sd² / n``);
* ratio ``R = ȳ / x̄``: ``Var R ≈ (s_yy − 2 R s_xy + R² s_xx) / (n x̄²)``.

Both are large-sample approximations: tests use the normal distribution.

>>> lift = relative_lift_from_stats(
...     mean_control=10, sd_control=2, n_control=400,
...     mean_treatment=10.5, sd_treatment=2, n_treatment=400)
>>> round(lift.estimate, 4), round(lift.std_error, 5), round(lift.pvalue, 5)
(0.05, 0.0145, 0.00056)
>>> r = ratio_metric([3, 1, 0, 4], [2, 1, 1, 2])
>>> round(r.value, 4), round(r.std_error, 4)
(1.3333, 0.3741)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from prodml.core.errors import SchemaError
from prodml.stats._ab_tests import (
    Alternative,
    TwoSampleTest,
    check_count,
    check_finite,
    normal_test,
)
from prodml.stats._metrics import finite_floats

__all__ = [
    "RatioEstimate",
    "ratio_metric",
    "ratio_metric_test",
    "relative_lift",
    "relative_lift_from_stats",
]


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio metric ``ΣY / ΣX`` over ``n`` units and its delta-method standard error."""

    value: float
    std_error: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def _lift(m_c: float, v_c: float, m_t: float, v_t: float) -> tuple[float, float]:
    """Relative lift and its delta-method standard error from means and their variances."""
    if m_c == 0:
        raise SchemaError("control mean: expected a nonzero value for a relative lift, got 0")
    ratio = m_t / m_c
    # sqrt(v_t + ratio² v_c) / |m_c|: no power of m_c to overflow or underflow
    return ratio - 1, math.sqrt(v_t + ratio * ratio * v_c) / abs(m_c)


def relative_lift_from_stats(
    *,
    mean_control: float,
    sd_control: float,
    n_control: int,
    mean_treatment: float,
    sd_treatment: float,
    n_treatment: int,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> TwoSampleTest:
    """Test of the relative lift ``mean_treatment / mean_control − 1 = 0`` from each
    arm's mean, standard deviation and size (a rate ``p`` has ``sd = sqrt(p (1 − p))``)."""
    n_c = check_count(n_control, "n_control", minimum=1)
    n_t = check_count(n_treatment, "n_treatment", minimum=1)
    for name, sd in (("sd_control", sd_control), ("sd_treatment", sd_treatment)):
        if not (math.isfinite(sd) and sd >= 0):
            raise SchemaError(f"{name}: expected a finite standard deviation >= 0, got {sd!r}")
    lift, se = _lift(
        check_finite(mean_control, "mean_control"),
        sd_control * sd_control / n_c,
        check_finite(mean_treatment, "mean_treatment"),
        sd_treatment * sd_treatment / n_t,
    )
    return normal_test(lift, se, alpha=alpha, alternative=alternative)


def relative_lift(
    control: npt.ArrayLike,
    treatment: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> TwoSampleTest:
    """Test of the relative lift of ``mean(treatment)`` over ``mean(control)``."""
    c, t = finite_floats(control, "control"), finite_floats(treatment, "treatment")
    if len(c) < 2 or len(t) < 2:
        raise SchemaError(f"samples: expected >= 2 values per arm, got {len(c)} and {len(t)}")
    return relative_lift_from_stats(
        mean_control=float(c.mean()),
        sd_control=float(c.std(ddof=1)),
        n_control=len(c),
        mean_treatment=float(t.mean()),
        sd_treatment=float(t.std(ddof=1)),
        n_treatment=len(t),
        alpha=alpha,
        alternative=alternative,
    )


def ratio_metric(numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> RatioEstimate:
    """``Σ numerator / Σ denominator`` over units (one entry each) and its standard error.

    >>> ratio_metric([2, 4], [1, 2]).std_error
    0.0
    """
    y, x = finite_floats(numerator, "numerator"), finite_floats(denominator, "denominator")
    if len(y) != len(x):
        raise SchemaError(f"denominator: has {len(x)} units but numerator has {len(y)}")
    n = len(y)
    if n < 2:
        raise SchemaError(f"numerator: expected >= 2 units, got {n}")
    x_bar, y_bar = float(x.mean()), float(y.mean())
    if x_bar == 0:
        raise SchemaError("denominator: expected a nonzero total, got 0")
    r = y_bar / x_bar
    cov = np.cov(np.stack([y, x]), ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * x_bar**2)
    return RatioEstimate(r, math.sqrt(max(float(var), 0.0)), n)


def ratio_metric_test(
    numerator_control: npt.ArrayLike,
    denominator_control: npt.ArrayLike,
    numerator_treatment: npt.ArrayLike,
    denominator_treatment: npt.ArrayLike,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> TwoSampleTest:
    """Test of a ratio metric between arms: the difference ``R_t − R_c`` or, with
    ``relative``, the lift ``R_t / R_c − 1``."""
    c = ratio_metric(numerator_control, denominator_control)
    t = ratio_metric(numerator_treatment, denominator_treatment)
    if relative:
        estimate, se = _lift(c.value, c.std_error**2, t.value, t.std_error**2)
    else:
        estimate, se = t.value - c.value, math.hypot(c.std_error, t.std_error)
    return normal_test(estimate, se, alpha=alpha, alternative=alternative)
