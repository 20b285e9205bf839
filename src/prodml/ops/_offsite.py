"""Off-site copies of a backup destination in an S3-compatible bucket.

``prodml backup --to s3://bucket/prefix`` takes the snapshot into a local destination
(see :mod:`~prodml.ops._backup`) and then :func:`push` copies it to the bucket in the
same layout (``blobs/<2 hex>/<sha256>``, ``snapshots/<id>/manifest.json`` and
``MANIFEST.sha256``): only the blobs the bucket lacks are uploaded, so the upload is as
incremental as the backup, and a fresh local destination (a new machine after a lost
disk) uploads nothing the bucket already holds. Each object appears whole (an S3 PUT is
atomic); a snapshot's ``MANIFEST.sha256`` is uploaded last, after every blob it needs, so
an upload cut short leaves no snapshot that looks complete. A push never deletes:
:func:`prune_offsite` applies a retention policy to the bucket's own snapshots.

:func:`pull` brings one snapshot back into a local directory laid out as a destination,
checking the manifest against its checksum first; :func:`~prodml.ops.restore_snapshot`
then checks every blob as it restores. Credentials, region and endpoint come from the
environment, as for any S3 client: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or
a profile or role), ``AWS_REGION``, ``AWS_ENDPOINT_URL`` for S3-compatible servers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prodml.core import ArtifactNotFoundError, ConfigError, NotFoundError
from prodml.ops._backup import BLOBS_DIR, blob_path
from prodml.ops._manifest import (
    MANIFEST,
    MANIFEST_SUM,
    SNAPSHOTS_DIR,
    Manifest,
    list_snapshots,
    read_snapshot,
)
from prodml.ops._retention import _kept
from prodml.storage._blob_s3 import S3BlobStore

__all__ = ["OffsiteResult", "is_s3_url", "prune_offsite", "pull", "push"]

S3_SCHEME = "s3://"
#: Uploads and downloads in flight: S3 requests wait on the network, not the CPU.
_THREADS = 8

Progress = Callable[[int, int], None]


def is_s3_url(text: str | os.PathLike[str]) -> bool:
    return str(text).startswith(S3_SCHEME)


def _store(url: str) -> S3BlobStore:
    """The bucket and prefix of ``url``, with the environment's endpoint and region."""
    return S3BlobStore.from_url(url, what="backup destination")


@dataclass(frozen=True)
class OffsiteResult:
    """What a push did: blobs and snapshots uploaded (the rest were there already)."""

    url: str
    blobs_uploaded: int
    bytes_uploaded: int
    snapshots_uploaded: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {"url": self.url, "blobs_uploaded": self.blobs_uploaded,
                "bytes_uploaded": self.bytes_uploaded,
                "snapshots_uploaded": list(self.snapshots_uploaded),
                "seconds": round(self.seconds, 3)}  # fmt: skip


def _local_blobs(dest: Path) -> dict[str, Path]:
    root = dest / BLOBS_DIR
    found = {}
    if root.is_dir():
        for blob in root.glob("*/*"):
            if not blob.name.startswith(".") and blob == blob_path(dest, blob.name):
                found[f"{BLOBS_DIR}/{blob.parent.name}/{blob.name}"] = blob
    return found


def push(dest: Path, url: str, *, progress: Progress | None = None) -> OffsiteResult:
    """Copy the snapshots of the local destination ``dest`` to ``url`` (see the module
    docstring)."""
    started = time.monotonic()
    store = _store(url)
    remote = set(store.list(""))
    local = _local_blobs(dest)
    missing = sorted(key for key in local if key not in remote)
    done = 0
    total = len(missing)

    def upload(key: str) -> int:
        store.save_file(key, local[key])
        return local[key].stat().st_size

    uploaded_bytes = 0
    with ThreadPoolExecutor(_THREADS, thread_name_prefix="prodml-offsite") as pool:
        for size in pool.map(upload, missing):
            uploaded_bytes += size
            done += 1
            if progress is not None:
                progress(done, total)
    snapshots = []
    for snapshot in list_snapshots(dest):
        prefix = f"{SNAPSHOTS_DIR}/{snapshot.name}/"
        if prefix + MANIFEST_SUM in remote:
            continue
        read_snapshot(snapshot)  # never copy a snapshot that does not check out
        store.save_file(prefix + MANIFEST, snapshot / MANIFEST)
        store.save_file(prefix + MANIFEST_SUM, snapshot / MANIFEST_SUM)  # last: complete
        snapshots.append(snapshot.name)
    return OffsiteResult(url, len(missing), uploaded_bytes, tuple(snapshots),
                         time.monotonic() - started)  # fmt: skip


