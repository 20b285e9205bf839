"""Monitoring results as time series in the metadata DB: references, windows, results,
alert states and the notifications sent (SQLite or PostgreSQL, same tables)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from prodml.core import ensure_utc
from prodml.monitoring._checks import Result
from prodml.storage import (
    AlertEventRow,
    AlertStateRow,
    MetadataDB,
    MonitorReferenceRow,
    MonitorResultRow,
    MonitorWindowRow,
)

__all__ = ["MonitorStore", "StoredWindow"]


@dataclass(frozen=True)
class StoredWindow:
    """A computed window of one (endpoint, arm, model version)."""

    id: int
    endpoint: str
    arm: str
    model_version: str
    shadow: bool
    start: datetime
    end: datetime
    rows: int
    status: str
    label_rows: int
    labels_final: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "endpoint": self.endpoint, "arm": self.arm,
            "model_version": self.model_version, "shadow": self.shadow,
            "start": self.start.isoformat(), "end": self.end.isoformat(), "rows": self.rows,
            "status": self.status, "label_rows": self.label_rows, "labels_final": self.labels_final,
        }  # fmt: skip


def _window(row: MonitorWindowRow) -> StoredWindow:
    return StoredWindow(
        row.id, row.endpoint, row.arm, row.model_version, row.shadow, row.window_start,
        row.window_end, row.rows, row.status, row.label_rows, row.labels_final,
    )  # fmt: skip


class MonitorStore:
    """Reads and writes the monitoring tables."""

    def __init__(self, db: MetadataDB) -> None:
        self._db = db

    # --- references -------------------------------------------------------------------
    def reference(self, model_version: str) -> tuple[str, dict[str, Any]] | None:
        with self._db.session() as session:
            row = session.get(MonitorReferenceRow, model_version)
            return None if row is None else (row.digest, dict(row.source))

    def save_reference(
        self, model_version: str, digest: str, source: dict[str, Any], now: datetime
    ) -> None:
        with self._db.write() as session:
            row = session.get(MonitorReferenceRow, model_version)
            if row is None:
                session.add(
                    MonitorReferenceRow(
                        model_version=model_version, digest=digest, source=source, created_at=now
                    )
                )
            else:
                row.digest, row.source, row.created_at = digest, source, now

    # --- windows ------------------------------------------------------------------------
    def computed(self, endpoint: str) -> set[tuple[datetime, datetime]]:
        """(start, end) of every window computed for ``endpoint`` (any arm)."""
        with self._db.session() as session:
            rows = session.execute(
                select(MonitorWindowRow.window_start, MonitorWindowRow.window_end).where(
                    MonitorWindowRow.endpoint == endpoint
                )
            )
            return {(ensure_utc(a), ensure_utc(b)) for a, b in rows}

    def save_window(
        self,
        *,
        endpoint: str,
        arm: str,
        model_version: str,
        shadow: bool,
        start: datetime,
        end: datetime,
        rows: int,
        status: str,
        results: Sequence[Result],
        label_rows: int,
        labels_final: bool,
        now: datetime,
    ) -> int:
        """Store a computed window and its results in one transaction; returns its id."""
        with self._db.write() as session:
            row = MonitorWindowRow(
                endpoint=endpoint, arm=arm, model_version=model_version, shadow=shadow,
                window_start=start, window_end=end, rows=rows, status=status, computed_at=now,
                label_rows=label_rows, labels_final=labels_final,
            )  # fmt: skip
            session.add(row)
            session.flush()
            session.add_all(_result_rows(row.id, results))
            return row.id

    def open_label_windows(self, endpoint: str) -> list[StoredWindow]:
        """Computed windows whose delayed-label results may still change."""
        with self._db.session() as session:
            rows = session.scalars(
                select(MonitorWindowRow)
                .where(
                    MonitorWindowRow.endpoint == endpoint, MonitorWindowRow.labels_final.is_(False)
                )
                .order_by(MonitorWindowRow.window_start)
            )
            return [_window(r) for r in rows]

    def replace_results(
        self,
        window_id: int,
        checks: Sequence[str],
        results: Sequence[Result],
        *,
        label_rows: int,
        labels_final: bool,
    ) -> None:
        """Swap the results of ``checks`` for a window (labels arrived) atomically."""
        with self._db.write() as session:
            session.execute(
                delete(MonitorResultRow).where(
                    MonitorResultRow.window_id == window_id,
                    MonitorResultRow.check.in_(list(checks)),
                )
            )
            session.add_all(_result_rows(window_id, results))
            row = session.get(MonitorWindowRow, window_id)
            if row is not None:
                row.label_rows, row.labels_final = label_rows, labels_final

    def windows(
        self,
        *,
        endpoint: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[StoredWindow]:
        with self._db.session() as session:
            query = select(MonitorWindowRow).order_by(
                MonitorWindowRow.window_start, MonitorWindowRow.arm
            )
            if endpoint is not None:
                query = query.where(MonitorWindowRow.endpoint == endpoint)
            if since is not None:
                query = query.where(MonitorWindowRow.window_end > since)
            if until is not None:
                query = query.where(MonitorWindowRow.window_start < until)
            return [_window(r) for r in session.scalars(query)]

    def results(self, window_ids: Sequence[int]) -> dict[int, list[Result]]:
        """Results per window id."""
        out: dict[int, list[Result]] = {i: [] for i in window_ids}
        if not window_ids:
            return out
        with self._db.session() as session:
            for start in range(0, len(window_ids), 500):
                chunk = list(window_ids[start : start + 500])
                rows = session.scalars(
                    select(MonitorResultRow)
                    .where(MonitorResultRow.window_id.in_(chunk))
                    .order_by(MonitorResultRow.id)
                )
                for r in rows:
                    out[r.window_id].append(
                        Result(
                            r.check, r.metric, r.value, r.column, r.threshold, r.status, r.details
                        )
                    )
        return out

    # --- alerts -------------------------------------------------------------------------
    def alert_state(self, rule: str, scope: str) -> dict[str, Any] | None:
        with self._db.session() as session:
            row = session.get(AlertStateRow, (rule, scope))
            return None if row is None else dict(row.data)

    def save_alert_state(
        self, rule: str, scope: str, state: str, data: dict[str, Any], now: datetime
    ) -> None:
        with self._db.write() as session:
            row = session.get(AlertStateRow, (rule, scope))
            if row is None:
                session.add(
                    AlertStateRow(rule=rule, scope=scope, state=state, data=data, updated_at=now)
                )
            else:
                row.state, row.data, row.updated_at = state, data, now

    def alert_states(self, rule: str | None = None) -> list[dict[str, Any]]:
        with self._db.session() as session:
            query = select(AlertStateRow).order_by(AlertStateRow.rule, AlertStateRow.scope)
            if rule is not None:
                query = query.where(AlertStateRow.rule == rule)
            return [dict(r.data) for r in session.scalars(query)]

    def record_event(
        self,
        rule: str,
        scope: str,
        state: str,
        window_end: datetime,
        payload: dict[str, Any],
        now: datetime,
    ) -> None:
        with self._db.write() as session:
            session.add(
                AlertEventRow(
                    rule=rule,
                    scope=scope,
                    state=state,
                    window_end=window_end,
                    sent_at=now,
                    payload=payload,
                )
            )

    def last_event(self, rule: str, scope: str) -> dict[str, Any] | None:
        """The payload of the latest notification of one alert, or None."""
        with self._db.session() as session:
            row = session.scalars(
                select(AlertEventRow)
                .where(AlertEventRow.rule == rule, AlertEventRow.scope == scope)
                .order_by(AlertEventRow.id.desc())
                .limit(1)
            ).first()
            return None if row is None else dict(row.payload)

    def events(self, rule: str | None = None) -> list[dict[str, Any]]:
        with self._db.session() as session:
            query = select(AlertEventRow).order_by(AlertEventRow.id)
            if rule is not None:
                query = query.where(AlertEventRow.rule == rule)
            return [
                {
                    "rule": r.rule,
                    "scope": r.scope,
                    "state": r.state,
                    "window_end": r.window_end.isoformat(),
                    "sent_at": r.sent_at.isoformat(),
                    "payload": r.payload,
                }
                for r in session.scalars(query)
            ]


def _result_rows(window_id: int, results: Sequence[Result]) -> list[MonitorResultRow]:
    seen: set[tuple[str, str, str]] = set()
    rows = []
    for r in results:
        key = (r.check, r.metric, r.column)
        if key in seen:  # the unique index would refuse the whole window
            continue
        seen.add(key)
        rows.append(
            MonitorResultRow(
                window_id=window_id,
                check=r.check,
                metric=r.metric,
                column=r.column,
                value=r.value,
                threshold=r.threshold,
                status=r.status,
                details=r.details,
            )
        )
    return rows
