"""The prediction and label log: records appended from any thread, written off the request path.

:meth:`LogWriter.append` only checks and queues a record (no I/O, no Arrow); a background
thread groups the queue by partition, UTC date and UTC hour and writes one Parquet file per
group with :func:`~prodml.storage.write_table` (temp file, fsync, rename), so a reader never
sees a partial file. :func:`~prodml.storage.read_log` reads the files back.

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
import numbers
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import chain
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from prodml.core import Clock, ensure_utc
from prodml.core.errors import SchemaError, StateError
from prodml.storage._tables import write_table

__all__ = [
    "DATE_KEY",
    "HOUR_KEY",
    "LABELS_DIR",
    "LOG_TIMESTAMP",
    "PREDICTIONS_DIR",
    "LogStats",
    "LogWriter",
    "check_partition",
    "column_array",
    "hour_dir",
]

#: Directory keys below a partition: ``<partition_field>=<name>/date=<YYYY-MM-DD>/hour=<HH>``.
DATE_KEY = "date"
HOUR_KEY = "hour"
#: Where a project keeps its prediction and label logs, under its state directory.
PREDICTIONS_DIR = Path("logs") / "predictions"
LABELS_DIR = Path("logs") / "labels"
#: The Arrow type of every datetime column in the log.
LOG_TIMESTAMP = pa.timestamp("us", tz="UTC")

_PARTITION_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_KNOWN_PARTITIONS_LIMIT = 1024  # names checked once and cached; past this, checked every time
_MIN_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 30.0
_MICROS_PER_HOUR = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Rows of one file: partition, the UTC hour they fall in, the rows, their UTC times.
_Group = tuple[str, datetime, Sequence[dict[str, Any]], pa.Array]
_NONE = frozenset({type(None)})
_PLAIN = frozenset({str, bool, int, float, dict, list, tuple})
_ARROW_TYPES: dict[type, pa.DataType] = {
    str: pa.string(),
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
}
_JSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_NAIVE_UTC
    | orjson.OPT_SERIALIZE_NUMPY
)

log = logging.getLogger("prodml.storage")


def check_partition(value: object, *, field: str = "endpoint") -> str:
    """Return ``value`` if it is a path-safe partition name, else raise :class:`SchemaError`.

    >>> check_partition("flight_delay-v2.eu")
    'flight_delay-v2.eu'
    """
    if not isinstance(value, str) or not _PARTITION_NAME.fullmatch(value):
        raise SchemaError(
            f"log record field {field!r}: expected a partition name of 1-128 letters, digits, "
            f"'_', '-' or '.' (not starting with '.'), got {value!r:.80}"
        )
    return value


def hour_dir(root: Path, field: str, partition: str, day: date, hour: int) -> Path:
    """The directory holding one partition's records of one UTC hour."""
    return (
        root / f"{field}={partition}" / f"{DATE_KEY}={day.isoformat()}" / f"{HOUR_KEY}={hour:02d}"
    )


def column_array(values: Sequence[Any]) -> pa.Array:
    """One column of a log file; never fails because of an odd value.

    A single kind of value keeps its type (ints and floats together become float64;
    datetimes become UTC timestamps); dicts, lists and mixed kinds become strings, with
    non-strings JSON-encoded (sorted keys) and datetimes written like
    ``2013-01-01 05:00:00.000000Z`` (as Arrow casts timestamps to strings).

    >>> column_array([1, None, 2.5]).type, column_array([1, "a", {"b": [True]}]).to_pylist()
    (DataType(double), ['1', 'a', '{"b":[true]}'])
    """
    kinds = set(map(type, values)) - _NONE
    if not all(kind in _PLAIN or issubclass(kind, datetime) for kind in kinds):
        values = [_plain(value) for value in values]
        kinds = set(map(type, values)) - _NONE
    if not kinds:
        return pa.nulls(len(values))
    if all(issubclass(kind, datetime) for kind in kinds):
        return pa.array([None if v is None else ensure_utc(v) for v in values], LOG_TIMESTAMP)
    arrow_type = pa.float64() if kinds == {int, float} else None
    if len(kinds) == 1:
        arrow_type = _ARROW_TYPES.get(kinds.pop())
    if arrow_type is not None:
        try:
            return pa.array(values, arrow_type)
        except (pa.ArrowException, OverflowError):
            pass  # an int beyond int64: stored as text below
    return pa.array([None if v is None else _text(v) for v in values], pa.string())


