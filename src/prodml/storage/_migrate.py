"""Run the packaged Alembic migrations programmatically; users need no ``alembic.ini``.

:func:`upgrade_to_head` is safe when several processes open the same database at once:
the upgrade runs in one transaction that first takes the database's writer lock
(``BEGIN IMMEDIATE`` on SQLite, ``pg_advisory_xact_lock`` on PostgreSQL), then reads
the current revision, so a late opener finds the schema already at head. SQLite and
PostgreSQL both have transactional DDL, so a failed upgrade leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from prodml.core import MigrationError, StorageError
from prodml.storage._engine import WRITE_LOCK, describe_error
from prodml.storage._models import Base
from prodml.storage._revision import VERSION_TABLE
from prodml.storage._urls import redact_url

__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "alembic_config",
    "current_revision",
    "head_revision",
    "run_migrations",
    "upgrade_to_head",
]

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

# Alembic's ``context``/``op`` proxies are process-wide: one upgrade at a time per process.
_ALEMBIC = threading.Lock()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged scripts, bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with this prodml."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise MigrationError(f"no migration scripts found in {MIGRATIONS_DIR}")
    return head


def known_revisions() -> list[str]:
    """Every revision shipped with this prodml, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, or ``None`` if it was never migrated."""
    migration = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return migration.get_current_revision()


def upgrade_to_head(engine: Engine, *, schema_name: str | None = None) -> str:
    """Bring the schema behind ``engine`` to the head revision and return it."""
    url = redact_url(engine.url)
    head = head_revision()
    try:
        with engine.connect() as conn:
            if current_revision(conn) == head:
                return head
    except SQLAlchemyError as exc:
        raise StorageError(f"metadata DB {url}: cannot connect: {describe_error(exc)}") from exc
    try:
        with _ALEMBIC, engine.connect() as conn:
            conn.execution_options(**{WRITE_LOCK: True})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    _lock_postgres(conn, schema_name)
                command.upgrade(alembic_config(conn), "head")
    except (SQLAlchemyError, CommandError) as exc:
        raise MigrationError(
            f"metadata DB {url}: could not upgrade the schema to revision {head!r}: "
            f"{describe_error(exc)}"
        ) from exc
    return head


def _lock_postgres(conn: Connection, schema_name: str | None) -> None:
    """Serialize migrations of one schema across processes; create the schema if needed."""
    key = int.from_bytes(
        hashlib.sha256(f"prodml-migrate:{schema_name or ''}".encode()).digest()[:8],
        "big",
        signed=True,
    )
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    if schema_name is not None:  # checked by check_schema_name: a plain identifier
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema_name}"'))


def run_migrations(config: Config) -> None:
    """The body of ``migrations/env.py``: migrate the connection bound by :func:`upgrade_to_head`."""
    connection = config.attributes.get("connection")
    if context.is_offline_mode() or not isinstance(connection, Connection):
        raise MigrationError(
            "prodml migrations run only online through MetadataDB.open (no alembic.ini, "
            "no --sql): expected a SQLAlchemy Connection in config.attributes['connection']"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
