"""``prodml backup`` / ``prodml restore`` (:mod:`prodml.ops`): a snapshot restores
byte-identical (SQLite files by content) into a project that verifies and predicts the
same; snapshots are incremental; any damaged blob or edited manifest is refused with the
file named and the target left uncreated; a backup killed with SIGKILL leaves no
complete-looking snapshot; a backup taken while the project is written to restores into
a consistent project; retention keeps what it says and drops only unshared blobs."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli._app import app
from prodml.core import (
    ConflictError,
    IntegrityError,
    NotFoundError,
    StateError,
    StorageError,
    SystemClock,
)
from prodml.ops import (
    BackupResult,
    Manifest,
    OpsEvents,
    backup_project,
    list_snapshots,
    prune_snapshots,
    read_snapshot,
    restore_snapshot,
    verify_snapshot,
)
from prodml.ops import _backup as backup_module
from prodml.ops import _backup_files as backup_files
from prodml.ops import _restore as restore_module
from prodml.project._verify import verify_project
from prodml.storage import _logs as logs_module
from prodml.storage._log_format import CHANGED_MARKER, mark_changed
from prodml.storage._log_reader import read_log
from prodml.storage._logs import LogWriter
from servingkit import lr_model, numeric_data, register, serving_project

DEADLINE_S = 120.0  # the longest any wait may take, however busy the machine
SQLITE_HEADER = b"SQLite format 3\x00"
SKIP_DIRS = {".git", "__pycache__"}
SKIP_SUFFIXES = ("-wal", "-shm", "-journal")
EXTRA_FILES: dict[str, bytes] = {
    "data/rows.csv": b"a,b\n1,2\n3,4\n",
    "data/nested/deeper/blob.bin": bytes(range(256)) * 64,
    "data/empty.txt": b"",
    "notes/README.md": "# notes\nünïcode\n".encode(),
}

runner = CliRunner()


# --- helpers ------------------------------------------------------------------------
def make_project(root: Path) -> Project:
    """The serving project (``lr:1`` registered, approved, deployed) plus a few plain
    files of the user's, nested, empty and binary."""
    project, _ = serving_project(root)
    for rel, data in EXTRA_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return project


def project_files(root: Path) -> dict[str, Path]:
    """Every file under ``root`` by relative path, but for git/pycache, SQLite's side
    files and the logs' change markers (bookkeeping a backup leaves out)."""
    found: dict[str, Path] = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            if name.endswith(SKIP_SUFFIXES) or name == CHANGED_MARKER:
                continue
            path = Path(directory) / name
            found[path.relative_to(root).as_posix()] = path
    return found


def is_sqlite(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(16) == SQLITE_HEADER


def sqlite_dump(path: Path) -> list[str]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_same_tree(source: Path, restored: Path) -> None:
    """Same files; each byte-identical, SQLite files identical in content."""
    src, out = project_files(source), project_files(restored)
    assert sorted(out) == sorted(src)
    for rel, path in src.items():
        if is_sqlite(path):
            assert sqlite_dump(out[rel]) == sqlite_dump(path), rel
        else:
            assert sha256(out[rel]) == sha256(path), rel


def only_snapshot(dest: Path) -> Path:
    (snapshot,) = list_snapshots(dest)
    return snapshot


def blob_of(snapshot: Path, predicate: Callable[[str], bool]) -> tuple[str, Path]:
    """The path and blob file of the first manifest entry whose path satisfies
    ``predicate``."""
    manifest = read_snapshot(snapshot)
    entry = next(e for e in manifest.files if predicate(e.path))
    return entry.path, backup_module.blob_path(snapshot.parent.parent, entry.sha256)


def is_artifact(path: str) -> bool:
    return path.startswith(".prodml/artifacts/")


def blobs_on_disk(dest: Path) -> set[str]:
    return {p.name for p in (dest / "blobs").glob("*/*") if not p.name.startswith(".")}


def used_blobs(snapshot: Path) -> set[str]:
    return {e.sha256 for e in read_snapshot(snapshot).files}


def assert_verified(root: Path) -> None:
    report = verify_project(root)
    assert report.ok, [p.to_dict() for p in report.problems]


def assert_refused(snapshot: Path, target: Path, *texts: str) -> None:
    """``restore_snapshot`` raises IntegrityError mentioning ``texts``; nothing is written."""
    with pytest.raises(IntegrityError) as caught:
        restore_snapshot(snapshot, target)
    for text in texts:
        assert text in str(caught.value), (text, str(caught.value))
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if ".restoring-" in p.name]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = make_project(tmp_path / "proj")
    yield project
    project.close()


