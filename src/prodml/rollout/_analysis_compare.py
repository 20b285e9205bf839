"""A challenger against the champion: the primary metric's difference with a
fixed-horizon test, an always-valid confidence sequence and its verdict, practical
significance and achieved power, and each guardrail's non-inferiority.

Every difference is **arm − champion**; the *improvement* turns it so that positive is
better, a guardrail's *worse_by* so that positive is worse.

Tests by kind of metric: a per-row mean (log loss, Brier, reward, mean latency) — Welch's
t and :func:`~prodml.stats.msprt_means`; a rate (accuracy) — the two-proportion z test
and :func:`~prodml.stats.msprt_proportions`; ROC-AUC — a z test and :func:`~prodml.stats.msprt`
on the sum of the two arms' DeLong variances (the arms' rows are independent).

The sequence's mixing variance is tuned to ``planned`` rows per arm (see
:mod:`prodml.stats._sequential`); analysed again and again, the sequence keeps its
coverage only if ``planned`` stays the same, so a controller passes its plan's n.

Guardrails: error and fallback rates use the Agresti–Caffo adjusted rates ((x+1)/(n+2))
for the sequence's estimate and variance — with no failure yet in either arm the plain
variance is 0 and the sequence could never show non-inferiority. The p99 latency's
interval combines each arm's distribution-free interval at ``1 − alpha/2`` (order
statistics, see :func:`~prodml.rollout._analysis_metrics.quantile_ranks`) into
``[low_arm − high_champion, high_arm − low_champion]``: fixed-horizon and conservative.
The prediction shift is a PSI, compared with the margin once both arms have
:data:`MIN_SHIFT_SCORES` scores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from prodml.rollout._analysis_metrics import MetricStat, MetricTable, kind_of
from prodml.rollout._metrics import METRICS, Guardrail
from prodml.stats import (
    MSPRTResult,
    NonInferiority,
    TwoSampleTest,
    mean_power,
    mixing_ratio,
    msprt,
    msprt_means,
    msprt_proportions,
    noninferiority_means,
    noninferiority_proportions,
    normal_test,
    proportion_power,
    two_proportion_ztest,
    welch_ttest_from_stats,
)

__all__ = ["MIN_SHIFT_SCORES", "Comparison", "GuardrailCheck", "compare"]

Verdict = Literal["better", "worse", "inconclusive"]
Status = Literal["breached", "non_inferior", "inconclusive"]

#: Scores each arm needs before a prediction-shift guardrail decides.
MIN_SHIFT_SCORES = 100


@dataclass(frozen=True)
class GuardrailCheck:
    """One guardrail of one challenger: both values, how much worse the arm is
    (``worse_by``, positive = worse) with its interval ``[lower, upper]``, the allowance
    (the margin in the metric's units), the ``status`` and the fixed-horizon
    non-inferiority test (None where there is none)."""

    metric: str
    margin: float
    relative: bool
    champion_value: float
    arm_value: float
    worse_by: float
    lower: float | None
    upper: float | None
    allowance: float | None
    status: Status
    test: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """A live challenger (``arm``) against the champion on the primary ``metric``: the
    rows each arm contributed, both values, ``estimate`` (arm − champion),
    ``improvement`` (positive = better), the relative lift, the fixed-horizon ``test``,
    the always-valid ``sequential`` result for the improvement, the ``verdict`` it
    supports, whether the gain is ``practical`` (better and at least ``min_effect``),
    the achieved ``power`` for ``min_effect`` and the ``guardrails``."""

    arm: str
    champion: str
    metric: str
    n_champion: int
    n_arm: int
    champion_value: float
    arm_value: float
    estimate: float
    improvement: float
    relative_lift: float
    test: dict[str, Any] | None
    sequential: dict[str, Any] | None
    verdict: Verdict
    practical: bool
    power: float | None
    guardrails: tuple[GuardrailCheck, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "guardrails"}
        out["guardrails"] = [g.to_dict() for g in self.guardrails]
        return out


# -- the shared pieces ---------------------------------------------------------------


def fixed_test(c: MetricStat, a: MetricStat, alpha: float) -> TwoSampleTest | None:
    """The fixed-horizon test of ``a − c`` (None with too few rows to test)."""
    if c.kind == "auc":
        if not (math.isfinite(c.variance) and math.isfinite(a.variance)):
            return None
        return normal_test(a.value - c.value, math.sqrt(c.variance + a.variance), alpha=alpha)
    if c.n < 2 or a.n < 2:
        return None
    if c.kind == "proportion":
        return two_proportion_ztest(c.successes, c.n, a.successes, a.n, alpha=alpha)
    return welch_ttest_from_stats(
        mean_control=c.mean, sd_control=c.sd, n_control=c.n,
        mean_treatment=a.mean, sd_treatment=a.sd, n_treatment=a.n, alpha=alpha,
    )  # fmt: skip


def _harmonic(c: MetricStat, a: MetricStat) -> float:
    return 2.0 / (1.0 / c.n + 1.0 / a.n)


def sequence(
    c: MetricStat, a: MetricStat, alpha: float, planned: float | None, *, adjusted: bool = False
) -> MSPRTResult | None:
    """The mSPRT of ``a − c`` at this look, τ² tuned to ``planned`` rows per arm (None:
    the arms' current harmonic-mean n); None with too few rows."""
    if c.n < 2 or a.n < 2:
        return None
    target = planned if planned is not None else _harmonic(c, a)
    if c.kind == "proportion" and adjusted:
        pc, pa = (c.successes + 1) / (c.n + 2), (a.successes + 1) / (a.n + 2)
        variance = pc * (1 - pc) / (c.n + 2) + pa * (1 - pa) / (a.n + 2)
        tau2 = mixing_ratio(alpha) * _harmonic(c, a) / target * variance
        return msprt([pa - pc], [variance], tau2=tau2, alpha=alpha)
    if c.kind == "proportion":
        return msprt_proportions(
            [c.n], [c.successes], [a.n], [a.successes], planned_n=target, alpha=alpha
        )
    if c.kind == "auc":
        variance = c.variance + a.variance
        if not math.isfinite(variance):
            return None
        tau2 = mixing_ratio(alpha) * _harmonic(c, a) / target * variance if variance > 0 else 1.0
        return msprt([a.value - c.value], [variance], tau2=tau2, alpha=alpha)
    return msprt_means(
        [c.n], [c.mean], [c.variance], [a.n], [a.mean], [a.variance], planned_n=target, alpha=alpha
    )


def _bounds(result: MSPRTResult | None, sign: float) -> tuple[float | None, float | None, float]:
    """The last look's interval of ``sign × (a − c)`` and its always-valid p-value."""
    if result is None:
        return None, None, math.nan
    low, high = float(result.lower[-1]), float(result.upper[-1])
    if sign < 0:
        low, high = -high, -low
    return _finite(low), _finite(high), float(result.pvalue[-1])


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _power(c: MetricStat, a: MetricStat, min_effect: float, alpha: float, higher: bool) -> float | None:  # fmt: skip
    """Achieved power of the two-sided fixed-horizon test for a true improvement of
    ``min_effect`` at the current rows (None if ``min_effect`` is 0 or undefined)."""
    if min_effect <= 0 or c.n < 2 or a.n < 2:
        return None
    ratio = a.n / c.n
    if c.kind == "proportion":
        target = c.mean + (min_effect if higher else -min_effect)
        if not (0 < c.mean < 1 and 0 < target < 1):
            return None
        return proportion_power(c.mean, target, c.n, alpha=alpha, ratio=ratio)
    if not (c.sd > 0 and a.sd > 0):
        return None
    return mean_power(min_effect, c.sd, c.n, a.sd, alpha=alpha, ratio=ratio)


# -- the comparison ------------------------------------------------------------------


def compare(
    table: MetricTable,
    champion: int,
    arm: int,
    *,
    metric: str,
    guardrails: tuple[Guardrail, ...],
    alpha: float,
    min_effect: float,
    planned_n: int | None,
) -> Comparison:
    """Arm ``arm`` against arm ``champion`` (codes of ``table.rows.arms``)."""
    c, a = table.per_arm(metric)[champion], table.per_arm(metric)[arm]
    higher = METRICS[metric].higher_is_better
    sign = 1.0 if higher else -1.0
    estimate = a.value - c.value
    test = fixed_test(c, a, alpha)
    result = sequence(c, a, alpha, planned_n)
    low, high, pvalue = _bounds(result, sign)
    verdict: Verdict = (
        "better" if low is not None and low > 0
        else "worse" if high is not None and high < 0
        else "inconclusive"
    )  # fmt: skip
    improvement = sign * estimate
    return Comparison(
        arm=table.rows.arms[arm].name,
        champion=table.rows.arms[champion].name,
        metric=metric,
        n_champion=c.n,
        n_arm=a.n,
        champion_value=c.value,
        arm_value=a.value,
        estimate=estimate,
        improvement=improvement,
        relative_lift=estimate / abs(c.value) if c.value else math.nan,
        test=None if test is None else test.to_dict(),
        sequential=None
        if result is None
        else _sequential(pvalue, low, high, alpha, planned_n, c, a),
        verdict=verdict,
        practical=bool(verdict == "better" and improvement >= min_effect),
        power=_power(c, a, min_effect, alpha, higher),
        guardrails=tuple(
            check_guardrail(table, g, champion, arm, alpha=alpha, planned_n=planned_n)
            for g in guardrails
        ),
    )


def _sequential(
    pvalue: float, low: float | None, high: float | None, alpha: float, planned_n: int | None,
    c: MetricStat, a: MetricStat,
) -> dict[str, Any]:  # fmt: skip
    planned = planned_n if planned_n is not None else _harmonic(c, a)
    return {"pvalue": pvalue, "lower": low, "upper": high, "alpha": alpha, "planned_n": planned}


def _status(lower: float | None, upper: float | None, allowance: float | None) -> Status:
    if allowance is None:
        return "inconclusive"
    if lower is not None and lower > allowance:
        return "breached"
    if upper is not None and upper < allowance:
        return "non_inferior"
    return "inconclusive"


def check_guardrail(
    table: MetricTable,
    guardrail: Guardrail,
    champion: int,
    arm: int,
    *,
    alpha: float,
    planned_n: int | None,
) -> GuardrailCheck:
    """Is arm ``arm`` no worse than ``champion`` on ``guardrail`` (see the module
    docstring for how each kind of metric is judged)?"""
    name = guardrail.metric
    base: dict[str, Any] = {
        "metric": name,
        "margin": guardrail.margin,
        "relative": guardrail.relative,
    }
    if name == "prediction_shift":
        value, n_c, n_a = table.shift(champion, arm)
        limit = guardrail.margin
        status: Status = (
            "inconclusive" if min(n_c, n_a) < MIN_SHIFT_SCORES or not math.isfinite(value)
            else "breached" if value > limit
            else "non_inferior"
        )  # fmt: skip
        return GuardrailCheck(**base, champion_value=0.0, arm_value=value, worse_by=value,
                              lower=None, upper=None, allowance=limit, status=status)  # fmt: skip
    c, a = table.per_arm(name)[champion], table.per_arm(name)[arm]
    higher = METRICS[name].higher_is_better
    sign = 1.0 if higher else -1.0
    allowance = guardrail.allowance(c.value)
    worse_by = -sign * (a.value - c.value)
    if kind_of(name) == "quantile":  # lower is better
        lower = _finite(a.low - c.high) if c.n and a.n else None
        upper = _finite(a.high - c.low) if c.n and a.n else None
        return GuardrailCheck(**base, champion_value=c.value, arm_value=a.value,
                              worse_by=worse_by, lower=lower, upper=upper, allowance=allowance,
                              status=_status(lower, upper, allowance))  # fmt: skip
    labelled = METRICS[name].source in ("label", "reward")
    result = sequence(c, a, alpha, planned_n if labelled else None, adjusted=not labelled)
    lower, upper, _ = _bounds(result, -sign)
    test = _noninferiority(c, a, guardrail, higher, alpha)
    return GuardrailCheck(**base, champion_value=c.value, arm_value=a.value, worse_by=worse_by,
                          lower=lower, upper=upper, allowance=allowance,
                          status=_status(lower, upper, allowance),
                          test=None if test is None else test.to_dict())  # fmt: skip


def _noninferiority(
    c: MetricStat, a: MetricStat, guardrail: Guardrail, higher: bool, alpha: float
) -> NonInferiority | None:
    """The fixed-horizon non-inferiority test (an AUC through Welch's statistic with the
    DeLong standard errors: normal for any real n)."""
    if c.n < 2 or a.n < 2 or (guardrail.relative and not c.value):
        return None
    common: dict[str, Any] = {"margin": guardrail.margin, "relative": guardrail.relative,
              "higher_is_better": higher, "alpha": alpha}  # fmt: skip
    if c.kind == "proportion":
        return noninferiority_proportions(c.successes, c.n, a.successes, a.n, **common)
    if not (math.isfinite(c.sd) and math.isfinite(a.sd)):
        return None
    return noninferiority_means(
        mean_control=c.mean, sd_control=c.sd, n_control=c.n,
        mean_treatment=a.mean, sd_treatment=a.sd, n_treatment=a.n, **common,
    )  # fmt: skip
