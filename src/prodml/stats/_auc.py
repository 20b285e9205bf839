"""ROC-AUC of one model with its DeLong variance, for comparing models scored on
*different* rows (two arms of an experiment): the AUCs are independent, so the variance
of their difference is the sum of the two variances. (Models scored on the same rows
need the covariance too: :func:`~prodml.stats.delong_test`.)

The variance is DeLong's (1988) with Sun & Xu's (2014) midrank structural components,
as in :func:`~prodml.stats.delong_test`: for positives X (m of them) and negatives Y
(n), ``V10_i = (Tz_i − Tx_i) / n`` and ``V01_j = 1 − (Tz_j − Ty_j) / m`` where T are
midranks among all scores (z), among the positives (x) and among the negatives (y);
``AUC = mean(V10)`` (ties count one half, equal to scikit-learn's) and ``Var(AUC) =
s²(V10)/m + s²(V01)/n`` (sample variances, ddof 1; a single row contributes 0).

:func:`grouped_delong_auc` does it for many groups at once (arms × days, arms ×
segments) with one sort, never a loop over groups.

>>> auc, var = delong_auc([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.7])
>>> round(auc, 4), round(var, 5)
(0.8889, 0.02469)
>>> delong_auc([1, 1], [0.2, 0.3])
(nan, nan)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from prodml.core.errors import SchemaError
from prodml.stats._metrics import finite_floats

__all__ = ["delong_auc", "grouped_delong_auc"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def delong_auc(y_true: Any, y_score: Any) -> tuple[float, float]:
    """The ROC-AUC of ``y_score`` against binary ``y_true`` (bool or 0/1; any finite
    scores) and its DeLong variance; NaN for both with a single class."""
    raw = np.asarray(y_true)
    y = raw.astype(np.bool_) if raw.dtype == np.bool_ else _binary(finite_floats(raw, "y_true"))
    score = finite_floats(y_score, "y_score")
    if y.ndim != 1 or len(y) != len(score):
        raise SchemaError(f"y_score: has {len(score)} rows but y_true has {len(y)}")
    auc, var, _, _ = grouped_delong_auc(y, score, np.zeros(len(y), np.int64), 1)
    return float(auc[0]), float(var[0])


def _binary(labels: Floats) -> npt.NDArray[np.bool_]:
    binary = (labels == 0.0) | (labels == 1.0)
    if not binary.all():
        bad = np.unique(labels[~binary])[:5].tolist()
        raise SchemaError(f"y_true: expected binary labels (bool or 0/1), got {bad}")
    out: npt.NDArray[np.bool_] = labels == 1.0
    return out


def grouped_delong_auc(
    y: npt.NDArray[np.bool_], score: Floats, group: npt.NDArray[np.integer[Any]], groups: int
) -> tuple[Floats, Floats, Ints, Ints]:
    """Per group ``0 … groups-1``: the AUC, its DeLong variance, and the numbers of
    positives and negatives. ``y`` (bool), ``score`` (finite floats) and ``group``
    (ints in range) are checked arrays of one length. NaN where a group lacks a class.

    >>> auc, var, pos, neg = grouped_delong_auc(
    ...     np.array([0, 1, 0, 1, 1, 0], bool), np.array([.1, .9, .3, .2, .8, .7]),
    ...     np.array([0, 0, 1, 1, 1, 1]), 3)
    >>> auc.tolist()[:2], pos.tolist(), neg.tolist()
    ([1.0, 0.5], [1, 2, 0], [1, 2, 0])
    """
    pos = np.bincount(group, weights=y, minlength=groups).astype(np.int64)
    total = np.bincount(group, minlength=groups).astype(np.int64)
    neg = total - pos
    order = np.lexsort((score, group))
    g, s, yy = group[order], score[order], y[order]
    tz = _midranks(g, s)
    tx = _midranks(g[yy], s[yy])
    ty = _midranks(g[~yy], s[~yy])
    m, n = pos.astype(np.float64), neg.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        v10 = (tz[yy] - tx) / n[g[yy]]
        v01 = 1.0 - (tz[~yy] - ty) / m[g[~yy]]
        auc = np.bincount(g[yy], weights=v10, minlength=groups) / m
        var = (
            _component_variance(v10, g[yy], m, groups) / m
            + _component_variance(v01, g[~yy], n, groups) / n
        )
    undefined = (pos == 0) | (neg == 0)
    return (
        np.where(undefined, math.nan, auc),
        np.where(undefined, math.nan, var),
        pos,
        neg,
    )


def _midranks(group: npt.NDArray[np.integer[Any]], values: Floats) -> Floats:
    """1-based midrank of each value within its group, for rows sorted by (group, value)."""
    count = len(values)
    if count == 0:
        return np.zeros(0)
    new_run = np.ones(count, np.bool_)
    new_run[1:] = (group[1:] != group[:-1]) | (values[1:] != values[:-1])
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], count) - 1
    mid = ((starts + ends) / 2.0)[np.cumsum(new_run) - 1]
    new_group = np.ones(count, np.bool_)
    new_group[1:] = group[1:] != group[:-1]
    group_start = np.flatnonzero(new_group)[np.cumsum(new_group) - 1]
    ranks: Floats = mid - group_start + 1.0
    return ranks


def _component_variance(
    values: Floats, group: npt.NDArray[np.integer[Any]], count: Floats, groups: int
) -> Floats:
    """Per group, the sample variance (ddof 1) of ``values``; 0 for fewer than two."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(group, weights=values, minlength=groups) / count
        squares = np.bincount(group, weights=(values - mean[group]) ** 2, minlength=groups)
        out: Floats = np.where(count > 1, squares / (count - 1), 0.0)
    return out
