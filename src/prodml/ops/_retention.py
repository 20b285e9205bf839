"""Retention: which snapshots to keep (the newest ``keep_last``, the newest of each of
the last ``keep_daily`` days and ``keep_weekly`` ISO weeks that have one), and the
blobs no kept snapshot names, which go with the others. Blobs are shared between
snapshots, so pruning an old snapshot never removes a file a newer one needs.

>>> from datetime import datetime
>>> days = [datetime(2013, 6, d, h) for d in (1, 2, 3) for h in (0, 12)]
>>> sorted(_kept(days, keep_last=1, keep_daily=2, keep_weekly=0))
[3, 5]
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prodml.core import ConfigError, IntegrityError
from prodml.ops._backup import BLOBS_DIR, blob_path, lock_destination
from prodml.ops._manifest import list_snapshots, read_snapshot

__all__ = ["PruneResult", "prune_snapshots"]


@dataclass(frozen=True)
class PruneResult:
    kept: tuple[str, ...]
    removed: tuple[str, ...]
    blobs_removed: int
    bytes_removed: int

    def to_dict(self) -> dict[str, object]:
        return {"kept": list(self.kept), "removed": list(self.removed),
                "blobs_removed": self.blobs_removed, "bytes_removed": self.bytes_removed}  # fmt: skip


def _kept(times: Sequence[datetime], *, keep_last: int, keep_daily: int, keep_weekly: int) -> set[int]:  # fmt: skip
    """Indices of the snapshots (taken at ``times``) to keep."""
    order = sorted(range(len(times)), key=lambda i: times[i], reverse=True)
    kept = set(order[:keep_last])
    for keep, weekly in ((keep_daily, False), (keep_weekly, True)):
        seen: list[object] = []
        for i in order:
            key: object = times[i].isocalendar()[:2] if weekly else times[i].date()
            if key not in seen:
                if len(seen) == keep:
                    break
                seen.append(key)
                kept.add(i)
    return kept


def prune_snapshots(
    dest: Path,
    *,
    keep_last: int = 1,
    keep_daily: int = 7,
    keep_weekly: int = 4,
    keep: Collection[str] = (),
) -> PruneResult:
    """Remove the snapshots the policy does not keep, then the blobs no kept snapshot
    names. At least one snapshot is always kept, and so are those named in ``keep`` (the
    one a backup just took, even when an older one's clock ran ahead)."""
    for name, value in (("keep_last", keep_last), ("keep_daily", keep_daily),
                        ("keep_weekly", keep_weekly)):  # fmt: skip
        if value < 0:
            raise ConfigError(f"retention {name}: expected a count >= 0, got {value}")
    if not dest.is_dir():
        return PruneResult((), (), 0, 0)
    with lock_destination(dest, exclusive=True):  # no backup stores blobs meanwhile
        return _prune(dest, keep_last=keep_last, keep_daily=keep_daily,
                      keep_weekly=keep_weekly, keep=keep)  # fmt: skip


def _prune(
    dest: Path, *, keep_last: int, keep_daily: int, keep_weekly: int, keep: Collection[str]
) -> PruneResult:
    snapshots = list_snapshots(dest)
    manifests = []
    for snapshot in snapshots:
        try:
            manifests.append(read_snapshot(snapshot))
        except IntegrityError as exc:  # which blobs it names is unknown: none may go
            raise IntegrityError(
                f"retention of {dest}: {exc}; nothing pruned (move the snapshot aside to prune)"
            ) from None
    times = [datetime.fromisoformat(m.created_at) for m in manifests]
    kept = _kept(times, keep_last=max(keep_last, 1), keep_daily=keep_daily,
                 keep_weekly=keep_weekly)  # fmt: skip
    kept |= {i for i, s in enumerate(snapshots) if s.name in keep}
    removed = [s for i, s in enumerate(snapshots) if i not in kept]
    needed = {e.sha256 for i, m in enumerate(manifests) if i in kept for e in m.files}
    needed |= {e.sha256 for i, m in enumerate(manifests) if i in kept for e in m.external}
    for snapshot in removed:
        shutil.rmtree(snapshot)
    count = size = 0
    blobs = dest / BLOBS_DIR
    if blobs.is_dir():
        for blob in blobs.glob("*/*"):
            if blob.name.startswith(".") or blob.name in needed:
                continue
            if blob == blob_path(dest, blob.name):
                size += blob.stat().st_size
                blob.unlink()
                count += 1
    return PruneResult(
        tuple(s.name for i, s in enumerate(snapshots) if i in kept),
        tuple(s.name for s in removed), count, size,
    )  # fmt: skip
