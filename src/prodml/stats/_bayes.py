"""Bayesian comparison of two arms: the chance that B beats A and the expected loss of
choosing each arm, for conversion rates (beta-binomial) and for means (normal model).

The expected loss of choosing an arm is how much worse it is on average when it is the
worse arm: ``E[max(θ_B − θ_A, 0)]`` for choosing A, ``E[max(θ_A − θ_B, 0)]`` for B. A
rollout stops when the loss of the leading arm falls below a threshold of caring.

Beta-binomial results are exact, not sampled: ``P(θ_B > θ_A)`` is Evan Miller's closed
form when one Beta parameter is an integer (a sum of at most that many terms, added in
log space so counts in the millions neither overflow nor underflow), otherwise a
numerical integral on A's probability scale; the expected losses follow from the
same probability with one parameter shifted (see :func:`_beta_loss`).

>>> r = beta_binomial(100, 1000, 120, 1000)
>>> round(r.prob_b_beats_a, 4)
0.9232
>>> round(r.expected_loss_a, 6), round(r.expected_loss_b, 6)
(0.020445, 0.000485)
>>> n = normal_means(10.0, 4.0, 50, 11.0, 9.0, 60)
>>> round(n.prob_b_beats_a, 6), round(n.expected_loss_b, 6)
(0.981472, 0.003232)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import integrate, special, stats

from prodml.core.errors import ConfigError, SchemaError

__all__ = ["BayesComparison", "beta_binomial", "normal_means", "prob_beta_greater"]

#: Above this many terms in the closed-form sum, integrate numerically instead.
_MAX_TERMS = 1_000_000


@dataclass(frozen=True)
class BayesComparison:
    """Posterior comparison of arm B against arm A (``mean_*`` are posterior means)."""

    prob_b_beats_a: float
    expected_loss_a: float
    expected_loss_b: float
    mean_a: float
    mean_b: float

    def to_dict(self) -> dict[str, float]:
        """Plain JSON-ready floats."""
        return {k: float(v) for k, v in asdict(self).items()}


def _positive(field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{field}: expected a finite number > 0, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or result <= 0:
        raise ConfigError(f"{field}: expected a finite number > 0, got {value!r}")
    return result


def _prior(value: Any) -> tuple[Any, Any]:
    """A prior given as a pair, else :class:`ConfigError` naming ``prior``."""
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"prior: expected a pair of numbers, got {value!r}")
    return value[0], value[1]


def _counts(arm: str, successes: int, trials: int) -> tuple[int, int]:
    for field, v in (("successes", successes), ("trials", trials)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise SchemaError(f"{field}_{arm}: expected an int >= 0, got {v!r}")
    if successes > trials:
        raise SchemaError(
            f"successes_{arm}: expected at most trials_{arm}={trials}, got {successes}"
        )
    return int(successes), int(trials)


def _is_int(x: float) -> bool:
    return float(x).is_integer()


def _miller(a1: float, b1: float, a2: float, b2: float) -> float:
    """Evan Miller's ``P(X2 > X1)`` for X1 ~ Beta(a1, b1), X2 ~ Beta(a2, b2), integer a2:
    ``Σ_{i<a2} B(a1+i, b1+b2) / ((b2+i) B(1+i, b2) B(a1, b1))``, summed in log space."""
    i = np.arange(int(a2), dtype=np.float64)
    log_terms = (
        special.betaln(a1 + i, b1 + b2)
        - np.log(b2 + i)
        - special.betaln(1.0 + i, b2)
        - special.betaln(a1, b1)
    )
    return float(np.exp(special.logsumexp(log_terms)))


def _integrate(a1: float, b1: float, a2: float, b2: float) -> float:
    """``P(X2 > X1) = ∫₀¹ (1 − F2(F1⁻¹(u))) du``: on A's probability scale the integrand
    is bounded and monotone (no density singularity at 0 or 1). Each half is integrated
    from its own end (``F1⁻¹(u)`` below ½, the inverse survival function above, so
    neither tail loses precision), split where the integrand falls, at the images of
    B's quantiles; a piece narrower than 1e-13 is left out.
    Rates near 1 are reflected to near 0 (``X2 > X1`` ⇔ ``1 − X1 > 1 − X2``), where
    floats are dense."""
    if a1 / (a1 + b1) + a2 / (a2 + b2) > 1.0:
        a1, b1, a2, b2 = b2, a2, b1, a1
    x1, x2 = stats.beta(a1, b1), stats.beta(a2, b2)
    quantiles = x2.ppf([1e-9, 1e-6, 1e-3, 0.1, 0.5, 0.9, 1 - 1e-3, 1 - 1e-6, 1 - 1e-9])
    total = 0.0
    for inverse, tail in ((x1.ppf, x1.cdf), (x1.isf, x1.sf)):
        cuts = tail(quantiles)
        edges = np.unique(np.concatenate([[0.0], cuts[cuts < 0.5], [0.5]]))
        for lo, hi in itertools.pairwise(edges.tolist()):
            if hi - lo < 1e-13:  # contributes less than its width: the integrand is ≤ 1
                continue
            # full_output: QUADPACK's advice on a hard piece (a U-shaped Beta) is returned,
            # not warned; the estimate is still within ~1e-8 (the tests check it).
            result = integrate.quad(
                lambda u, f=inverse: float(x2.sf(f(u))), lo, hi, epsabs=1e-11, limit=200,
                full_output=1,
            )  # fmt: skip
            total += float(result[0])
    return float(min(max(total, 0.0), 1.0))


def prob_beta_greater(a1: float, b1: float, a2: float, b2: float) -> float:
    """Exact ``P(X2 > X1)`` for independent X1 ~ Beta(a1, b1) and X2 ~ Beta(a2, b2).

    Uses whichever of the four symmetric forms of Evan Miller's sum has the fewest terms
    (``X2 > X1`` ⇔ ``1 − X1 > 1 − X2``, and ``P(X2 > X1) = 1 − P(X1 > X2)``), and a
    numerical integral when no parameter is an integer or the sum would be too long.

    >>> prob_beta_greater(1, 1, 1, 1), prob_beta_greater(1, 1, 2, 1)
    (0.5, 0.6666666666666666)
    """
    a1, b1 = _positive("a1", a1), _positive("b1", b1)
    a2, b2 = _positive("a2", a2), _positive("b2", b2)
    forms: list[tuple[float, Callable[[], float]]] = [  # (terms, P(X2 > X1) by Miller's sum)
        (a2, lambda: _miller(a1, b1, a2, b2)),
        (a1, lambda: 1.0 - _miller(a2, b2, a1, b1)),
        (b1, lambda: _miller(b2, a2, b1, a1)),
        (b2, lambda: 1.0 - _miller(b1, a1, b2, a2)),
    ]
    usable = [(t, f) for t, f in forms if _is_int(t) and t <= _MAX_TERMS]
    if not usable:
        return _integrate(a1, b1, a2, b2)
    _, form = min(usable, key=lambda tf: tf[0])
    return float(min(max(form(), 0.0), 1.0))


def _beta_loss(a1: float, b1: float, a2: float, b2: float) -> float:
    """``E[max(X2 − X1, 0)] = m2·P(X2⁺ > X1) − m1·P(X2 > X1⁺)``, where ``m`` is a Beta
    mean and ``X⁺`` has its first parameter raised by one (``x·f(x)`` is ``m·f⁺(x)``)."""
    m1, m2 = a1 / (a1 + b1), a2 / (a2 + b2)
    value = m2 * prob_beta_greater(a1, b1, a2 + 1, b2) - m1 * prob_beta_greater(a1 + 1, b1, a2, b2)
    return max(value, 0.0)


def beta_binomial(
    successes_a: int,
    trials_a: int,
    successes_b: int,
    trials_b: int,
    *,
    prior: tuple[float, float] = (1.0, 1.0),
) -> BayesComparison:
    """Compare two conversion rates under a Beta(``prior``) prior on each: the posterior
    of an arm is Beta(prior_a + successes, prior_b + failures).

    >>> beta_binomial(0, 0, 0, 0).prob_b_beats_a
    0.5
    """
    sa, na = _counts("a", successes_a, trials_a)
    sb, nb = _counts("b", successes_b, trials_b)
    first, second = _prior(prior)
    pa, pb = _positive("prior[0]", first), _positive("prior[1]", second)
    a1, b1, a2, b2 = pa + sa, pb + na - sa, pa + sb, pb + nb - sb
    return BayesComparison(
        prob_b_beats_a=prob_beta_greater(a1, b1, a2, b2),
        expected_loss_a=_beta_loss(a1, b1, a2, b2),
        expected_loss_b=_beta_loss(a2, b2, a1, b1),
        mean_a=a1 / (a1 + b1),
        mean_b=a2 / (a2 + b2),
    )


def _normal_posterior(
    arm: str, mean: float, variance: float, n: int, prior: tuple[float, float] | None
) -> tuple[float, float]:
    """Posterior mean and variance of an arm's mean: ``N(mean, variance/n)`` under a flat
    prior, else the precision-weighted combination with the N(μ₀, τ²) ``prior``."""
    if not math.isfinite(mean):
        raise SchemaError(f"mean_{arm}: expected a finite number, got {mean!r}")
    if not math.isfinite(variance) or variance < 0:
        raise SchemaError(f"variance_{arm}: expected a finite number >= 0, got {variance!r}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise SchemaError(f"n_{arm}: expected an int >= 1, got {n!r}")
    if prior is None:
        return float(mean), variance / n
    first, second = _prior(prior)
    if isinstance(first, bool) or not isinstance(first, int | float | np.integer | np.floating):
        raise ConfigError(f"prior[0]: expected a finite prior mean, got {first!r}")
    mu0, tau2 = float(first), _positive("prior[1]", second)
    if not math.isfinite(mu0):
        raise ConfigError(f"prior[0]: expected a finite prior mean, got {prior[0]!r}")
    if variance == 0:
        return float(mean), 0.0
    precision = 1.0 / tau2 + n / variance
    return (mu0 / tau2 + n * mean / variance) / precision, 1.0 / precision


def normal_means(
    mean_a: float,
    variance_a: float,
    n_a: int,
    mean_b: float,
    variance_b: float,
    n_b: int,
    *,
    prior: tuple[float, float] | None = None,
) -> BayesComparison:
    """Compare two means with normal posteriors, in closed form.

    ``variance_*`` is the per-observation variance of the arm, known or estimated (the
    sample variance plugged in, the usual large-sample treatment); ``prior`` is
    ``(μ₀, τ²)`` of a normal prior on each arm's mean, or None for a flat prior. With
    ``D = θ_B − θ_A ~ N(m, s²)``: ``P(B > A) = Φ(m/s)``, loss of choosing A
    ``m·Φ(m/s) + s·φ(m/s)``, of choosing B ``−m·Φ(−m/s) + s·φ(m/s)``.

    >>> normal_means(1.0, 0.0, 5, 2.0, 0.0, 5).prob_b_beats_a
    1.0
    """
    ma, va = _normal_posterior("a", mean_a, variance_a, n_a, prior)
    mb, vb = _normal_posterior("b", mean_b, variance_b, n_b, prior)
    m, s = mb - ma, math.sqrt(va + vb)
    if s == 0:
        win = 0.5 if m == 0 else float(m > 0)
        return BayesComparison(win, max(m, 0.0), max(-m, 0.0), ma, mb)
    z = m / s
    pdf = float(stats.norm.pdf(z))
    return BayesComparison(
        prob_b_beats_a=float(special.ndtr(z)),
        expected_loss_a=m * float(special.ndtr(z)) + s * pdf,
        expected_loss_b=-m * float(special.ndtr(-z)) + s * pdf,
        mean_a=ma,
        mean_b=mb,
    )
