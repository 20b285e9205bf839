"""Point-in-time join: for each entity row, the latest feature row known at its time.

For an entity row (keys, timestamp ``t``) and a view, the candidates are the view's
rows with the same keys (null keys never match) and ``event_time <= t``, and
``event_time >= t - ttl`` when the view has a TTL (both bounds inclusive); feature rows
with a null event time are ignored. With ``created_time_guard`` and a created-time
column, a row whose ``created_time > t`` was not known yet and is no candidate (a null
created time means "known at its event time"). A view with ``inclusive=False`` sees
only what was there strictly before ``t``: ``event_time < t`` (and ``created_time < t``
under the guard), the TTL's lower bound unchanged — times are integers, so this is the
inclusive rule at ``t - 1`` in the join's unit. The pick is the candidate with the
latest event time, then the latest created time (null oldest), then the **last row in
the relation's order** — the order DuckDB scans it in: file order for Parquet (files in
name order), insertion order for a table or an Arrow table, which DuckDB keeps while
``preserve_insertion_order`` is on (the join turns it on while it runs). A picked row's
null values stay null; no candidate gives nulls. Every entity row appears exactly once,
in input order.

:func:`point_in_time_join_matched` also reports, per view, how many entity rows picked a
feature row and how many of those picked one stamped **exactly** at the entity row's
time (``event_time == t``). Under the inclusive bound such a tie is legitimate for a
measurement taken at ``t``, but a view where most picks tie usually stores one row per
event at the event's own time — and if that row's values include the event (a running
aggregate over the label), the training row reads its own label. A strict view cannot
tie (``event_time < t``): it reports 0. The count compares the picked rows' epoch times
with the entity rows' in NumPy, after the join: two gathers and a comparison.

How: each view's needed columns are read once into Arrow (position = ordinal); DuckDB
then as-of joins two narrow integer tables and returns only (entity row, feature row)
positions — ``_pit_plan`` picks the query, packing the sort keys into single integers
where they fit, ``_pit_sql`` holds the queries — and the feature values are gathered in
Arrow, so they never pass through a sort or a hash table. Times are int64 epoch counts
(``_pit_columns``), so the session time zone cannot change a result; the join still
runs with ``TimeZone='UTC'`` so that timezone-aware feature values come out labelled UTC.

>>> import duckdb, pyarrow as pa
>>> from datetime import datetime, timedelta
>>> con = duckdb.connect()
>>> _ = con.register("trips", pa.table({"driver": [1, 1, 2], "x": [0.5, 0.7, 0.9],
...     "ts": [datetime(2024, 1, 1), datetime(2024, 1, 3), datetime(2024, 1, 1)]}))
>>> entities = pa.table({"driver": [1, 1, 2, 3],
...     "at": [datetime(2024, 1, 2), datetime(2024, 1, 3), datetime(2024, 1, 9), datetime(2024, 1, 2)]})
>>> view = JoinView("trips", "trips", (("driver", "driver"),), "ts", None,
...                 timedelta(days=7), (("x", "trips__x"),))
>>> point_in_time_join(con, entities, "at", [view])["trips__x"].to_pylist()
[0.5, 0.7, None, None]
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from prodml.core.errors import DefinitionError, SchemaError, SourceError, TimestampError
from prodml.features._pit_columns import (
    Resolution,
    check_aware_like,
    check_key_type,
    check_timestamp_type,
    epoch_ints,
    require_columns,
    resolution,
)
from prodml.features._pit_plan import pick_rows

__all__ = [
    "JoinView",
    "MatchedJoin",
    "ViewMatch",
    "point_in_time_join",
    "point_in_time_join_matched",
]

_PARALLEL_GATHER_ROWS = 500_000
#: Picks per feature row from which :func:`_gather_rows` gathers (below, Arrow's take is faster).
_ROWS_GATHER_FROM = 3
#: Entity rows per piece of :func:`_gather_rows` (a multiple of 8; its rows fit in cache).
_GATHER_PIECE_ROWS = 1 << 16


@dataclass(frozen=True)
class JoinView:
    """One feature view as the join sees it: where its rows come from and which columns mean what."""

    name: str
    relation: str
    join_keys: tuple[tuple[str, str], ...]
    event_time: str
    created_time: str | None
    ttl: timedelta | None
    features: tuple[tuple[str, str], ...]
    inclusive: bool = True


@dataclass(frozen=True)
class ViewMatch:
    """How one view met the entity rows: ``picked`` rows picked a feature row,
    ``exact_time`` of them one stamped exactly at the entity row's own time."""

    picked: int
    exact_time: int


