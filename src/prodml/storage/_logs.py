"""The prediction and label log: records appended from any thread, written off the request path.

:meth:`LogWriter.append` only checks and queues a record (no I/O, no Arrow); a background
thread groups the queue by partition, UTC date and UTC hour and writes one Parquet file per
group with :func:`~prodml.storage.write_table` (temp file, fsync, rename), so a reader never
sees a partial file; the date directory's change marker is touched just before the rename
and after it (``_log_format.CHANGED_MARKER``). :func:`~prodml.storage.read_log` reads the
files back.

>>> import tempfile
>>> from datetime import UTC, datetime
>>> from prodml.core import SystemClock
>>> tmp = tempfile.TemporaryDirectory()
>>> with LogWriter(Path(tmp.name), clock=SystemClock()) as writer:
...     writer.append({"time": datetime(2013, 1, 1, 5, 30, tzinfo=UTC), "endpoint": "delay", "y": 1})
True
>>> [p.parent.relative_to(tmp.name).as_posix() for p in Path(tmp.name).rglob("*.parquet")]
['endpoint=delay/date=2013-01-01/hour=05']
>>> writer.stats.written_rows, writer.append({"time": datetime(2013, 1, 1), "endpoint": "delay"})
(1, False)
>>> tmp.cleanup()
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import chain
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa

from prodml.core import Clock, ensure_utc
from prodml.core.errors import SchemaError, StateError, StorageError
from prodml.storage._log_block import LogBlock
from prodml.storage._log_format import (
    LOG_TIMESTAMP,
    check_partition,
    column_array,
    hour_dir,
    mark_changed,
    utf8_text,
)
from prodml.storage._tables import write_table

__all__ = ["LogSink", "LogStats", "LogWriter"]

_KNOWN_PARTITIONS_LIMIT = 1024  # names checked once and cached; past this, checked every time
_MIN_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 30.0
_MICROS_PER_HOUR = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

log = logging.getLogger("prodml.storage")


#: Where a group's rows go instead of a Parquet file under ``root``: called (on the
#: flusher's thread, or the one that flushes) with the partition, the start of the UTC
#: hour and the rows as an Arrow table; raising keeps the rows queued for a retry.
LogSink = Callable[[str, datetime, pa.Table], None]

#: What the queue holds: one record, or a block of them.
_Item = dict[str, Any] | LogBlock
#: Rows of one file: partition, the UTC hour they fall in, the record rows, their UTC
#: times, then the blocks (written after the record rows).
_Group = tuple[str, datetime, Sequence[dict[str, Any]], pa.Array, Sequence[LogBlock]]


def _rows_of(items: Sequence[_Item]) -> int:
    return sum(item.rows if isinstance(item, LogBlock) else 1 for item in items)


@dataclass(frozen=True, slots=True)
class LogStats:
    """Counters of a :class:`LogWriter`; ``queued`` is the current depth, including rows
    being written."""

    queued: int
    appended: int
    written_rows: int
    written_files: int
    dropped: int
    failed_flushes: int
    last_error: str | None


class LogWriter:
    """Append records from any thread; a background thread writes them to
    ``<root>/<partition_field>=<p>/date=<YYYY-MM-DD>/hour=<HH>/<time>-<uuid>.parquet``.

    A record is a flat mapping whose values are str, int, float, bool, None or datetime
    (naive means UTC); dict and list values are stored as JSON strings, and a column whose
    values mix types within one file is stored as strings. The flusher writes when
    ``max_batch_rows`` records are queued or ``max_wait_s`` has passed since the oldest
    queued one; a failed write keeps its rows queued for the next try (with back-off) and
    is counted in :attr:`stats`. At most ``max_queue`` rows are held in memory: beyond
    that, and after :meth:`close`, :meth:`append` drops the record and counts it. File
    names start with the writer's :class:`~prodml.core.Clock` time, so they sort by write
    time; a random suffix keeps them unique across processes. With a ``sink``, each
    group's table goes to it instead of a file (``root`` then only names the writer).

    The thread is a daemon: call :meth:`close` (or use the writer as a context manager, or
    register ``close`` with :mod:`atexit`) to write what is still queued at shutdown.
    """

    def __init__(
        self,
        root: Path,
        *,
        clock: Clock,
        max_batch_rows: int = 5000,
        max_wait_s: float = 1.0,
        max_queue: int = 100_000,
        time_field: str = "time",
        partition_field: str = "endpoint",
        sink: LogSink | None = None,
    ) -> None:
        if max_batch_rows < 1 or max_queue < 1 or not max_wait_s > 0:
            raise ValueError(
                f"LogWriter({root}): max_batch_rows and max_queue must be >= 1 and max_wait_s "
                f"> 0, got {max_batch_rows}, {max_queue}, {max_wait_s}"
            )
        if not time_field or not partition_field or time_field == partition_field:
            raise ValueError(
                f"LogWriter({root}): time_field and partition_field must be two different "
                f"non-empty names, got {time_field!r} and {partition_field!r}"
            )
        check_partition(partition_field, field="partition_field")
        self.root = Path(root)
        self.clock = clock
        self.max_batch_rows = max_batch_rows
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.time_field = time_field
        self.partition_field = partition_field
        self.sink = sink
        self._lock = threading.RLock()  # re-entrant: close() may run in a signal handler
        self._wake = threading.Condition(self._lock)
        self._write_lock = threading.Lock()  # one writer of files at a time
        self._queue: deque[_Item] = deque()
        self._queued = 0  # rows in the queue (a block holds many)
        self._inflight = 0  # rows taken off the queue and being written
        self._oldest = 0.0  # time.monotonic() when the oldest queued row arrived
        self._retry_at = 0.0  # no automatic write before this (back-off after a failure)
        self._failures = 0  # consecutive failed writes
        self._appended = self._dropped = 0
        self._written_rows = self._written_files = self._failed_flushes = 0
        self._last_error: str | None = None
        self._partitions: set[str] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"LogWriter({str(self.root)!r}, partition_field={self.partition_field!r})"

    def start(self) -> LogWriter:
        """Start the background flusher (once) and return the writer."""
        with self._lock:
            if self._closed:
                raise StateError(f"log writer {self.root}: closed; create a new LogWriter")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"prodml-log-writer:{self.root.name}", daemon=True
                )
                self._thread.start()
        return self

    def __enter__(self) -> LogWriter:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def append(self, record: Mapping[str, Any]) -> bool:
        """Queue a copy of ``record``; return False (and count a drop) when the queue is full
        or the writer is closed. Never blocks on I/O.

        Raises :class:`SchemaError` when the time field is missing or not a datetime, or the
        partition field is missing or not a path-safe name.
        """
        return self.extend([dict(record)]) == 1

    def extend(self, records: Sequence[dict[str, Any]]) -> int:
        """Queue ``records`` themselves (not copies: the caller hands them over and must
        not change them) under one lock; return how many were queued. Those that do not
        fit in the queue, or all after :meth:`close`, are dropped and counted. Checks
        every record first, as :meth:`append` does, and queues none if one is bad."""
        for record in records:
            self._check(record)
        with self._lock:
            taken = self._room(len(records))
            if taken:
                self._queue.extend(records if taken == len(records) else records[:taken])
                self._queued_more(taken)
        return taken

    def extend_block(self, block: LogBlock) -> int:
        """Queue the records of ``block`` (handed over, as with :meth:`extend`); return how
        many were queued. When the queue has room for only some, the first ones are
        queued and the rest dropped and counted.

        Raises :class:`SchemaError` when the time or partition field is missing, varies
        or is invalid (a time Arrow cannot store included), or a varying field does not
        hold ``rows`` values."""
        self._check_block(block)
        with self._lock:
            taken = self._room(block.rows)
            if taken:
                self._queue.append(block if taken == block.rows else block.head(taken))
                self._queued_more(taken)
        return taken

    def _room(self, rows: int) -> int:
        """How many of ``rows`` new rows fit (the caller holds the lock); the others are
        counted as dropped."""
        room = 0 if self._closed else self.max_queue - self._queued - self._inflight
        taken = max(0, min(room, rows))
        self._dropped += rows - taken
        return taken

    def _queued_more(self, rows: int) -> None:
        """Count ``rows`` just queued and wake the flusher when a write became due (the
        caller holds the lock)."""
        before = self._queued
        self._queued += rows
        self._appended += rows
        if before == 0:
            self._oldest = time.monotonic()
            self._wake.notify()
        elif before < self.max_batch_rows <= self._queued:
            self._wake.notify()

    def _check_block(self, block: LogBlock) -> None:
        fields, varying = block.fields, block.varying
        if isinstance(block.rows, bool) or not isinstance(block.rows, int) or block.rows < 1:
            raise SchemaError(f"log block: expected rows >= 1, got {block.rows!r}")
        for key in (self.time_field, self.partition_field):
            if key in varying:
                raise SchemaError(
                    f"log block field {key!r}: expected one value for the whole block, "
                    "not one per row"
                )
        self._check(fields)
        if not _converts(fields[self.time_field]):
            raise SchemaError(
                f"log block field {self.time_field!r}: {fields[self.time_field]!r} is not "
                "convertible to a UTC timestamp"
            )
        for key in varying:
            if key not in fields:
                raise SchemaError(f"log block: varying field {key!r} is missing from fields")
            values = fields[key]
            if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
                raise SchemaError(
                    f"log block field {key!r}: expected a sequence of {block.rows} values, "
                    f"got {type(values).__name__}"
                )
            if len(values) != block.rows:
                raise SchemaError(
                    f"log block field {key!r}: expected {block.rows} values (one per row), "
                    f"got {len(values)}"
                )

    def _check(self, record: Mapping[str, Any]) -> None:
        try:
            when = record[self.time_field]
            partition = record[self.partition_field]
        except KeyError as exc:
            raise SchemaError(
                f"log record: field {exc.args[0]!r} is missing; expected a datetime in "
                f"{self.time_field!r} and a partition name in {self.partition_field!r}"
            ) from None
        if not isinstance(when, datetime):
            raise SchemaError(
                f"log record field {self.time_field!r}: expected a datetime, "
                f"got {type(when).__name__}"
            )
        if partition.__class__ is not str or partition not in self._partitions:
            self._admit_partition(partition)

    def flush(self, timeout: float | None = None) -> int:
        """Write everything queued so far, in the calling thread; return the rows written.

        Waits up to ``timeout`` seconds (forever when None) for a write already under way
        in the background thread; returns 0 if it is still running then. A failed write
        keeps its rows queued and is reported in :attr:`stats`, not raised.
        """
        if timeout is None:
            acquired = self._write_lock.acquire()
        elif timeout <= 0:
            acquired = self._write_lock.acquire(blocking=False)
        else:
            acquired = self._write_lock.acquire(timeout=timeout)
        if not acquired:
            return 0
        try:
            return self._write_pending()
        finally:
            self._write_lock.release()

    def close(self, timeout: float = 10.0) -> None:
        """Refuse further appends, stop the flusher and write what is queued; idempotent.

        Safe from an :mod:`atexit` or signal handler: it never raises for a failed write
        and waits at most about ``timeout`` seconds. Rows that could not be written stay
        counted in ``stats.queued``.
        """
        deadline = time.monotonic() + timeout
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        self.flush(timeout=max(0.0, deadline - time.monotonic()))

    @property
    def stats(self) -> LogStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return LogStats(
                queued=self._queued + self._inflight,
                appended=self._appended,
                written_rows=self._written_rows,
                written_files=self._written_files,
                dropped=self._dropped,
                failed_flushes=self._failed_flushes,
                last_error=self._last_error,
            )

    def _admit_partition(self, value: object) -> None:
        name = check_partition(value, field=self.partition_field)
        if len(self._partitions) < _KNOWN_PARTITIONS_LIMIT:
            self._partitions.add(name)

    def _run(self) -> None:
        """The flusher: wait until a write is due (size, age or close), then write."""
        while True:
            with self._wake:
                while not self._closed:
                    delay = self._seconds_until_due()
                    if delay == 0.0:
                        break
                    self._wake.wait(delay)
                if self._closed:
                    return  # close() writes the rest in its own thread
            with self._write_lock:
                self._write_pending()

    def _seconds_until_due(self) -> float | None:
        """0.0 when a write is due, else how long to wait (None: until notified)."""
        depth = self._queued
        if depth == 0:
            return None
        now = time.monotonic()
        due = now if depth >= self.max_batch_rows else self._oldest + self.max_wait_s
        return max(0.0, max(due, self._retry_at) - now)

    def _write_pending(self) -> int:
        """Take the whole queue and write it, one file per group; the caller holds the
        write lock. Rows of groups that failed go back to the front of the queue."""
        with self._lock:
            batch, self._queue = self._queue, deque()
            self._inflight, self._queued = self._queued, 0
        if not batch:
            return 0
        written = files = 0
        unwritten: list[_Item] = []
        error: str | None = None
        try:
            groups = self._group(batch)
        except Exception:  # a datetime Arrow cannot convert: drop just those rows
            groups, unwritten, error = self._group_dropping_bad_times(batch)
        for partition, hour, rows, times, blocks in groups:
            if error is None:
                try:
                    self._write_group(partition, hour, rows, times, blocks)
                except Exception as exc:  # any failure keeps the rows; never kills the thread
                    error = f"{type(exc).__name__}: {exc}"
                else:
                    written += len(rows) + _rows_of(blocks)
                    files += 1
                    continue
            unwritten.extend(rows)
            unwritten.extend(blocks)
        with self._lock:
            self._inflight = 0
            self._written_rows += written
            self._written_files += files
            if unwritten:
                self._queue.extendleft(reversed(unwritten))
                self._queued += _rows_of(unwritten)
                self._oldest = time.monotonic()
            if error is None:
                self._failures, self._retry_at = 0, 0.0
            else:
                self._failures += 1
                self._failed_flushes += 1
                self._last_error = error
                backoff = max(self.max_wait_s, _MIN_BACKOFF_S) * 2 ** min(self._failures - 1, 10)
                self._retry_at = time.monotonic() + min(backoff, _MAX_BACKOFF_S)
        if error is not None:
            log.warning(
                "log writer %s: write failed, %d rows kept for retry: %s",
                self.root,
                _rows_of(unwritten),
                error,
            )
        return written

    def _group(self, batch: Sequence[_Item]) -> list[_Group]:
        """Split rows by (partition, UTC hour), at most max_batch_rows rows per group (a
        block is never split: one larger than that is a group of its own)."""
        rows = [item for item in batch if not isinstance(item, LogBlock)]
        buckets: dict[tuple[str, int], tuple[list[dict[str, Any]], pa.Array]] = {}
        if rows:
            times = pa.array(list(map(itemgetter(self.time_field), rows)), LOG_TIMESTAMP)
            hours = times.cast(pa.int64()).to_numpy() // _MICROS_PER_HOUR
            parts = list(map(itemgetter(self.partition_field), rows))
            if hours.min() == hours.max() and parts.count(parts[0]) == len(parts):
                buckets[parts[0], int(hours[0])] = (rows, times)  # the usual case: one group
            else:
                index: dict[tuple[str, int], list[int]] = {}
                for i, key in enumerate(zip(parts, hours.tolist(), strict=True)):
                    index.setdefault(key, []).append(i)
                for key, indices in index.items():
                    buckets[key] = ([rows[i] for i in indices], times.take(pa.array(indices)))
        blocks: dict[tuple[str, int], list[LogBlock]] = {}
        for item in batch:
            if isinstance(item, LogBlock):
                when = ensure_utc(item.fields[self.time_field])
                hour = (when - _EPOCH) // timedelta(hours=1)
                blocks.setdefault((item.fields[self.partition_field], hour), []).append(item)
        size = self.max_batch_rows
        groups: list[_Group] = []
        no_times = pa.array([], LOG_TIMESTAMP)
        for key in dict.fromkeys([*buckets, *blocks]):
            partition, hour = key
            begins = _EPOCH + timedelta(hours=hour)
            group_rows, group_times = buckets.get(key, ([], no_times))
            chunks: list[tuple[list[dict[str, Any]], pa.Array, list[LogBlock]]] = [
                (group_rows[i : i + size], group_times.slice(i, size), [])
                for i in range(0, len(group_rows), size)
            ]
            free = size - len(chunks[-1][0]) if chunks else 0
            for block in blocks.get(key, []):
                if block.rows > free:
                    chunks.append(([], no_times, []))
                    free = size
                chunks[-1][2].append(block)
                free -= block.rows
            groups.extend((partition, begins, *chunk) for chunk in chunks)
        return groups

    def _group_dropping_bad_times(
        self, batch: Sequence[_Item]
    ) -> tuple[list[_Group], list[Any], str | None]:
        """Drop (and count) rows whose time Arrow cannot convert, then group the rest
        (blocks were checked when queued)."""
        kept = [
            item for item in batch if isinstance(item, LogBlock) or _converts(item[self.time_field])
        ]
        lost = _rows_of(batch) - _rows_of(kept)
        message = f"{lost} rows dropped: {self.time_field!r} not convertible to a UTC timestamp"
        with self._lock:
            self._dropped += lost
            self._last_error = message
        log.warning("log writer %s: %s", self.root, message)
        try:
            return self._group(kept) if kept else [], [], None
        except Exception as exc:
            return [], kept, f"{type(exc).__name__}: {exc}"

    def _write_group(
        self,
        partition: str,
        hour: datetime,
        rows: Sequence[dict[str, Any]],
        times: pa.Array,
        blocks: Sequence[LogBlock] = (),
    ) -> None:
        """Write one file of the record rows then the blocks' rows; the columns are every
        key seen, missing values null."""
        values: dict[str, list[Any]] = {}
        if rows:
            values = self._transposed(rows)
        if blocks:
            times = pa.concat_arrays([times, *(self._block_times(block) for block in blocks)])
            done = len(rows)
            for block in blocks:
                for key in block.fields:
                    if key != self.time_field and key not in values:
                        values[key] = [None] * done
                for key, column in values.items():
                    column.extend(block.column(key))
                done += block.rows
        columns = {self.time_field: times}
        columns.update((utf8_text(str(key)), column_array(col)) for key, col in values.items())
        if self.sink is not None:
            self.sink(partition, hour, pa.table(columns))
            return
        stamp = self.clock.now().strftime("%Y%m%dT%H%M%S%fZ")
        directory = hour_dir(self.root, self.partition_field, partition, hour.date(), hour.hour)
        directory.mkdir(parents=True, exist_ok=True)
        changed = partial(mark_changed, directory.parent)
        target = directory / f"{stamp}-{uuid.uuid4().hex}.parquet"
        try:
            write_table(pa.table(columns), target, before_replace=changed)
            changed()
        except (OSError, StorageError) as exc:
            if not target.exists():
                raise
            # The file is in place (what failed came after its rename: the directory's
            # fsync, the change marker): its rows are written, and a retry would write
            # them twice.
            log.warning("log writer %s: %s written, then: %s", self.root, target, exc)

    def _transposed(self, rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
        """The rows' values by key (every key any row has but the time; missing values
        None), transposed in C when every row has the first row's keys — the usual case,
        found without reading every row's keys."""
        first = list(rows[0])
        if min(map(len, rows)) == max(map(len, rows)) == len(first):
            first.remove(self.time_field)
            try:
                if len(first) == 1:
                    return {first[0]: [row[first[0]] for row in rows]}
                if first:
                    getter = itemgetter(*first)
                    columns = map(list, zip(*map(getter, rows), strict=True))
                    return dict(zip(first, columns, strict=True))
                return {}
            except KeyError:  # as many keys, not the same ones
                pass
        keys = list(dict.fromkeys(chain.from_iterable(rows)))
        keys.remove(self.time_field)
        return {key: [row.get(key) for row in rows] for key in keys}

    def _block_times(self, block: LogBlock) -> pa.Array:
        """The block's time for each of its rows."""
        one = pa.array([block.fields[self.time_field]], LOG_TIMESTAMP)
        return one.take(pa.array(np.zeros(block.rows, dtype=np.int64)))


def _converts(value: datetime) -> bool:
    """Whether Arrow can store ``value`` as a UTC timestamp whose hour (a directory
    name) is a datetime: a UTC time before year 1 is not one.

    >>> from datetime import timezone
    >>> _converts(datetime(1, 1, 1, 5)), _converts(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))
    (True, False)
    """
    try:
        micros = pa.array([value], LOG_TIMESTAMP).cast(pa.int64())[0].as_py()
        _EPOCH + timedelta(hours=micros // _MICROS_PER_HOUR)
    except Exception:
        return False
    return True