@pytest.fixture
def snapshot(project: Project, tmp_path: Path) -> Path:
    """One snapshot of ``project`` in ``tmp_path/backups``."""
    return backup_project(project.root, tmp_path / "backups").path


# --- 1. round trip ------------------------------------------------------------------
def test_round_trip_restores_identical_files_that_verify_and_predict_the_same(
    project: Project, tmp_path: Path
) -> None:
    root, dest, target = project.root, tmp_path / "backups", tmp_path / "restored"
    # the project stays open: its metadata DB has a live WAL a plain copy would miss;
    # not recorded, so the metadata DB stays as the snapshot has it
    result = backup_project(root, dest, record=False)
    assert result.path == only_snapshot(dest)
    assert result.files == len(project_files(root))
    assert result.new_blobs >= 1
    assert result.schema_revision is not None

    restored = restore_snapshot(result.path, target)
    assert restored.target == target.resolve()
    assert (restored.files, restored.bytes) == (result.files, result.bytes)

    assert_same_tree(root, target)
    assert_verified(target)
    rows = numeric_data(n=50, seed=5)[0]
    expected = project.registry.load("lr:1").predict(rows)
    with Project.open(target) as copy:
        assert [v.ref for v in copy.registry.versions("lr")] == ["lr:1"]
        got = copy.registry.load("lr:1").predict(rows)
    np.testing.assert_array_equal(got, expected)


