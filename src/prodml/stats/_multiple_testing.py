"""Benjamini–Hochberg control of the false discovery rate across many tests (one per
feature), so that 200 features tested at 5% do not raise ten false drift flags.

>>> adjusted, rejected = benjamini_hochberg([0.001, 0.01, 0.03, 0.04, 0.5], alpha=0.05)
>>> adjusted.round(4).tolist()
[0.005, 0.025, 0.05, 0.05, 0.5]
>>> rejected.tolist()
[True, True, True, True, False]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["benjamini_hochberg"]


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
