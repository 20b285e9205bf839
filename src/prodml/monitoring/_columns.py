"""Columns of a Parquet window read one at a time, so that scoring a wide window never
holds more than the columns being scored (a 1M-row float column is 8 MB; the whole
window of 25 columns would be 25 times that, plus the reader's buffers).

>>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
>>> path = tempfile.mkdtemp() + "/w.parquet"
>>> pq.write_table(pa.table({"x": [1.0, 2.0], "c": ["a", None]}), path)
>>> window = ParquetColumns([path])
>>> sorted(window.column_names), window.num_rows
(['c', 'x'], 2)
>>> window["c"].to_pylist()
['a', None]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

__all__ = ["ParquetColumns"]


class ParquetColumns:
    """A window over Parquet files (optionally filtered by an Arrow expression) that
    reads a column when it is asked for; string columns are read dictionary-encoded."""

    def __init__(self, paths: Sequence[str | Path], *, where: pc.Expression | None = None) -> None:
        self._dataset = pads.dataset([str(p) for p in paths], format="parquet")
        self._where = where
        self._rows: int | None = None

    @property
    def column_names(self) -> list[str]:
        return list(self._dataset.schema.names)

    @property
    def num_rows(self) -> int:
        if self._rows is None:
            self._rows = int(self._dataset.count_rows(filter=self._where))
        return self._rows

    def __getitem__(self, column: str) -> pa.ChunkedArray:
        if column not in self._dataset.schema.names:
            raise KeyError(column)
        return self._dataset.to_table(columns=[column], filter=self._where)[column]

    def __len__(self) -> int:
        return self.num_rows
