"""Treatment effects per segment and per day since first exposure (novelty), each row of
a log counted once with ``np.bincount``, never a Python loop over rows.

The effect in a group is the difference ``B − A`` of the arms' means (``kind="mean"``:
Welch's t test, as ``scipy.stats.ttest_ind(equal_var=False)``) or of their conversion
rates (``kind="proportion"``: the Wald z test and interval with the unpooled standard
error, so the interval excludes 0 exactly when ``p < alpha``). The segments of one
analysis form one family; their p-values are adjusted within it (Holm or BH).

Novelty: a new model can win at first because it is new. :func:`novelty_effects` gives
the effect on each day since a unit's first exposure and the slope of the effect over
days (weighted least squares, weights ``1/se²`` taken as known, a z test of the slope).

>>> arm = np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
>>> y = np.array([1.0, 2.0, 2.0, 3.0, 1.0, 3.0, 2.0, 5.0])
>>> seg = np.array(["ios", "ios", "ios", "ios", "web", "web", "web", "web"])
>>> r = segment_effects(arm, y, seg)
>>> r.segments.tolist(), r.effect.tolist()
(['ios', 'web'], [1.0, 2.5])
>>> r.p_value.round(4).tolist(), r.p_adjusted.round(4).tolist()
([0.2929, 0.1987], [0.3975, 0.3975])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from prodml.core.errors import ConfigError, SchemaError
from prodml.stats._metrics import check_alpha, finite_floats
from prodml.stats._multiple_testing import FamilyMethod, benjamini_hochberg, holm

__all__ = ["EffectKind", "NoveltyEffects", "SegmentEffects", "novelty_effects", "segment_effects"]

Floats = npt.NDArray[np.float64]
EffectKind = Literal["mean", "proportion"]

_SECONDS_PER_DAY = 86_400.0


def _json(values: npt.NDArray[Any]) -> list[Any]:
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values.tolist()]


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True, eq=False)
class SegmentEffects:
    """Per-group effects ``B − A``, one entry per group in ``segments`` (sorted). NaN
    where a group's effect is undefined (an arm with no rows, or one row for a mean)."""

    kind: EffectKind
    method: FamilyMethod
    alpha: float
    segments: npt.NDArray[Any]
    n_a: npt.NDArray[np.int64]
    n_b: npt.NDArray[np.int64]
    mean_a: Floats
    mean_b: Floats
    effect: Floats
    se: Floats
    ci_low: Floats
    ci_high: Floats
    p_value: Floats
    p_adjusted: Floats

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: one dict per segment; undefined values are None."""
        columns = {
            name: _json(getattr(self, name))
            for name in (
                "segments", "n_a", "n_b", "mean_a", "mean_b", "effect", "se",
                "ci_low", "ci_high", "p_value", "p_adjusted",
            )
        }  # fmt: skip
        rows = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        for row in rows:
            row["segment"] = row.pop("segments")
        return {"kind": self.kind, "method": self.method, "alpha": self.alpha, "segments": rows}


@dataclass(frozen=True, eq=False)
class NoveltyEffects:
    """The effect on each day since first exposure (``days.segments`` holds the day
    numbers) and the weighted least-squares slope of the effect per day, with its
    standard error, interval and two-sided p (NaN with fewer than two usable days)."""

    days: SegmentEffects
    slope: float
    slope_se: float
    slope_ci_low: float
    slope_ci_high: float
    slope_p_value: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; undefined values are None."""
        return {
            "days": self.days.to_dict(),
            "slope": _json_float(self.slope),
            "slope_se": _json_float(self.slope_se),
            "slope_ci_low": _json_float(self.slope_ci_low),
            "slope_ci_high": _json_float(self.slope_ci_high),
            "slope_p_value": _json_float(self.slope_p_value),
        }


def _arm(treatment: Any) -> npt.NDArray[np.bool_]:
    raw = np.asarray(treatment)
    if raw.dtype == np.bool_:
        if raw.ndim != 1:
            raise SchemaError(f"treatment: expected a 1-D array, got shape {raw.shape}")
        arm: npt.NDArray[np.bool_] = raw
        return arm
    values = finite_floats(raw, "treatment")
    if not ((values == 0.0) | (values == 1.0)).all():
        raise SchemaError("treatment: expected an arm indicator (bool or 0/1, 1 = arm B)")
    is_b: npt.NDArray[np.bool_] = values == 1.0
    return is_b


