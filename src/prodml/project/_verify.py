"""``prodml verify``: is the project's state intact?

Checks, in order: the metadata DB exists and holds prodml's tables (a missing or empty
one is only harmless in a project with no state at all, see :mod:`prodml.project._project`);
its own consistency check (SQLite ``PRAGMA integrity_check``, or ``quick_check`` when
quick); its schema revision is this prodml's head; and every artifact the metadata
references — model versions, run artifacts, drift references — is in the artifact store
with bytes matching its SHA-256; and (not with quick) every file of the prediction and
label logs is whole (Parquet's magic bytes at both ends, a footer that fits: truncation
and foreign bytes; a page damaged inside a file is found, and quarantined, when a read
reaches it). Nothing is created, migrated, moved or repaired: each problem
names the file or object and how to restore it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from prodml.core import (
    ArtifactNotFoundError,
    IntegrityError,
    MigrationError,
    ProdMLError,
    StorageError,
    load_config,
)
from prodml.ops import OpsEvents
from prodml.project._project import find_root, project_state
from prodml.storage import (
    ArtifactStore,
    MetadataDB,
    open_artifact_store,
    open_log_stores,
    open_metadata_db,
)
from prodml.storage._metadata import metadata_absence, metadata_location, missing_message
from prodml.storage._models import ModelVersionRow, MonitorReferenceRow, RunRow

__all__ = ["Problem", "VerifyReport", "verify_project"]

#: The most serious kind first: a report's exit code is that of its most serious problem.
SEVERITY: tuple[type[ProdMLError], ...] = (StorageError, IntegrityError, ArtifactNotFoundError)


@dataclass(frozen=True)
class Problem:
    """One thing wrong: the file or object, the kind of error, what to do."""

    object: str
    kind: type[ProdMLError]
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"object": self.object, "type": self.kind.__name__, "message": self.message}


@dataclass
class VerifyReport:
    """What ``prodml verify`` found."""

    root: Path
    metadata: str
    check: str
    revision: str | None = None
    artifacts_checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def worst(self) -> Problem | None:
        """The most serious problem (see :data:`SEVERITY`), ``None`` when all is well."""
        for kind in SEVERITY:
            for problem in self.problems:
                if issubclass(problem.kind, kind):
                    return problem
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "project": str(self.root),
            "metadata": self.metadata,
            "check": self.check,
            "revision": self.revision,
            "artifacts_checked": self.artifacts_checked,
            "problems": [p.to_dict() for p in self.problems],
            "notes": self.notes,
        }


def verify_project(
    path: str | Path = ".", *, full: bool = True, environ: Mapping[str, str] | None = None
) -> VerifyReport:
    """Check the project at or above ``path`` (see the module doc); never raises for
    what it finds, only for a project it cannot read (no ``prodml.toml``, bad config)."""
    root = find_root(Path(path))
    config = load_config(root, environ)
    location = metadata_location(config.metadata, root)
    report = VerifyReport(
        root=root, metadata=location, check="integrity_check" if full else "quick_check"
    )
    artifacts = open_artifact_store(config.artifacts, root)
    try:
        absent = metadata_absence(config.metadata, root)
    except ProdMLError as exc:
        report.problems.append(Problem(location, type(exc), str(exc)))
        return report
    if absent is not None:
        evidence = project_state(root, config, artifacts)
        if evidence is None:
            report.notes.append(
                f"metadata DB {location} {absent}: the project has no state yet, so the "
                "next command creates an empty one"
            )
        else:
            report.problems.append(
                Problem(location, StorageError, missing_message(location, absent, evidence))
            )
        return report
    try:
        db = open_metadata_db(config.metadata, root, upgrade=False)
    except ProdMLError as exc:
        report.problems.append(Problem(location, type(exc), str(exc)))
        return report
    with db:
        _check_db(db, report, full=full)
        _check_artifacts(db, artifacts, report)
        _recovery_notes(db, report)
    if full:
        _check_logs(root, config, report)
    return report


def _check_logs(root: Path, config: Any, report: VerifyReport) -> None:
    """Every file of both logs intact (see :meth:`~prodml.storage.LogStore.damaged`),
    nothing moved: each damaged file is a problem naming it; quarantined files are
    noted."""
    try:
        logs = open_log_stores(root / config.project.state_dir, config.logs.type, config.logs)
        stores = [logs.predictions, logs.labels]
    except ProdMLError as exc:
        report.problems.append(Problem(f"[logs] type = {config.logs.type!r}", type(exc), str(exc)))
        return
    whole = True
    for store in stores:
        try:
            damaged, moved = store.damaged(), store.quarantined()
        except ProdMLError as exc:
            report.problems.append(Problem(f"{store.name} log", type(exc), str(exc)))
            whole = False
            continue
        whole = whole and not damaged
        for location, reason in damaged:
            report.problems.append(
                Problem(
                    location,
                    StorageError,
                    f"{store.name} log file {location} cannot be read: {reason}; restore it "
                    "from a backup, or let the next read move it to the quarantine",
                )
            )
        if moved:
            report.notes.append(
                f"{store.name} log: {len(moved)} unreadable file(s) quarantined, e.g. {moved[0]}"
            )
    if whole:
        report.notes.append("logs: every file of the prediction and label logs is whole Parquet")


def _recovery_notes(db: MetadataDB, report: VerifyReport) -> None:
    """When the last backup and the last good disaster-recovery drill ran."""
    events = OpsEvents(db)
    try:
        backup, drill = events.last("backup"), events.last("drill", status="passed")
    except SQLAlchemyError:  # a DB from before the ops_events table (not yet upgraded)
        return
    if backup is None:
        report.notes.append("no backup recorded: run `prodml backup`")
    else:
        report.notes.append(f"last backup: {backup.finished_at:%Y-%m-%d %H:%M} UTC, snapshot "
                            f"{backup.snapshot}")  # fmt: skip
    if drill is None:
        report.notes.append("no passed disaster-recovery drill recorded: run `prodml dr drill`")
    else:
        replayed = drill.detail.get("replayed", 0)
        report.notes.append(
            f"last good drill: {drill.finished_at:%Y-%m-%d %H:%M} UTC, snapshot {drill.snapshot}, "
            f"{replayed:,} requests replayed bit for bit, RTO {drill.detail.get('rto_s')} s"
        )


def _check_db(db: MetadataDB, report: VerifyReport, *, full: bool) -> None:
    try:
        db.ensure_intact(full=full)
    except ProdMLError as exc:
        report.problems.append(Problem(db.location, type(exc), str(exc)))
        return
    from prodml.storage import head_revision

    try:
        report.revision = db.current_revision()
    except ProdMLError as exc:
        report.problems.append(Problem(db.location, type(exc), str(exc)))
        return
    head = head_revision()
    if report.revision != head:
        report.problems.append(
            Problem(
                db.location,
                MigrationError,
                f"metadata DB {db.location}: schema revision {report.revision} is not this "
                f"prodml's head {head}: back it up, then any prodml command of this version "
                "upgrades it (a revision this prodml does not know needs the prodml that "
                "wrote it)",
            )
        )


def _check_artifacts(db: MetadataDB, artifacts: ArtifactStore, report: VerifyReport) -> None:
    try:
        referenced = _referenced(db)
    except ProdMLError as exc:
        if any(p.object == db.location for p in report.problems):  # already reported
            report.notes.append("artifacts not checked: the metadata DB cannot list them")
        else:
            report.problems.append(
                Problem(db.location, type(exc), f"cannot list the referenced artifacts: {exc}")
            )
        return
    store = repr(artifacts.blobs)
    for digest, owners in sorted(referenced.items()):
        who = ", ".join(owners[:3]) + (f" and {len(owners) - 3} more" if len(owners) > 3 else "")
        restore = (
            f"restore it from a backup of the artifact store {store} (blobs are named by "
            "their SHA-256: any copy of the same bytes will do)"
        )
        try:
            artifacts.check(digest)  # hashed where it lies, never copied
        except ArtifactNotFoundError:
            message = f"artifact {digest} ({who}) is missing from the store; {restore}"
            report.problems.append(Problem(f"artifact {digest}", ArtifactNotFoundError, message))
        except IntegrityError as exc:
            message = f"artifact {digest} ({who}) is corrupt: {exc}; {restore}"
            report.problems.append(Problem(f"artifact {digest}", IntegrityError, message))
        except ValueError:
            message = f"{who} names artifact {digest!r}, which is not a SHA-256 digest"
            report.problems.append(Problem(f"artifact {digest}", IntegrityError, message))
        except ProdMLError as exc:
            message = f"artifact {digest} ({who}) cannot be read: {exc}"
            report.problems.append(Problem(f"artifact {digest}", type(exc), message))
        report.artifacts_checked += 1


def _referenced(db: MetadataDB) -> dict[str, list[str]]:
    """Every digest the metadata references → what references it."""
    found: dict[str, list[str]] = {}
    with db.session() as session:
        for name, version, digest in session.execute(
            select(ModelVersionRow.name, ModelVersionRow.version, ModelVersionRow.artifact_digest)
        ):
            found.setdefault(digest, []).append(f"model version {name}:{version}")
        for run_id, logged in session.execute(select(RunRow.id, RunRow.artifacts)):
            for artifact, digest in _run_digests(logged):
                found.setdefault(digest, []).append(f"run {run_id} artifact {artifact!r}")
        for model_version, digest in session.execute(
            select(MonitorReferenceRow.model_version, MonitorReferenceRow.digest)
        ):
            found.setdefault(digest, []).append(f"drift reference of {model_version}")
    return found


def _run_digests(logged: Any) -> Iterator[tuple[str, str]]:
    if isinstance(logged, dict):
        for name, entry in logged.items():
            digest = entry.get("digest") if isinstance(entry, dict) else None
            if isinstance(digest, str):
                yield str(name), digest
