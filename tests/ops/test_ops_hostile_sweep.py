"""Hostile inputs to backup, restore and retention (:mod:`prodml.ops`): a forged or
malformed manifest is refused before anything is written (never a file outside the
target, never a traceback); destinations and targets that cannot be used are refused
with the object named; a retention flag that cannot be honoured is refused before the
snapshot is taken; a prune never removes the blobs of a backup still running."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli._app import app
from prodml.core import ConfigError, IntegrityError, StorageError
from prodml.ops import _backup as backup_module
from prodml.ops import (
    backup_project,
    list_snapshots,
    prune_snapshots,
    read_snapshot,
    restore_snapshot,
    verify_snapshot,
)

runner = CliRunner()
DEADLINE_S = 60.0  # the longest a wait may take, however busy the machine


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = Project.init(tmp_path / "proj", name="sweep")
    (project.root / "data").mkdir()
    (project.root / "data" / "rows.csv").write_bytes(b"a,b\n1,2\n")
    project.close()
    return project.root


@pytest.fixture
def snapshot(root: Path, tmp_path: Path) -> Path:
    return backup_project(root, tmp_path / "backups", record=False).path


def forge(snapshot: Path, manifest: dict[str, Any]) -> Path:
    """``snapshot`` with its manifest replaced by ``manifest``, checksum and name made to
    agree (as anyone who can write the backup store can do)."""
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    forged = snapshot.parent / f"20200101T000000000000Z-{digest[:16]}"
    shutil.copytree(snapshot, forged)
    (forged / "manifest.json").write_bytes(data)
    (forged / "MANIFEST.sha256").write_text(digest + "\n")
    return forged


def manifest_with(snapshot: Path, files: list[Any], **fields: Any) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((snapshot / "manifest.json").read_bytes())
    return {**raw, "files": files, **fields}


def a_file(snapshot: Path) -> dict[str, Any]:
    """The manifest entry of the project's prodml.toml (its blob is in the store)."""
    entry = next(e for e in read_snapshot(snapshot).files if e.path == "prodml.toml")
    return {"path": entry.path, "sha256": entry.sha256, "size": entry.size}


