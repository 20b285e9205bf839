"""An experiment's records as columns: the prediction log's chosen columns, each row's
latest label and reward from the label log, and per-arm counts — read once, joined and
counted in DuckDB over Arrow, handed on as NumPy arrays (one entry per record).

Arms. A live record belongs to the arm it was *routed* to: ``fallback_from`` when the
routed arm failed and another answered (so a failing challenger's fallbacks count
against it), else ``arm``. A shadow record belongs to its shadow arm. One name can be a
shadow arm for a while and a live one later, so an arm is the pair (name, shadow).

Labels and rewards follow :class:`~prodml.monitoring._records.LabelIndex` and the
monitor's join: per (request id, row) the latest finite one in log order; a label naming
a row answers that row, one without a row every row of its request, and a row's own
label wins over its request's. LabelIndex itself is not reused: it reads every column of
the label log and deduplicates on one thread before any join (6–12 s at 10M labels on
two busy cores, against 1–3 s for the DuckDB join here); the tests check both agree.

Distinct request ids and units are counted on DuckDB's 64-bit hashes of them, sorted in
NumPy (several times faster than ``COUNT(DISTINCT)`` on text). Two different values
share a hash with probability about n²/2⁶⁵ (3·10⁻⁶ for 10M distinct values), which
would undercount by one; joins compare the values themselves.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
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
from prodml.monitoring._records import label_values
from prodml.storage import PREDICTION_SCHEMA, LogStores, QuarantinedFile

__all__ = ["ArmCounts", "ArmKey", "ExperimentRows", "read_experiment"]

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

#: The prediction-record columns the analysis reads.
COLUMNS = (
    "time", "request_id", "row", "arm", "role", "model_version", "unit", "status",
    "shadow", "shadow_of", "fallback_from", "latency_ms", "propensity", "output",
)  # fmt: skip
_LABEL_COLUMNS = ("time", "request_id", "row", "label", "reward")
_NUMERIC = ("row", "latency_ms", "propensity", "output")
_MICROS = 1_000_000

_SHADOW = "coalesce(shadow, false)"
_ASSIGNED = f"CASE WHEN {_SHADOW} THEN coalesce(arm, '') ELSE coalesce(fallback_from, arm, '') END"


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
    (NaN where missing). ``table`` holds the records as read (for segment columns)."""

    arms: tuple[ArmKey, ...]
    counts: dict[ArmKey, ArmCounts]
    code: npt.NDArray[np.int16]
    own: Bools
    error: Bools
    time_us: npt.NDArray[np.int64]
    latency: Floats
    output: Floats
    label: Floats
    reward: Floats
    propensity: Floats
    table: pa.Table
    con: duckdb.DuckDBPyConnection = field(repr=False)

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

    def shadow_pairs(self, shadow: ArmKey) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Indices of (shadow record, live record) pairs of the same request and row,
        the live record answered by the arm the shadow record shadowed."""
        found = self.con.execute(
            """SELECT s._i AS s, l._i AS l FROM p AS s JOIN p AS l
                ON s.request_id = l.request_id AND coalesce(s.row, 0) = coalesce(l.row, 0)
                AND l.arm = s.shadow_of
                WHERE coalesce(s.shadow, false) AND s.arm = $arm
                AND NOT coalesce(l.shadow, false) AND l.fallback_from IS NULL""",
            {"arm": shadow.name},
        ).fetchnumpy()
        return np.asarray(found["s"], np.int64), np.asarray(found["l"], np.int64)


def _typed(table: pa.Table) -> pa.Table:
    """The fixed columns in their record types: an all-null column (stored untyped) cast,
    a numeric column that type drift made text parsed (unparsable text: NaN)."""
    columns = {}
    for name in table.column_names:
        column = table[name]
        kind = PREDICTION_SCHEMA.field(name).type if name in PREDICTION_SCHEMA.names else None
        if kind is not None and column.type != kind and name != "time":
            if name in _NUMERIC and not pa.types.is_null(column.type):
                column = label_values(column)
                if name == "row":
                    column = pc.cast(pc.if_else(pc.is_finite(column), column, None), pa.int64())
            else:
                column = pc.cast(column, kind)
        columns[name] = column
    return pa.table(columns)


def _floats(column: pa.ChunkedArray) -> Floats:
    return np.asarray(pc.fill_null(pc.cast(column, pa.float64()), math.nan).to_numpy(), np.float64)


@dataclass(frozen=True)
class _Labels:
    """The label records that carry a finite label or reward, as the join needs them
    (``table``: request id, row, position ``_k`` — a row's own labels after every
    label of a whole request, so the largest ``_k`` is the one that answers) and their
    label and reward as floats (NaN: none)."""

    table: pa.Table
    label: Floats
    reward: Floats


def _numbers(column: pa.ChunkedArray) -> Floats:
    """A label-log column as floats (see ``label_values``; an untyped column is NaN)."""
    if pa.types.is_null(column.type):
        return np.full(len(column), math.nan)
    return np.asarray(label_values(column).to_numpy(zero_copy_only=False), np.float64)


def _labels(logs: LogStores, endpoint: str, since: datetime | None, quarantine: Any) -> _Labels:
    read = logs.labels.read(
        endpoint=endpoint, start=since, columns=list(_LABEL_COLUMNS), quarantine=quarantine
    )
    label, reward = _numbers(read["label"]), _numbers(read["reward"])
    useful = np.isfinite(label) | np.isfinite(reward)
    if not useful.all():
        read = read.filter(pa.array(useful))
        label, reward = label[useful], reward[useful]
    count = read.num_rows
    rows = read["row"]
    rows = pc.cast(rows, pa.int64()) if not pa.types.is_null(rows.type) else pa.nulls(count, pa.int64())  # fmt: skip
    order = np.arange(count, dtype=np.int64)
    has_row = rows.is_valid().to_numpy(zero_copy_only=False) if rows.null_count else True
    table = pa.table(
        {
            "request_id": pc.cast(read["request_id"], pa.string()),
            "row": rows,
            "_k": pa.array(np.where(has_row, order + count, order)),
        }
    )
    return _Labels(table, label, reward)


def _latest_labels(
    con: duckdb.DuckDBPyConnection, labels: _Labels, count: int
) -> tuple[Floats, Floats]:
    """Each record's latest label and reward (NaN: none): DuckDB joins tables ``p`` and
    ``l`` on the request id (every matching pair, no aggregation; the row compared only
    when some label names one), then ``np.maximum.at`` keeps the largest ``_k`` per
    record — 3× faster than a GROUP BY in the join."""
    rows = labels.table["row"]
    condition = "hash(p.request_id) = hash(l.request_id)"
    if rows.null_count == 0:
        condition += " AND l.row = coalesce(p.row, 0)"
    elif rows.null_count < len(rows):
        condition += " AND (l.row IS NULL OR l.row = coalesce(p.row, 0))"
    # Joined on the ids' 64-bit hashes, then each pair's ids compared: exact, and ~30%
    # faster than DuckDB's join on the text itself.
    pairs = con.execute(
        f"""SELECT i, k FROM (SELECT p._i AS i, l._k AS k, p.request_id = l.request_id AS same
            FROM p JOIN l ON {condition}) WHERE same"""
    ).fetchnumpy()
    index, order = np.asarray(pairs["i"], np.int64), np.asarray(pairs["k"], np.int64)
    position = order % max(len(labels.label), 1)
    out = []
    for values in (labels.label, labels.reward):
        keep = np.isfinite(values[position])
        if not keep.any():
            out.append(np.full(count, math.nan))
            continue
        best = np.full(count, -1, np.int64)
        np.maximum.at(best, index[keep], order[keep])
        out.append(np.where(best >= 0, values[best % len(values)], math.nan))
    return out[0], out[1]


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


def _codes(con: duckdb.DuckDBPyConnection, arms: Sequence[ArmKey]) -> dict[str, Any]:
    """Per record, in log order: its arm's code, whether its own arm answered, whether it
    failed, and the 64-bit hashes of its request id and unit (null: flagged)."""
    live = [a.name for a in arms if not a.shadow]
    shadow = [a.name for a in arms if a.shadow]
    return con.execute(
        f"""SELECT (CASE WHEN {_SHADOW} THEN list_position($shadow, coalesce(arm, '')) + $live_n
                 ELSE list_position($live, {_ASSIGNED}) END - 1)::SMALLINT AS code,
              fallback_from IS NULL AS own, coalesce(status = 'error', false) AS error,
              hash(request_id) AS request_hash, request_id IS NULL AS no_request,
              hash(unit) AS unit_hash, unit IS NULL AS no_unit
            FROM p""",
        {"live": live or [""], "shadow": shadow or [""], "live_n": len(live)},
    ).fetchnumpy()


def _distinct(hashes: npt.NDArray[np.uint64]) -> int:
    """How many distinct values have these hashes (sorting beats a hash table here)."""
    if len(hashes) == 0:
        return 0
    ordered = np.sort(hashes)
    return 1 + int(np.count_nonzero(ordered[1:] != ordered[:-1]))


def _arm_counts(
    arms: Sequence[ArmKey],
    groups: tuple[Any, Counter[ArmKey], dict[ArmKey, str | None], dict[ArmKey, tuple[str, ...]]],
    codes: dict[str, Any],
    time_us: npt.NDArray[np.int64],
    srm_us: int | None,
) -> dict[ArmKey, ArmCounts]:
    _, records, roles, versions = groups
    code = np.asarray(codes["code"])
    has_request = ~np.asarray(codes["no_request"], np.bool_)
    has_unit = ~np.asarray(codes["no_unit"], np.bool_)
    request_hash = np.asarray(codes["request_hash"], np.uint64)
    unit_hash = np.asarray(codes["unit_hash"], np.uint64)
    counts = {}
    for i, key in enumerate(arms):
        mine = code == i
        units = _distinct(unit_hash[mine & has_unit])
        if srm_us is not None:
            units_since = _distinct(unit_hash[mine & has_unit & (time_us >= srm_us)])
        else:
            units_since = units
        counts[key] = ArmCounts(
            records=records[key],
            requests=_distinct(request_hash[mine & has_request]),
            units=units,
            srm_units=units_since,
            role=roles[key],
            model_versions=versions[key],
        )
    return counts


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
    ``extra_columns`` column holds no value in the range."""
    columns = list(dict.fromkeys([*COLUMNS, *extra_columns]))
    table = logs.predictions.read(
        endpoint=endpoint, start=start, end=end, columns=columns, quarantine=quarantine
    )
    if table.num_rows == 0:
        raise NotFoundError(
            f"endpoint {endpoint!r}: no prediction records in [{_when(start)}, {_when(end)}): "
            "expected the log to hold records of the experiment"
        )
    for name in extra_columns:
        if pa.types.is_null(table[name].type):
            _no_column(logs, endpoint, name, start, end)
    table = _typed(table)
    count = table.num_rows
    records = table.append_column("_i", pa.array(np.arange(count, dtype=np.int64)))
    srm_us = None if srm_start is None else _micros(srm_start)
    con = duckdb.connect()
    try:
        con.register("p", records)
        groups = _arm_groups(con)
        arms = groups[0]
        codes = _codes(con, arms)
        time_us = np.asarray(pc.cast(table["time"], pa.int64()).to_numpy(), np.int64)
        counts = _arm_counts(arms, groups, codes, time_us, srm_us)
        labels = _labels(logs, endpoint, pc.min(table["time"]).as_py(), quarantine)
        if len(labels.label):
            con.register("l", labels.table)
            label, reward = _latest_labels(con, labels, count)
        else:
            label, reward = np.full(count, math.nan), np.full(count, math.nan)
        yield ExperimentRows(
            arms=arms,
            counts=counts,
            code=np.asarray(codes["code"], np.int16),
            own=np.asarray(codes["own"], np.bool_),
            error=np.asarray(codes["error"], np.bool_),
            time_us=time_us,
            latency=_floats(table["latency_ms"]),
            output=_floats(table["output"]),
            label=label,
            reward=reward,
            propensity=_floats(table["propensity"]),
            table=table,
            con=con,
        )
    finally:
        con.close()


def _micros(when: datetime) -> int:
    value = ensure_utc(when)
    return int(value.timestamp()) * _MICROS + value.microsecond


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
