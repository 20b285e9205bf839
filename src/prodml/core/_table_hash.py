"""SHA-256 fingerprint of an Arrow table over its full content.

A table's fingerprint depends on its schema and its logical values only — not on how
its rows are split into chunks, not on the bytes hidden under null slots, not on the
file encoding it was read from — and every row contributes (no sampling).

>>> import pyarrow as pa
>>> t = pa.table({"a": [1, 2, None], "b": ["x", None, "z"]})
>>> chunked = pa.concat_tables([t.slice(0, 1), t.slice(1)])
>>> fingerprint_table(t) == fingerprint_table(chunked)
True
>>> fingerprint_table(t) == fingerprint_table(pa.table({"a": [1, 2, 3], "b": ["x", None, "z"]}))
False
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["fingerprint_table"]


def fingerprint_table(table: pa.Table | pa.RecordBatch) -> str:
    """Hex SHA-256 of a table's schema and every value, independent of chunking."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    digest = hashlib.sha256()
    digest.update(b"prodml-table-v1\x00")
    digest.update(str(table.num_rows).encode())
    for name, column in zip(table.column_names, table.columns, strict=True):
        digest.update(b"\x00col\x00" + name.encode() + b"\x00" + str(column.type).encode())
        digest.update(_column_digest(column))
    return digest.hexdigest()


def _column_digest(column: pa.ChunkedArray) -> bytes:
    validity = hashlib.sha256()
    lengths = hashlib.sha256()
    values = hashlib.sha256()
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        if isinstance(chunk, pa.DictionaryArray):
            chunk = chunk.dictionary_decode()
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        validity.update(valid.astype(np.uint8).tobytes())
        _hash_values(chunk, valid, lengths, values)
    out = hashlib.sha256()
    for part in (validity, lengths, values):
        out.update(part.digest())
    return out.digest()


def _hash_values(chunk: pa.Array, valid: np.ndarray, lengths: Any, values: Any) -> None:
    kind = chunk.type
    if (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):
        blank = b"" if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) else ""
        filled = pc.if_else(pc.is_valid(chunk), chunk, pa.scalar(blank, type=kind))
        lengths.update(
            pc.binary_length(filled).to_numpy(zero_copy_only=False).astype("<i8").tobytes()
        )
        offsets_type = (
            np.int64
            if (pa.types.is_large_string(kind) or pa.types.is_large_binary(kind))
            else np.int32
        )
        buffers = filled.buffers()
        offsets = np.frombuffer(buffers[1], dtype=offsets_type)[
            filled.offset : filled.offset + len(filled) + 1
        ]
        if buffers[2] is not None and len(offsets):
            values.update(memoryview(buffers[2])[int(offsets[0]) : int(offsets[-1])])
        return
    if pa.types.is_boolean(kind):
        data = chunk.fill_null(False).to_numpy(zero_copy_only=False)
        values.update((data & valid).astype(np.uint8).tobytes())
        return
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind):
        storage = chunk.view(_storage_type(kind)) if pa.types.is_temporal(kind) else chunk
        data = storage.fill_null(0).to_numpy(zero_copy_only=False)
        if data.dtype.kind == "f":
            data = np.where(np.isnan(data), np.nan, data)  # one NaN bit pattern
        values.update(np.ascontiguousarray(data).tobytes())
        return
    # Nested, decimal and other rare types: canonical JSON of the Python values.
    values.update(orjson.dumps(chunk.to_pylist(), default=str, option=orjson.OPT_NON_STR_KEYS))


def _storage_type(kind: pa.DataType) -> pa.DataType:
    return pa.int32() if kind.bit_width == 32 else pa.int64()
