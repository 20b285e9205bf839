"""Sequential tests for an experiment that is looked at again and again: the mixture
sequential probability ratio test (mSPRT) with always-valid p-values and confidence
sequences, and group-sequential boundaries from Lan–DeMets alpha spending.

**mSPRT** (Johari et al., "Always valid inference", 2017). For a difference θ of means
or proportions with estimate θ̂ₙ and variance Vₙ at look n, the normal mixture H ~
N(0, τ²) over the alternative gives the likelihood ratio

    Λₙ = √(Vₙ / (Vₙ + τ²)) · exp(τ² (θ̂ₙ − θ₀)² / (2 Vₙ (Vₙ + τ²)))

whose reciprocal is, by Ville's inequality, a p-value at any stopping time: the
always-valid p-value is ``pₙ = min(pₙ₋₁, 1/Λₙ)`` and the confidence sequence the running
intersection of ``{θ₀ : Λₙ(θ₀) < 1/α}``. Looks lie along the last axis of the inputs.

**τ² by default** is tuned to the planned sample size ``planned_n`` (per arm): τ²ₙ =
r(α)·Vₙ·mₙ/planned_n, mₙ the harmonic mean of the two arms' sizes, so that τ² is r(α)
times the variance the estimate will have at the planned n, with r(α) = 2 ln(1/α) +
ln(1 + 2 ln(1/α)) (7.94 at α = 0.05). This mixing variance makes the confidence sequence
(almost exactly) narrowest at the planned n (Howard et al., "Time-uniform, nonparametric,
nonasymptotic confidence sequences", 2021, §3.5), where the experiment was sized to
decide; a τ² on the effect scale would need a prior from past experiments that a new
one lacks. Because ``τ²ₙ / Vₙ`` depends only on the sample sizes, Λₙ does not depend on
the plug-in variance estimate except through the z statistic.

**Group-sequential** boundaries are two-sided and symmetric, ±bₖ at information
fractions tₖ (equal or not); look k rejects when ``|Zₖ| ≥ bₖ``. Each side spends
α_s(t) = 2 − 2Φ(z_{α_s/2}/√t) (O'Brien–Fleming type) or α_s ln(1 + (e − 1)t) (Pocock
type) with α_s = α/2, the convention of gsDesign, rpact and ldbounds. The classical
O'Brien–Fleming (1979) and Pocock (1977) designs, boundaries c/√tₖ and c with c set so
that the whole test has level α, are here too. Crossing probabilities come from the
Armitage–McPherson–Rowe recursion, integrated by Simpson's rule on the grid of
Jennison & Turnbull (2000, ch. 19), accurate to ~1e-7.

>>> [round(b, 3) for b in classical_boundaries([0.2, 0.4, 0.6, 0.8, 1.0]).z]
[4.562, 3.226, 2.634, 2.281, 2.04]
>>> [round(b, 3) for b in spending_boundaries([0.2, 0.4, 0.6, 0.8, 1.0]).z]
[4.877, 3.357, 2.68, 2.29, 2.031]
>>> first_crossing([0.2, 0.4, 0.6], [1.0, 3.5, 2.0]).look
1
>>> test = msprt_proportions(
...     [1000, 2000, 3000], [100, 200, 300], [1000, 2000, 3000], [120, 260, 380], planned_n=5000
... )
>>> test.pvalue.round(4).tolist(), test.first_rejection
([0.859, 0.0703, 0.0296], 2)
>>> test.lower.round(4).tolist(), test.upper.round(4).tolist()
([-0.027, -0.0015, 0.0016], [0.067, 0.0615, 0.0517])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special, stats

from prodml.core.errors import ConfigError, SchemaError
from prodml.stats._metrics import check_alpha

__all__ = [
    "Boundaries",
    "Crossing",
    "MSPRTResult",
    "SpendingKind",
    "alpha_spent",
    "classical_boundaries",
    "crossing_probabilities",
    "first_crossing",
    "mixing_ratio",
    "msprt",
    "msprt_means",
    "msprt_proportions",
    "spending_boundaries",
]

Floats = NDArray[np.float64]
SpendingKind = Literal["obrien_fleming", "pocock"]
_GRID_R = 32  # Jennison & Turnbull's grid size parameter (they find r = 16 enough)


def _floats(values: ArrayLike, field: str) -> Floats:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{field}: expected numbers, got {exc}") from None
    if arr.size == 0 or not np.isfinite(arr).all():
        raise SchemaError(f"{field}: expected a non-empty array of finite numbers")
    return arr


# -- mSPRT ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MSPRTResult:
    """Per look (last axis): the estimate, the always-valid p-value (non-increasing) and
    the always-valid confidence sequence ``[lower, upper]`` (nested, narrowing)."""

    estimate: Floats
    pvalue: Floats
    lower: Floats
    upper: Floats
    alpha: float

    @property
    def rejected(self) -> NDArray[np.bool_]:
        """Whether the null has been rejected at level ``alpha`` by each look."""
        return self.pvalue <= self.alpha

    @property
    def first_rejection(self) -> int | None:
        """0-based index of the first look that rejects (1-D results), else ``None``."""
        hits = np.flatnonzero(self.rejected)
        return int(hits[0]) if hits.size else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists of floats (unbounded ends of the sequence are ``None``)."""

        def clean(a: Floats) -> Any:
            out = a.astype(object)
            out[~np.isfinite(a)] = None
            return out.tolist()

        return {
            "estimate": self.estimate.tolist(),
            "pvalue": self.pvalue.tolist(),
            "lower": clean(self.lower),
            "upper": clean(self.upper),
            "alpha": self.alpha,
        }


