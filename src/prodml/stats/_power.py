"""Sample size, power and minimum detectable effect of a two-arm experiment, for a
difference of two proportions (conversion rates) or of two means, under the normal
approximation.

Conventions: the control arm has ``n_control`` units and the treatment arm
``ratio * n_control`` (``ratio = n_treatment / n_control``); ``alternative`` is
``"two-sided"`` (level α split over both tails) or ``"one-sided"`` (level α in the tail of
the effect). Proportions are compared by ``method``:

* ``"unpooled"``: the Wald test, variance ``p_c q_c / n_c + p_t q_t / n_t`` under the
  null and the alternative alike;
* ``"pooled"``: the classic test with the pooled rate ``p̄`` under the null,
  ``n_c = (z_α·sqrt(p̄ q̄ (1 + 1/r)) + z_β·sqrt(p_c q_c + p_t q_t / r))² / Δ²``
  (statsmodels' ``samplesize_proportions_2indep_onetail``);
* ``"cohen_h"``: the arcsine transform, effect ``h = 2 asin√p_t − 2 asin√p_c`` with
  variance ``1/n_c + 1/n_t`` (statsmodels' ``NormalIndPower`` with
  ``proportion_effectsize``).

Sample sizes and minimum detectable effects are the textbook closed forms, which ignore
the far tail of a two-sided test (its rejections count toward power but are worth at
most Φ(−2 z_α/2), 4e-5 at α = 5%); :func:`proportion_power` and :func:`mean_power` give the
exact power including that tail, so ``power(sample_size(…).n_control_exact)`` is the
target power or a hair above it.

>>> size = proportion_sample_size(0.10, 0.11, method="pooled")
>>> round(size.n_control_exact, 1), size.n_control, size.n_treatment
(14750.8, 14751, 14751)
>>> proportion_sample_size(0.10, 0.11, method="cohen_h").n_control
14745
>>> round(proportion_power(0.10, 0.11, 14751, method="pooled"), 4)
0.8
>>> round(proportion_mde(0.10, 14751, method="pooled"), 5)
0.01
>>> mean_sample_size(0.5, 2.0).n_control
252
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scipy import optimize
from scipy.stats import norm

from prodml.core.errors import ConfigError

__all__ = [
    "PowerAlternative",
    "ProportionMethod",
    "SampleSize",
    "mean_mde",
    "mean_power",
    "mean_sample_size",
    "proportion_mde",
    "proportion_power",
    "proportion_sample_size",
]

ProportionMethod = Literal["unpooled", "pooled", "cohen_h"]
PowerAlternative = Literal["two-sided", "one-sided"]
_METHODS = ("unpooled", "pooled", "cohen_h")
_ALTERNATIVES = ("two-sided", "one-sided")


@dataclass(frozen=True)
class SampleSize:
    """Units needed per arm: the exact solutions of the formula and their ceilings."""

    n_control_exact: float
    n_treatment_exact: float
    n_control: int
    n_treatment: int

    @property
    def total(self) -> int:
        """Units over both arms, each arm rounded up."""
        return self.n_control + self.n_treatment

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus ``total``."""
        return {**asdict(self), "total": self.total}


# -- arguments ------------------------------------------------------------------------


#: The most units per arm a sample size may ask for: beyond 2⁵³ a float no longer holds
#: every integer, and no experiment is that large — the effect is too small to detect.
_MAX_UNITS = 2.0**53


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # NumPy's too
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    return float(value)


def _probability(value: float, name: str, *, open_interval: bool = True) -> float:
    v = _float(value, name)
    ok = 0.0 < v < 1.0 if open_interval else 0.0 <= v <= 1.0
    if not ok:
        interval = "(0, 1)" if open_interval else "[0, 1]"
        raise ConfigError(f"{name}: expected a probability in {interval}, got {value!r}")
    return v


def _positive(value: float, name: str) -> float:
    v = _float(value, name)
    if not (math.isfinite(v) and v > 0.0):
        raise ConfigError(f"{name}: expected a finite number > 0, got {value!r}")
    return v


def _z_alpha(alpha: float, alternative: str) -> float:
    _probability(alpha, "alpha")
    if alternative not in _ALTERNATIVES:
        raise ConfigError(
            f"alternative: expected one of {list(_ALTERNATIVES)}, got {alternative!r}"
        )
    return float(norm.isf(alpha / 2 if alternative == "two-sided" else alpha))


def _z_power(power: float, alpha: float) -> float:
    _probability(power, "power")
    if power <= alpha:
        raise ConfigError(f"power: expected a value above alpha={alpha}, got {power!r}")
    return float(norm.ppf(power))


