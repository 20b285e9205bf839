"""Debounced alerts: per-window metric values of one scope in, alert states and
notifications out.

:func:`evaluate` is pure and driven by *window times*, never the wall clock, so a
simulated replay behaves like production. Windows are processed in ``window_end`` order;
windows ending at or before the state's ``last_time`` are skipped, so evaluating the same
windows twice changes nothing. For each window with a value:

* *breach*: the value is strictly above (``direction = "above"``) or below the threshold;
* *condition*: with ``m_of_n = [M, N]``, at least M of the last N evaluated windows
  breached (windows without a value are not counted); otherwise, this window breached;
* ``inactive``/``resolved`` → ``pending`` when the condition holds: a new episode starts
  and ``first_time`` is this window's end;
* ``pending`` → ``firing`` once the condition has held in every evaluated window and
  ``window_end - first_time >= for`` (no ``for``: in the window the condition first holds,
  so a rule without debounce fires on the first breaching window);
  ``pending`` → ``inactive`` when the condition fails first;
* ``firing`` → ``resolved`` once the condition has been false in every evaluated window
  and ``window_end - clear_since >= keep_firing_for``, where ``clear_since`` is the end of
  the first clear window (no ``keep_firing_for``: in the first clear window);
* a window whose value is ``None`` (not computable) changes nothing but ``last_time``:
  it neither breaches nor clears, and the time it spans still counts for ``for`` and
  ``keep_firing_for``.

Notifications are emitted only on the transitions to ``firing`` and to ``resolved``, and
they alternate: a ``resolved`` notification follows only a sent ``firing`` one.
``cooldown`` holds back a ``firing`` notification while less than ``cooldown`` has passed
since the last *sent* ``resolved`` notification (``suppressed`` counts these). If the
episode still holds in a later window after the cooldown, its ``firing`` notification is
sent then; if it resolves within the cooldown, nothing is sent for it at all.

>>> from datetime import datetime, timedelta, timezone
>>> from prodml.core._alert_config import AlertRuleConfig
>>> rule = AlertRuleConfig(name="drift", metric="drift.share", threshold=0.5, m_of_n=(2, 3))
>>> day = datetime(2013, 1, 1, tzinfo=timezone.utc)
>>> obs = [Observation(day + timedelta(days=i), day + timedelta(days=i + 1), v)
...        for i, v in enumerate([0.9, 0.1, 0.1, 0.8, 0.7, 0.1, 0.1])]
>>> state, notes = evaluate(rule, "endpoint=flights", obs, None)
>>> [(n.state, n.window_end.day) for n in notes], state.state
([('firing', 6), ('resolved', 8)], 'resolved')
>>> evaluate(rule, "endpoint=flights", obs, state) == (state, [])
True
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from prodml.core import Plugins
from prodml.core._alert_config import DEFAULT_SINK, AlertRuleConfig
from prodml.core._clock import Clock
from prodml.core.errors import (
    ConfigError,
    DataValidationError,
    NotFoundError,
    StateError,
    StorageError,
    TimestampError,
)
from prodml.monitoring._sinks import LOGGER_NAME, LogSink, Notification, Sink

if TYPE_CHECKING:
    from prodml.monitoring._store import MonitorStore

__all__ = [
    "ALERT_STORES",
    "EVIDENCE_WINDOWS",
    "AlertEngine",
    "AlertState",
    "AlertStatus",
    "AlertStore",
    "MemoryAlertStore",
    "Observation",
    "evaluate",
    "open_alert_store",
]

AlertStatus = Literal["inactive", "pending", "firing", "resolved"]
#: Windows of evidence kept per episode (the most recent ones).
EVIDENCE_WINDOWS = 10

_log = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class Observation:
    """A metric's value in one closed window of one scope.

    ``value`` ``None`` (or NaN) means not computable, e.g. an empty window. ``evidence`` is
    JSON-able detail carried into notifications (e.g. the most drifted features).
    """

    window_start: datetime
    window_end: datetime
    value: float | None
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("window_start", "window_end"):
            when = getattr(self, name)
            if not isinstance(when, datetime) or when.utcoffset() is None:
                raise TimestampError(
                    f"Observation.{name}: expected a timezone-aware datetime, got {when!r}"
                )
            object.__setattr__(self, name, when.astimezone(UTC))
        if self.window_end <= self.window_start:
            raise TimestampError(
                f"Observation: window_end {self.window_end.isoformat()} must be after "
                f"window_start {self.window_start.isoformat()}"
            )
        if self.value is not None:
            value = float(self.value)
            object.__setattr__(self, "value", None if math.isnan(value) else value)
        try:
            json.dumps(self.evidence)
        except (TypeError, ValueError) as exc:
            raise DataValidationError(
                f"Observation.evidence for window ending {self.window_end.isoformat()} "
                f"must be JSON-serialisable: {exc}"
            ) from None


@dataclass(frozen=True)
class AlertState:
    """The state of one rule in one scope. Episode fields (``first_time``, ``fired_at``,
    ``resolved_at``, ``evidence``) describe the current or latest episode; ``history`` holds
    the last N ``(window_end, breached)`` pairs that M-of-N needs."""

    rule: str
    scope: str
    state: AlertStatus = "inactive"
    first_time: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    clear_since: datetime | None = None
    last_time: datetime | None = None
    last_value: float | None = None
    history: tuple[tuple[datetime, bool], ...] = ()
    evidence: tuple[dict[str, Any], ...] = ()
    last_notified: Literal["firing", "resolved"] | None = None
    last_notified_at: datetime | None = None
    suppressed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (times as ISO 8601 strings); :meth:`from_dict` reverses it."""
        data = asdict(self)
        for key in _TIME_FIELDS:
            data[key] = _iso(data[key])
        data["history"] = [[_iso(t), b] for t, b in self.history]
        data["evidence"] = [dict(e) for e in self.evidence]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertState:
        """Rebuild a state from :meth:`to_dict` output."""
        try:
            fields: dict[str, Any] = dict(data)
            for key in _TIME_FIELDS:
                fields[key] = _parse_time(fields.get(key))
            fields["history"] = tuple(
                (_required_time(t), bool(b)) for t, b in fields.get("history", ())
            )
            fields["evidence"] = tuple(dict(e) for e in fields.get("evidence", ()))
            state = cls(**fields)
        except (TypeError, ValueError, KeyError) as exc:
            raise StorageError(
                f"alert state of rule {data.get('rule')!r} scope {data.get('scope')!r} "
                f"is malformed: {exc}"
            ) from None
        if state.state not in ("inactive", "pending", "firing", "resolved"):
            raise StorageError(f"alert state of rule {state.rule!r}: unknown state {state.state!r}")
        return state


