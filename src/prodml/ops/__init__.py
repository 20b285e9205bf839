"""Operations: backups of a whole project that are verified before they are used, and
their restore into a fresh directory.

``backup_project`` writes a snapshot (content-addressed blobs plus a manifest of
SHA-256 per file, incremental across snapshots); ``restore_snapshot`` checks the
manifest against its own checksum and every blob against the manifest before writing
anything (state a scaled-out project keeps in PostgreSQL, Redis or S3 included);
``push``/``pull`` copy snapshots to and from an S3 bucket; ``run_drill`` restores a snapshot, serves it and replays logged requests
against it, bit for bit; ``prune_snapshots`` keeps the last, daily and weekly snapshots and drops the
blobs no kept snapshot names.
"""

from __future__ import annotations

from prodml.ops._backup import BackupResult, backup_project
from prodml.ops._drill import DrillResult, run_drill
from prodml.ops._events import OpsEvent, OpsEvents
from prodml.ops._manifest import ExternalEntry, FileEntry, Manifest
from prodml.ops._offsite import OffsiteResult, is_s3_url, prune_offsite, pull, push
from prodml.ops._replication import (
    ReplicaTarget,
    litestream_path,
    replicated_databases,
    restore_replica,
    start_replication,
)
from prodml.ops._restore import (
    RestoreResult,
    list_snapshots,
    read_snapshot,
    restore_snapshot,
    verify_snapshot,
)
from prodml.ops._retention import PruneResult, prune_snapshots

__all__ = [
    "BackupResult",
    "DrillResult",
    "ExternalEntry",
    "FileEntry",
    "Manifest",
    "OffsiteResult",
    "OpsEvent",
    "OpsEvents",
    "PruneResult",
    "ReplicaTarget",
    "RestoreResult",
    "backup_project",
    "is_s3_url",
    "list_snapshots",
    "litestream_path",
    "prune_offsite",
    "prune_snapshots",
    "pull",
    "push",
    "read_snapshot",
    "replicated_databases",
    "restore_replica",
    "restore_snapshot",
    "run_drill",
    "start_replication",
    "verify_snapshot",
]