def test_a_backup_is_recorded_in_the_metadata_db(project: Project, tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    events = OpsEvents(project.db)
    assert events.last("backup") is None
    first = backup_project(project.root, dest)
    event = events.last("backup")
    assert event is not None
    assert (event.snapshot, event.status) == (first.id, "ok")
    # the snapshot holds the DB as it was before its own event; the next one holds it
    second = backup_project(project.root, dest)
    assert second.new_blobs == 1
    old = used_blobs(first.path)
    new = [e.path for e in read_snapshot(second.path).files if e.sha256 not in old]
    assert new == [".prodml/meta.db"]
    for i, snap in enumerate((first.path, second.path)):
        target = tmp_path / f"restored-{i}"
        restore_snapshot(snap, target)
        with Project.open(target) as copy:
            last = OpsEvents(copy.db).last("backup")
        assert (None if last is None else last.snapshot) == (None if i == 0 else first.id)


def test_restore_into_an_existing_empty_directory(snapshot: Path, tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    restore_snapshot(snapshot, target)
    assert (target / "prodml.toml").is_file()
    assert_verified(target)


# --- 2. incremental -----------------------------------------------------------------
def test_backups_are_incremental(project: Project, tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    first = backup_project(project.root, dest, record=False)
    assert first.new_blobs == len(blobs_on_disk(dest)) >= 5

    unchanged = backup_project(project.root, dest, record=False)
    assert (unchanged.new_blobs, unchanged.new_bytes) == (0, 0)
    assert unchanged.files == first.files
    assert len(list_snapshots(dest)) == 2

    model, rows = lr_model(C=0.25)
    version = register(project, model, rows)
    after = backup_project(project.root, dest, record=False)
    # the new artifact and the changed metadata DB, not the files that did not change
    assert 1 <= after.new_blobs <= 3, after
    assert after.new_blobs < after.files / 2
    assert after.files == first.files + 1
    assert version.artifact_digest in used_blobs(after.path)
    assert version.artifact_digest not in used_blobs(first.path)
    for snap in list_snapshots(dest):
        verify_snapshot(snap)


LOGS = Path(".prodml") / "logs"


def write_log(root: Path, when: datetime, **values: Any) -> None:
    """One record of endpoint ``x`` through the log writer."""
    with LogWriter(root / LOGS / "predictions", clock=SystemClock()) as writer:
        assert writer.append({"time": when, "endpoint": "x", **values})


def age(path: Path, seconds: float = 3600.0) -> None:
    """Make ``path`` look last changed ``seconds`` ago (past the backup's racy window)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def logged_day(root: Path) -> Path:
    """One record logged for 2013-01-01 an hour ago: the date directory, its marker
    past the racy window."""
    write_log(root, datetime(2013, 1, 1, 5, 30, tzinfo=UTC), y=1)
    day = root / LOGS / "predictions" / "endpoint=x" / "date=2013-01-01"
    age(day / CHANGED_MARKER)
    return day


def scanned_backup(
    monkeypatch: pytest.MonkeyPatch, root: Path, dest: Path
) -> tuple[BackupResult, list[str]]:
    """A backup of ``root`` into ``dest``, and every directory its walk listed."""
    scanned: list[str] = []
    real = os.scandir

    def scandir(path: Any) -> Any:
        scanned.append(os.fspath(path))
        return real(path)

    with monkeypatch.context() as patch:
        patch.setattr(backup_files.os, "scandir", scandir)
        return backup_project(root, dest, record=False), scanned


def manifest_files(snapshot: Path) -> dict[str, tuple[str, int]]:
    return {e.path: (e.sha256, e.size) for e in read_snapshot(snapshot).files}


def test_the_log_writer_touches_the_date_marker_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = tmp_path / "endpoint=x" / "date=2013-01-01"
    published: list[int] = []
    real = logs_module.mark_changed

    def mark(directory: Path) -> None:
        assert directory == day
        published.append(len(list(day.glob("hour=05/*.parquet"))))
        real(directory)

    monkeypatch.setattr(logs_module, "mark_changed", mark)
    with LogWriter(tmp_path, clock=SystemClock()) as writer:
        writer.append({"time": datetime(2013, 1, 1, 5, 30, tzinfo=UTC), "endpoint": "x"})
    assert published == [0, 1]  # before the file appears, and after
    assert (day / CHANGED_MARKER).is_file()


def test_an_unchanged_log_date_is_taken_from_the_files_cache_whole(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, dest = project.root, tmp_path / "backups"
    day = logged_day(root)
    first = backup_project(root, dest, record=False)
    second, scanned = scanned_backup(monkeypatch, root, dest)
    assert not [p for p in scanned if p.startswith(str(day))]  # not listed …
    assert str(day.parent) in scanned  # … but its parent is
    files = manifest_files(second.path)
    assert files == manifest_files(first.path)  # … and in the manifest, unchanged
    assert (second.files, second.bytes) == (first.files, first.bytes)
    full = backup_project(root, tmp_path / "fresh", record=False)
    assert files == manifest_files(full.path)
    assert [p for p in files if p.startswith(LOGS.as_posix())]

    # New records for the same date move its marker: the date is listed again.
    write_log(root, datetime(2013, 1, 1, 6, 15, tzinfo=UTC), y=2)
    third, scanned = scanned_backup(monkeypatch, root, dest)
    assert str(day) in scanned
    files = manifest_files(third.path)
    assert files == manifest_files(backup_project(root, tmp_path / "fresh2", record=False).path)
    new = [p for p in files if "/hour=06/" in p]
    assert len(new) == 1
    assert third.files == first.files + 1
    restore_snapshot(third.path, tmp_path / "out")
    assert (tmp_path / "out" / new[0]).read_bytes() == (root / new[0]).read_bytes()
    assert_same_tree(root, tmp_path / "out")


def test_a_quarantined_log_file_leaves_the_cached_date(project: Project, tmp_path: Path) -> None:
    root, dest = project.root, tmp_path / "backups"
    log = root / LOGS / "predictions"
    day = logged_day(root)
    bad = day / "hour=05" / "bad.parquet"
    bad.write_bytes(b"not parquet")  # a damaged file, published as the writer does
    mark_changed(day)
    age(day / CHANGED_MARKER)
    first = backup_project(root, dest, record=False)
    assert bad.relative_to(root).as_posix() in manifest_files(first.path)
    backup_project(root, dest, record=False)  # the date from the cache

    moved: list[Any] = []
    read_log(log, quarantine=moved)
    assert len(moved) == 1
    assert not bad.exists()
    after = manifest_files(backup_project(root, dest, record=False).path)
    assert bad.relative_to(root).as_posix() not in after
    assert moved[0].target.relative_to(root).as_posix() in after
    assert after == manifest_files(backup_project(root, tmp_path / "fresh", record=False).path)


def test_cached_dates_are_listed_again_when_their_snapshot_is_gone(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, dest = project.root, tmp_path / "backups"
    day = logged_day(root)
    backup_project(root, dest, record=False)
    second = backup_project(root, dest, record=False)
    shutil.rmtree(second.path)  # the snapshot the files cache names: its blobs may be gone
    for blob in dest.glob("blobs/*/*"):
        blob.unlink()
    third, scanned = scanned_backup(monkeypatch, root, dest)
    assert str(day) in scanned
    verify_snapshot(third.path)  # every blob stored again
    assert third.new_blobs == third.files


def test_a_damaged_files_cache_is_not_spliced_into_a_manifest(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, dest = project.root, tmp_path / "backups"
    day = logged_day(root)
    first = backup_project(root, dest, record=False)
    (cache,) = (dest / "cache").glob("*.json")
    raw = json.loads(cache.read_bytes())
    (segment,) = [v for k, v in raw["segments"].items() if k.endswith("date=2013-01-01/")]
    segment[1] = segment[1].replace('"sha256":"', '"sha256":"0', 1)  # a changed byte
    cache.write_text(json.dumps(raw))
    second, scanned = scanned_backup(monkeypatch, root, dest)
    assert str(day) in scanned  # listed again, not taken from the damaged cache
    assert manifest_files(second.path) == manifest_files(first.path)
    verify_snapshot(second.path)


def test_rescan_finds_a_log_file_changed_by_hand(project: Project, tmp_path: Path) -> None:
    root, dest = project.root, tmp_path / "backups"
    day = logged_day(root)
    backup_project(root, dest, record=False)
    by_hand = day / "hour=07" / "copied.parquet"
    by_hand.parent.mkdir()
    by_hand.write_bytes(b"copied in by hand")
    rel = by_hand.relative_to(root).as_posix()
    # the date's marker did not move: the backup trusts the last listing
    assert rel not in manifest_files(backup_project(root, dest, record=False).path)
    code, out = cli("backup", "--to", str(dest), "--rescan", "--project", str(root), "--json")
    assert code == 0, out
    files = manifest_files(Path(out["snapshot"]["path"]))
    assert files[rel] == (hashlib.sha256(b"copied in by hand").hexdigest(), 17)
    # and the rescan's listing is what the next backup trusts
    assert rel in manifest_files(backup_project(root, dest, record=False).path)


def test_a_date_directory_inside_a_date_directory_is_listed_once(
    project: Project, tmp_path: Path
) -> None:
    root, dest = project.root, tmp_path / "backups"
    day = logged_day(root)
    odd = day / "hour=05" / "date=2013-01-02" / "stray.bin"
    odd.parent.mkdir()
    odd.write_bytes(b"stray")
    for directory in (day, odd.parent):  # a marker in each
        mark_changed(directory)
        age(directory / CHANGED_MARKER)
    first = backup_project(root, dest, record=False)
    second = backup_project(root, dest, record=False)
    for snapshot in (first.path, second.path):
        paths = [e.path for e in read_snapshot(snapshot).files]
        assert len(paths) == len(set(paths))
        assert odd.relative_to(root).as_posix() in paths
    assert manifest_files(first.path) == manifest_files(second.path)


# --- 3. refusals --------------------------------------------------------------------
def test_a_flipped_byte_in_a_blob_is_refused_naming_the_file(
    snapshot: Path, tmp_path: Path
) -> None:
    path, blob = blob_of(snapshot, is_artifact)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="damaged"):
        verify_snapshot(snapshot)
    assert_refused(snapshot, tmp_path / "target", path, "damaged")


def test_a_missing_blob_is_refused_naming_the_file(snapshot: Path, tmp_path: Path) -> None:
    _, blob = blob_of(snapshot, lambda p: p == "data/rows.csv")
    blob.unlink()
    assert_refused(snapshot, tmp_path / "target", "data/rows.csv", "missing")


def test_a_manifest_edited_to_match_a_tampered_blob_is_refused(
    snapshot: Path, tmp_path: Path
) -> None:
    path, blob = blob_of(snapshot, is_artifact)
    tampered = blob.read_bytes() + b"tampered"
    new_sha = hashlib.sha256(tampered).hexdigest()
    new_blob = backup_module.blob_path(snapshot.parent.parent, new_sha)
    new_blob.parent.mkdir(parents=True, exist_ok=True)
    new_blob.write_bytes(tampered)
    raw = json.loads((snapshot / "manifest.json").read_bytes())
    (entry,) = [e for e in raw["files"] if e["path"] == path]
    entry["sha256"], entry["size"] = new_sha, len(tampered)
    edited = Manifest.from_bytes(json.dumps(raw).encode())
    assert any(e.sha256 == new_sha for e in edited.files)
    (snapshot / "manifest.json").write_bytes(edited.to_bytes())
    (snapshot / "MANIFEST.sha256").write_text(edited.digest() + "\n")  # even the checksum

    with pytest.raises(IntegrityError, match="manifest"):
        read_snapshot(snapshot)
    assert_refused(snapshot, tmp_path / "target", "manifest", snapshot.name)


def test_a_manifest_edited_without_its_checksum_is_refused(snapshot: Path, tmp_path: Path) -> None:
    manifest = snapshot / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"project"', b'"project" ', 1))
    assert_refused(snapshot, tmp_path / "target", "manifest")


def test_restore_into_a_non_empty_directory_is_a_conflict(snapshot: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ConflictError, match="not empty"):
        restore_snapshot(snapshot, target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "mine"


def test_cli_restore_refuses_a_damaged_snapshot_naming_the_file(
    snapshot: Path, tmp_path: Path
) -> None:
    _, blob = blob_of(snapshot, lambda p: p == "data/rows.csv")
    blob.write_bytes(b"a,b\n1,2\n3,5\n")
    target = tmp_path / "target"
    result = runner.invoke(app, ["restore", str(snapshot), str(target)])
    assert result.exit_code != 0
    assert "data/rows.csv" in result.output
    assert not target.exists()

    result = runner.invoke(app, ["restore", str(snapshot), str(target), "--json"])
    assert result.exit_code != 0
    assert "data/rows.csv" in json.loads(result.stdout)["error"]
    assert not target.exists()


def test_cli_restore_refuses_a_non_empty_target(snapshot: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["restore", str(snapshot), str(target)])
    assert result.exit_code != 0
    assert "not empty" in result.output
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


# --- 4. SIGKILL mid-backup ----------------------------------------------------------
def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"backup exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {DEADLINE_S} s")
        time.sleep(0.02)


@pytest.mark.slow
def test_a_backup_killed_midway_leaves_no_snapshot(project: Project, tmp_path: Path) -> None:
    root, dest = project.root, tmp_path / "backups"
    big = root / "data" / "big.bin"
    big.parent.mkdir(parents=True, exist_ok=True)
    with big.open("wb") as handle:
        for _ in range(12):  # 96 MiB: stored through the large-file path
            handle.write(os.urandom(8 << 20))
    # A SQLite database of the project held under an exclusive lock stops the backup at
    # its copy (the backup API waits for the lock) however fast the machine is.
    held = root / "data" / "held.db"
    lock = sqlite3.connect(held, isolation_level=None)
    lock.execute("CREATE TABLE t (x INTEGER)")
    lock.execute("BEGIN EXCLUSIVE")
    err = tmp_path / "backup.err"
    try:
        with err.open("wb") as errors:
            process = subprocess.Popen(
                [sys.executable, "-m", "prodml.cli", "backup", "-p", str(root), "--to", str(dest)],
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
            try:
                snapshots = dest / "snapshots"
                wait_for(lambda: any(snapshots.glob(".incomplete-*")), "working directory", process)
                wait_for(lambda: any((dest / "blobs").glob("*/*")), "a stored blob", process)
                process.send_signal(signal.SIGKILL)
                assert process.wait(DEADLINE_S) == -signal.SIGKILL
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(DEADLINE_S)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert list_snapshots(dest) == []
    assert all(p.name.startswith(".") for p in (dest / "snapshots").iterdir())

    result = backup_project(root, dest)
    assert list_snapshots(dest) == [result.path]
    assert result.new_blobs < result.files  # the blobs stored before the kill are reused
    verify_snapshot(result.path)
    target = tmp_path / "restored"
    restore_snapshot(result.path, target)
    assert sha256(target / "data" / "big.bin") == sha256(big)
    assert_verified(target)


# --- 5. backup while the project is written to --------------------------------------
class Writer(threading.Thread):
    """Runs (with metrics) and, every few runs, a new model version, in a loop on its
    own connection to the project, until stopped."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.runs = 0
        self.versions = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Project.open(self.root) as project:
                while not self.stop.is_set():
                    with project.registry.start_run("lr", environment=False) as run:
                        run.log_metric("step", self.runs)
                        run.log_text("note.txt", f"run {self.runs}")
                    self.runs += 1
                    if self.runs % 3 == 0:
                        model, rows = lr_model(C=1.0 + self.runs / 100)
                        register(project, model, rows)
                        self.versions += 1
        except BaseException as exc:
            self.error = exc


def test_backups_taken_during_writes_restore_consistent(project: Project, tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    writer = Writer(project.root)
    writer.start()
    snapshots: list[Path] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while writer.versions < 2 and writer.error is None:
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.02)
        while len(snapshots) < 6 and writer.error is None:
            before = writer.runs
            snapshots.append(backup_project(project.root, dest).path)
            while writer.runs == before and writer.error is None:  # a write between each
                assert time.monotonic() < deadline, "the writer made no progress"
                time.sleep(0.02)
    finally:
        writer.stop.set()
        writer.join(DEADLINE_S)
    assert writer.error is None, repr(writer.error)
    assert not writer.is_alive()
    assert len(snapshots) == 6
    for i, snap in enumerate(snapshots):
        target = tmp_path / f"restored-{i}"
        restore_snapshot(snap, target)
        assert_verified(target)


def test_a_version_registered_while_the_backup_lists_files_is_consistent(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer commits a new version (artifact, then its row) just after the backup
    listed the project's files and before it copies the metadata DB: the restored DB
    must not name an artifact the snapshot does not hold."""
    copy = backup_module._sqlite_copy
    registered: list[str] = []

    def writer_then_copy(source: Path, target: Path) -> None:
        if not registered:
            model, rows = lr_model(C=0.5)
            registered.append(register(project, model, rows).ref)
        copy(source, target)

    monkeypatch.setattr(backup_module, "_sqlite_copy", writer_then_copy)
    result = backup_project(project.root, tmp_path / "backups")
    assert registered == ["lr:2"]
    target = tmp_path / "restored"
    restore_snapshot(result.path, target)
    assert_verified(target)


# --- 6. retention -------------------------------------------------------------------
def test_retention_keeps_the_newest_and_drops_unshared_blobs(
    project: Project, tmp_path: Path
) -> None:
    dest = tmp_path / "backups"
    change = project.root / "data" / "change.txt"
    contents = {}
    for day in (1, 2, 3, 4):
        change.write_text(f"version of day {day}\n")
        result = backup_project(project.root, dest, now=datetime(2024, 3, day, 12, tzinfo=UTC))
        contents[result.path.name] = change.read_text()
    snapshots = list_snapshots(dest)
    assert [s.name for s in snapshots] == sorted(contents)
    old, new = snapshots[:2], snapshots[2:]
    kept_blobs = set().union(*(used_blobs(s) for s in new))
    only_old = set().union(*(used_blobs(s) for s in old)) - kept_blobs
    assert only_old  # at least the two old versions of change.txt
    assert blobs_on_disk(dest) == kept_blobs | only_old

    pruned = prune_snapshots(dest, keep_last=1, keep_daily=2, keep_weekly=0)
    assert pruned.kept == tuple(s.name for s in new)
    assert pruned.removed == tuple(s.name for s in old)
    assert pruned.blobs_removed == len(only_old)
    assert list_snapshots(dest) == new
    assert blobs_on_disk(dest) == kept_blobs
    for i, snap in enumerate(new):
        verify_snapshot(snap)
        target = tmp_path / f"restored-{i}"
        restore_snapshot(snap, target)
        assert (target / "data" / "change.txt").read_text() == contents[snap.name]
        assert_verified(target)


# --- 7. CLI -------------------------------------------------------------------------
def cli(*args: str) -> tuple[int, Any]:
    result = runner.invoke(app, list(args))
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.output


def test_cli_backup_json_and_retention(project: Project, tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    root = str(project.root)
    code, out = cli("backup", "--to", str(dest), "--json", "-p", root)
    assert code == 0, out
    first = out["snapshot"]
    assert out["pruned"] is None
    assert first["id"] == only_snapshot(dest).name
    assert Path(first["path"]) == only_snapshot(dest)
    assert first["files"] == len(project_files(project.root))
    assert first["new_blobs"] == len(blobs_on_disk(dest))
    assert first["bytes"] == read_snapshot(only_snapshot(dest)).size
    first_blobs = used_blobs(only_snapshot(dest))
    event = OpsEvents(project.db).last("backup")
    assert event is not None
    assert event.snapshot == first["id"]

    code, out = cli("backup", "--to", str(dest), "--json", "--keep-last", "1", "-p", root)
    assert code == 0, out
    # nothing changed but the metadata DB, which records the first backup
    new = [e.path for e in read_snapshot(Path(out["snapshot"]["path"])).files
           if e.sha256 not in first_blobs]  # fmt: skip
    assert new == [".prodml/meta.db"]
    assert out["snapshot"]["new_blobs"] == 1
    assert out["pruned"]["removed"] == [first["id"]]
    assert out["pruned"]["kept"] == [out["snapshot"]["id"]]
    assert list_snapshots(dest) == [Path(out["snapshot"]["path"])]

    code, out = cli("restore", out["snapshot"]["path"], str(tmp_path / "restored"), "--json")
    assert code == 0, out
    assert out["files"] == first["files"]
    assert_verified(tmp_path / "restored")


def test_cli_backup_default_destination_and_human_output(project: Project, tmp_path: Path) -> None:
    result = runner.invoke(app, ["backup", "-p", str(project.root)])
    assert result.exit_code == 0, result.output
    dest = project.root.parent / f"{project.root.name}-backups"
    snap = only_snapshot(dest)
    assert snap.name in result.output
    verify_snapshot(snap)


# --- bad input ------------------------------------------------------------------------
def test_an_unknown_snapshot_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such directory"):
        restore_snapshot(tmp_path / "snapshots" / "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_snapshot_of_a_newer_schema_is_refused(project: Project, tmp_path: Path) -> None:
    result = backup_project(project.root, tmp_path / "backups", record=False)
    manifest = read_snapshot(result.path)
    newer = replace(manifest, schema_revision="9999")
    data = newer.to_bytes()
    digest = hashlib.sha256(data).hexdigest()
    moved = result.path.with_name(result.path.name.rsplit("-", 1)[0] + "-" + digest[:16])
    result.path.rename(moved)
    (moved / "manifest.json").write_bytes(data)
    (moved / "MANIFEST.sha256").write_text(digest + "\n")
    verify_snapshot(moved)  # a well-formed snapshot …
    with pytest.raises(StateError, match=r"'9999'.*upgrade prodml"):
        restore_snapshot(moved, tmp_path / "out")  # … this prodml cannot read
    assert not (tmp_path / "out").exists()


def test_no_space_left_undoes_the_restore_and_the_backup(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "backups"
    result = backup_project(project.root, dest, record=False)

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    def copy_then_full(snapshot: str, blobs: str, entry: Any, out: str | None) -> None:
        if out is not None:
            with open(out, "wb") as handle:
                handle.write(b"partial")
        full()

    with monkeypatch.context() as patch:
        patch.setattr(restore_module, "_checked_copy", copy_then_full)
        with pytest.raises(StorageError, match=r"failed and was undone: .*No space left"):
            restore_snapshot(result.path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".restoring-" in p.name]

    (project.root / "data").mkdir(exist_ok=True)
    (project.root / "data" / "new.bin").write_bytes(os.urandom(4096))

    def half_then_full(data: bytes) -> Any:
        def write(path: str) -> None:
            with open(path, "wb") as handle:
                handle.write(data[: len(data) // 2])
            full()

        return write

    with monkeypatch.context() as patch:
        patch.setattr(backup_module, "_write_bytes", half_then_full)
        with pytest.raises(StorageError, match=r"failed and was undone: .*new\.bin.*No space"):
            backup_project(project.root, dest, record=False)
    assert list_snapshots(dest) == [result.path]
    assert not list((dest / "snapshots").glob(".incomplete-*"))
    assert not list((dest / "blobs").glob("*/.*.partial"))
