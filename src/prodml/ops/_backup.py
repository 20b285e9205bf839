"""``prodml backup``: a consistent, verifiable, incremental snapshot of a project.

Every file of the project directory (config, code, source data, and the state directory:
metadata DB, artifacts, offline tables and training-set snapshots, online store, the
prediction and label logs) goes into the destination as a content-addressed blob
``blobs/<sha256[:2]>/<sha256>``: a blob already there (from an earlier snapshot) is not
copied again. SQLite files (the metadata DB, the online store) are copied through
SQLite's online backup API, so a server or controller writing meanwhile leaves a
consistent copy, never a torn page. They are copied first and the other files listed
after: an artifact is stored before the metadata row naming it, so every artifact the
copied DB names is in the snapshot. Log files are immutable once written (the writer
renames a finished file into place) and artifacts are content-addressed. Left out:
``.git``, virtual environments and caches, SQLite's ``-wal``/``-shm`` side files,
prodml's own unfinished temp files (hidden files in the state directory), and anything
that is not a regular file.

The snapshot's ``manifest.json`` lists each file's path, SHA-256 and size. It is
written into a hidden working directory which is renamed to
``snapshots/<UTC time>-<manifest sha256[:16]>`` only when everything is in place: a
backup killed midway leaves no directory that looks like a snapshot.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from prodml.core import ConfigError, StorageError, load_config
from prodml.ops._events import Kind, OpsEvents
from prodml.ops._manifest import FileEntry, Manifest, sha256_file
from prodml.storage import open_metadata_db
from prodml.storage._revision import VERSION_TABLE

__all__ = ["SNAPSHOTS_DIR", "BackupResult", "backup_project", "blob_path"]

SNAPSHOTS_DIR = "snapshots"
BLOBS_DIR = "blobs"
MANIFEST = "manifest.json"
MANIFEST_SUM = "MANIFEST.sha256"
_SKIP_DIRS = frozenset({".git", ".venv", "venv", "__pycache__", "node_modules", ".mypy_cache"})
_SKIP_SUFFIXES = ("-wal", "-shm", "-journal", ".tmp", ".lock")
_SQLITE_HEADER = b"SQLite format 3\x00"
_SQLITE_SUFFIXES = frozenset({".db", ".sqlite", ".sqlite3"})

Progress = Callable[[int, int], None]
#: Threads storing files: overlapping their system calls and hashing.
_THREADS = 4
#: Files up to this size are read once (hashed and copied from memory).
_IN_MEMORY = 64 << 20


@dataclass(frozen=True)
class BackupResult:
    """A snapshot written: its ``id`` and directory, how many files and bytes it holds,
    and how many of them were new blobs (the rest were in the destination already)."""

    id: str
    path: Path
    files: int
    bytes: int
    new_blobs: int
    new_bytes: int
    seconds: float
    schema_revision: str | None

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "path": str(self.path), "files": self.files, "bytes": self.bytes,
                "new_blobs": self.new_blobs, "new_bytes": self.new_bytes,
                "seconds": round(self.seconds, 3), "schema_revision": self.schema_revision}  # fmt: skip


def blob_path(dest: Path, sha256: str) -> Path:
    return dest / BLOBS_DIR / sha256[:2] / sha256


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == _SQLITE_HEADER
    except OSError:
        return False


def _walk(root: Path, dest: Path, state: Path) -> Iterator[Path]:
    """The project's regular files, sorted, leaving out the destination, tool
    directories, SQLite's side files, and prodml's unfinished temp files (hidden files
    in the state directory; a user's hidden files elsewhere are kept)."""
    dest = dest.resolve()
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and (here / d).resolve() != dest)
        in_state = here == state or state in here.parents
        for name in sorted(files):
            if name.endswith(_SKIP_SUFFIXES) or (in_state and name.startswith(".")):
                continue
            path = here / name
            try:
                if not stat.S_ISREG(path.lstat().st_mode):  # pipes, sockets, links
                    continue
            except FileNotFoundError:
                continue
            yield path


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30.0)
    try:
        out = sqlite3.connect(target)
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()


def _schema_revision(db_file: Path) -> str | None:
    con = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        row = con.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
        return None if row is None else str(row[0])
    except sqlite3.Error:
        return None
    finally:
        con.close()


def _store_blob(dest: Path, source: Path, sha256: str, *, move: bool) -> bool:
    """Put ``source`` in the blob store (False: the blob was there already)."""
    target = blob_path(dest, sha256)
    if target.exists():
        if move:
            source.unlink()
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{sha256}.{uuid.uuid4().hex}.partial"
    if move:
        shutil.move(str(source), partial)
    else:
        shutil.copyfile(source, partial)
    os.replace(partial, target)
    return True


def _store_file(dest: Path, source: Path) -> tuple[str, int, bool]:
    """Hash ``source`` and put it in the blob store, reading it once when it is small:
    its SHA-256, size, and whether the blob is new."""
    size = source.stat().st_size
    if size > _IN_MEMORY:
        sha = sha256_file(source)
        return sha, size, _store_blob(dest, source, sha, move=False)
    data = source.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    target = blob_path(dest, sha)
    if target.exists():
        return sha, len(data), False
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{sha}.{uuid.uuid4().hex}.partial"
    partial.write_bytes(data)
    os.replace(partial, target)
    return sha, len(data), True


