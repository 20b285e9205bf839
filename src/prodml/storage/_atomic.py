"""Atomic file replacement: write a temp file next to the target, fsync, ``os.replace``.

Readers see either the old file or the complete new one, never a torn write; if the
writer fails, the temp file is removed and the target is left untouched.

>>> import tempfile
>>> from pathlib import Path
>>> tmp = tempfile.TemporaryDirectory()
>>> target = Path(tmp.name) / "sub" / "greeting.txt"
>>> with atomic_write(target) as handle:
...     _ = handle.write(b"hello")
>>> target.read_bytes()
b'hello'
>>> tmp.cleanup()
>>> is_temp_name(".greeting.txt.1a2b.tmp"), is_temp_name("greeting.txt")
(True, False)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMP_PREFIX", "TEMP_SUFFIX", "atomic_write", "fsync_dir", "is_temp_name"]

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of our in-flight temp files (hidden, ``.tmp``)."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary handle whose content replaces ``path`` atomically on success.

    The parent directory is created if needed. On any exception the temp file is
    deleted, the target keeps its previous content, and the exception propagates.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f"{TEMP_PREFIX}{target.name}.", suffix=TEMP_SUFFIX
    )
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where unsupported (Windows)."""
    if os.name == "nt":  # pragma: no cover - directories cannot be opened on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