@pytest.mark.parametrize("path", ["../../escaped.toml", "../escaped.toml", "a/../../../x"])
def test_a_manifest_path_leaving_the_target_is_refused(
    snapshot: Path, tmp_path: Path, path: str
) -> None:
    forged = forge(snapshot, manifest_with(snapshot, [{**a_file(snapshot), "path": path}]))
    target = tmp_path / "deep" / "out"
    with pytest.raises(IntegrityError, match=r"path.*expected a relative"):
        restore_snapshot(forged, target)
    assert not target.exists()
    assert not list(tmp_path.rglob("escaped.toml"))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"path": "/etc/prodml.toml"}, "path"),
        ({"path": ""}, "path"),
        ({"path": "."}, "path"),
        ({"path": 5}, "path"),
        ({"path": "a\x00b"}, "path"),
        ({"size": "abc"}, "size"),
        ({"size": -1}, "size"),
        ({"size": True}, "size"),
        ({"sha256": None}, "sha256"),
        ({"sha256": "../../../proj/prodml.toml"}, "sha256"),
    ],
)
def test_a_malformed_manifest_entry_is_refused_naming_the_field(
    snapshot: Path, tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    forged = forge(snapshot, manifest_with(snapshot, [{**a_file(snapshot), **change}]))
    with pytest.raises(IntegrityError, match=field):
        restore_snapshot(forged, tmp_path / "out")
    with pytest.raises(IntegrityError):
        verify_snapshot(forged)
    assert not (tmp_path / "out").exists()
    result = runner.invoke(app, ["restore", str(forged), str(tmp_path / "out2"), "--json"])
    assert result.exit_code == 11, result.output
    assert json.loads(result.stdout)["type"] == "IntegrityError"


def test_digests_of_the_wrong_lengths_are_refused(snapshot: Path, tmp_path: Path) -> None:
    entry = a_file(snapshot)
    other = {**entry, "path": "other.toml"}
    files = [{**entry, "sha256": entry["sha256"][:63]}, {**other, "sha256": other["sha256"] + "a"}]
    forged = forge(snapshot, manifest_with(snapshot, files))
    with pytest.raises(IntegrityError, match="sha256"):
        restore_snapshot(forged, tmp_path / "out")


def test_a_path_listed_twice_is_refused(snapshot: Path, tmp_path: Path) -> None:
    entry = a_file(snapshot)
    forged = forge(snapshot, manifest_with(snapshot, [entry, entry]))
    with pytest.raises(IntegrityError, match="listed once"):
        restore_snapshot(forged, tmp_path / "out")


@pytest.mark.parametrize(
    "fields",
    [
        {"created_at": "not a time"},
        {"created_at": 5},
        {"created_at": "2013-06-01T00:00:00"},
        {"format": "2"},
        {"external": [{"store": "nowhere", "key": "k", "sha256": "0" * 64, "size": 1}]},
        {"external": [{"store": "artifacts", "key": "../k", "sha256": "0" * 64, "size": 1}]},
    ],
)
def test_malformed_manifest_fields_are_refused(
    snapshot: Path, tmp_path: Path, fields: dict[str, Any]
) -> None:
    forged = forge(snapshot, manifest_with(snapshot, [a_file(snapshot)], **fields))
    with pytest.raises(IntegrityError, match="manifest"):
        restore_snapshot(forged, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(IntegrityError, match="nothing pruned"):  # not a ValueError
        prune_snapshots(snapshot.parent.parent, keep_last=1)
    assert snapshot.is_dir()
    assert forged.is_dir()


def test_restore_into_a_path_under_a_file_is_a_storage_error(
    snapshot: Path, root: Path, tmp_path: Path
) -> None:
    target = root / "prodml.toml" / "out"
    with pytest.raises(StorageError, match="restore target"):
        restore_snapshot(snapshot, target)
    result = runner.invoke(app, ["restore", str(snapshot), str(target), "--json"])
    assert result.exit_code == 12, result.output
    assert json.loads(result.stdout)["type"] == "StorageError"


def test_a_backup_destination_that_is_a_file_is_a_storage_error(root: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StorageError, match="backup destination"):
        backup_project(root, tmp_path / "afile", record=False)
    result = runner.invoke(
        app, ["backup", "--to", str(tmp_path / "afile"), "--project", str(root), "--json"]
    )
    assert result.exit_code == 12, result.output
    assert json.loads(result.stdout)["type"] == "StorageError"
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("where", [".", ".prodml", "data"])
def test_a_destination_that_would_leave_the_project_out_is_refused(root: Path, where: str) -> None:
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    with pytest.raises(ConfigError, match="backup destination"):
        backup_project(root, root / where, record=False)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before


def test_a_destination_inside_the_project_that_holds_only_backups_still_works(
    root: Path, tmp_path: Path
) -> None:
    first = backup_project(root, root / "backups", record=False)
    second = backup_project(root, root / "backups", record=False)
    assert not any(e.path.startswith("backups/") for e in read_snapshot(second.path).files)
    assert list_snapshots(root / "backups") == [first.path, second.path]


@pytest.mark.parametrize("flag", ["--keep-last", "--keep-daily", "--keep-weekly"])
def test_a_negative_retention_flag_is_refused_before_the_backup(
    root: Path, tmp_path: Path, flag: str
) -> None:
    dest = tmp_path / "backups"
    result = runner.invoke(
        app, ["backup", "--to", str(dest), flag, "-1", "--project", str(root), "--json"]
    )
    assert result.exit_code == 5, result.output
    assert flag in json.loads(result.stdout)["error"]
    assert list_snapshots(dest) == []  # nothing done: the error is the whole story


def test_a_prune_waits_for_a_running_backup_and_keeps_its_blobs(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "backups"
    backup_project(root, dest, record=False)
    (root / "data" / "new.bin").write_bytes(b"new" * 1000)
    pruned: list[object] = []
    refused = threading.Event()  # the prune met the running backup's lock
    real = backup_module.fcntl

    class Flock:
        LOCK_EX, LOCK_SH, LOCK_NB = real.LOCK_EX, real.LOCK_SH, real.LOCK_NB

        @staticmethod
        def flock(fd: int, mode: int) -> None:
            try:
                real.flock(fd, mode)
            except BlockingIOError:
                refused.set()
                raise

    monkeypatch.setattr(backup_module, "fcntl", Flock)

    def prune() -> None:
        pruned.append(prune_snapshots(dest, keep_last=1, keep_daily=0, keep_weekly=0))

    threads: list[threading.Thread] = []

    def progress(done: int, total: int) -> None:
        if not threads:  # the metadata DB's blob is stored, not yet named by a snapshot
            thread = threading.Thread(target=prune)
            threads.append(thread)
            thread.start()
            assert refused.wait(DEADLINE_S), "the prune never tried the backup's lock"

    result = backup_project(root, dest, record=False, progress=progress)
    threads[0].join(timeout=DEADLINE_S)
    assert pruned, "the prune did not finish"
    verify_snapshot(result.path)  # every blob it names is still there
    assert list_snapshots(dest) == [result.path]
    restore_snapshot(result.path, tmp_path / "out")
    assert (tmp_path / "out" / "data" / "new.bin").read_bytes() == b"new" * 1000


def test_a_replica_restore_refuses_a_naive_time_and_an_uncreatable_target(
    root: Path, tmp_path: Path
) -> None:
    from datetime import datetime

    from prodml.ops import restore_replica

    with pytest.raises(ConfigError, match="UTC offset"):
        restore_replica(str(tmp_path / "nowhere"), tmp_path / "a.db",
                        timestamp=datetime(2026, 12, 5, 22, 40))  # fmt: skip
    result = runner.invoke(app, ["replicate", "restore", str(tmp_path / "nowhere"),
                                 str(tmp_path / "b.db"), "--timestamp", "2026-12-05T22:40:00",
                                 "--json"])  # fmt: skip
    assert result.exit_code == 5, result.output
    assert "UTC offset" in json.loads(result.stdout)["error"]
    under_a_file = root / "prodml.toml" / "c.db"
    with pytest.raises(StorageError, match="restore target"):
        restore_replica(str(tmp_path / "nowhere"), under_a_file)
    result = runner.invoke(app, ["replicate", "restore", str(tmp_path / "nowhere"),
                                 str(under_a_file), "--json"])  # fmt: skip
    assert result.exit_code == 12, result.output
    assert json.loads(result.stdout)["type"] == "StorageError"


@pytest.mark.parametrize("rescan", [False, True])
def test_a_blob_cut_short_in_the_store_is_written_again_by_the_next_backup(
    root: Path, snapshot: Path, rescan: bool
) -> None:
    dest = snapshot.parent.parent
    for rel in ("data/rows.csv", ".prodml/meta.db"):
        entry = next(e for e in read_snapshot(snapshot).files if e.path == rel)
        blob = dest / "blobs" / entry.sha256[:2] / entry.sha256
        blob.write_bytes(blob.read_bytes()[:3])  # a copy cut short (disk full, a crash)
    later = backup_project(root, dest, record=False, rescan=rescan)
    verify_snapshot(later.path)  # not a snapshot that names the damaged blob


def test_cli_retention_never_removes_the_snapshot_it_just_took(root: Path, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    dest = tmp_path / "backups"
    ahead = backup_project(root, dest, now=datetime(2099, 1, 1, tzinfo=UTC), record=False)
    result = runner.invoke(
        app, ["backup", "--to", str(dest), "--keep-last", "1", "--project", str(root), "--json"]
    )
    assert result.exit_code == 0, result.output
    taken = json.loads(result.stdout)["snapshot"]["id"]
    assert taken not in json.loads(result.stdout)["pruned"]["removed"]
    assert [s.name for s in list_snapshots(dest)] == sorted([taken, ahead.id])
    verify_snapshot(dest / "snapshots" / taken)
