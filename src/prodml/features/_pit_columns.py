"""Column checks and time conversions for the point-in-time join.

Every time column is turned into int64 counts since the Unix epoch in one resolution
per view (``"ns"`` when any column taking part is in nanoseconds, else ``"us"``), so
the join compares plain integers: no cast between naive and timezone-aware values, no
dependency on the DuckDB session time zone. A timezone-aware column's integers are its
UTC instants, so two aware columns compare as instants whatever their zones.

>>> import pyarrow as pa
>>> epoch_ints(pa.chunked_array([pa.array([1, None], pa.timestamp("s"))]), "us",
...            view="v", column="ts").to_pylist()
[1000000, None]
>>> resolution(pa.timestamp("ms"), pa.timestamp("ns", tz="UTC"))
'ns'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from prodml.core.errors import SchemaError, TimestampError

__all__ = [
    "Resolution",
    "check_aware_like",
    "check_key_type",
    "check_timestamp_type",
    "epoch_ints",
    "require_columns",
    "resolution",
]

Resolution = Literal["us", "ns"]

_FACTORS: dict[Resolution, dict[str, int]] = {
    "us": {"s": 1_000_000, "ms": 1_000, "us": 1},
    "ns": {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1},
}


def require_columns(
    available: Sequence[str], wanted: Iterable[tuple[str, str]], *, view: str, side: str
) -> None:
    """Raise :class:`SchemaError` for the first ``(column, role)`` that ``available`` lacks."""
    have = set(available)
    for column, role in wanted:
        if column not in have:
            raise SchemaError(
                f"view {view!r}: {side} have no {role} column {column!r}; "
                f"available columns: {', '.join(available) or '(none)'}"
            )


def check_timestamp_type(kind: pa.DataType, *, view: str, column: str, side: str) -> None:
    """Raise :class:`SchemaError` unless ``kind`` is an Arrow timestamp."""
    if not pa.types.is_timestamp(kind):
        raise SchemaError(
            f"view {view!r}: {side} column {column!r} has type {kind}; expected a timestamp "
            "(TIMESTAMP or TIMESTAMP WITH TIME ZONE, any unit)"
        )


def check_aware_like(
    kind: pa.DataType, entity_kind: pa.DataType, *, view: str, column: str, timestamp: str
) -> None:
    """Raise :class:`TimestampError` when one of two timestamp types has a zone and the other not."""
    aware = kind.tz is not None
    entity_aware = entity_kind.tz is not None
    if aware != entity_aware:
        state = {True: "timezone-aware", False: "timezone-naive"}
        raise TimestampError(
            f"view {view!r}: entity rows column {timestamp!r} is {state[entity_aware]} "
            f"({entity_kind}) but the view's column {column!r} is {state[aware]} ({kind}); "
            "make both timezone-naive or both timezone-aware — the join does not guess a "
            "time zone (e.g. pandas .dt.tz_localize('UTC'), SQL timezone('UTC', column))"
        )


def _key_family(kind: pa.DataType) -> str:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "floating"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return "binary"
    return str(kind)


def check_key_type(
    entity_kind: pa.DataType,
    feature_kind: pa.DataType,
    *,
    view: str,
    entity_column: str,
    feature_column: str,
) -> None:
    """Raise :class:`SchemaError` when a join key's two sides are of different kinds
    (integers of any width match each other, strings of any layout likewise)."""
    if _key_family(entity_kind) != _key_family(feature_kind):
        raise SchemaError(
            f"view {view!r}: join key {feature_column!r} has type {feature_kind} but entity "
            f"column {entity_column!r} has type {entity_kind}; expected the same kind on both sides"
        )


def resolution(*kinds: pa.DataType) -> Resolution:
    """``"ns"`` when any of the timestamp types is in nanoseconds, else ``"us"``."""
    return "ns" if any(kind.unit == "ns" for kind in kinds) else "us"


def epoch_ints(
    values: pa.ChunkedArray, unit: Resolution, *, view: str, column: str
) -> pa.ChunkedArray:
    """Timestamps as int64 counts of ``unit`` since the epoch (UTC instants when aware)."""
    factor = _FACTORS[unit][values.type.unit]
    ints = pc.cast(values, pa.int64())
    if factor == 1:
        return ints
    try:
        return pc.multiply_checked(ints, factor)
    except pa.ArrowInvalid:
        raise TimestampError(
            f"view {view!r}: column {column!r} holds times that do not fit in int64 "
            f"{unit} since 1970; expected times between 1677 and 2262 when any column "
            "taking part is in nanoseconds"
        ) from None
