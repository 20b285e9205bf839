"""Column types: the names users write in ``Field(name, dtype)`` and their Arrow types.

>>> arrow_type("float64")
DataType(double)
>>> arrow_type("timestamp")
TimestampType(timestamp[us, tz=UTC])
>>> is_compatible(pa_int64(), "float64")
True
>>> is_compatible(arrow_type("string"), "float64")
False
"""

from __future__ import annotations

import pyarrow as pa

from prodml.core.errors import DefinitionError

__all__ = ["DTYPES", "arrow_type", "dtype_name", "is_compatible", "pa_int64"]

DTYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "binary": pa.binary(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
_ALIASES = {"int": "int64", "float": "float64", "str": "string", "double": "float64"}


def pa_int64() -> pa.DataType:
    return pa.int64()


def arrow_type(dtype: str) -> pa.DataType:
    """The Arrow type for a dtype name; raises naming the accepted names."""
    name = _ALIASES.get(dtype, dtype)
    try:
        return DTYPES[name]
    except KeyError:
        raise DefinitionError(
            f"dtype {dtype!r} is unknown: expected one of {', '.join(sorted(DTYPES))}"
        ) from None


def dtype_name(kind: pa.DataType) -> str:
    """The dtype name closest to an Arrow type (for profiles and messages).

    >>> dtype_name(pa.large_string())
    'string'
    """
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_timestamp(kind):
        return "timestamp"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "binary"
    if pa.types.is_date(kind):
        return "date"
    for name, arrow in DTYPES.items():
        if arrow == kind:
            return name
    return str(kind)


def is_compatible(actual: pa.DataType, dtype: str) -> bool:
    """Whether a column of ``actual`` type can be read losslessly as ``dtype``."""
    want = arrow_type(dtype)
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if pa.types.is_null(actual):
        return True
    if pa.types.is_timestamp(want):
        return bool(pa.types.is_timestamp(actual))
    if pa.types.is_date(want):
        return bool(pa.types.is_date(actual))
    if pa.types.is_string(want):
        return bool(pa.types.is_string(actual) or pa.types.is_large_string(actual))
    if pa.types.is_binary(want):
        return bool(pa.types.is_binary(actual) or pa.types.is_large_binary(actual))
    if pa.types.is_floating(want):
        return bool(pa.types.is_floating(actual) or pa.types.is_integer(actual))
    if pa.types.is_integer(want):
        return bool(pa.types.is_integer(actual) and actual.bit_width <= want.bit_width)
    return bool(actual == want)