def _plain(value: Any) -> Any:
    """A plain Python value for a NumPy scalar, an enum member or another odd type."""
    if value is None or type(value) in _PLAIN or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, datetime):  # as Arrow casts a timestamp to string, so that files agree
        return ensure_utc(value).strftime("%Y-%m-%d %H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    try:
        return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return str(value)


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
    time; a random suffix keeps them unique across processes.

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
        self._lock = threading.RLock()  # re-entrant: close() may run in a signal handler
        self._wake = threading.Condition(self._lock)
        self._write_lock = threading.Lock()  # one writer of files at a time
        self._queue: deque[dict[str, Any]] = deque()
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
            room = 0 if self._closed else self.max_queue - len(self._queue) - self._inflight
            taken = max(0, min(room, len(records)))
            self._dropped += len(records) - taken
            if not taken:
                return 0
            before = len(self._queue)
            self._queue.extend(records if taken == len(records) else records[:taken])
            self._appended += taken
            depth = before + taken
            if before == 0:
                self._oldest = time.monotonic()
                self._wake.notify()
            elif before < self.max_batch_rows <= depth:
                self._wake.notify()
        return taken

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
                queued=len(self._queue) + self._inflight,
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
        depth = len(self._queue)
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
            self._inflight = len(batch)
        if not batch:
            return 0
        written = files = 0
        unwritten: list[dict[str, Any]] = []
        error: str | None = None
        try:
            groups = self._group(batch)
        except Exception:  # a datetime Arrow cannot convert: drop just those rows
            groups, unwritten, error = self._group_dropping_bad_times(batch)
        for partition, hour, rows, times in groups:
            if error is None:
                try:
                    self._write_group(partition, hour, rows, times)
                except Exception as exc:  # any failure keeps the rows; never kills the thread
                    error = f"{type(exc).__name__}: {exc}"
                else:
                    written += len(rows)
                    files += 1
                    continue
            unwritten.extend(rows)
        with self._lock:
            self._inflight = 0
            self._written_rows += written
            self._written_files += files
            if unwritten:
                self._queue.extendleft(reversed(unwritten))
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
                len(unwritten),
                error,
            )
        return written

    def _group(self, batch: Sequence[dict[str, Any]]) -> list[_Group]:
        """Split rows by (partition, UTC hour), at most max_batch_rows rows per group."""
        rows = list(batch)
        times = pa.array(list(map(itemgetter(self.time_field), rows)), LOG_TIMESTAMP)
        hours = times.cast(pa.int64()).to_numpy() // _MICROS_PER_HOUR
        parts = list(map(itemgetter(self.partition_field), rows))
        buckets: dict[tuple[str, int], tuple[list[dict[str, Any]], pa.Array]] = {}
        if hours.min() == hours.max() and parts.count(parts[0]) == len(parts):
            buckets[parts[0], int(hours[0])] = (rows, times)  # the usual case: one group
        else:
            index: dict[tuple[str, int], list[int]] = {}
            for i, key in enumerate(zip(parts, hours.tolist(), strict=True)):
                index.setdefault(key, []).append(i)
            for key, indices in index.items():
                buckets[key] = ([rows[i] for i in indices], times.take(pa.array(indices)))
        size = self.max_batch_rows
        groups: list[_Group] = []
        for (partition, hour), (group_rows, group_times) in buckets.items():
            begins = _EPOCH + timedelta(hours=hour)
            groups.extend(
                (partition, begins, group_rows[i : i + size], group_times.slice(i, size))
                for i in range(0, len(group_rows), size)
            )
        return groups

    def _group_dropping_bad_times(
        self, batch: Sequence[dict[str, Any]]
    ) -> tuple[list[_Group], list[Any], str | None]:
        """Drop (and count) rows whose time Arrow cannot convert, then group the rest."""
        kept = [row for row in batch if _converts(row[self.time_field])]
        lost = len(batch) - len(kept)
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
        self, partition: str, hour: datetime, rows: Sequence[dict[str, Any]], times: pa.Array
    ) -> None:
        """Write one file; the columns are every key seen, missing values null."""
        keys = list(dict.fromkeys(chain.from_iterable(rows)))
        keys.remove(self.time_field)
        if min(map(len, rows)) == len(keys) + 1:  # every row has every key: transpose in C
            getter = itemgetter(*keys)
            values = (
                list(zip(*map(getter, rows), strict=True))
                if len(keys) > 1
                else [list(map(getter, rows))]
            )
        else:
            values = [[row.get(key) for row in rows] for key in keys]
        columns = {self.time_field: times}
        columns.update((str(key), column_array(col)) for key, col in zip(keys, values, strict=True))
        stamp = self.clock.now().strftime("%Y%m%dT%H%M%S%fZ")
        directory = hour_dir(self.root, self.partition_field, partition, hour.date(), hour.hour)
        write_table(pa.table(columns), directory / f"{stamp}-{uuid.uuid4().hex}.parquet")


def _converts(value: datetime) -> bool:
    """Whether Arrow can store ``value`` as a UTC timestamp."""
    try:
        pa.array([value], LOG_TIMESTAMP)
    except Exception:
        return False
    return True
