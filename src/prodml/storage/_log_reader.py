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

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyarrow.fs import LocalFileSystem

from prodml.core import ensure_utc
from prodml.core.errors import SchemaError, StorageError
from prodml.storage._atomic import fsync_dir
from prodml.storage._log_format import (
    DATE_KEY,
    HOUR_KEY,
    LOG_TIMESTAMP,
    check_partition,
    mark_changed,
    quarantine_root,
)

__all__ = ["LogFiles", "QuarantinedFile", "log_files", "quarantined_files", "read_log"]

_INT_FLOAT = frozenset({pa.int64(), pa.float64()})
_LOCAL = LocalFileSystem()
_NO_COLUMNS = pa.schema([])
_log = logging.getLogger("prodml.storage")


@dataclass(frozen=True)
class QuarantinedFile:
    """A log file that could not be read, moved from ``source`` to ``target`` (its
    quarantine, :func:`~prodml.storage._log_format.quarantine_root`) whole and unchanged."""

    source: Path
    target: Path
    reason: str


@dataclass(frozen=True)
class LogFiles:
    """The Parquet files of a log that can hold records of a time window, in log order
    (hour, then name: the order :func:`read_log` concatenates them in), each with its
    schema and row count, for readers that scan the files themselves (DuckDB's
    ``read_parquet``). :attr:`schema` is what :func:`read_log` would unify them to."""

    paths: tuple[Path, ...]
    schemas: tuple[pa.Schema, ...]
    rows: tuple[int, ...]

    @property
    def schema(self) -> pa.Schema:
        return _unified_schema(list(self.schemas))

    def types(self, name: str) -> set[pa.DataType]:
        """The types column ``name`` has in the files that hold it (null type excluded)."""
        return {s.field(name).type for s in self.schemas if name in s.names} - {pa.null()}


def log_files(
    root: Path,
    *,
    partition: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    partition_field: str = "endpoint",
    time_field: str = "time",
) -> LogFiles | None:
    """The files :func:`read_log` would read for the same arguments, with their footers'
    schemas and row counts; None when a footer cannot be read or a file's time column
    is not the log's timestamp type (:func:`read_log` then says which file, or
    quarantines it)."""
    if partition is not None:
        check_partition(partition, field="partition")
    low = None if start is None else ensure_utc(start)
    high = None if end is None else ensure_utc(end)
    files = sorted(_log_files(Path(root), partition_field, partition, low, high))
    schemas, rows = [], []
    try:
        listed = ds.dataset([str(p) for p in files], format="parquet", schema=_NO_COLUMNS)
        for fragment in listed.get_fragments():
            schemas.append(fragment.physical_schema)
            rows.append(fragment.metadata.num_rows)
    except (OSError, pa.ArrowException):
        return None
    if any(_foreign_time(schema, time_field) is not None for schema in schemas):
        return None
    return LogFiles(tuple(files), tuple(schemas), tuple(rows))


