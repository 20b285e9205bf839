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
renames a finished file into place) and artifacts are content-addressed; a date directory
of the logs whose change marker did not move since the last backup is taken from the files
cache whole, its manifest entries included (see :mod:`~prodml.ops._backup_files`). Left out:
``.git``, virtual environments and caches, SQLite's ``-wal``/``-shm`` side files,
prodml's own unfinished temp files (hidden files in the state directory), and anything
that is not a regular file.

State a scaled-out project keeps outside its directory — a PostgreSQL metadata DB, a
Redis online store, S3 artifacts — goes into the same blob store, taken in the same
order (metadata first): see :mod:`~prodml.ops._external`.

The snapshot's ``manifest.json`` lists each file's path, SHA-256 and size. It is
written into a hidden working directory which is renamed to
``snapshots/<UTC time>-<manifest sha256[:16]>`` only when everything is in place: a
backup killed midway leaves no directory that looks like a snapshot. Backups hold the
destination's ``.lock`` shared, a prune holds it exclusively: a prune never removes the
blobs a running backup stored but has not named yet.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from prodml.core import (
    ConfigError,
    ConflictError,
    ProdMLError,
    StorageError,
    fingerprint_bytes,
    fingerprint_file,
    load_config,
)
from prodml.ops._backup_files import (
    LOGS_DIR,
    RACY_NS,
    FilesCache,
    Found,
    Segment,
    Segments,
    new_segment,
    no_collections,
    walk,
)
from prodml.ops._events import Kind, OpsEvents
from prodml.ops._external import dump_external, external_revision
from prodml.ops._manifest import (
    MANIFEST,
    MANIFEST_SUM,
    SNAPSHOTS_DIR,
    ExternalEntry,
    FileEntry,
    Manifest,
    list_snapshots,
    read_snapshot,
)
from prodml.storage import open_metadata_db
from prodml.storage._revision import VERSION_TABLE

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock: backups and prunes unlocked
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "SNAPSHOTS_DIR",
    "BackupResult",
    "backup_project",
    "blob_file",
    "blob_path",
    "lock_destination",
]

BLOBS_DIR = "blobs"
_SQLITE_HEADER = b"SQLite format 3\x00"
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")

Progress = Callable[[int, int], None]
#: Threads storing large files (hashing and copying them drops the GIL, so they overlap);
#: small files go through one more thread of their own, in batches (a future per file
#: costs more than storing a small file, and two threads making system calls in turn
#: spend more time handing the GIL over than working).
_THREADS = min(4, max(2, os.cpu_count() or 1))
_BATCH = 64
_LARGE = 1 << 20
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


def blob_file(blobs: str, sha256: str) -> str:
    """:func:`blob_path` as a string under the blob directory ``blobs`` (the hot loops
    build thousands of these; pathlib's parsing would dominate them)."""
    return f"{blobs}/{sha256[:2]}/{sha256}"


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == _SQLITE_HEADER
    except OSError:
        return False


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


def _last_external(dest: Path) -> tuple[ExternalEntry, ...]:
    """The external entries of the newest snapshot in ``dest`` that checks out (none:
    none)."""
    for snapshot in reversed(list_snapshots(dest)):
        try:
            return read_snapshot(snapshot).external
        except ProdMLError:
            continue
    return ()


#: What a backup destination holds (a directory of the project holding anything else is
#: the project's own: a backup into it would leave those files out).
_DESTINATION_ENTRIES = frozenset({BLOBS_DIR, SNAPSHOTS_DIR, "cache", ".lock"})
#: Seconds a backup or a prune waits for the other to finish with the destination.
LOCK_WAIT_S = 3600.0


