"""Fixtures shared by every test package: a reachable PostgreSQL, fresh isolated schemas
in it, and an empty metadata DB per supported dialect; and the Hypothesis profile.

Hypothesis runs without its per-example ``deadline`` and ``too_slow`` health check:
both time the machine, not the code, and fail on a busy one (speed is measured by the
scripts under ``benchmarks/``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from servicekit import libpq, pg_url_or_skip

settings.register_profile(
    "prodml", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("prodml")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The SQLAlchemy URL of the test PostgreSQL; skips the test when it is unreachable."""
    return pg_url_or_skip()


@pytest.fixture
def pg_schema_factory(pg_url: str) -> Iterator[Callable[..., str]]:
    """Make uniquely named schemas (created unless ``create=False``); all dropped afterwards."""
    import psycopg

    names: list[str] = []

    def make(*, create: bool = True) -> str:
        name = f"prodml_test_{uuid.uuid4().hex[:12]}"
        names.append(name)
        if create:
            with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{name}"')
        return name

    yield make
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """``(url, schema_name)`` of an empty metadata DB, once per supported dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/meta.db", None
    url: str = request.getfixturevalue("pg_url")
    schema: str = request.getfixturevalue("pg_schema_factory")()
    return url, schema
