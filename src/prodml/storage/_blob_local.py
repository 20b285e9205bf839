"""Blobs as files under a root directory; every write is atomic (temp + fsync + rename).

>>> import tempfile
>>> tmp = tempfile.TemporaryDirectory()
>>> store = LocalBlobStore(tmp.name)
>>> store.save_bytes("a/b.txt", b"hi")
>>> store.load_bytes("a/b.txt"), store.list("a/")
(b'hi', ['a/b.txt'])
>>> tmp.cleanup()
"""

from __future__ import annotations

import builtins
import os
import shutil
from pathlib import Path
from typing import Any

from prodml.core import LocalArtifactsConfig, fingerprint_file
from prodml.storage._atomic import atomic_write, is_temp_name
from prodml.storage._blobs import BlobStore

__all__ = ["LocalBlobStore"]


class LocalBlobStore(BlobStore):
    """A :class:`BlobStore` on the local file system; key ``a/b`` is file ``root/a/b``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def from_config(cls, config: Any, root: Path) -> LocalBlobStore:
        """Build from a :class:`LocalArtifactsConfig`; a relative path is under ``root``."""
        if not isinstance(config, LocalArtifactsConfig):
            raise TypeError(
                f"LocalBlobStore.from_config: expected LocalArtifactsConfig, "
                f"got {type(config).__name__}"
            )
        path = Path(config.path)
        return cls(path if path.is_absolute() else Path(root) / path)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _save_bytes(self, key: str, data: bytes) -> None:
        with atomic_write(self._path(key)) as handle:
            handle.write(data)

    def _save_file(self, key: str, source: Path) -> None:
        with source.open("rb") as reader, atomic_write(self._path(key)) as handle:
            shutil.copyfileobj(reader, handle, 1 << 20)

    def _load_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._missing(key) from None

    def _load_file(self, key: str, dest: Path) -> None:
        try:
            reader = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._missing(key) from None
        with reader, atomic_write(dest) as handle:
            shutil.copyfileobj(reader, handle, 1 << 20)

    def _sha256(self, key: str) -> str:
        try:
            return fingerprint_file(self._path(key))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._missing(key) from None

    def _exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _list(self, prefix: str) -> builtins.list[str]:
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(base) if base else self.root
        keys: builtins.list[str] = []
        for directory, _dirs, files in os.walk(start):
            rel = Path(directory).relative_to(self.root).as_posix()
            for name in files:
                if not is_temp_name(name):
                    keys.append(name if rel == "." else f"{rel}/{name}")
        return keys

    def _delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_file():
            path.unlink(missing_ok=True)
