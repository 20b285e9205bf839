"""Continuous replication of a project's SQLite databases with Litestream: committed
runs reach the replica, survive a kill -9 of the replicator, restore to the latest
point or to a chosen time into a new file that passes ``integrity_check`` and serves as
the project's metadata DB, and a bad request (an existing target, no replica) is a clear
error."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli._app import app
from prodml.core import ConflictError, StorageError
from prodml.ops import litestream_path, replicated_databases, restore_replica, start_replication
from prodml.project._verify import verify_project
from servingkit import serving_project

DEADLINE_S = 120.0
runner = CliRunner()

try:
    litestream_path()
except Exception:
    pytest.skip(
        "the litestream binary (prodml[replication]) is not installed", allow_module_level=True
    )


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project, _ = serving_project(tmp_path / "project")
    yield project
    project.close()


def runs_in(database: Path) -> int:
    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])
    finally:
        con.close()


def write_runs(project: Project, n: int) -> None:
    for i in range(n):
        with project.registry.start_run("lr", environment=False) as run:
            run.log_metric("i", i)


def replicated_runs(replica: Path, scratch: Path) -> int:
    out = scratch / f"probe-{time.monotonic_ns()}.db"
    try:
        restore_replica(str(replica), out)
    except StorageError:
        return -1  # nothing replicated yet
    try:
        return runs_in(out)
    finally:
        out.unlink(missing_ok=True)


def wait_replicated(replica: Path, scratch: Path, expected: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while (found := replicated_runs(replica, scratch)) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the replica holds {found} runs after {DEADLINE_S} s, expected {expected}"
            )
        time.sleep(0.1)


def test_committed_runs_survive_a_kill_and_restore_to_a_point_in_time(
    project: Project, tmp_path: Path
) -> None:
    replicas = tmp_path / "replicas"
    targets = replicated_databases(project.root, str(replicas))
    assert [t.url.rsplit("/", 1)[1] for t in targets][:1] == ["meta.db"]
    process = start_replication(project.root, str(replicas), interval_s=0.1)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    try:
        before = runs_in(targets[0].database)
        write_runs(project, 5)
        wait_replicated(replicas / "meta.db", scratch, before + 5)
        between = datetime.now(UTC)
        write_runs(project, 7)
        wait_replicated(replicas / "meta.db", scratch, before + 12)
        process.send_signal(signal.SIGKILL)  # the machine is gone: no final sync
        process.wait(DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    latest = restore_replica(str(replicas / "meta.db"), tmp_path / "latest.db")
    assert runs_in(latest) == before + 12
    earlier = restore_replica(str(replicas / "meta.db"), tmp_path / "earlier.db", timestamp=between)
    assert runs_in(earlier) == before + 5

    copy = tmp_path / "restored-project"
    shutil.copytree(project.root, copy)
    shutil.copyfile(latest, copy / ".prodml" / "meta.db")
    for side in ("meta.db-wal", "meta.db-shm"):
        (copy / ".prodml" / side).unlink(missing_ok=True)
    assert verify_project(copy).worst() is None
    with Project.open(copy) as restored:
        assert restored.registry.get("lr:1").status == "approved"


def test_bad_requests_are_clear_errors(project: Project, tmp_path: Path) -> None:
    (tmp_path / "taken.db").write_bytes(b"")
    with pytest.raises(ConflictError, match="exists"):
        restore_replica(str(tmp_path / "nowhere"), tmp_path / "taken.db")
    with pytest.raises(StorageError, match="restore of replica"):
        restore_replica(str(tmp_path / "nowhere"), tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()
    result = runner.invoke(app, ["replicate", "restore", str(tmp_path / "nowhere"),
                                 str(tmp_path / "new.db"), "--timestamp", "yesterday"])  # fmt: skip
    assert result.exit_code != 0
    assert "ISO 8601" in result.output


def test_replicate_run_stops_cleanly_on_sigterm(project: Project, tmp_path: Path) -> None:
    import sys

    replicas = tmp_path / "replicas"
    process = subprocess.Popen(
        [sys.executable, "-m", "prodml.cli", "replicate", "run", "-p", str(project.root),
         "--to", str(replicas)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not (replicas / "meta.db").exists():
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "no replica appeared"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(DEADLINE_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