def mixing_ratio(alpha: float = 0.05) -> float:
    """r(α) = 2 ln(1/α) + ln(1 + 2 ln(1/α)): τ² = r(α)·V makes the confidence sequence
    narrowest where the estimate's variance is V.

    >>> round(mixing_ratio(0.05), 4)
    7.9362
    """
    check_alpha(alpha)
    two_log = 2.0 * math.log(1.0 / alpha)
    return two_log + math.log1p(two_log)


def msprt(
    estimate: ArrayLike,
    variance: ArrayLike,
    *,
    tau2: ArrayLike,
    alpha: float = 0.05,
    null: float = 0.0,
) -> MSPRTResult:
    """The normal-mixture SPRT of ``θ = null`` over looks along the last axis, from each
    look's cumulative estimate θ̂ₙ, its variance Vₙ and the mixing variance τ² (scalar
    or per look). A look with Vₙ = 0 carries no information: Λₙ = 1, interval unbounded.

    >>> r = msprt([0.5, 1.0, 1.5], [1.0, 0.25, 0.1], tau2=1.0)
    >>> r.pvalue.round(4).tolist(), r.lower.round(3).tolist(), r.first_rejection
    ([1.0, 0.4515, 0.0001], [-3.156, -0.541, 0.539], 2)
    """
    check_alpha(alpha)
    est = _floats(estimate, "estimate")
    var = _floats(variance, "variance")
    t2 = _floats(tau2, "tau2")
    if np.any(var < 0):
        raise SchemaError("variance: expected values ≥ 0")
    if np.any(t2 <= 0):
        raise ConfigError("tau2: expected a mixing variance > 0")
    try:
        est, var, t2 = np.broadcast_arrays(est, var, t2)
    except ValueError:
        raise SchemaError(
            f"estimate, variance, tau2: expected one value per look (or one for all), got "
            f"shapes {est.shape}, {var.shape} and {t2.shape}"
        ) from None
    informative = var > 0
    safe_var = np.where(informative, var, 1.0)
    q = np.where(informative, t2 / safe_var, 0.0)  # τ²/V
    z2 = (est - null) ** 2 / safe_var
    log_inv_lr = 0.5 * np.log1p(q) - q * z2 / (2.0 * (1.0 + q))
    pvalue = np.minimum.accumulate(np.minimum(np.exp(log_inv_lr), 1.0), axis=-1)
    safe_q = np.where(informative, q, 1.0)
    half = np.sqrt(var * (1.0 + safe_q) / safe_q * (2.0 * math.log(1.0 / alpha) + np.log1p(q)))
    half = np.where(informative, half, np.inf)
    lower = np.maximum.accumulate(est - half, axis=-1)
    upper = np.minimum.accumulate(est + half, axis=-1)
    return MSPRTResult(est.copy(), pvalue, lower, upper, alpha)


def _sizes(n_a: ArrayLike, n_b: ArrayLike) -> tuple[Floats, Floats]:
    na, nb = _floats(n_a, "n_a"), _floats(n_b, "n_b")
    if np.any(na < 1) or np.any(nb < 1):
        raise SchemaError("n_a, n_b: expected at least one unit per arm at every look")
    return na, nb


def _same_looks(**arrays: Floats) -> None:
    """:class:`SchemaError` unless the arrays broadcast together: one value per look
    (or one for every look)."""
    try:
        np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(f"{name} {a.shape}" for name, a in arrays.items())
        raise SchemaError(
            f"{', '.join(arrays)}: expected one value per look (or one for all), got {shapes}"
        ) from None


