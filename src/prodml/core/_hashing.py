"""SHA-256 fingerprints over the full content of bytes and files, and the canonical JSON
definitions are hashed from (Arrow tables: :mod:`prodml.core._table_hash`).

>>> fingerprint_bytes(b"abc")[:16]
'ba7816bf8f01cfea'
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

__all__ = ["canonical_json", "fingerprint_bytes", "fingerprint_file"]

_CHUNK = 1 << 20


def fingerprint_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def fingerprint_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's full content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON (sorted keys) used to hash definitions.

    >>> canonical_json({"b": 1, "a": [1, 2]})
    b'{"a":[1,2],"b":1}'
    """
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
