"""An experiment's records as columns: the prediction log's chosen columns, each row's
latest label and reward from the label log, and per-arm counts — queried in DuckDB from
the relations :mod:`~prodml.rollout._analysis_sources` registers (views over the log's
Parquet files, or Arrow tables read through the store) and handed on as NumPy arrays
(one entry per record).

Arms. A live record belongs to the arm it was *routed* to: ``fallback_from`` when the
routed arm failed and another answered (so a failing challenger's fallbacks count
against it), else ``arm``. A shadow record belongs to its shadow arm. One name can be a
shadow arm for a while and a live one later, so an arm is the pair (name, shadow).

Labels and rewards follow :class:`~prodml.monitoring._records.LabelIndex` and the
monitor's join: per (request id, row) the latest finite one in log order; a label naming
a row answers that row, one without a row every row of its request, and a row's own
label wins over its request's. LabelIndex itself is not reused: it reads every column of
the label log and deduplicates on one thread before any join (6–12 s at 10M labels on
two busy cores, against about 1 s for the DuckDB join here); the tests check both agree.

Distinct request ids and units are counted on DuckDB's 64-bit hashes of them, sorted in
NumPy (several times faster than ``COUNT(DISTINCT)`` on text). Two different values
share a hash with probability about n²/2⁶⁵ (3·10⁻⁶ for 10M distinct values), which
would undercount by one; joins compare the values themselves.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from prodml.core import ensure_utc
from prodml.core.errors import DefinitionError, NotFoundError
from prodml.rollout._analysis_sources import (
    COLUMNS,
    LABEL_COLUMNS,
    Sources,
    arrow_sources,
    micros,
    scan_sources,
)
from prodml.storage import LogStores, QuarantinedFile

__all__ = ["COLUMNS", "LABEL_COLUMNS", "ArmCounts", "ArmKey", "ExperimentRows", "read_experiment"]

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]

_SHADOW = "coalesce(shadow, false)"
_ASSIGNED = f"CASE WHEN {_SHADOW} THEN coalesce(arm, '') ELSE coalesce(fallback_from, arm, '') END"
_log = logging.getLogger("prodml.rollout")
#: Prefix of the extra (segment) columns in the records query, apart from its own names.
_EXTRA = "extra:"


@dataclass(frozen=True, order=True)
class ArmKey:
    """An arm as the log knows it: its ``name`` and whether its records are shadow ones."""

    name: str
    shadow: bool = False


@dataclass(frozen=True)
class ArmCounts:
    """Counts of one arm's records: all ``records`` routed to it, distinct ``requests``
    and ``units``, distinct units since the SRM start (``srm_units``); the ``role`` most
    of its own records carry and its ``model_versions``."""

    records: int
    requests: int
    units: int
    srm_units: int
    role: str | None
    model_versions: tuple[str, ...]


@dataclass(eq=False)
class ExperimentRows:
    """One entry per prediction record: its arm's index in ``arms`` (``code``), whether
    its own arm answered (``own``: no fallback), whether it failed (``error``), its time
    in microseconds since the epoch (UTC), latency, output, label, reward and propensity
    (NaN where missing). ``table`` holds the extra (segment) columns asked for, one row
    per record; ``record_ids`` holds each record's global id (see ``sources``), in
    increasing order."""

    arms: tuple[ArmKey, ...]
    #: each arm's records and the role most of its own records carry
    arm_records: dict[ArmKey, int]
    arm_roles: dict[ArmKey, str | None]
    pending_counts: Future[dict[ArmKey, ArmCounts]] = field(repr=False)
    code: npt.NDArray[np.int16]
    own: Bools
    error: Bools
    time_us: Ints
    latency: Floats
    output: Floats
    label: Floats
    reward: Floats
    propensity: Floats
    table: pa.Table
    sources: Sources = field(repr=False)
    record_ids: Ints = field(repr=False)
    con: duckdb.DuckDBPyConnection = field(repr=False)

    @property
    def counts(self) -> dict[ArmKey, ArmCounts]:
        """Each arm's counts (their distinct requests and units are counted on a second
        thread while the metrics are computed: sorting releases the GIL)."""
        return self.pending_counts.result()

    @property
    def live(self) -> list[int]:
        """Codes of the live arms."""
        return [i for i, arm in enumerate(self.arms) if not arm.shadow]

    def code_of(self, arm: ArmKey) -> int:
        return self.arms.index(arm)

    def segment(self, column: str) -> tuple[npt.NDArray[np.int64], list[str]]:
        """Each record's index into the returned labels: ``column``'s values as text,
        sorted, then ``"(null)"`` for a missing value."""
        values = self.table[column]
        if not pa.types.is_string(values.type):
            values = pc.cast(values, pa.string())
        encoded = values.combine_chunks().dictionary_encode()
        found = [str(v) for v in encoded.dictionary.to_pylist()]
        order = sorted(range(len(found)), key=found.__getitem__)
        rank = np.empty(len(found) + 1, np.int64)  # dictionary index -> sorted position
        rank[order] = np.arange(len(found))
        rank[-1] = len(found)
        codes = encoded.indices.fill_null(len(found)).to_numpy(zero_copy_only=False)
        return rank[codes.astype(np.int64)], [found[i] for i in order] + ["(null)"]

    def shadow_pairs(self, shadow: ArmKey) -> tuple[Ints, Ints]:
        """Indices of (shadow record, live record) pairs of the same request and row,
        the live record answered by the arm the shadow record shadowed, in record
        order."""
        found = self.con.execute(
            """SELECT s._i AS s, l._i AS l FROM p AS s JOIN p AS l
                ON s.request_id = l.request_id AND coalesce(s.row, 0) = coalesce(l.row, 0)
                AND l.arm = s.shadow_of
                WHERE coalesce(s.shadow, false) AND s.arm = $arm
                AND NOT coalesce(l.shadow, false) AND l.fallback_from IS NULL""",
            {"arm": shadow.name},
        ).fetchnumpy()
        s = self.position(np.asarray(found["s"], np.int64))
        live = self.position(np.asarray(found["l"], np.int64))
        order = np.lexsort((live, s))  # the join's order varies; the sums must not
        return s[order], live[order]

    def position(self, keys: Ints) -> Ints:
        """The record index of each key of ``p``."""
        found: Ints = np.searchsorted(self.record_ids, self.sources.global_ids(keys))
        return found


def _arm_groups(
    con: duckdb.DuckDBPyConnection,
) -> tuple[tuple[ArmKey, ...], Counter[ArmKey], dict[ArmKey, str | None], dict[ArmKey, tuple[str, ...]]]:  # fmt: skip
    """The arms (live ones first, then shadow ones, each sorted by name), their record
    counts, and the most common role and the model versions of their own records."""
    groups = con.execute(
        f"""SELECT {_SHADOW} AS sh, {_ASSIGNED} AS assigned, coalesce(arm, '') = {_ASSIGNED}
             AND fallback_from IS NULL AS own, role, model_version, count(*) AS n
            FROM p GROUP BY ALL"""
    ).fetchall()
    records: Counter[ArmKey] = Counter()
    roles: dict[ArmKey, Counter[str]] = {}
    versions: dict[ArmKey, set[str]] = {}
    for shadow, assigned, own, role, version, n in groups:
        key = ArmKey(str(assigned), bool(shadow))
        records[key] += int(n)
        if own and role is not None:
            roles.setdefault(key, Counter())[str(role)] += int(n)
        if own and version is not None:
            versions.setdefault(key, set()).add(str(version))
    arms = tuple(sorted(records, key=lambda a: (a.shadow, a.name)))
    return (
        arms,
        records,
        {key: (roles[key].most_common(1)[0][0] if key in roles else None) for key in arms},
        {key: tuple(sorted(versions.get(key, ()))) for key in arms},
    )


def _records(
    con: duckdb.DuckDBPyConnection,
    arms: Sequence[ArmKey],
    extra: Sequence[str],
    labels: bool,
    *,
    ranked: bool = False,
) -> pa.Table:
    """Per record: its key, time, arm's code, whether its own arm answered, whether it
    failed, the 64-bit hashes of its request id and unit with the lowest bit set (0: no
    value), its numbers (NaN: none) and the ``extra`` columns; with ``labels``, each
    label or reward that answers it (see :class:`_Records`) — a record answered several
    times has a row per answer (with ``ranked``, each answer's ``rank`` and ``pos``), one
    without any a row with NaNs."""
    live = [a.name for a in arms if not a.shadow]
    shadow = [a.name for a in arms if a.shadow]
    # aliased: an extra column may share a name with one of the fixed ones (``output``)
    columns = "".join(
        f', p."{name}" AS "{_EXTRA}{name}"' for name in (n.replace('"', '""') for n in extra)
    )
    # Joined on the ids' 64-bit hashes, then the ids compared (exact, and ~30% faster
    # than a join on the text); in the records query, so each id is read once. A row's
    # own label ranks first, then the latest: (has_row, t) as one int64 (times within
    # ±2⁶¹ µs, 73,000 years, of the epoch).
    answers = " FROM p"
    if labels:
        rank = (
            ", (l.has_row::BIGINT << 62) + (l.t + (1::BIGINT << 61)) AS rank, l.pos"
            if ranked
            else ""
        )
        answers = f""", {_number("l.label")} AS label, {_number("l.reward")} AS reward{rank}
            FROM p LEFT JOIN l ON hash(p.request_id) = hash(l.request_id)
            AND p.request_id = l.request_id AND (l.row IS NULL OR l.row = coalesce(p.row, 0))"""
    return con.sql(
        f"""SELECT p._i, epoch_us(p.time) AS time_us,
              (CASE WHEN {_SHADOW} THEN list_position($shadow, coalesce(arm, '')) + $live_n
                 ELSE list_position($live, {_ASSIGNED}) END - 1)::SMALLINT AS code,
              fallback_from IS NULL AS own, coalesce(status = 'error', false) AS error,
              {_hashed("p.request_id")} AS request_hash, {_hashed("unit")} AS unit_hash,
              {_number("latency_ms")} AS latency_ms, {_number("output")} AS output,
              {_number("propensity")} AS propensity{columns}{answers}""",
        params={"live": live or [""], "shadow": shadow or [""], "live_n": len(live)},
    ).to_arrow_table()


def _hashed(column: str) -> str:
    """SQL: ``column``'s hash with its lowest bit set, 0 for null (so no null mask)."""
    return f"CASE WHEN {column} IS NULL THEN 0::UBIGINT ELSE hash({column}) | 1::UBIGINT END"


def _number(column: str) -> str:
    """SQL: ``column`` with NaN for null (NumPy takes the column without a null mask)."""
    return f"coalesce({column}, 'NaN'::DOUBLE)"


def _distinct(hashes: npt.NDArray[np.uint64]) -> int:
    """How many distinct values have these hashes (see :func:`_hashed`: 0 is no value,
    not counted; sorting beats a hash table here)."""
    if len(hashes) == 0:
        return 0
    ordered = np.sort(hashes)
    found = 1 + int(np.count_nonzero(ordered[1:] != ordered[:-1]))
    return found - 1 if ordered[0] == 0 else found


def _arm_counts(
    arms: Sequence[ArmKey],
    groups: tuple[Any, Counter[ArmKey], dict[ArmKey, str | None], dict[ArmKey, tuple[str, ...]]],
    records: _Records,
    code: npt.NDArray[np.int16],
    time_us: Ints,
    srm_us: int | None,
) -> dict[ArmKey, ArmCounts]:
    _, counted, roles, versions = groups
    request_hash = records.column("request_hash", np.uint64)
    unit_hash = records.column("unit_hash", np.uint64)
    counts = {}
    for i, key in enumerate(arms):
        mine = code == i
        units = _distinct(unit_hash[mine])
        if srm_us is not None:
            units_since = _distinct(unit_hash[mine & (time_us >= srm_us)])
        else:
            units_since = units
        counts[key] = ArmCounts(
            records=counted[key],
            requests=_distinct(request_hash[mine]),
            units=units,
            srm_units=units_since,
            role=roles[key],
            model_versions=versions[key],
        )
    return counts


class _Records:
    """The rows of :func:`_records` as one entry per record, in record order (the order
    of the records' global ids, ``ids``: log order), whatever order the join gave them
    in; a record's ``label`` and ``reward`` are those of its answer of highest priority
    (NaN: none).

    Each output batch's rows go straight to their records' places (``rank``): one
    scatter per column from the Arrow buffers, no concatenated copy and no gather. Every
    row of a record carries the same prediction columns, so a record answered several
    times takes them from any; its label and reward need the ``ranked`` table
    (:meth:`of` returns None for an unranked one)."""

    def __init__(
        self, batches: list[pa.RecordBatch], ranks: list[Ints], ids: Ints, schema: pa.Schema
    ) -> None:
        self.batches = batches
        self.ranks = ranks
        self.ids = ids
        self.schema = schema
        self.count = len(ids)
        self.label = self.reward = np.empty(0)

    @classmethod
    def of(cls, table: pa.Table, sources: Sources, *, ranked: bool) -> _Records | None:
        batches = [batch for batch in table.to_batches() if batch.num_rows]
        keys = [sources.global_ids(_values(batch.column("_i"), np.int64)) for batch in batches]
        present = np.zeros(sources.size, np.bool_)
        for key in keys:
            present[key] = True
        ids = np.flatnonzero(present)
        once = len(ids) == table.num_rows
        if not once and not ranked:
            return None
        if len(ids) == sources.size:  # every record of the listing: its id is its place
            ranks = keys
        else:
            place = np.cumsum(present, dtype=np.int64) - 1
            ranks = [place[key] for key in keys]
        del present
        records = cls(batches, ranks, ids, table.schema)
        if not sources.labels:
            records.label = np.full(records.count, math.nan)
            records.reward = np.full(records.count, math.nan)
        elif once:
            records.label = records.column("label", np.float64)
            records.reward = records.column("reward", np.float64)
        else:
            index = np.concatenate(ranks)
            rank = np.asarray(pc.fill_null(table["rank"], 0).to_numpy(), np.int64)
            pos = np.asarray(pc.fill_null(table["pos"], 0).to_numpy(), np.int64)
            label = _values(table["label"], np.float64)
            reward = _values(table["reward"], np.float64)
            records.label = _latest(index, rank, pos, label, records.count)
            records.reward = _latest(index, rank, pos, reward, records.count)
        return records

    def column(self, name: str, kind: Any) -> Any:
        out = np.empty(self.count, kind)
        for batch, rank in zip(self.batches, self.ranks, strict=True):
            out[rank] = _values(batch.column(name), kind)
        return out

    def extra(self, names: Sequence[str]) -> pa.Table:
        table = pa.Table.from_batches(self.batches, self.schema).select(list(names))
        if not names:
            return table.slice(0, self.count)
        order = np.empty(self.count, np.int64)
        order[np.concatenate(self.ranks)] = np.arange(table.num_rows, dtype=np.int64)
        return table.take(pa.array(order))


def _values(array: pa.Array | pa.ChunkedArray, kind: Any) -> Any:
    """A column (of one batch: no copy for numbers without nulls) as NumPy, a null as
    NaN or False."""
    if array.null_count:
        array = pc.fill_null(array, math.nan if kind == np.float64 else False)
    return np.asarray(array.to_numpy(zero_copy_only=False), kind)


def _latest(index: Ints, rank: Ints, pos: Ints, values: Floats, count: int) -> Floats:
    """Per record ``0 … count-1``, the finite value of its pair of largest ``(rank,
    pos)`` (NaN: none); ``index`` gives each pair's record."""
    out = np.full(count, math.nan)
    keep = np.isfinite(values)
    if not keep.all():
        index, rank, pos, values = index[keep], rank[keep], pos[keep], values[keep]
    if len(index) == 0:
        return out
    best = np.full(count, np.iinfo(np.int64).min)
    np.maximum.at(best, index, rank)
    top = rank == best[index]
    index, pos, values = index[top], pos[top], values[top]
    last = np.full(count, -1, np.int64)
    np.maximum.at(last, index, pos)
    top = pos == last[index]
    index, values = index[top], values[top]
    out[index] = values
    return out


def _collect(
    con: duckdb.DuckDBPyConnection,
    sources: Sources,
    extra: Sequence[str],
    srm_us: int | None,
    pool: ThreadPoolExecutor,
) -> ExperimentRows | None:
    """The rows from the relations of ``sources`` (None: no record)."""
    groups = _arm_groups(con)
    arms = groups[0]
    table = _records(con, arms, extra, sources.labels)
    if table.num_rows == 0:
        return None
    records = _Records.of(table, sources, ranked=False)
    if records is None:  # some record is answered more than once: rank the answers
        del table
        ranked = _records(con, arms, extra, sources.labels, ranked=True)
        records = _Records.of(ranked, sources, ranked=True)
        assert records is not None
    time_us = records.column("time_us", np.int64)
    code = records.column("code", np.int16)
    counts = pool.submit(_arm_counts, arms, groups, records, code, time_us, srm_us)
    return ExperimentRows(
        arms=arms,
        arm_records=dict(groups[1]),
        arm_roles=groups[2],
        pending_counts=counts,
        code=code,
        own=records.column("own", np.bool_),
        error=records.column("error", np.bool_),
        time_us=time_us,
        latency=records.column("latency_ms", np.float64),
        output=records.column("output", np.float64),
        label=records.label,
        reward=records.reward,
        propensity=records.column("propensity", np.float64),
        table=records.extra([_EXTRA + name for name in extra]).rename_columns(list(extra)),
        sources=sources,
        record_ids=records.ids,
        con=con,
    )


@contextmanager
def read_experiment(
    logs: LogStores,
    endpoint: str,
    *,
    start: datetime | None,
    end: datetime | None,
    srm_start: datetime | None,
    extra_columns: Sequence[str] = (),
    quarantine: list[QuarantinedFile] | None = None,
) -> Iterator[ExperimentRows]:
    """The records of ``endpoint`` in ``[start, end)`` with their labels and rewards;
    :class:`NotFoundError` when there are none, :class:`DefinitionError` when an
    ``extra_columns`` column holds no value in the range.

    The log's files are scanned where they can be (see
    :mod:`~prodml.rollout._analysis_sources`); a scan that fails (a file unreadable,
    or gone meanwhile) is redone through the store, which quarantines what it cannot
    read."""
    extra = list(dict.fromkeys(extra_columns))
    srm_us = None if srm_start is None else micros(srm_start)
    con = duckdb.connect()
    pool = ThreadPoolExecutor(1, thread_name_prefix="prodml-analysis")

    def collected(sources: Sources) -> ExperimentRows:
        if sources.size == 0:
            _none(endpoint, start, end)
        for name in sources.empty:
            _no_column(logs, endpoint, name, start, end)
        rows = _collect(con, sources, extra, srm_us, pool)
        if rows is None:
            _none(endpoint, start, end)
        assert rows is not None
        return rows

    try:
        rows = None
        try:
            sources = scan_sources(con, logs, endpoint, start=start, end=end, extra_columns=extra)
            if sources is not None:
                rows = collected(sources)
        except duckdb.Error as exc:
            _log.warning(
                "endpoint %r: scanning the logs failed (%s); reading them through the store",
                endpoint,
                exc,
            )
            con.close()
            con = duckdb.connect()
        if rows is None:
            rows = collected(
                arrow_sources(
                    con, logs, endpoint, start=start, end=end, extra_columns=extra,
                    quarantine=quarantine,
                )
            )  # fmt: skip
        yield rows
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        con.close()


def _none(endpoint: str, start: datetime | None, end: datetime | None) -> None:
    raise NotFoundError(
        f"endpoint {endpoint!r}: no prediction records in [{_when(start)}, {_when(end)}): "
        "expected the log to hold records of the experiment"
    )


def _when(value: datetime | None) -> str:
    return "…" if value is None else ensure_utc(value).isoformat()


def _no_column(
    logs: LogStores, endpoint: str, name: str, start: datetime | None, end: datetime | None
) -> None:
    """Raise :class:`DefinitionError` for a segment column with no value in the range,
    listing the columns that have one (this reads every column: an error path)."""
    table = logs.predictions.read(endpoint=endpoint, start=start, end=end)
    available = sorted(c for c in table.column_names if not pa.types.is_null(table[c].type))
    raise DefinitionError(
        f"segment_by {name!r}: endpoint {endpoint!r} has no such column with values in "
        f"[{_when(start)}, {_when(end)}): expected one of {available}"
    )
