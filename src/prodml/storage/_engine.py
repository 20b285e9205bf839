"""SQLAlchemy engines for the metadata DB, tuned per dialect.

SQLite: WAL journal, foreign keys on, a 30 s busy timeout, and SQLAlchemy (not the
``sqlite3`` module) emits ``BEGIN`` — ``BEGIN IMMEDIATE`` for connections carrying the
:data:`WRITE_LOCK` execution option, so writers queue on the database lock instead of
failing or losing updates. PostgreSQL: pre-ping, and ``search_path`` set to
``schema_name`` when one is given.

>>> check_schema_name("prodml_test_1a2b")
'prodml_test_1a2b'
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import StaticPool

from prodml.core import ConfigError
from prodml.storage._urls import redact_url

__all__ = [
    "BUSY_TIMEOUT_S",
    "WRITE_LOCK",
    "check_schema_name",
    "create_metadata_engine",
    "describe_error",
]

BUSY_TIMEOUT_S = 30.0
WRITE_LOCK = "prodml_write_lock"
"""Execution option: on SQLite, open the transaction with ``BEGIN IMMEDIATE``."""

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema_name: str) -> str:
    """Return ``schema_name`` if it is a plain lowercase PostgreSQL identifier."""
    if not isinstance(schema_name, str) or not _SCHEMA.fullmatch(schema_name):
        raise ConfigError(
            f"metadata schema_name {schema_name!r} is invalid: expected a lowercase letter or "
            "'_' followed by up to 62 lowercase letters, digits or '_'"
        )
    return schema_name


def create_metadata_engine(url: URL, *, schema_name: str | None = None) -> Engine:
    """An engine for ``url`` (SQLite or PostgreSQL) configured as described above."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        if schema_name is not None:
            raise ConfigError(
                f"metadata DB {redact_url(url)}: schema_name {schema_name!r} is only "
                "supported on PostgreSQL"
            )
        return _sqlite_engine(url)
    if backend == "postgresql":
        return _postgres_engine(url, schema_name)
    raise ConfigError(
        f"metadata DB {redact_url(url)}: backend {backend!r} is not supported: "
        "expected 'sqlite' or 'postgresql'"
    )


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    in_memory = database in {"", ":memory:"} or url.query.get("mode") == "memory"
    if in_memory:
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN (see _sqlite_on_begin) instead of the sqlite3 module,
    # which would skip it for SELECT and DDL statements.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch to WAL once per database file. Switching needs an exclusive lock and SQLite
    may report "database is locked" at once, without its busy handler, when another
    process opens the same fresh file; so retry with backoff within the busy timeout."""
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(WRITE_LOCK, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _postgres_engine(url: URL, schema_name: str | None) -> Engine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = 10
    if schema_name is not None:
        connect_args["options"] = f"-c search_path={check_schema_name(schema_name)}"
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def describe_error(exc: BaseException) -> str:
    """The first line of a database error, preferring the driver's own message."""
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