def _two_sample(
    na: Floats, nb: Floats, estimate: Floats, variance: Floats,
    tau2: float | None, planned_n: float | None, alpha: float,
) -> MSPRTResult:  # fmt: skip
    if (tau2 is None) == (planned_n is None):
        raise ConfigError(
            "planned_n, tau2: expected exactly one (planned_n, the planned per-arm "
            f"sample size, tunes tau2), got planned_n={planned_n!r}, tau2={tau2!r}"
        )
    if tau2 is not None:
        return msprt(estimate, variance, tau2=tau2, alpha=alpha)
    if not planned_n or planned_n <= 0:
        raise ConfigError(f"planned_n: expected a per-arm sample size > 0, got {planned_n!r}")
    harmonic = 2.0 / (1.0 / na + 1.0 / nb)
    scaled = np.where(variance > 0, mixing_ratio(alpha) * harmonic / planned_n * variance, 1.0)
    return msprt(estimate, variance, tau2=scaled, alpha=alpha)


def msprt_proportions(
    n_a: ArrayLike,
    successes_a: ArrayLike,
    n_b: ArrayLike,
    successes_b: ArrayLike,
    *,
    planned_n: float | None = None,
    tau2: float | None = None,
    alpha: float = 0.05,
) -> MSPRTResult:
    """mSPRT of equal proportions from cumulative counts per look; θ̂ = p̂_b − p̂_a with
    the unpooled variance p̂(1 − p̂)/n summed over the arms. Give ``planned_n`` (τ²
    tuned to it, see the module docstring) or ``tau2`` on the scale of θ."""
    na, nb = _sizes(n_a, n_b)
    xa, xb = _floats(successes_a, "successes_a"), _floats(successes_b, "successes_b")
    _same_looks(n_a=na, successes_a=xa, n_b=nb, successes_b=xb)
    if np.any((xa < 0) | (xa > na)) or np.any((xb < 0) | (xb > nb)):
        raise SchemaError("successes_a, successes_b: expected counts in [0, n]")
    pa, pb = xa / na, xb / nb
    variance = pa * (1.0 - pa) / na + pb * (1.0 - pb) / nb
    return _two_sample(na, nb, pb - pa, variance, tau2, planned_n, alpha)


def msprt_means(
    n_a: ArrayLike,
    mean_a: ArrayLike,
    var_a: ArrayLike,
    n_b: ArrayLike,
    mean_b: ArrayLike,
    var_b: ArrayLike,
    *,
    planned_n: float | None = None,
    tau2: float | None = None,
    alpha: float = 0.05,
) -> MSPRTResult:
    """mSPRT of equal means from cumulative sizes, means and sample variances per look;
    θ̂ = mean_b − mean_a with variance var_a/n_a + var_b/n_b (Welch). Give ``planned_n``
    or ``tau2`` as for :func:`msprt_proportions`."""
    na, nb = _sizes(n_a, n_b)
    va, vb = _floats(var_a, "var_a"), _floats(var_b, "var_b")
    if np.any(va < 0) or np.any(vb < 0):
        raise SchemaError("var_a, var_b: expected variances ≥ 0")
    ma, mb = _floats(mean_a, "mean_a"), _floats(mean_b, "mean_b")
    _same_looks(n_a=na, mean_a=ma, var_a=va, n_b=nb, mean_b=mb, var_b=vb)
    estimate = mb - ma
    return _two_sample(na, nb, estimate, va / na + vb / nb, tau2, planned_n, alpha)


# -- group-sequential boundaries ------------------------------------------------------


