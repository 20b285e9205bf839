"""PostgreSQL specifics of the metadata DB: schemas and ``timestamptz``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select, text

from prodml.core import PostgresMetadataConfig
from prodml.storage import FeatureHeadRow, MetadataDB, head_revision, open_metadata_db

pytestmark = pytest.mark.integration

T0 = datetime(2013, 7, 1, 12, 0, tzinfo=UTC)


def test_tables_live_in_the_configured_schema(pg_url: str, pg_schema: str) -> None:
    config = PostgresMetadataConfig(type="postgresql", url=pg_url, schema_name=pg_schema)
    with open_metadata_db(config, ".") as db:
        assert db.dialect == "postgresql"
        inspector = inspect(db.engine)
        assert "feature_heads" in inspector.get_table_names(schema=pg_schema)
        with db.session() as session:
            assert session.execute(text("SELECT current_schema()")).scalar() == pg_schema


def test_a_missing_schema_is_created(pg_url: str, pg_schema_factory: Callable[..., str]) -> None:
    schema = pg_schema_factory(create=False)
    with MetadataDB.open(pg_url, schema_name=schema) as db:
        assert db.current_revision() == head_revision()
        assert "datasets" in inspect(db.engine).get_table_names(schema=schema)


def test_times_are_utc_whatever_the_session_time_zone(pg_url: str, pg_schema: str) -> None:
    with MetadataDB.open(pg_url, schema_name=pg_schema) as db:
        with db.session() as session:
            session.add(FeatureHeadRow(kind="entity", name="f", version="a" * 64, updated_at=T0))
        with db.session() as session:
            session.execute(text("SET LOCAL TIME ZONE 'Asia/Tokyo'"))
            value = session.scalars(select(FeatureHeadRow.updated_at)).one()
            raw = session.execute(text("SELECT updated_at::text FROM feature_heads")).scalar()
    assert value == T0
    assert value.utcoffset() == timedelta(0)
    assert raw == "2013-07-01 21:00:00+09"
