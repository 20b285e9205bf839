"""The metadata DB: one SQLAlchemy engine, its schema kept at head, and transactions.

>>> from sqlalchemy import select
>>> from prodml.storage._models import FeatureHeadRow
>>> from datetime import datetime, timezone
>>> db = MetadataDB.open("sqlite://")  # in memory; a file path works the same
>>> with db.write() as session:
...     session.add(FeatureHeadRow(kind="entity", name="flight", version="0" * 64,
...                                updated_at=datetime(2013, 1, 1, tzinfo=timezone.utc)))
>>> with db.session() as session:
...     session.scalars(select(FeatureHeadRow.name)).all()
['flight']
>>> db.dialect, db.current_revision()
('sqlite', '0004')
>>> db.close()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from prodml.core import (
    ConflictError,
    PostgresMetadataConfig,
    SqliteMetadataConfig,
    StorageError,
)
from prodml.storage._engine import WRITE_LOCK, create_metadata_engine, describe_error
from prodml.storage._revision import at_head
from prodml.storage._urls import metadata_url, parse_url, redact_url

__all__ = ["MetadataDB", "open_metadata_db"]


class MetadataDB:
    """Handle on the metadata database (SQLite or PostgreSQL, same models and migrations).

    Use :meth:`session` for reads and simple writes, and :meth:`write` for
    read-modify-write: on SQLite it takes the database write lock up front
    (``BEGIN IMMEDIATE``) so concurrent writers queue instead of losing updates; on
    PostgreSQL it is a normal transaction in which callers lock rows with
    ``select(...).with_for_update()``. Database failures surface as
    :class:`StorageError` (unique violations as :class:`ConflictError`) naming the URL.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.url = redact_url(engine.url)

    @classmethod
    def open(cls, url: str, *, schema_name: str | None = None) -> MetadataDB:
        """Connect to ``url`` and upgrade its schema to head (safe across processes).

        ``schema_name`` (PostgreSQL only) puts every table in that schema, created if
        missing, by setting the connections' ``search_path``.
        """
        engine = create_metadata_engine(parse_url(url), schema_name=schema_name)
        try:
            if not at_head(engine):
                # Alembic (~0.1 s to import) only when the schema may need an upgrade.
                from prodml.storage._migrate import upgrade_to_head

                upgrade_to_head(engine, schema_name=schema_name)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine."""
        return self._engine

    @property
    def dialect(self) -> str:
        """The database kind: ``'sqlite'`` or ``'postgresql'``."""
        return self._engine.dialect.name

    def __repr__(self) -> str:
        return f"MetadataDB({self.url!r})"

    def __enter__(self) -> MetadataDB:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def current_revision(self) -> str | None:
        """The schema revision the database is at (``None`` if never migrated)."""
        from prodml.storage._migrate import current_revision  # Alembic, as in open()

        try:
            with self._engine.connect() as conn:
                return current_revision(conn)
        except sa_exc.SQLAlchemyError as exc:
            raise self._wrap(exc, "reading the schema revision") from exc

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: commit on success, roll back on any error."""
        with self._transaction(write=False) as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """Like :meth:`session`, but serialized against other writers (see the class doc)."""
        with self._transaction(write=True) as session:
            yield session

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Session]:
        session = Session(self._engine, expire_on_commit=False)
        try:
            if write:
                session.connection(execution_options={WRITE_LOCK: True})
            yield session
            session.commit()
        except BaseException as exc:
            # The original error is the one to report; a failed rollback adds nothing.
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                session.rollback()
            if isinstance(exc, sa_exc.SQLAlchemyError):
                raise self._wrap(exc, "transaction") from exc
            raise
        finally:
            session.close()

    def _wrap(self, exc: sa_exc.SQLAlchemyError, doing: str) -> StorageError | ConflictError:
        message = f"metadata DB {self.url}: {doing} failed: {describe_error(exc)}"
        if isinstance(exc, sa_exc.IntegrityError):
            return ConflictError(message)
        return StorageError(message)


def open_metadata_db(
    config: SqliteMetadataConfig | PostgresMetadataConfig, root: str | Path
) -> MetadataDB:
    """Open the metadata DB described by a ``[metadata]`` config section."""
    schema_name = config.schema_name if isinstance(config, PostgresMetadataConfig) else None
    return MetadataDB.open(metadata_url(config, root), schema_name=schema_name)
