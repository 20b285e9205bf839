"""What the rollout controller writes for a decision: :class:`Decision`, and
:class:`DecisionWriter`, which records one — the deployment change (when there is one),
the plan's state and status and the decision row with its evidence in one transaction,
refused if the plan changed since it was read — and raises the alert of a rollback.
:mod:`~prodml.rollout._controller` decides; this module writes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prodml.core import Clock
from prodml.registry import Deployment
from prodml.rollout._decide import Verdict, evidence_of
from prodml.rollout._plan import RolloutPlan
from prodml.rollout._state import RolloutState
from prodml.rollout._store import PlanRecord, RolloutStore
from prodml.storage import MetadataDB

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from prodml.monitoring import MonitorStore

__all__ = ["ROLLED_BACK_RULE", "Decision", "DecisionWriter"]

alerts = logging.getLogger("prodml.alerts")
#: The alert of a plan the controller rolled back (its evidence: the decision's).
ROLLED_BACK_RULE = "rollout_rolled_back"


@dataclass(frozen=True)
class Decision:
    """What a pass or a command decided for one endpoint, and the deployment revision it
    wrote (None: nothing changed in the deployment)."""

    endpoint: str
    action: str
    reason: str
    status: str
    revision: int | None
    evidence: Mapping[str, Any]
    time: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "action": self.action,
            "reason": self.reason,
            "status": self.status,
            "revision": self.revision,
            "evidence": dict(self.evidence),
            "time": self.time.isoformat(),
        }


class DecisionWriter:
    """Records the decisions of the plans in ``store`` (see the module docstring)."""

    def __init__(
        self, db: MetadataDB, store: RolloutStore, clock: Clock, monitor: MonitorStore | None
    ) -> None:
        self._db = db
        self.store = store
        self._clock = clock
        self._monitor = monitor

    def write(
        self,
        record: PlanRecord,
        state: RolloutState,
        verdict: Verdict,
        evidence: dict[str, Any],
        actor: str,
        status: str,
        change: Callable[[Callable[[Session, Deployment], None]], Deployment],
        *,
        step: int | None = None,
        promoted: bool = False,
    ) -> Decision:
        now = self._clock.now()

        def within(session: Session, deployment: Deployment) -> None:
            new = state.with_(revision=deployment.revision, last_code=verdict.code)
            if step is not None:
                new = new.with_(step=step, step_started_at=now)
            if promoted:
                old = deployment.spec.arms
                previous = next((a.name for a in old if a.role == "shadow"), None)
                new = new.with_(promoted_at=now, previous_arm=previous)
            self.store.update(
                session, record.endpoint, new.to_dict(), status, expected_version=record.version
            )
            self.store.add_decision(
                session, record.endpoint, verdict.action, step=new.step,
                revision=deployment.revision, actor=actor, reason=verdict.reason,
                evidence=evidence, time=now,
            )  # fmt: skip

        deployment = change(within)
        return Decision(
            record.endpoint,
            verdict.action,
            verdict.reason,
            status,
            deployment.revision,
            evidence,
            now,
        )

    def hold(
        self,
        record: PlanRecord,
        state: RolloutState,
        verdict: Verdict,
        evidence: dict[str, Any] | None,
        actor: str,
    ) -> Decision:
        """Record a hold once per rule (a pass repeating the same rule only counts)."""
        now = self._clock.now()
        status = (
            "awaiting_approval"
            if verdict.code == "awaiting_approval"
            else ("promoted" if record.status == "promoted" else "active")
        )
        evidence = evidence or evidence_of(verdict, None, None)
        new = state.with_(last_code=verdict.code)
        decision = verdict.action if verdict.code != state.last_code else None
        self.record(record, new, status, decision, verdict.reason, evidence, actor)
        return Decision(
            record.endpoint, verdict.action, verdict.reason, status, None, evidence, now
        )

    def record(
        self,
        record: PlanRecord,
        state: RolloutState,
        status: str,
        decision: str | None,
        reason: str,
        evidence: Mapping[str, Any],
        actor: str,
    ) -> None:
        """Write the plan's state and status and, unless ``decision`` is None, a decision
        row — one transaction, refused if the plan changed since it was read."""
        with self._db.write() as session:
            self.store.update(
                session, record.endpoint, state.to_dict(), status, expected_version=record.version
            )
            if decision is not None:
                self.store.add_decision(
                    session, record.endpoint, decision, step=state.step, revision=None,
                    actor=actor, reason=reason, evidence=dict(evidence), time=self._clock.now(),
                )  # fmt: skip

    def alert(self, decision: Decision, plan: RolloutPlan, verdict: Verdict) -> None:
        """One alert for a plan the controller rolled back: an event in the monitoring
        store (when the controller has one) and a warning in the ``prodml.alerts`` log."""
        payload = {"endpoint": decision.endpoint, "challenger": plan.challenger,
                   "rule": verdict.code, "reason": decision.reason,
                   "revision": decision.revision}  # fmt: skip
        if self._monitor is not None:
            now = decision.time
            self._monitor.record_event(
                ROLLED_BACK_RULE, f"endpoint={decision.endpoint}", "firing", now, payload, now
            )
        alerts.warning(
            "ALERT %s endpoint=%s: %s rolled back (%s): %s", ROLLED_BACK_RULE,
            decision.endpoint, plan.challenger, verdict.code, decision.reason,
        )  # fmt: skip
