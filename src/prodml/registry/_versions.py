"""Model versions in the metadata DB: allocate, insert, resolve references, read.

Every change takes the model's ``registered_models`` row lock first (``FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serializes writers), so version
numbers, aliases and approvals never lose an update under concurrency.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from prodml.core import DefinitionError, ModelNotFoundError, ModelRef, check_name, parse_ref
from prodml.registry._records import AuditEntry, ModelVersion
from prodml.storage._models import (
    AuditRow,
    Base,
    ModelAliasRow,
    ModelVersionRow,
    RegisteredModelRow,
)

__all__ = [
    "add_audit",
    "allocate_version",
    "audit_entry",
    "dialect_insert",
    "insert_for",
    "lock_model",
    "resolve_ref",
    "version_record",
    "version_row",
]


def lock_model(session: Session, name: str) -> RegisteredModelRow:
    """The model's row, locked for this transaction."""
    query = select(RegisteredModelRow).where(RegisteredModelRow.name == name).with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        raise ModelNotFoundError(f"model {name!r} is not registered; see `prodml models list`")
    return row


_MODELS = Base.metadata.tables["registered_models"]
_AUDIT = Base.metadata.tables["audit_log"]
_NEXT_VERSION = (
    update(_MODELS)
    .where(_MODELS.c.name == bindparam("model"))
    .values(next_version=_MODELS.c.next_version + 1)
    .returning(_MODELS.c.next_version)
)


def allocate_version(session: Session, name: str, *, now: Callable[[], datetime]) -> int:
    """The next version number of ``name`` (the model is created on first use), taken
    by one ``UPDATE … RETURNING`` that also holds the model's row lock until commit."""
    conn = session.connection()
    allocated = conn.execute(_NEXT_VERSION, {"model": name}).scalar()
    if allocated is None:
        check_name(name, kind="model")
        conn.execute(
            dialect_insert(session)(_MODELS)
            .values(name=name, next_version=1, description="", created_at=now())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        allocated = conn.execute(_NEXT_VERSION, {"model": name}).scalar_one()
    return int(allocated) - 1


def dialect_insert(session: Session) -> Callable[[Any], Any]:
    """``INSERT`` with ``ON CONFLICT`` clauses for the session's database."""
    return insert_for(session.get_bind().dialect.name)


def insert_for(dialect: str) -> Callable[[Any], Any]:
    """``INSERT`` with ``ON CONFLICT`` clauses for a database kind, from its SQLAlchemy
    dialect module (loaded with the engine: the other dialect is never imported)."""
    module = "postgresql" if dialect == "postgresql" else "sqlite"
    insert: Callable[[Any], Any] = importlib.import_module(f"sqlalchemy.dialects.{module}").insert
    return insert


def resolve_ref(session: Session, ref: str | ModelRef) -> ModelVersionRow:
    """The version row behind ``name:3``, ``name@alias``, or ``name`` (= its latest version)."""
    parsed = _parse(ref)
    if parsed.alias is not None:
        alias = session.get(ModelAliasRow, (parsed.name, parsed.alias))
        if alias is None:
            _require_model(session, parsed.name)
            raise ModelNotFoundError(
                f"model {parsed.name!r} has no alias {parsed.alias!r}; see `prodml models show {parsed.name}`"
            )
        version: int | None = alias.version
    else:
        version = parsed.version
    if version is not None and not 0 < version <= _MAX_VERSION:
        _require_model(session, parsed.name)
        raise ModelNotFoundError(
            f"model {parsed.name!r} has no version {version}; see `prodml models show {parsed.name}`"
        )
    query = select(ModelVersionRow).where(ModelVersionRow.name == parsed.name)
    if version is None:
        row = session.scalars(query.order_by(ModelVersionRow.version.desc()).limit(1)).first()
    else:
        row = session.scalars(query.where(ModelVersionRow.version == version)).one_or_none()
    if row is None:
        _require_model(session, parsed.name)
        raise ModelNotFoundError(
            f"model {parsed.name!r} has no version {version}; see `prodml models show {parsed.name}`"
        )
    return row


#: The largest version number a database integer column holds (a larger one names none).
_MAX_VERSION = 2**63 - 1


def _parse(ref: str | ModelRef) -> ModelRef:
    if isinstance(ref, ModelRef):
        return ref
    if not isinstance(ref, str):
        raise DefinitionError(
            f"model reference {ref!r}: expected a string 'name:version', 'name@alias' or 'name'"
        )
    _, colon, version = ref.partition(":")
    if colon and "@" not in ref and version != "latest" and not _is_number(version):
        raise DefinitionError(
            f"model reference {ref!r}: version must be a positive integer, got {version!r}"
        )
    if "@" in ref or ":" in ref:
        if ref.endswith(":latest"):
            return ModelRef(check_name(ref[: -len(":latest")], kind="model"))
        return parse_ref(ref)
    return ModelRef(check_name(ref, kind="model"))


def _is_number(text: str) -> bool:
    """Whether ``text`` is ASCII digits (``str.isdigit`` also accepts ``'²'``, which
    ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def _require_model(session: Session, name: str) -> None:
    if session.get(RegisteredModelRow, name) is None:
        raise ModelNotFoundError(f"model {name!r} is not registered; see `prodml models list`")


def version_row(session: Session, name: str, version: int) -> ModelVersionRow:
    return resolve_ref(session, ModelRef(name, version=version))


def version_record(
    session: Session, row: ModelVersionRow, *, aliases: tuple[str, ...] | None = None
) -> ModelVersion:
    """The record of ``row``; ``aliases`` given (a new version has none) saves a query."""
    if aliases is None:
        aliases = tuple(
            sorted(
                session.scalars(
                    select(ModelAliasRow.alias).where(
                        ModelAliasRow.name == row.name, ModelAliasRow.version == row.version
                    )
                )
            )
        )
    return ModelVersion(
        name=row.name,
        version=row.version,
        artifact_digest=row.artifact_digest,
        artifact_size=row.artifact_size,
        format=row.format,
        signature=dict(row.signature),
        profile=None if row.profile is None else dict(row.profile),
        metrics=dict(row.metrics),
        evaluation=None if row.evaluation is None else dict(row.evaluation),
        gate=None if row.gate is None else dict(row.gate),
        gate_status=row.gate_status,
        run_id=row.run_id,
        source=row.source,
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
        status=row.status,
        status_actor=row.status_actor,
        status_reason=row.status_reason,
        status_time=row.status_time,
        aliases=aliases,
    )


def add_audit(
    session: Session,
    *,
    time: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """Record one state change in the audit log, inside the caller's transaction."""
    session.connection().execute(
        insert(_AUDIT),
        {
            "time": time,
            "actor": actor,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "before": before,
            "after": after,
        },
    )


def audit_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        time=row.time,
        actor=row.actor,
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        before=row.before,
        after=row.after,
    )
