"""SQLite online store, the embedded default: one ``WITHOUT ROWID`` table keyed by
(namespace, entity key), in WAL mode so readers never wait for the materializer.

Writes are one ``INSERT … ON CONFLICT … DO UPDATE … WHERE`` (the incoming record is
newer) over the batch inside one transaction; ``rowcount`` counts only the rows the
upsert actually changed. Each thread gets its own connection (readers run in parallel
under WAL); ``close`` closes them all.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp, SqliteOnlineStore(Path(tmp) / "o.db") as s:
...     s.delete_namespace("v:1")
0
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from itertools import repeat
from pathlib import Path
from typing import Self

import orjson

from prodml.core import ConfigError, SqliteOnlineConfig, StorageError
from prodml.features.online._base import OnlineConfig, OnlineStore
from prodml.features.online._batch import OnlineBatch
from prodml.features.online._read import Record

__all__ = ["SqliteOnlineStore"]

_MMAP_BYTES = 256 << 20  # reads through mmap: about 30% faster for 100-key reads
_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_records (
    namespace TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    event_us INTEGER NOT NULL,
    created_us INTEGER,
    payload BLOB NOT NULL,
    PRIMARY KEY (namespace, entity_key)
) WITHOUT ROWID
"""
_UPSERT = """
INSERT INTO online_records (namespace, entity_key, event_us, created_us, payload)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (namespace, entity_key) DO UPDATE SET
    event_us = excluded.event_us, created_us = excluded.created_us, payload = excluded.payload
WHERE excluded.event_us > online_records.event_us
   OR (excluded.event_us = online_records.event_us
       AND excluded.created_us > online_records.created_us)
"""
_READ_ONE = "SELECT event_us, payload FROM online_records WHERE namespace = ? AND entity_key = ?"
_READ_MANY = (
    "SELECT entity_key, event_us, payload FROM online_records "
    "WHERE namespace = ? AND entity_key IN (SELECT value FROM json_each(?))"
)
_COUNT = "SELECT count(*) FROM online_records WHERE namespace = ?"
_DELETE = "DELETE FROM online_records WHERE namespace = ?"


class SqliteOnlineStore(OnlineStore):
    """Online store in one SQLite file (created with its parent directories)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0) -> None:
        self._path = Path(path)
        self._timeout = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"sqlite online store {self._path}: cannot create folder: {exc}"
            ) from None
        try:
            with self._guard("open"):
                connection = self._connection()
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute(_SCHEMA)
        except StorageError:
            self._close()
            raise

    @classmethod
    def from_config(cls, config: OnlineConfig, root: Path) -> Self:
        if not isinstance(config, SqliteOnlineConfig):
            raise ConfigError(f"online_store.type: expected 'sqlite', got {config.type!r}")
        path = Path(config.path)
        return cls(path if path.is_absolute() else Path(root) / path)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def _connection(self) -> sqlite3.Connection:
        try:
            connection: sqlite3.Connection = self._local.connection
        except AttributeError:
            connection = sqlite3.connect(
                self._path,
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
            with self._lock:
                self._connections.append(connection)
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")
            self._local.connection = connection
        return connection

    def _write(self, namespace: str, batch: OnlineBatch) -> int:
        created = repeat(None) if batch.created_us is None else batch.created_us.tolist()
        rows = zip(
            repeat(namespace), batch.entity_keys, batch.event_us.tolist(), created, batch.payloads
        )
        with self._guard(f"write to namespace {namespace!r}"):
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                written = connection.executemany(_UPSERT, rows).rowcount
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        return written

    def _read(self, namespace: str, entity_keys: list[str]) -> list[Record | None]:
        try:
            connection = self._connection()
            if len(entity_keys) <= 1:
                if not entity_keys:
                    return []
                row = connection.execute(_READ_ONE, (namespace, entity_keys[0])).fetchone()
                return [row]
            cursor = connection.execute(_READ_MANY, (namespace, orjson.dumps(entity_keys).decode()))
            found = {key: (event_us, payload) for key, event_us, payload in cursor}
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite online store {self._path}: read failed: {exc}") from None
        return [found.get(key) for key in entity_keys]

    def _delete_namespace(self, namespace: str) -> int:
        with self._guard(f"delete namespace {namespace!r}"):
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                count: int = connection.execute(_COUNT, (namespace,)).fetchone()[0]
                connection.execute(_DELETE, (namespace,))
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        return count

    def _close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def _guard(self, action: str) -> AbstractContextManager[None]:
        return _sqlite_errors(self._path, action)


@contextmanager
def _sqlite_errors(path: Path, action: str) -> Iterator[None]:
    """Turn ``sqlite3.Error`` into :class:`StorageError` naming the file and the action."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageError(f"sqlite online store {path}: {action} failed: {exc}") from None
