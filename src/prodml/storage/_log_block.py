"""``LogBlock``: many log records given by column (a batch of shadow predictions), which
:class:`~prodml.storage._logs.LogWriter` queues and writes without a dict per record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LogBlock"]


@dataclass(frozen=True, slots=True, eq=False)
class LogBlock:
    """``rows`` log records given by column, for writers of many similar records at once
    (a batch of shadow predictions): no dict per record is made, queued or read back.

    ``fields`` maps each field, in column order, to its value for every row, or, for a
    field named in ``varying``, to a sequence of ``rows`` values (one per row). The time
    and partition fields hold one value for the whole block.

    >>> from datetime import datetime
    >>> block = LogBlock(2, {"time": datetime(2013, 1, 1), "endpoint": "e", "y": [1, 2]},
    ...                  varying=frozenset({"y"}))
    >>> block.head(1).fields["y"], block.head(1).rows
    ([1], 1)
    """

    rows: int
    fields: Mapping[str, Any]
    varying: frozenset[str] = frozenset()

    def head(self, rows: int) -> LogBlock:
        """The block of the first ``rows`` records."""
        fields = {
            key: list(value[:rows]) if key in self.varying else value
            for key, value in self.fields.items()
        }
        return LogBlock(rows, fields, self.varying)

    def column(self, key: str) -> list[Any]:
        """The values of field ``key`` for every row (None where the block lacks it)."""
        if key in self.varying:
            return list(self.fields[key])
        return [self.fields.get(key)] * self.rows
