"""Prediction and label logs in an S3-compatible bucket (``[logs] type = "s3"``).

The layout is the local one (:mod:`~prodml.storage._log_format`) under the bucket's
prefix: ``logs/<log>/endpoint=<name>/date=<YYYY-MM-DD>/hour=<HH>/<UTC stamp>-<uuid>.parquet``,
one object per writer flush and hour, unreadable objects moved under
``logs/quarantine/<log>/…``. Servers on several machines write to one log: an object
appears whole when its upload completes (an S3 PUT is atomic), names never collide,
and readers list the keys, keep those whose hour overlaps the window, read them on
several threads and combine them as the local reader does (schemas unified, sorted by
time, keys in path order on ties). The objects go through the :class:`S3BlobStore`
(pyarrow's S3 filesystem); credentials come from the environment.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import pyarrow as pa
import pyarrow.parquet as pq

from prodml.core import ConfigError, StorageError, ensure_utc
from prodml.storage._blob_s3 import S3BlobStore
from prodml.storage._log_format import (
    DATE_KEY,
    HOUR_KEY,
    QUARANTINE_DIR,
    check_partition,
    hour_dir,
)
from prodml.storage._log_memory import _combine
from prodml.storage._log_reader import QuarantinedFile, _foreign_time
from prodml.storage._log_store import PARTITION_FIELD, TIME_FIELD, LogStore, log_dir
from prodml.storage._logs import LogSink

__all__ = ["S3LogStore"]

_HOUR = timedelta(hours=1)
_THREADS = 8


def _hour_of(key: str) -> tuple[str, datetime] | None:
    """The endpoint and hour a log object's key names (None: not a log object)."""
    parts = key.split("/")
    if len(parts) < 4:
        return None
    endpoint, day, hour = parts[-4], parts[-3], parts[-2]
    if not (endpoint.startswith(f"{PARTITION_FIELD}=") and day.startswith(f"{DATE_KEY}=")
            and hour.startswith(f"{HOUR_KEY}=") and parts[-1].endswith(".parquet")):  # fmt: skip
        return None
    try:
        when = datetime.strptime(day.partition("=")[2], "%Y-%m-%d").replace(tzinfo=UTC)
        return endpoint.partition("=")[2], when + timedelta(hours=int(hour.partition("=")[2]))
    except ValueError:
        return None


