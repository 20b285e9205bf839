"""Where an experiment's records come from: two DuckDB relations, ``p`` (prediction
records) and ``l`` (labels and rewards), that :mod:`~prodml.rollout._analysis_data`
queries the same way whichever source backs them.

* :func:`scan_sources`: views over the log's Parquet files themselves
  (``read_parquet``), when the store keeps local files whose columns have the record
  types. DuckDB then reads only what each query needs, in parallel, and never
  materialises the text columns (ids, units, arms) as Arrow: at 10M records this
  halves the analysis.
* :func:`arrow_sources`: the store's :meth:`~prodml.storage.LogStore.read` (type drift
  settled, unreadable files quarantined), registered as Arrow tables — for any other
  store, logs whose types drifted, and as the fallback when a scan fails.

Both give every record a key ``_i`` and every label a priority ``(has_row, t, pos)``:
the label that answers a record is the one with the largest, a row's own label after
its request's, then the latest in log order (:func:`~prodml.storage.read_log` sorts by
time, keeping file order on ties; a scan has the time and the file position, an Arrow
read is already in that order). A scanned record's key is its file's index in the
listing shifted left 32 bits plus its row in the file (:meth:`Sources.positions` maps
keys to positions in the records query).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from prodml.core import ensure_utc
from prodml.core.errors import TimestampError
from prodml.monitoring._records import label_values
from prodml.storage import PREDICTION_SCHEMA, LogFiles, LogStores, QuarantinedFile
from prodml.storage._log_format import LOG_TIMESTAMP

__all__ = ["COLUMNS", "LABEL_COLUMNS", "Sources", "arrow_sources", "micros", "scan_sources"]

#: The prediction-record columns the analysis reads.
COLUMNS = (
    "time", "request_id", "row", "arm", "role", "model_version", "unit", "status",
    "shadow", "shadow_of", "fallback_from", "latency_ms", "propensity", "output",
)  # fmt: skip
LABEL_COLUMNS = ("time", "request_id", "row", "label", "reward")
_NUMERIC = ("row", "latency_ms", "propensity", "output")
_TEXT = frozenset({pa.string(), pa.large_string()})
_INTEGERS = frozenset({pa.int8(), pa.int16(), pa.int32(), pa.int64(),
                       pa.uint8(), pa.uint16(), pa.uint32()})  # fmt: skip
_NUMBERS = _INTEGERS | {pa.float32(), pa.float64()}
#: Per column read by a scan: the Parquet types it may have, and its SQL type.
_SCAN_TYPES: dict[str, tuple[frozenset[pa.DataType], str]] = {
    "time": (frozenset({LOG_TIMESTAMP}), "TIMESTAMPTZ"),
    "request_id": (_TEXT, "VARCHAR"),
    "row": (_INTEGERS, "BIGINT"),
    "arm": (_TEXT, "VARCHAR"),
    "role": (_TEXT, "VARCHAR"),
    "model_version": (_TEXT, "VARCHAR"),
    "unit": (_TEXT, "VARCHAR"),
    "status": (_TEXT, "VARCHAR"),
    "shadow": (frozenset({pa.bool_()}), "BOOLEAN"),
    "shadow_of": (_TEXT, "VARCHAR"),
    "fallback_from": (_TEXT, "VARCHAR"),
    "latency_ms": (_NUMBERS, "DOUBLE"),
    "propensity": (_NUMBERS, "DOUBLE"),
    "output": (_NUMBERS, "DOUBLE"),
    "label": (_NUMBERS | {pa.bool_()}, "DOUBLE"),
    "reward": (_NUMBERS, "DOUBLE"),
}
_FILE_BITS = 32
_MICROS = 1_000_000


@dataclass(frozen=True)
class Sources:
    """Relations ``p`` and ``l`` registered on ``con`` (``labels``: whether ``l``
    exists), and how to map a record key to a position: ``offsets[key >> 32] +
    (key & 0xFFFFFFFF)`` numbers every record of the listing (``size`` in all; 0: the
    store holds no record in the range). ``empty`` names the extra columns asked for
    that hold no value anywhere."""

    scanned: bool
    labels: bool
    offsets: npt.NDArray[np.int64]
    size: int
    empty: tuple[str, ...] = ()

    def global_ids(self, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        ids: npt.NDArray[np.int64] = self.offsets[keys >> _FILE_BITS] + (
            keys & ((1 << _FILE_BITS) - 1)
        )
        return ids


def micros(when: datetime) -> int:
    """``when`` as microseconds since the epoch (UTC)."""
    value = ensure_utc(when)
    return int(value.timestamp()) * _MICROS + value.microsecond


# -- scanning the Parquet files -------------------------------------------------------------


def _scannable(files: LogFiles, columns: Sequence[str], extra: Sequence[str]) -> bool:
    """Whether DuckDB can read ``columns`` of every file as their record types (and each
    of the ``extra`` columns has one type), as :func:`read_log` would give them."""
    if not files.paths or len(files.paths) >= 1 << 31:
        return False
    if any("time" not in schema.names for schema in files.schemas):
        return False
    for name in columns:
        allowed, _ = _SCAN_TYPES[name]
        if not files.types(name) <= allowed:
            return False
    return all(len(files.types(name)) <= 1 for name in extra)


def _select_list(files: LogFiles, columns: Sequence[str], extra: Sequence[str]) -> str:
    names = set(files.schema.names)
    parts = ["(file_index::BIGINT << 32) | file_row_number AS _i"]
    for name in columns:
        kind = _SCAN_TYPES[name][1]
        source = _quoted(name) if name in names and files.types(name) else "NULL"
        parts.append(f"CAST({source} AS {kind}) AS {_quoted(name)}")
    parts.extend(_quoted(name) for name in extra)
    return ", ".join(parts)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _paths(files: LogFiles) -> str:
    listed = ", ".join("'" + str(path).replace("'", "''") + "'" for path in files.paths)
    return f"read_parquet([{listed}], union_by_name = true, file_row_number = true)"


def _window(start: datetime | None, end: datetime | None) -> str:
    conditions = ["time IS NOT NULL"]
    if start is not None:
        conditions.append(f"epoch_us(time) >= {micros(start)}")
    if end is not None:
        conditions.append(f"epoch_us(time) < {micros(end)}")
    return " AND ".join(conditions)


def scan_sources(
    con: duckdb.DuckDBPyConnection,
    logs: LogStores,
    endpoint: str,
    *,
    start: datetime | None,
    end: datetime | None,
    extra_columns: Sequence[str],
) -> Sources | None:
    """Views ``p`` and ``l`` over the logs' Parquet files (labels from the earliest
    record's hour on), or None when a log keeps no local files or a column's type is
    not its record type (then :func:`arrow_sources`)."""
    predictions = logs.predictions.files(endpoint=endpoint, start=start, end=end)
    if predictions is None or not _scannable(predictions, COLUMNS, extra_columns):
        return None
    extra = [name for name in extra_columns if name not in COLUMNS]
    con.execute(
        f"CREATE VIEW p AS SELECT {_select_list(predictions, COLUMNS, extra)} "
        f"FROM {_paths(predictions)} WHERE {_window(start, end)}"
    )
    since = con.execute("SELECT min(time) FROM p").fetchall()[0][0]
    labels = logs.labels.files(endpoint=endpoint, start=since)
    if labels is None or (labels.paths and not _scannable(labels, LABEL_COLUMNS, ())):
        return None
    if labels.paths:
        con.execute(
            f"""CREATE VIEW l AS SELECT request_id, row, label, reward, row IS NOT NULL AS
                has_row, epoch_us(time) AS t, _i AS pos FROM (SELECT
                {_select_list(labels, LABEL_COLUMNS, ())} FROM {_paths(labels)}
                WHERE {_window(since, None)}) WHERE isfinite(label) OR isfinite(reward)"""
        )
    rows = np.asarray(predictions.rows, np.int64)
    offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
    empty = tuple(name for name in extra_columns if not predictions.types(name))
    return Sources(True, bool(labels.paths), offsets, int(rows.sum()), empty)


# -- reading through the store ----------------------------------------------------------------


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


def _numbers(column: pa.ChunkedArray) -> pa.Array:
    """A label-log column as floats (see ``label_values``; an untyped column is NaN)."""
    if pa.types.is_null(column.type):
        return pa.array(np.full(len(column), math.nan))
    return label_values(column)


def arrow_sources(
    con: duckdb.DuckDBPyConnection,
    logs: LogStores,
    endpoint: str,
    *,
    start: datetime | None,
    end: datetime | None,
    extra_columns: Sequence[str],
    quarantine: list[QuarantinedFile] | None,
) -> Sources:
    """Tables ``p`` and ``l`` read through the store."""
    columns = list(dict.fromkeys([*COLUMNS, *extra_columns]))
    table = logs.predictions.read(
        endpoint=endpoint, start=start, end=end, columns=columns, quarantine=quarantine
    )
    count = table.num_rows
    if count == 0:
        return Sources(False, False, np.zeros(1, np.int64), 0)
    if not pa.types.is_timestamp(table["time"].type) or table["time"].type.tz is None:
        # files that disagree on the time's type (naive in one, UTC in another) read as text
        raise TimestampError(
            f"endpoint {endpoint!r}: the prediction log's column 'time' reads as "
            f"{table['time'].type}: expected UTC timestamps in every file of the range"
        )
    table = _typed(table)
    con.register("p", table.append_column("_i", pa.array(np.arange(count, dtype=np.int64))))
    read = logs.labels.read(
        endpoint=endpoint,
        start=pc.min(table["time"]).as_py(),
        columns=list(LABEL_COLUMNS),
        quarantine=quarantine,
    )
    label, reward = _numbers(read["label"]), _numbers(read["reward"])
    useful = pc.or_(pc.is_finite(label), pc.is_finite(reward))
    rows = read["row"]
    if pa.types.is_null(rows.type):
        rows = pa.nulls(read.num_rows, pa.int64())
    labels = pa.table(
        {
            "request_id": pc.cast(read["request_id"], pa.string()),
            "row": pc.cast(rows, pa.int64()),
            "label": label,
            "reward": reward,
            "has_row": pc.is_valid(rows),
            "t": pa.array(np.zeros(read.num_rows, np.int64)),
            "pos": pa.array(np.arange(read.num_rows, dtype=np.int64)),
        }
    ).filter(useful)
    if labels.num_rows:
        con.register("l", labels)
    empty = tuple(n for n in extra_columns if pa.types.is_null(table[n].type))
    return Sources(False, labels.num_rows > 0, np.zeros(1, np.int64), count, empty)
