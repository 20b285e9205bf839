"""Offline model metrics: classification, calibration and regression, as plain floats.

Whole-set metrics come from :mod:`sklearn.metrics`. The ``grouped_*`` variants compute the
same metrics for many slices at once with ``np.bincount``; they exist because calling
sklearn once per slice measured ~25 ms per slice (300 slices → 7 s), and the tests check
them against sklearn. Every float returned is a Python float; an undefined metric is NaN.

>>> m = classification_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
>>> m["roc_auc"], m["accuracy"], m["positive_rate"]
(0.75, 0.5, 0.5)
>>> regression_metrics([1.0, 2.0, 0.0], [1.0, 3.0, 1.0])["mape"]
0.25
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn import metrics as skm

from prodml.core.errors import ConfigError, SchemaError

__all__ = [
    "METRIC_DIRECTIONS",
    "classification_metrics",
    "expected_calibration_error",
    "grouped_classification_metrics",
    "grouped_regression_metrics",
    "regression_metrics",
    "reliability_curve",
]

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.intp]

#: Which way is better for every metric prodml knows; the gate uses it for change checks.
METRIC_DIRECTIONS: dict[str, Literal["higher", "lower"]] = {
    "accuracy": "higher",
    "brier": "lower",
    "ece": "lower",
    "f1": "higher",
    "latency_p50_ms": "lower",
    "latency_p99_ms": "lower",
    "log_loss": "lower",
    "mae": "lower",
    "mape": "lower",
    "model_memory_bytes": "lower",
    "precision": "higher",
    "r2": "higher",
    "recall": "higher",
    "rmse": "lower",
    "roc_auc": "higher",
    "throughput_rows_per_s": "higher",
}

#: Scores are clipped to [EPS, 1 - EPS] before taking logs, so log loss stays finite.
EPS = 1e-15


def classification_metrics(
    y_true: Any, y_score: Any, *, threshold: float = 0.5, bins: int = 10
) -> dict[str, float]:
    """Binary metrics of positive-class scores; the thresholded ones use ``score >= threshold``.

    ``roc_auc`` is NaN when only one class is present.
    """
    y, p = binary_inputs(y_true, y_score)
    check_threshold(threshold)
    pred = p >= threshold
    both = bool(y.any() and not y.all())
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y, pred, average="binary", zero_division=0.0
    )
    out = {
        "roc_auc": skm.roc_auc_score(y, p) if both else math.nan,
        "log_loss": skm.log_loss(y, np.clip(p, EPS, 1 - EPS), labels=[False, True]),
        "brier": skm.brier_score_loss(y, p, labels=[False, True]),
        "accuracy": skm.accuracy_score(y, pred),
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "ece": expected_calibration_error(y, p, bins=bins),
        "positive_rate": y.mean(),
        "mean_score": p.mean(),
    }
    return {name: py_float(value) for name, value in out.items()}


def reliability_curve(y_true: Any, y_score: Any, *, bins: int = 10) -> dict[str, Any]:
    """Equal-width bins over [0, 1] (the last bin closed); empty bins have ``None`` means."""
    y, p = binary_inputs(y_true, y_score)
    count, sum_p, sum_y = _bin_sums(y, p, np.zeros(len(p), np.intp), 1, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    return {
        "bin_edges": [float(e) for e in edges],
        "mean_predicted": [_ratio(s, c) for s, c in zip(sum_p[0], count[0], strict=True)],
        "fraction_positive": [_ratio(s, c) for s, c in zip(sum_y[0], count[0], strict=True)],
        "count": [int(c) for c in count[0]],
    }


def expected_calibration_error(y_true: Any, y_score: Any, *, bins: int = 10) -> float:
    """Sum over non-empty bins of ``count / N * |fraction_positive - mean_predicted|``."""
    y, p = binary_inputs(y_true, y_score)
    _, sum_p, sum_y = _bin_sums(y, p, np.zeros(len(p), np.intp), 1, bins)
    return py_float(np.abs(sum_y - sum_p).sum() / len(p))


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """RMSE, MAE, R², MAPE (over rows with ``y_true != 0``; NaN if none) and mean prediction."""
    y = finite_floats(y_true, "y_true")
    p = finite_floats(y_pred, "y_pred")
    check_lengths(y, p, "y_pred")
    nonzero = y != 0
    out = {
        "rmse": skm.root_mean_squared_error(y, p),
        "mae": skm.mean_absolute_error(y, p),
        "r2": skm.r2_score(y, p) if len(y) >= 2 else math.nan,
        "mape": (
            skm.mean_absolute_percentage_error(y[nonzero], p[nonzero])
            if nonzero.any()
            else math.nan
        ),
        "mean_prediction": p.mean(),
    }
    return {name: py_float(value) for name, value in out.items()}


def grouped_classification_metrics(
    y: Bools, p: Floats, group: Ints, groups: int, *, threshold: float = 0.5, bins: int = 10
) -> dict[str, Floats]:
    """The metrics of :func:`classification_metrics` for every group ``0 … groups-1`` at once.

    ``y``/``p`` are validated labels and scores, ``group`` each row's group; each returned
    array has one value per group (NaN for empty groups). ROC-AUC is the Mann-Whitney
    statistic with tied scores ranked by their average, which is what sklearn computes.
    """
    n = _sum(group, None, groups)
    yf = y.astype(np.float64)
    pred = p >= threshold
    pos = _sum(group, yf, groups)
    tp = _sum(group, y & pred, groups)
    fp = _sum(group, ~y & pred, groups)
    fn = _sum(group, y & ~pred, groups)
    pc = np.clip(p, EPS, 1 - EPS)
    nll = -(yf * np.log(pc) + (1 - yf) * np.log1p(-pc))
    _, sum_p, sum_y = _bin_sums(y, p, group, groups, bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "roc_auc": _grouped_auc(y, p, group, groups, pos, n),
            "log_loss": _sum(group, nll, groups) / n,
            "brier": _sum(group, (p - yf) ** 2, groups) / n,
            "accuracy": (n - fp - fn) / n,
            "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
            "precision": _safe_div(tp, tp + fp),
            "recall": _safe_div(tp, tp + fn),
            "ece": np.abs(sum_y - sum_p).sum(axis=1) / n,
            "positive_rate": pos / n,
            "mean_score": _sum(group, p, groups) / n,
        }


def grouped_regression_metrics(y: Floats, p: Floats, group: Ints, groups: int) -> dict[str, Floats]:
    """The metrics of :func:`regression_metrics` for every group at once (see above)."""
    n = _sum(group, None, groups)
    err = y - p
    nonzero = y != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        # Shift each group by its first value: a constant group then has ss_tot == 0 exactly.
        present, first = np.unique(group, return_index=True)
        shift = np.zeros(groups)
        shift[present] = y[first]
        centred = y - shift[group]
        mean_c = _sum(group, centred, groups) / n
        ss_res = _sum(group, err**2, groups)
        ss_tot = _sum(group, (centred - mean_c[group]) ** 2, groups)
        # sklearn's force_finite: a constant target scores 1 when fitted exactly, else 0.
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
        ape = np.abs(err[nonzero]) / np.abs(y[nonzero])
        mape = _sum(group[nonzero], ape, groups) / _sum(group[nonzero], None, groups)
        return {
            "rmse": np.sqrt(ss_res / n),
            "mae": _sum(group, np.abs(err), groups) / n,
            "r2": np.where(n >= 2, r2, np.nan),
            "mape": mape,
            "mean_prediction": _sum(group, p, groups) / n,
        }


def binary_inputs(y_true: Any, y_score: Any) -> tuple[Bools, Floats]:
    """Validate binary labels (bool or 0/1) and scores in [0, 1]; raise :class:`SchemaError`."""
    raw = np.asarray(y_true)
    if raw.dtype == np.bool_:
        y = raw.astype(np.bool_)
    else:
        labels = finite_floats(raw, "y_true")
        if not np.isin(labels, (0.0, 1.0)).all():
            bad = np.unique(labels[~np.isin(labels, (0.0, 1.0))])[:5].tolist()
            raise SchemaError(f"y_true: expected binary labels (bool or 0/1), got {bad}")
        y = labels == 1.0
    p = finite_floats(y_score, "y_score")
    check_lengths(y, p, "y_score")
    if len(p) and (p.min() < 0.0 or p.max() > 1.0):
        raise SchemaError(
            f"y_score: expected probabilities in [0, 1], got values in [{p.min()}, {p.max()}]"
        )
    return y, p


def finite_floats(values: Any, field: str) -> Floats:
    """A non-empty 1-D float array with only finite values, else :class:`SchemaError`."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{field}: expected numbers, got {exc}") from None
    if arr.ndim != 1 or len(arr) == 0:
        raise SchemaError(f"{field}: expected a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise SchemaError(f"{field}: expected finite values, got {bad} NaN or infinite")
    return arr


def check_lengths(y: npt.NDArray[Any], other: npt.NDArray[Any], field: str) -> None:
    """Raise :class:`SchemaError` unless ``other`` has as many rows as ``y_true``."""
    if len(other) != len(y):
        raise SchemaError(f"{field}: has {len(other)} rows but y_true has {len(y)}")


def check_threshold(threshold: float) -> None:
    """The decision threshold must lie in [0, 1]."""
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold: expected a probability in [0, 1], got {threshold!r}")


def py_float(value: Any) -> float:
    """A Python float; every NaN becomes the one :data:`math.nan` so equal dicts compare equal."""
    out = float(value)
    return math.nan if math.isnan(out) else out


def _bin_sums(
    y: Bools, p: Floats, group: Ints, groups: int, bins: int
) -> tuple[Floats, Floats, Floats]:
    """Per (group, bin): row count, score sum and positive count, each shaped (groups, bins)."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"bins: expected a positive integer, got {bins!r}")
    inner = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    key = group * bins + np.searchsorted(inner, p, side="right")
    size = groups * bins
    shape = (groups, bins)
    count = _sum(key, None, size).reshape(shape)
    return count, _sum(key, p, size).reshape(shape), _sum(key, y, size).reshape(shape)


def _grouped_auc(y: Bools, p: Floats, group: Ints, groups: int, pos: Floats, n: Floats) -> Floats:
    order = np.lexsort((p, group))
    gs, ps = group[order], p[order]
    new_run = np.ones(len(gs), np.bool_)
    new_run[1:] = (gs[1:] != gs[:-1]) | (ps[1:] != ps[:-1])
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], len(gs)) - 1
    mid = ((starts + ends) / 2.0)[np.cumsum(new_run) - 1]
    group_start = np.concatenate(([0.0], np.cumsum(n)[:-1]))
    rank = mid - group_start[gs] + 1.0
    rank_sum = _sum(gs, rank * y[order], groups)
    neg = n - pos
    auc = (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)
    return np.where((pos > 0) & (neg > 0), auc, np.nan)


def _sum(index: Ints, weights: Any, size: int) -> Floats:
    """Per-index sums of ``weights`` (row counts when ``weights`` is None) as floats."""
    return np.bincount(index, weights, size).astype(np.float64)


def _safe_div(num: Floats, den: Floats) -> Floats:
    """``num / den`` with 0 where ``den`` is 0, as sklearn's ``zero_division=0.0``."""
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def _ratio(total: float, count: float) -> float | None:
    return float(total / count) if count else None