_TIME_FIELDS = (
    "first_time",
    "fired_at",
    "resolved_at",
    "clear_since",
    "last_time",
    "last_notified_at",
)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else _required_time(value)


def _required_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.utcoffset() is None:
        raise ValueError(f"time {value!r} has no UTC offset")
    return parsed.astimezone(UTC)


class AlertStore(ABC):
    """Where alert states live between evaluations, one per ``(rule, scope)``.

    ``put`` inserts or replaces the state with the same ``(state.rule, state.scope)``;
    ``list`` returns states sorted by ``(rule, scope)``, optionally only those of one rule
    and those whose ``state`` is in ``states``. States round-trip through
    :meth:`AlertState.to_dict` / :meth:`AlertState.from_dict`, so a backend may store
    that JSON next to indexed ``rule``, ``scope`` and ``state`` columns.
    """

    @classmethod
    @abstractmethod
    def for_monitor(cls, store: MonitorStore, clock: Clock) -> AlertStore:
        """The store a monitoring job over ``store`` keeps its alerts in (the
        constructor :func:`open_alert_store` calls for every registered kind)."""

    @abstractmethod
    def get(self, rule: str, scope: str) -> AlertState | None:
        """The state of ``rule`` in ``scope``, or None if it has none yet."""

    @abstractmethod
    def put(self, state: AlertState) -> None:
        """Insert or replace the state of ``(state.rule, state.scope)``."""

    @abstractmethod
    def list(
        self, rule: str | None = None, states: Iterable[AlertStatus] | None = None
    ) -> builtins.list[AlertState]:
        """The states sorted by ``(rule, scope)``, filtered by rule and status."""


