"""Monitoring results as Prometheus gauges, read from the metadata DB at scrape time.

The collector holds no state: each scrape reads the latest computed window of every
(endpoint, arm) and the alert states, so any number of exporters (``prodml monitor watch
--metrics-port``) agree, and a restart loses nothing.

* ``prodml_monitor_value{endpoint, arm, model_version, check, metric, column}`` — every
  numeric result of the latest window (``column`` is "" for window-level metrics);
* ``prodml_monitor_status{…same…}`` — 1 when that result drifted or breached, else 0;
* ``prodml_monitor_window_end_timestamp_seconds{endpoint, arm}`` — its window's end;
* ``prodml_alert_state{rule, scope}`` — 0 inactive, 1 pending, 2 firing, 3 resolved.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from prodml.monitoring._store import MonitorStore, StoredWindow

__all__ = ["MonitorCollector", "exposition"]

_ALERT_STATES = {"inactive": 0, "pending": 1, "firing": 2, "resolved": 3}
_LABELS = ["endpoint", "arm", "model_version", "check", "metric", "column"]


class MonitorCollector(Collector):
    """A prometheus-client collector over a :class:`MonitorStore`."""

    def __init__(self, store: MonitorStore) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        value = GaugeMetricFamily(
            "prodml_monitor_value", "Latest monitoring result per window scope.", labels=_LABELS
        )
        status = GaugeMetricFamily(
            "prodml_monitor_status",
            "1 when the latest result drifted or breached its threshold.",
            labels=_LABELS,
        )
        ends = GaugeMetricFamily(
            "prodml_monitor_window_end_timestamp_seconds",
            "End of the latest computed window.",
            labels=["endpoint", "arm"],
        )
        latest = _latest(self._store.windows())
        results = self._store.results([w.id for w in latest])
        for window in latest:
            arm = window.arm + (":shadow" if window.shadow else "")
            ends.add_metric([window.endpoint, arm], window.end.timestamp())
            for r in results[window.id]:
                if r.value is None:
                    continue
                labels = [window.endpoint, arm, window.model_version, r.check, r.metric, r.column]
                value.add_metric(labels, r.value)
                status.add_metric(labels, 1.0 if r.status in ("drift", "breach") else 0.0)
        alerts = GaugeMetricFamily(
            "prodml_alert_state",
            "0 inactive, 1 pending, 2 firing, 3 resolved.",
            labels=["rule", "scope"],
        )
        for state in self._store.alert_states():
            alerts.add_metric(
                [str(state.get("rule")), str(state.get("scope"))],
                _ALERT_STATES.get(str(state.get("state")), 0),
            )
        yield from (value, status, ends, alerts)


def _latest(windows: list[StoredWindow]) -> list[StoredWindow]:
    """The latest non-empty window of each (endpoint, arm, shadow)."""
    out: dict[tuple[str, str, bool], StoredWindow] = {}
    for window in windows:
        if window.status == "empty" or not window.arm:
            continue
        key = (window.endpoint, window.arm, window.shadow)
        if key not in out or window.end > out[key].end:
            out[key] = window
    return sorted(out.values(), key=lambda w: (w.endpoint, w.arm, w.shadow))


def exposition(store: MonitorStore) -> bytes:
    """The text exposition of the monitoring gauges (for a textfile collector)."""
    registry = CollectorRegistry()
    registry.register(MonitorCollector(store))
    return generate_latest(registry)
