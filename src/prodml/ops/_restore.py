"""``prodml restore``: a snapshot back into a fresh directory, every checksum verified
before anything is written.

The manifest must match its own SHA-256 (``MANIFEST.sha256`` and the snapshot's name);
then every file's blob must exist and hash to the manifest's SHA-256. The first problem
stops the restore with the file named (:class:`~prodml.core.IntegrityError`), and the
target is not created. Files are written into a hidden sibling of the target, which is
renamed into place at the end: a restore never leaves a half-written project behind.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prodml.core import (
    ConflictError,
    IntegrityError,
    NotFoundError,
    StateError,
    StorageError,
    fingerprint_bytes,
    fingerprint_file,
)
from prodml.ops._backup import MANIFEST, MANIFEST_SUM, SNAPSHOTS_DIR, blob_path
from prodml.ops._manifest import Manifest
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


def list_snapshots(dest: Path) -> list[Path]:
    """The complete snapshots in ``dest``, oldest first (an interrupted backup's working
    directory is hidden and never listed)."""
    root = dest / SNAPSHOTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _store_of(snapshot: Path) -> Path:
    """The destination (blob store) a snapshot directory belongs to."""
    return snapshot.parent.parent


def read_snapshot(snapshot: Path) -> Manifest:
    """The snapshot's manifest, checked against its own SHA-256 and name."""
    if not snapshot.is_dir():
        raise NotFoundError(f"snapshot {snapshot}: no such directory")
    manifest_file, sum_file = snapshot / MANIFEST, snapshot / MANIFEST_SUM
    for required in (manifest_file, sum_file):
        if not required.is_file():
            raise IntegrityError(f"snapshot {snapshot.name}: {required.name} is missing")
    data = manifest_file.read_bytes()
    recorded = sum_file.read_text().strip()
    actual = fingerprint_bytes(data)
    if actual != recorded or not snapshot.name.endswith("-" + recorded[:16]):
        raise IntegrityError(
            f"snapshot {snapshot.name}: {MANIFEST} does not match its own checksum (SHA-256 "
            f"{actual}, recorded {recorded}): the manifest was edited; restore refused"
        )
    return Manifest.from_bytes(data, where=str(manifest_file))


def verify_snapshot(snapshot: Path) -> Manifest:
    """Check the manifest and every blob it names (existence, then SHA-256)."""
    manifest = read_snapshot(snapshot)
    store = _store_of(snapshot)
    for entry in manifest.files:
        blob = blob_path(store, entry.sha256)
        if not blob.is_file():
            raise IntegrityError(
                f"snapshot {snapshot.name}: file {entry.path} is missing from the backup "
                f"(blob {blob}); restore refused"
            )
        found = fingerprint_file(blob)
        if found != entry.sha256:
            raise IntegrityError(
                f"snapshot {snapshot.name}: file {entry.path} is damaged in the backup "
                f"(SHA-256 {found}, manifest {entry.sha256}); restore refused"
            )
    return manifest


def restore_snapshot(snapshot: Path, target: Path) -> RestoreResult:
    """Restore ``snapshot`` into ``target`` (which must not exist, or be empty)."""
    started = datetime.now(UTC)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConflictError(
            f"restore target {target} exists and is not empty: restore into a new directory"
        )
    manifest = verify_snapshot(snapshot)  # everything checked before anything is written
    known = known_revisions()
    if manifest.schema_revision is not None and manifest.schema_revision not in known:
        raise StateError(
            f"snapshot {snapshot.name} was taken by prodml {manifest.prodml_version} with "
            f"metadata schema revision {manifest.schema_revision!r}; this prodml knows "
            f"revisions up to {known[-1]!r}: upgrade prodml to restore it"
        )
    store = _store_of(snapshot)
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".{target.name}.restoring-{uuid.uuid4().hex}"
    work.mkdir()
    try:
        for entry in manifest.files:
            out = work / entry.path
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(blob_path(store, entry.sha256), out)
        if target.exists():
            target.rmdir()
        os.replace(work, target)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise StorageError(
            f"restore of {snapshot.name} into {target} failed and was undone: {exc}"
        ) from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    seconds = (datetime.now(UTC) - started).total_seconds()
    return RestoreResult(snapshot.name, target, len(manifest.files), manifest.size, seconds)
