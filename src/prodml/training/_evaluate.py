"""The evaluation report of a model on held-out data: overall metrics, per-slice metrics,
calibration, and measured latency, throughput and memory.

The report is a plain record that round-trips through JSON (NaN is stored as ``null``) so
the registry can keep it with the model version and the gate can compare two of them.

>>> import pandas as pd
>>> seg = pd.DataFrame({"origin": ["JFK", "JFK", "LGA", None]})
>>> r = evaluate([0, 1, 1, 0], [0.2, 0.8, 0.3, 0.4], task="classification",
...              segments=seg, slice_min_rows=2)
>>> r.metrics["accuracy"], sorted(r.slices["origin"]), r.slices["origin"]["<other>"].rows
(0.75, ['<other>', 'JFK'], 2)
>>> EvaluationReport.from_dict(r.to_dict()) == r
True
"""

from __future__ import annotations

import math
import time
import tracemalloc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from prodml.core.errors import ConfigError, SchemaError, TrainingError
from prodml.stats import check_threshold
from prodml.training._metrics import (
    binary_inputs,
    check_lengths,
    classification_metrics,
    finite_floats,
    grouped_classification_metrics,
    grouped_regression_metrics,
    py_float,
    regression_metrics,
    reliability_curve,
)

__all__ = [
    "NULL_SLICE",
    "OTHER_SLICE",
    "EvaluationReport",
    "SliceResult",
    "Task",
    "evaluate",
    "measure_performance",
]

Task = Literal["classification", "regression"]
Ints = np.ndarray[Any, np.dtype[np.intp]]

#: Slice name of rows whose segment value is null.
NULL_SLICE = "<null>"
#: Slice name pooling every value with fewer than ``slice_min_rows`` rows.
OTHER_SLICE = "<other>"

#: Warm-up calls before single-row latencies are timed.
WARMUP_CALLS = 5


