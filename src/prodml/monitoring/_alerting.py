"""Alert rules applied to the windows a monitoring pass computed.

A rule's ``metric`` names a result as ``<check>.<metric>`` (``drift.share``,
``performance.roc_auc``, ``operational.latency_p99_ms``, ``quality.missing_rate``);
``drift.value`` is any feature's drift statistic. ``column`` picks per-column results
(``"*"``: each column on its own). Each (endpoint, arm[, column]) is one alert scope, so
a new model version on the same arm continues the same alert.

Rules on results that change as labels arrive (``performance``, ``label``, ``segment``)
see a window only once its labels are final, so a window is never judged on half its
labels and every window is evaluated once, in time order.

One rule is built in: ``log_quarantine`` fires when a window's hours had an unreadable
log file moved to the quarantine (``log.quarantined_files`` above 0, one scope per
endpoint, empty windows included) and resolves on the next window without one; it goes
to the ``log`` sink and every configured sink. A configured rule of that name, or any
rule on ``log.quarantined_files``, takes its place.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from prodml.core import AlertsConfig, Clock
from prodml.core._alert_config import DEFAULT_SINK, AlertRuleConfig
from prodml.core._monitor_metrics import LABEL_CHECKS
from prodml.monitoring._alerts import (
    AlertEngine,
    AlertState,
    AlertStatus,
    AlertStore,
    Observation,
    open_alert_store,
)
from prodml.monitoring._checks import Result
from prodml.monitoring._sinks import Notification, format_scope, make_sink
from prodml.monitoring._store import MonitorStore, StoredWindow

__all__ = ["LABEL_CHECKS", "QUARANTINE_RULE", "MonitorAlerts", "SqlAlertStore", "builtin_rules"]

_log = logging.getLogger("prodml.monitoring.alerts")

#: The built-in rule on files moved to a log's quarantine, and its metric.
QUARANTINE_RULE = "log_quarantine"
_QUARANTINE_METRIC = "log.quarantined_files"
#: Checks whose results are about an endpoint's log, not an arm: one scope per endpoint,
#: and empty windows count (a window can be empty because its only file was unreadable).
_LOG_CHECKS = frozenset({"log"})


def builtin_rules(config: AlertsConfig) -> list[AlertRuleConfig]:
    """The rules that apply without configuration: ``log_quarantine``, unless a rule
    of that name or on its metric is configured."""
    if any(r.name == QUARANTINE_RULE or r.metric == _QUARANTINE_METRIC for r in config.rules):
        return []
    sinks = dict.fromkeys([DEFAULT_SINK, *(s.name for s in config.sinks)])
    return [
        AlertRuleConfig(
            name=QUARANTINE_RULE,
            metric=_QUARANTINE_METRIC,
            threshold=0.0,
            severity="warning",
            sinks=tuple(sinks),
        )
    ]


class SqlAlertStore(AlertStore):
    """:class:`~prodml.monitoring._alerts.AlertStore` in the metadata DB."""

    def __init__(self, store: MonitorStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    @classmethod
    def for_monitor(cls, store: MonitorStore, clock: Clock) -> SqlAlertStore:
        """The alert states in ``store``'s metadata DB, stamped by ``clock``."""
        return cls(store, clock)

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
        self._states = open_alert_store("sql", store, clock)
        self._sinks = {s.name: make_sink(s) for s in config.sinks}
        self._managers = {s.name for s in config.sinks if s.type == "alertmanager"}
        self._builtin = builtin_rules(config)
        #: The configured rules, then the built-in ones.
        self.rules = (*config.rules, *self._builtin)
        self.engine = AlertEngine(self.rules, self._states, self._sinks.values(), clock)

    def refresh(self, sent_now: Iterable[Notification] = ()) -> int:
        """Re-send every firing alert to its rule's Alertmanager sinks: Alertmanager
        resolves an alert it has not heard of for ``resolve_timeout`` (5 minutes by
        default), so each pass (``monitor watch``) keeps the firing ones alive. Returns
        the number of alerts re-sent (``sent_now``: notifications of this pass, not
        repeated)."""
        if not self._managers:
            return 0
        rules = self.engine.rules
        skip = {(n.rule, n.scope) for n in sent_now}
        sent = 0
        for state in self._states.list(states=["firing"]):
            rule = rules.get(state.rule)
            if rule is None or (state.rule, state.scope) in skip:
                continue
            payload = self._store.last_event(state.rule, state.scope)
            if payload is None or payload.get("state") != "firing":
                continue
            note = _notification(payload)
            for name in rule.sinks:
                if name not in self._managers:
                    continue
                try:
                    self._sinks[name].send(note)
                    sent += 1
                except Exception:  # logged like any delivery failure, never raised
                    _log.exception(
                        "alert %r scope %r: refreshing sink %r failed",
                        state.rule,
                        state.scope,
                        name,
                    )
        return sent

    def process(
        self, windows: Sequence[tuple[StoredWindow, Sequence[Result]]]
    ) -> list[Notification]:
        """Evaluate every rule over ``windows`` (any order) and record what was sent."""
        sent: list[Notification] = []
        for rule in self.rules:
            check, _, metric = rule.metric.partition(".")
            needs_labels = check in LABEL_CHECKS
            per_endpoint = check in _LOG_CHECKS
            per_scope: dict[str, dict[tuple[datetime, datetime], Observation]] = {}
            for window, results in sorted(windows, key=lambda wr: wr[0].end):
                if (window.status == "empty" and not per_endpoint) or (
                    needs_labels and not window.labels_final
                ):
                    continue
                for column, value, evidence in _values(results, check, metric):
                    if not rule.applies_to(window.endpoint, column or None):
                        continue
                    scope = format_scope(
                        {"endpoint": window.endpoint}
                        if per_endpoint
                        else {"endpoint": window.endpoint, "arm": window.arm,
                              "column": column or None}
                    )  # fmt: skip
                    evidence = {
                        "model_version": window.model_version,
                        "rows": window.rows,
                        **evidence,
                    }
                    # One observation per window and scope (an endpoint's arms share one).
                    per_scope.setdefault(scope, {}).setdefault(
                        (window.start, window.end),
                        Observation(window.start, window.end, value, evidence),
                    )
            for scope, seen in per_scope.items():
                observations = list(seen.values())
                if rule in self._builtin and not self._breached(rule, scope, observations):
                    continue  # a built-in rule keeps no state until it first breaches
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

    def _breached(
        self, rule: AlertRuleConfig, scope: str, observations: Sequence[Observation]
    ) -> bool:
        """Whether any observation breaches ``rule`` or its alert has a state already."""
        breach = any(
            o.value is not None
            and (
                o.value > rule.threshold if rule.direction == "above" else o.value < rule.threshold
            )
            for o in observations
        )
        return breach or self._states.get(rule.name, scope) is not None


def _notification(payload: dict[str, Any]) -> Notification:
    """The notification an alert event recorded (its ``to_dict()``)."""
    names = {f.name for f in dataclasses.fields(Notification)}
    data = {k: v for k, v in payload.items() if k in names}
    for key in ("window_start", "window_end", "first_time", "fired_at", "resolved_at", "sent_at"):
        if data.get(key):
            data[key] = datetime.fromisoformat(str(data[key]).replace("Z", "+00:00"))
    data["evidence"] = tuple(data.get("evidence") or ())
    return Notification(**data)


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
        if r.details and "files" in r.details:
            evidence["files"] = r.details["files"]
        out.append((r.column, r.value, evidence))
    return out
