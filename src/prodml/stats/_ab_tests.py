"""Fixed-horizon tests of a two-arm experiment: the two-proportion z test, Welch's t
test (from summary statistics or from samples) and the sample-ratio-mismatch check.

Every comparison is **treatment − control** and returns a :class:`TwoSampleTest`;
``alternative`` is SciPy's: ``"two-sided"``, ``"greater"`` (treatment above control) or
``"less"``. The confidence interval is two-sided at ``1 − alpha`` for a two-sided test
and one-sided (one infinite end) otherwise, so that it excludes 0 exactly when
``pvalue < alpha``, except for the pooled z test, whose interval uses the unpooled
(Wald) standard error as a pooled one is only valid under the null. A test that carries
no information (a zero standard error) has NaN statistic, p-value and bounds.

>>> r = two_proportion_ztest(1000, 10_000, 1100, 10_000)
>>> round(r.estimate, 4), round(r.statistic, 4), round(r.pvalue, 7)
(0.01, 2.3066, 0.0210752)
>>> w = welch_ttest_from_stats(
...     mean_control=11, sd_control=3, n_control=60,
...     mean_treatment=10, sd_treatment=2, n_treatment=50)
>>> round(w.statistic, 6), round(w.df, 4), round(w.pvalue, 7)
(-2.085144, 103.3267, 0.0395205)
>>> srm = sample_ratio_mismatch([50_000, 50_500])
>>> round(srm.pvalue, 6), srm.mismatch
(0.114749, False)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2, norm
from scipy.stats import t as student_t

from prodml.core.errors import ConfigError, SchemaError
from prodml.stats._metrics import check_alpha, finite_floats

__all__ = [
    "SRM_THRESHOLD",
    "Alternative",
    "SampleRatioCheck",
    "TwoSampleTest",
    "normal_test",
    "sample_ratio_mismatch",
    "two_proportion_ztest",
    "welch_ttest",
    "welch_ttest_from_stats",
]

Alternative = Literal["two-sided", "greater", "less"]
_ALTERNATIVES = ("two-sided", "greater", "less")

#: Default alarm level of :func:`sample_ratio_mismatch`: a p-value this small means the
#: split is broken, not unlucky.
SRM_THRESHOLD = 0.001


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class TwoSampleTest:
    """One comparison of treatment with control: ``estimate`` (a difference or a
    relative lift), its ``std_error``, the test ``statistic`` (z, or t with ``df``
    degrees of freedom; ``df`` is infinite for a z test), the ``pvalue`` and the
    ``confidence`` interval ``[ci_low, ci_high]`` of the estimate."""

    estimate: float
    std_error: float
    statistic: float
    df: float
    pvalue: float
    ci_low: float
    ci_high: float
    confidence: float
    alternative: Alternative

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: infinite and NaN values become ``None``."""
        return {k: _json_float(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class SampleRatioCheck:
    """Pearson χ² goodness of fit of the units per arm to the intended weights;
    ``mismatch`` is ``pvalue < threshold``."""

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    statistic: float
    df: int
    pvalue: float
    threshold: float
    mismatch: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes ``None``, tuples lists."""
        data = asdict(self)
        data["observed"], data["expected"] = list(self.observed), list(self.expected)
        data["statistic"], data["pvalue"] = _json_float(self.statistic), _json_float(self.pvalue)
        return data


# -- arguments ------------------------------------------------------------------------


def check_alternative(alternative: str) -> Alternative:
    """``alternative`` if it is one of SciPy's three, else :class:`ConfigError`."""
    if alternative not in _ALTERNATIVES:
        raise ConfigError(
            f"alternative: expected one of {list(_ALTERNATIVES)}, got {alternative!r}"
        )
    return alternative  # type: ignore[return-value]


def check_count(value: float, name: str, *, minimum: int = 0) -> int:
    """``value`` as an int if it is a whole number ``>= minimum`` (an integral float
    passes), else :class:`SchemaError` — NaN, infinity and non-numbers included."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise SchemaError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if not math.isfinite(value) or float(value) != int(value) or int(value) < minimum:
        raise SchemaError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def check_finite(value: float, name: str) -> float:
    """``value`` as a float if it is a finite number, else :class:`SchemaError`."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise SchemaError(f"{name}: expected a finite number, got {value!r}")
    if not math.isfinite(value):
        raise SchemaError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


# -- the shared test ------------------------------------------------------------------


def normal_test(
    estimate: float,
    std_error: float,
    *,
    null: float = 0.0,
    df: float = math.inf,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    ci_std_error: float | None = None,
) -> TwoSampleTest:
    """Test ``estimate = null`` with statistic ``(estimate − null) / std_error``, normal
    (``df`` infinite) or Student t; the interval uses ``ci_std_error`` if given. A NaN
    estimate (a metric undefined on the data) gives a NaN test; an infinite one is a
    :class:`SchemaError`.

    >>> round(normal_test(1.0, 0.5).pvalue, 6)
    0.0455
    """
    alpha, alternative = check_alpha(alpha), check_alternative(alternative)
    if math.isinf(estimate):
        raise SchemaError(f"estimate: expected a finite number (or NaN), got {estimate!r}")
    dist = norm if math.isinf(df) else student_t(df)
    ci_se = std_error if ci_std_error is None else ci_std_error
    nan = math.nan
    if not (std_error > 0 and math.isfinite(std_error)):
        return TwoSampleTest(estimate, std_error, nan, df, nan, nan, nan, 1 - alpha, alternative)
    stat = (estimate - null) / std_error
    if alternative == "two-sided":
        p = 2 * float(dist.sf(abs(stat)))
        half = float(dist.isf(alpha / 2)) * ci_se
        low, high = estimate - half, estimate + half
    elif alternative == "greater":
        p = float(dist.sf(stat))
        low, high = estimate - float(dist.isf(alpha)) * ci_se, math.inf
    else:
        p = float(dist.cdf(stat))
        low, high = -math.inf, estimate + float(dist.isf(alpha)) * ci_se
    return TwoSampleTest(
        estimate, std_error, stat, df, min(p, 1.0), low, high, 1 - alpha, alternative
    )


# -- proportions ----------------------------------------------------------------------


def two_proportion_ztest(
    successes_control: int,
    n_control: int,
    successes_treatment: int,
    n_treatment: int,
    *,
    pooled: bool = True,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> TwoSampleTest:
    """z test of ``p_treatment − p_control`` from counts; ``pooled`` uses the pooled rate
    in the standard error (statsmodels' ``proportions_ztest``), otherwise each arm's own
    (the Wald test). The interval always uses the unpooled standard error."""
    n_c = check_count(n_control, "n_control", minimum=1)
    n_t = check_count(n_treatment, "n_treatment", minimum=1)
    x_c, x_t = (
        check_count(successes_control, "successes_control"),
        check_count(successes_treatment, "successes_treatment"),
    )
    if x_c > n_c or x_t > n_t:
        raise SchemaError(
            f"successes: expected at most n per arm, got {x_c}/{n_c} control, {x_t}/{n_t} treatment"
        )
    p_c, p_t = x_c / n_c, x_t / n_t
    wald = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    if pooled:
        p = (x_c + x_t) / (n_c + n_t)
        se = math.sqrt(p * (1 - p) * (1 / n_c + 1 / n_t))
    else:
        se = wald
    return normal_test(
        p_t - p_c, se, alpha=alpha, alternative=alternative, ci_std_error=wald if wald > 0 else se
    )


# -- means ----------------------------------------------------------------------------


def welch_ttest_from_stats(
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
    """Welch's t test of ``mean_treatment − mean_control`` from each arm's mean,
    sample standard deviation (ddof 1) and size, with Welch–Satterthwaite degrees of
    freedom (SciPy's ``ttest_ind_from_stats(equal_var=False)``, arms swapped)."""
    n_c = check_count(n_control, "n_control", minimum=2)
    n_t = check_count(n_treatment, "n_treatment", minimum=2)
    m_c, m_t = (
        check_finite(mean_control, "mean_control"),
        check_finite(mean_treatment, "mean_treatment"),
    )
    for name, sd in (("sd_control", sd_control), ("sd_treatment", sd_treatment)):
        if not (math.isfinite(sd) and sd >= 0):
            raise SchemaError(f"{name}: expected a finite standard deviation >= 0, got {sd!r}")
    v_c, v_t = (
        sd_control * sd_control / n_c,
        sd_treatment * sd_treatment / n_t,
    )  # x*x: inf, no raise
    var = v_c + v_t
    if not math.isfinite(var):
        raise SchemaError(
            f"sd_control, sd_treatment: expected standard deviations whose squared standard "
            f"error is a finite number, got {sd_control!r} and {sd_treatment!r}"
        )
    # Welch–Satterthwaite, divided through by var² so that no square overflows
    df = (
        1.0 / ((v_c / var) ** 2 / (n_c - 1) + (v_t / var) ** 2 / (n_t - 1)) if var > 0 else math.nan
    )
    return normal_test(
        m_t - m_c,
        math.sqrt(var),
        df=df if var > 0 else math.inf,
        alpha=alpha,
        alternative=alternative,
    )


def welch_ttest(
    control: npt.ArrayLike,
    treatment: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> TwoSampleTest:
    """Welch's t test of ``mean(treatment) − mean(control)`` from the samples."""
    c, t = finite_floats(control, "control"), finite_floats(treatment, "treatment")
    return welch_ttest_from_stats(
        mean_control=float(c.mean()),
        sd_control=float(c.std(ddof=1)) if len(c) > 1 else 0.0,
        n_control=len(c),
        mean_treatment=float(t.mean()),
        sd_treatment=float(t.std(ddof=1)) if len(t) > 1 else 0.0,
        n_treatment=len(t),
        alpha=alpha,
        alternative=alternative,
    )


# -- sample-ratio mismatch ------------------------------------------------------------


def sample_ratio_mismatch(
    observed: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
    *,
    threshold: float = SRM_THRESHOLD,
) -> SampleRatioCheck:
    """Check the units per arm against the intended split ``weights`` (equal by default;
    any positive scale): χ² with ``arms − 1`` degrees of freedom, as
    :func:`scipy.stats.chisquare`. No units at all give a NaN p-value and no mismatch."""
    counts = finite_floats(observed, "observed")
    if len(counts) < 2 or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise SchemaError(
            f"observed: expected counts >= 0 for at least two arms, got {counts.tolist()}"
        )
    w = np.ones(len(counts)) if weights is None else finite_floats(weights, "weights")
    if w.shape != counts.shape or np.any(w <= 0):
        raise ConfigError(
            f"weights: expected {len(counts)} positive weights, one per arm, got {w.tolist()}"
        )
    threshold = check_alpha(threshold)
    total = float(counts.sum())
    expected = total * w / w.sum()
    if total > 0:
        stat = float(np.sum((counts - expected) ** 2 / expected))
        p = float(chi2.sf(stat, len(counts) - 1))
    else:
        stat, p = math.nan, math.nan
    return SampleRatioCheck(
        tuple(int(c) for c in counts),
        tuple(float(e) for e in expected),
        stat,
        len(counts) - 1,
        p,
        threshold,
        bool(p < threshold),
    )
