"""``DeploymentStore``: each endpoint's deployment in the metadata DB, with its history.

Every change runs in one transaction that locks the endpoint, writes the new spec with
``revision + 1``, appends a ``deployment_history`` row (with the change's evidence, if
any) and an audit entry. The lock is the ``deployments`` row (``FOR UPDATE`` on
PostgreSQL, where a transaction-scoped advisory lock on the endpoint also serializes
creating one; SQLite's ``BEGIN IMMEDIATE`` already serializes writers), so concurrent
changes never lose an update and revisions are dense. Revisions continue across a
delete, so the pair (endpoint, revision) names one spec forever. A change's ``within``
hook runs last in the same transaction, so what the caller writes there (a rollout
decision) commits or rolls back with it.

Arm models are resolved when deployed (``name@alias`` → ``name:version``) and stored
resolved: moving an alias later does not change what a deployment serves. The other way
round, :meth:`DeploymentStore.promote`, the rollback of a promote and
:meth:`DeploymentStore.restore_previous` move the registry's ``champion`` and
``previous`` aliases in the same transaction (see :mod:`prodml.registry._promotion`),
so the registry and the servers agree on which version is champion.

Bandit endpoints also keep their shared state here (:mod:`._bandit_records`).
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from prodml.core import (
    Clock,
    DefinitionError,
    RegistryConfig,
    StateError,
    check_name,
)
from prodml.registry import _deployment_rows as _rows
from prodml.registry._bandit_records import BanditRecords
from prodml.registry._deployment_changes import (
    WEIGHT_ACTIONS,
    Change,
    Within,
    paused,
    single_of,
    with_standby,
    with_weights,
    without_arm,
)
from prodml.registry._deployment_spec import Deployment, DeploymentSpec
from prodml.registry._promotion import (
    AliasMove,
    champion_move,
    check_promotable,
    previous_move,
    promote_moves,
    promoted_from,
    restore_moves,
)
from prodml.registry._records import AliasEvent
from prodml.registry._versions import add_audit
from prodml.storage import MetadataDB
from prodml.storage._models import Base, DeploymentHistoryRow, DeploymentRow

__all__ = ["AliasListener", "DeploymentStore"]

log = logging.getLogger(__name__)

_STATES = Base.metadata.tables["bandit_states"]


class AliasListener(Protocol):
    """Hears about alias moves once committed (every ``RegistryListener`` does)."""

    def alias_changed(self, event: AliasEvent) -> None: ...


class DeploymentStore(BanditRecords):
    """Deployments of every endpoint: the current spec, its history and bandit state.

    ``config`` holds the registry's alias rules, which a promote obeys; ``listeners``
    (usually the registry's own list, shared) hear about the alias moves it makes.
    """

    def __init__(
        self,
        db: MetadataDB,
        clock: Clock,
        config: RegistryConfig | None = None,
        listeners: Sequence[AliasListener] = (),
    ) -> None:
        self._db = db
        self._clock = clock
        self._config = config or RegistryConfig()
        self._listeners = listeners

    # --- reads ------------------------------------------------------------------------
    def get(self, endpoint: str) -> Deployment:
        with self._db.session() as session:
            row = session.get(DeploymentRow, endpoint)
            if row is None:
                raise _rows.not_found(session, endpoint)
            return _rows.record(row)

    def list(self) -> builtins.list[Deployment]:
        """Every deployment, sorted by endpoint."""
        with self._db.session() as session:
            rows = session.scalars(select(DeploymentRow).order_by(DeploymentRow.endpoint))
            return [_rows.record(row) for row in rows]

    def revisions(self) -> dict[str, int]:
        """``{endpoint: revision}`` of every deployment: one small query, for polling."""
        with self._db.session() as session:
            query = select(DeploymentRow.endpoint, DeploymentRow.revision)
            return dict(session.execute(query).all())

    def history(self, endpoint: str) -> builtins.list[dict[str, Any]]:
        """Every change of ``endpoint``, oldest first (deleted endpoints keep theirs)."""
        with self._db.session() as session:
            rows = session.scalars(
                select(DeploymentHistoryRow)
                .where(DeploymentHistoryRow.endpoint == endpoint)
                .order_by(DeploymentHistoryRow.revision)
            ).all()
            if not rows:
                raise _rows.not_found(session, endpoint)
            return [
                {
                    "revision": row.revision,
                    "action": row.action,
                    "spec": row.spec,
                    "actor": row.actor,
                    "reason": row.reason,
                    "time": row.time,
                    "evidence": row.evidence,
                }
                for row in rows
            ]

    # --- changes ----------------------------------------------------------------------
    def deploy(
        self,
        endpoint: str,
        spec: DeploymentSpec | Mapping[str, Any],
        *,
        actor: str,
        reason: str | None = None,
        expected_revision: int | None = None,
        evidence: Mapping[str, Any] | None = None,
        within: Within | None = None,
    ) -> Deployment:
        """Create or replace ``endpoint``'s deployment. ``spec`` may be a
        :class:`DeploymentSpec` or its dict form; there (only) arm models may also be
        ``name@alias`` or ``name`` (latest). Every arm's model is resolved to an existing,
        not rejected ``name:version``, which is what is stored."""
        check_name(endpoint, kind="endpoint")
        change = Change.of(endpoint, "deploy", actor, reason, evidence, within)
        with self._db.write() as session:
            current = _rows.lock(session, endpoint)
            _rows.check_revision(endpoint, current, expected_revision)
            resolved = _rows.resolve(session, spec)
            deployment, _ = self._commit(session, endpoint, current, resolved, change)
        return deployment

    def set_weights(
        self,
        endpoint: str,
        weights: Mapping[str, float],
        *,
        actor: str,
        reason: str | None = None,
        action: str = "set_weights",
        expected_revision: int | None = None,
        evidence: Mapping[str, Any] | None = None,
        within: Within | None = None,
    ) -> Deployment:
        """Change some arms' weights (see :meth:`DeploymentSpec.with_weights`);
        ``action="guardrail"`` records that a server's guardrail made the change,
        ``action="advance"`` that a rollout moved to its next step."""
        if action not in WEIGHT_ACTIONS:
            raise DefinitionError(
                f"deployment {endpoint!r}: set_weights action must be one of "
                f"{list(WEIGHT_ACTIONS)}, got {action!r}"
            )
        change = Change.of(endpoint, action, actor, reason, evidence, within)
        return self._change(endpoint, with_weights(weights), change, expected_revision)

    def pause(
        self,
        endpoint: str,
        *,
        actor: str,
        reason: str | None = None,
        evidence: Mapping[str, Any] | None = None,
        within: Within | None = None,
    ) -> Deployment:
        """Send all live traffic to the champion until :meth:`resume`."""
        change = Change.of(endpoint, "pause", actor, reason, evidence, within)
        return self._change(endpoint, paused(endpoint, True), change)

    def resume(
        self,
        endpoint: str,
        *,
        actor: str,
        reason: str | None = None,
        evidence: Mapping[str, Any] | None = None,
        within: Within | None = None,
    ) -> Deployment:
        change = Change.of(endpoint, "resume", actor, reason, evidence, within)
        return self._change(endpoint, paused(endpoint, False), change)

    def promote(
        self,
        endpoint: str,
        arm: str,
        *,
        actor: str,
        reason: str | None = None,
        require_blessed: bool = False,
        require_approved: bool = False,
        keep_previous: bool = False,
        evidence: Mapping[str, Any] | None = None,
        within: Within | None = None,
    ) -> Deployment:
        """Make ``arm``'s model the single champion, keeping the serving options, point
        the registry's ``<model>@champion`` at it and the old champion's
        ``<name>@previous`` at the old champion — one transaction, an audit entry each.

        Refused (:class:`StateError`, nothing written) when ``require_blessed`` and the
        version's gate is not BLESSED, when ``require_approved`` (or ``[registry]
        require_approval``) and it is not approved. ``keep_previous`` keeps the old
        champion as a shadow arm ``previous`` sent no requests (policy ``shadow``,
        ``shadow_fraction`` 0), so servers keep it loaded for a fast rollback; remove it
        later with :meth:`decommission`."""
        check_name(endpoint, kind="endpoint")
        change = Change.of(endpoint, "promote", actor, reason, evidence, within)
        with self._db.write() as session:
            current = _rows.require(session, endpoint)
            spec = _rows.stored_spec(current)
            model = spec.arm(arm).model
            if spec.policy == "single":
                raise StateError(
                    f"deployment {endpoint!r} already serves only {model} (policy 'single'); "
                    "nothing to promote"
                )
            model = _rows.check_deployable(session, arm, model)
            check_promotable(
                session, model, require_blessed=require_blessed, require_approved=require_approved
            )
            old = None if spec.champion is None else spec.champion.model
            moves = [champion_move(session, model)]
            previous = previous_move(session, old, model)
            moves += [] if previous is None else [previous]
            new = single_of(spec, model)
            if keep_previous and old is not None and old != model:
                new = with_standby(new, old)
            deployment, events = self._commit(session, endpoint, current, new, change, moves)
        self._notify(events)
        return deployment

    def rollback(
        self,
        endpoint: str,
        *,
        actor: str,
        reason: str | None = None,
        evidence: Mapping[str, Any] | None = None,
        within: Within | None = None,
    ) -> Deployment:
        """Undo the experiment or the promote the deployment is in.

        A deployment whose latest change is a promote goes back to the revision before
        it, and the registry's ``<model>@champion`` and ``<name>@previous`` back to where
        they pointed before — refused (:class:`ConflictError`) if an alias was moved
        since. Otherwise a deployment with a champion and other live or shadow arms goes
        back to serving the champion alone (policy ``single``). Anything else is refused
        (:class:`StateError`; see :meth:`restore_previous`)."""
        check_name(endpoint, kind="endpoint")
        change = Change.of(endpoint, "rollback", actor, reason, evidence, within)
        with self._db.write() as session:
            current = _rows.require(session, endpoint)
            spec = _rows.stored_spec(current)
            champion = spec.champion
            action, replaced = promoted_from(session, endpoint, current.revision)
            moves: builtins.list[AliasMove] = []
            if replaced is not None:
                new = _rows.resolve(session, replaced)  # checked again: a version may be rejected
                moves = [m.reversed() for m in promote_moves(session, endpoint, current.revision)]
            elif spec.policy != "single":
                if champion is None:
                    raise StateError(
                        f"deployment {endpoint!r} has policy {spec.policy!r} and no champion "
                        "arm: rollback expects a champion to serve alone (or a promote to "
                        "undo); deploy the spec you want with `prodml deploy`"
                    )
                new = single_of(spec, champion.model)
            else:
                raise StateError(
                    f"deployment {endpoint!r} serves only {spec.models()[0]} (policy 'single') "
                    f"and its latest change (revision {current.revision}) is {action!r}, not a "
                    "promote: rollback ends an experiment (serving its champion alone) or "
                    "undoes the promote that is the latest change; deploy the spec you want "
                    "with `prodml deploy`"
                )
            deployment, events = self._commit(session, endpoint, current, new, change, moves)
        self._notify(events)
        return deployment

    def restore_previous(
        self,
        endpoint: str,
        *,
        actor: str,
        reason: str | None = None,
        evidence: Mapping[str, Any] | None = None,
        within: Within | None = None,
    ) -> Deployment:
        """Serve the champion's ``<name>@previous`` version P alone again, moving
        ``<name>@champion`` to P and ``<name>@previous`` to the version it replaces — one
        transaction, action ``rollback``. For a deployment that serves its champion alone
        (policy ``single``, or ``shadow`` with standby arms) after a promote that is no
        longer its latest change; refused (:class:`StateError`) without a previous alias."""
        check_name(endpoint, kind="endpoint")
        change = Change.of(endpoint, "rollback", actor, reason, evidence, within)
        with self._db.write() as session:
            current = _rows.require(session, endpoint)
            spec = _rows.stored_spec(current)
            champion = spec.champion
            if spec.policy not in ("single", "shadow") or champion is None:
                raise StateError(
                    f"deployment {endpoint!r} has policy {spec.policy!r}: restoring the "
                    "previous champion expects policy 'single' (or 'shadow'); end the "
                    "experiment first with `prodml deployments rollback`"
                )
            moves = restore_moves(session, endpoint, champion.model)
            target = _rows.check_deployable(
                session, champion.name, f"{moves[0].name}:{moves[0].after}"
            )
            new = single_of(spec, target)
            deployment, events = self._commit(session, endpoint, current, new, change, moves)
        self._notify(events)
        return deployment

    def decommission(
        self,
        endpoint: str,
        arm: str,
        *,
        actor: str,
        reason: str | None = None,
        evidence: Mapping[str, Any] | None = None,
        within: Within | None = None,
    ) -> Deployment:
        """Remove ``arm``, a non-champion arm that takes no live traffic (a shadow arm,
        or weight 0 outside a bandit); once only the champion is left the policy becomes
        ``single``. Refused (:class:`StateError`) for the champion or a live arm."""
        change = Change.of(endpoint, "decommission", actor, reason, evidence, within)
        return self._change(endpoint, without_arm(endpoint, arm), change)

    def delete(self, endpoint: str, *, actor: str, reason: str | None = None) -> None:
        """Remove the deployment (its history stays) and its bandit state."""
        check_name(endpoint, kind="endpoint")
        with self._db.write() as session:
            current = _rows.require(session, endpoint)
            now = self._clock.now()
            before = _rows.audit_view(current.revision, current.spec, current.reason)
            _rows.append_history(
                session, endpoint, current.revision + 1, None, Change("delete", actor, reason), now
            )
            session.delete(current)
            conn = session.connection()
            conn.execute(delete(_STATES).where(_STATES.c.endpoint == endpoint))
            add_audit(
                session,
                time=now,
                actor=actor,
                action="delete",
                object_type="deployment",
                object_id=endpoint,
                before=before,
                after=None,
            )

    def _change(
        self,
        endpoint: str,
        transform: Callable[[DeploymentSpec], DeploymentSpec],
        change: Change,
        expected_revision: int | None = None,
    ) -> Deployment:
        check_name(endpoint, kind="endpoint")
        with self._db.write() as session:
            current = _rows.require(session, endpoint)
            _rows.check_revision(endpoint, current, expected_revision)
            new = transform(_rows.stored_spec(current))
            deployment, _ = self._commit(session, endpoint, current, new, change)
        return deployment

    def _commit(
        self,
        session: Session,
        endpoint: str,
        current: DeploymentRow | None,
        spec: DeploymentSpec,
        change: Change,
        moves: Sequence[AliasMove] = (),
    ) -> tuple[Deployment, builtins.list[AliasEvent]]:
        """Write the change, then move the aliases as it says, then run its ``within``
        hook — all in ``session``'s transaction (a refusal anywhere undoes everything)."""
        deployment = self._save(session, endpoint, current, spec, change, moves)
        events = [self._move(session, move, change.action, deployment) for move in moves]
        if change.within is not None:
            change.within(session, deployment)
        return deployment, [event for event in events if event is not None]

    def _save(
        self,
        session: Session,
        endpoint: str,
        current: DeploymentRow | None,
        spec: DeploymentSpec,
        change: Change,
        moves: Sequence[AliasMove] = (),
    ) -> Deployment:
        now, actor, reason = self._clock.now(), change.actor, change.reason
        data = spec.to_dict()
        if current is None:
            last = session.scalar(
                select(func.max(DeploymentHistoryRow.revision)).where(
                    DeploymentHistoryRow.endpoint == endpoint
                )
            )
            revision = (last or 0) + 1
            before = None
            session.add(
                DeploymentRow(
                    endpoint=endpoint,
                    revision=revision,
                    spec=data,
                    updated_at=now,
                    updated_by=actor,
                    reason=reason,
                )
            )
        else:
            revision = current.revision + 1
            before = _rows.audit_view(current.revision, current.spec, current.reason)
            current.revision, current.spec = revision, data
            current.updated_at, current.updated_by, current.reason = now, actor, reason
        _rows.append_history(session, endpoint, revision, data, change, now)
        after = _rows.audit_view(revision, data, reason)
        for move in moves:
            after[move.key] = move.to_dict()
        if change.evidence is not None:
            after["evidence"] = change.evidence
        add_audit(
            session,
            time=now,
            actor=actor,
            action=change.action,
            object_type="deployment",
            object_id=endpoint,
            before=before,
            after=after,
        )
        return Deployment(endpoint, revision, spec, now, actor, reason)

    def _move(
        self, session: Session, move: AliasMove, action: str, deployment: Deployment
    ) -> AliasEvent | None:
        """Move an alias as ``deployment``'s change did, with its actor and reason
        (after the deployment is written: a refusal here undoes both)."""
        return move.apply(
            session,
            action=action,
            endpoint=deployment.endpoint,
            revision=deployment.revision,
            actor=deployment.updated_by,
            reason=deployment.reason,
            now=deployment.updated_at,
            config=self._config,
        )

    def _notify(self, events: Iterable[AliasEvent]) -> None:
        for event in events:
            for listener in self._listeners:
                try:
                    listener.alias_changed(event)
                except Exception as exc:  # a mirror must never undo the system of record
                    log.warning("alias listener %r failed: %s", listener, exc)