def _outcome(outcome: Any, kind: str, n: int) -> Floats:
    if kind not in ("mean", "proportion"):
        raise ConfigError(f"kind: expected 'mean' or 'proportion', got {kind!r}")
    y = finite_floats(outcome, "outcome")
    if len(y) != n:
        raise SchemaError(f"outcome: has {len(y)} rows but treatment has {n}")
    if kind == "proportion" and not ((y == 0.0) | (y == 1.0)).all():
        raise SchemaError("outcome: expected 0/1 conversions for kind='proportion'")
    return y


def _welch(
    mean_a: Floats, var_a: Floats, n_a: Floats, mean_b: Floats, var_b: Floats, n_b: Floats,
    kind: str,
) -> tuple[Floats, Floats, Floats]:  # fmt: skip
    """Effect, standard error and the reference distribution's degrees of freedom (inf
    for the z test of proportions) of each group; NaN where undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        va, vb = var_a / n_a, var_b / n_b
        se = np.sqrt(va + vb)
        if kind == "proportion":
            df = np.where((n_a > 0) & (n_b > 0), np.inf, np.nan)
        else:
            df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
            df = np.where((n_a > 1) & (n_b > 1), df, np.nan)
    effect = np.where(np.isnan(df), np.nan, mean_b - mean_a)
    return effect, np.where(np.isnan(df), np.nan, se), df


def _inference(effect: Floats, se: Floats, df: Floats, alpha: float) -> tuple[Floats, ...]:
    """Two-sided p and ``1 − alpha`` interval from Student's t (normal where ``df`` is
    inf). A zero standard error gives p = 1 for no effect, 0 for any other."""
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = effect / se
        p = np.where(
            np.isinf(df), 2 * special.ndtr(-np.abs(stat)), 2 * stats.t.sf(np.abs(stat), df)
        )
        quantile = np.where(np.isinf(df), special.ndtri(1 - alpha / 2), stats.t.isf(alpha / 2, df))
        half = np.where(se == 0, 0.0, quantile * se)
    p = np.where(se == 0, np.where(effect == 0, 1.0, 0.0), p)
    p = np.where(np.isnan(effect), np.nan, p)
    return effect - half, effect + half, p


def _grouped(
    arm: npt.NDArray[np.bool_], y: Floats, index: npt.NDArray[np.intp], labels: npt.NDArray[Any],
    kind: EffectKind, alpha: float, method: FamilyMethod,
) -> SegmentEffects:  # fmt: skip
    """The effects of the groups ``0 … len(labels)-1`` given each row's group ``index``."""
    if method not in ("holm", "bh"):
        raise ConfigError(f"method: expected 'holm' or 'bh', got {method!r}")
    groups = len(labels)
    cell = index * 2 + arm  # group g, arm A → 2g; arm B → 2g + 1
    n = np.bincount(cell, minlength=2 * groups).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = np.bincount(cell, y, 2 * groups) / n
        if kind == "proportion":
            var = means * (1.0 - means)
        else:
            var = np.bincount(cell, (y - means[cell]) ** 2, 2 * groups) / (n - 1)
    n_a, n_b = n[0::2], n[1::2]
    effect, se, df = _welch(means[0::2], var[0::2], n_a, means[1::2], var[1::2], n_b, kind)
    low, high, p = _inference(effect, se, df, alpha)
    adjusted = (holm if method == "holm" else benjamini_hochberg)(p, alpha)[0]
    return SegmentEffects(
        kind=kind, method=method, alpha=alpha, segments=labels,
        n_a=n_a.astype(np.int64), n_b=n_b.astype(np.int64),
        mean_a=means[0::2], mean_b=means[1::2], effect=effect, se=se,
        ci_low=low, ci_high=high, p_value=p, p_adjusted=adjusted,
    )  # fmt: skip


def segment_effects(
    treatment: Any,
    outcome: Any,
    segment: Any,
    *,
    kind: EffectKind = "mean",
    alpha: float = 0.05,
    method: FamilyMethod = "holm",
) -> SegmentEffects:
    """The effect ``B − A`` in each segment, with a ``1 − alpha`` interval, a two-sided
    p and the p adjusted (``method``: Holm or BH) within the family of segments.

    ``treatment`` is each row's arm (True or 1 for B), ``outcome`` its value (0/1 for
    proportions) and ``segment`` its segment label (any sortable values).
    """
    alpha = check_alpha(alpha)
    arm = _arm(treatment)
    y = _outcome(outcome, kind, len(arm))
    seg = np.asarray(segment)
    if seg.shape != arm.shape:
        raise SchemaError(f"segment: expected {len(arm)} labels in a 1-D array, got {seg.shape}")
    labels, index = np.unique(seg, return_inverse=True)
    return _grouped(arm, y, index.astype(np.intp), labels, kind, alpha, method)