def _split(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix/snapshots/ID`` as the destination's URL and the ID."""
    head, sep, snapshot = url.rstrip("/").rpartition(f"/{SNAPSHOTS_DIR}/")
    if not sep or not snapshot or "/" in snapshot:
        raise ConfigError(
            f"snapshot {url!r}: expected s3://BUCKET[/PREFIX]/{SNAPSHOTS_DIR}/ID, as "
            "`prodml backup --to s3://…` reports it"
        )
    return head, snapshot


def pull(url: str, into: Path, *, progress: Progress | None = None) -> Path:
    """Download the snapshot at ``url`` and its blobs into ``into`` (laid out as a
    destination); returns the local snapshot directory. The manifest is checked against
    its own checksum before any blob is fetched; the blobs are checked by the restore."""
    head, name = _split(url)
    store = _store(head)
    snapshot = into / SNAPSHOTS_DIR / name
    snapshot.mkdir(parents=True, exist_ok=True)
    prefix = f"{SNAPSHOTS_DIR}/{name}/"
    if not store.exists(prefix + MANIFEST_SUM):
        raise NotFoundError(f"snapshot {url}: no such complete snapshot in the bucket")
    for file in (MANIFEST, MANIFEST_SUM):
        store.load_file(prefix + file, snapshot / file)
    manifest = read_snapshot(snapshot)
    wanted = sorted({e.sha256 for e in manifest.files} | {e.sha256 for e in manifest.external})
    done = 0

    def download(sha: str) -> None:
        target = blob_path(into, sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(ArtifactNotFoundError):  # the restore names a missing one
            store.load_file(f"{BLOBS_DIR}/{sha[:2]}/{sha}", target)

    with ThreadPoolExecutor(_THREADS, thread_name_prefix="prodml-offsite") as pool:
        for _ in pool.map(download, wanted):
            done += 1
            if progress is not None:
                progress(done, len(wanted))
    return snapshot


def prune_offsite(url: str, *, keep_last: int, keep_daily: int, keep_weekly: int) -> tuple[str, ...]:  # fmt: skip
    """Apply the retention policy to the bucket's snapshots, then delete the blobs no
    kept snapshot names; the removed snapshots' names. A snapshot stops looking
    complete (its ``MANIFEST.sha256`` goes first) before anything it names is deleted."""
    store = _store(url)
    keys = store.list("")
    names = sorted({k.split("/")[1] for k in keys
                    if k.startswith(f"{SNAPSHOTS_DIR}/") and k.endswith("/" + MANIFEST_SUM)})  # fmt: skip
    if not names:
        return ()
    manifests = {
        name: Manifest.from_bytes(
            store.load_bytes(f"{SNAPSHOTS_DIR}/{name}/{MANIFEST}"),
            where=f"{url}/{SNAPSHOTS_DIR}/{name}",
        )
        for name in names
    }
    times = [datetime.fromisoformat(manifests[n].created_at) for n in names]
    kept = _kept(times, keep_last=max(keep_last, 1), keep_daily=keep_daily, keep_weekly=keep_weekly)
    removed = tuple(n for i, n in enumerate(names) if i not in kept)
    for name in removed:
        store.delete(f"{SNAPSHOTS_DIR}/{name}/{MANIFEST_SUM}")
        store.delete(f"{SNAPSHOTS_DIR}/{name}/{MANIFEST}")
    needed = {e.sha256 for i, n in enumerate(names) if i in kept for e in manifests[n].files}
    needed |= {e.sha256 for i, n in enumerate(names) if i in kept for e in manifests[n].external}
    for key in keys:
        if key.startswith(f"{BLOBS_DIR}/") and key.rsplit("/", 1)[-1] not in needed:
            store.delete(key)
    return removed
