"""Point-in-time recovery of a PostgreSQL metadata DB, as docs/runbooks/postgres-pitr.md
does it: a private PostgreSQL cluster with WAL archiving holds a project's registry; a base
backup is taken, model versions are registered before and after a chosen time, the
cluster is lost, and the base backup plus the archived WAL, replayed to that time, give
back exactly the versions committed by then — and a project that verifies."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prodml import Project
from prodml.project._verify import verify_project
from servingkit import lr_model, register

pytestmark = pytest.mark.integration

BIN = Path("/usr/lib/postgresql")
DEADLINE_S = 120.0


def _bindir() -> Path:
    found = sorted(BIN.glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        pytest.skip(f"PostgreSQL's server programs are not installed under {BIN}")
    return found[-1].parent


class Cluster:
    """A private PostgreSQL cluster under ``base`` on a free port, run as the
    ``postgres`` user when this process is root (the server refuses root)."""

    def __init__(self, base: Path, bindir: Path) -> None:
        self.base, self.bindir = base, bindir
        self.archive = base / "archive"
        self.sock = base / "sock"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.user: str | None = "postgres" if os.getuid() == 0 else None
        self.running: list[Path] = []

    def run(self, *args: str, check: bool = True) -> str:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE_S,
                              check=False)  # fmt: skip
        assert done.returncode == 0 or not check, (command, done.stdout, done.stderr)
        return done.stdout

    def init(self, data: Path) -> None:
        self.run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.sock}'\nwal_level = replica\n"
                "archive_mode = on\nfsync = off\n"
                f"archive_command = 'test ! -f {self.archive}/%f && cp %p {self.archive}/%f'\n"
            )

    def start(self, data: Path) -> None:
        self.run("pg_ctl", "-D", str(data), "-w", "-t", "120", "-l", str(data / "server.log"),
                 "start")  # fmt: skip
        self.running.append(data)

    def stop(self, data: Path, mode: str = "fast", check: bool = True) -> None:
        self.run("pg_ctl", "-D", str(data), "-w", "-m", mode, "stop", check=check)
        if data in self.running:
            self.running.remove(data)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def sql(self, query: str) -> object:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres",
                             autocommit=True) as conn:  # fmt: skip
            return conn.execute(query).fetchone()[0]  # type: ignore[index]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    pytest.importorskip("psycopg")
    bindir = _bindir()
    base = Path(tempfile.mkdtemp(prefix="prodml-pitr-"))
    made = Cluster(base, bindir)
    for directory in (base, made.archive, made.sock):
        directory.mkdir(exist_ok=True)
        if made.user is not None:
            entry = pwd.getpwnam(made.user)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
    try:
        yield made
    finally:
        for data in list(made.running):
            made.stop(data, mode="immediate", check=False)
        shutil.rmtree(base, ignore_errors=True)


def _versions(root: Path, environ: dict[str, str]) -> list[int]:
    with Project.open(root, environ=environ) as project:
        return sorted(v.version for v in project.registry.versions("lr"))


def test_base_backup_and_archived_wal_recover_to_a_chosen_time(
    cluster: Cluster, tmp_path: Path
) -> None:
    data, restored = cluster.base / "data", cluster.base / "restored"
    cluster.init(data)
    cluster.start(data)
    environ = {**os.environ, "PRODML__METADATA__TYPE": "postgresql",
               "PRODML__METADATA__URL": cluster.url,
               "PRODML__METADATA__SCHEMA_NAME": "prodml"}  # fmt: skip
    root = tmp_path / "project"
    Project.init(root, name="pitr").close()
    model, X = lr_model()
    with Project.open(root, environ=environ) as project:
        assert project.db.dialect == "postgresql"
        register(project, model, X)  # version 1, before the base backup

    # The base backup, streaming the WAL it needs.
    cluster.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
                "-D", str(restored), "-X", "stream", "--no-sync")  # fmt: skip

    with Project.open(root, environ=environ) as project:
        register(project, lr_model(C=0.5)[0], X)  # version 2, before the target time
    target = str(cluster.sql("SELECT now()::text"))
    deadline = time.monotonic() + DEADLINE_S
    while str(cluster.sql("SELECT now()::text")) <= target:  # the clock moves past it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with Project.open(root, environ=environ) as project:
        register(project, lr_model(C=0.25)[0], X)  # version 3, after it
    assert _versions(root, environ) == [1, 2, 3]

    # Every WAL segment up to now archived, then the cluster is lost.
    segment = str(cluster.sql("SELECT pg_walfile_name(pg_switch_wal())"))
    while (
        str(cluster.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")) < segment
    ):
        assert time.monotonic() < deadline, "the WAL segment was not archived"
        time.sleep(0.05)
    cluster.stop(data, mode="immediate")
    shutil.rmtree(data)

    # Recovery: the base backup, the archive's WAL replayed up to the target time.
    with (restored / "postgresql.conf").open("a") as conf:
        conf.write(
            f"restore_command = 'cp {cluster.archive}/%f %p'\n"
            f"recovery_target_time = '{target}'\nrecovery_target_action = 'promote'\n"
        )
    (restored / "recovery.signal").touch()
    if cluster.user is not None:
        entry = pwd.getpwnam(cluster.user)
        os.chown(restored / "recovery.signal", entry.pw_uid, entry.pw_gid)
    cluster.start(restored)
    while cluster.sql("SELECT pg_is_in_recovery()"):
        assert time.monotonic() < deadline, "recovery did not finish"
        time.sleep(0.05)

    assert _versions(root, environ) == [1, 2]
    report = verify_project(root, environ=environ)
    assert report.worst() is None, report.to_dict()
