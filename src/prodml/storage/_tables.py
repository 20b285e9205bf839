"""Parquet table IO: atomic writes and reads that fail with a message naming the file.

>>> import tempfile
>>> from pathlib import Path
>>> import pyarrow as pa
>>> tmp = tempfile.TemporaryDirectory()
>>> path = write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), Path(tmp.name) / "t.parquet")
>>> read_table(path, columns=["b"]).to_pydict()
{'b': ['x', 'y']}
>>> tmp.cleanup()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prodml.core.errors import NotFoundError, SchemaError, StorageError
from prodml.storage._atomic import atomic_path

__all__ = ["read_table", "write_table"]


def write_table(
    table: pa.Table,
    path: str | Path,
    *,
    compression: str = "zstd",
    before_replace: Callable[[], object] | None = None,
) -> Path:
    """Write ``table`` to Parquet at ``path`` atomically and return the path.

    The file is written to a temp file in the target directory, fsynced, then renamed
    over ``path`` (``before_replace`` runs just before the rename): on any exception the
    temp file is removed and an existing file at ``path`` keeps its old content.
    """
    if not isinstance(table, pa.Table):
        raise TypeError(f"write_table: table must be a pyarrow.Table, got {type(table).__name__}")
    target = Path(path)
    try:
        with (
            atomic_path(target, before_replace=before_replace) as tmp,
            pa.OSFile(str(tmp), "wb") as sink,
        ):
            pq.write_table(table, sink, compression=compression)
    except OSError as exc:
        raise StorageError(f"table file {target}: write failed: {exc}") from exc
    return target


def read_table(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a Parquet file, optionally only ``columns``.

    Raises :class:`NotFoundError` when the file is missing, :class:`SchemaError` when a
    requested column is absent, and :class:`StorageError` when the file is unreadable.
    """
    source = Path(path)
    if not source.is_file():
        raise NotFoundError(f"table file {source} does not exist: expected a Parquet file")
    try:
        if columns is not None:
            names = pq.read_schema(source).names
            missing = [name for name in columns if name not in names]
            if missing:
                raise SchemaError(
                    f"table file {source}: columns {missing} not found; available columns: {names}"
                )
            return pq.read_table(source, columns=list(columns))
        return pq.read_table(source)
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"table file {source}: not a readable Parquet file: {exc}") from exc
