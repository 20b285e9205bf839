"""A snapshot's manifest: every file of the project it holds, with its SHA-256 and size,
and what it was taken from (prodml version, metadata schema revision, time).

The manifest names its blobs by content; its own SHA-256 is the snapshot's identity:
the snapshot directory is named after it and ``MANIFEST.sha256`` repeats it, so a
manifest edited to agree with a tampered file no longer matches its own checksum.

>>> m = Manifest(created_at="2013-06-01T00:00:00+00:00", prodml_version="0.1.0",
...              schema_revision="abc", project="p",
...              files=(FileEntry(".prodml/meta.db", "0" * 64, 10),))
>>> Manifest.from_bytes(m.to_bytes()) == m
True
>>> len(m.digest())
64
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from prodml.core import IntegrityError, NotFoundError, fingerprint_bytes

__all__ = [
    "FORMAT",
    "MANIFEST",
    "MANIFEST_SUM",
    "SNAPSHOTS_DIR",
    "Block",
    "ExternalEntry",
    "FileEntry",
    "Manifest",
    "entries_text",
    "list_snapshots",
    "read_snapshot",
]

#: A destination's snapshots are ``snapshots/<id>/``, each with these two files.
SNAPSHOTS_DIR = "snapshots"
MANIFEST = "manifest.json"
MANIFEST_SUM = "MANIFEST.sha256"

#: Format 2 added ``external``; format 1 manifests (none) are still read.
FORMAT = 2
_READS = frozenset({1, 2})
#: The stores an external entry may belong to (see :mod:`~prodml.ops._external`).
_STORES = frozenset({"metadata", "online", "artifacts", "logs", "datasets"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHAS = re.compile(r"[0-9a-f]*")


@dataclass(frozen=True)
class FileEntry:
    """A file at ``path`` (relative to the project root, ``/``-separated)."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ExternalEntry:
    """State kept outside the project directory (see :mod:`~prodml.ops._external`):
    the ``store`` it belongs to (``metadata``, ``online``, ``artifacts``) and its
    ``key`` there (a dump's name, an object's key)."""

    store: str
    key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    created_at: str
    prodml_version: str
    schema_revision: str | None
    project: str
    files: tuple[FileEntry, ...]
    skipped: tuple[str, ...] = field(default=())
    external: tuple[ExternalEntry, ...] = field(default=())
    format: int = FORMAT

    def to_bytes(self, blocks: Sequence[Block] = ()) -> bytes:
        """The manifest file: one line per file, in path order. ``blocks`` are more files'
        entries already written out (a backup reuses them from the last one unchanged);
        each holds consecutive paths that no file of ``files`` falls between."""
        token = f"__prodml_files_{uuid.uuid4().hex}__"
        data = {
            "created_at": self.created_at, "prodml_version": self.prodml_version,
            "schema_revision": self.schema_revision, "project": self.project,
            "files": token, "skipped": list(self.skipped), "format": self.format,
            "external": [{"store": e.store, "key": e.key, "sha256": e.sha256, "size": e.size}
                         for e in self.external],
        }  # fmt: skip
        head = orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
        parts = [(f.path, _entry(f.path, f.sha256, f.size)) for f in self.files]
        parts += [(b.first, b.text) for b in blocks if b.count]
        parts.sort(key=itemgetter(0))
        files = b"[\n" + b",\n".join(text for _, text in parts) + b"\n  ]" if parts else b"[]"
        return head.replace(orjson.dumps(token), files, 1) + b"\n"

    def digest(self) -> str:
        return fingerprint_bytes(self.to_bytes())

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files) + sum(e.size for e in self.external)

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = "manifest.json") -> Manifest:
        try:
            raw: dict[str, Any] = orjson.loads(data)
            files = tuple(FileEntry(**f) for f in raw.pop("files"))
            skipped = tuple(raw.pop("skipped", ()))
            external = tuple(ExternalEntry(**e) for e in raw.pop("external", ()))
            manifest = cls(files=files, skipped=skipped, external=external, **raw)
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise IntegrityError(f"{where}: not a prodml snapshot manifest ({exc})") from None
        if type(manifest.format) is not int or manifest.format not in _READS:
            raise IntegrityError(
                f"{where}: manifest format {manifest.format}, this prodml reads formats "
                f"{sorted(_READS)}"
            )
        _check_entries(manifest, where)
        return manifest


