"""The checks run on one window of one (endpoint, arm, model version): what each computes
from the window's prediction records, its labels and the model's reference.

Every check returns :class:`Result` rows — (check, metric, column, value, threshold,
status, details) — and never raises for bad data: an empty or tiny window, an all-null
or constant column, NaN or infinite values become statuses (``empty``, ``too_few_rows``,
``error`` with the reason), and one broken column never hides the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prodml.core import MonitoringConfig
from prodml.monitoring._drift import DriftMethod, DriftReference, score_drift
from prodml.monitoring._performance import (
    Calibrator,
    calibration,
    classification_metrics,
    estimate_classification,
    regression_metrics,
)
from prodml.monitoring._reference import PREDICTION, MonitorReference
from prodml.stats import CategoricalProfile, NumericProfile

__all__ = [
    "LABELS_SCHEMA",
    "Result",
    "drift_checks",
    "label_checks",
    "operational_checks",
    "prediction_checks",
    "quality_checks",
]

FEATURE_PREFIX = "feature."
AGE_PREFIX = "feature_age."
STALE_PREFIX = "feature_stale."

#: Labels as the monitoring job hands them to :func:`label_checks`.
LABELS_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("row", pa.int64()),
        ("label", pa.float64()),
        ("label_time", pa.float64()),
    ]
)


@dataclass(frozen=True)
class Result:
    """One metric of one window. ``column`` is '' for window-level metrics."""

    check: str
    metric: str
    value: float | None
    column: str = ""
    threshold: float | None = None
    status: str = "ok"
    details: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check, "metric": self.metric, "column": self.column,
            "value": self.value, "threshold": self.threshold, "status": self.status,
            "details": self.details,
        }  # fmt: skip


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as float64, nulls as NaN (strings that are not numbers as NaN too)."""
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    if not _is_number_type(column.type):
        column = (
            pc.cast(column, pa.float64(), safe=False)
            if pa.types.is_decimal(column.type)
            else (pa.array([_number(v) for v in column.to_pylist()], pa.float64()))
        )
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _is_number_type(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    )


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def operational_checks(table: pa.Table, seconds: float) -> list[Result]:
    """Rows, throughput, status shares, fallbacks and latency percentiles."""
    rows = table.num_rows
    out = [
        Result("operational", "rows", float(rows)),
        Result("operational", "throughput_per_s", rows / seconds if seconds > 0 else None),
    ]
    if rows == 0:
        return out
    if "status" in table.column_names:
        statuses = table["status"].to_pylist()
        counts: dict[str, int] = {}
        for status in statuses:
            counts[str(status)] = counts.get(str(status), 0) + 1
        ok = counts.get("ok", 0)
        out.append(
            Result("operational", "error_rate", 1 - ok / rows, details={"by_status": counts})
        )
    if "error" in table.column_names:
        errors: dict[str, int] = {}
        for error in table["error"].to_pylist():
            if error:
                errors[str(error)] = errors.get(str(error), 0) + 1
        if errors:
            out.append(
                Result(
                    "operational",
                    "errors",
                    float(sum(errors.values())),
                    details={"by_type": errors},
                )
            )
    if "fallback_from" in table.column_names:
        fallbacks = rows - table["fallback_from"].null_count
        out.append(Result("operational", "fallback_rate", fallbacks / rows))
    if "latency_ms" in table.column_names:
        latency = _floats(table["latency_ms"])
        latency = latency[np.isfinite(latency)]
        if len(latency):
            p50, p95, p99 = np.percentile(latency, [50, 95, 99])
            out += [
                Result("operational", "latency_p50_ms", float(p50)),
                Result("operational", "latency_p95_ms", float(p95)),
                Result("operational", "latency_p99_ms", float(p99)),
            ]
    return out


def _feature_frame(table: pa.Table, inputs: Sequence[str]) -> pa.Table:
    """The window's feature columns under their feature names (missing ones as nulls)."""
    columns = {}
    for name in inputs:
        logged = FEATURE_PREFIX + name
        columns[name] = table[logged] if logged in table.column_names else pa.nulls(table.num_rows)
    return pa.table(columns) if columns else pa.table({})


