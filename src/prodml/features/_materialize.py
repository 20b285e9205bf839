"""Materialization: copies each view's latest rows into the online store, incrementally
from a stored watermark, in time chunks — idempotent and resumable.

A feature row becomes visible at ``greatest(event_time, created_time)`` (its visibility
time; just ``event_time`` when the created-time guard is off or the view has none). Each
chunk loads the rows whose visibility time falls in ``(lo, hi]``; the online store keeps,
per entity, the row with the latest ``(event_time, created_time)``. After materializing up
to ``T`` the online store therefore holds exactly the row a point-in-time join picks at
``T`` — the online/offline consistency guarantee. The watermark advances only after a
chunk is written, so an interrupted run resumes where it stopped and a repeated run writes
nothing. Rows the join never picks (a null join key or event time) are not loaded, and a
null created time means "known at its event time", as in the join.

A strict view (``inclusive=False``) loads ``[lo, hi)`` instead: after materializing up to
``T`` it holds the row a strict join picks at ``T`` (visible strictly before ``T``), and a
row visible at exactly ``T`` comes with the next run. Online reads serve the latest row
materialized, which at a request time after the watermark is the strict pick as well.

A rebuild (``rebuild=True``) first forgets the view version's watermark and then drops
its online records, and materializes again from the start: the way to pick up source
rows that changed behind the watermark. In that order, an interrupted rebuild leaves at
worst records that a repeated rebuild replaces, never a watermark over missing records.
While a view is rebuilt, online reads miss the entities not yet written again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from prodml.core import Clock, SourceError, ensure_utc
from prodml.features._definitions import FeatureView
from prodml.features._offline import OfflineStore
from prodml.features.online import OnlineStore
from prodml.storage import MaterializationRow, MetadataDB

__all__ = ["MaterializeResult", "Materializer", "watermarks"]

Progress = Callable[[str, int, int], None]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MaterializeResult:
    """What one view's materialization did."""

    view: str
    version: str
    start: datetime | None
    end: datetime
    chunks: int
    rows_read: int
    rows_written: int
    watermark: datetime | None
    removed: int | None = None  # online records a rebuild dropped first (None: no rebuild)

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "version": self.version,
            "start": None if self.start is None else self.start.isoformat(),
            "end": self.end.isoformat(),
            "chunks": self.chunks,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "watermark": None if self.watermark is None else self.watermark.isoformat(),
            "removed": self.removed,
        }


