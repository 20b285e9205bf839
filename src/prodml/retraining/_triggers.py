"""Whether a policy's triggers fire: schedules against the last job, drift and
performance against the monitoring results of the model the endpoint serves.

Drift and performance triggers are debounced exactly like alerts: the monitoring
layer's :func:`~prodml.monitoring.evaluate` advances a persisted state over closed
windows in window-time order (``m_of_n``, ``for``), and a trigger fires on the window
where that state turns ``firing``. Only windows of the served version that end after
the policy's last job started count — a retrain starts a fresh episode — and
performance triggers wait for a window's labels to be final.

A ``challenger`` trigger observes, per window of the served version, the lead of the
best other arm's model (a shadow, or a canary's challenger) over the champion on the
same window's realized metric (positive: the challenger is better), once both windows'
labels are final.

Drift of named ``ignore``\\ d features (seasonal inputs) does not count: the drifted
share is recomputed from the per-feature results, weighted by ``weights`` (importance,
default 1 for every feature).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

from pydantic import ValidationError

from prodml.core import ConfigError
from prodml.core._alert_config import AlertRuleConfig
from prodml.core._retraining_config import RetrainPolicyConfig, TriggerConfig
from prodml.monitoring import AlertState, MonitorStore, Observation, Result, StoredWindow, evaluate
from prodml.training import METRIC_DIRECTIONS

__all__ = ["Fired", "TriggerCheck", "drift_share", "rule_name", "scope_of"]


@dataclass(frozen=True)
class Fired:
    """A trigger that fired: its kind, why, and the evidence (values, windows)."""

    kind: str
    reason: str
    evidence: dict[str, Any]


def rule_name(policy: str, index: int) -> str:
    """The alert-state key of trigger ``index`` of ``policy``."""
    return f"retrain-{policy}-{index}"


def scope_of(policy: str) -> str:
    """The alert scope of ``policy``'s trigger states and failed-job alerts."""
    return f"policy={policy}"


def drift_share(results: Sequence[Result], trigger: TriggerConfig) -> float | None:
    """The window's drifted share: the stored one, or without the ignored features and
    weighted when the trigger says so (None: no drift result in the window)."""
    if not trigger.ignore and not trigger.weights:
        for r in results:
            if r.check == "drift" and r.metric == "share" and not r.column:
                return r.value
        return None
    total = drifted = 0.0
    seen = False
    for r in results:
        if r.check != "drift" or not r.column or r.column in trigger.ignore:
            continue
        if r.status not in ("ok", "drift"):
            continue
        seen = True
        weight = trigger.weights.get(r.column, 1.0)
        total += weight
        drifted += weight if r.status == "drift" else 0.0
    if not seen or total <= 0:
        return None
    return drifted / total


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def _challenger(observed: Sequence[Observation], window_end: datetime) -> dict[str, Any]:
    """The firing window's challenger evidence (nothing for other triggers)."""
    for o in observed:
        if o.window_end == window_end and "challenger" in (o.evidence or {}):
            return dict(o.evidence)
    return {}


def _closed(windows: Sequence[StoredWindow], until: datetime | None) -> list[StoredWindow]:
    """The windows that ended by ``until`` (all of them when None)."""
    return [w for w in windows if until is None or w.end <= until]


def _metric_value(results: Sequence[Result], metric: str) -> float | None:
    check, _, name = metric.partition(".")
    for r in results:
        if r.check == check and r.metric == name and not r.column:
            return r.value
    return None


