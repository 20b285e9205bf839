"""Fixtures for the storage tests: a reachable PostgreSQL and fresh, isolated schemas."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

PG_ENV = "PRODML_TEST_POSTGRES_URL"
PG_CANDIDATES = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The SQLAlchemy URL of the test PostgreSQL; skips the test when it is unreachable."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("PostgreSQL tests need psycopg (pip install 'prodml[postgres]')")
    candidates = [os.environ[PG_ENV]] if os.environ.get(PG_ENV) else list(PG_CANDIDATES)
    errors = []
    for url in candidates:
        try:
            with psycopg.connect(_libpq(url), connect_timeout=3):
                return url
        except psycopg.Error as exc:
            errors.append(f"{url}: {str(exc).strip().splitlines()[0] if str(exc) else exc!r}")
    pytest.skip("PostgreSQL not reachable (set " + PG_ENV + " to override): " + "; ".join(errors))


@pytest.fixture
def pg_schema_factory(pg_url: str) -> Iterator[Callable[..., str]]:
    """Make uniquely named schemas (created unless ``create=False``); all dropped afterwards."""
    import psycopg

    names: list[str] = []

    def make(*, create: bool = True) -> str:
        name = f"prodml_test_{uuid.uuid4().hex[:12]}"
        names.append(name)
        if create:
            with psycopg.connect(_libpq(pg_url), autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{name}"')
        return name

    yield make
    with psycopg.connect(_libpq(pg_url), autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_schema(pg_schema_factory: Callable[..., str]) -> str:
    """A fresh, empty schema of its own for one test."""
    return pg_schema_factory()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db_target(request: pytest.FixtureRequest, tmp_path: object) -> tuple[str, str | None]:
    """``(url, schema_name)`` of an empty metadata DB, once per supported dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/meta.db", None
    url: str = request.getfixturevalue("pg_url")
    schema: str = request.getfixturevalue("pg_schema")
    return url, schema