@dataclass(frozen=True)
class SliceResult:
    """The metrics of the rows sharing one value of one segment column."""

    rows: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class EvaluationReport:
    """What a model scored on held-out data; ``slices`` maps column → value → result."""

    task: Task
    rows: int
    metrics: dict[str, float]
    slices: dict[str, dict[str, SliceResult]]
    reliability: dict[str, Any] | None
    performance: dict[str, float]
    threshold: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; NaN metrics become ``None``."""
        return {
            "task": self.task,
            "rows": self.rows,
            "threshold": self.threshold,
            "metrics": _to_json(self.metrics),
            "slices": {
                column: {
                    value: {"rows": result.rows, "metrics": _to_json(result.metrics)}
                    for value, result in values.items()
                }
                for column, values in self.slices.items()
            },
            "reliability": _copy_reliability(self.reliability),
            "performance": _to_json(self.performance),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        """Rebuild a report from :meth:`to_dict` output (``None`` metrics become NaN)."""
        try:
            task = data["task"]
            if task not in get_args(Task):
                raise SchemaError(f"evaluation report: task must be one of {get_args(Task)}")
            return cls(
                task=task,
                rows=int(data["rows"]),
                metrics=_from_json(data["metrics"]),
                slices={
                    str(column): {
                        str(value): SliceResult(int(r["rows"]), _from_json(r["metrics"]))
                        for value, r in values.items()
                    }
                    for column, values in data["slices"].items()
                },
                reliability=_copy_reliability(data.get("reliability")),
                performance=_from_json(data.get("performance", {})),
                threshold=float(data.get("threshold", 0.5)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SchemaError(f"evaluation report: missing or malformed field {exc}") from None

    def with_performance(self, performance: Mapping[str, float]) -> EvaluationReport:
        """A copy with ``performance`` replaced (see :func:`measure_performance`)."""
        return replace(self, performance={k: py_float(v) for k, v in performance.items()})


def evaluate(
    y_true: Any,
    y_score: Any,
    *,
    task: Task,
    segments: pd.DataFrame | None = None,
    threshold: float = 0.5,
    slice_min_rows: int = 100,
    bins: int = 10,
) -> EvaluationReport:
    """Score predictions against labels, overall and per value of each ``segments`` column.

    A value with fewer than ``slice_min_rows`` rows is pooled into ``"<other>"``, reported
    only when the pool reaches ``slice_min_rows`` itself; null values form ``"<null>"``.
    Values are named by ``str(value)``, and values with the same name share a slice.
    """
    if task not in get_args(Task):
        raise ConfigError(f"evaluate: task must be one of {get_args(Task)}, got {task!r}")
    if isinstance(slice_min_rows, bool) or not isinstance(slice_min_rows, int):
        raise ConfigError(f"slice_min_rows: expected an integer, got {slice_min_rows!r}")
    if slice_min_rows < 1:
        raise ConfigError(f"slice_min_rows: expected at least 1, got {slice_min_rows}")
    if task == "classification":
        check_threshold(threshold)
        yb, p = binary_inputs(y_true, y_score)
        y: np.ndarray[Any, Any] = yb
        metrics = classification_metrics(yb, p, threshold=threshold, bins=bins)
        reliability: dict[str, Any] | None = reliability_curve(yb, p, bins=bins)
    else:
        y = finite_floats(y_true, "y_true")
        p = finite_floats(y_score, "y_score")
        check_lengths(y, p, "y_score")
        metrics = regression_metrics(y, p)
        reliability = None
    slices: dict[str, dict[str, SliceResult]] = {}
    if segments is not None:
        if len(segments) != len(y):
            raise SchemaError(f"segments: has {len(segments)} rows but y_true has {len(y)}")
        repeated = sorted({str(c) for c in segments.columns[segments.columns.duplicated()]})
        if repeated:
            raise SchemaError(
                f"segments: columns {repeated} appear more than once; expected unique"
            )
        for column in segments.columns:
            codes, names = _slice_codes(segments[column], slice_min_rows)
            if task == "classification":
                grouped = grouped_classification_metrics(
                    yb, p, codes, len(names), threshold=threshold, bins=bins
                )
            else:
                grouped = grouped_regression_metrics(y, p, codes, len(names))
            counts = np.bincount(codes, minlength=len(names))
            order = [*sorted(range(len(names) - 1), key=names.__getitem__), len(names) - 1]
            slices[str(column)] = {
                names[i]: SliceResult(
                    int(counts[i]), {k: py_float(v[i]) for k, v in grouped.items()}
                )
                for i in order
                if counts[i] >= slice_min_rows
            }
    return EvaluationReport(
        task=task,
        rows=len(y),
        metrics=metrics,
        slices=slices,
        reliability=reliability,
        performance={},
        threshold=float(threshold),
    )


def measure_performance(
    predict: Callable[[pd.DataFrame], Any],
    X: pd.DataFrame,
    *,
    single_rows: int = 200,
    batch_rows: int = 10_000,
    load: Callable[[], Any] | None = None,
) -> dict[str, float]:
    """Single-row latency percentiles, batch throughput and (with ``load``) loaded size.

    Latency is ``predict`` on one-row frames after a few warm-up calls, with native thread
    pools limited to one thread as in a serving worker; throughput is the
    best of three runs over one batch; ``model_memory_bytes`` is the peak memory traced by
    :mod:`tracemalloc` (Python objects and NumPy buffers) while ``load()`` runs.
    """
    if len(X) == 0:
        raise SchemaError("measure_performance: X has no rows; expected at least one")
    if single_rows < 1 or batch_rows < 1:
        raise ConfigError(
            f"measure_performance: single_rows and batch_rows must be >= 1, "
            f"got {single_rows} and {batch_rows}"
        )
    rows = [X.iloc[[i]] for i in range(min(single_rows, len(X)))]
    latencies = np.empty(len(rows))
    # One request runs on one thread, as a serving worker does: native thread pools
    # (OpenMP, BLAS) woken for a single row only add stalls of tens of milliseconds.
    with threadpool_limits(limits=1):
        for i in range(WARMUP_CALLS):
            _call(predict, rows[i % len(rows)])
        for i, row in enumerate(rows):
            start = time.perf_counter()
            _call(predict, row)
            latencies[i] = time.perf_counter() - start
    batch = X.iloc[:batch_rows]
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        _call(predict, batch)
        best = min(best, time.perf_counter() - start)
    out = {
        "latency_p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "latency_p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "throughput_rows_per_s": len(batch) / max(best, 1e-9),
    }
    if load is not None:
        out["model_memory_bytes"] = float(_peak_memory(load))
    return out


def _slice_codes(values: pd.Series[Any], min_rows: int) -> tuple[Ints, list[str]]:
    """Each row's slice id and the slice names, the last being :data:`OTHER_SLICE`.

    Values are grouped by name (``str(value)``, nulls as :data:`NULL_SLICE`); rows of a
    name with fewer than ``min_rows`` rows get the id of :data:`OTHER_SLICE`.
    """
    try:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
    except TypeError as exc:  # unhashable values: lists, dicts
        raise SchemaError(
            f"segment column {values.name!r} holds values that cannot be grouped ({exc}); "
            "expected scalar values (strings, numbers, booleans)"
        ) from exc
    raw_names = [str(u) for u in uniques] + [NULL_SLICE]  # code -1 picks the last
    name_codes, names = pd.factorize(np.array(raw_names, dtype=object))
    group = name_codes[codes].astype(np.intp)
    small = np.bincount(group, minlength=len(names)) < min_rows
    group[small[group]] = len(names)
    return group, [*(str(n) for n in names), OTHER_SLICE]


def _call(predict: Callable[[pd.DataFrame], Any], frame: pd.DataFrame) -> None:
    try:
        out = predict(frame)
    except Exception as exc:
        raise TrainingError(
            f"measure_performance: predict failed on {len(frame)} rows: {exc!r}"
        ) from exc
    if np.ndim(out) == 0 or len(out) != len(frame):
        got = "a single value" if np.ndim(out) == 0 else f"{len(out)} values"
        raise TrainingError(
            f"measure_performance: predict returned {got} for {len(frame)} rows; "
            "expected one per row"
        )


def _peak_memory(load: Callable[[], Any]) -> int:
    """Peak traced bytes above the starting level while ``load()`` runs."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        loaded = load()
        peak = tracemalloc.get_traced_memory()[1]
        del loaded
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return max(peak - baseline, 0)


def _to_json(metrics: Mapping[str, float]) -> dict[str, float | None]:
    return {k: None if math.isnan(v) else v for k, v in metrics.items()}


def _from_json(metrics: Mapping[str, float | None]) -> dict[str, float]:
    return {str(k): math.nan if v is None else py_float(v) for k, v in metrics.items()}


def _copy_reliability(curve: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if curve is None else {k: list(v) for k, v in curve.items()}
