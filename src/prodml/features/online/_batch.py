"""Turn an Arrow table into an online write batch: one record per entity, newest first.

The preparation is columnar: timestamps become int64 microseconds (UTC) through Arrow
casts, duplicates of an entity are resolved with one ``numpy.lexsort``, and only the
surviving rows are encoded. A record's features are stored as one orjson object
``{"feature": value}`` so that a reader needs no schema: NaN and ±inf become ``null``,
timestamps and dates become ISO 8601 strings.

Ordering rule: a record is newer than another when its event time is later, or the event
times are equal and both carry a created time and its created time is later. Within one
batch the newest row of an entity wins and ties go to the last row.

>>> from datetime import datetime
>>> import pyarrow as pa
>>> t = pa.table({"id": [7, 7, 8], "ts": [datetime(2013, 1, 2), datetime(2013, 1, 1),
...               datetime(2013, 1, 1)], "x": [1.5, 2.5, float("nan")]})
>>> b = prepare_batch(t, key_columns=["id"], event_time_column="ts", feature_columns=["x"])
>>> b.entity_keys, b.event_us.tolist(), b.payloads
(['[7]', '[8]'], [1357084800000000, 1356998400000000], [b'{"x":1.5}', b'{"x":null}'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from prodml.core.errors import SchemaError, TimestampError
from prodml.features.online._keys import encode_entity_keys

__all__ = ["OnlineBatch", "prepare_batch"]

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC
_STORABLE = "bool, integer, floating, string, timestamp, date, or a list of them"


@dataclass(frozen=True, slots=True)
class OnlineBatch:
    """Records ready for a backend, at most one per entity key.

    ``created_us`` is None when the batch has no created-time column.
    """

    entity_keys: list[str]
    event_us: npt.NDArray[np.int64]
    created_us: npt.NDArray[np.int64] | None
    payloads: list[bytes]

    def __len__(self) -> int:
        return len(self.entity_keys)


def prepare_batch(
    table: pa.Table,
    *,
    key_columns: Sequence[str],
    event_time_column: str,
    feature_columns: Sequence[str],
    created_time_column: str | None = None,
) -> OnlineBatch:
    """Validate ``table`` and reduce it to the newest row per entity, encoded."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if len(set(feature_columns)) != len(feature_columns):
        raise SchemaError(f"feature columns {list(feature_columns)}: expected unique names")
    for name in feature_columns:
        _check_storable(name, _column(table, name, "feature").type)
    event_us = _timestamps_us(table, event_time_column, "event-time")
    created_us = (
        None
        if created_time_column is None
        else _timestamps_us(table, created_time_column, "created-time")
    )
    keys = encode_entity_keys(table, key_columns)
    winners = _newest_per_entity(keys, event_us, created_us)
    if winners is not None:
        table = table.take(pa.array(winners))
        keys = [keys[i] for i in winners.tolist()]
        event_us = event_us[winners]
        created_us = None if created_us is None else created_us[winners]
    return OnlineBatch(keys, event_us, created_us, _encode_payloads(table, feature_columns))


def _column(
    table: pa.Table, name: str, role: str, error: type[SchemaError] = SchemaError
) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise error(f"{role} column {name!r} is missing; table has columns {table.column_names}")
    return table.column(name)


def _timestamps_us(table: pa.Table, name: str, role: str) -> npt.NDArray[np.int64]:
    """Microseconds since the epoch (UTC; naive values are taken as UTC)."""
    column = _column(table, name, role, TimestampError)
    kind = column.type
    if not pa.types.is_timestamp(kind):
        raise TimestampError(f"{role} column {name!r} has type {kind}; expected a timestamp")
    if column.null_count:
        raise TimestampError(
            f"{role} column {name!r} has {column.null_count} null values; expected none"
        )
    micros = column.cast(pa.timestamp("us", tz=kind.tz), safe=False).cast(pa.int64())
    values: npt.NDArray[np.int64] = micros.to_numpy()
    return values


def _newest_per_entity(
    keys: list[str], event_us: npt.NDArray[np.int64], created_us: npt.NDArray[np.int64] | None
) -> npt.NDArray[np.intp] | None:
    """Row positions of the newest row of each entity (ascending), or None if keys are unique."""
    encoded = pa.array(keys, pa.string()).dictionary_encode()
    if len(encoded.dictionary) == len(keys):
        return None
    group = encoded.indices.to_numpy()
    position = np.arange(len(keys))
    sort_keys = (
        (position, event_us, group)
        if created_us is None
        else (position, created_us, event_us, group)
    )
    order = np.lexsort(sort_keys)
    ordered = group[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    winners: npt.NDArray[np.intp] = np.sort(order[last])
    return winners


def _check_storable(name: str, kind: pa.DataType) -> None:
    if not _storable(kind):
        raise SchemaError(f"feature column {name!r} has type {kind}; expected {_STORABLE}")


def _storable(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _storable(kind.value_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _storable(kind.value_type)
    return bool(
        pa.types.is_null(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_timestamp(kind)
        or pa.types.is_date(kind)
    )


def _python_values(column: pa.ChunkedArray) -> list[Any]:
    kind = column.type
    if pa.types.is_float16(kind):
        column = column.cast(pa.float32())
    elif pa.types.is_timestamp(kind):
        column = column.cast(pa.timestamp("us", tz="UTC" if kind.tz else None), safe=False)
    values: list[Any] = column.to_pylist()
    return values


def _encode_payloads(table: pa.Table, names: Sequence[str]) -> list[bytes]:
    if not names:
        return [b"{}"] * table.num_rows
    names = list(names)
    columns = [_python_values(table.column(name)) for name in names]
    dumps = orjson.dumps
    try:
        return [
            dumps(dict(zip(names, row, strict=True)), option=_OPTIONS)
            for row in zip(*columns, strict=True)
        ]
    except orjson.JSONEncodeError as exc:
        raise SchemaError(f"feature columns {names}: a value cannot be stored: {exc}") from None
