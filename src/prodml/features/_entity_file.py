"""Entity rows read from a file the user names: Parquet (a file or a directory of files)
or CSV. Every failure is a :class:`SourceError` naming the file and what is wrong with
it — missing, empty, not Parquet, unreadable — never a raw Arrow or OS error.

>>> import tempfile
>>> from pathlib import Path
>>> tmp = tempfile.TemporaryDirectory()
>>> empty = Path(tmp.name) / "rows.parquet"
>>> _ = empty.write_bytes(b"")
>>> try:
...     read_entity_rows(empty)
... except SourceError as error:
...     print(str(error).split("' ", 1)[1])
is empty (0 bytes); expected a Parquet file
>>> tmp.cleanup()
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from prodml.core import SchemaError, SourceError

__all__ = ["read_entity_rows"]


def read_entity_rows(
    path: str | Path, *, timestamp: str | None = None, what: str = "entity rows file"
) -> pa.Table:
    """The rows of a Parquet file or directory, or of a ``.csv`` file (whose
    ``timestamp`` column, when given and not already a timestamp, is read as UTC)."""
    source = Path(path)
    where = f"{what} {str(source)!r}"
    if not source.exists():
        raise SourceError(f"{where} does not exist; expected a Parquet or CSV file")
    is_csv = source.suffix.lower() == ".csv"
    kind = "CSV" if is_csv else "Parquet"
    if source.is_file() and source.stat().st_size == 0:
        raise SourceError(f"{where} is empty (0 bytes); expected a {kind} file")
    try:
        if is_csv:
            return _csv(source, timestamp, where)
        if source.is_dir() and not any(source.rglob("*.parquet")):
            raise SourceError(f"{where} is a directory without .parquet files")
        return pq.read_table(source)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SourceError(f"{where} is not a {kind} file (or is damaged): {exc}") from exc
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{where} cannot be read: {exc}") from exc


def _csv(source: Path, timestamp: str | None, where: str) -> pa.Table:
    table = pacsv.read_csv(source)
    if timestamp is None or timestamp not in table.column_names:
        return table
    if pa.types.is_timestamp(table.schema.field(timestamp).type):
        return table
    try:
        column = table.column(timestamp).cast(pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(
            f"{where}: column {timestamp!r} is not a timestamp "
            f"(expected ISO 8601 times such as 2013-01-01T05:00:00Z): {exc}"
        ) from None
    return table.set_column(table.schema.get_field_index(timestamp), timestamp, column)