def quality_checks(table: pa.Table, reference: MonitorReference) -> list[Result]:
    """Per input feature: missing rate (against the reference's), values out of the
    reference range, unseen categories, non-finite numbers; window-level: the share of
    records with contract violations and the features absent from the log."""
    out: list[Result] = []
    rows = table.num_rows
    if rows == 0:
        return out
    if "violations" in table.column_names:
        flagged = rows - table["violations"].null_count
        out.append(Result("quality", "violation_rate", flagged / rows))
    absent = [name for name in reference.inputs if FEATURE_PREFIX + name not in table.column_names]
    if absent:
        out.append(Result("quality", "absent_features", float(len(absent)), status="error",
                          details={"features": absent}))  # fmt: skip
    out += _freshness(table)
    drift = reference.drift
    for name in reference.inputs:
        logged = FEATURE_PREFIX + name
        if logged not in table.column_names:
            continue
        try:
            out += _column_quality(name, table[logged], drift, rows)
        except Exception as exc:  # one broken column never breaks the others
            out.append(Result("quality", "missing_rate", None, name, status="error",
                              details={"reason": f"{type(exc).__name__}: {exc}"}))  # fmt: skip
    return out


def _freshness(table: pa.Table) -> list[Result]:
    """Online-feature staleness per feature view, from ``feature_age.<view>`` and
    ``feature_stale.<view>`` (native requests): median and p95 age, stale share."""
    out: list[Result] = []
    for name in table.column_names:
        if not name.startswith(AGE_PREFIX):
            continue
        view = name[len(AGE_PREFIX) :]
        ages = _floats(table[name])
        ages = ages[np.isfinite(ages)]
        if len(ages):
            p50, p95 = np.percentile(ages, [50, 95])
            out.append(Result("quality", "feature_age_p50_s", float(p50), view))
            out.append(Result("quality", "feature_age_p95_s", float(p95), view))
        flags = STALE_PREFIX + view
        if flags in table.column_names:
            stale = _floats(table[flags])
            known = stale[np.isfinite(stale)]
            if len(known):
                out.append(Result("quality", "stale_rate", float(known.mean()), view))
    return out


def _column_quality(
    name: str, column: pa.ChunkedArray, drift: DriftReference, rows: int
) -> list[Result]:
    out: list[Result] = []
    if name in drift.numeric:
        ref = drift.numeric[name]
        values = _floats(column)
        nan = np.isnan(values)
        finite = np.isfinite(values)
        present = len(column) - column.null_count
        unreadable = present - int((~nan).sum()) if not _is_number_type(column.type) else 0
        if unreadable > 0:  # e.g. text in a numeric feature: a format violation
            out.append(
                Result("quality", "format_error_rate", unreadable / rows, name, status="breach")
            )
        missing = float(nan.mean())
        out.append(Result("quality", "missing_rate", missing, name,
                          details={"reference": ref.missing / ref.rows if ref.rows else None}))  # fmt: skip
        infinite = int((~finite & ~nan).sum())
        if infinite:
            out.append(Result("quality", "non_finite_rate", infinite / rows, name, status="breach"))
        if ref.n and finite.any():
            x = values[finite]
            outside = int(((x < ref.min) | (x > ref.max)).sum())
            out.append(Result("quality", "out_of_range_rate", outside / rows, name,
                              details={"min": ref.min, "max": ref.max}))  # fmt: skip
    elif name in drift.categorical:
        ref_c = drift.categorical[name]
        profile = CategoricalProfile.fit(column)
        out.append(Result("quality", "missing_rate", profile.missing / rows if rows else None, name,
                          details={"reference": ref_c.missing / ref_c.rows if ref_c.rows else None}))  # fmt: skip
        known = set(ref_c.categories)
        unseen = {
            c: n for c, n in zip(profile.categories, profile.counts, strict=True) if c not in known
        }
        top = dict(sorted(unseen.items(), key=lambda kv: -kv[1])[:10])
        out.append(Result("quality", "unseen_category_rate", sum(unseen.values()) / rows, name,
                          details={"top": top} if top else None))  # fmt: skip
    return out


def _methods(config: MonitoringConfig, reference: DriftReference) -> dict[str, DriftMethod]:
    out = {}
    for name in reference.columns:
        chosen = config.columns.get(name) or (
            config.numeric if name in reference.numeric else config.categorical
        )
        out[name] = DriftMethod(chosen.statistic, chosen.threshold)
    return out


def drift_checks(
    table: pa.Table, reference: MonitorReference, config: MonitoringConfig
) -> list[Result]:
    """Input drift per feature and the dataset drift share (features only)."""
    inputs = [name for name in reference.inputs if name in reference.drift.columns]
    if not inputs or table.num_rows == 0:
        return []
    if table.num_rows < config.min_rows:
        return [Result("drift", "share", None, status="too_few_rows",
                       details={"rows": table.num_rows, "min_rows": config.min_rows})]  # fmt: skip
    drift = reference.drift
    features = DriftReference(
        {n: p for n, p in drift.numeric.items() if n in inputs},
        {n: p for n, p in drift.categorical.items() if n in inputs},
        drift.rows,
    )
    importance = reference.meta.get("importance") if config.importance_weighted else None
    result = score_drift(
        features, _feature_frame(table, inputs), methods=_methods(config, features),
        importance=importance, dataset_share=config.dataset_share,
    )  # fmt: skip
    out = [
        Result(
            "drift",
            c.method,
            c.value,
            c.column,
            c.threshold,
            c.status,
            _details(c.pvalue, c.adjusted_pvalue, c.reason, c.rows, c.missing),
        )
        for c in result.columns
    ]
    top = [{"column": c.column, "value": c.value} for c in result.top(5)]
    out.append(Result("drift", "share", result.share, "", result.threshold,
                      "drift" if result.drifted else "ok", {"top": top}))  # fmt: skip
    return out


