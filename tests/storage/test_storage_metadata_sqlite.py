"""SQLite specifics of the metadata DB, URLs from the config, and error reporting."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from prodml.core import (
    ConfigError,
    PostgresMetadataConfig,
    SqliteMetadataConfig,
    StorageError,
)
from prodml.storage import (
    METADATA_BACKENDS,
    FeatureHeadRow,
    MetadataDB,
    head_revision,
    metadata_url,
    open_metadata_db,
    redact_url,
)

T0 = datetime(2013, 7, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> MetadataDB:
    return MetadataDB.open(f"sqlite:///{tmp_path}/meta.db")


def test_connections_use_wal_foreign_keys_and_a_busy_timeout(db: MetadataDB) -> None:
    with db.session() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert session.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
    assert db.dialect == "sqlite"
    db.close()


def test_times_are_stored_as_naive_utc_text(db: MetadataDB) -> None:
    with db.session() as session:
        session.add(FeatureHeadRow(kind="entity", name="flight", version="a" * 64, updated_at=T0))
    with db.engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT updated_at FROM feature_heads").scalar()
    assert raw == "2013-07-01 12:00:00.000000"
    db.close()


def test_write_takes_the_database_write_lock_up_front(db: MetadataDB) -> None:
    with db.write() as session:
        # A reserved lock is held although nothing was written yet: another
        # connection cannot start a write transaction without waiting.
        with db.engine.connect() as other:
            other.exec_driver_sql("PRAGMA busy_timeout = 0")
            with pytest.raises(OperationalError, match="database is locked"):
                other.exec_driver_sql("BEGIN IMMEDIATE")
        assert session.scalars(select(FeatureHeadRow)).all() == []
    db.close()


def test_in_memory_database_works() -> None:
    with MetadataDB.open("sqlite://") as db:
        assert type(db) is METADATA_BACKENDS.load("sqlite")
        with db.session() as session:
            session.add(
                FeatureHeadRow(kind="entity", name="flight", version="a" * 64, updated_at=T0)
            )
        with db.session() as session:
            assert session.scalars(select(FeatureHeadRow.name)).all() == ["flight"]


def test_metadata_url_resolves_sqlite_paths_against_the_root(tmp_path: Path) -> None:
    relative = metadata_url(SqliteMetadataConfig(path=".prodml/meta.db"), tmp_path)
    assert relative == f"sqlite:///{tmp_path.absolute()}/.prodml/meta.db"
    absolute = metadata_url(SqliteMetadataConfig(path="/var/lib/meta.db"), tmp_path)
    assert absolute == "sqlite:////var/lib/meta.db"
    pg = PostgresMetadataConfig(type="postgresql", url="postgresql+psycopg://u@h/db")
    assert metadata_url(pg, tmp_path) == "postgresql+psycopg://u@h/db"


def test_open_metadata_db_from_the_default_config(tmp_path: Path) -> None:
    with open_metadata_db(SqliteMetadataConfig(), tmp_path) as db:
        assert db.current_revision() == head_revision()
    assert (tmp_path / ".prodml" / "meta.db").is_file()


def test_redact_url_hides_the_password() -> None:
    assert redact_url("postgresql+psycopg://app:pa55@db/x") == "postgresql+psycopg://app:***@db/x"
    assert redact_url("sqlite:////tmp/meta.db") == "sqlite:////tmp/meta.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "metadata DB URL 'not a url' is invalid"),
        (
            "mysql://u:pw@h/db",
            "backend 'mysql' is not supported: expected 'sqlite' or 'postgresql'",
        ),
    ],
)
def test_unusable_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        MetadataDB.open(url)
    assert "pw" not in str(info.value)


def test_a_dialect_class_opens_only_its_own_urls(tmp_path: Path) -> None:
    postgres = METADATA_BACKENDS.load("postgresql")
    with pytest.raises(ConfigError, match="PostgresMetadataDB cannot open a 'sqlite' URL"):
        postgres.open(f"sqlite:///{tmp_path}/m.db")
    assert not (tmp_path / "m.db").exists()
    with METADATA_BACKENDS.load("sqlite").open(f"sqlite:///{tmp_path}/m.db") as db:
        assert db.dialect == "sqlite"


def test_schema_name_is_refused_on_sqlite(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="schema_name 'x' is only supported on PostgreSQL"):
        MetadataDB.open(f"sqlite:///{tmp_path}/m.db", schema_name="x")


def test_invalid_schema_name_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"schema_name 'a;drop' is invalid"):
        MetadataDB.open("postgresql+psycopg://u@127.0.0.1:1/x", schema_name="a;drop")


def test_unreachable_server_is_a_storage_error_without_the_password() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StorageError, match=r"u:\*\*\*@127\.0\.0\.1:1/x: cannot connect") as info:
        MetadataDB.open("postgresql+psycopg://u:hunter2@127.0.0.1:1/x")
    assert "hunter2" not in str(info.value)


def test_unopenable_sqlite_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "meta.db").mkdir()  # a directory where the database file should be
    with pytest.raises(StorageError, match=r"metadata DB sqlite:///.*meta\.db: cannot connect"):
        MetadataDB.open(f"sqlite:///{tmp_path}/meta.db")
