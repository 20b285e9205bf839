"""Alert rules applied to the windows a monitoring pass computed.

A rule's ``metric`` names a result as ``<check>.<metric>`` (``drift.share``,
``performance.roc_auc``, ``operational.latency_p99_ms``, ``quality.missing_rate``);
``drift.value`` is any feature's drift statistic. ``column`` picks per-column results
(``"*"``: each column on its own). Each (endpoint, arm[, column]) is one alert scope, so
a new model version on the same arm continues the same alert.

Rules on results that change as labels arrive (``performance``, ``label``, ``segment``)
see a window only once its labels are final, so a window is never judged on half its
labels and every window is evaluated once, in time order.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from typing import Any

from prodml.core import AlertsConfig, Clock
from prodml.monitoring._alerts import AlertEngine, AlertState, AlertStatus, Observation
from prodml.monitoring._checks import Result
from prodml.monitoring._sinks import Notification, format_scope, make_sink
from prodml.monitoring._store import MonitorStore, StoredWindow

__all__ = ["LABEL_CHECKS", "MonitorAlerts", "SqlAlertStore"]

#: Checks whose results change as labels arrive.
LABEL_CHECKS = ("performance", "label", "segment")


class SqlAlertStore:
    """:class:`~prodml.monitoring._alerts.AlertStore` in the metadata DB."""

    def __init__(self, store: MonitorStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def get(self, rule: str, scope: str) -> AlertState | None:
        data = self._store.alert_state(rule, scope)
        return None if data is None else AlertState.from_dict(data)

    def put(self, state: AlertState) -> None:
        self._store.save_alert_state(
            state.rule, state.scope, state.state, state.to_dict(), self._clock.now()
        )

    def list(
        self, rule: str | None = None, states: Iterable[AlertStatus] | None = None
    ) -> builtins.list[AlertState]:
        wanted = None if states is None else set(states)
        found = [AlertState.from_dict(d) for d in self._store.alert_states(rule)]
        return [s for s in found if wanted is None or s.state in wanted]


class MonitorAlerts:
    """The configured rules and sinks over the monitoring store."""

    def __init__(self, config: AlertsConfig, store: MonitorStore, clock: Clock) -> None:
        self.config = config
        self._store = store
        self._clock = clock
        self.engine = AlertEngine(
            config.rules, SqlAlertStore(store, clock), [make_sink(s) for s in config.sinks], clock
        )

    def process(
        self, windows: Sequence[tuple[StoredWindow, Sequence[Result]]]
    ) -> list[Notification]:
        """Evaluate every rule over ``windows`` (any order) and record what was sent."""
        sent: list[Notification] = []
        for rule in self.config.rules:
            check, _, metric = rule.metric.partition(".")
            needs_labels = check in LABEL_CHECKS
            per_scope: dict[str, list[Observation]] = {}
            for window, results in sorted(windows, key=lambda wr: wr[0].end):
                if window.status == "empty" or (needs_labels and not window.labels_final):
                    continue
                for column, value, evidence in _values(results, check, metric):
                    if not rule.applies_to(window.endpoint, column or None):
                        continue
                    scope = format_scope(
                        {"endpoint": window.endpoint, "arm": window.arm, "column": column or None}
                    )
                    evidence = {
                        "model_version": window.model_version,
                        "rows": window.rows,
                        **evidence,
                    }
                    per_scope.setdefault(scope, []).append(
                        Observation(window.start, window.end, value, evidence)
                    )
            for scope, observations in per_scope.items():
                notes = self.engine.process(rule.name, scope, observations)
                for note in notes:
                    self._store.record_event(
                        note.rule,
                        note.scope,
                        note.state,
                        note.window_end,
                        note.to_dict(),
                        self._clock.now(),
                    )
                sent += notes
        return sent


def _values(
    results: Sequence[Result], check: str, metric: str
) -> list[tuple[str, float | None, dict[str, Any]]]:
    """(column, value, evidence) of the results a rule metric names."""
    out = []
    for r in results:
        if r.check != check or (metric != "value" and r.metric != metric):
            continue
        if metric == "value" and not r.column:
            continue
        evidence: dict[str, Any] = {"status": r.status}
        if r.details and "top" in r.details:
            evidence["top"] = r.details["top"]
        out.append((r.column, r.value, evidence))
    return out
