"""Partitions of a large point-in-time join (see :mod:`~prodml.features._pit_plan`):
each side's rows split by a hash of their keys, computed so that equal keys land in the
same partition whatever their widths or layouts on the two sides, each side keeping its
row order within a partition."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = ["partitions"]

Positions = npt.NDArray[np.int64]


def partitions(
    con: duckdb.DuckDBPyConnection,
    keys: Sequence[tuple[pa.ChunkedArray, pa.ChunkedArray]],
    parts: int,
    name: str,
) -> tuple[list[Positions], list[Positions]]:
    """The entity rows and the feature rows of each of ``parts`` partitions, in row
    order; ``keys`` pairs each entity key column with its feature key column, ``name``
    prefixes the table registered on ``con`` while the hashes are computed."""
    types = [_hash_type(e.type, f.type) for e, f in keys]
    entity = _partition_ids(con, [e for e, _ in keys], types, parts, name)
    feature = _partition_ids(con, [f for _, f in keys], types, parts, name)
    return _split(entity, parts), _split(feature, parts)


def _hash_type(entity_key: pa.DataType, feature_key: pa.DataType) -> str | None:
    """The SQL type a key's two sides are hashed as, so that equal values hash alike
    (None: the sides are of one type already)."""
    kinds = (entity_key, feature_key)
    if all(pa.types.is_integer(k) for k in kinds):
        return "HUGEINT"
    if all(pa.types.is_floating(k) for k in kinds):
        return "DOUBLE"
    if all(pa.types.is_string(k) or pa.types.is_large_string(k) or pa.types.is_string_view(k) for k in kinds):  # fmt: skip
        return "VARCHAR"
    if all(pa.types.is_binary(k) or pa.types.is_large_binary(k) or pa.types.is_binary_view(k) for k in kinds):  # fmt: skip
        return "BLOB"
    return None


def _partition_ids(
    con: duckdb.DuckDBPyConnection,
    keys: Sequence[pa.ChunkedArray],
    types: Sequence[str | None],
    parts: int,
    name: str,
) -> npt.NDArray[np.uint16]:
    """Each row's partition: a hash of its keys (in DuckDB, in row order) modulo ``parts``."""
    table = pa.table({f"__k{i}": key for i, key in enumerate(keys)})
    relation = f"{name}_keys"
    con.register(relation, table)
    try:
        columns = ", ".join(
            f"__k{i}" if kind is None else f"CAST(__k{i} AS {kind})" for i, kind in enumerate(types)
        )
        found = con.sql(
            f"SELECT (hash({columns}) % {parts})::USMALLINT AS p FROM {relation}"
        ).to_arrow_table()
    finally:
        con.unregister(relation)
    return np.asarray(found.column("p").to_numpy(), np.uint16)


def _split(ids: npt.NDArray[np.uint16], parts: int) -> list[Positions]:
    """The rows of each partition, in row order (a stable sort of small ints: one radix
    pass)."""
    order = np.argsort(ids, kind="stable").astype(np.int64, copy=False)
    bounds = np.cumsum(np.bincount(ids, minlength=parts))[:-1]
    return np.split(order, bounds)
