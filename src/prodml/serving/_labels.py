"""``prodml labels import FILE``: labels from a batch label job into the label log.

The file (Parquet or CSV) has a ``label`` column and either ``request_id`` or entity
key columns with an ``event_time``; ``time`` (when the label became known) defaults to
now. Rows go through the same checks as ``POST /v1/feedback`` and the same log writer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prodml.core import Clock, SchemaError, SourceError
from prodml.features import read_entity_rows
from prodml.serving._feedback import parse_feedback
from prodml.storage import LogStore

__all__ = ["import_labels"]

_CHUNK = 10_000
_META = frozenset({"request_id", "event_time", "label", "reward", "time", "endpoint"})


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def import_labels(
    path: Path,
    *,
    endpoint: str,
    store: LogStore,
    clock: Clock,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Append the file's labels to the label log ``store``; return the rows written.

    The whole file is checked before anything is written, so a bad row writes nothing."""
    table = read_entity_rows(path, what="labels file")
    if "label" not in table.column_names and "reward" not in table.column_names:
        raise SchemaError(
            f"labels file {str(path)!r}: no 'label' or 'reward' column; columns are "
            f"{table.column_names}"
        )
    keys = [c for c in table.column_names if c not in _META]
    now = clock.now()
    records: list[dict[str, Any]] = []
    for start in range(0, table.num_rows, _CHUNK):
        chunk = table.slice(start, _CHUNK).to_pylist()
        items = []
        for row in chunk:
            item: dict[str, Any] = {"endpoint": row.get("endpoint") or endpoint}
            for name in ("request_id", "label", "reward"):
                if row.get(name) is not None:
                    item[name] = row[name]
            if isinstance(item.get("request_id"), int):
                item["request_id"] = str(item["request_id"])
            for name in ("event_time", "time"):
                if row.get(name) is not None:
                    value = row[name]
                    if isinstance(value, datetime) and value.tzinfo is None:
                        value = value.replace(tzinfo=UTC)
                    item[name] = _iso(value)
            if keys and "request_id" not in item:
                item["entities"] = {k: row[k] for k in keys}
            items.append(item)
        for record in parse_feedback({"items": items}, now=now):
            record["source"] = f"import:{Path(path).name}"
            records.append(record)
    with store.open_writer(clock=clock, max_queue=max(len(records), 1) + 1) as writer:
        for index, record in enumerate(records):
            writer.append(record)
            if progress is not None and index % _CHUNK == 0:
                progress(index, len(records))
    stats = writer.stats
    if stats.queued or stats.dropped:
        raise SourceError(
            f"labels file {str(path)!r}: {stats.queued + stats.dropped} of {len(records)} rows "
            f"were not written ({stats.last_error})"
        )
    if progress is not None:
        progress(len(records), len(records))
    return stats.written_rows
