"""Fixtures for the storage tests: one fresh PostgreSQL schema per test (the PostgreSQL
URL, the schema factory and ``db_target`` are shared, in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def pg_schema(pg_schema_factory: Callable[..., str]) -> str:
    """A fresh, empty schema of its own for one test."""
    return pg_schema_factory()