def _details(
    pvalue: float | None, adjusted: float | None, reason: str | None, rows: int, missing: int
) -> dict[str, Any]:
    details: dict[str, Any] = {"rows": rows, "missing": missing}
    if pvalue is not None:
        details.update(pvalue=pvalue, adjusted_pvalue=adjusted)
    if reason:
        details["reason"] = reason
    return details


def prediction_checks(
    table: pa.Table,
    reference: MonitorReference,
    config: MonitoringConfig,
    recent: Calibrator | None = None,
) -> list[Result]:
    """Score distribution drift, predicted positive share and estimated performance
    (calibrated by ``recent`` when given, else by the reference's calibration map)."""
    if table.num_rows == 0 or "output" not in table.column_names:
        return []
    scores = _floats(table["output"])
    scores = scores[np.isfinite(scores)]
    out: list[Result] = []
    ref = reference.drift.numeric.get(PREDICTION)
    if ref is not None and len(scores) >= config.min_rows:
        result = score_drift(DriftReference({PREDICTION: ref}, {}, ref.rows), pa.table({PREDICTION: scores}),
                             methods={PREDICTION: DriftMethod(config.numeric.statistic, config.numeric.threshold)})  # fmt: skip
        c = result.columns[0]
        out.append(Result("prediction", c.method, c.value, PREDICTION, c.threshold, c.status))
    elif ref is not None:
        out.append(Result("prediction", config.numeric.statistic, None, PREDICTION, status="too_few_rows",
                          details={"rows": len(scores), "min_rows": config.min_rows}))  # fmt: skip
    if reference.meta.get("task") != "classification" or not len(scores):
        return out
    threshold = config.classification_threshold
    positive = float(np.mean(scores >= threshold))
    ref_positive = reference.meta.get("reference_positive_rate")
    out.append(_share_change("prediction", "positive_rate", positive, ref_positive, config))
    calibrator, source = recent, "recent"
    if calibrator is None and reference.meta.get("calibrator"):
        calibrator, source = Calibrator.from_dict(reference.meta["calibrator"]), "reference"
    probabilities = calibrator.apply(scores) if calibrator is not None else np.clip(scores, 0, 1)
    estimates = estimate_classification(probabilities, scores=scores, threshold=threshold)
    for metric, estimate in estimates.items():
        details = {
            **estimate.to_dict(),
            "calibration": source if calibrator is not None else "none",
        }
        out.append(Result("estimated", metric, _finite(estimate.value), details=details))
    return out


def _share_change(
    check: str, metric: str, value: float, reference: Any, config: MonitoringConfig
) -> Result:
    """A share (labels or predictions that are positive) against the reference's: drift
    when it moved by ``label_rate_change`` or more (absolute)."""
    if reference is None:
        return Result(check, metric, value)
    change = value - float(reference)
    status = "drift" if abs(change) >= config.label_rate_change else "ok"
    return Result(check, metric, value, threshold=config.label_rate_change, status=status,
                  details={"reference": reference, "change": change})  # fmt: skip