@contextlib.contextmanager
def lock_destination(dest: Path, *, exclusive: bool, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the destination's lock: shared by backups (they only add blobs, and may run
    side by side), exclusive for a prune (it removes the blobs no snapshot names, which
    includes those a running backup stored but has not named yet)."""
    if fcntl is None:  # pragma: no cover - Windows: run a prune when no backup runs
        yield  # type: ignore[unreachable]
        return
    path = dest / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ConflictError(
                        f"backup destination {dest}: "
                        + ("a backup is writing to it" if exclusive else "a prune holds it")
                        + f" (waited {wait_s:g} s); try again when it has finished"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _check_destination(root: Path, state: Path, dest: Path) -> None:
    """Refuse a destination whose snapshots would not hold the project: the project
    directory itself, its state directory or a directory holding it (the walk leaves the
    destination out), or a directory of the project holding files of its own."""
    where = dest.resolve()
    if not where.is_relative_to(root):
        return
    if where == root or state.resolve().is_relative_to(where):
        raise ConfigError(
            f"backup destination {dest}: it is (or holds) the project's own directory "
            f"{where}; expected a directory outside the project, such as {root.parent}/"
            f"{root.name}-backups"
        )
    try:
        own = sorted(e.name for e in os.scandir(where) if e.name not in _DESTINATION_ENTRIES)
    except NotADirectoryError:
        own = [where.name]
    except FileNotFoundError:
        return
    if own:
        raise ConfigError(
            f"backup destination {dest}: a directory of the project holding files of its "
            f"own ({', '.join(own[:3])}), which a backup into it would leave out; expected "
            "a new directory, or one holding only backups"
        )


def _blob_dirs(dest: Path) -> str:
    """The blob directory of ``dest`` with its 256 fan-out directories made (once per
    backup, not once per file), as a string for :func:`blob_file`."""
    blobs = dest / BLOBS_DIR
    for i in range(256):
        (blobs / f"{i:02x}").mkdir(parents=True, exist_ok=True)
    return str(blobs)


def _publish(target: str, write: Callable[[str], object]) -> None:
    """Make ``target`` appear whole: ``write`` fills a hidden partial file beside it
    (its directory exists), renamed into place (removed if anything fails)."""
    head, name = os.path.split(target)
    partial = f"{head}/.{name}.{uuid.uuid4().hex}.partial"
    try:
        write(partial)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def read_small(path: str) -> bytes:
    """The whole file at ``path``, read with bare system calls (for small files the
    buffered file objects cost more than the read itself)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        want = os.fstat(fd).st_size + 1  # one more: a file that grew meanwhile is read whole
        parts = []
        while block := os.read(fd, max(want, 1 << 16)):
            parts.append(block)
    finally:
        os.close(fd)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def write_new(path: str, data: bytes) -> None:
    """Create ``path`` (it must not exist) holding ``data``, with bare system calls."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _write_bytes(data: bytes) -> Callable[[str], object]:
    return lambda path: write_new(path, data)


def _has_blob(target: str, size: int) -> bool:
    """Whether the blob ``target`` is in the store with ``size`` bytes (one cut short is
    written again, not named by one more snapshot)."""
    try:
        return os.stat(target).st_size == size
    except FileNotFoundError:
        return False


def _store_blob(blobs: str, source: str, sha256: str, *, move: bool) -> bool:
    """Put ``source`` in the blob store (False: the blob was there already)."""
    target = blob_file(blobs, sha256)
    if _has_blob(target, os.stat(source).st_size):
        if move:
            os.unlink(source)
        return False
    if move:
        _publish(target, lambda partial: shutil.move(source, partial))
    else:
        _publish(target, lambda partial: shutil.copyfile(source, partial))
    return True


def _store_file(blobs: str, source: str, size: int) -> tuple[str, int, bool]:
    """Hash ``source`` (``size`` bytes when listed) and put it in the blob store,
    reading it once when it is small: its SHA-256, size, and whether the blob is new."""
    if size > _IN_MEMORY:
        sha = fingerprint_file(Path(source))
        return sha, os.stat(source).st_size, _store_blob(blobs, source, sha, move=False)
    data = read_small(source)
    sha = fingerprint_bytes(data)
    target = blob_file(blobs, sha)
    if _has_blob(target, len(data)):
        return sha, len(data), False
    _publish(target, _write_bytes(data))
    return sha, len(data), True


def _cached_segments(
    segments: Segments,
    stored: dict[str, tuple[str, int, bool]],
    seen: dict[str, tuple[int, int, str]],
) -> tuple[dict[str, Segment], set[str]]:
    """The logs' segments for the next backup — those reused, and those listed whose
    marker could be trusted, with the files stored for them — and the files those listed
    segments hold (they leave ``seen``: the segment holds them)."""
    cached = dict(segments.reused)
    covered: set[str] = set()
    for rel, (stamp, files) in segments.listed.items():
        if stamp is None:
            continue
        entries = []
        for item in files:
            outcome = stored.get(item.rel)
            if outcome is not None:  # not removed meanwhile
                entries.append((item.rel, outcome[0], outcome[1], item.mtime_ns))
                covered.add(item.rel)
            seen.pop(item.rel, None)
        cached[rel] = new_segment(stamp, entries)
    return cached, covered


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


@no_collections()  # a backup holds an object or two per file, none of them garbage
def backup_project(
    root: Path,
    dest: Path,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
    record: bool = True,
    actor: str = "prodml backup",
    rescan: bool = False,
) -> BackupResult:
    """Snapshot the project at ``root`` into ``dest`` (see the module docstring); with
    ``record``, the backup is recorded in the project's metadata DB afterwards. With
    ``rescan``, nothing the last backup found is trusted: every file is listed and read
    (for logs changed by hand, which the logs' change markers do not see)."""
    started = datetime.now(UTC)
    root = root.resolve()
    config = load_config(root)
    db_file: Path | None = None
    if config.metadata.type == "sqlite":
        db_file = (root / config.metadata.path).resolve()
        if not db_file.is_relative_to(root):
            raise ConfigError(
                f"[metadata] path = {config.metadata.path!r} lies outside the project {root}: "
                "`prodml backup` snapshots the project directory; keep the metadata DB inside it"
            )
    state = root / config.project.state_dir
    _check_destination(root, state, dest)
    work = dest / SNAPSHOTS_DIR / f".incomplete-{uuid.uuid4().hex}"
    lock = contextlib.ExitStack()
    try:
        work.mkdir(parents=True)
        lock.enter_context(lock_destination(dest, exclusive=False))
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise StorageError(
            f"backup destination {dest}: cannot create {work.parent} ({exc}); expected a "
            "directory prodml can write to"
        ) from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        entries: list[FileEntry] = []
        skipped: list[str] = []
        new_blobs = new_bytes = 0
        revision = None
        # SQLite files first, through the backup API; the other files are listed after
        # those copies, so every artifact the metadata DB's copy names (an artifact is
        # stored before the row naming it) is in the listing.
        known = FilesCache(dest, root, {}) if rescan else FilesCache.load(dest, root)
        fresh = time.time_ns() - RACY_NS
        segments = Segments()
        listed = walk(root, dest, state, known=known, segments=segments, before_ns=fresh)
        sqlite_files = [f for f in listed
                        if f.rel.endswith(_SQLITE_SUFFIXES) and _is_sqlite(Path(f.path))]  # fmt: skip
        stored: dict[str, tuple[str, int, bool]] = {}
        blobs = _blob_dirs(dest)
        for i, item in enumerate(sqlite_files):
            copy = work / f"sqlite-{i}.db"
            try:
                _sqlite_copy(Path(item.path), copy)
            except sqlite3.Error as exc:
                raise StorageError(
                    f"backup: cannot copy SQLite database {item.path}: {exc}"
                ) from exc
            if Path(item.path).resolve() == db_file:
                revision = _schema_revision(copy)
            sha, size = fingerprint_file(copy), copy.stat().st_size
            stored[item.rel] = (sha, size, _store_blob(blobs, str(copy), sha, move=True))
        # Stores outside the project directory (PostgreSQL, Redis, S3), in the same
        # order: the metadata DB before the artifacts it may name.
        if db_file is None:
            revision = external_revision(config, root)
        fresh_external: set[str] = set()

        def keep(path: Path, sha: str) -> bool:
            new = _store_blob(blobs, str(path), sha, move=True)
            if new:
                fresh_external.add(sha)
            return new

        def has_blob(sha: str) -> int | None:
            try:
                return os.stat(blob_file(blobs, sha)).st_size
            except FileNotFoundError:
                return None

        external = dump_external(config, root, work, keep, has_blob, lambda: _last_external(dest))
        # What the metadata DB's copy may name and the listing missed: artifacts and
        # training sets stored meanwhile (the state directory again, but for its logs,
        # which no row names).
        names = {f.rel for f in listed}
        later = walk(root, dest, state, start=state, prune=frozenset({str(state / LOGS_DIR)}))
        plain = [f for f in listed if f.rel not in stored]
        plain += [f for f in later if f.rel not in names]
        total = len(sqlite_files) + len(plain)

        def store(batch: list[Found]) -> list[tuple[Found, tuple[str, int, bool] | None]]:
            out: list[tuple[Found, tuple[str, int, bool] | None]] = []
            for item in batch:
                try:
                    out.append((item, _store_file(blobs, item.path, item.size)))
                except FileNotFoundError:  # removed meanwhile (a compacted log part)
                    out.append((item, None))
                except OSError as exc:  # unreadable, or no space left to store it
                    raise StorageError(
                        f"backup of {root} into {dest} failed and was undone: {item.path}: {exc}"
                    ) from exc
            return out

        seen: dict[str, tuple[int, int, str]] = {}
        changed: list[Found] = []
        for item in plain:
            cached = known.get(item.rel, item.size, item.mtime_ns)
            if (
                cached is not None
                and item.mtime_ns < fresh
                and _has_blob(blob_file(blobs, cached), item.size)
            ):
                stored[item.rel] = (cached, item.size, False)  # as the last backup found it
                seen[item.rel] = (item.size, item.mtime_ns, cached)
            else:
                changed.append(item)
        done = len(stored)
        if progress is not None:
            progress(done, total)
        small = [item for item in changed if item.size < _LARGE]
        large = [[item] for item in changed if item.size >= _LARGE]
        batches = [small[i : i + _BATCH] for i in range(0, len(small), _BATCH)]
        with (
            ThreadPoolExecutor(1, thread_name_prefix="prodml-backup") as one,
            ThreadPoolExecutor(_THREADS, thread_name_prefix="prodml-backup") as pool,
        ):
            futures = [one.submit(store, batch) for batch in batches]
            futures += [pool.submit(store, batch) for batch in large]
            try:
                for future in as_completed(futures):
                    results = future.result()
                    for item, outcome in results:
                        if outcome is None:
                            skipped.append(item.rel)
                        else:
                            stored[item.rel] = outcome
                            if item.mtime_ns < fresh:
                                seen[item.rel] = (item.size, item.mtime_ns, outcome[0])
                    done += len(results)
                    if progress is not None:
                        progress(done, total)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        kept, covered = _cached_segments(segments, stored, seen)
        for rel, (sha, size, new) in stored.items():
            if rel not in covered:  # those are in a segment's block
                entries.append(FileEntry(rel, sha, size))
            new_blobs += new
            new_bytes += size if new else 0
        for part in external:
            if part.sha256 in fresh_external:
                fresh_external.discard(part.sha256)
                new_blobs += 1
                new_bytes += part.size
        entries.sort(key=lambda e: e.path)
        when = (now or datetime.now(UTC)).astimezone(UTC)
        manifest = Manifest(
            created_at=when.isoformat(), prodml_version=version("prodml"),
            schema_revision=revision, project=config.project.name,
            files=tuple(entries), skipped=tuple(skipped), external=tuple(external),
        )  # fmt: skip
        blocks = [segment.block(rel) for rel, segment in kept.items()]
        data = manifest.to_bytes(blocks)
        digest = fingerprint_bytes(data)
        os.sync()  # the blobs are on disk before a manifest names them
        (work / MANIFEST).write_bytes(data)
        (work / MANIFEST_SUM).write_text(digest + "\n")
        for name in (MANIFEST, MANIFEST_SUM):
            with open(work / name, "rb") as handle:
                os.fsync(handle.fileno())
        snapshot_id = f"{when:%Y%m%dT%H%M%S%fZ}-{digest[:16]}"
        final = dest / SNAPSHOTS_DIR / snapshot_id
        os.replace(work, final)  # the snapshot appears whole, or not at all
        FilesCache(dest, root, seen, kept, snapshot=snapshot_id, settled_ns=fresh).save()
    except OSError as exc:  # no space left, a permission …: nothing half-written stays
        shutil.rmtree(work, ignore_errors=True)
        raise StorageError(f"backup of {root} into {dest} failed and was undone: {exc}") from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        lock.close()
    seconds = (datetime.now(UTC) - started).total_seconds()
    files = len(entries) + sum(b.count for b in blocks)
    size = manifest.size + sum(b.size for b in blocks)
    result = BackupResult(snapshot_id, final, files, size, new_blobs, new_bytes, seconds, revision)
    if record:
        record_event(root, "backup", status="ok", snapshot=snapshot_id,
                     detail={**result.to_dict(), "destination": str(dest)}, started_at=started,
                     actor=actor)  # fmt: skip
    return result