def _check_entries(manifest: Manifest, where: str) -> None:
    """Refuse a manifest whose entries a restore could not write safely: a path that is
    not relative and inside the project (``..``, absolute, empty parts), a path listed
    twice, a SHA-256 that is not 64 hex digits, a size that is not a count, an unknown
    external store, a creation time that is not an ISO 8601 time."""

    def bad(what: str, expected: str, got: object) -> IntegrityError:
        return IntegrityError(
            f"{where}: {what}: expected {expected}, got {got!r}; not a prodml snapshot "
            "manifest, restore refused"
        )

    try:
        created = datetime.fromisoformat(manifest.created_at)
    except (TypeError, ValueError):
        created = None
    if created is None or created.tzinfo is None:  # retention orders snapshots by it
        raise bad("created_at", "an ISO 8601 time with its UTC offset", manifest.created_at)
    if _sound(manifest.files, manifest.external):
        return
    seen: set[str] = set()
    entries: list[tuple[str, FileEntry | ExternalEntry]] = [("files", f) for f in manifest.files]
    entries += [("external", e) for e in manifest.external]
    for section, entry in entries:
        path = entry.path if isinstance(entry, FileEntry) else entry.key
        name = "path" if isinstance(entry, FileEntry) else "key"
        if not _relative_path(path):
            raise bad(f"{section} {name}", "a relative '/'-separated path inside the project",
                      path)  # fmt: skip
        if isinstance(entry, ExternalEntry) and entry.store not in _STORES:
            raise bad(f"external {path} store", f"one of {sorted(_STORES)}", entry.store)
        if not isinstance(entry.sha256, str) or not _SHA256.fullmatch(entry.sha256):
            raise bad(f"{section} {path} sha256", "64 lowercase hex digits", entry.sha256)
        if type(entry.size) is not int or entry.size < 0:
            raise bad(f"{section} {path} size", "a byte count >= 0", entry.size)
        if isinstance(entry, FileEntry):
            if path in seen:
                raise bad(f"files {path}", "each path listed once", "a second entry")
            seen.add(path)


def _sound(files: Sequence[FileEntry], external: Sequence[ExternalEntry]) -> bool:
    """Whether every entry passes :func:`_check_entries`, checked over all of them at
    once (a manifest lists hundreds of thousands of log files; the entry-by-entry check
    only runs to name the first bad one)."""
    paths = [f.path for f in files] + [e.key for e in external]
    shas = [f.sha256 for f in files] + [e.sha256 for e in external]
    sizes = [f.size for f in files] + [e.size for e in external]
    if not (all(type(p) is str for p in paths) and all(type(h) is str for h in shas)
            and all(type(n) is int for n in sizes)):  # fmt: skip
        return False
    joined = "/\x00/".join(paths)
    return (
        "\x00" not in "".join(paths)
        and not any(bad in f"/{joined}/" for bad in ("//", "/./", "/../"))
        and _SHAS.fullmatch("".join(shas)) is not None
        and all(len(h) == 64 for h in shas)
        and (not sizes or min(sizes) >= 0)
        and len({f.path for f in files}) == len(files)
        and all(e.store in _STORES for e in external)
    )


def _relative_path(path: object) -> bool:
    """Whether ``path`` is a relative, normalised ``/``-separated path (no ``..``, no
    empty or ``.`` parts, no NUL): one a restore may write under its target."""
    if not isinstance(path, str) or not path or "\x00" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


@dataclass(frozen=True)
class Block:
    """Manifest entries written out (see :meth:`Manifest.to_bytes`): the first path,
    the text, how many files and bytes."""

    first: str
    text: bytes
    count: int
    size: int


def _entry(path: str, sha256: str, size: int) -> bytes:
    return b"    " + orjson.dumps({"path": path, "sha256": sha256, "size": size})


def entries_text(entries: Sequence[tuple[str, str, int]]) -> bytes:
    """The manifest lines of ``(path, sha256, size)`` entries, in the given order."""
    return b",\n".join(_entry(path, sha, size) for path, sha, size in entries)


def list_snapshots(dest: Path) -> list[Path]:
    """The complete snapshots in ``dest``, oldest first (an interrupted backup's working
    directory is hidden and never listed)."""
    root = dest / SNAPSHOTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


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
