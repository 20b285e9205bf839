"""Atomic Parquet writes and checked reads."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prodml.core import NotFoundError, SchemaError, StorageError
from prodml.storage import read_table, write_table


def _table(n: int = 3) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "name": pa.array([f"n{i}" if i % 2 else None for i in range(n)], pa.string()),
            "t": pa.array(
                [datetime(2013, 1, 1, i, tzinfo=UTC) for i in range(n)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def test_round_trip_keeps_schema_and_values(tmp_path: Path) -> None:
    table = _table()
    path = write_table(table, tmp_path / "nested" / "t.parquet")
    assert path == tmp_path / "nested" / "t.parquet"
    assert read_table(path).equals(table)
    assert read_table(path, columns=["t", "id"]).column_names == ["t", "id"]


def test_write_replaces_existing_content(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write_table(_table(3), path)
    write_table(_table(5), path)
    assert read_table(path).num_rows == 5
    assert os.listdir(tmp_path) == ["t.parquet"]


def test_failed_write_leaves_no_partial_file_and_keeps_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.parquet"
    write_table(_table(3), path)
    before = path.read_bytes()

    def crash(table: pa.Table, where: Any, **kwargs: Any) -> None:
        where.write(b"PAR1 half a file")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("prodml.storage._tables.pq.write_table", crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_table(_table(10), path)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_table(_table(10), tmp_path / "new.parquet")
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["t.parquet"]


def test_arrow_writes_its_own_file_not_a_python_file_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arrow takes the GIL for each write into a Python file object (thousands per
    Parquet file), which stalls every other thread of a server while a log is written."""
    seen: list[Any] = []
    real = pq.write_table

    def spy(table: pa.Table, where: Any, **kwargs: Any) -> None:
        seen.append(where)
        real(table, where, **kwargs)

    monkeypatch.setattr("prodml.storage._tables.pq.write_table", spy)
    path = write_table(_table(20), tmp_path / "t.parquet")
    assert len(seen) == 1
    assert isinstance(seen[0], pa.NativeFile)
    assert not isinstance(seen[0], pa.PythonFile)
    assert read_table(path).equals(_table(20))
    assert os.listdir(tmp_path) == ["t.parquet"]


def test_reading_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"table file .*nope\.parquet does not exist"):
        read_table(tmp_path / "nope.parquet")


def test_reading_missing_columns_names_them(tmp_path: Path) -> None:
    path = write_table(_table(), tmp_path / "t.parquet")
    with pytest.raises(
        SchemaError,
        match=r"columns \['dep_delay'\] not found; available columns: \['id', 'name', 't'\]",
    ):
        read_table(path, columns=["id", "dep_delay"])


def test_reading_a_corrupt_file_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"definitely not parquet")
    with pytest.raises(StorageError, match=r"t\.parquet: not a readable Parquet file"):
        read_table(path)


def test_write_refuses_non_tables(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"must be a pyarrow\.Table, got dict"):
        write_table({"a": [1]}, tmp_path / "t.parquet")