@dataclass(frozen=True)
class Boundaries:
    """Two-sided boundaries ±z at the information fractions; ``spent`` is the
    cumulative type I error spent by each look."""

    fractions: tuple[float, ...]
    z: tuple[float, ...]
    spent: tuple[float, ...]
    alpha: float
    design: str

    def inflation_factor(self, power: float = 0.8) -> float:
        """Maximum information over that of the fixed-sample test with the same α and
        power: plan the last look's n as this times the fixed-horizon n.

        >>> round(spending_boundaries([0.2, 0.4, 0.6, 0.8, 1.0]).inflation_factor(0.8), 4)
        1.0247
        """
        if not 0.0 < power < 1.0:
            raise ConfigError(f"power: expected a probability in (0, 1), got {power!r}")
        bounds, t = np.array(self.z), np.array(self.fractions) / self.fractions[-1]

        def shortfall(drift: float) -> float:
            return float(crossing_probabilities(bounds, t, drift)[0].sum()) - power

        drift = optimize.brentq(shortfall, 0.0, 20.0, xtol=1e-12)
        fixed = stats.norm.isf(self.alpha / 2) + stats.norm.isf(1.0 - power)
        return float((drift / fixed) ** 2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists of floats (an unreachable boundary is ``None``)."""
        z = [b if math.isfinite(b) else None for b in self.z]
        return {"fractions": list(self.fractions), "z": z, "spent": list(self.spent),
                "alpha": self.alpha, "design": self.design}  # fmt: skip


def alpha_spent(t: ArrayLike, kind: SpendingKind = "obrien_fleming", alpha: float = 0.05) -> Floats:
    """Two-sided type I error spent by information fraction ``t`` (capped at α for t ≥ 1):
    twice the per-side spending at α/2.

    >>> alpha_spent([0.5, 1.0, 2.0], "pocock").round(5).tolist()
    [0.03101, 0.05, 0.05]
    """
    check_alpha(alpha)
    tt = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    side = alpha / 2.0
    if kind == "obrien_fleming":
        with np.errstate(divide="ignore"):
            per_side = 2.0 * stats.norm.sf(stats.norm.isf(side / 2.0) / np.sqrt(tt))
    elif kind == "pocock":
        per_side = side * np.log1p((math.e - 1.0) * tt)
    else:
        raise ConfigError(f"kind: expected 'obrien_fleming' or 'pocock', got {kind!r}")
    return np.asarray(2.0 * per_side, dtype=np.float64)


def _check_fractions(fractions: ArrayLike) -> Floats:
    t = _floats(fractions, "fractions")
    if t.ndim != 1 or t[0] <= 0 or np.any(np.diff(t) <= 0):
        raise SchemaError(f"fractions: expected increasing values > 0, got {t.tolist()}")
    return t


def _simpson_grid(mean: float, bound: float) -> tuple[Floats, Floats]:
    """Jennison & Turnbull's points for a N(mean, 1) density cut to (−bound, bound),
    with the midpoints and Simpson weights."""
    r, i = _GRID_R, np.arange(1.0, 6 * _GRID_R)
    x = mean + np.where(
        i < r,
        -3.0 - 4.0 * np.log(r / i),
        np.where(i <= 5 * r, -3.0 + 3.0 * (i - r) / (2 * r), 3.0 + 4.0 * np.log(r / (6 * r - i))),
    )
    inside = x[(x > -bound) & (x < bound)]
    lo = [-bound] if -bound > x[0] else []
    hi = [bound] if bound < x[-1] else []
    x = np.concatenate([lo, inside, hi])
    z = np.empty(2 * len(x) - 1)
    z[0::2], z[1::2] = x, (x[:-1] + x[1:]) / 2.0
    w = np.zeros_like(z)
    d = np.diff(x) / 6.0
    w[1::2] = 4.0 * d
    w[0:-1:2] += d
    w[2::2] += d
    return z, w


def crossing_probabilities(
    bounds: ArrayLike, fractions: ArrayLike, drift: float = 0.0
) -> tuple[Floats, Floats]:
    """Probabilities of first crossing ``+bₖ`` and ``−bₖ`` at each look, when
    E[Zₖ] = drift·√tₖ (0 under the null): the Armitage–McPherson–Rowe recursion.

    >>> up, down = crossing_probabilities([1.96], [1.0])
    >>> round(float(up[0] + down[0]), 4)
    0.05
    """
    t = _check_fractions(fractions)
    b = np.asarray(bounds, dtype=np.float64)
    if b.shape != t.shape or np.any(np.isnan(b)) or np.any(b <= 0):
        raise SchemaError(f"bounds: expected {len(t)} values > 0, got {b.tolist()}")
    up, down = np.empty(len(t)), np.empty(len(t))
    mean = drift * math.sqrt(t[0])
    up[0], down[0] = stats.norm.sf(b[0] - mean), stats.norm.cdf(-b[0] - mean)
    z, wh = _first_look(b[0], mean)
    for k in range(1, len(t)):
        up[k], down[k], (z, wh) = _step(z, wh, t[k - 1], t[k], b[k], drift)
    return up, down


def _first_look(bound: float, mean: float) -> tuple[Floats, Floats]:
    """Grid and weighted density (Simpson weight × density) of Z₁ where it continues."""
    z, w = _simpson_grid(mean, bound)
    return z, w * stats.norm.pdf(z - mean)


def _step(
    z: Floats, wh: Floats, t_prev: float, t_k: float, bound: float, drift: float
) -> tuple[float, float, tuple[Floats, Floats]]:
    """One look of the recursion: crossing probabilities at ±bound and the new grid
    with its weighted density."""
    sd, s_prev, s_k = math.sqrt(t_k - t_prev), math.sqrt(t_prev), math.sqrt(t_k)
    shift = z * s_prev + drift * (t_k - t_prev)  # E[Sₖ | Zₖ₋₁] on the score scale
    up = float(wh @ special.ndtr((shift - bound * s_k) / sd))
    down = float(wh @ special.ndtr((-bound * s_k - shift) / sd))
    z_new, w_new = _simpson_grid(drift * s_k, bound)
    kernel = stats.norm.pdf((z_new[:, None] * s_k - shift[None, :]) / sd) * (s_k / sd)
    return up, down, (z_new, w_new * (kernel @ wh))


def _excess(b: float, z: Floats, wh: Floats, t_prev: float, t_k: float, spend: float) -> float:
    up, down, _ = _step(z, wh, t_prev, t_k, b, 0.0)
    return up + down - spend


def spending_boundaries(
    fractions: ArrayLike, kind: SpendingKind = "obrien_fleming", alpha: float = 0.05
) -> Boundaries:
    """Lan–DeMets boundaries at the given information fractions: look k spends
    ``alpha_spent(tₖ) − alpha_spent(tₖ₋₁)``. Look k's boundary depends only on looks
    1..k, so fractions measured as the experiment goes give the same early boundaries.
    A look with nothing left to spend gets an infinite boundary."""
    t = _check_fractions(fractions)
    cumulative = alpha_spent(t, kind, alpha)
    spend = np.diff(cumulative, prepend=0.0)
    bounds = np.full(len(t), np.inf)
    if spend[0] > 0:
        bounds[0] = stats.norm.isf(spend[0] / 2.0)
    z, wh = _first_look(bounds[0], 0.0)
    for k in range(1, len(t)):
        if spend[k] > 0:
            args = (z, wh, float(t[k - 1]), float(t[k]), float(spend[k]))
            bounds[k] = optimize.brentq(_excess, 1e-6, 40.0, args=args, xtol=1e-12)
        _, _, (z, wh) = _step(z, wh, t[k - 1], t[k], bounds[k], 0.0)
    return Boundaries(tuple(t.tolist()), tuple(bounds.tolist()), tuple(cumulative.tolist()),
                      alpha, f"lan_demets_{kind}")  # fmt: skip


def classical_boundaries(
    fractions: ArrayLike, kind: SpendingKind = "obrien_fleming", alpha: float = 0.05
) -> Boundaries:
    """O'Brien–Fleming (bₖ = c/√tₖ) or Pocock (bₖ = c) boundaries with c such that
    the test has two-sided level α; fractions are taken relative to the last look."""
    check_alpha(alpha)
    t = _check_fractions(fractions)
    t = t / t[-1]
    if kind == "obrien_fleming":
        shape = 1.0 / np.sqrt(t)
    elif kind == "pocock":
        shape = np.ones_like(t)
    else:
        raise ConfigError(f"kind: expected 'obrien_fleming' or 'pocock', got {kind!r}")

    def level(c: float) -> Floats:
        up, down = crossing_probabilities(c * shape, t)
        return np.cumsum(up + down)

    c = optimize.brentq(lambda c: float(level(c)[-1]) - alpha, 1e-3, 40.0, xtol=1e-12)
    return Boundaries(tuple(t.tolist()), tuple((c * shape).tolist()), tuple(level(c).tolist()),
                      alpha, kind)  # fmt: skip


@dataclass(frozen=True)
class Crossing:
    """Whether the looks so far crossed a boundary: ``look`` is the 0-based index of
    the first look with ``|z| ≥ bound`` (``None`` if none), ``direction`` +1 or −1."""

    crossed: bool
    look: int | None
    direction: int
    boundaries: Boundaries

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"crossed": self.crossed, "look": self.look, "direction": self.direction,
                "boundaries": self.boundaries.to_dict()}  # fmt: skip


def first_crossing(
    fractions: ArrayLike,
    z: ArrayLike,
    kind: SpendingKind = "obrien_fleming",
    alpha: float = 0.05,
) -> Crossing:
    """The decision so far: Lan–DeMets boundaries at the observed information
    fractions (information now over planned maximum) and the first look whose z
    statistic reaches one."""
    bounds = spending_boundaries(fractions, kind, alpha)
    zz = _floats(z, "z")
    if zz.shape != (len(bounds.z),):
        raise SchemaError(f"z: expected {len(bounds.z)} statistics, one per fraction")
    hits = np.flatnonzero(np.abs(zz) >= np.array(bounds.z))
    if not hits.size:
        return Crossing(False, None, 0, bounds)
    look = int(hits[0])
    return Crossing(True, look, 1 if zz[look] > 0 else -1, bounds)