@dataclass(frozen=True)
class MatchedJoin:
    """The join's output columns and, per view (by name), its :class:`ViewMatch`."""

    table: pa.Table
    matches: dict[str, ViewMatch]


@dataclass
class _Entities:
    """The entity rows' keys and timestamp, checked, with epoch counts made once per resolution."""

    rows: pa.Table
    timestamp: str
    _epochs: dict[Resolution, pa.ChunkedArray] = field(default_factory=dict)

    @property
    def kind(self) -> pa.TimestampType:
        kind: pa.TimestampType = self.rows.schema.field(self.timestamp).type
        return kind

    def epochs(self, unit: Resolution, view: str) -> pa.ChunkedArray:
        if unit not in self._epochs:
            column = self.rows.column(self.timestamp)
            self._epochs[unit] = epoch_ints(column, unit, view=view, column=self.timestamp)
        return self._epochs[unit]


def point_in_time_join(
    con: duckdb.DuckDBPyConnection,
    entity_rows: pa.Table,
    timestamp: str,
    views: Sequence[JoinView],
    *,
    created_time_guard: bool = True,
) -> pa.Table:
    """The views' feature columns for each entity row, as of its timestamp.

    Returns only the output columns (views in order, each view's features in order),
    ``entity_rows.num_rows`` rows in input order. See the module docstring for the rules.
    """
    return point_in_time_join_matched(
        con, entity_rows, timestamp, views, created_time_guard=created_time_guard
    ).table


def point_in_time_join_matched(
    con: duckdb.DuckDBPyConnection,
    entity_rows: pa.Table,
    timestamp: str,
    views: Sequence[JoinView],
    *,
    created_time_guard: bool = True,
) -> MatchedJoin:
    """:func:`point_in_time_join`'s columns, with each joined view's :class:`ViewMatch`
    (views without features are not joined and have none)."""
    _check_views(views)
    entities = _check_entities(entity_rows, timestamp, views)
    names: list[str] = []
    columns: list[pa.ChunkedArray] = []
    matches: dict[str, ViewMatch] = {}
    with _join_session(con):
        for view in views:
            if not view.features:
                continue
            joined, matches[view.name] = _join_view(con, entities, view, guard=created_time_guard)
            columns.extend(joined)
            names.extend(output for _, output in view.features)
    if not columns:
        return MatchedJoin(entity_rows.select([]), matches)
    return MatchedJoin(pa.Table.from_arrays(columns, names=names), matches)


def _check_views(views: Sequence[JoinView]) -> None:
    seen: dict[str, str] = {}
    for view in views:
        if not view.join_keys:
            raise DefinitionError(
                f"view {view.name!r}: join_keys is empty; expected at least one key"
            )
        if view.ttl is not None and view.ttl < timedelta(0):
            raise DefinitionError(
                f"view {view.name!r}: ttl is {view.ttl}; expected a duration >= 0 or None"
            )
        for _, output in view.features:
            if output in seen:
                raise DefinitionError(
                    f"view {view.name!r}: output column {output!r} is also produced by view "
                    f"{seen[output]!r}; expected unique output column names"
                )
            seen[output] = view.name


def _check_entities(rows: pa.Table, timestamp: str, views: Sequence[JoinView]) -> _Entities:
    available = rows.column_names
    for view in views:
        wanted = [(timestamp, "timestamp")] + [(key, "join key") for key, _ in view.join_keys]
        require_columns(available, wanted, view=view.name, side="entity rows")
    if not views:
        require_columns(available, [(timestamp, "timestamp")], view="(none)", side="entity rows")
    kind = rows.schema.field(timestamp).type
    if not pa.types.is_timestamp(kind):
        raise SchemaError(
            f"entity rows: timestamp column {timestamp!r} has type {kind}; expected a "
            "timestamp (any unit, naive or timezone-aware)"
        )
    nulls = rows.column(timestamp).null_count
    if nulls:
        raise TimestampError(
            f"entity rows: timestamp column {timestamp!r} has {nulls} null value(s) out of "
            f"{rows.num_rows}; expected a time on every entity row"
        )
    return _Entities(rows, timestamp)


