"""The byte-storage interface every artifact backend implements (Metaflow-style).

A key is a relative ``/``-separated path such as ``sha256/ab/cdef…``. The public methods
of :class:`BlobStore` check keys and translate failures; backends implement the
underscored methods only.

>>> check_key("sha256/ab/cd")
'sha256/ab/cd'
>>> check_key("../etc/passwd")
Traceback (most recent call last):
...
ValueError: blob key '../etc/passwd' is invalid: expected '/'-separated, non-empty segments of letters, digits, '.', '_' or '-', none starting with '.'
"""

from __future__ import annotations

import builtins
import hashlib
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from prodml.core.errors import ArtifactNotFoundError
from prodml.storage._atomic import atomic_write

__all__ = ["BlobStore", "check_key"]

# Names starting with "." are reserved for in-flight temp files of the local backend.
_SEGMENT = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")
_CHUNK = 1 << 20


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid blob key, else raise :class:`ValueError`."""
    segments = key.split("/") if isinstance(key, str) else [""]
    if not all(_SEGMENT.fullmatch(s) for s in segments):
        raise ValueError(
            f"blob key {key!r} is invalid: expected '/'-separated, non-empty segments of "
            "letters, digits, '.', '_' or '-', none starting with '.'"
        )
    return key


class BlobStore(ABC):
    """Named bytes: save, load, list by prefix, delete.

    ``save_*`` overwrite atomically (a reader sees the old or the new bytes, never a
    mix); ``load_*`` raise :class:`ArtifactNotFoundError` for a missing key;
    ``delete`` of a missing key is a no-op. ``save_file``/``load_file`` stream;
    backends that cannot stream inherit the in-memory fallbacks.
    """

    @classmethod
    def from_config(cls, config: Any, root: Path) -> BlobStore:
        """Build the store from its config section; relative paths are under ``root``."""
        raise TypeError(f"{cls.__name__} cannot be built from a config section")

    def save_bytes(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` under ``key``, replacing any previous value."""
        self._save_bytes(check_key(key), bytes(data))

    def load_bytes(self, key: str) -> bytes:
        """The bytes under ``key``."""
        return self._load_bytes(check_key(key))

    def save_file(self, key: str, source: str | Path) -> None:
        """Store the content of the file ``source`` under ``key``."""
        self._save_file(check_key(key), Path(source))

    def load_file(self, key: str, dest: str | Path) -> None:
        """Write the bytes under ``key`` to the file ``dest``, atomically."""
        self._load_file(check_key(key), Path(dest))

    def sha256(self, key: str) -> str:
        """The SHA-256 (hex) of the bytes under ``key``, read as a stream where the backend
        can, nothing written."""
        return self._sha256(check_key(key))

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value."""
        return self._exists(check_key(key))

    def list(self, prefix: str = "") -> builtins.list[str]:
        """Every key starting with ``prefix`` (a plain string prefix), sorted."""
        if prefix:
            check_key(prefix.removesuffix("/"))
        return sorted(k for k in self._list(prefix) if k.startswith(prefix))

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens if it does not exist."""
        self._delete(check_key(key))

    def _missing(self, key: str) -> ArtifactNotFoundError:
        return ArtifactNotFoundError(f"blob {key!r} not found in {self!r}")

    @abstractmethod
    def _save_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def _load_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _list(self, prefix: str) -> builtins.list[str]:
        """Keys starting with ``prefix``; may return more (the caller filters)."""

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    def _save_file(self, key: str, source: Path) -> None:
        self._save_bytes(key, source.read_bytes())

    def _sha256(self, key: str) -> str:
        return hashlib.sha256(self._load_bytes(key)).hexdigest()

    def _load_file(self, key: str, dest: Path) -> None:
        data = self._load_bytes(key)
        with atomic_write(dest) as handle:
            for start in range(0, len(data), _CHUNK):
                handle.write(data[start : start + _CHUNK])
