"""Offline model metrics as training reports them: plain floats, NaN where undefined.

Every metric is defined once, in :mod:`prodml.stats` (see its conventions); these are
its training views. They refuse an empty input (an evaluation needs rows), report an
undefined metric as NaN (stored as ``null`` in JSON) rather than None, and name the
share of positive labels ``positive_rate``. The ``grouped_*`` variants compute the same
metrics for many slices at once.

>>> m = classification_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
>>> m["roc_auc"], m["accuracy"], m["positive_rate"]
(0.75, 0.5, 0.5)
>>> regression_metrics([1.0, 2.0, 0.0], [1.0, 3.0, 1.0])["mape"]
0.25
>>> classification_metrics([1, 1], [0.2, 0.9])["roc_auc"]
nan
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from prodml import stats
from prodml.core.errors import SchemaError
from prodml.stats import check_threshold

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

#: Training's name for each reported :mod:`prodml.stats` metric, in report order.
_CLASSIFICATION = {
    "roc_auc": "roc_auc",
    "log_loss": "log_loss",
    "brier": "brier",
    "accuracy": "accuracy",
    "f1": "f1",
    "precision": "precision",
    "recall": "recall",
    "ece": "ece",
    "positive_rate": "label_rate",
    "mean_score": "mean_score",
}
_REGRESSION = {name: name for name in ("rmse", "mae", "r2", "mape", "mean_prediction")}


def classification_metrics(
    y_true: Any, y_score: Any, *, threshold: float = 0.5, bins: int = 10
) -> dict[str, float]:
    """Binary metrics of positive-class scores (:func:`prodml.stats.classification_metrics`);
    ``positive_rate`` is the share of positive labels, ``roc_auc`` NaN with one class."""
    check_threshold(threshold)
    y, p = binary_inputs(y_true, y_score)
    return _view(
        stats.classification_metrics(y, p, threshold=threshold, bins=bins), _CLASSIFICATION
    )


def reliability_curve(y_true: Any, y_score: Any, *, bins: int = 10) -> dict[str, Any]:
    """Equal-width bins over [0, 1] (the last bin closed); empty bins have ``None`` means."""
    return stats.reliability_curve(*binary_inputs(y_true, y_score), bins=bins)


def expected_calibration_error(y_true: Any, y_score: Any, *, bins: int = 10) -> float:
    """Sum over non-empty bins of ``count / N * |fraction_positive - mean_predicted|``."""
    return py_float(stats.expected_calibration_error(*binary_inputs(y_true, y_score), bins=bins))


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """RMSE, MAE, R², MAPE (over rows with ``y_true != 0``; NaN if none) and mean prediction."""
    y = finite_floats(y_true, "y_true")
    p = finite_floats(y_pred, "y_pred")
    return _view(stats.regression_metrics(y, p), _REGRESSION)


def grouped_classification_metrics(
    y: Bools, p: Floats, group: Ints, groups: int, *, threshold: float = 0.5, bins: int = 10
) -> dict[str, Floats]:
    """:func:`classification_metrics` for every group ``0 … groups-1`` at once (one array
    value per group, NaN for empty groups); ``y``/``p`` are checked labels and scores."""
    grouped = stats.grouped_classification_metrics(
        y, p, group, groups, threshold=threshold, bins=bins
    )
    return {name: grouped[source] for name, source in _CLASSIFICATION.items()}


def grouped_regression_metrics(y: Floats, p: Floats, group: Ints, groups: int) -> dict[str, Floats]:
    """:func:`regression_metrics` for every group at once (see above)."""
    grouped = stats.grouped_regression_metrics(y, p, group, groups)
    return {name: grouped[source] for name, source in _REGRESSION.items()}


def binary_inputs(y_true: Any, y_score: Any) -> tuple[Bools, Floats]:
    """Non-empty binary labels and scores in [0, 1] (:func:`prodml.stats.binary_inputs`)."""
    y, p = stats.binary_inputs(y_true, y_score)
    if len(y) == 0:
        raise SchemaError("y_true: expected a non-empty 1-D array, got shape (0,)")
    return y, p


def finite_floats(values: Any, field: str) -> Floats:
    """A non-empty 1-D float array with only finite values, else :class:`SchemaError`."""
    arr = stats.finite_floats(values, field)
    if len(arr) == 0:
        raise SchemaError(f"{field}: expected a non-empty 1-D array, got shape {arr.shape}")
    return arr


def check_lengths(y: npt.NDArray[Any], other: npt.NDArray[Any], field: str) -> None:
    """Raise :class:`SchemaError` unless ``other`` has as many rows as ``y_true``."""
    if len(other) != len(y):
        raise SchemaError(f"{field}: has {len(other)} rows but y_true has {len(y)}")


def py_float(value: Any) -> float:
    """A Python float (None is NaN); every NaN becomes the one :data:`math.nan` so equal
    dicts compare equal."""
    if value is None:
        return math.nan
    out = float(value)
    return math.nan if math.isnan(out) else out


def _view(metrics: Mapping[str, float | None], names: Mapping[str, str]) -> dict[str, float]:
    return {name: py_float(metrics[source]) for name, source in names.items()}