class TriggerCheck:
    """Evaluates the triggers of policies against the monitoring store, keeping each
    trigger's debounce state there (as alert states under :func:`rule_name`)."""

    def __init__(self, store: MonitorStore) -> None:
        self.store = store

    def windows(
        self, endpoint: str, served: str, since: datetime | None, until: datetime | None = None
    ) -> list[tuple[StoredWindow, list[Result]]]:
        """Closed windows of the live arm serving ``served`` that end after ``since`` (and
        by ``until``: a window stamped later is not closed yet — a skewed clock — and would
        move the trigger's state past the real windows before it)."""
        found = [
            w
            for w in _closed(self.store.windows(endpoint=endpoint, since=since), until)
            if not w.shadow and w.model_version == served
        ]
        results = self.store.results([w.id for w in found])
        return [(w, results[w.id]) for w in found]

    def leads(
        self,
        trigger: TriggerConfig,
        endpoint: str,
        served: str,
        since: datetime | None,
        until: datetime | None = None,
    ) -> list[Observation]:
        """Per closed window of the live arm serving ``served`` (labels final, ended by
        ``until``): the best lead of another model's arm over it on the trigger's metric
        in the same window."""
        found = _closed(self.store.windows(endpoint=endpoint, since=since), until)
        results = self.store.results([w.id for w in found])
        metric = trigger.metric or "performance.roc_auc"
        sign = -1.0 if METRIC_DIRECTIONS.get(metric.partition(".")[2]) == "lower" else 1.0
        others: dict[tuple[datetime, datetime], list[tuple[str, float]]] = {}
        for w in found:
            value = _metric_value(results[w.id], metric)
            if w.model_version != served and w.labels_final and _finite(value):
                others.setdefault((w.start, w.end), []).append((w.model_version, value))
        out = []
        for w in found:
            if w.shadow or w.model_version != served or not w.labels_final:
                continue
            own = _metric_value(results[w.id], metric)
            rivals = others.get((w.start, w.end), [])
            if not _finite(own) or not rivals:
                continue
            model, best = max(rivals, key=lambda r: sign * r[1])
            lead = sign * (best - own)
            evidence = {"challenger": model, "challenger_value": best, "champion_value": own,
                        "label_rows": w.label_rows}  # fmt: skip
            out.append(Observation(w.start, w.end, lead, evidence))
        return out

    def observations(
        self,
        trigger: TriggerConfig,
        windows: Sequence[tuple[StoredWindow, list[Result]]],
    ) -> list[Observation]:
        out = []
        for window, results in windows:
            if trigger.kind == "drift":
                value = drift_share(results, trigger)
            else:
                if not window.labels_final and trigger.metric.startswith("performance."):  # type: ignore[union-attr]
                    continue
                value = _metric_value(results, trigger.metric or "")
            if value is not None and not math.isfinite(value):
                value = None
            evidence = {"rows": window.rows, "label_rows": window.label_rows}
            out.append(Observation(window.start, window.end, value, evidence))
        return out

    def check(
        self,
        policy: RetrainPolicyConfig,
        index: int,
        trigger: TriggerConfig,
        *,
        windows: Sequence[tuple[StoredWindow, list[Result]]],
        threshold: float,
        now: datetime,
        observed: Sequence[Observation] | None = None,
    ) -> Fired | None:
        """Advance trigger ``index`` of ``policy`` over ``windows`` (or the ``observed``
        values, for a challenger trigger); the firing, if it turned firing on one."""
        name = rule_name(policy.name, index)
        scope = scope_of(policy.name)
        try:
            rule = AlertRuleConfig.model_validate(
                {
                    "name": name, "metric": trigger.metric, "threshold": threshold,
                    "direction": trigger.direction, "m_of_n": trigger.m_of_n,
                    "for": trigger.for_,
                }
            )  # fmt: skip
        except ValidationError as exc:  # a metric monitoring never computes, say
            problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            raise ConfigError(
                f"retraining policy {policy.name!r}, trigger {index} ({trigger.kind}): metric "
                f"{trigger.metric!r} cannot be watched: {problems}"
            ) from None
        stored = self.store.alert_state(name, scope)
        previous = AlertState.from_dict(stored) if stored is not None else None
        if observed is None:
            observed = self.observations(trigger, windows)
        state, notes = evaluate(rule, scope, observed, previous)
        if previous is None or state != previous:
            self.store.save_alert_state(name, scope, state.state, state.to_dict(), now)
        fired = [n for n in notes if n.state == "firing"]
        if not fired:
            return None
        note = fired[-1]
        word = "above" if trigger.direction == "above" else "below"
        debounce = f" in {trigger.m_of_n[0]} of the last {trigger.m_of_n[1]} windows" if trigger.m_of_n else ""  # fmt: skip
        what = trigger.metric if trigger.kind != "challenger" else (
            f"a challenger's lead over the champion on {trigger.metric}"
        )  # fmt: skip
        reason = (
            f"{what} {word} {threshold:g}{debounce} "
            f"(window ending {note.window_end:%Y-%m-%d}: {note.value:.4g})"
        )
        return Fired(
            trigger.kind,
            reason,
            {"metric": trigger.metric, "threshold": threshold, "value": note.value,
             "window_end": note.window_end.isoformat(),
             "m_of_n": None if trigger.m_of_n is None else list(trigger.m_of_n),
             "ignore": list(trigger.ignore), **_challenger(observed, note.window_end)},
        )  # fmt: skip

    def reset(self, policy: RetrainPolicyConfig, now: datetime) -> None:
        """Forget the debounce state of every trigger of ``policy`` (a job started)."""
        for index, trigger in enumerate(policy.triggers):
            if trigger.kind == "schedule":
                continue
            name = rule_name(policy.name, index)
            scope = scope_of(policy.name)
            if self.store.alert_state(name, scope) is not None:
                fresh = AlertState(rule=name, scope=scope)
                self.store.save_alert_state(name, scope, fresh.state, fresh.to_dict(), now)