class S3LogStore(LogStore):
    """Log ``name`` in ``bucket`` under ``prefix`` (see the module docstring)."""

    def __init__(
        self,
        name: str,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.name = name
        self.root = log_dir(name).as_posix()
        self.quarantine_dir = f"{QUARANTINE_DIR.as_posix()}/{name}"
        self.blobs = S3BlobStore(bucket, prefix, endpoint_url=endpoint_url, region=region)

    @classmethod
    def from_state_dir(cls, state_dir: Path, name: str) -> Self:
        raise ConfigError(
            "[logs] type = 's3': the log store needs its bucket: set [logs] bucket (and "
            "prefix, endpoint_url, region as needed)"
        )

    @classmethod
    def from_config(cls, config: Any, state_dir: Path, name: str) -> Self:
        if not getattr(config, "bucket", None):
            return cls.from_state_dir(state_dir, name)  # raises: the bucket is required
        return cls(name, config.bucket, config.prefix, endpoint_url=config.endpoint_url,
                   region=config.region)  # fmt: skip

    # The log's keys hold '=' (``endpoint=…``), which blob keys refuse: the store's
    # unchecked operations take them as they are.
    def _save(self, key: str, data: bytes) -> None:
        self.blobs._save_bytes(key, data)

    def _load(self, key: str) -> bytes:
        return self.blobs._load_bytes(key)

    def _list(self, prefix: str) -> list[str]:
        return [key for key in self.blobs._list(prefix) if key.startswith(prefix)]

    def _delete(self, key: str) -> None:
        self.blobs._delete(key)

    def __repr__(self) -> str:
        return (
            f"S3LogStore({self.name!r}, bucket={self.blobs.bucket!r}, prefix={self.blobs.prefix!r})"
        )

    # -- writing ------------------------------------------------------------------------

    def _writer_target(self) -> tuple[Path, LogSink | None]:
        return Path(f"s3://{self.blobs.bucket}/{self.blobs.prefix}{self.root}"), self._put

    def _put(self, partition: str, hour: datetime, table: pa.Table) -> None:
        out = pa.BufferOutputStream()
        pq.write_table(table, out, compression="zstd")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        directory = hour_dir(Path(self.root), PARTITION_FIELD, partition, hour.date(), hour.hour)
        self._save(f"{directory.as_posix()}/{stamp}-{uuid.uuid4().hex}.parquet",
                   out.getvalue().to_pybytes())  # fmt: skip

    # -- listing ------------------------------------------------------------------------

    def _keys(
        self, root: str, endpoint: str | None, start: datetime | None, end: datetime | None
    ) -> list[str]:
        """Keys of the log objects under ``root`` (one endpoint's, or all) whose hour
        overlaps ``[start, end)``, in path order."""
        if endpoint is not None:
            check_partition(endpoint, field=PARTITION_FIELD)
        low = None if start is None else ensure_utc(start)
        high = None if end is None else ensure_utc(end)
        where = f"{root}/" if endpoint is None else f"{root}/{PARTITION_FIELD}={endpoint}/"
        found = []
        for key in self._list(where):
            named = _hour_of(key)
            if named is None:
                continue
            _, hour = named
            if (high is None or hour < high) and (low is None or hour + _HOUR > low):
                found.append(key)
        return sorted(found)

    def endpoints(self) -> list[str]:
        return sorted({named[0] for key in self._list(f"{self.root}/")
                       if (named := _hour_of(key)) is not None})  # fmt: skip

    def _hours(self, endpoint: str) -> list[datetime]:
        """The hours of ``endpoint``'s objects (``_keys`` keeps only log objects)."""
        return [_hour_of(key)[1] for key in self._keys(self.root, endpoint, None, None)]  # type: ignore[index]

    def first_hour(self, endpoint: str) -> datetime | None:
        return min(self._hours(endpoint), default=None)

    def latest_hour(self, endpoint: str) -> datetime | None:
        return max(self._hours(endpoint), default=None)

    def quarantined(
        self,
        *,
        endpoint: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[str]:
        return self._keys(self.quarantine_dir, endpoint, start, end)

    # -- reading ------------------------------------------------------------------------

    def read(
        self,
        *,
        endpoint: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        columns: Sequence[str] | None = None,
        quarantine: list[QuarantinedFile] | None = None,
    ) -> pa.Table:
        keys = self._keys(self.root, endpoint, start, end)

        def load(key: str) -> pa.Table | Exception:
            data = self._load(key)  # the store failing is not the object being bad
            try:
                table = pq.read_table(pa.BufferReader(data))
            except (pa.ArrowInvalid, OSError) as exc:
                return exc
            foreign = _foreign_time(table.schema, TIME_FIELD)  # naive, text…: not the log's
            return table if foreign is None else foreign

        with ThreadPoolExecutor(_THREADS, thread_name_prefix="prodml-s3-log") as pool:
            loaded = list(pool.map(load, keys))
        tables = []
        for key, table in zip(keys, loaded, strict=True):
            if isinstance(table, Exception):
                if quarantine is None:
                    raise StorageError(
                        f"log {self.name}: s3://{self.blobs.bucket}/{self.blobs.prefix}{key} "
                        f"cannot be read ({table}); read with a quarantine list to move it aside"
                    )
                quarantine.append(self._quarantine(key, str(table)))
                continue
            tables.append(table)
        low = None if start is None else ensure_utc(start)
        high = None if end is None else ensure_utc(end)
        return _combine(tables, low, high, None if columns is None else list(columns))

    def _quarantine(self, key: str, reason: str) -> QuarantinedFile:
        """Move the unreadable object ``key`` under the quarantine, unchanged."""
        target = self.quarantine_dir + key[len(self.root) :]
        self._save(target, self._load(key))
        self._delete(key)
        return QuarantinedFile(Path(key), Path(target), reason)

    def describe(self, moved: QuarantinedFile) -> dict[str, str]:
        prefix = f"{PARTITION_FIELD}="
        parts = moved.source.parts
        endpoint = next((p[len(prefix) :] for p in parts if p.startswith(prefix)), "")
        return {
            "log": self.name,
            "endpoint": endpoint,
            "path": moved.source.as_posix(),
            "quarantined_to": moved.target.as_posix(),
            "reason": moved.reason,
        }
