"""``DeploymentStore``: each endpoint's deployment in the metadata DB, with its history.

Every change runs in one transaction that locks the endpoint, writes the new spec with
``revision + 1``, appends a ``deployment_history`` row and an audit entry. The lock is
the ``deployments`` row (``FOR UPDATE`` on PostgreSQL, where a transaction-scoped
advisory lock on the endpoint also serializes creating one; SQLite's ``BEGIN
IMMEDIATE`` already serializes writers), so concurrent changes never lose an update
and revisions are dense. Revisions continue across a delete, so the pair (endpoint,
revision) names one spec forever.

Arm models are resolved when deployed (``name@alias`` → ``name:version``) and stored
resolved: moving an alias later does not change what a deployment serves. The other way
round, :meth:`DeploymentStore.promote` and the rollback of a promote move the registry's
``champion`` alias in the same transaction (see :mod:`prodml.registry._promotion`), so
the registry and the servers agree on which version is champion.

Bandit endpoints also keep their shared posterior here (replicas merge deltas into it)
and which arm served each request, so a reward arriving at any replica finds its arm.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from prodml.core import (
    Clock,
    ConflictError,
    DefinitionError,
    DeploymentNotFoundError,
    RegistryConfig,
    StateError,
    check_name,
)
from prodml.registry._deployment_spec import Arm, Deployment, DeploymentSpec
from prodml.registry._promotion import ChampionMove, champion_move, promote_record
from prodml.registry._records import AliasEvent
from prodml.registry._versions import add_audit, dialect_insert, resolve_ref
from prodml.stats import BanditKind, BanditState
from prodml.storage import MetadataDB
from prodml.storage._models import Base, DeploymentHistoryRow, DeploymentRow

__all__ = ["AliasListener", "DeploymentStore"]

log = logging.getLogger(__name__)

_HISTORY = Base.metadata.tables["deployment_history"]
_STATES = Base.metadata.tables["bandit_states"]
_DECISIONS = Base.metadata.tables["bandit_decisions"]
_CHUNK = 500  # bound parameters per IN (...) query, well under SQLite's limit


class AliasListener(Protocol):
    """Hears about alias moves once committed (every ``RegistryListener`` does)."""

    def alias_changed(self, event: AliasEvent) -> None: ...


class DeploymentStore:
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
                raise _not_found(session, endpoint)
            return _record(row)

    def list(self) -> builtins.list[Deployment]:
        """Every deployment, sorted by endpoint."""
        with self._db.session() as session:
            rows = session.scalars(select(DeploymentRow).order_by(DeploymentRow.endpoint))
            return [_record(row) for row in rows]

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
                raise _not_found(session, endpoint)
            return [
                {
                    "revision": row.revision,
                    "action": row.action,
                    "spec": row.spec,
                    "actor": row.actor,
                    "reason": row.reason,
                    "time": row.time,
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
    ) -> Deployment:
        """Create or replace ``endpoint``'s deployment. ``spec`` may be a
        :class:`DeploymentSpec` or its dict form; there (only) arm models may also be
        ``name@alias`` or ``name`` (latest). Every arm's model is resolved to an existing,
        not rejected ``name:version``, which is what is stored."""
        check_name(endpoint, kind="endpoint")
        with self._db.write() as session:
            current = _lock(session, endpoint)
            _check_revision(endpoint, current, expected_revision)
            resolved = _resolve(session, spec)
            return self._save(session, endpoint, current, resolved, "deploy", actor, reason)

    def set_weights(
        self,
        endpoint: str,
        weights: Mapping[str, float],
        *,
        actor: str,
        reason: str | None = None,
        action: str = "set_weights",
        expected_revision: int | None = None,
    ) -> Deployment:
        """Change some arms' weights (see :meth:`DeploymentSpec.with_weights`);
        ``action="guardrail"`` records that a server's guardrail made the change."""
        if action not in ("set_weights", "guardrail"):
            raise DefinitionError(
                f"deployment {endpoint!r}: set_weights action must be 'set_weights' or "
                f"'guardrail', got {action!r}"
            )
        change = _with_weights(weights)
        return self._change(endpoint, change, action, actor, reason, expected_revision)

    def pause(self, endpoint: str, *, actor: str, reason: str | None = None) -> Deployment:
        """Send all live traffic to the champion until :meth:`resume`."""
        return self._change(endpoint, _paused(endpoint, True), "pause", actor, reason)

    def resume(self, endpoint: str, *, actor: str, reason: str | None = None) -> Deployment:
        return self._change(endpoint, _paused(endpoint, False), "resume", actor, reason)

    def promote(
        self, endpoint: str, arm: str, *, actor: str, reason: str | None = None
    ) -> Deployment:
        """Make ``arm``'s model the single champion, keeping the serving options, and
        point the registry's ``<model>@champion`` at it — one transaction, an audit entry
        each. The registry's rules apply: with ``[registry] require_approval`` an
        unapproved version is refused (:class:`StateError`) and nothing changes."""
        check_name(endpoint, kind="endpoint")
        with self._db.write() as session:
            current = _require(session, endpoint)
            spec = _spec(current)
            model = spec.arm(arm).model
            if spec.policy == "single":
                raise StateError(
                    f"deployment {endpoint!r} already serves only {model} (policy 'single'); "
                    "nothing to promote"
                )
            model = _check_deployable(session, arm, model)
            move = champion_move(session, model)
            new = _single(spec, model)
            deployment = self._save(session, endpoint, current, new, "promote", actor, reason, move)
            event = self._move(session, move, "promote", deployment)
        self._notify(event)
        return deployment

    def rollback(self, endpoint: str, *, actor: str, reason: str | None = None) -> Deployment:
        """Undo the experiment or the promote the deployment is in.

        A deployment with a champion and other live or shadow arms goes back to serving
        the champion alone (policy ``single``). A deployment whose latest change is a
        promote goes back to the revision before it, and the registry's
        ``<model>@champion`` back to where it pointed before — refused
        (:class:`ConflictError`) if the alias was moved since. Anything else is refused
        (:class:`StateError`)."""
        check_name(endpoint, kind="endpoint")
        with self._db.write() as session:
            current = _require(session, endpoint)
            spec = _spec(current)
            champion = spec.champion
            if spec.policy != "single":
                if champion is None:
                    raise StateError(
                        f"deployment {endpoint!r} has policy {spec.policy!r} and no champion "
                        "arm: rollback expects a champion to serve alone (or a promote to "
                        "undo); deploy the spec you want with `prodml deploy`"
                    )
                new = _single(spec, champion.model)
                return self._save(session, endpoint, current, new, "rollback", actor, reason)
            previous = _before_promote(session, endpoint, current)
            move = promote_record(session, endpoint, current.revision)
            undo = None if move is None else move.reversed()
            deployment = self._save(
                session, endpoint, current, previous, "rollback", actor, reason, undo
            )
            event = None if undo is None else self._move(session, undo, "rollback", deployment)
        self._notify(event)
        return deployment

    def delete(self, endpoint: str, *, actor: str, reason: str | None = None) -> None:
        """Remove the deployment (its history stays) and its bandit state."""
        check_name(endpoint, kind="endpoint")
        with self._db.write() as session:
            current = _require(session, endpoint)
            now = self._clock.now()
            before = _audit_view(current.revision, current.spec, current.reason)
            _append(session, endpoint, current.revision + 1, "delete", None, actor, reason, now)
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
        change: Callable[[DeploymentSpec], DeploymentSpec],
        action: str,
        actor: str,
        reason: str | None,
        expected_revision: int | None = None,
    ) -> Deployment:
        check_name(endpoint, kind="endpoint")
        with self._db.write() as session:
            current = _require(session, endpoint)
            _check_revision(endpoint, current, expected_revision)
            new = change(_spec(current))
            return self._save(session, endpoint, current, new, action, actor, reason)

    def _save(
        self,
        session: Session,
        endpoint: str,
        current: DeploymentRow | None,
        spec: DeploymentSpec,
        action: str,
        actor: str,
        reason: str | None,
        move: ChampionMove | None = None,
    ) -> Deployment:
        now = self._clock.now()
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
            before = _audit_view(current.revision, current.spec, current.reason)
            current.revision, current.spec = revision, data
            current.updated_at, current.updated_by, current.reason = now, actor, reason
        _append(session, endpoint, revision, action, data, actor, reason, now)
        after = _audit_view(revision, data, reason)
        if move is not None:
            after["champion_alias"] = move.to_dict()
        add_audit(
            session,
            time=now,
            actor=actor,
            action=action,
            object_type="deployment",
            object_id=endpoint,
            before=before,
            after=after,
        )
        return Deployment(endpoint, revision, spec, now, actor, reason)

    def _move(
        self, session: Session, move: ChampionMove, action: str, deployment: Deployment
    ) -> AliasEvent | None:
        """Move the champion alias as ``deployment``'s change did, with its actor and
        reason (after the deployment is written: a refusal here undoes both)."""
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

    def _notify(self, event: AliasEvent | None) -> None:
        if event is None:
            return
        for listener in self._listeners:
            try:
                listener.alias_changed(event)
            except Exception as exc:  # a mirror must never undo the system of record
                log.warning("alias listener %r failed: %s", listener, exc)

    # --- bandits ----------------------------------------------------------------------
    def bandit_state(self, endpoint: str) -> dict[str, Any] | None:
        """The shared posterior of ``endpoint`` (``BanditState.to_dict()`` form), if any."""
        with self._db.session() as session:
            query = select(_STATES.c.state).where(_STATES.c.endpoint == endpoint)
            state = session.connection().execute(query).scalar_one_or_none()
            return None if state is None else dict(state)

    def merge_bandit(
        self, endpoint: str, delta: Mapping[str, Any], *, kind: BanditKind, arms: Sequence[str]
    ) -> dict[str, Any]:
        """Fold a replica's ``delta`` (a state started from ``BanditState.empty()``) into
        the stored state under its row lock, and return the result. The stored state
        starts from the prior when there is none, or when its kind or arm set differs
        from ``kind``/``arms`` (the deployment changed: old evidence is about other arms)."""
        check_name(endpoint, kind="endpoint")
        change = BanditState.from_dict(delta)
        fresh = BanditState.new(kind, arms)
        with self._db.write() as session:
            conn, now = session.connection(), self._clock.now()
            conn.execute(
                dialect_insert(session)(_STATES)
                .values(endpoint=endpoint, state=fresh.to_dict(), updated_at=now)
                .on_conflict_do_nothing(index_elements=["endpoint"])
            )
            query = select(_STATES.c.state).where(_STATES.c.endpoint == endpoint)
            state = BanditState.from_dict(conn.execute(query.with_for_update()).scalar_one())
            if state.kind != fresh.kind or set(state.arms) != set(fresh.arms):
                state = fresh
            merged = state.merge(change).to_dict()
            conn.execute(
                update(_STATES)
                .where(_STATES.c.endpoint == endpoint)
                .values(state=merged, updated_at=now)
            )
            return merged

    def record_decisions(self, rows: Sequence[tuple[str, str, str, datetime]]) -> None:
        """Store (request_id, endpoint, arm, time) of bandit requests in one batch; an id
        already recorded keeps its first arm."""
        values = [
            {
                "request_id": _request_id(request_id, endpoint),
                "endpoint": check_name(endpoint, kind="endpoint"),
                "arm": check_name(arm, kind="deployment arm"),
                "time": time,
            }
            for request_id, endpoint, arm, time in rows
        ]
        if not values:
            return
        with self._db.write() as session:
            statement = dialect_insert(session)(_DECISIONS).on_conflict_do_nothing(
                index_elements=["request_id"]
            )
            session.connection().execute(statement, values)

    def find_decisions(self, request_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """``{request_id: (endpoint, arm)}`` of those ids that were recorded."""
        ids = list(dict.fromkeys(request_ids))
        query = select(_DECISIONS.c.request_id, _DECISIONS.c.endpoint, _DECISIONS.c.arm)
        found: dict[str, tuple[str, str]] = {}
        with self._db.session() as session:
            conn = session.connection()
            for start in range(0, len(ids), _CHUNK):
                chunk = query.where(_DECISIONS.c.request_id.in_(ids[start : start + _CHUNK]))
                for request_id, endpoint, arm in conn.execute(chunk):
                    found[request_id] = (endpoint, arm)
        return found

    def prune_decisions(self, before: datetime) -> int:
        """Forget the decisions made before ``before``; returns how many were removed."""
        with self._db.write() as session:
            statement = delete(_DECISIONS).where(_DECISIONS.c.time < before)
            return session.connection().execute(statement).rowcount


# --- helpers --------------------------------------------------------------------------
def _lock(session: Session, endpoint: str) -> DeploymentRow | None:
    """The endpoint's row locked for this transaction, or ``None`` (then, on
    PostgreSQL, an advisory lock on the name makes concurrent creators queue)."""
    query = select(DeploymentRow).where(DeploymentRow.endpoint == endpoint).with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None and session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"prodml-deployment:{endpoint}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        row = session.scalars(query).one_or_none()
    return row


def _require(session: Session, endpoint: str) -> DeploymentRow:
    row = _lock(session, endpoint)
    if row is None:
        raise _not_found(session, endpoint)
    return row


def _not_found(session: Session, endpoint: str) -> DeploymentNotFoundError:
    known = session.scalars(select(DeploymentRow.endpoint).order_by(DeploymentRow.endpoint))
    return DeploymentNotFoundError(
        f"endpoint {endpoint!r} has no deployment; deployed endpoints: {known.all()}"
    )


def _request_id(request_id: str, endpoint: str) -> str:
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 128:
        raise DefinitionError(
            f"bandit decision of endpoint {endpoint!r}: request_id must be a string of 1 "
            f"to 128 characters, got {request_id!r}"
        )
    return request_id


def _check_revision(endpoint: str, current: DeploymentRow | None, expected: int | None) -> None:
    actual = 0 if current is None else current.revision
    if expected is not None and expected != actual:
        by = "" if current is None else f" (last changed by {current.updated_by})"
        raise ConflictError(
            f"deployment {endpoint!r} is at revision {actual}{by}, expected revision "
            f"{expected}; re-read it and retry"
        )


def _check_deployable(session: Session, arm: str, model: str) -> str:
    """``model`` resolved to ``name:version``; refuse a rejected version."""
    row = resolve_ref(session, model)
    ref = f"{row.name}:{row.version}"
    if row.status == "rejected":
        raise StateError(
            f"deployment arm {arm!r}: model version {ref} was rejected by {row.status_actor} "
            f"({row.status_reason or 'no reason given'}); expected a pending or approved version"
        )
    return ref


def _resolve(session: Session, spec: DeploymentSpec | Mapping[str, Any]) -> DeploymentSpec:
    data = spec.to_dict() if isinstance(spec, DeploymentSpec) else dict(spec)
    arms = data.get("arms")
    if isinstance(arms, list | tuple) and all(
        isinstance(arm, Mapping) and isinstance(arm.get("model"), str) for arm in arms
    ):
        data["arms"] = [
            {**arm, "model": _check_deployable(session, str(arm.get("name")), arm["model"])}
            for arm in arms
        ]
    return DeploymentSpec.from_dict(data)


def _spec(row: DeploymentRow) -> DeploymentSpec:
    return DeploymentSpec.from_dict(row.spec)


def _before_promote(session: Session, endpoint: str, current: DeploymentRow) -> DeploymentSpec:
    """The spec a promote replaced, when the promote is ``current``'s latest change;
    its arms are checked again (a version rejected since is refused)."""
    rows = session.scalars(
        select(DeploymentHistoryRow)
        .where(
            DeploymentHistoryRow.endpoint == endpoint,
            DeploymentHistoryRow.revision.in_([current.revision - 1, current.revision]),
        )
        .order_by(DeploymentHistoryRow.revision)
    ).all()
    latest = rows[-1]
    model = _spec(current).models()[0]
    if latest.action != "promote" or len(rows) < 2 or rows[0].spec is None:
        raise StateError(
            f"deployment {endpoint!r} serves only {model} (policy 'single') and its latest "
            f"change (revision {latest.revision}) is {latest.action!r}, not a promote: "
            "rollback ends an experiment (serving its champion alone) or undoes the promote "
            "that is the latest change; deploy the spec you want with `prodml deploy`"
        )
    return _resolve(session, rows[0].spec)


def _record(row: DeploymentRow) -> Deployment:
    return Deployment(
        row.endpoint, row.revision, _spec(row), row.updated_at, row.updated_by, row.reason
    )


def _single(spec: DeploymentSpec, model: str) -> DeploymentSpec:
    return DeploymentSpec(
        "single",
        (Arm("champion", model, "champion"),),
        unit=spec.unit,
        stratify_by=spec.stratify_by,
        salt=spec.salt,
        guardrails=spec.guardrails,
        default_response=spec.default_response,
        timeout_ms=spec.timeout_ms,
    )


def _paused(endpoint: str, paused: bool) -> Callable[[DeploymentSpec], DeploymentSpec]:
    def change(spec: DeploymentSpec) -> DeploymentSpec:
        if spec.paused == paused:
            state = "paused" if paused else "not paused"
            raise StateError(
                f"deployment {endpoint!r} is already {state}; expected it "
                f"{'not paused' if paused else 'paused'}"
            )
        return replace(spec, paused=paused)

    return change


def _with_weights(weights: Mapping[str, float]) -> Callable[[DeploymentSpec], DeploymentSpec]:
    return lambda spec: spec.with_weights(weights)


def _append(
    session: Session,
    endpoint: str,
    revision: int,
    action: str,
    spec: dict[str, Any] | None,
    actor: str,
    reason: str | None,
    now: datetime,
) -> None:
    session.connection().execute(
        insert(_HISTORY),
        {
            "endpoint": endpoint,
            "revision": revision,
            "action": action,
            "spec": spec,
            "actor": actor,
            "reason": reason,
            "time": now,
        },
    )


def _audit_view(revision: int, spec: dict[str, Any], reason: str | None) -> dict[str, Any]:
    return {"revision": revision, "spec": spec, "reason": reason}
