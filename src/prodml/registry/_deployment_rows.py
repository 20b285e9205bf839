"""The ``deployments`` and ``deployment_history`` rows behind
:class:`~prodml.registry._deployments.DeploymentStore`: locking an endpoint's row, checking
its revision, resolving a spec's models, reading a stored spec back and appending history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from prodml.core import (
    ConflictError,
    DefinitionError,
    DeploymentNotFoundError,
    StateError,
    StorageError,
)
from prodml.registry._deployment_changes import Change
from prodml.registry._deployment_spec import Deployment, DeploymentSpec
from prodml.registry._versions import resolve_ref
from prodml.storage._models import Base, DeploymentRow

__all__ = [
    "append_history",
    "audit_view",
    "check_deployable",
    "check_revision",
    "lock",
    "not_found",
    "record",
    "require",
    "resolve",
    "stored_spec",
]

_HISTORY = Base.metadata.tables["deployment_history"]


def lock(session: Session, endpoint: str) -> DeploymentRow | None:
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


def require(session: Session, endpoint: str) -> DeploymentRow:
    row = lock(session, endpoint)
    if row is None:
        raise not_found(session, endpoint)
    return row


def not_found(session: Session, endpoint: str) -> DeploymentNotFoundError:
    known = session.scalars(select(DeploymentRow.endpoint).order_by(DeploymentRow.endpoint))
    return DeploymentNotFoundError(
        f"endpoint {endpoint!r} has no deployment; deployed endpoints: {known.all()}"
    )


def check_revision(endpoint: str, current: DeploymentRow | None, expected: int | None) -> None:
    actual = 0 if current is None else current.revision
    if expected is not None and expected != actual:
        by = "" if current is None else f" (last changed by {current.updated_by})"
        raise ConflictError(
            f"deployment {endpoint!r} is at revision {actual}{by}, expected revision "
            f"{expected}; re-read it and retry"
        )


def check_deployable(session: Session, arm: str, model: str) -> str:
    """``model`` resolved to ``name:version``; refuse a rejected version."""
    row = resolve_ref(session, model)
    ref = f"{row.name}:{row.version}"
    if row.status == "rejected":
        raise StateError(
            f"deployment arm {arm!r}: model version {ref} was rejected by {row.status_actor} "
            f"({row.status_reason or 'no reason given'}); expected a pending or approved version"
        )
    return ref


def resolve(session: Session, spec: DeploymentSpec | Mapping[str, Any]) -> DeploymentSpec:
    if not isinstance(spec, DeploymentSpec | Mapping):
        raise DefinitionError(
            f"deployment spec is malformed: expected a DeploymentSpec or a mapping with "
            f"'policy' and 'arms', got {type(spec).__name__}"
        )
    data = spec.to_dict() if isinstance(spec, DeploymentSpec) else dict(spec)
    arms = data.get("arms")
    if isinstance(arms, list | tuple) and all(
        isinstance(arm, Mapping) and isinstance(arm.get("model"), str) for arm in arms
    ):
        data["arms"] = [
            {**arm, "model": check_deployable(session, str(arm.get("name")), arm["model"])}
            for arm in arms
        ]
    return DeploymentSpec.from_dict(data)


def stored_spec(row: DeploymentRow) -> DeploymentSpec:
    """The row's stored spec; one that no longer reads as a spec (edited by hand, or
    damaged) is a :class:`StorageError` naming the endpoint and revision — the stored
    record is at fault, not the request that read it."""
    try:
        return DeploymentSpec.from_dict(row.spec)
    except (DefinitionError, TypeError, ValueError, KeyError) as exc:
        raise StorageError(
            f"deployment of endpoint {row.endpoint!r} (revision {row.revision}): its stored "
            f"spec is not a valid deployment spec ({exc}); expected the record a deploy "
            "wrote — restore the metadata DB from a backup or deploy the endpoint again"
        ) from None


def record(row: DeploymentRow) -> Deployment:
    return Deployment(
        row.endpoint, row.revision, stored_spec(row), row.updated_at, row.updated_by, row.reason
    )


def append_history(
    session: Session,
    endpoint: str,
    revision: int,
    spec: dict[str, Any] | None,
    change: Change,
    now: datetime,
) -> None:
    session.connection().execute(
        insert(_HISTORY),
        {
            "endpoint": endpoint,
            "revision": revision,
            "action": change.action,
            "spec": spec,
            "actor": change.actor,
            "reason": change.reason,
            "time": now,
            "evidence": change.evidence,
        },
    )


def audit_view(revision: int, spec: dict[str, Any], reason: str | None) -> dict[str, Any]:
    return {"revision": revision, "spec": spec, "reason": reason}
