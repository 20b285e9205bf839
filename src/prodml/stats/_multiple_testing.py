"""Benjamini–Hochberg control of the false discovery rate across many tests (one per
feature), so that 200 features tested at 5% do not raise ten false drift flags; Holm's
step-down control of the family-wise error rate, for a small family of decisions (the
segments or metrics of one experiment) where any false claim is costly.

>>> adjusted, rejected = benjamini_hochberg([0.001, 0.01, 0.03, 0.04, 0.5], alpha=0.05)
>>> adjusted.round(4).tolist()
[0.005, 0.025, 0.05, 0.05, 0.5]
>>> rejected.tolist()
[True, True, True, True, False]
>>> holm([0.001, 0.01, 0.03, 0.04, 0.5])[0].round(4).tolist()
[0.005, 0.04, 0.09, 0.09, 0.5]
>>> family = adjust_family({"web": 0.01, "ios": 0.04, "android": 0.03}, method="holm")
>>> family.adjusted, family.rejected
({'web': 0.03, 'ios': 0.06, 'android': 0.06}, {'web': True, 'ios': False, 'android': False})
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from prodml.core.errors import ConfigError, SchemaError

__all__ = ["AdjustedFamily", "FamilyMethod", "adjust_family", "benjamini_hochberg", "holm"]

#: How a family's p-values are adjusted: Holm (family-wise error) or BH (false discoveries).
FamilyMethod = Literal["holm", "bh"]


def benjamini_hochberg(
    pvalues: ArrayLike, alpha: float = 0.05
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """BH-adjusted p-values (as :func:`scipy.stats.false_discovery_control`) and which
    hypotheses are rejected at FDR ``alpha``. NaN p-values (a test that could not run)
    stay NaN, are never rejected and do not count among the tests."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, got shape {p.shape}")
    valid = ~np.isnan(p)
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise ValueError("pvalues must lie in [0, 1]")
    adjusted = np.full(p.shape, np.nan)
    q = p[valid]
    m = len(q)
    if m:
        order = np.argsort(q)
        scaled = q[order] * (m / np.arange(1, m + 1))  # SciPy's order of operations
        scaled = np.minimum.accumulate(scaled[::-1])[::-1]
        out = np.empty(m)
        out[order] = np.minimum(scaled, 1.0)
        adjusted[valid] = out
    return adjusted, np.where(valid, adjusted <= alpha, False)


def holm(pvalues: ArrayLike, alpha: float = 0.05) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Holm-adjusted p-values (as statsmodels' ``multipletests(method="holm")``) and which
    hypotheses the step-down procedure rejects at family-wise error ``alpha``: the i-th
    smallest of m p-values is compared with ``alpha / (m - i + 1)`` until one fails. NaN
    p-values stay NaN, are never rejected and do not count among the tests."""
    p = _checked_pvalues(pvalues, alpha)
    adjusted = np.full(p.shape, np.nan)
    rejected = np.zeros(p.shape, dtype=np.bool_)
    valid = ~np.isnan(p)
    q = p[valid]
    m = len(q)
    if m:
        order = np.argsort(q, kind="stable")
        ranked = q[order]
        multipliers = np.arange(m, 0, -1)
        out = np.empty(m)
        out[order] = np.minimum(np.maximum.accumulate(ranked * multipliers), 1.0)
        adjusted[valid] = out
        failed = np.flatnonzero(ranked > alpha / multipliers)
        stop = int(failed[0]) if len(failed) else m
        accepted = np.zeros(m, dtype=np.bool_)
        accepted[order[:stop]] = True
        rejected[valid] = accepted
    return adjusted, rejected


@dataclass(frozen=True)
class AdjustedFamily:
    """One family's raw and adjusted p-values and rejections, keyed by hypothesis name
    (``"0"``, ``"1"``, … when the family was given as a list)."""

    method: FamilyMethod
    alpha: float
    pvalues: dict[str, float | None]
    adjusted: dict[str, float | None]
    rejected: dict[str, bool]

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data (a p-value that could not be computed is None)."""
        return {
            "method": self.method,
            "alpha": self.alpha,
            "pvalues": dict(self.pvalues),
            "adjusted": dict(self.adjusted),
            "rejected": dict(self.rejected),
        }


def adjust_family(
    pvalues: Mapping[str, float | None] | Sequence[float | None],
    *,
    method: FamilyMethod = "holm",
    alpha: float = 0.05,
) -> AdjustedFamily:
    """Adjust the p-values of one explicit family of hypotheses (a mapping name → p, or
    a list) by Holm or BH. A None or NaN p-value (a test that could not run) is reported
    as None, never rejected, and not counted in the family."""
    if method not in ("holm", "bh"):
        raise ConfigError(f"method: expected 'holm' or 'bh', got {method!r}")
    if isinstance(pvalues, Mapping):
        names = [str(k) for k in pvalues]
        raw = list(pvalues.values())
    else:
        raw = list(pvalues)
        names = [str(i) for i in range(len(raw))]
    try:
        p = np.array([np.nan if v is None else float(v) for v in raw], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"pvalues: expected numbers or None, got {exc}") from None
    _checked_pvalues(p, alpha)  # both methods refuse bad input with ProdML errors
    adjust = holm if method == "holm" else benjamini_hochberg
    adjusted, rejected = adjust(p, alpha)
    return AdjustedFamily(
        method=method,
        alpha=float(alpha),
        pvalues={n: _or_none(v) for n, v in zip(names, p.tolist(), strict=True)},
        adjusted={n: _or_none(v) for n, v in zip(names, adjusted.tolist(), strict=True)},
        rejected={n: bool(r) for n, r in zip(names, rejected.tolist(), strict=True)},
    )


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _checked_pvalues(pvalues: ArrayLike, alpha: float) -> NDArray[np.float64]:
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha: expected a level in (0, 1), got {alpha!r}")
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise SchemaError(f"pvalues: expected a 1-D array, got shape {p.shape}")
    valid = ~np.isnan(p)
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise SchemaError("pvalues: expected values in [0, 1] (or NaN)")
    return p
