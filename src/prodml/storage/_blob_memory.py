"""Blobs in a dict: the in-memory backend for tests.

>>> store = MemoryBlobStore()
>>> store.save_bytes("x/1", b"a")
>>> store.exists("x/1"), store.list("x"), store.load_bytes("x/1")
(True, ['x/1'], b'a')
"""

from __future__ import annotations

import builtins
import threading
from pathlib import Path
from typing import Any

from prodml.storage._blobs import BlobStore

__all__ = ["MemoryBlobStore"]


class MemoryBlobStore(BlobStore):
    """A thread-safe :class:`BlobStore` that keeps everything in memory."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Any, root: Path) -> MemoryBlobStore:
        """A fresh, empty store (the config and root are not used)."""
        return cls()

    def __repr__(self) -> str:
        return f"MemoryBlobStore(<{len(self._blobs)} blobs>)"

    def _save_bytes(self, key: str, data: bytes) -> None:
        with self._lock:
            self._blobs[key] = data

    def _load_bytes(self, key: str) -> bytes:
        with self._lock:
            data = self._blobs.get(key)
        if data is None:
            raise self._missing(key)
        return data

    def _exists(self, key: str) -> bool:
        with self._lock:
            return key in self._blobs

    def _list(self, prefix: str) -> builtins.list[str]:
        with self._lock:
            return [key for key in self._blobs if key.startswith(prefix)]

    def _delete(self, key: str) -> None:
        with self._lock:
            self._blobs.pop(key, None)