def read_log(
    root: Path,
    *,
    partition: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    columns: Sequence[str] | None = None,
    time_field: str = "time",
    partition_field: str = "endpoint",
    quarantine: list[QuarantinedFile] | None = None,
) -> pa.Table:
    """Records of the log under ``root`` with ``start <= time < end``, sorted by time.

    ``partition`` keeps one partition (an endpoint). Schemas of all files are unified:
    a column missing from a file is null there, a column stored as int in some files and
    float in others is float64, and any other type conflict is read as strings. A
    requested column found in no file is a null column. When no file can hold a match
    (a missing or empty ``root``, an empty window) the result is an empty table with just
    the time and partition columns, or the requested ones.

    An unreadable file (empty, not Parquet, truncated, a corrupt page, a column that
    cannot be read as the unified type, a time column that is not a UTC microsecond
    timestamp: naive, another zone or unit, text) raises :class:`StorageError` naming it; with a
    ``quarantine`` list it is moved to the log's quarantine instead, appended to the
    list, and the records of the other files are returned. A file that cannot be opened
    for a reason of the system (permissions, too many open files) always raises.
    """
    if partition is not None:
        check_partition(partition, field="partition")
    low = None if start is None else ensure_utc(start)
    high = None if end is None else ensure_utc(end)
    files = sorted(_log_files(Path(root), partition_field, partition, low, high))
    wanted = list(columns) if columns is not None else None
    parquet = ds.ParquetFileFormat()
    # An explicit schema: no file is opened here, so each one's footer is read below,
    # on its own.
    try:
        listed = ds.dataset([str(p) for p in files], format=parquet, schema=_NO_COLUMNS)
    except (OSError, pa.ArrowException) as exc:  # a file gone between listing and here
        raise StorageError(f"log {root}: listing {len(files)} Parquet files failed: {exc}") from exc
    fragments, schemas = [], []
    for fragment in listed.get_fragments():
        try:
            schema = fragment.physical_schema
        except (OSError, pa.ArrowException) as exc:
            _unreadable(Path(root), Path(fragment.path), exc, quarantine)
            continue
        foreign = _foreign_time(schema, time_field)
        if foreign is not None:
            _unreadable(Path(root), Path(fragment.path), foreign, quarantine)
            continue
        schemas.append(schema)
        fragments.append(fragment)
    condition = None
    if low is not None:
        condition = ds.field(time_field) >= pa.scalar(low, LOG_TIMESTAMP)
    if high is not None:
        upper = ds.field(time_field) < pa.scalar(high, LOG_TIMESTAMP)
        condition = upper if condition is None else condition & upper
    while fragments:
        schema = _unified_schema(schemas)
        if time_field not in schema.names:
            raise SchemaError(
                f"log {root}: no file has the time column {time_field!r}; columns: {schema.names}"
            )
        names = wanted if wanted is not None else schema.names
        read = [name for name in dict.fromkeys([*names, time_field]) if name in schema.names]
        try:
            dataset = ds.FileSystemDataset(fragments, schema, parquet, _LOCAL)
            table = dataset.to_table(columns=read, filter=condition)
            if not _in_time_order(table[time_field]):
                # stable, one column at a time: each unsorted column is released once its
                # sorted copy is made (this frame holds the only reference), so the peak
                # is the table and one column, not two tables as with Table.sort_by
                order = pc.sort_indices(table, sort_keys=[(time_field, "ascending")])
                kept, columns = table.schema, []
                for name in kept.names:
                    columns.append(table[name].take(order))
                    table = table.drop_columns([name])
                table = pa.Table.from_arrays(columns, schema=kept)
        except (OSError, pa.ArrowException) as exc:
            # Find the files that fail on their own; none: the failure is not a file's.
            bad = _failing(fragments, schema, read, condition)
            if not bad:
                raise StorageError(
                    f"log {root}: reading {len(fragments)} Parquet files failed: {exc}"
                ) from exc
            for index, error in reversed(bad):
                _unreadable(Path(root), Path(fragments[index].path), error, quarantine)
                del fragments[index], schemas[index]
            continue
        return pa.table(
            {
                name: table[name] if name in read else pa.nulls(table.num_rows)
                for name in dict.fromkeys(names)
            }
        )
    names = wanted if wanted is not None else [time_field, partition_field]
    return pa.table({name: _empty(name, time_field, partition_field) for name in names})


def _in_time_order(times: pa.ChunkedArray) -> bool:
    """Whether ``times`` (timestamps, no null) never decrease — the usual case, files
    being listed in hour and write order — so that sorting would only copy every column
    (~1 s at 10M records)."""
    if times.null_count or not pa.types.is_timestamp(times.type):
        return False
    values = times.cast(pa.int64()).to_numpy()
    return bool((values[1:] >= values[:-1]).all())


def _failing(
    fragments: list[ds.Fragment], schema: pa.Schema, columns: list[str], condition: Any
) -> list[tuple[int, Exception]]:
    """(index, error) of each fragment that cannot be read on its own as ``schema``."""
    out = []
    for index, fragment in enumerate(fragments):
        try:
            fragment.to_table(schema=schema, columns=columns, filter=condition)
        except (OSError, pa.ArrowException) as exc:
            out.append((index, exc))
    return out


def _unreadable(
    root: Path, path: Path, error: Exception, quarantine: list[QuarantinedFile] | None
) -> None:
    """Quarantine the file ``path`` that ``error`` says is unreadable, or raise."""
    if isinstance(error, FileNotFoundError):
        return  # moved away meanwhile (another reader's quarantine): not ours to report
    reason = f"{type(error).__name__}: {error}"
    if quarantine is None or not _is_file_fault(error):
        raise StorageError(f"log {root}: Parquet file {path} cannot be read: {reason}") from error
    target = quarantine_root(root) / path.relative_to(root)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        number = 1
        while target.exists():  # never replace a file quarantined before
            target = target.with_name(f"{path.stem}.{number}{path.suffix}")
            number += 1
        days = (path.parent.parent, target.parent.parent)  # each hour's date directory
        for day in days:
            mark_changed(day)
        os.replace(path, target)  # same filesystem: atomic, the bytes are never copied
        for day in days:
            mark_changed(day)
        fsync_dir(target.parent)
        fsync_dir(path.parent)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(
            f"log {root}: Parquet file {path} cannot be read ({reason}) and moving it to "
            f"{target.parent} failed: {exc}"
        ) from exc
    _log.warning("log %s: unreadable Parquet file %s moved to %s: %s", root, path, target, reason)
    quarantine.append(QuarantinedFile(path, target, reason))


