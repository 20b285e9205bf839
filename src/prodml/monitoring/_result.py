"""One metric of one window (:class:`Result`), how the checks build it (:func:`emit`,
which holds every name to the metric catalogue), and the readers of logged columns that
the checks share.

>>> emit("drift", "share", 0.25).to_dict()["metric"]
'share'
>>> emit("drift", "shares", 0.25)
Traceback (most recent call last):
...
prodml.core.errors.SchemaError: monitoring check 'drift' emitted metric 'drift.shares', which is not in the metric catalogue (prodml.monitoring.MONITOR_METRICS)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prodml.core._monitor_metrics import MONITOR_METRICS
from prodml.core.errors import SchemaError

__all__ = ["Result", "emit"]


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


def emit(
    check: str,
    metric: str,
    value: float | None,
    column: str = "",
    threshold: float | None = None,
    status: str = "ok",
    details: dict[str, Any] | None = None,
) -> Result:
    """A check's result. Its name must be in the metric catalogue, with the catalogue's
    scope (a column for per-column metrics, none for per-window ones), so that every name
    a check emits is one an alert rule can use — and no rule names one that is never
    emitted."""
    spec = MONITOR_METRICS.get(f"{check}.{metric}")
    if spec is None:
        raise SchemaError(
            f"monitoring check {check!r} emitted metric '{check}.{metric}', which is not in "
            "the metric catalogue (prodml.monitoring.MONITOR_METRICS)"
        )
    if (spec.scope == "column") != bool(column):
        raise SchemaError(
            f"monitoring check {check!r}: metric {spec.name!r} is per {spec.scope} in the "
            f"metric catalogue, emitted with column {column!r}"
        )
    return Result(check, metric, value, column, threshold, status, details)


def finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as float64, nulls as NaN (strings that are not numbers as NaN too)."""
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    if not is_number_type(column.type):
        column = (
            pc.cast(column, pa.float64(), safe=False)
            if pa.types.is_decimal(column.type)
            else (pa.array([_number(v) for v in column.to_pylist()], pa.float64()))
        )
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def is_number_type(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    )


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
