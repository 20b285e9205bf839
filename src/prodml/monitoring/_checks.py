"""The checks run on one window of one (endpoint, arm, model version): what each computes
from the window's prediction records, its labels and the model's reference.

Every check returns :class:`Result` rows — (check, metric, column, value, threshold,
status, details), built by :func:`emit` under a name of the metric catalogue — and never
raises for bad data: an empty or tiny window, an all-null or constant column, NaN or
infinite values become statuses (``empty``, ``too_few_rows``, ``error`` with the
reason), and one broken column never hides the others. The data-quality checks live in
:mod:`prodml.monitoring._quality`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prodml.core import MonitoringConfig
from prodml.core._monitor_metrics import CLASSIFICATION_METRICS, ESTIMATED_METRICS
from prodml.monitoring._drift import DriftMethod, DriftReference, score_drift
from prodml.monitoring._performance import (
    Calibrator,
    calibration,
    classification_metrics,
    estimate_classification,
    regression_metrics,
)
from prodml.monitoring._quality import quality_checks
from prodml.monitoring._reference import PREDICTION, MonitorReference
from prodml.monitoring._result import Result, emit, finite, floats
from prodml.stats import NumericProfile
from prodml.storage import feature_column

__all__ = [
    "Result",
    "drift_checks",
    "emit",
    "label_checks",
    "operational_checks",
    "prediction_checks",
    "quality_checks",
]


def operational_checks(table: pa.Table, seconds: float) -> list[Result]:
    """Rows, throughput, status shares, fallbacks and latency percentiles."""
    rows = table.num_rows
    out = [
        emit("operational", "rows", float(rows)),
        emit("operational", "throughput_per_s", rows / seconds if seconds > 0 else None),
    ]
    if rows == 0:
        return out
    if "status" in table.column_names:
        statuses = table["status"].to_pylist()
        counts: dict[str, int] = {}
        for status in statuses:
            counts[str(status)] = counts.get(str(status), 0) + 1
        ok = counts.get("ok", 0)
        out.append(emit("operational", "error_rate", 1 - ok / rows, details={"by_status": counts}))
    if "error" in table.column_names:
        errors: dict[str, int] = {}
        for error in table["error"].to_pylist():
            if error:
                errors[str(error)] = errors.get(str(error), 0) + 1
        if errors:
            out.append(
                emit(
                    "operational",
                    "errors",
                    float(sum(errors.values())),
                    details={"by_type": errors},
                )
            )
    if "fallback_from" in table.column_names:
        fallbacks = rows - table["fallback_from"].null_count
        out.append(emit("operational", "fallback_rate", fallbacks / rows))
    if "latency_ms" in table.column_names:
        latency = floats(table["latency_ms"])
        latency = latency[np.isfinite(latency)]
        if len(latency):
            p50, p95, p99 = np.percentile(latency, [50, 95, 99])
            out += [
                emit("operational", "latency_p50_ms", float(p50)),
                emit("operational", "latency_p95_ms", float(p95)),
                emit("operational", "latency_p99_ms", float(p99)),
            ]
    return out


def _feature_frame(table: pa.Table, inputs: Sequence[str]) -> pa.Table:
    """The window's feature columns under their feature names (missing ones as nulls)."""
    columns = {}
    for name in inputs:
        logged = feature_column(name)
        columns[name] = table[logged] if logged in table.column_names else pa.nulls(table.num_rows)
    return pa.table(columns) if columns else pa.table({})


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
        return [emit("drift", "share", None, status="too_few_rows",
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
        emit(
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
    out.append(emit("drift", "share", result.share, "", result.threshold,
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
    scores = floats(table["output"])
    scores = scores[np.isfinite(scores)]
    out: list[Result] = []
    ref = reference.drift.numeric.get(PREDICTION)
    if ref is not None and len(scores) >= config.min_rows:
        result = score_drift(DriftReference({PREDICTION: ref}, {}, ref.rows), pa.table({PREDICTION: scores}),
                             methods={PREDICTION: DriftMethod(config.numeric.statistic, config.numeric.threshold)})  # fmt: skip
        c = result.columns[0]
        out.append(emit("prediction", c.method, c.value, PREDICTION, c.threshold, c.status))
    elif ref is not None:
        out.append(emit("prediction", config.numeric.statistic, None, PREDICTION, status="too_few_rows",
                        details={"rows": len(scores), "min_rows": config.min_rows}))  # fmt: skip
    if reference.meta.get("task") != "classification" or not len(scores):
        return out
    threshold = config.classification_threshold
    positive = float(np.mean(scores >= threshold))
    ref_positive = reference.meta.get("reference_positive_rate")
    out.append(_share_change("prediction", "positive_rate", positive, ref_positive, config))
    problem = _not_probabilities(scores)
    if problem is not None:  # no estimate from scores clipped or mapped into [0, 1]
        return out + [emit("estimated", metric, None, status="error", details={"reason": problem})
                      for metric in ESTIMATED_METRICS]  # fmt: skip
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
        out.append(emit("estimated", metric, finite(estimate.value), details=details))
    return out


def _share_change(
    check: str, metric: str, value: float, reference: Any, config: MonitoringConfig
) -> Result:
    """A share (labels or predictions that are positive) against the reference's: drift
    when it moved by ``label_rate_change`` or more (absolute)."""
    if reference is None:
        return emit(check, metric, value)
    change = value - float(reference)
    status = "drift" if abs(change) >= config.label_rate_change else "ok"
    return emit(check, metric, value, threshold=config.label_rate_change, status=status,
                details={"reference": reference, "change": change})  # fmt: skip


def label_checks(
    table: pa.Table, labels: pa.Table, reference: MonitorReference, config: MonitoringConfig
) -> tuple[list[Result], int]:
    """Delayed-label performance: labels joined by request id (and row when the label
    names one); coverage, lag, realized metrics, calibration, label drift and per-segment
    metrics. ``labels`` is :data:`~prodml.monitoring._records.LABELS_SCHEMA`, one (latest)
    label per key. Returns the results and the number of labelled rows."""
    rows = table.num_rows
    if rows == 0 or "request_id" not in table.column_names or "output" not in table.column_names:
        return [], 0
    y, lag = _joined_labels(table, labels)
    labelled = int(np.isfinite(y).sum())
    out = [
        emit(
            "performance",
            "label_coverage",
            labelled / rows,
            details={"labelled": labelled, "rows": rows},
        )
    ]
    if not labelled:
        return out, 0
    out.append(emit("performance", "label_lag_median_s", float(np.nanmedian(lag))))
    scores = floats(table["output"])
    mask = np.isfinite(y) & np.isfinite(scores)
    task = reference.meta.get("task")
    ref_metrics = reference.meta.get("reference_metrics", {})
    if task == "classification":
        problem = _not_binary(y[mask]) or _not_probabilities(scores[mask])
        if problem is not None:  # one bad label or score would make every metric wrong
            failed = {"reason": problem}
            out += [emit("performance", name, None, status="error", details=failed)
                    for name in (*CLASSIFICATION_METRICS, "ece")]  # fmt: skip
            out.append(emit("label", "label_rate", None, status="error", details=failed))
            return out, labelled
        metrics = classification_metrics(
            y[mask], scores[mask], threshold=config.classification_threshold
        )
        for name, value in metrics.items():
            out.append(
                emit(
                    "performance",
                    name,
                    finite(value),
                    details={"reference": ref_metrics.get(name)},
                )
            )
        try:
            cal = calibration(y[mask], np.clip(scores[mask], 0, 1))
            out.append(emit("performance", "ece", cal.ece, details=cal.to_dict()))
        except Exception as exc:
            out.append(
                emit("performance", "ece", None, status="error", details={"reason": str(exc)})
            )
        if mask.any():
            out.append(_share_change("label", "label_rate", float(np.mean(y[mask])),
                                     reference.meta.get("reference_label_rate"), config))  # fmt: skip
        else:  # every labelled record lacks a score: no rate to compare
            out.append(emit("label", "label_rate", None,
                            details={"reason": "no labelled record has a finite score"}))  # fmt: skip
    else:
        for name, value in regression_metrics(y[mask], scores[mask]).items():
            out.append(
                emit(
                    "performance",
                    name,
                    finite(value),
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
    scores = floats(table["output"])
    keep = np.isfinite(y) & np.isfinite(scores)
    if keep.sum() < min_rows or len(np.unique(y[keep])) < 2:
        return None
    if _not_binary(y[keep]) or _not_probabilities(scores[keep]):
        return None  # its own label checks report why; the reference's map stands in
    return Calibrator().fit(scores[keep], y[keep])


def _not_binary(labels: np.ndarray) -> str | None:
    """Why a classifier's (finite) ``labels`` cannot be scored, or None when every one
    is 0 or 1."""
    bad = (labels != 0) & (labels != 1)
    if not bad.any():
        return None
    values = np.unique(labels[bad])[:3].tolist()
    return (
        f"label: a classifier's labels must be 0 or 1 (or true/false); {int(bad.sum())} "
        f"labelled records hold other values, e.g. {values}"
    )


def _not_probabilities(scores: np.ndarray) -> str | None:
    """Why a classifier's (finite) ``scores`` cannot be read as probabilities, or None
    when every one lies in [0, 1]."""
    bad = (scores < 0) | (scores > 1)
    if not bad.any():
        return None
    values = np.unique(scores[bad])[:3].tolist()
    return (
        f"output: a classifier's scores must be probabilities in [0, 1]; {int(bad.sum())} "
        f"records hold other values, e.g. {values}"
    )


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
        logged = feature_column(segment)
        if logged not in table.column_names:
            out.append(emit("segment", "rows", None, segment, status="error",
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
                out.append(emit("segment", name, finite(metrics.get(name)), f"{segment}={value}"))
    return out


def profile_scores(scores: np.ndarray, bins: int) -> NumericProfile:
    """The reference profile of a model's scores."""
    return NumericProfile.fit(scores, bins=bins)
