"""A :class:`~prodml.storage.LogStore` in memory, for tests and throwaway projects: the
writer is the same :class:`~prodml.storage.LogWriter` (queueing, grouping, conversion to
Arrow), whose groups go to a dict instead of Parquet files; reads unify, filter and sort
as :func:`~prodml.storage.read_log` does. Nothing is ever quarantined.

>>> from datetime import UTC, datetime
>>> from prodml.core import SystemClock
>>> store = MemoryLogStore("predictions")
>>> with store.open_writer(clock=SystemClock()) as writer:
...     for hour, y in [(7, 1), (5, 0.5), (6, "odd")]:
...         _ = writer.append({"time": datetime(2013, 1, 1, hour, tzinfo=UTC), "endpoint": "e", "y": y})
>>> table = store.read(start=datetime(2013, 1, 1, 6))
>>> [t.hour for t in table["time"].to_pylist()], table["y"].to_pylist()
([6, 7], ['odd', '1'])
>>> store.endpoints(), store.first_hour("e").hour, store.quarantined()
(['e'], 5, [])
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Self

import pyarrow as pa
import pyarrow.compute as pc

from prodml.core import ensure_utc
from prodml.core.errors import SchemaError
from prodml.storage._log_format import LOG_TIMESTAMP, check_partition
from prodml.storage._log_reader import QuarantinedFile, _empty, _unified_schema
from prodml.storage._log_store import PARTITION_FIELD, TIME_FIELD, LogStore, log_dir
from prodml.storage._logs import LogSink

__all__ = ["MemoryLogStore"]

_HOUR = timedelta(hours=1)


class MemoryLogStore(LogStore):
    """Log ``name`` held in memory: per endpoint and UTC hour, the tables its writers
    produced, in write order. Safe to write and read from several threads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._tables: dict[str, dict[datetime, list[pa.Table]]] = {}

    @classmethod
    def from_state_dir(cls, state_dir: Path, name: str) -> Self:
        log_dir(name)
        return cls(name)

    def __repr__(self) -> str:
        return f"MemoryLogStore({self.name!r})"

    def _writer_target(self) -> tuple[Path, LogSink | None]:
        return Path("memory") / self.name, self._put

    def _put(self, partition: str, hour: datetime, table: pa.Table) -> None:
        with self._lock:
            self._tables.setdefault(partition, {}).setdefault(hour, []).append(table)

    def read(
        self,
        *,
        endpoint: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        columns: Sequence[str] | None = None,
        quarantine: list[QuarantinedFile] | None = None,
    ) -> pa.Table:
        if endpoint is not None:
            check_partition(endpoint, field="partition")
        low = None if start is None else ensure_utc(start)
        high = None if end is None else ensure_utc(end)
        with self._lock:
            tables = [
                table
                for partition in sorted(self._tables)
                if endpoint is None or partition == endpoint
                for hour, held in sorted(self._tables[partition].items())
                if (high is None or hour < high) and (low is None or hour + _HOUR > low)
                for table in held
            ]
        return _combine(tables, low, high, None if columns is None else list(columns))

    def endpoints(self) -> list[str]:
        with self._lock:
            return sorted(self._tables)

    def first_hour(self, endpoint: str) -> datetime | None:
        check_partition(endpoint, field=PARTITION_FIELD)
        with self._lock:
            return min(self._tables.get(endpoint, {}), default=None)

    def quarantined(
        self,
        *,
        endpoint: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[str]:
        if endpoint is not None:
            check_partition(endpoint, field=PARTITION_FIELD)
        return []


def _combine(
    tables: list[pa.Table], low: datetime | None, high: datetime | None, wanted: list[str] | None
) -> pa.Table:
    """The rows of ``tables`` in ``[low, high)`` as one table sorted by time, with the
    columns :func:`~prodml.storage.read_log` would give."""
    if not tables:
        names = wanted if wanted is not None else [TIME_FIELD, PARTITION_FIELD]
        return pa.table({name: _empty(name, TIME_FIELD, PARTITION_FIELD) for name in names})
    schema = _unified_schema([table.schema for table in tables])
    if TIME_FIELD not in schema.names:
        raise SchemaError(
            f"log: no table has the time column {TIME_FIELD!r}; columns: {schema.names}"
        )
    names = wanted if wanted is not None else schema.names
    read = [name for name in dict.fromkeys([*names, TIME_FIELD]) if name in schema.names]
    types = {name: schema.field(name).type for name in read}
    whole = pa.concat_tables(
        pa.table(
            {
                name: table[name].cast(kind)
                if name in table.column_names
                else pa.nulls(table.num_rows, kind)
                for name, kind in types.items()
            }
        )
        for table in tables
    )
    times = whole[TIME_FIELD]
    mask = None
    if low is not None:
        mask = pc.greater_equal(times, pa.scalar(low, LOG_TIMESTAMP))
    if high is not None:
        upper = pc.less(times, pa.scalar(high, LOG_TIMESTAMP))
        mask = upper if mask is None else pc.and_(mask, upper)
    if mask is not None:
        whole = whole.filter(mask)
    whole = whole.sort_by(TIME_FIELD)
    return pa.table(
        {
            name: whole[name] if name in read else pa.nulls(whole.num_rows)
            for name in dict.fromkeys(names)
        }
    )
