"""An endpoint's recent traffic from its prediction log: the hour of newest records (and
the hours before it), per arm — requests, rate, errors, fallbacks, latency percentiles —
and the split over time. The log is what every server process writes, so the numbers
cover all of them; "recent" is anchored on the newest logged hour, so a replayed or a
quiet project shows its last traffic rather than nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prodml.storage import LogStore

__all__ = ["ArmTraffic", "Traffic", "recent_traffic"]

_COLUMNS = ["time", "arm", "status", "latency_ms", "fallback_from", "shadow"]


@dataclass(frozen=True)
class ArmTraffic:
    """One arm's records in the window (shadow ones apart)."""

    arm: str
    shadow: bool
    requests: int
    per_minute: float
    error_rate: float
    fallback_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Traffic:
    """Traffic of ``[start, end)``: per arm, in all, and records per arm per hour over
    the ``hours`` before ``end`` (``split``: hour start → arm → records)."""

    start: datetime
    end: datetime
    arms: list[ArmTraffic]
    requests: int
    per_minute: float
    error_rate: float
    fallback_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    split: list[tuple[datetime, dict[str, int]]]


def _percentiles(latency: np.ndarray) -> tuple[float, float, float]:
    finite = latency[np.isfinite(latency)]
    if len(finite) == 0:
        return (float("nan"),) * 3
    p50, p95, p99 = np.percentile(finite, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def _figures(table: pa.Table, minutes: float) -> tuple[int, float, float, float, tuple[float, float, float]]:  # fmt: skip
    n = table.num_rows
    if n == 0:
        return 0, 0.0, float("nan"), float("nan"), (float("nan"),) * 3
    errors = int(pc.sum(pc.equal(table["status"], "error")).as_py() or 0)
    fallbacks = int(pc.sum(pc.is_valid(table["fallback_from"])).as_py() or 0)
    latency = np.asarray(pc.fill_null(pc.cast(table["latency_ms"], pa.float64()), np.nan))
    return n, n / minutes, errors / n, fallbacks / n, _percentiles(latency)


def recent_traffic(log: LogStore, endpoint: str, *, hours: int = 12) -> Traffic | None:
    """``endpoint``'s newest logged hour in figures, and the split over the ``hours``
    before its end; None when the log holds no record of it."""
    latest = log.latest_hour(endpoint)
    if latest is None:
        return None
    end = latest + timedelta(hours=1)
    table = log.read(endpoint=endpoint, start=end - timedelta(hours=hours), end=end,
                     columns=_COLUMNS)  # fmt: skip
    shadow = pc.fill_null(pc.cast(table["shadow"], pa.bool_()), False)
    routed = pc.if_else(pc.is_valid(table["fallback_from"]), table["fallback_from"], table["arm"])
    routed = pc.fill_null(pc.cast(routed, pa.string()), "")
    table = table.append_column("routed", routed).append_column("is_shadow", shadow)
    recent = table.filter(pc.greater_equal(table["time"], pa.scalar(latest, table["time"].type)))
    live = recent.filter(pc.invert(recent["is_shadow"]))
    # the rate over the part of the hour that has passed (at least a minute)
    newest = pc.max(recent["time"]).as_py() if recent.num_rows else None
    minutes = (
        60.0 if newest is None else min(60.0, max(1.0, (newest - latest).total_seconds() / 60))
    )
    n, rate, errors, fallbacks, (p50, p95, p99) = _figures(live, minutes)
    arms = []
    for is_shadow in (False, True):
        part = recent.filter(pc.equal(recent["is_shadow"], is_shadow))
        for name in sorted(set(part["routed"].to_pylist())):
            mine = part.filter(pc.equal(part["routed"], name))
            a_n, a_rate, a_err, a_fb, (a50, a95, a99) = _figures(mine, minutes)
            arms.append(ArmTraffic(name, is_shadow, a_n, a_rate, a_err, a_fb, a50, a95, a99))
    live_all = table.filter(pc.invert(table["is_shadow"]))
    hourly = pa.table({"hour": pc.floor_temporal(live_all["time"], unit="hour"),
                       "routed": live_all["routed"]})  # fmt: skip
    counted = hourly.group_by(["hour", "routed"]).aggregate([([], "count_all")])
    split: dict[datetime, dict[str, int]] = {}
    for when, arm, count in zip(*(counted[c].to_pylist() for c in ("hour", "routed", "count_all")), strict=True):  # fmt: skip
        split.setdefault(when, {})[arm] = count
    return Traffic(
        start=latest, end=end, arms=arms, requests=n, per_minute=rate, error_rate=errors,
        fallback_rate=fallbacks, p50_ms=p50, p95_ms=p95, p99_ms=p99,
        split=sorted(split.items()),
    )  # fmt: skip