@contextmanager
def _join_session(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run with ``TimeZone='UTC'`` and ``preserve_insertion_order`` on, then restore both.

    ``preserve_insertion_order`` is a database-wide setting: while a join runs, other
    connections to the same database see it on.
    """
    zone, keep_order = con.sql(
        "SELECT current_setting('TimeZone'), current_setting('preserve_insertion_order')"
    ).fetchall()[0]
    con.execute("SET TimeZone = 'UTC'")
    if not keep_order:
        con.execute("SET preserve_insertion_order = true")
    try:
        yield
    finally:
        con.execute("SET TimeZone = " + _literal(str(zone)))
        if not keep_order:
            con.execute("SET preserve_insertion_order = false")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_QUERY_START = ("select", "with", "from", "values", "table", "(")


def _relation(relation: str) -> str:
    """``relation`` usable after FROM: a query goes in parentheses, a (quoted) name does
    not (DuckDB 2 refuses a parenthesised name)."""
    text = relation.strip()
    return f"({text})" if text.lower().startswith(_QUERY_START) else text


def _read_view(con: duckdb.DuckDBPyConnection, view: JoinView) -> pa.Table:
    """The view's key, time and feature columns, read once, in the relation's order."""
    wanted = [(feature, "join key") for _, feature in view.join_keys]
    wanted.append((view.event_time, "event_time"))
    if view.created_time is not None:
        wanted.append((view.created_time, "created_time"))
    wanted.extend((feature, "feature") for feature, _ in view.features)
    source = f"(SELECT * FROM {_relation(view.relation)}) AS __prodml_source"
    try:
        available = con.sql(f"SELECT * FROM {source}").columns
    except duckdb.Error as error:
        raise SourceError(f"view {view.name!r}: relation could not be read: {error}") from error
    require_columns(available, wanted, view=view.name, side="feature rows")
    needed = list(dict.fromkeys(column for column, _ in wanted))
    query = f"SELECT {', '.join(_ident(c) for c in needed)} FROM {source}"
    try:
        return con.sql(query).to_arrow_table()
    except duckdb.Error as error:
        raise SourceError(f"view {view.name!r}: relation could not be read: {error}") from error


def _join_view(
    con: duckdb.DuckDBPyConnection, entities: _Entities, view: JoinView, *, guard: bool
) -> tuple[list[pa.ChunkedArray], ViewMatch]:
    """The view's feature columns, one value per entity row, and how its rows matched."""
    source = _read_view(con, view)
    entity_kind = entities.kind
    times = [view.event_time] if view.created_time is None else [view.event_time, view.created_time]
    for column in times:
        kind = source.schema.field(column).type
        check_timestamp_type(kind, view=view.name, column=column, side="feature rows")
        check_aware_like(
            kind, entity_kind, view=view.name, column=column, timestamp=entities.timestamp
        )
    for entity_key, feature_key in view.join_keys:
        check_key_type(
            entities.rows.schema.field(entity_key).type,
            source.schema.field(feature_key).type,
            view=view.name,
            entity_column=entity_key,
            feature_column=feature_key,
        )
    unit = resolution(entity_kind, *(source.schema.field(c).type for c in times))
    event = epoch_ints(source.column(view.event_time), unit, view=view.name, column=view.event_time)
    created = None
    if view.created_time is not None:
        created = epoch_ints(
            source.column(view.created_time), unit, view=view.name, column=view.created_time
        )
    ttl = None if view.ttl is None else view.ttl // timedelta(microseconds=1)
    if ttl is not None and unit == "ns":
        ttl *= 1_000
    rows, ords = pick_rows(
        con,
        entity_keys=[entities.rows.column(key) for key, _ in view.join_keys],
        entity_times=entities.epochs(unit, view.name),
        feature_keys=[source.column(key) for _, key in view.join_keys],
        event=event,
        created=created,
        guard=guard and created is not None,
        ttl=ttl,
        inclusive=view.inclusive,
        name=f"__prodml_pit_{uuid.uuid4().hex}",
    )
    indices = np.full(entities.rows.num_rows, -1, dtype=np.int64)
    indices[rows] = ords
    columns = [source.column(feature) for feature, _ in view.features]
    exact = _exact_time(entities.epochs(unit, view.name), event, indices) if view.inclusive else 0
    return _gather(columns, indices), ViewMatch(len(rows), exact)


def _exact_time(
    times: pa.ChunkedArray, event: pa.ChunkedArray, indices: npt.NDArray[np.int64]
) -> int:
    """How many entity rows picked a feature row whose event time equals their own time.

    ``indices`` is the picked feature row per entity row (-1: none); times are int64
    counts of one unit, and a picked row's event time is never null. Comparing every
    entity row and masking those without a pick costs a third of selecting them first
    (one random gather, no compaction): a few milliseconds per million rows."""
    if event.null_count:
        event = pc.fill_null(event, 0)
    at = np.asarray(times.to_numpy(), dtype=np.int64)
    stamped = np.asarray(event.to_numpy(), dtype=np.int64)
    if len(stamped) == 0:
        return 0
    return int(np.count_nonzero((stamped[indices] == at) & (indices >= 0)))


def _gather(columns: list[pa.ChunkedArray], picks: npt.NDArray[np.int64]) -> list[pa.ChunkedArray]:
    """``column.take(picks)`` for each column (a pick of -1: null). On large joins with
    several entity rows per feature row, the 64-bit columns (floats, ints, times) are
    gathered together as rows (:func:`_gather_rows`: one random read per entity row
    instead of one per column and validity bitmap), the others one by one, in parallel
    (Arrow releases the GIL; random gathers are bound by memory latency, not the GIL)."""
    if len(picks) < _PARALLEL_GATHER_ROWS or len(columns) < 2:
        indices = pa.array(picks, mask=picks < 0)
        return [column.take(indices) for column in columns]
    out: dict[int, pa.ChunkedArray] = {}
    wide = [i for i, column in enumerate(columns) if _is_wide(column.type)][:63]
    # the matrix costs a pass over every feature row: worth it from a few picks per row
    rows = len(columns[0])
    if len(wide) >= 2 and rows > 0 and rows * _ROWS_GATHER_FROM <= len(picks):
        out.update(zip(wide, _gather_rows([columns[i] for i in wide], picks), strict=True))
    rest = [i for i in range(len(columns)) if i not in out]
    if rest:  # Arrow's take for the others
        indices = pa.array(picks, mask=picks < 0)
        with ThreadPoolExecutor(max_workers=min(len(rest), os.cpu_count() or 1)) as pool:
            out.update(zip(rest, pool.map(lambda i: columns[i].take(indices), rest), strict=True))  # fmt: skip
    return [out[i] for i in range(len(columns))]


def _is_wide(kind: pa.DataType) -> bool:
    """A fixed-width 64-bit type (float64, int64, uint64, timestamp, duration, date64)."""
    return pa.types.is_primitive(kind) and not pa.types.is_boolean(kind) and kind.bit_width == 64


def _gather_rows(
    columns: list[pa.ChunkedArray], picks: npt.NDArray[np.int64]
) -> list[pa.ChunkedArray]:
    """:func:`_gather` for 64-bit columns (at most 63): their values side by side in one
    row-major matrix with a last word of validity bits per row, gathered row by row
    (``np.take``: one random read per entity row) in pieces small enough to split back
    into columns while in cache, on two threads; each column's validity is its value's
    and the pick's."""
    width = len(columns)
    matrix = np.empty((len(columns[0]), width + 1), dtype=np.uint64)
    matrix[:, width] = 0
    for j, column in enumerate(columns):
        array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        values = np.frombuffer(array.buffers()[1], dtype=np.uint64)
        matrix[:, j] = values[array.offset : array.offset + len(array)]
        if array.null_count == 0:
            matrix[:, width] |= np.uint64(1) << np.uint64(j)
        else:
            valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), np.uint64)
            matrix[:, width] |= valid << np.uint64(j)
    count = len(picks)
    out = [np.empty(count, np.uint64) for _ in columns]
    bitmaps = [np.empty((count + 7) // 8, np.uint8) for _ in columns]
    one = np.uint64(1)

    def piece(start: int) -> None:
        at = picks[start : start + _GATHER_PIECE_ROWS]
        rows = np.take(matrix, np.maximum(at, 0), axis=0)
        word = rows[:, width]
        word[at < 0] = 0  # no pick: null in every column
        for j in range(width):
            out[j][start : start + len(at)] = rows[:, j]
            valid = ((word >> np.uint64(j)) & one).astype(np.bool_)
            bits = np.packbits(valid, bitorder="little")
            bitmaps[j][start // 8 : start // 8 + len(bits)] = bits

    starts = range(0, count, _GATHER_PIECE_ROWS)  # a multiple of 8: whole bitmap bytes
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(piece, starts))
    return [
        pa.chunked_array(
            [pa.Array.from_buffers(column.type, count, [pa.py_buffer(bits), pa.py_buffer(values)])],
            type=column.type,
        )
        for column, values, bits in zip(columns, out, bitmaps, strict=True)
    ]
