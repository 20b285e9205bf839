"""The record of a project's backups and drills in its metadata DB, so the dashboard and
``prodml verify`` can say when the last good one ran."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select

from prodml.storage import MetadataDB, OpsEventRow

__all__ = ["OpsEvent", "OpsEvents"]

Kind = Literal["backup", "drill"]


@dataclass(frozen=True)
class OpsEvent:
    id: str
    kind: str
    status: str
    snapshot: str | None
    detail: dict[str, Any]
    started_at: datetime
    finished_at: datetime
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status,
                "snapshot": self.snapshot, "detail": self.detail,
                "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat(), "actor": self.actor}  # fmt: skip


def _event(row: OpsEventRow) -> OpsEvent:
    return OpsEvent(row.id, row.kind, row.status, row.snapshot, dict(row.detail),
                    row.started_at, row.finished_at, row.actor)  # fmt: skip


class OpsEvents:
    """Backups and drills of the project whose metadata DB is ``db``."""

    def __init__(self, db: MetadataDB) -> None:
        self._db = db

    def record(
        self,
        kind: Kind,
        *,
        status: str,
        snapshot: str | None,
        detail: dict[str, Any],
        started_at: datetime,
        finished_at: datetime,
        actor: str,
    ) -> OpsEvent:
        row = OpsEventRow(
            id=f"{kind}-{uuid.uuid4().hex[:20]}", kind=kind, status=status, snapshot=snapshot,
            detail=detail, started_at=started_at, finished_at=finished_at, actor=actor,
        )  # fmt: skip
        with self._db.write() as session:
            session.add(row)
            session.flush()
            return _event(row)

    def last(self, kind: Kind, *, status: str | None = None) -> OpsEvent | None:
        """The newest event of ``kind`` (with ``status``, when given)."""
        query = select(OpsEventRow).where(OpsEventRow.kind == kind)
        if status is not None:
            query = query.where(OpsEventRow.status == status)
        query = query.order_by(OpsEventRow.finished_at.desc()).limit(1)
        with self._db.session() as session:
            row = session.scalars(query).first()
            return None if row is None else _event(row)
