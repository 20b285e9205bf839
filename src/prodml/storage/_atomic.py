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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "atomic_path",
    "atomic_write",
    "fsync_dir",
    "is_temp_name",
]

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of our in-flight temp files (hidden, ``.tmp``)."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


@contextlib.contextmanager
def atomic_write(path: str | Path, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """Yield a binary handle whose content replaces ``path`` atomically on success.

    The parent directory is created if needed. On any exception the temp file is
    deleted, the target keeps its previous content, and the exception propagates. The
    file is private to its owner (``0o600``) unless ``mode`` says otherwise (e.g.
    ``0o644`` for a page a user will share).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f"{TEMP_PREFIX}{target.name}.", suffix=TEMP_SUFFIX
    )
    tmp = Path(tmp_name)
    if mode is not None:
        os.fchmod(fd, mode)
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


@contextlib.contextmanager
def atomic_path(
    path: str | Path, *, before_replace: Callable[[], object] | None = None
) -> Iterator[Path]:
    """Yield the path of a temp file next to ``path`` for a writer that opens files
    itself; on success its content replaces ``path`` atomically, as with
    :func:`atomic_write` (fsync, rename, fsync of the directory). ``before_replace`` runs
    after the fsync, just before the rename.

    For Arrow's writers: given a Python file object, Arrow takes the GIL for every write
    it makes into it (thousands for one Parquet file), so a write in a background thread
    contends with every other thread; writing its own file, it does not.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> target = Path(tmp.name) / "greeting.txt"
    >>> with atomic_path(target) as path:
    ...     _ = path.write_bytes(b"hello")
    >>> target.read_bytes(), [p.name for p in Path(tmp.name).iterdir()]
    (b'hello', ['greeting.txt'])
    >>> tmp.cleanup()
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f"{TEMP_PREFIX}{target.name}.", suffix=TEMP_SUFFIX
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_replace is not None:
            before_replace()
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
