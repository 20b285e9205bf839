"""Where a project's prediction and label logs live: :class:`LogStore`, one log of records
partitioned by endpoint, written through a :class:`~prodml.storage.LogWriter` and read
back as Arrow, with backends as plugins (:data:`LOG_STORES`).

The local backend keeps today's layout under the state directory (``logs/predictions``,
``logs/labels``, ``logs/quarantine/<log>``; see :mod:`prodml.storage._log_format`).

>>> import tempfile
>>> from datetime import UTC, datetime
>>> from prodml.core import SystemClock
>>> tmp = tempfile.TemporaryDirectory()
>>> logs = open_log_stores(Path(tmp.name))
>>> with logs.predictions.open_writer(clock=SystemClock()) as writer:
...     writer.append({"time": datetime(2013, 1, 1, 5, 30, tzinfo=UTC), "endpoint": "delay"})
True
>>> logs.predictions.endpoints(), logs.predictions.first_hour("delay").hour
(['delay'], 5)
>>> logs.predictions.read(columns=["endpoint"]).to_pydict()
{'endpoint': ['delay']}
>>> tmp.cleanup()
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import pyarrow.compute as pc

from prodml.core import Clock, Plugins, ensure_utc
from prodml.storage._log_format import (
    DATE_KEY,
    HOUR_KEY,
    LABELS_DIR,
    PREDICTIONS_DIR,
    check_partition,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from prodml.storage._log_reader import LogFiles, QuarantinedFile
    from prodml.storage._logs import LogSink, LogWriter

__all__ = [
    "LOG_NAMES",
    "LOG_STORES",
    "LocalLogStore",
    "LogStore",
    "LogStores",
    "first_record_hour",
    "log_dir",
    "open_log_stores",
]

#: The logs of a project, each under ``logs/<name>`` of the local backend.
LOG_NAMES = {"predictions": PREDICTIONS_DIR, "labels": LABELS_DIR}
#: Partition directories are named ``endpoint=<name>``.
PARTITION_FIELD = "endpoint"
TIME_FIELD = "time"


def log_dir(name: str) -> Path:
    """The directory of log ``name`` under the state directory, for every backend's
    check of the name.

    >>> log_dir("labels").as_posix()
    'logs/labels'
    >>> log_dir("audit")
    Traceback (most recent call last):
    ...
    ValueError: log store: log 'audit' is unknown: expected one of 'predictions', 'labels'
    """
    try:
        return LOG_NAMES[name]
    except KeyError:
        raise ValueError(
            f"log store: log {name!r} is unknown: expected one of "
            + ", ".join(map(repr, LOG_NAMES))
        ) from None


class LogStore(ABC):
    """One log (``name``: "predictions" or "labels") of records partitioned by endpoint.

    Records are flat mappings with a ``time`` (datetime, naive means UTC) and an
    ``endpoint`` (a path-safe name, see :func:`~prodml.storage._log_format.check_partition`).
    """

    name: str

    @classmethod
    @abstractmethod
    def from_state_dir(cls, state_dir: Path, name: str) -> Self:
        """The store of log ``name`` of the project whose state directory is ``state_dir``."""

    @classmethod
    def from_config(cls, config: Any, state_dir: Path, name: str) -> Self:
        """The store of log ``name`` as the ``[logs]`` section ``config`` describes it
        (None: the defaults); backends without settings use :meth:`from_state_dir`."""
        return cls.from_state_dir(state_dir, name)

    def open_writer(
        self,
        *,
        clock: Clock,
        max_batch_rows: int = 5000,
        max_wait_s: float = 1.0,
        max_queue: int = 200_000,
    ) -> LogWriter:
        """A started :class:`~prodml.storage.LogWriter` appending to this log (close it to
        write what is queued)."""
        from prodml.storage._logs import LogWriter

        root, sink = self._writer_target()
        return LogWriter(
            root,
            clock=clock,
            max_batch_rows=max_batch_rows,
            max_wait_s=max_wait_s,
            max_queue=max_queue,
            sink=sink,
        ).start()

    @abstractmethod
    def _writer_target(self) -> tuple[Path, LogSink | None]:
        """Where :meth:`open_writer`'s writer puts its groups: the directory of its
        Parquet files, and a sink taking the groups instead of files (None for files)."""

    @abstractmethod
    def read(
        self,
        *,
        endpoint: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        columns: Sequence[str] | None = None,
        quarantine: list[QuarantinedFile] | None = None,
    ) -> pa.Table:
        """Records with ``start <= time < end`` (of one ``endpoint``), sorted by time, as
        :func:`~prodml.storage.read_log` reads them: schemas unified (int with float →
        float, other conflicts → string), requested columns found nowhere are null, and an
        empty log gives the time and endpoint columns (or the requested ones). Unreadable
        files raise :class:`~prodml.core.errors.StorageError`, or with a ``quarantine``
        list are moved aside and listed there.

        Raises :class:`~prodml.core.errors.SchemaError` for a path-unsafe ``endpoint``.
        """

    def files(
        self,
        *,
        endpoint: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> LogFiles | None:
        """The local Parquet files :meth:`read` would read, for a reader that scans them
        itself; None when the backend keeps no such files (or a footer is unreadable:
        :meth:`read` handles that)."""
        return None

    def damaged(self) -> list[tuple[str, str]]:
        """The stored files that cannot be read, with why (moving none): what ``prodml
        verify`` reports. This default reads the whole log's time column and names the
        first failure; backends with files check each one's frame."""
        from prodml.core import StorageError

        try:
            self.read(columns=["time"])
        except StorageError as exc:
            return [(f"{self.name} log", str(exc))]
        return []

    def latest_hour(self, endpoint: str) -> datetime | None:
        """The start of the newest UTC hour that holds records of ``endpoint`` (None: the
        log holds none): where a view of recent traffic starts looking."""
        times = self.read(endpoint=endpoint, columns=["time"])["time"]
        if len(times) == 0 or times.null_count == len(times):
            return None
        newest = ensure_utc(pc.max(times).as_py())
        return newest.replace(minute=0, second=0, microsecond=0)

    @abstractmethod
    def endpoints(self) -> list[str]:
        """The sorted names of the endpoints with a partition in this log."""

    @abstractmethod
    def first_hour(self, endpoint: str) -> datetime | None:
        """The start of the UTC hour of ``endpoint``'s earliest record; None when it has
        none."""

    @abstractmethod
    def quarantined(
        self,
        *,
        endpoint: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[str]:
        """The quarantined files of this log whose hour overlaps ``[start, end)``, as
        locations relative to the project's state directory, in path order."""

    def describe(self, moved: QuarantinedFile) -> dict[str, str]:
        """``moved`` as a report lists it: ``log``, ``endpoint``, ``path``,
        ``quarantined_to`` and ``reason``."""
        return {
            "log": self.name,
            "endpoint": _endpoint_of(moved.source.parts),
            "path": moved.source.as_posix(),
            "quarantined_to": moved.target.as_posix(),
            "reason": moved.reason,
        }


@dataclass(frozen=True)
class LogStores:
    """The two logs of a project."""

    predictions: LogStore
    labels: LogStore


#: Log store backends: name → ``module:Class``.
LOG_STORES: Plugins[LogStore] = Plugins(
    "log store",
    LogStore,
    {
        "local": "prodml.storage._log_store:LocalLogStore",
        "memory": "prodml.storage._log_memory:MemoryLogStore",
        "s3": "prodml.storage._log_s3:S3LogStore",
    },
)


def open_log_stores(state_dir: Path, kind: str = "local", config: Any = None) -> LogStores:
    """The prediction and label logs of the project whose state directory is
    ``state_dir``, kept by the backend registered as ``kind`` in :data:`LOG_STORES`;
    ``config``: the ``[logs]`` section, for backends that need settings (S3's bucket).

    Raises :class:`~prodml.core.errors.ConfigError` for an unknown ``kind``.
    """
    cls = LOG_STORES.load(kind)
    return LogStores(
        predictions=cls.from_config(config, Path(state_dir), "predictions"),
        labels=cls.from_config(config, Path(state_dir), "labels"),
    )


class LocalLogStore(LogStore):
    """A log in Parquet files under ``root`` (``endpoint=…/date=…/hour=…/*.parquet``);
    ``base`` (the state directory) is what reported locations are relative to."""

    def __init__(self, root: Path, base: Path, name: str) -> None:
        self.root = Path(root)
        self.base = Path(base)
        self.name = name

    @classmethod
    def from_state_dir(cls, state_dir: Path, name: str) -> Self:
        return cls(Path(state_dir) / log_dir(name), Path(state_dir), name)

    def __repr__(self) -> str:
        return f"LocalLogStore({str(self.root)!r}, name={self.name!r})"

    def _writer_target(self) -> tuple[Path, LogSink | None]:
        return self.root, None

    def read(
        self,
        *,
        endpoint: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        columns: Sequence[str] | None = None,
        quarantine: list[QuarantinedFile] | None = None,
    ) -> pa.Table:
        from prodml.storage._log_reader import read_log

        return read_log(
            self.root,
            partition=endpoint,
            start=start,
            end=end,
            columns=columns,
            quarantine=quarantine,
        )

    def files(
        self,
        *,
        endpoint: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> LogFiles | None:
        from prodml.storage._log_reader import log_files

        return log_files(self.root, partition=endpoint, start=start, end=end)

    def damaged(self) -> list[tuple[str, str]]:
        from prodml.storage._log_reader import damaged_files

        return [(self._relative(path), reason) for path, reason in damaged_files(self.root)]

    def latest_hour(self, endpoint: str) -> datetime | None:
        from prodml.storage._log_reader import newest_hour

        return newest_hour(self.root, PARTITION_FIELD, endpoint)

    def endpoints(self) -> list[str]:
        if not self.root.is_dir():
            return []
        prefix = f"{PARTITION_FIELD}="
        return sorted(
            p.name.partition("=")[2]
            for p in self.root.iterdir()
            if p.is_dir() and p.name.startswith(prefix)
        )

    def first_hour(self, endpoint: str) -> datetime | None:
        check_partition(endpoint, field=PARTITION_FIELD)
        return first_record_hour(self.root / f"{PARTITION_FIELD}={endpoint}")

    def quarantined(
        self,
        *,
        endpoint: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[str]:
        from prodml.storage._log_reader import quarantined_files

        if endpoint is not None:
            check_partition(endpoint, field=PARTITION_FIELD)
        paths = quarantined_files(self.root, partition=endpoint, start=start, end=end)
        return [self._relative(path) for path in paths]

    def describe(self, moved: QuarantinedFile) -> dict[str, str]:
        source = moved.source
        return {
            "log": self.name,
            "endpoint": _endpoint_of(
                source.relative_to(self.root).parts
                if source.is_relative_to(self.root)
                else source.parts
            ),
            "path": self._relative(source),
            "quarantined_to": self._relative(moved.target),
            "reason": moved.reason,
        }

    def _relative(self, path: Path) -> str:
        """``path`` relative to the state directory (POSIX), or whole when outside it."""
        return (
            path.relative_to(self.base).as_posix() if path.is_relative_to(self.base) else str(path)
        )


def _endpoint_of(parts: Sequence[str]) -> str:
    """The endpoint named by the first ``endpoint=<name>`` part of a path ('' if none)."""
    prefix = f"{PARTITION_FIELD}="
    return next((part[len(prefix) :] for part in parts if part.startswith(prefix)), "")


def first_record_hour(root: Path) -> datetime | None:
    """The start of the earliest ``date=/hour=`` directory holding a Parquet file under
    one partition's directory ``root``; None when there is none."""
    if not root.is_dir():
        return None
    days = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(f"{DATE_KEY}="))
    for day_dir in days:
        hours = sorted(
            p
            for p in day_dir.iterdir()
            if p.is_dir()
            and p.name.startswith(f"{HOUR_KEY}=")
            and any(day_dir.glob(f"{p.name}/*.parquet"))
        )
        if not hours:
            continue
        try:
            day = datetime.strptime(day_dir.name.partition("=")[2], "%Y-%m-%d").replace(tzinfo=UTC)
            return day + timedelta(hours=int(hours[0].name.partition("=")[2]))
        except ValueError:
            continue
    return None