def label_checks(
    table: pa.Table, labels: pa.Table, reference: MonitorReference, config: MonitoringConfig
) -> tuple[list[Result], int]:
    """Delayed-label performance: labels joined by request id (and row when the label
    names one); coverage, lag, realized metrics, calibration, label drift and per-segment
    metrics. ``labels`` is :data:`LABELS_SCHEMA`, one (latest) label per key. Returns
    the results and the number of labelled rows."""
    rows = table.num_rows
    if rows == 0 or "request_id" not in table.column_names or "output" not in table.column_names:
        return [], 0
    y, lag = _joined_labels(table, labels)
    labelled = int(np.isfinite(y).sum())
    out = [
        Result(
            "performance",
            "label_coverage",
            labelled / rows,
            details={"labelled": labelled, "rows": rows},
        )
    ]
    if not labelled:
        return out, 0
    out.append(Result("performance", "label_lag_median_s", float(np.nanmedian(lag))))
    scores = _floats(table["output"])
    mask = np.isfinite(y) & np.isfinite(scores)
    task = reference.meta.get("task")
    ref_metrics = reference.meta.get("reference_metrics", {})
    if task == "classification":
        metrics = classification_metrics(
            y[mask], scores[mask], threshold=config.classification_threshold
        )
        for name, value in metrics.items():
            out.append(
                Result(
                    "performance",
                    name,
                    _finite(value),
                    details={"reference": ref_metrics.get(name)},
                )
            )
        try:
            cal = calibration(y[mask], np.clip(scores[mask], 0, 1))
            out.append(Result("performance", "ece", cal.ece, details=cal.to_dict()))
        except Exception as exc:
            out.append(
                Result("performance", "ece", None, status="error", details={"reason": str(exc)})
            )
        out.append(_share_change("label", "label_rate", float(np.mean(y[mask])),
                                 reference.meta.get("reference_label_rate"), config))  # fmt: skip
    else:
        for name, value in regression_metrics(y[mask], scores[mask]).items():
            out.append(
                Result(
                    "performance",
                    name,
                    _finite(value),
                    details={"reference": ref_metrics.get(name)},
                )
            )
    out += _segments(table, y, scores, mask, task, config)
    return out, labelled


def recent_calibrator(table: pa.Table, labels: pa.Table, min_rows: int) -> Calibrator | None:
    """A calibration map fitted on the labelled records of ``table`` (an earlier window),
    or None with fewer than ``min_rows`` labelled rows or a single class."""
    if (
        table.num_rows == 0
        or "output" not in table.column_names
        or "request_id" not in table.column_names
    ):
        return None
    y, _ = _joined_labels(table, labels)
    scores = _floats(table["output"])
    keep = np.isfinite(y) & np.isfinite(scores)
    if keep.sum() < min_rows or len(np.unique(y[keep])) < 2:
        return None
    return Calibrator().fit(scores[keep], y[keep])


def _joined_labels(table: pa.Table, labels: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Each record's label (NaN without one) and label lag in seconds, by hash joins:
    labels naming a row match that row, the others every row of their request."""
    rows = table.num_rows
    row_numbers = (
        pc.cast(table["row"], pa.int64())
        if "row" in table.column_names
        else pa.array(np.zeros(rows, np.int64))
    )
    seconds = pc.cast(pc.cast(table["time"], pa.timestamp("us", tz="UTC")), pa.int64())
    records = pa.table({
        "request_id": pc.cast(table["request_id"], pa.string()), "row": row_numbers,
        "_i": pa.array(np.arange(rows)), "_t": pc.divide(pc.cast(seconds, pa.float64()), 1e6),
    })  # fmt: skip
    y, lag = np.full(rows, np.nan), np.full(rows, np.nan)
    by_request = labels.filter(pc.is_null(labels["row"])).drop_columns(["row"])
    by_row = labels.filter(pc.is_valid(labels["row"]))
    for part, keys in ((by_request, ["request_id"]), (by_row, ["request_id", "row"])):
        if part.num_rows == 0:
            continue
        hit = records.join(part, keys=keys, join_type="inner", use_threads=False)
        index = hit["_i"].to_numpy()
        y[index] = hit["label"].to_numpy()
        lag[index] = hit["label_time"].to_numpy() - hit["_t"].to_numpy()
    return y, lag


def _segments(
    table: pa.Table,
    y: np.ndarray,
    scores: np.ndarray,
    mask: np.ndarray,
    task: Any,
    config: MonitoringConfig,
) -> list[Result]:
    out: list[Result] = []
    for segment in config.segments:
        logged = FEATURE_PREFIX + segment
        if logged not in table.column_names:
            out.append(Result("segment", "rows", None, segment, status="error",
                              details={"reason": f"feature {segment!r} is not in the log"}))  # fmt: skip
            continue
        values = np.asarray([str(v) for v in table[logged].to_pylist()], dtype=object)
        for value in sorted(set(values[mask].tolist()))[:50]:
            pick = mask & (values == value)
            if pick.sum() < 2:
                continue
            if task == "classification":
                metrics = classification_metrics(
                    y[pick], scores[pick], threshold=config.classification_threshold
                )
                keep = ("roc_auc", "accuracy", "rows")
            else:
                metrics = regression_metrics(y[pick], scores[pick])
                keep = ("rmse", "mae", "rows")
            for name in keep:
                out.append(
                    Result("segment", name, _finite(metrics.get(name)), f"{segment}={value}")
                )
    return out


def profile_scores(scores: np.ndarray, bins: int) -> NumericProfile:
    """The reference profile of a model's scores."""
    return NumericProfile.fit(scores, bins=bins)