def _method(method: str) -> str:
    if method not in _METHODS:
        raise ConfigError(f"method: expected one of {list(_METHODS)}, got {method!r}")
    return method


def _sizes(n_control: float, ratio: float, effect: str) -> SampleSize:
    """The sample size of ``n_control`` control units; :class:`ConfigError` naming the
    ``effect`` argument (or ``ratio``) when an arm would need more than ``_MAX_UNITS``."""
    n_t = n_control * ratio
    for n, name in ((n_control, effect), (n_t, "ratio")):
        if not n <= _MAX_UNITS:  # NaN and infinity too
            raise ConfigError(
                f"{name}: the experiment would need {n:.3g} units in an arm, more than "
                f"{_MAX_UNITS:.3g}; expected a larger effect or a ratio nearer 1"
            )
    # a float a few ulps above an integer (e.g. 252.00000000000003) is that integer
    return SampleSize(n_control, n_t, _ceil(n_control), _ceil(n_t))


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9 * max(1.0, abs(x)))


def _tail_power(shift: float, z_alpha: float, scale: float, alternative: str) -> float:
    """P(reject) when the statistic is N(shift, scale²) and rejects beyond ±z_alpha."""
    upper = float(norm.sf((z_alpha - abs(shift)) / scale))
    if alternative == "one-sided":
        return upper
    return upper + float(norm.cdf((-z_alpha - abs(shift)) / scale))


# -- proportions ----------------------------------------------------------------------


def _prop_terms(p_c: float, p_t: float, ratio: float, method: str) -> tuple[float, float, float]:
    """(effect, null sd, alternative sd) of one control unit's worth of information:
    the statistic's standard deviations are these over sqrt(n_control)."""
    if method == "cohen_h":
        effect = 2 * math.asin(math.sqrt(p_t)) - 2 * math.asin(math.sqrt(p_c))
        sd = math.sqrt(1 + 1 / ratio)
        return effect, sd, sd
    alt = math.sqrt(p_c * (1 - p_c) + p_t * (1 - p_t) / ratio)
    if method == "unpooled":
        return p_t - p_c, alt, alt
    p_bar = (p_c + ratio * p_t) / (1 + ratio)
    return p_t - p_c, math.sqrt(p_bar * (1 - p_bar) * (1 + 1 / ratio)), alt


def proportion_sample_size(
    p_control: float,
    p_treatment: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: PowerAlternative = "two-sided",
    method: ProportionMethod = "unpooled",
) -> SampleSize:
    """Units per arm to detect rates ``p_control`` → ``p_treatment`` with ``power``.

    >>> proportion_sample_size(0.10, 0.11).n_control
    14749
    """
    p_c, p_t = _probability(p_control, "p_control"), _probability(p_treatment, "p_treatment")
    if p_c == p_t:
        raise ConfigError(f"p_treatment: expected a rate different from p_control={p_c}")
    ratio = _positive(ratio, "ratio")
    z_a = _z_alpha(alpha, alternative)
    z_b = _z_power(power, alpha)
    effect, sd0, sd1 = _prop_terms(p_c, p_t, ratio, _method(method))
    root = (z_a * sd0 + z_b * sd1) / effect
    return _sizes(root * root, ratio, "p_treatment")  # root*root: inf, never OverflowError


def proportion_power(
    p_control: float,
    p_treatment: float,
    n_control: float,
    *,
    alpha: float = 0.05,
    ratio: float = 1.0,
    alternative: PowerAlternative = "two-sided",
    method: ProportionMethod = "unpooled",
) -> float:
    """Probability that the test rejects with ``n_control`` control units (both tails of
    a two-sided test counted; a one-sided test looks in the direction of the effect)."""
    p_c, p_t = _probability(p_control, "p_control"), _probability(p_treatment, "p_treatment")
    n = _positive(n_control, "n_control")
    ratio = _positive(ratio, "ratio")
    z_a = _z_alpha(alpha, alternative)
    effect, sd0, sd1 = _prop_terms(p_c, p_t, ratio, _method(method))
    # statistic / (sd0 / sqrt(n)) ~ N(effect sqrt(n) / sd0, (sd1 / sd0)²)
    return _tail_power(effect * math.sqrt(n) / sd0, z_a, sd1 / sd0, alternative)