class MemoryAlertStore(AlertStore):
    """An in-process :class:`AlertStore`, for tests and single-process replays.

    >>> store = MemoryAlertStore()
    >>> store.put(AlertState(rule="drift", scope="endpoint=a", state="firing"))
    >>> [s.state for s in store.list(states=["firing"])]
    ['firing']
    """

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], AlertState] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_monitor(cls, store: MonitorStore, clock: Clock) -> MemoryAlertStore:
        """A fresh, empty store (``store`` and ``clock`` are not used)."""
        return cls()

    def get(self, rule: str, scope: str) -> AlertState | None:
        with self._lock:
            return self._states.get((rule, scope))

    def put(self, state: AlertState) -> None:
        with self._lock:
            self._states[(state.rule, state.scope)] = state

    def list(
        self, rule: str | None = None, states: Iterable[AlertStatus] | None = None
    ) -> builtins.list[AlertState]:
        wanted = None if states is None else set(states)
        with self._lock:
            found = sorted(self._states.items())
        return [
            s
            for _, s in found
            if (rule is None or s.rule == rule) and (wanted is None or s.state in wanted)
        ]


#: Alert stores by name: ``module:Class``, imported when first opened.
ALERT_STORES: Plugins[AlertStore] = Plugins(
    "alert store",
    AlertStore,
    {
        "memory": "prodml.monitoring._alerts:MemoryAlertStore",
        "sql": "prodml.monitoring._alerting:SqlAlertStore",
    },
)


def open_alert_store(kind: str, store: MonitorStore, clock: Clock) -> AlertStore:
    """The alert store :data:`ALERT_STORES` registers as ``kind``, for the monitoring job
    over ``store`` (``"sql"``: in its metadata DB)."""
    return ALERT_STORES.load(kind).for_monitor(store, clock)


def evaluate(
    rule: AlertRuleConfig,
    scope: str,
    observations: Sequence[Observation],
    previous: AlertState | None,
) -> tuple[AlertState, list[Notification]]:
    """Advance the alert of ``rule`` in ``scope`` over new windows (see the module doc)."""
    state = previous if previous is not None else AlertState(rule=rule.name, scope=scope)
    if (state.rule, state.scope) != (rule.name, scope):
        raise StateError(
            f"alert rule {rule.name!r} scope {scope!r}: previous state belongs to rule "
            f"{state.rule!r} scope {state.scope!r}"
        )
    notes: list[Notification] = []
    for obs in sorted(observations, key=lambda o: (o.window_end, o.window_start)):
        if state.last_time is not None and obs.window_end <= state.last_time:
            continue
        state, note = _step(rule, state, obs)
        if note is not None:
            notes.append(note)
    return state, notes


def _step(
    rule: AlertRuleConfig, s: AlertState, obs: Observation
) -> tuple[AlertState, Notification | None]:
    """One window: the state machine of the module doc."""
    t = obs.window_end
    if obs.value is None:
        return replace(s, last_time=t), None
    above = rule.direction == "above"
    breach = obs.value > rule.threshold if above else obs.value < rule.threshold
    keep = rule.m_of_n[1] if rule.m_of_n is not None else 1
    history = (*s.history, (t, breach))[-keep:]
    held = breach if rule.m_of_n is None else sum(b for _, b in history) >= rule.m_of_n[0]
    entry = {
        "window_start": _iso(obs.window_start),
        "window_end": _iso(t),
        "value": obs.value,
        "breach": breach,
        "condition": held,
        "details": obs.evidence,
    }
    s = replace(s, last_time=t, last_value=obs.value, history=history)

    if s.state in ("inactive", "resolved"):
        if not held:
            return s, None
        s = replace(
            s,
            state="pending",
            first_time=t,
            fired_at=None,
            resolved_at=None,
            clear_since=None,
            evidence=(entry,),
        )
    else:
        s = replace(s, evidence=(*s.evidence, entry)[-EVIDENCE_WINDOWS:])

    if s.state == "pending":
        if not held:
            return replace(s, state="inactive"), None
        assert s.first_time is not None  # set when the episode began
        if rule.for_ is not None and t - s.first_time < rule.for_:
            return s, None
        s = replace(s, state="firing", fired_at=t)
        if not _cooldown_over(rule, s, t):
            return replace(s, suppressed=s.suppressed + 1), None
        return _notify(rule, s, obs, obs.value, "firing")

    # firing
    if held:
        s = replace(s, clear_since=None)
        if s.last_notified != "firing" and _cooldown_over(rule, s, t):
            return _notify(rule, s, obs, obs.value, "firing")  # held back by the cooldown until now
        return s, None
    clear_since = s.clear_since or t
    if rule.keep_firing_for is not None and t - clear_since < rule.keep_firing_for:
        return replace(s, clear_since=clear_since), None
    s = replace(s, state="resolved", resolved_at=t, clear_since=None)
    if s.last_notified != "firing":
        return s, None  # its firing was never sent
    return _notify(rule, s, obs, obs.value, "resolved")


