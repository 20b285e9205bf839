"""The metadata DB: one SQLAlchemy engine, its schema kept at head, and transactions.

A metadata DB that is missing or empty (SQLite: no file, a 0-byte file, or a file
without prodml's tables; PostgreSQL: a schema without them) is only created when the
caller says the project has no state: :meth:`MetadataDB.open` takes ``state``, a
function that describes the state showing the DB should exist (``None``: there is
none), and refuses with :class:`StorageError` when it finds some — re-creating the DB
empty would silently drop the registry, its audit trail and the deployments. A SQLite
file the driver reports as corrupt raises :class:`IntegrityError`; :meth:`MetadataDB.check`
runs the database's own consistency check. Every such message names the file (or the
redacted URL and schema) and how to restore it.

Dialects are plugins: :data:`METADATA_BACKENDS` maps a URL's backend name (``sqlite``,
``postgresql``) to the :class:`MetadataDB` subclass that :meth:`MetadataDB.open` returns
for it. ``sqlite://`` is the in-memory database (one per :meth:`~MetadataDB.open`).

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
>>> db.dialect, db.current_revision(), type(db).__name__
('sqlite', '0007', 'SqliteMetadataDB')
>>> db.close()
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session

from prodml.core import (
    ConfigError,
    ConflictError,
    IntegrityError,
    Plugins,
    PostgresMetadataConfig,
    SqliteMetadataConfig,
    StorageError,
)
from prodml.storage._engine import WRITE_LOCK, create_metadata_engine, describe_error
from prodml.storage._models import Base
from prodml.storage._revision import at_head, stored_revision
from prodml.storage._urls import metadata_url, parse_url, redact_url

__all__ = [
    "METADATA_BACKENDS",
    "MetadataDB",
    "PostgresMetadataDB",
    "SqliteMetadataDB",
    "StateProbe",
    "corrupt_message",
    "metadata_absence",
    "metadata_location",
    "missing_message",
    "open_metadata_db",
    "restore_hint",
    "sqlite_file",
]

StateProbe = Callable[[], str | None]
"""Describes the project state that shows its metadata DB should exist (``None``: none)."""

_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


class MetadataDB:
    """Handle on the metadata database (SQLite or PostgreSQL, same models and migrations).

    Use :meth:`session` for reads and simple writes, and :meth:`write` for
    read-modify-write: on SQLite it takes the database write lock up front
    (``BEGIN IMMEDIATE``) so concurrent writers queue instead of losing updates; on
    PostgreSQL it is a normal transaction in which callers lock rows with
    ``select(...).with_for_update()``. Database failures surface as
    :class:`StorageError` (unique violations as :class:`ConflictError`) naming the URL.

    :meth:`open` returns the subclass :data:`METADATA_BACKENDS` registers for the URL's
    backend; a subclass says how to tell, before connecting, that its database does not
    exist (:meth:`_absence`) and how to check its consistency (:meth:`check`).
    """

    #: The SQLAlchemy backend name this class serves (``URL.get_backend_name()``).
    backend: ClassVar[str] = ""

    def __init__(self, engine: Engine, *, schema_name: str | None = None) -> None:
        self._engine = engine
        self.url = redact_url(engine.url)
        self.schema_name = schema_name
        self.location = _location(engine.url, schema_name)
        """The SQLite file, or the redacted URL and schema: what messages name."""

    @classmethod
    def open(
        cls,
        url: str,
        *,
        schema_name: str | None = None,
        state: StateProbe | None = None,
        upgrade: bool = True,
    ) -> MetadataDB:
        """Connect to ``url`` and upgrade its schema to head (safe across processes).

        ``schema_name`` (PostgreSQL only) puts every table in that schema, created if
        missing, by setting the connections' ``search_path``. When the database is
        missing or holds no prodml tables and ``state`` describes some project state,
        it is refused (:class:`StorageError`) and nothing is created; a SQLite file
        that is not a database raises :class:`IntegrityError`. ``upgrade=False`` leaves
        the schema at whatever revision it is (see :meth:`current_revision`).
        """
        parsed = parse_url(url)
        backend = metadata_backend(parsed)
        if not issubclass(backend, cls):
            raise ConfigError(
                f"metadata DB {redact_url(parsed)}: {cls.__name__} cannot open a "
                f"{backend.backend!r} URL; use MetadataDB.open"
            )
        location = _location(parsed, schema_name)
        if state is not None:
            absent = backend._absence(parsed)
            if absent is not None:
                _refuse_if_state(state, location, absent)
        engine = backend._create_engine(parsed, schema_name)
        try:
            if not _at_head(engine, location):
                if state is not None and not _has_prodml_tables(engine, schema_name, location):
                    _refuse_if_state(state, location, "holds no prodml tables")
                if upgrade:
                    # Alembic (~0.1 s to import) only when the schema may need an upgrade.
                    from prodml.storage._migrate import upgrade_to_head

                    upgrade_to_head(engine, schema_name=schema_name)
        except BaseException:
            engine.dispose()
            raise
        return backend(engine, schema_name=schema_name)

    @classmethod
    def _create_engine(cls, url: URL, schema_name: str | None) -> Engine:
        """The engine for ``url``, tuned for the dialect (see :mod:`._engine`)."""
        return create_metadata_engine(url, schema_name=schema_name)

    @classmethod
    def _absence(cls, url: URL) -> str | None:
        """Why the database at ``url`` holds nothing, when that shows without connecting
        (``None``: it may exist; connecting tells)."""
        return None

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

    def check(self, *, full: bool = False) -> list[str]:
        """The problems the database's own consistency check finds (empty: none).

        SQLite runs ``PRAGMA quick_check`` (every page and b-tree, linear in the file
        size), or ``PRAGMA integrity_check`` when ``full`` (also that every index
        matches its table); a file the driver finds corrupt while checking is one
        problem. PostgreSQL has no equivalent to run from a client (it checks page
        checksums itself as it reads, when the cluster enables them): a trivial query
        proves it answers, and so it does for any other dialect.
        """
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except sa_exc.SQLAlchemyError as exc:
            raise self._wrap(exc, "checking") from exc
        return []

    def ensure_intact(self, *, full: bool = False) -> None:
        """Raise :class:`IntegrityError` naming the file and how to restore it when
        :meth:`check` finds a problem (servers and controllers run it as they start)."""
        problems = self.check(full=full)
        if problems:
            pragma = "integrity_check" if full else "quick_check"
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise IntegrityError(
                corrupt_message(self.location, f"PRAGMA {pragma} reports: {problems[0]}{more}")
            )

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

    def _wrap(
        self, exc: sa_exc.SQLAlchemyError, doing: str
    ) -> StorageError | ConflictError | IntegrityError:
        if _is_corrupt(exc):
            return IntegrityError(
                corrupt_message(self.location, f"{doing} failed: {describe_error(exc)}")
            )
        message = f"metadata DB {self.url}: {doing} failed: {describe_error(exc)}"
        if isinstance(exc, sa_exc.IntegrityError):
            return ConflictError(message)
        return StorageError(message)


class SqliteMetadataDB(MetadataDB):
    """The metadata DB in a SQLite file, or in memory (``sqlite://``): WAL journal, and
    :meth:`write` takes the database write lock up front (``BEGIN IMMEDIATE``)."""

    backend = "sqlite"

    @classmethod
    def _absence(cls, url: URL) -> str | None:
        file = sqlite_file(url)
        return None if file is None else _absent(file)

    def check(self, *, full: bool = False) -> list[str]:
        pragma = "integrity_check" if full else "quick_check"
        try:
            with self._engine.connect() as conn:
                rows = [str(row[0]) for row in conn.exec_driver_sql(f"PRAGMA {pragma}")]
        except sa_exc.DBAPIError as exc:
            if _is_corrupt(exc):
                return [describe_error(exc)]
            raise self._wrap(exc, f"PRAGMA {pragma}") from exc
        return [] if rows == ["ok"] else rows


class PostgresMetadataDB(MetadataDB):
    """The metadata DB on a PostgreSQL server, optionally in its own schema
    (``schema_name``); writers lock rows with ``select(...).with_for_update()``."""

    backend = "postgresql"


#: Metadata DB classes by SQLAlchemy backend name: ``module:Class``, imported when opened.
METADATA_BACKENDS: Plugins[MetadataDB] = Plugins(
    "metadata DB backend",
    MetadataDB,
    {
        "sqlite": "prodml.storage._metadata:SqliteMetadataDB",
        "postgresql": "prodml.storage._metadata:PostgresMetadataDB",
    },
)


def metadata_backend(url: URL) -> type[MetadataDB]:
    """The :class:`MetadataDB` class :data:`METADATA_BACKENDS` registers for ``url``'s
    backend; :class:`ConfigError` naming the supported ones for any other.

    >>> from sqlalchemy.engine import make_url
    >>> metadata_backend(make_url("postgresql+psycopg://u@db/x")).__name__
    'PostgresMetadataDB'
    """
    name = url.get_backend_name()
    if name not in METADATA_BACKENDS:
        names = [repr(n) for n in METADATA_BACKENDS]
        expected = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise ConfigError(
            f"metadata DB {redact_url(url)}: backend {name!r} is not supported: expected {expected}"
        )
    return METADATA_BACKENDS.load(name)


def open_metadata_db(
    config: SqliteMetadataConfig | PostgresMetadataConfig,
    root: str | Path,
    *,
    state: StateProbe | None = None,
    upgrade: bool = True,
) -> MetadataDB:
    """Open the metadata DB described by a ``[metadata]`` config section (``state`` and
    ``upgrade`` as in :meth:`MetadataDB.open`)."""
    schema_name = config.schema_name if isinstance(config, PostgresMetadataConfig) else None
    return MetadataDB.open(
        metadata_url(config, root), schema_name=schema_name, state=state, upgrade=upgrade
    )


def metadata_absence(
    config: SqliteMetadataConfig | PostgresMetadataConfig, root: str | Path
) -> str | None:
    """Why the configured metadata DB holds no prodml database — ``"does not exist"``,
    ``"is empty (0 bytes)"`` or ``"holds no prodml tables"`` — or ``None``; creates
    nothing (:class:`IntegrityError` for a SQLite file that is not a database)."""
    schema_name = config.schema_name if isinstance(config, PostgresMetadataConfig) else None
    parsed = parse_url(metadata_url(config, root))
    file = sqlite_file(parsed)
    if file is not None:
        absent = _absent(file)
        if absent is not None:
            return absent
    elif parsed.get_backend_name() == "sqlite":
        return "holds no prodml tables"  # in memory: a new database each time
    engine = create_metadata_engine(parsed, schema_name=schema_name)
    try:
        if _has_prodml_tables(engine, schema_name, _location(parsed, schema_name)):
            return None
        return "holds no prodml tables"
    finally:
        engine.dispose()


def metadata_location(
    config: SqliteMetadataConfig | PostgresMetadataConfig, root: str | Path
) -> str:
    """The SQLite file, or the redacted URL and schema, of a ``[metadata]`` section."""
    schema_name = config.schema_name if isinstance(config, PostgresMetadataConfig) else None
    return _location(parse_url(metadata_url(config, root)), schema_name)


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL (``None``: in memory, or not SQLite)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in {"", ":memory:"} or url.query.get("mode") == "memory":
        return None
    return Path(database)


def restore_hint(location: str) -> str:
    """How to get a damaged or lost metadata DB back."""
    return (
        f"stop every prodml process and restore {location} from a backup, or run "
        "`prodml init` in a new directory to start a new empty project"
    )


def corrupt_message(location: str, detail: str) -> str:
    return f"metadata DB {location} is corrupt: {detail}; {restore_hint(location)}"


def missing_message(location: str, absent: str, evidence: str) -> str:
    return (
        f"metadata DB {location} {absent}, but the project has state ({evidence}): "
        "prodml does not re-create it empty, which would lose the registry, its audit "
        f"trail and the deployments; {restore_hint(location)}"
    )


def _location(url: URL, schema_name: str | None) -> str:
    file = sqlite_file(url)
    if file is not None:
        return str(file)
    redacted = redact_url(url)
    return f"{redacted} (schema {schema_name})" if schema_name else redacted


def _absent(file: Path) -> str | None:
    """Why a SQLite file holds no database, before connecting (which would create it)."""
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        return "does not exist"
    return "is empty (0 bytes)" if size == 0 else None


def _refuse_if_state(state: StateProbe, location: str, absent: str) -> None:
    evidence = state()
    if evidence is not None:
        raise StorageError(missing_message(location, absent, evidence))


def _is_corrupt(exc: BaseException) -> bool:
    """Whether SQLite reported the file corrupt or not a database."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    return (
        isinstance(orig, sqlite3.DatabaseError)
        and code is not None
        and (code & 0xFF) in _CORRUPT_CODES
    )


def _at_head(engine: Engine, location: str) -> bool:
    try:
        return at_head(engine)
    except StorageError as exc:
        if exc.__cause__ is not None and _is_corrupt(exc.__cause__):
            raise IntegrityError(corrupt_message(location, describe_error(exc.__cause__))) from exc
        raise


def _has_prodml_tables(engine: Engine, schema_name: str | None, location: str) -> bool:
    """Whether the database holds a prodml version table or any of prodml's tables."""
    try:
        with engine.connect() as conn:
            if stored_revision(conn) is not None:
                return True
            names = set(inspect(conn).get_table_names(schema=schema_name))
    except sa_exc.SQLAlchemyError as exc:
        if _is_corrupt(exc):
            raise IntegrityError(corrupt_message(location, describe_error(exc))) from exc
        raise StorageError(
            f"metadata DB {location}: reading its tables failed: {describe_error(exc)}"
        ) from exc
    return bool(names & set(Base.metadata.tables))
