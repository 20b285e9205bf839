"""Read the prediction or label log written by :class:`~prodml.storage.LogWriter`.

Uses :mod:`pyarrow.dataset` rather than DuckDB: the result is Arrow with the exact types
that were written (UTC microsecond timestamps) and no SQL type round trip; an explicit
unified schema lets us settle type drift between files our way (int with float → float,
any other conflict → string) where ``union_by_name`` would fail or pick its own rule; the
time window is pushed down to row-group statistics and files are scanned in parallel.
Directories are pruned by their ``date=``/``hour=`` names before any file is opened.

>>> import tempfile
>>> from datetime import UTC, datetime
>>> from prodml.core import SystemClock
>>> from prodml.storage._logs import LogWriter
>>> tmp = tempfile.TemporaryDirectory()
>>> with LogWriter(Path(tmp.name), clock=SystemClock()) as writer:
...     for hour, y in [(7, 1), (5, 0.5), (6, "odd")]:
...         _ = writer.append({"time": datetime(2013, 1, 1, hour, tzinfo=UTC), "endpoint": "e", "y": y})
>>> table = read_log(Path(tmp.name), start=datetime(2013, 1, 1, 6))
>>> [t.hour for t in table["time"].to_pylist()], table["y"].to_pylist()
([6, 7], ['odd', '1'])
>>> read_log(Path(tmp.name) / "missing").column_names
['time', 'endpoint']
>>> tmp.cleanup()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow.fs import LocalFileSystem

from prodml.core import ensure_utc
from prodml.core.errors import SchemaError, StorageError
from prodml.storage._log_format import DATE_KEY, HOUR_KEY, LOG_TIMESTAMP, check_partition

__all__ = ["read_log"]

_INT_FLOAT = frozenset({pa.int64(), pa.float64()})


def read_log(
    root: Path,
    *,
    partition: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    columns: Sequence[str] | None = None,
    time_field: str = "time",
    partition_field: str = "endpoint",
) -> pa.Table:
    """Records of the log under ``root`` with ``start <= time < end``, sorted by time.

    ``partition`` keeps one partition (an endpoint). Schemas of all files are unified:
    a column missing from a file is null there, a column stored as int in some files and
    float in others is float64, and any other type conflict is read as strings. A
    requested column found in no file is a null column. When no file can hold a match
    (a missing or empty ``root``, an empty window) the result is an empty table with just
    the time and partition columns, or the requested ones.
    """
    if partition is not None:
        check_partition(partition, field="partition")
    low = None if start is None else ensure_utc(start)
    high = None if end is None else ensure_utc(end)
    files = sorted(_log_files(Path(root), partition_field, partition, low, high))
    wanted = list(columns) if columns is not None else None
    if not files:
        names = wanted if wanted is not None else [time_field, partition_field]
        return pa.table({name: _empty(name, time_field, partition_field) for name in names})
    parquet = ds.ParquetFileFormat()
    try:
        fragments = list(ds.dataset([str(path) for path in files], format=parquet).get_fragments())
        schema = _unified_schema([fragment.physical_schema for fragment in fragments])
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"log {root}: reading {len(files)} Parquet files failed: {exc}") from exc
    if time_field not in schema.names:
        raise SchemaError(
            f"log {root}: no file has the time column {time_field!r}; columns: {schema.names}"
        )
    names = wanted if wanted is not None else schema.names
    read = [name for name in dict.fromkeys([*names, time_field]) if name in schema.names]
    condition = None
    if low is not None:
        condition = ds.field(time_field) >= pa.scalar(low, LOG_TIMESTAMP)
    if high is not None:
        upper = ds.field(time_field) < pa.scalar(high, LOG_TIMESTAMP)
        condition = upper if condition is None else condition & upper
    try:
        dataset = ds.FileSystemDataset(fragments, schema, parquet, LocalFileSystem())
        table = dataset.to_table(columns=read, filter=condition).sort_by(time_field)
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"log {root}: reading {len(files)} Parquet files failed: {exc}") from exc
    return pa.table(
        {
            name: table[name] if name in read else pa.nulls(table.num_rows)
            for name in dict.fromkeys(names)
        }
    )


def _empty(name: str, time_field: str, partition_field: str) -> pa.Array:
    if name == time_field:
        return pa.array([], LOG_TIMESTAMP)
    return pa.array([], pa.string() if name == partition_field else pa.null())


def _log_files(
    root: Path,
    partition_field: str,
    partition: str | None,
    start: datetime | None,
    end: datetime | None,
) -> Iterator[Path]:
    """Parquet files under the partition, date and hour directories that can hold
    records of ``[start, end)``; temp and stray files are skipped."""
    if not root.is_dir():
        return
    prefix = f"{partition_field}="
    for part_dir in _subdirs(root, prefix):
        if partition is not None and part_dir.name != prefix + partition:
            continue
        for date_dir in _subdirs(part_dir, f"{DATE_KEY}="):
            day = _parse_start(date_dir.name, "%Y-%m-%d")
            if day is None or not _overlaps(day, timedelta(days=1), start, end):
                continue
            for hour_dir in _subdirs(date_dir, f"{HOUR_KEY}="):
                hour = _parse_start(hour_dir.name, "%H")
                if hour is None:
                    continue
                begins = day + timedelta(hours=hour.hour)
                if _overlaps(begins, timedelta(hours=1), start, end):
                    yield from (
                        path
                        for path in hour_dir.glob("*.parquet")
                        if not path.name.startswith(".") and path.is_file()
                    )


def _subdirs(directory: Path, prefix: str) -> Iterator[Path]:
    return (p for p in directory.iterdir() if p.name.startswith(prefix) and p.is_dir())


def _parse_start(name: str, pattern: str) -> datetime | None:
    """The datetime named by ``key=value`` (UTC), or None for a stray directory name."""
    try:
        return datetime.strptime(name.partition("=")[2], pattern).replace(tzinfo=UTC)
    except ValueError:
        return None


def _overlaps(
    begins: datetime, length: timedelta, start: datetime | None, end: datetime | None
) -> bool:
    return (end is None or begins < end) and (start is None or begins + length > start)


def _unified_schema(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for all files: first-seen column order; per column the common type,
    float64 for int64 with float64, string for any other conflict; null columns yield."""
    types: dict[str, set[pa.DataType]] = {}
    for schema in schemas:
        for field in schema:
            types.setdefault(field.name, set()).add(field.type)
    fields = []
    for name, seen in types.items():
        kinds = {kind for kind in seen if kind != pa.null()}
        if not kinds:
            kind = pa.null()
        elif len(kinds) == 1:
            kind = kinds.pop()
        else:
            kind = pa.float64() if kinds <= _INT_FLOAT else pa.string()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)