def _cooldown_over(rule: AlertRuleConfig, s: AlertState, t: datetime) -> bool:
    if rule.cooldown is None or s.last_notified != "resolved" or s.last_notified_at is None:
        return True
    return t - s.last_notified_at >= rule.cooldown


def _notify(
    rule: AlertRuleConfig,
    s: AlertState,
    obs: Observation,
    value: float,
    kind: Literal["firing", "resolved"],
) -> tuple[AlertState, Notification]:
    # Invariants of the state machine: an episode that fires has begun and fired.
    assert s.first_time is not None
    assert s.fired_at is not None
    note = Notification(
        rule=rule.name,
        metric=rule.metric,
        severity=rule.severity,
        scope=s.scope,
        state=kind,
        value=value,
        threshold=rule.threshold,
        direction=rule.direction,
        window_start=obs.window_start,
        window_end=obs.window_end,
        first_time=s.first_time,
        fired_at=s.fired_at,
        resolved_at=s.resolved_at,
        evidence=s.evidence,
        runbook=rule.runbook,
    )
    return replace(s, last_notified=kind, last_notified_at=obs.window_end), note


class AlertEngine:
    """Loads an alert's state, evaluates new windows, saves the state, then sends the
    notifications to the rule's sinks.

    The state is saved before anything is sent, and a failing sink is logged and counted
    in :attr:`delivery_failures` (per sink name), never raised: delivery is at most once.
    A ``log`` sink exists unless ``sinks`` holds one with that name.
    """

    def __init__(
        self,
        rules: Iterable[AlertRuleConfig],
        store: AlertStore,
        sinks: Iterable[Sink],
        clock: Clock,
    ) -> None:
        self._rules: dict[str, AlertRuleConfig] = {}
        for rule in rules:
            if rule.name in self._rules:
                raise ConfigError(f"alert rule {rule.name!r} is defined twice")
            self._rules[rule.name] = rule
        self._sinks: dict[str, Sink] = {DEFAULT_SINK: LogSink(DEFAULT_SINK)}
        self._sinks.update((sink.name, sink) for sink in sinks)
        for rule in self._rules.values():
            unknown = [name for name in rule.sinks if name not in self._sinks]
            if unknown:
                raise ConfigError(
                    f"alert rule {rule.name!r}: unknown sinks {unknown}; "
                    f"known: {sorted(self._sinks)}"
                )
        self._store = store
        self._clock = clock
        self.delivery_failures: Counter[str] = Counter()

    @property
    def rules(self) -> Mapping[str, AlertRuleConfig]:
        return dict(self._rules)

    def process(
        self, rule_name: str, scope: str, observations: Sequence[Observation]
    ) -> list[Notification]:
        """Evaluate ``observations`` for one rule and scope; return what was sent."""
        rule = self._rules.get(rule_name)
        if rule is None:
            raise NotFoundError(
                f"alert rule {rule_name!r} does not exist; known: {sorted(self._rules)}"
            )
        previous = self._store.get(rule_name, scope)
        state, notes = evaluate(rule, scope, observations, previous)
        if state != previous:
            self._store.put(state)
        if not notes:
            return []
        sent_at = self._clock.now()
        notes = [replace(note, sent_at=sent_at) for note in notes]
        for note in notes:
            for name in rule.sinks:
                self._deliver(self._sinks[name], note)
        return notes

    def _deliver(self, sink: Sink, note: Notification) -> None:
        try:
            sink.send(note)
        except Exception:  # a broken sink must not stop the others nor lose the state
            self.delivery_failures[sink.name] += 1
            _log.exception(
                "alert %s of rule %r scope %r: sink %r failed",
                note.state,
                note.rule,
                note.scope,
                sink.name,
            )
