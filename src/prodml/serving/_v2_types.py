"""V2 tensor datatypes: the NumPy dtype each one travels as, and how they map to and from
the dtypes of a model's signature.

>>> v2_datatype("int16"), dtype_from_v2("UINT8"), family_of("UINT32")
('INT16', 'int16', 'INT')
"""

from __future__ import annotations

from prodml.core.errors import DefinitionError

__all__ = [
    "DATATYPES",
    "NUMPY_DTYPES",
    "V2_OF",
    "accepts",
    "dtype_from_v2",
    "family_of",
    "v2_datatype",
]

NUMPY_DTYPES = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip
DATATYPES = (*NUMPY_DTYPES, "BYTES")
"""Every V2 tensor datatype this server reads."""
V2_OF = {
    "bool": "BOOL", "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float32": "FP32", "float64": "FP64",
    "string": "BYTES", "binary": "BYTES", "date": "BYTES", "timestamp": "BYTES",
}  # fmt: skip
_FROM_V2 = {
    **{v: k for k, v in V2_OF.items() if v != "BYTES"},
    "BYTES": "string", "FP16": "float32",
    "UINT8": "int16", "UINT16": "int32", "UINT32": "int64", "UINT64": "int64",
}  # fmt: skip


def v2_datatype(dtype: str) -> str:
    """The V2 datatype of a signature dtype name (text-like ones travel as BYTES).

    >>> v2_datatype("float32"), v2_datatype("timestamp")
    ('FP32', 'BYTES')
    """
    try:
        return V2_OF[dtype]
    except KeyError:
        raise DefinitionError(
            f"dtype {dtype!r} has no V2 datatype: expected one of {', '.join(sorted(V2_OF))}"
        ) from None


def dtype_from_v2(datatype: str) -> str:
    """The signature dtype name a V2 datatype is read as (unsigned ones widen).

    >>> dtype_from_v2("UINT16"), dtype_from_v2("BYTES")
    ('int32', 'string')
    """
    try:
        return _FROM_V2[datatype]
    except KeyError:
        raise DefinitionError(
            f"V2 datatype {datatype!r} is unknown: expected one of {', '.join(sorted(_FROM_V2))}"
        ) from None


_FAMILIES = {d: "INT" if "INT" in d else "FP" if "FP" in d else d for d in [*NUMPY_DTYPES, "BYTES"]}


def family_of(datatype: str) -> str:
    """BOOL, BYTES, FP or INT (UINT counts as INT)."""
    return _FAMILIES[datatype]


def accepts(dtype: str, family: str, *, lenient: bool) -> bool:
    """Whether a column of ``dtype`` reads a tensor of ``family``; in a 2-D tensor
    (``lenient``) any numeric family feeds any numeric column (whole values checked later)."""
    want = family_of(V2_OF[dtype])
    if want in ("FP", "INT") and family in ("FP", "INT"):
        return lenient or family == "INT" or want == "FP"
    return want == family
