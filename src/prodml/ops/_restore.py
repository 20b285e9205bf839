"""``prodml restore``: a snapshot back into a fresh directory, every checksum verified
before anything is written.

The manifest must match its own SHA-256 (``MANIFEST.sha256`` and the snapshot's name);
then every file's blob must exist and hash to the manifest's SHA-256. Files are copied
into a hidden sibling of the target, each hashed as it is copied (one read per blob, on
several threads), and the sibling is renamed into place only when every checksum
matched: the first problem stops the restore with the file named
(:class:`~prodml.core.IntegrityError`), the sibling is removed and the target is not
created. A restore never leaves a half-written project behind, and nothing restored is
used before all of it is verified.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prodml.core import (
    Config,
    ConfigError,
    ConflictError,
    IntegrityError,
    StateError,
    StorageError,
    fingerprint_bytes,
    load_config,
)
from prodml.ops._backup import BLOBS_DIR, blob_file, read_small, write_new
from prodml.ops._convert import copy_metadata, embedded_metadata_file
from prodml.ops._external import ExternalTargets, refuse_non_empty_schema
from prodml.ops._manifest import (
    ExternalEntry,
    FileEntry,
    Manifest,
    list_snapshots,
    read_snapshot,
)
from prodml.storage._migrate import known_revisions

__all__ = [
    "RestoreResult",
    "list_snapshots",
    "read_snapshot",
    "restore_snapshot",
    "verify_snapshot",
]


@dataclass(frozen=True)
class RestoreResult:
    snapshot: str
    target: Path
    files: int
    bytes: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {"snapshot": self.snapshot, "target": str(self.target), "files": self.files,
                "bytes": self.bytes, "seconds": round(self.seconds, 3)}  # fmt: skip


def _store_of(snapshot: Path) -> Path:
    """The destination (blob store) a snapshot directory belongs to."""
    return snapshot.parent.parent


#: Threads reading and hashing blobs, and files per task handed to one.
_THREADS = min(4, max(2, os.cpu_count() or 1))
_BATCH = 64
_CHUNK = 1 << 20
#: Blobs up to this size are read whole (hashed and written from memory).
_IN_MEMORY = 64 << 20


def _checked_copy(
    snapshot: str, blobs: str, entry: FileEntry | ExternalEntry, out: str | None
) -> None:
    """Hash the blob of ``entry`` (copying it to ``out`` as it is read, when given) and
    raise :class:`IntegrityError` naming the file when it is missing or damaged."""
    blob = blob_file(blobs, entry.sha256)
    name = entry.path if isinstance(entry, FileEntry) else f"{entry.key} ({entry.store} store)"
    try:
        if entry.size <= _IN_MEMORY:  # one read, one write
            data = read_small(blob)
            found = fingerprint_bytes(data)
            if out is not None and found == entry.sha256:
                write_new(out, data)
        else:
            found = _copy_large(blob, out)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise IntegrityError(
            f"snapshot {snapshot}: file {name} is missing from the backup "
            f"(blob {blob}); restore refused"
        ) from None
    if found != entry.sha256:
        raise IntegrityError(
            f"snapshot {snapshot}: file {name} is damaged in the backup "
            f"(SHA-256 {found}, manifest {entry.sha256}); restore refused"
        )


def _copy_large(blob: str, out: str | None) -> str:
    """Hash ``blob`` in blocks, copying each to ``out`` when given; its SHA-256."""
    digest = hashlib.sha256()
    with open(blob, "rb") as source:
        if out is None:
            while block := source.read(_CHUNK):
                digest.update(block)
        else:
            with open(out, "xb") as target:
                while block := source.read(_CHUNK):
                    digest.update(block)
                    target.write(block)
    return digest.hexdigest()


def _check_all(snapshot: Path, manifest: Manifest, work: Path | None) -> None:
    """Check every blob the manifest names, copying each file into ``work`` when given
    (its directories made first); the first problem in manifest order is raised."""
    blobs = str(_store_of(snapshot) / BLOBS_DIR)
    files = manifest.files
    everything: tuple[FileEntry | ExternalEntry, ...] = (*files, *manifest.external)
    base = None if work is None else str(work)
    if base is not None:
        for directory in sorted({os.path.dirname(entry.path) for entry in files}):
            _make_dir(f"{base}/{directory}")

    def check(batch: tuple[FileEntry | ExternalEntry, ...]) -> None:
        for entry in batch:
            out = None
            if base is not None and isinstance(entry, FileEntry):
                out = f"{base}/{entry.path}"
            _checked_copy(snapshot.name, blobs, entry, out)

    batches = [everything[i : i + _BATCH] for i in range(0, len(everything), _BATCH)]
    with ThreadPoolExecutor(_THREADS, thread_name_prefix="prodml-restore") as pool:
        for _ in pool.map(check, batches):  # file IO and hashing drop the GIL
            pass


def _make_dir(path: str) -> None:
    """``path`` made, parents too (called in sorted order, a directory's parent is
    usually made just before it: one ``mkdir``, not pathlib's walk up)."""
    try:
        os.mkdir(path)
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        pass


def verify_snapshot(snapshot: Path) -> Manifest:
    """Check the manifest and every blob it names (existence, then SHA-256)."""
    manifest = read_snapshot(snapshot)
    _check_all(snapshot, manifest, None)
    return manifest


def _read_blob(snapshot: Path) -> Callable[[str], bytes]:
    blobs = str(_store_of(snapshot) / BLOBS_DIR)

    def read(sha256: str) -> bytes:
        with open(blob_file(blobs, sha256), "rb") as handle:
            data = handle.read()
        if fingerprint_bytes(data) != sha256:  # changed since it was checked
            raise IntegrityError(
                f"snapshot {snapshot.name}: blob {sha256} changed during the restore"
            )
        return data

    return read


def _restored_config(
    work: Path, environ: Mapping[str, str] | None, *, required: bool
) -> tuple[Config | None, Path | None]:
    """The restored project's configuration in force (``environ``'s overrides applied)
    and its SQLite metadata DB when that must go to PostgreSQL (see :mod:`._convert`).
    A ``prodml.toml`` this prodml cannot read only matters when ``required``."""
    try:
        config = load_config(work, environ)
        embedded = embedded_metadata_file(work, load_config(work, {}), config)
    except ConfigError:
        if required:
            raise
        return None, None
    return config, embedded


def _undo(external: ExternalTargets | None, converted: Config | None, work: Path) -> None:
    """Undo what a failed restore wrote outside the target directory."""
    if external is not None:
        external.undo()
    if converted is not None:
        from prodml.ops._convert import drop_copied

        drop_copied(converted, work)


def restore_snapshot(
    snapshot: Path, target: Path, *, environ: Mapping[str, str] | None = None
) -> RestoreResult:
    """Restore ``snapshot`` into ``target`` (which must not exist, or be empty). State
    the snapshot holds from outside the project directory (PostgreSQL, Redis, S3: see
    :mod:`~prodml.ops._external`) goes to the stores the restored ``prodml.toml`` names,
    with ``environ``'s ``PRODML__`` overrides (default: the process environment); each
    must be empty."""
    started = datetime.now(UTC)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConflictError(
            f"restore target {target} exists and is not empty: restore into a new directory"
        )
    manifest = read_snapshot(snapshot)
    known = known_revisions()
    if manifest.schema_revision is not None and manifest.schema_revision not in known:
        raise StateError(
            f"snapshot {snapshot.name} was taken by prodml {manifest.prodml_version} with "
            f"metadata schema revision {manifest.schema_revision!r}; this prodml knows "
            f"revisions up to {known[-1]!r}: upgrade prodml to restore it"
        )
    target = target.resolve()
    work = target.parent / f".{target.name}.restoring-{uuid.uuid4().hex}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work.mkdir()
    except OSError as exc:
        raise StorageError(
            f"restore target {target}: cannot create a directory beside it ({exc}); "
            "expected a path whose parent is (or can be made) a writable directory"
        ) from exc
    external: ExternalTargets | None = None
    converted: Config | None = None
    try:
        _check_all(snapshot, manifest, work)  # every checksum, before the target appears
        config, embedded = _restored_config(work, environ, required=bool(manifest.external))
        if manifest.external:
            assert config is not None
            external = ExternalTargets(config, work, manifest.external)
            external.check()  # every store empty before any is written
        if embedded is not None:
            assert config is not None
            refuse_non_empty_schema(config)
        if manifest.external:
            assert external is not None
            scratch = work / f".external-{uuid.uuid4().hex}"
            scratch.mkdir()
            try:
                external.load(_read_blob(snapshot), scratch)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        if embedded is not None:
            assert config is not None
            copy_metadata(embedded, config, work)
            converted = config
            embedded.unlink()
        if target.exists():
            target.rmdir()
        os.replace(work, target)
    except OSError as exc:
        _undo(external, converted, work)
        shutil.rmtree(work, ignore_errors=True)
        raise StorageError(
            f"restore of {snapshot.name} into {target} failed and was undone: {exc}"
        ) from exc
    except BaseException:
        _undo(external, converted, work)
        shutil.rmtree(work, ignore_errors=True)
        raise
    seconds = (datetime.now(UTC) - started).total_seconds()
    return RestoreResult(snapshot.name, target, len(manifest.files), manifest.size, seconds)
