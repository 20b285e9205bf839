"""Entity keys: one deterministic, type-aware string per entity of a feature view.

A key is the compact JSON array of the entity's join-key values (written by orjson), so
``1`` and ``"1"`` are different entities, a multi-column key needs no escaping scheme of
its own, and the stored key stays readable. Integer and float widths do not matter
(``numpy.int32(1)`` and ``1`` give the same key) but logical types do: ``1``, ``1.0``,
``True`` and ``"1"`` are four entities, so a caller coerces request values to the join
keys' declared dtypes first. Naive datetimes are taken as UTC.

Why JSON rather than Arrow string kernels: encoding 100k rows costs about 20 ms, half of
it in ``to_pylist``; an Arrow-only path saved 10 ms on integer keys and none on the rest.

>>> encode_entity_key((1,))
'[1]'
>>> encode_entity_key(("1",))
'["1"]'
>>> encode_entity_key(("JFK", 2013))
'["JFK",2013]'
>>> import pyarrow as pa
>>> encode_entity_keys(pa.table({"origin": ["JFK", "LGA"], "year": [2013, 2013]}), ["origin", "year"])
['["JFK",2013]', '["LGA",2013]']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from prodml.core.errors import SchemaError

__all__ = ["encode_entity_key", "encode_entity_keys"]

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC
_SUPPORTED = "str, int, float, bool, date or datetime"


def encode_entity_key(values: tuple[Any, ...]) -> str:
    """The stored key of one entity, given its join-key values in the view's key order."""
    if not isinstance(values, tuple):
        raise TypeError(
            f"entity key: expected a tuple of join-key values, got {type(values).__name__} "
            f"{values!r}"
        )
    try:
        return orjson.dumps(values, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        kinds = ", ".join(type(v).__name__ for v in values)
        raise SchemaError(
            f"entity key {values!r}: value types ({kinds}) are not supported; expected {_SUPPORTED}"
        ) from None


def encode_entity_keys(table: pa.Table, columns: Sequence[str]) -> list[str]:
    """The stored keys of every row of ``table``, built from its join-key ``columns``.

    Equal to ``encode_entity_key`` applied to each row; raises :class:`SchemaError` for a
    missing column, a null value or an unsupported type.
    """
    if not columns:
        raise SchemaError("entity key columns: expected at least one column name, got none")
    lists = [_key_values(table, name) for name in columns]
    dumps = orjson.dumps
    try:
        return [dumps(row, option=_OPTIONS).decode() for row in zip(*lists, strict=True)]
    except orjson.JSONEncodeError:
        raise SchemaError(
            f"entity key columns {list(columns)}: values are not supported; expected {_SUPPORTED}"
        ) from None


def _key_values(table: pa.Table, name: str) -> list[Any]:
    if name not in table.column_names:
        raise SchemaError(
            f"entity key column {name!r} is missing; table has columns {table.column_names}"
        )
    column = table.column(name)
    if column.null_count:
        raise SchemaError(
            f"entity key column {name!r} has {column.null_count} null values; expected none"
        )
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = kind.value_type
    if pa.types.is_timestamp(kind):
        column = column.cast(pa.timestamp("us", tz="UTC" if kind.tz else None), safe=False)
    values: list[Any] = column.to_pylist()
    return values
