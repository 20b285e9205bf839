"""The catalogue of monitoring metrics: every ``<check>.<metric>`` a monitoring pass
emits, with its scope. It is the one list both sides use: the monitoring checks build
each result through it (a name outside it is refused), and alert rules are validated
against it when the config loads. Pure data, no I/O.

A metric's scope is ``window`` (one value per window: a rule on it takes no ``column``)
or ``column`` (one value per column — a feature, a feature view, a segment value, or the
model's ``prediction``: a rule on it needs ``column``, a name or ``"*"``). ``drift.value``
and ``prediction.value`` stand for whichever drift statistic a column is scored with.

>>> MONITOR_METRICS["quality.missing_rate"].scope
'column'
>>> closest_metric("quality.missing_rat")
'quality.missing_rate'
>>> MONITOR_METRICS["performance.roc_auc"].waits_for_labels
True
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "CLASSIFICATION_METRICS",
    "DRIFT_STATISTICS",
    "ESTIMATED_METRICS",
    "LABEL_CHECKS",
    "MONITOR_METRICS",
    "NUMERIC_DRIFT_STATISTICS",
    "REGRESSION_METRICS",
    "DriftStatistic",
    "MonitorMetric",
    "closest_metric",
    "describe_metrics",
]

MetricScope = Literal["window", "column"]
DriftStatistic = Literal[
    "wasserstein", "psi", "jensen_shannon", "hellinger", "kl", "linf", "ks", "chi_square",
    "g_test",
]  # fmt: skip
#: Every drift statistic, by the name its results carry.
DRIFT_STATISTICS: tuple[str, ...] = get_args(DriftStatistic)
#: The drift statistics that apply to numeric columns (and to the model's scores).
NUMERIC_DRIFT_STATISTICS = ("wasserstein", "ks", "psi", "jensen_shannon", "hellinger", "kl")
#: The realized metrics of a classifier's labelled window.
CLASSIFICATION_METRICS = (
    "roc_auc", "log_loss", "brier", "accuracy", "f1", "precision", "recall", "positive_rate",
    "label_rate",
)  # fmt: skip
#: The realized metrics of a regressor's labelled window.
REGRESSION_METRICS = ("rmse", "mae", "r2", "bias")
#: The metrics estimated without labels.
ESTIMATED_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
#: Checks whose results change as labels arrive: rules on them wait for ``label_horizon``.
LABEL_CHECKS = ("performance", "label", "segment")


@dataclass(frozen=True)
class MonitorMetric:
    """One metric of one check: its scope, what its column is, and what it measures."""

    check: str
    metric: str
    scope: MetricScope
    description: str
    column: str = ""

    @property
    def name(self) -> str:
        return f"{self.check}.{self.metric}"

    @property
    def waits_for_labels(self) -> bool:
        """Whether rules on it see a window only once its labels are final."""
        return self.check in LABEL_CHECKS

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "check": self.check, "metric": self.metric, "scope": self.scope,
            "column": self.column or None, "waits_for_labels": self.waits_for_labels,
            "description": self.description,
        }  # fmt: skip


def _window(check: str, names: Iterable[str], description: str) -> list[MonitorMetric]:
    return [MonitorMetric(check, name, "window", description) for name in names]


def _columns(
    check: str, names: Iterable[str], column: str, description: str
) -> list[MonitorMetric]:
    return [MonitorMetric(check, name, "column", description, column) for name in names]


_FEATURE = "a model input"
_CATALOGUE: list[MonitorMetric] = [
    *_window("operational", ["rows"], "records in the window"),
    *_window("operational", ["throughput_per_s"], "records per second of the window"),
    *_window("operational", ["error_rate"], "share of records whose status is not ok"),
    *_window("operational", ["errors"], "records with an error type"),
    *_window("operational", ["fallback_rate"], "share of records answered by a fallback"),
    *_window(
        "operational",
        ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"],
        "latency percentile, milliseconds",
    ),
    *_window("quality", ["violation_rate"], "share of records with a contract violation"),
    *_window("quality", ["absent_features"], "model inputs absent from the log"),
    *_columns(
        "quality",
        ["missing_rate"],
        _FEATURE,
        "share of missing values (flagged above the reference's rate plus an increase)",
    ),
    *_columns(
        "quality",
        ["out_of_range_rate"],
        _FEATURE,
        "share of numbers outside the reference's [min, max]",
    ),
    *_columns(
        "quality", ["unseen_category_rate"], _FEATURE, "share of categories the reference never saw"
    ),
    *_columns("quality", ["non_finite_rate"], _FEATURE, "share of ±inf numbers"),
    *_columns(
        "quality",
        ["format_error_rate"],
        _FEATURE,
        "share of values logged as text that are not numbers",
    ),
    *_columns(
        "quality",
        ["feature_age_p50_s", "feature_age_p95_s"],
        "a feature view",
        "age of the online features served, seconds",
    ),
    *_columns("quality", ["stale_rate"], "a feature view", "share of stale online features"),
    *_window("drift", ["share"], "share of drifted features (importance-weighted if set)"),
    *_columns("drift", ["value"], _FEATURE, "the column's drift statistic, whichever it is"),
    *_columns("drift", DRIFT_STATISTICS, _FEATURE, "drift statistic against the reference"),
    *_window("prediction", ["positive_rate"], "share of scores at or above the threshold"),
    *_columns(
        "prediction",
        ["value", *NUMERIC_DRIFT_STATISTICS],
        "prediction",
        "drift of the score distribution",
    ),
    *_window("estimated", ESTIMATED_METRICS, "estimated without labels, calibrated scores"),
    *_window("performance", ["label_coverage"], "share of records with a label"),
    *_window("performance", ["label_lag_median_s"], "median label delay, seconds"),
    *_window("performance", ["ece"], "expected calibration error"),
    *_window("performance", ["rows", "dropped"], "labelled rows scored, and dropped (NaN)"),
    *_window("performance", CLASSIFICATION_METRICS, "realized on the labelled rows"),
    *_window("performance", REGRESSION_METRICS, "realized on the labelled rows"),
    *_window("label", ["label_rate"], "share of positive labels (label drift)"),
    *_columns(
        "segment",
        ["rows", "roc_auc", "accuracy", "rmse", "mae"],
        "<segment>=<value>",
        "realized per value of a [monitoring] segments column",
    ),
    *_window("reference", ["available"], "the model version's reference could be fitted"),
    *_window(
        "log",
        ["quarantined_files"],
        "unreadable prediction or label log files of the window's hours, moved to the quarantine",
    ),
]
#: Every metric by its ``<check>.<metric>`` name, in catalogue order.
MONITOR_METRICS: Mapping[str, MonitorMetric] = {m.name: m for m in _CATALOGUE}


def closest_metric(name: str) -> str | None:
    """The catalogue name nearest to ``name`` (a typo's likely intent), or None."""
    found = difflib.get_close_matches(name, list(MONITOR_METRICS), n=1, cutoff=0.6)
    return found[0] if found else None


def describe_metrics() -> str:
    """Every name, grouped by check: ``drift.{share, value, …}; quality.{…}``.

    >>> describe_metrics().startswith("operational.{rows, throughput_per_s, error_rate")
    True
    """
    groups: dict[str, list[str]] = {}
    for metric in MONITOR_METRICS.values():
        groups.setdefault(metric.check, []).append(metric.metric)
    return "; ".join(f"{check}.{{{', '.join(names)}}}" for check, names in groups.items())