def record_event(
    root: Path,
    kind: Kind,
    *,
    status: str,
    snapshot: str | None,
    detail: dict[str, Any],
    started_at: datetime,
    actor: str,
) -> None:
    """Record a backup or drill in the metadata DB of the project at ``root``."""
    config = load_config(root)
    db = open_metadata_db(config.metadata, root)
    try:
        OpsEvents(db).record(kind, status=status, snapshot=snapshot, detail=detail,
                             started_at=started_at, finished_at=datetime.now(UTC), actor=actor)  # fmt: skip
    finally:
        db.close()


def backup_project(
    root: Path,
    dest: Path,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
    record: bool = True,
    actor: str = "prodml backup",
) -> BackupResult:
    """Snapshot the project at ``root`` into ``dest`` (see the module docstring); with
    ``record``, the backup is recorded in the project's metadata DB afterwards."""
    started = datetime.now(UTC)
    root = root.resolve()
    config = load_config(root)
    if config.metadata.type != "sqlite":
        raise ConfigError(
            f"[metadata] type = {config.metadata.type!r}: `prodml backup` snapshots the embedded "
            "SQLite metadata DB; back up PostgreSQL with pg_dump/pg_basebackup and WAL archiving "
            "(docs/runbooks), then back up the project files with this command"
        )
    db_file = (root / config.metadata.path).resolve()
    if not db_file.is_relative_to(root):
        raise ConfigError(
            f"[metadata] path = {config.metadata.path!r} lies outside the project {root}: "
            "`prodml backup` snapshots the project directory; keep the metadata DB inside it"
        )
    dest.mkdir(parents=True, exist_ok=True)
    work = dest / SNAPSHOTS_DIR / f".incomplete-{uuid.uuid4().hex}"
    work.mkdir(parents=True)
    try:
        state = root / config.project.state_dir
        entries: list[FileEntry] = []
        skipped: list[str] = []
        new_blobs = new_bytes = 0
        revision = None
        # SQLite files first, through the backup API; the other files are listed after
        # those copies, so every artifact the metadata DB's copy names (an artifact is
        # stored before the row naming it) is in the listing.
        sqlite_files = [p for p in _walk(root, dest, state)
                        if p.suffix in _SQLITE_SUFFIXES and _is_sqlite(p)]  # fmt: skip
        found: dict[Path, tuple[str, int, bool]] = {}
        for i, path in enumerate(sqlite_files):
            copy = work / f"sqlite-{i}.db"
            try:
                _sqlite_copy(path, copy)
            except sqlite3.Error as exc:
                raise StorageError(f"backup: cannot copy SQLite database {path}: {exc}") from exc
            if path.resolve() == db_file:
                revision = _schema_revision(copy)
            sha, size = sha256_file(copy), copy.stat().st_size
            found[path] = (sha, size, _store_blob(dest, copy, sha, move=True))
        chosen = set(sqlite_files)
        files = [*sqlite_files, *(p for p in _walk(root, dest, state) if p not in chosen)]
        plain = files[len(sqlite_files) :]

        def store(path: Path) -> tuple[Path, tuple[str, int, bool] | None]:
            try:
                return path, _store_file(dest, path)
            except FileNotFoundError:  # removed meanwhile (a compacted log part)
                return path, None
            except OSError as exc:
                raise StorageError(f"backup: cannot read {path}: {exc}") from exc

        done = len(found)
        with ThreadPoolExecutor(_THREADS, thread_name_prefix="prodml-backup") as pool:
            for path, stored in pool.map(store, plain):  # file IO and hashing drop the GIL
                done += 1
                if stored is None:
                    skipped.append(path.relative_to(root).as_posix())
                else:
                    found[path] = stored
                if progress is not None:
                    progress(done, len(files))
        for path in files:
            if path in found:
                sha, size, new = found[path]
                entries.append(FileEntry(path.relative_to(root).as_posix(), sha, size))
                new_blobs += new
                new_bytes += size if new else 0
        entries.sort(key=lambda e: e.path)
        when = (now or datetime.now(UTC)).astimezone(UTC)
        manifest = Manifest(
            created_at=when.isoformat(), prodml_version=version("prodml"),
            schema_revision=revision, project=config.project.name,
            files=tuple(entries), skipped=tuple(skipped),
        )  # fmt: skip
        data = manifest.to_bytes()
        digest = manifest.digest()
        os.sync()  # the blobs are on disk before a manifest names them
        (work / MANIFEST).write_bytes(data)
        (work / MANIFEST_SUM).write_text(digest + "\n")
        for name in (MANIFEST, MANIFEST_SUM):
            with open(work / name, "rb") as handle:
                os.fsync(handle.fileno())
        snapshot_id = f"{when:%Y%m%dT%H%M%S%fZ}-{digest[:16]}"
        final = dest / SNAPSHOTS_DIR / snapshot_id
        os.replace(work, final)  # the snapshot appears whole, or not at all
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    seconds = (datetime.now(UTC) - started).total_seconds()
    result = BackupResult(snapshot_id, final, len(entries), manifest.size, new_blobs, new_bytes,
                          seconds, revision)  # fmt: skip
    if record:
        record_event(root, "backup", status="ok", snapshot=snapshot_id,
                     detail={**result.to_dict(), "destination": str(dest)}, started_at=started,
                     actor=actor)  # fmt: skip
    return result
