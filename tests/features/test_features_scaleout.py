"""Scale-out by configuration: the same project on PostgreSQL metadata and a Redis
online store, chosen by environment overrides, behaves as the embedded default."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from featurekit import T0, entity_rows, make_project
from prodml import Project
from servicekit import libpq, pg_url_or_skip, redis_url_or_skip

pytestmark = pytest.mark.integration


@pytest.fixture
def scaled_environ() -> Iterator[dict[str, str]]:
    import psycopg
    import redis

    pg_url = pg_url_or_skip()
    redis_url = redis_url_or_skip()
    schema = f"prodml_test_{uuid.uuid4().hex[:12]}"
    prefix = f"prodml_test_{uuid.uuid4().hex[:8]}"
    yield {
        "PRODML__METADATA__TYPE": "postgresql",
        "PRODML__METADATA__URL": pg_url,
        "PRODML__METADATA__SCHEMA_NAME": schema,
        "PRODML__ONLINE_STORE__TYPE": "redis",
        "PRODML__ONLINE_STORE__URL": redis_url,
        "PRODML__ONLINE_STORE__KEY_PREFIX": prefix,
    }
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_postgres_and_redis_project_matches_embedded(
    tmp_path: Path, scaled_environ: dict[str, str]
) -> None:
    embedded = make_project(tmp_path / "embedded")
    make_project(tmp_path / "scaled").close()
    scaled = Project.open(tmp_path / "scaled", environ=scaled_environ)
    try:
        assert scaled.db.dialect == "postgresql"
        assert type(scaled.features.online).__name__ == "RedisOnlineStore"
        end = T0 + timedelta(days=4, hours=6)
        results = {}
        for name, project in (("embedded", embedded), ("scaled", scaled)):
            project.features.apply()
            project.features.materialize(end=end)
            training = project.features.build_training_set(
                entity_rows(40), "flight_delay", timestamp="sched_dep"
            )
            online = project.features.get_online(
                "flight_delay",
                {"origin": ["EWR", "JFK", "XXX"], "tailnum": ["N1", "N2", "N3"]},
                {"sched_dep_time": [517, 1230, 2359]},
                now=end,
            )
            results[name] = (training.fingerprint, training.to_arrow(), online.values)
        assert results["scaled"][0] == results["embedded"][0]
        assert results["scaled"][1].equals(results["embedded"][1])
        assert results["scaled"][2] == results["embedded"][2]
        assert scaled.features.get_training_set(results["scaled"][0]).table.equals(
            results["scaled"][1]
        )
        again = scaled.features.materialize(end=end)
        assert all(r.rows_read == 0 for r in again)
    finally:
        scaled.close()
        embedded.close()
