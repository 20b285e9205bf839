from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from featurekit import make_project
from prodml import Project


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "proj")
    try:
        yield proj
    finally:
        proj.close()


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh in-memory DuckDB connection for the point-in-time engine tests."""
    connection = duckdb.connect()
    try:
        yield connection
    finally:
        connection.close()
