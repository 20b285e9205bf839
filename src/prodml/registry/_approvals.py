"""State changes of model versions: approval (``pending → approved | rejected``) and
aliases, each written with its audit entry in the same transaction.

Rules: a version is approved or rejected once, from ``pending``; a rejected version
holds no alias (rejecting one removes its aliases); only a BLESSED version can become
``challenger``; production aliases (``champion`` by default) need an approved version
unless ``[registry] require_approval = false``. An alias moved by a deployment's promote
or rollback names that deployment revision in its audit entry (``origin``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prodml.core import RegistryConfig, StateError, check_name
from prodml.registry._records import AliasEvent
from prodml.registry._versions import add_audit, lock_model, version_row
from prodml.storage._models import AliasHistoryRow, ModelAliasRow, ModelVersionRow

__all__ = ["CHALLENGER", "CHAMPION", "change_status", "move_alias"]

CHALLENGER = "challenger"
CHAMPION = "champion"


def change_status(
    session: Session,
    name: str,
    version: int,
    status: str,
    *,
    actor: str,
    reason: str | None,
    now: datetime,
) -> list[AliasEvent]:
    """Approve or reject a pending version; returns the alias moves a rejection caused."""
    lock_model(session, name)
    row = version_row(session, name, version)
    ref = f"{name}:{version}"
    if row.status != "pending":
        raise StateError(
            f"model version {ref} is already {row.status} (by {row.status_actor} at "
            f"{row.status_time:%Y-%m-%d %H:%M:%S}); only a pending version can be "
            f"{status}"
        )
    before = {"status": row.status}
    row.status, row.status_actor, row.status_reason, row.status_time = status, actor, reason, now
    add_audit(
        session,
        time=now,
        actor=actor,
        action="approve" if status == "approved" else "reject",
        object_type="model_version",
        object_id=ref,
        before=before,
        after={"status": status, "reason": reason},
    )
    events: list[AliasEvent] = []
    if status == "rejected":
        held = session.scalars(
            select(ModelAliasRow.alias).where(
                ModelAliasRow.name == name, ModelAliasRow.version == version
            )
        ).all()
        for alias in held:
            event = _apply_alias(
                session, name, alias, None, actor=actor, reason=f"{ref} rejected", now=now
            )
            if event is not None:
                events.append(event)
    return events


def move_alias(
    session: Session,
    name: str,
    alias: str,
    version: int | None,
    *,
    actor: str,
    reason: str | None,
    now: datetime,
    config: RegistryConfig,
    origin: Mapping[str, Any] | None = None,
) -> AliasEvent | None:
    """Point ``name@alias`` at ``version`` (``None`` removes it); no-op → ``None``.
    ``origin`` (e.g. the deployment revision that moved it) goes into the audit entry."""
    check_name(alias, kind="alias")
    lock_model(session, name)
    if version is not None:
        _check_alias_allowed(version_row(session, name, version), alias, config)
    return _apply_alias(
        session, name, alias, version, actor=actor, reason=reason, now=now, origin=origin
    )


def _check_alias_allowed(row: ModelVersionRow, alias: str, config: RegistryConfig) -> None:
    ref = f"{row.name}:{row.version}"
    if row.status == "rejected":
        raise StateError(
            f"model version {ref} was rejected by {row.status_actor} "
            f"({row.status_reason or 'no reason given'}); a rejected version cannot hold "
            f"alias {alias!r}"
        )
    if alias == CHALLENGER and row.gate_status != "BLESSED":
        reasons = "; ".join(_gate_reasons(row)) or "no gate result recorded"
        raise StateError(
            f"model version {ref} is {row.gate_status or 'not evaluated'}, expected BLESSED: "
            f"only blessed versions can become {CHALLENGER!r} ({reasons})"
        )
    if alias in config.production_aliases and config.require_approval and row.status != "approved":
        raise StateError(
            f"model version {ref} is {row.status}, expected approved: alias {alias!r} takes "
            f"production traffic (approve it with `prodml models approve {ref}`, or set "
            "[registry] require_approval = false)"
        )


def _gate_reasons(row: ModelVersionRow) -> list[str]:
    gate = row.gate or {}
    return [str(c.get("detail")) for c in gate.get("checks", []) if not c.get("passed", True)]


def _apply_alias(
    session: Session,
    name: str,
    alias: str,
    version: int | None,
    *,
    actor: str,
    reason: str | None,
    now: datetime,
    origin: Mapping[str, Any] | None = None,
) -> AliasEvent | None:
    current = session.get(ModelAliasRow, (name, alias))
    previous = None if current is None else current.version
    if previous == version:
        return None
    if version is None:
        if current is not None:
            session.delete(current)
    elif current is None:
        session.add(
            ModelAliasRow(name=name, alias=alias, version=version, updated_by=actor, updated_at=now)
        )
    else:
        current.version, current.updated_by, current.updated_at = version, actor, now
    session.add(
        AliasHistoryRow(
            name=name,
            alias=alias,
            previous_version=previous,
            version=version,
            actor=actor,
            reason=reason,
            time=now,
        )
    )
    after: dict[str, Any] | None = None
    if version is not None or origin is not None:
        after = {"version": version, "reason": reason}
        if origin is not None:
            after["deployment"] = dict(origin)
    add_audit(
        session,
        time=now,
        actor=actor,
        action="set_alias" if version is not None else "delete_alias",
        object_type="alias",
        object_id=f"{name}@{alias}",
        before=None if previous is None else {"version": previous},
        after=after,
    )
    return AliasEvent(name, alias, previous, version, actor, reason, now)
