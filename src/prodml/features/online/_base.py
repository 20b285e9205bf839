"""The online store interface: latest feature values per entity, read on the request path.

A template method: the public methods check their arguments, prepare batches and apply
the TTL; a backend implements only ``_write``, ``_read``, ``_delete_namespace`` and
``_close``. A namespace is an opaque string (the feature layer passes
``"view_name:view_version"``); it holds at most one record per entity key.

>>> from datetime import datetime, timedelta
>>> import pyarrow as pa
>>> from prodml.features.online._memory import MemoryOnlineStore
>>> t = pa.table({"id": [1, 2], "ts": [datetime(2013, 1, 1), datetime(2013, 1, 2)],
...               "x": [0.5, 1.5]})
>>> with MemoryOnlineStore() as store:
...     store.write_batch("v:1", t, key_columns=["id"], event_time_column="ts",
...                       feature_columns=["x"])
...     r = store.read("v:1", [(2,), (1,), (3,)], ["x"], now=datetime(2013, 1, 3),
...                    ttl=timedelta(days=1))
2
>>> r.values["x"], r.found, r.stale
([1.5, None, None], [True, True, False], [False, True, False])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pyarrow as pa

from prodml.core import MemoryOnlineConfig, RedisOnlineConfig, SqliteOnlineConfig, StorageError
from prodml.features.online._batch import OnlineBatch, prepare_batch
from prodml.features.online._keys import encode_entity_key
from prodml.features.online._read import OnlineRead, Record, assemble_read

__all__ = ["OnlineConfig", "OnlineStore"]

OnlineConfig = MemoryOnlineConfig | SqliteOnlineConfig | RedisOnlineConfig

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


class OnlineStore(ABC):
    """Latest feature record per (namespace, entity); upserts keep the newest record.

    A record replaces the stored one only when its (event time, created time) is newer;
    an absent created time compares equal, and equal records keep the stored one, so
    replaying a batch writes nothing.
    """

    _closed: bool = False

    @classmethod
    @abstractmethod
    def from_config(cls, config: OnlineConfig, root: Path) -> Self:
        """Open the store a config section describes; relative paths are under ``root``."""

    def write_batch(
        self,
        namespace: str,
        table: pa.Table,
        *,
        key_columns: Sequence[str],
        event_time_column: str,
        feature_columns: Sequence[str],
        created_time_column: str | None = None,
    ) -> int:
        """Upsert the newest row of each entity in ``table``; return how many records
        were inserted or overwritten."""
        self._check_open()
        _check_namespace(namespace)
        batch = prepare_batch(
            table,
            key_columns=key_columns,
            event_time_column=event_time_column,
            feature_columns=feature_columns,
            created_time_column=created_time_column,
        )
        if not batch.entity_keys:
            return 0
        return self._write(namespace, batch)

    def read(
        self,
        namespace: str,
        keys: Sequence[tuple[Any, ...]],
        features: Sequence[str],
        *,
        now: datetime,
        ttl: timedelta | None,
    ) -> OnlineRead:
        """Read ``features`` of the entities ``keys`` (join-key tuples) as of ``now``.

        A record older than ``ttl`` (age > ttl; age == ttl is fresh) is reported stale
        with null values; a missing entity has ``found`` False and null values.
        """
        self._check_open()
        _check_namespace(namespace)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        ttl_us = None
        if ttl is not None:
            ttl_us = ttl // _ONE_US
            if ttl_us < 0:
                raise ValueError(f"online read of {namespace!r}: ttl must be >= 0, got {ttl}")
        records = self._read(namespace, [encode_entity_key(key) for key in keys])
        return assemble_read(
            namespace, tuple(features), records, now_us=(now - _EPOCH) // _ONE_US, ttl_us=ttl_us
        )

    def delete_namespace(self, namespace: str) -> int:
        """Remove every record of ``namespace``; return how many there were."""
        self._check_open()
        _check_namespace(namespace)
        return self._delete_namespace(namespace)

    def close(self) -> None:
        """Release connections; further calls raise :class:`StorageError`. Idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"{type(self).__name__}: the store is closed; open a new one")

    @abstractmethod
    def _write(self, namespace: str, batch: OnlineBatch) -> int:
        """Conditionally upsert ``batch`` (unique keys); return the records written."""

    @abstractmethod
    def _read(self, namespace: str, entity_keys: list[str]) -> list[Record | None]:
        """The stored records of ``entity_keys``, aligned with them, None when missing."""

    @abstractmethod
    def _delete_namespace(self, namespace: str) -> int:
        """Drop the records of ``namespace``; return how many there were."""

    @abstractmethod
    def _close(self) -> None:
        """Release the backend's resources."""


def _check_namespace(namespace: str) -> None:
    if not isinstance(namespace, str) or not namespace:
        raise ValueError(f"online store namespace: expected a non-empty string, got {namespace!r}")