def proportion_mde(
    p_control: float,
    n_control: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: PowerAlternative = "two-sided",
    method: ProportionMethod = "unpooled",
) -> float:
    """Smallest absolute increase ``p_treatment − p_control`` that ``n_control`` control
    units detect with ``power`` (the inverse of :func:`proportion_sample_size`). For the
    smallest decrease, use ``proportion_mde(1 - p_control, …)``: rates are symmetric."""
    p_c = _probability(p_control, "p_control")
    n = _positive(n_control, "n_control")
    ratio = _positive(ratio, "ratio")
    z_a = _z_alpha(alpha, alternative)
    z = z_a + _z_power(power, alpha)
    if _method(method) == "cohen_h":
        h = z * math.sqrt((1 + 1 / ratio) / n)
        angle = math.asin(math.sqrt(p_c)) + h / 2
        if angle >= math.pi / 2:
            raise ConfigError(f"n_control: {n} units cannot detect any rate above {p_c}")
        return math.sin(angle) ** 2 - p_c
    if method == "unpooled":
        # n d² / z² = p_c q_c + (p_c + d)(q_c − d) / r, a quadratic in d
        a = n / z**2 + 1 / ratio
        b = -(1 - 2 * p_c) / ratio
        c = -p_c * (1 - p_c) * (1 + 1 / ratio)
        d = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    else:

        def excess(d: float) -> float:
            _, sd0, sd1 = _prop_terms(p_c, p_c + d, ratio, "pooled")
            return d * math.sqrt(n) - (z_a * sd0 + (z - z_a) * sd1)

        top = 1 - p_c
        if excess(top * (1 - 1e-12)) < 0:
            raise ConfigError(f"n_control: {n} units cannot detect any rate above {p_c}")
        d = float(optimize.brentq(excess, 0.0, top * (1 - 1e-12), xtol=1e-15, rtol=1e-14))
    if p_c + d >= 1:
        raise ConfigError(f"n_control: {n} units cannot detect any rate above {p_c}")
    return d


# -- means ----------------------------------------------------------------------------


def _mean_sd(sd_control: float, sd_treatment: float | None, ratio: float) -> float:
    sd_c = _positive(sd_control, "sd_control")
    sd_t = sd_c if sd_treatment is None else _positive(sd_treatment, "sd_treatment")
    sd = math.hypot(sd_c, sd_t / math.sqrt(_positive(ratio, "ratio")))  # hypot: no overflow
    if not math.isfinite(sd):
        raise ConfigError(
            f"sd_control: expected standard deviations whose combination is finite, got "
            f"{sd_control!r} and {sd_treatment!r}"
        )
    return sd


def mean_sample_size(
    delta: float,
    sd_control: float,
    sd_treatment: float | None = None,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: PowerAlternative = "two-sided",
) -> SampleSize:
    """Units per arm to detect a difference of means ``delta`` with known standard
    deviations (``sd_treatment`` defaults to ``sd_control``):
    ``n_c = (z_α + z_β)² (sd_c² + sd_t² / r) / δ²``."""
    delta = _float(delta, "delta")
    if not (math.isfinite(delta) and delta != 0):
        raise ConfigError(f"delta: expected a finite nonzero difference, got {delta!r}")
    sd = _mean_sd(sd_control, sd_treatment, ratio)
    z = _z_alpha(alpha, alternative) + _z_power(power, alpha)
    root = z * sd / abs(delta)
    return _sizes(root * root, float(ratio), "delta")  # root*root: inf, never OverflowError


def mean_power(
    delta: float,
    sd_control: float,
    n_control: float,
    sd_treatment: float | None = None,
    *,
    alpha: float = 0.05,
    ratio: float = 1.0,
    alternative: PowerAlternative = "two-sided",
) -> float:
    """Probability that the z test of the difference of means rejects."""
    delta = _float(delta, "delta")
    if not math.isfinite(delta):
        raise ConfigError(f"delta: expected a finite difference, got {delta!r}")
    sd = _mean_sd(sd_control, sd_treatment, ratio)
    n = _positive(n_control, "n_control")
    z_a = _z_alpha(alpha, alternative)
    return _tail_power(delta * math.sqrt(n) / sd, z_a, 1.0, alternative)


def mean_mde(
    sd_control: float,
    n_control: float,
    sd_treatment: float | None = None,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: PowerAlternative = "two-sided",
) -> float:
    """Smallest difference of means that ``n_control`` control units detect with
    ``power``: ``(z_α + z_β) sqrt((sd_c² + sd_t² / r) / n_c)``."""
    sd = _mean_sd(sd_control, sd_treatment, ratio)
    n = _positive(n_control, "n_control")
    z = _z_alpha(alpha, alternative) + _z_power(power, alpha)
    return z * sd / math.sqrt(n)