class Materializer:
    """Runs materialization for views against one offline and one online store."""

    def __init__(
        self,
        db: MetadataDB,
        offline: OfflineStore,
        online: OnlineStore,
        clock: Clock,
        *,
        chunk: timedelta,
        created_time_guard: bool,
    ) -> None:
        self._db = db
        self._offline = offline
        self._online = online
        self._clock = clock
        self._chunk = chunk
        self._guard = created_time_guard

    def watermark(self, view: FeatureView) -> datetime | None:
        return watermarks(self._db, [view])[view.name]

    def run(
        self,
        views: Sequence[FeatureView],
        start: datetime | None,
        end: datetime,
        progress: Progress | None = None,
        *,
        rebuild: bool = False,
    ) -> list[MaterializeResult]:
        """Materialize each view in turn; with ``rebuild``, reset each one just before."""
        end = ensure_utc(end)
        results = []
        for view in views:
            removed = self.reset(view) if rebuild else None
            result = self._run_view(view, start, end, progress)
            results.append(replace(result, removed=removed))
        return results

    def reset(self, view: FeatureView) -> int:
        """Forget the watermark of ``view``'s version, then drop its online records;
        return how many records there were."""
        with self._db.write() as session:
            row = session.get(MaterializationRow, (view.name, view.version))
            if row is not None:
                session.delete(row)
        return self._online.delete_namespace(view.online_namespace)

    def _run_view(
        self, view: FeatureView, start: datetime | None, end: datetime, progress: Progress | None
    ) -> MaterializeResult:
        con = self._offline.connect()
        try:
            relation = self._offline.register_source(con, view)
            visible = self._visibility(view)
            mark = self.watermark(view)
            first_inclusive = mark is None
            earliest = None if mark is not None else self._earliest(con, view, relation, visible)
            if mark is None and earliest is None:
                raise SourceError(
                    f"feature view {view.name!r}: its source {view.source!r} has no rows "
                    f"(none with an event time in {view.event_time!r}); nothing to materialize"
                )
            given = [t for t in (mark, None if start is None else ensure_utc(start)) if t]
            lo = max(given) if given else earliest
            if lo is None or lo >= end:
                if progress:
                    progress(view.name, 0, 0)
                return MaterializeResult(view.name, view.version, lo, end, 0, 0, 0, mark)
            bounds = _chunks(lo, end, self._chunk)
            rows_read = rows_written = 0
            select, joinable = _columns(view)
            for index, (a, b) in enumerate(bounds):
                low_op = ">=" if not view.inclusive or (first_inclusive and index == 0) else ">"
                high_op = "<=" if view.inclusive else "<"
                batch = _query(
                    con,
                    view,
                    f'SELECT {select} FROM "{relation}" WHERE {joinable} '
                    f"AND {visible} {low_op} TIMESTAMPTZ '{a.isoformat()}' "
                    f"AND {visible} {high_op} TIMESTAMPTZ '{b.isoformat()}'",
                )
                written = 0
                if batch.num_rows:
                    written = self._online.write_batch(
                        view.online_namespace,
                        batch,
                        key_columns=list(view.join_keys),
                        event_time_column=view.event_time,
                        created_time_column=view.created_time,
                        feature_columns=list(view.feature_names),
                    )
                rows_read += batch.num_rows
                rows_written += written
                self._advance(view, b, written)
                if progress:
                    progress(view.name, index + 1, len(bounds))
            return MaterializeResult(
                view.name, view.version, lo, end, len(bounds), rows_read, rows_written, end
            )
        finally:
            con.close()

    def _visibility(self, view: FeatureView) -> str:
        if self._guard and view.created_time:
            return f'greatest("{view.event_time}", "{view.created_time}")'
        return f'"{view.event_time}"'

    def _earliest(
        self, con: duckdb.DuckDBPyConnection, view: FeatureView, relation: str, visible: str
    ) -> datetime | None:
        _, joinable = _columns(view)
        query = f'SELECT epoch_us(min({visible})) FROM "{relation}" WHERE {joinable}'
        micros = _query(con, view, query).column(0)[0].as_py()
        if micros is None:
            return None
        return _EPOCH + timedelta(microseconds=int(micros))

    def _advance(self, view: FeatureView, watermark: datetime, written: int) -> None:
        now = self._clock.now()
        with self._db.write() as session:
            row = session.get(MaterializationRow, (view.name, view.version))
            if row is None:
                session.add(
                    MaterializationRow(
                        view_name=view.name,
                        view_version=view.version,
                        watermark=watermark,
                        rows_written=written,
                        updated_at=now,
                    )
                )
            else:
                row.watermark = watermark
                row.rows_written = row.rows_written + written
                row.updated_at = now


#: A null created time is "known at its event time" and, among rows of one event time,
#: the oldest (as in the point-in-time join): it is stored as the earliest time that every
#: timestamp unit holds, so the online store's ordering needs no null.
_NULL_CREATED = "TIMESTAMP '1678-01-01'"


def _columns(view: FeatureView) -> tuple[str, str]:
    """The SELECT list of a view's rows for the online store, and the condition that
    keeps only the rows a point-in-time join can pick: every join key and the event
    time not null (null keys never match; a row without an event time is ignored)."""
    columns = [_quote(c) for c in (*view.join_keys, view.event_time)]
    if view.created_time:
        created = _quote(view.created_time)
        columns.append(f"COALESCE({created}, {_NULL_CREATED}) AS {created}")
    columns += [_quote(c) for c in view.feature_names]
    joinable = " AND ".join(f"{_quote(c)} IS NOT NULL" for c in (*view.join_keys, view.event_time))
    return ", ".join(columns), joinable


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _query(con: duckdb.DuckDBPyConnection, view: FeatureView, query: str) -> pa.Table:
    """Run a query over the view's source; a source that fails while it is read (a
    damaged Parquet page, a SQL source raising) is a :class:`SourceError` naming it."""
    try:
        return con.sql(query).to_arrow_table()
    except duckdb.Error as exc:
        raise SourceError(
            f"feature view {view.name!r}: reading its source {view.source!r} failed: {exc}"
        ) from None


def _chunks(lo: datetime, hi: datetime, step: timedelta) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    a = lo
    while a < hi:
        b = min(a + step, hi)
        out.append((a, b))
        a = b
    return out


def watermarks(db: MetadataDB, views: Sequence[FeatureView]) -> dict[str, datetime | None]:
    """Each view's (current version's) materialization watermark; None: never loaded."""
    with db.session() as session:
        rows = {view.name: session.get(MaterializationRow, (view.name, view.version))
                for view in views}  # fmt: skip
    return {name: None if row is None else row.watermark for name, row in rows.items()}