def _days_since(first_exposure: Any, event_time: Any, bucket: Any, n: int) -> Floats:
    first, event = np.asarray(first_exposure), np.asarray(event_time)
    for field, arr in (("first_exposure", first), ("event_time", event)):
        if arr.shape != (n,):
            raise SchemaError(f"{field}: expected {n} times in a 1-D array, got {arr.shape}")
    if np.issubdtype(first.dtype, np.datetime64) or np.issubdtype(event.dtype, np.datetime64):
        try:
            elapsed = (event - first) / np.timedelta64(1, "us")
            width = (np.timedelta64(1, "D") if bucket is None else bucket) / np.timedelta64(1, "us")
        except (TypeError, ValueError) as exc:
            raise SchemaError(
                f"first_exposure, event_time: expected datetime64 times and bucket a timedelta64 ({exc})"
            ) from None
        if np.isnat(first).any() or np.isnat(event).any():
            raise SchemaError("first_exposure, event_time: expected no missing (NaT) times")
        elapsed = np.asarray(elapsed, dtype=np.float64)
    else:
        elapsed = finite_floats(event, "event_time") - finite_floats(first, "first_exposure")
        width = _SECONDS_PER_DAY if bucket is None else bucket
    width = float(width)
    if not math.isfinite(width) or width <= 0:
        raise ConfigError(f"bucket: expected a positive duration, got {bucket!r}")
    if len(elapsed) and elapsed.min() < 0:
        raise SchemaError("event_time: expected no event before the unit's first_exposure")
    days: Floats = np.floor(elapsed / width)
    return days


def novelty_effects(
    treatment: Any,
    outcome: Any,
    first_exposure: Any,
    event_time: Any,
    *,
    bucket: Any = None,
    kind: EffectKind = "mean",
    alpha: float = 0.05,
    method: FamilyMethod = "holm",
) -> NoveltyEffects:
    """The effect ``B − A`` per day bucket since each row's unit was first exposed, and
    the trend of the effect over days.

    Times are ``datetime64`` arrays (``bucket`` a ``timedelta64``, default one day) or
    numbers of seconds (``bucket`` in seconds, default 86 400). The slope is the
    weighted least-squares fit of the per-day effects on the day number, weights
    ``1/se²``; its variance ``1/Σw(d − d̄)²`` treats the standard errors as known.

    >>> arm = np.tile([False, True], 6)
    >>> y = np.array([1, 3, 2, 4, 1, 2, 2, 3, 1, 1, 2, 2], dtype=float)
    >>> days = np.repeat([0.0, 1.0, 2.0], 4) * 86_400
    >>> r = novelty_effects(arm, y, np.zeros(12), days + 60)
    >>> r.days.segments.tolist(), r.days.effect.tolist(), round(r.slope, 6)
    ([0, 1, 2], [2.0, 1.0, 0.0], -1.0)
    """
    alpha = check_alpha(alpha)
    arm = _arm(treatment)
    y = _outcome(outcome, kind, len(arm))
    day = _days_since(first_exposure, event_time, bucket, len(arm))
    labels, index = np.unique(day.astype(np.int64), return_inverse=True)
    days = _grouped(arm, y, index.astype(np.intp), labels, kind, alpha, method)
    slope, slope_se = _trend(labels.astype(np.float64), days.effect, days.se)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = slope / slope_se
    p = float(2 * special.ndtr(-abs(z))) if slope_se > 0 else math.nan
    half = float(special.ndtri(1 - alpha / 2)) * slope_se
    return NoveltyEffects(days, slope, slope_se, slope - half, slope + half, p)


def _trend(day: Floats, effect: Floats, se: Floats) -> tuple[float, float]:
    """Weighted least-squares slope of ``effect`` on ``day`` (weights ``1/se²``, days
    with an undefined or zero standard error left out) and its standard error."""
    usable = np.isfinite(effect) & np.isfinite(se) & (se > 0)
    if np.count_nonzero(usable) < 2:
        return math.nan, math.nan
    d, e, w = day[usable], effect[usable], 1.0 / se[usable] ** 2
    centred = d - np.sum(w * d) / np.sum(w)
    sxx = float(np.sum(w * centred**2))
    slope = float(np.sum(w * centred * e)) / sxx
    return slope, math.sqrt(1.0 / sxx)
