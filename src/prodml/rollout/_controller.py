"""The rollout controller: starts plans, runs passes, and carries out the human commands
(advance, pause, resume, approve, rollback, promote) — each change one transaction that
writes the deployment revision, the plan's state and the decision with its evidence.

A pass (:meth:`Rollouts.run_once`) holds the project's ``rollout`` lease, so two
controllers never act at once; for each active plan it reads the deployment (a change
made by someone else ends the plan, a server guardrail's zeroing of the challenger rolls
it back), analyses the experiment from the logs, decides (:func:`~prodml.rollout._decide.decide`)
and applies the decision. Servers follow the deployment revisions it writes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prodml.core import (
    Clock,
    ConflictError,
    DefinitionError,
    NotFoundError,
    ProdMLError,
    StateError,
)
from prodml.registry import Deployment, DeploymentStore
from prodml.rollout._decide import Verdict, decide, evidence_of
from prodml.rollout._decisions import Decision, DecisionWriter
from prodml.rollout._options import default_options, plan_options
from prodml.rollout._plan import RolloutPlan
from prodml.rollout._starting import first_step
from prodml.rollout._state import ACTIVE_STATUSES, RolloutState
from prodml.rollout._store import PlanRecord, RolloutStore
from prodml.storage import Lease, LogStores, MetadataDB, QuarantinedFile, default_holder

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from prodml.monitoring import MonitorStore
    from prodml.rollout._analysis import ExperimentAnalysis

__all__ = ["CONTROLLER", "Rollouts"]

log = logging.getLogger(__name__)
#: The actor of the controller's own decisions.
CONTROLLER = "rollout-controller"
LEASE = "rollout"


class Rollouts:
    """The rollout plans of a project and the controller that acts on them."""

    def __init__(
        self,
        db: MetadataDB,
        deployments: DeploymentStore,
        logs: LogStores,
        clock: Clock,
        *,
        holder: str | None = None,
        lease_s: float = 120.0,
        monitor: MonitorStore | None = None,
    ) -> None:
        self._deployments = deployments
        self._logs = logs
        self._clock = clock
        self.store = RolloutStore(db, clock)
        self._writes = DecisionWriter(db, self.store, clock, monitor)
        self.holder = holder or default_holder()
        self._lease = Lease(db, LEASE, self.holder, ttl_s=lease_s, clock=clock)

    # --- plans ------------------------------------------------------------------------
    def start(
        self,
        endpoint: str,
        plan: RolloutPlan | Mapping[str, Any],
        *,
        actor: str,
        reason: str | None = None,
    ) -> Decision:
        """Store ``plan`` for ``endpoint`` and deploy its first step, in one transaction.
        Refused while another plan of the endpoint is active."""
        plan = plan if isinstance(plan, RolloutPlan) else RolloutPlan.from_dict(plan)
        existing = self.store.get(endpoint)
        if existing is not None and existing.status in (*ACTIVE_STATUSES, "paused"):
            raise ConflictError(
                f"endpoint {endpoint!r} already has a rollout plan with status "
                f"{existing.status!r} (started by {existing.created_by}); roll it back, "
                "promote it or let it finish before starting another"
            )
        current = self._deployments.get(endpoint)
        spec, action, champion = first_step(plan, endpoint, current.spec)
        now = self._clock.now()
        evidence = {"rule": "start", "plan": plan.to_dict()}
        text = reason or f"rollout plan started ({plan.kind})"

        def within(session: Session, deployment: Deployment) -> None:
            challenger = None
            if plan.kind == "canary":
                challenger = deployment.spec.arm("challenger").model
                if challenger == deployment.spec.arm(champion).model:  # aliases resolved
                    raise StateError(
                        f"rollout plan of {endpoint!r}: challenger {plan.challenger!r} is "
                        f"{challenger}, the version the champion arm already serves; expected "
                        "another version of the model"
                    )
            state = RolloutState(
                now, now, deployment.revision, deployment.spec.arm(champion).model,
                challenger, champion_arm=champion,
            )  # fmt: skip
            self.store.save(session, endpoint, plan.to_dict(), state.to_dict(), "active", actor)
            self.store.add_decision(
                session, endpoint, "start", step=0, revision=deployment.revision, actor=actor,
                reason=text, evidence=evidence, time=now,
            )  # fmt: skip

        if action == "deploy":
            deployment = self._deployments.deploy(
                endpoint, spec, actor=actor, reason=text, evidence=evidence, within=within,
                expected_revision=current.revision,
            )  # fmt: skip
        else:
            deployment = self._deployments.set_weights(
                endpoint, spec.serving_weights(), actor=actor, reason=text, evidence=evidence,
                within=within, expected_revision=current.revision,
            )  # fmt: skip
        return Decision(endpoint, "start", text, "active", deployment.revision, evidence, now)

    def hand_off(
        self,
        endpoint: str,
        challenger: str,
        plan: Mapping[str, Any],
        *,
        actor: str = "retraining-controller",
    ) -> dict[str, Any]:
        """Start ``plan`` (a canary plan's fields) on ``endpoint`` with ``challenger`` as
        its challenger — how a retrained candidate reaches traffic — and say what was
        decided. Refused like :meth:`start` while another plan of the endpoint is active."""
        fields = {"kind": "canary", **plan, "challenger": challenger}
        decision = self.start(
            endpoint, fields, actor=actor, reason=f"retrained candidate {challenger}"
        )
        return decision.to_dict()

    def get(self, endpoint: str) -> tuple[RolloutPlan, RolloutState, PlanRecord]:
        record = self.store.get(endpoint)
        if record is None:
            known = [r.endpoint for r in self.store.list()]
            raise StateError(
                f"endpoint {endpoint!r} has no rollout plan; endpoints with one: {known}; "
                "start one with `prodml rollout plan`"
            )
        return RolloutPlan.from_dict(record.plan), RolloutState.from_dict(record.state), record

    def status(self, endpoint: str, *, decisions: int = 20) -> dict[str, Any]:
        plan, state, record = self.get(endpoint)
        deployment = self._deployments.get(endpoint)
        return {
            "endpoint": endpoint,
            "status": record.status,
            "plan": plan.to_dict(),
            "state": state.to_dict(),
            "deployment": deployment.to_dict(),
            "decisions": self.store.decisions(endpoint, limit=decisions),
            "lease": _lease_view(self._lease),
        }

    # --- analysis ---------------------------------------------------------------------
    def analyze(self, endpoint: str, **options: Any) -> ExperimentAnalysis:
        """The experiment analysis of ``endpoint`` (see
        :func:`~prodml.rollout._analysis.analyze_experiment`); by default from the start
        of its rollout plan, with the plan's metric, guardrails and expected weights
        (:mod:`~prodml.rollout._options`)."""
        record = self.store.get(endpoint)
        if record is not None:
            plan = RolloutPlan.from_dict(record.plan)
            state = RolloutState.from_dict(record.state)
            defaults = plan_options(plan, state, self._deployments.get(endpoint).spec)
        else:
            try:
                spec = self._deployments.get(endpoint).spec
                changed = self._deployments.history(endpoint)[-1]["time"]
            except NotFoundError:
                spec, changed = None, None
            defaults = default_options(spec, changed)
        return self._analyze(endpoint, {**defaults, **options})

    def _analyze(self, endpoint: str, options: dict[str, Any]) -> ExperimentAnalysis:
        from prodml.rollout._analysis import analyze_experiment  # DuckDB: on first use

        return analyze_experiment(self._logs, endpoint, **options)

    # --- the pass ---------------------------------------------------------------------
    def run_once(self, endpoint: str | None = None, *, actor: str = CONTROLLER) -> list[Decision]:
        """One pass over the active plans (or ``endpoint``'s) under the controller
        lease; :class:`ConflictError` naming the holder when another controller has it."""
        if not self._lease.acquire():
            held = _lease_view(self._lease)
            raise ConflictError(
                f"another rollout controller holds the project's lease ({held}); this pass "
                "did nothing — one controller acts at a time"
            )
        records = self.store.list()
        decisions = []
        for record in records:
            if record.status not in ACTIVE_STATUSES or endpoint not in (None, record.endpoint):
                continue
            try:
                decisions.append(self._pass(record, actor))
            except ConflictError as exc:  # the deployment moved under us: next pass re-reads
                log.warning("rollout pass on %r: %s", record.endpoint, exc)
            except ProdMLError as exc:  # one endpoint's failure costs that endpoint's pass
                log.error("rollout pass on %r failed, nothing changed: %s", record.endpoint, exc)
        return decisions

    def release(self) -> None:
        self._lease.release()

    def _pass(self, record: PlanRecord, actor: str) -> Decision:
        endpoint = record.endpoint
        plan = RolloutPlan.from_dict(record.plan)
        state = RolloutState.from_dict(record.state)
        state = state.with_(passes=state.passes + 1)
        now = self._clock.now()
        deployment = self._deployments.get(endpoint)
        if deployment.revision != state.revision:
            moved = self._moved(record, plan, state, deployment, actor)
            if moved is not None:
                return moved
            state = state.with_(revision=deployment.revision)
        if record.status == "promoted":
            return self._decommission(record, plan, state, actor)
        if deployment.spec.paused:
            return self._writes.hold(
                record, state, Verdict("hold", "paused", "deployment is paused"), None, actor
            )
        analysis = self._analysis(endpoint, plan_options(plan, state, deployment.spec))
        verdict = decide(plan, state, analysis, now)
        return self._apply(record, plan, state, verdict, analysis, actor)

    def _analysis(self, endpoint: str, options: dict[str, Any]) -> dict[str, Any] | None:
        """The pass's analysis as JSON data (None: no records yet), from what the pass
        has already read."""
        moved: list[QuarantinedFile] = []  # unreadable log files are set aside, not fatal
        try:
            return self._analyze(endpoint, {**options, "quarantine": moved}).to_dict()
        except NotFoundError:
            return None
        finally:
            for item in moved:
                log.warning("rollout pass on %r: quarantined %s (%s)", endpoint, item.source,
                            item.reason)  # fmt: skip

    def _moved(
        self,
        record: PlanRecord,
        plan: RolloutPlan,
        state: RolloutState,
        deployment: Deployment,
        actor: str,
    ) -> Decision | None:
        """Someone else changed the deployment since the plan's last write: a server
        guardrail that zeroed the challenger rolls the plan back; pause/resume are
        followed; anything else ends the plan (its deployment is no longer the plan's)."""
        history = self._deployments.history(record.endpoint)
        since = [h for h in history if h["revision"] > state.revision]
        actions = {h["action"] for h in since}
        if actions <= {"pause", "resume"}:
            return None
        if actions <= {"pause", "resume", "guardrail"} and "guardrail" in actions:
            last = next(h for h in reversed(since) if h["action"] == "guardrail")
            verdict = Verdict(
                "rollback", "server_guardrail",
                f"the server's guardrail zeroed arm weights at revision {last['revision']}: "
                f"{last.get('reason') or 'no reason recorded'}",
            )  # fmt: skip
            return self._apply(
                record, plan, state.with_(revision=deployment.revision), verdict, None, actor
            )
        last = since[-1]
        verdict = Verdict(
            "stop", "deployment_changed",
            f"deployment changed outside the plan: {last['action']} by {last['actor']} at "
            f"revision {last['revision']} ({last.get('reason') or 'no reason'}); plan ended",
        )  # fmt: skip
        now = self._clock.now()
        evidence = evidence_of(verdict, None, None)
        new = state.with_(revision=deployment.revision, last_code=verdict.code)
        self._writes.record(record, new, "stopped", "stop", verdict.reason, evidence, actor)
        return Decision(record.endpoint, "stop", verdict.reason, "stopped", None, evidence, now)

    def _apply(
        self,
        record: PlanRecord,
        plan: RolloutPlan,
        state: RolloutState,
        verdict: Verdict,
        analysis: dict[str, Any] | None,
        actor: str,
    ) -> Decision:
        arm = verdict.arm or (state.challenger_arm if plan.kind == "canary" else None)
        evidence = evidence_of(verdict, analysis, arm)
        action = verdict.action
        if action in ("hold", "continue"):
            return self._writes.hold(record, state, verdict, evidence, actor)
        if action == "advance":
            nxt = state.step + 1
            weight = plan.steps[nxt].weight
            return self._writes.write(
                record, state, verdict, evidence, actor, "active",
                lambda within: self._deployments.set_weights(
                    record.endpoint, {state.challenger_arm: weight}, actor=actor,
                    reason=verdict.reason, action="advance", evidence=evidence, within=within,
                    expected_revision=state.revision,
                ),
                step=nxt,
            )  # fmt: skip
        if action in ("rollback", "stop"):
            status = "rolled_back" if action == "rollback" else "stopped"
            decision = self._writes.write(
                record, state, verdict, evidence, actor, status,
                lambda within: self._deployments.rollback(
                    record.endpoint, actor=actor, reason=verdict.reason, evidence=evidence,
                    within=within,
                ),
            )  # fmt: skip
            if action == "rollback":
                self._writes.alert(decision, plan, verdict)
            return decision
        if action in ("promote", "ship"):
            return self._promote(record, plan, state, verdict, evidence, actor, arm)
        raise DefinitionError(f"rollout decision {action!r} is unknown")

    def _promote(
        self,
        record: PlanRecord,
        plan: RolloutPlan,
        state: RolloutState,
        verdict: Verdict,
        evidence: dict[str, Any],
        actor: str,
        arm: str | None,
    ) -> Decision:
        target = arm or state.challenger_arm
        try:
            return self._writes.write(
                record, state, verdict, evidence, actor, "promoted",
                lambda within: self._deployments.promote(
                    record.endpoint, target, actor=actor, reason=verdict.reason,
                    evidence=evidence, within=within, keep_previous=True,
                    require_blessed=plan.require_blessed, require_approved=plan.require_approved,
                ),
                promoted=True,
            )  # fmt: skip
        except StateError as exc:  # not blessed / not approved: nothing was written
            blocked = Verdict("hold", "blocked", f"cannot promote arm {target!r}: {exc}")
            return self._writes.hold(
                record, state, blocked, {**evidence, "blocked": str(exc)}, actor
            )

    def _decommission(
        self, record: PlanRecord, plan: RolloutPlan, state: RolloutState, actor: str
    ) -> Decision:
        now = self._clock.now()
        assert state.promoted_at is not None
        waited = (now - state.promoted_at).total_seconds()
        arm = state.previous_arm
        if arm is None:
            text = "promoted; no previous arm to decommission"
            self._writes.record(
                record, state, "completed", "decommission", text, {"rule": "decommission"}, actor
            )
            return Decision(record.endpoint, "decommission", text, "completed", None, {}, now)
        if waited < plan.decommission_delay_s:
            verdict = Verdict(
                "hold", "decommission_delay",
                f"promoted; previous champion arm {arm!r} kept for a fast rollback for "
                f"{plan.decommission_delay_s - waited:.0f} s more",
            )  # fmt: skip
            return self._writes.hold(record, state, verdict, None, actor)
        verdict = Verdict(
            "decommission", "decommission",
            f"previous champion arm {arm!r} decommissioned {waited:.0f} s after the promotion",
        )  # fmt: skip
        evidence = evidence_of(verdict, None, None)
        return self._writes.write(
            record, state, verdict, evidence, actor, "completed",
            lambda within: self._deployments.decommission(
                record.endpoint, arm, actor=actor, reason=verdict.reason, evidence=evidence,
                within=within,
            ),
        )  # fmt: skip

    # --- human commands -----------------------------------------------------------------
    def advance(self, endpoint: str, *, actor: str, reason: str | None = None) -> Decision:
        """Move a canary to its next step now, skipping the bake (guardrails still apply
        on the next pass)."""
        plan, state, record = self._active(endpoint, "advance")
        if plan.kind != "canary" or state.step >= plan.last_step:
            raise StateError(
                f"rollout of {endpoint!r} is at its last step ({state.step + 1} of "
                f"{len(plan.steps)}) or is not a canary; promote it with `prodml rollout promote`"
            )
        verdict = Verdict("advance", "manual", reason or f"advanced by {actor}")
        return self._apply(record, plan, state, verdict, None, actor)

    def pause(self, endpoint: str, *, actor: str, reason: str | None = None) -> Decision:
        """Freeze the plan: passes make no decision until :meth:`resume` (traffic stays
        as it is; pause the deployment to send it all to the champion)."""
        return self._set_status(endpoint, "paused", ("active", "awaiting_approval"), actor, reason)

    def resume(self, endpoint: str, *, actor: str, reason: str | None = None) -> Decision:
        return self._set_status(endpoint, "active", ("paused",), actor, reason)

    def approve(self, endpoint: str, *, actor: str, reason: str | None = None) -> Decision:
        """A human's approval of the promotion (plans with ``require_approval``)."""
        _plan, state, record = self._active(endpoint, "approve")
        now = self._clock.now()
        new = state.with_(approved_by=actor, approved_at=now, approval_reason=reason)
        text = reason or f"promotion approved by {actor}"
        status = "active" if record.status == "awaiting_approval" else record.status
        evidence = {"rule": "approval", "actor": actor, "reason": reason}
        self._writes.record(record, new, status, "approve", text, evidence, actor)
        return Decision(endpoint, "approve", text, status, None, evidence, now)

    def rollback(self, endpoint: str, *, actor: str, reason: str | None = None) -> Decision:
        """Back to the champion now: end the canary, undo the promotion (while it is the
        latest change), or serve the ``previous`` version again after a decommission."""
        _plan, state, record = self.get(endpoint)
        text = reason or f"rolled back by {actor}"
        verdict = Verdict("rollback", "manual", text)
        evidence = evidence_of(verdict, None, None)
        undo = self._deployments.rollback
        if record.status in ("promoted", "completed"):  # the challenger is champion now
            undo = self._deployments.restore_previous
        return self._writes.write(
            record, state, verdict, evidence, actor, "rolled_back",
            lambda within: undo(endpoint, actor=actor, reason=text, evidence=evidence, within=within),
        )  # fmt: skip

    def promote(self, endpoint: str, *, actor: str, reason: str | None = None) -> Decision:
        """Promote the challenger now (a human's decision; the registry's rules and the
        plan's blessed/approved requirements still apply)."""
        plan, state, record = self._active(endpoint, "promote")
        verdict = Verdict("promote", "manual", reason or f"promoted by {actor}")
        evidence = evidence_of(verdict, None, None)
        target = state.challenger_arm
        return self._writes.write(
            record, state, verdict, evidence, actor, "promoted",
            lambda within: self._deployments.promote(
                endpoint, target, actor=actor, reason=verdict.reason, evidence=evidence,
                within=within, keep_previous=True, require_blessed=plan.require_blessed,
                require_approved=plan.require_approved,
            ),
            promoted=True,
        )  # fmt: skip

    def _active(self, endpoint: str, command: str) -> tuple[RolloutPlan, RolloutState, PlanRecord]:
        plan, state, record = self.get(endpoint)
        if record.status not in ("active", "awaiting_approval", "paused"):
            raise StateError(
                f"rollout of {endpoint!r} has status {record.status!r}; {command} expects an "
                "active, paused or awaiting_approval plan"
            )
        return plan, state, record

    def _set_status(
        self, endpoint: str, status: str, allowed: Sequence[str], actor: str, reason: str | None
    ) -> Decision:
        _plan, state, record = self.get(endpoint)
        if record.status not in allowed:
            raise StateError(
                f"rollout of {endpoint!r} has status {record.status!r}; expected one of "
                f"{list(allowed)}"
            )
        now = self._clock.now()
        action = "pause" if status == "paused" else "resume"
        text = reason or f"{action}d by {actor}"
        evidence = {"rule": action}
        self._writes.record(record, state, status, action, text, evidence, actor)
        return Decision(endpoint, action, text, status, None, evidence, now)


def _lease_view(lease: Lease) -> dict[str, Any] | None:
    info = lease.current()
    if info is None:
        return None
    return {
        "holder": info.holder,
        "acquired_at": info.acquired_at.isoformat(),
        "expires_at": info.expires_at.isoformat(),
    }