def _foreign_time(schema: pa.Schema, time_field: str) -> SchemaError | None:
    """Why a file whose footer has ``schema`` is not a file of the log (None: it may be
    one): its time column is not the UTC microsecond timestamp every writer stores. Read
    with the others, it would turn the whole log's time column into text."""
    index = schema.get_field_index(time_field)
    if index < 0:
        return None
    kind = schema.field(index).type
    if kind == LOG_TIMESTAMP or kind == pa.null():
        return None
    return SchemaError(f"column {time_field!r} is {kind}; expected {LOG_TIMESTAMP}")


def _is_file_fault(error: Exception) -> bool:
    """Whether ``error`` is about the file's bytes: Arrow's own errors (but running out
    of memory), I/O errors Arrow raises without an OS error number (such as a corrupt
    compressed page), and a time column of another type (:func:`_foreign_time`); an
    ``OSError`` with an ``errno`` is the system's."""
    if isinstance(error, SchemaError):
        return True
    if isinstance(error, pa.ArrowMemoryError | MemoryError):
        return False
    if isinstance(error, pa.ArrowException) and not isinstance(error, OSError):
        return True
    return isinstance(error, OSError) and error.errno is None


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


_MAGIC = b"PAR1"


def parquet_damage(data_head: bytes, data_tail: bytes, size: int) -> str | None:
    """Why bytes cannot be a whole Parquet file (None: their frame is intact): the magic
    ``PAR1`` at both ends and a footer length that fits. ``data_head`` is the first 4
    bytes, ``data_tail`` the last 8, ``size`` the length.

    >>> parquet_damage(b"PAR1", (20).to_bytes(4, "little") + b"PAR1", 100) is None
    True
    >>> parquet_damage(b"PAR1", (200).to_bytes(4, "little") + b"PAR1", 100)
    'its footer (200 bytes) does not fit in its 100 bytes'
    """
    if size < 12:
        return f"{size} bytes: shorter than any Parquet file (12)"
    if data_head != _MAGIC or data_tail[4:] != _MAGIC:
        return "no Parquet magic bytes (PAR1) at both ends: truncated or not Parquet"
    footer = int.from_bytes(data_tail[:4], "little")
    if footer + 12 > size:
        return f"its footer ({footer} bytes) does not fit in its {size} bytes"
    return None


def damaged_files(root: Path) -> list[tuple[Path, str]]:
    """Every Parquet file of the log under ``root`` whose frame is not intact (see
    :func:`parquet_damage`), with the reason: 12 bytes read per file with bare system
    calls (a log holds a file per writer flush and hour: tens of thousands)."""
    found: list[tuple[Path, str]] = []
    pending = [str(root)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue  # a writer's file in flight
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            elif entry.name.endswith(".parquet"):
                reason = _frame_damage(entry.path)
                if reason is not None:
                    found.append((Path(entry.path), reason))
    return sorted(found)


def _frame_damage(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # compacted or quarantined meanwhile
        return None
    except OSError as exc:
        return f"cannot be opened: {exc}"
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 4, 0)
        tail = os.pread(fd, 8, max(size - 8, 0))
    except OSError as exc:
        return f"cannot be read: {exc}"
    finally:
        os.close(fd)
    return parquet_damage(head, tail, size)


def quarantined_files(
    root: Path,
    *,
    partition: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    partition_field: str = "endpoint",
) -> list[Path]:
    """The files of the log under ``root`` moved to its quarantine whose hour overlaps
    ``[start, end)`` (of one ``partition``), in path order."""
    low = None if start is None else ensure_utc(start)
    high = None if end is None else ensure_utc(end)
    return sorted(_log_files(quarantine_root(Path(root)), partition_field, partition, low, high))


def newest_hour(root: Path, partition_field: str, partition: str) -> datetime | None:
    """The start of the newest hour directory of ``partition`` holding a Parquet file,
    found from the directory names alone (newest first: no file is opened)."""
    check_partition(partition, field="partition")
    part_dir = Path(root) / f"{partition_field}={partition}"
    if not part_dir.is_dir():
        return None
    days = [(d, day) for d in _subdirs(part_dir, f"{DATE_KEY}=")
            if (day := _parse_start(d.name, "%Y-%m-%d")) is not None]  # fmt: skip
    for date_dir, day in sorted(days, key=lambda item: item[1], reverse=True):
        hours = [(h, hour) for h in _subdirs(date_dir, f"{HOUR_KEY}=")
                 if (hour := _parse_start(h.name, "%H")) is not None]  # fmt: skip
        for hour_dir, hour in sorted(hours, key=lambda item: item[1], reverse=True):
            if any(not p.name.startswith(".") for p in hour_dir.glob("*.parquet")):
                return day + timedelta(hours=hour.hour)
    return None


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
