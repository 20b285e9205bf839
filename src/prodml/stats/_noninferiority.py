"""Non-inferiority tests for guardrail metrics: is the challenger (treatment) no worse
than the control by more than ``margin``? One-sided at level ``alpha``:

* absolute margin, a higher-is-better metric: ``H0: m_t − m_c ≤ −margin``;
* ``relative=True``: ``H0: m_t / m_c − 1 ≤ −margin`` (delta-method lift, normal);
* ``higher_is_better=False`` (latency, error rate) flips the direction: ``H0:
  m_t − m_c ≥ margin``, resp. ``m_t / m_c − 1 ≥ margin``.

Proportions use the unpooled (Wald) standard error, means Welch's t with
Welch–Satterthwaite degrees of freedom. ``bound`` is the one-sided ``1 − alpha``
confidence bound of the estimate on the worse side; the challenger is non-inferior
exactly when it lies inside the margin, i.e. ``pvalue < alpha``.

>>> r = noninferiority_proportions(1000, 10_000, 990, 10_000, margin=0.01)
>>> r.non_inferior, round(r.pvalue, 4), round(r.bound, 4)
(True, 0.0167, -0.008)
>>> noninferiority_proportions(1000, 10_000, 990, 10_000, margin=0.05,
...                            relative=True).non_inferior
False
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from prodml.core.errors import ConfigError
from prodml.stats._ab_tests import (
    TwoSampleTest,
    normal_test,
    two_proportion_ztest,
    welch_ttest_from_stats,
)
from prodml.stats._delta_method import relative_lift_from_stats
from prodml.stats._metrics import check_alpha

__all__ = ["NonInferiority", "noninferiority_means", "noninferiority_proportions"]


@dataclass(frozen=True)
class NonInferiority:
    """Outcome of a non-inferiority test: ``estimate`` is ``m_t − m_c`` (or the relative
    lift), ``bound`` its one-sided confidence bound on the worse side, ``statistic`` the z
    or t (``df`` infinite for z) of the distance to the margin."""

    non_inferior: bool
    estimate: float
    bound: float
    margin: float
    relative: bool
    higher_is_better: bool
    statistic: float
    df: float
    pvalue: float
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: infinite and NaN values become ``None``."""
        return {
            k: (v if math.isfinite(v) else None) if isinstance(v, float) else v
            for k, v in asdict(self).items()
        }


def _decide(
    comparison: TwoSampleTest,
    margin: float,
    *,
    relative: bool,
    higher_is_better: bool,
    alpha: float,
) -> NonInferiority:
    sign = 1.0 if higher_is_better else -1.0
    # test sign * estimate > -margin: "greater" at the null value -margin
    one_sided = normal_test(
        sign * comparison.estimate,
        comparison.std_error,
        null=-margin,
        df=comparison.df,
        alpha=alpha,
        alternative="greater",
    )
    return NonInferiority(
        non_inferior=bool(one_sided.pvalue < alpha),
        estimate=comparison.estimate,
        bound=sign * one_sided.ci_low,
        margin=margin,
        relative=relative,
        higher_is_better=higher_is_better,
        statistic=one_sided.statistic,
        df=comparison.df,
        pvalue=one_sided.pvalue,
        alpha=alpha,
    )


def _margin(margin: float) -> float:
    if not (math.isfinite(margin) and margin >= 0):
        raise ConfigError(f"margin: expected a finite number >= 0, got {margin!r}")
    return float(margin)


def noninferiority_proportions(
    successes_control: int,
    n_control: int,
    successes_treatment: int,
    n_treatment: int,
    *,
    margin: float,
    relative: bool = False,
    higher_is_better: bool = True,
    alpha: float = 0.05,
) -> NonInferiority:
    """Non-inferiority of the treatment's rate, from counts (see the module docstring)."""
    margin, alpha = _margin(margin), check_alpha(alpha)
    diff = two_proportion_ztest(
        successes_control, n_control, successes_treatment, n_treatment, pooled=False
    )
    if relative:
        p_c, p_t = successes_control / n_control, successes_treatment / n_treatment
        comparison = relative_lift_from_stats(
            mean_control=p_c,
            sd_control=math.sqrt(p_c * (1 - p_c)),
            n_control=n_control,
            mean_treatment=p_t,
            sd_treatment=math.sqrt(p_t * (1 - p_t)),
            n_treatment=n_treatment,
        )
    else:
        comparison = diff
    return _decide(
        comparison, margin, relative=relative, higher_is_better=higher_is_better, alpha=alpha
    )


def noninferiority_means(
    *,
    mean_control: float,
    sd_control: float,
    n_control: int,
    mean_treatment: float,
    sd_treatment: float,
    n_treatment: int,
    margin: float,
    relative: bool = False,
    higher_is_better: bool = True,
    alpha: float = 0.05,
) -> NonInferiority:
    """Non-inferiority of the treatment's mean, from each arm's mean, sample standard
    deviation and size (see the module docstring)."""
    margin, alpha = _margin(margin), check_alpha(alpha)
    test = relative_lift_from_stats if relative else welch_ttest_from_stats
    comparison = test(
        mean_control=mean_control,
        sd_control=sd_control,
        n_control=n_control,
        mean_treatment=mean_treatment,
        sd_treatment=sd_treatment,
        n_treatment=n_treatment,
    )
    return _decide(
        comparison, margin, relative=relative, higher_is_better=higher_is_better, alpha=alpha
    )
