"""``prodml backup`` / ``prodml restore`` on the scale-out backends: a project whose
metadata DB is PostgreSQL, online store Redis and artifacts S3 (moto's server) is
backed up, all three stores and the directory are lost, and the restore brings back the
same registry, the same online values and the same artifact bytes; a restore refuses a
store that is not empty before writing to any, and undoes what it wrote when a later
store fails."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from featurekit import T0, make_project
from prodml import Project
from prodml.cli._app import app
from prodml.core import ConfigError, ConflictError, IntegrityError, StorageError
from prodml.ops import _external as external_module
from prodml.ops import (
    backup_project,
    list_snapshots,
    prune_snapshots,
    read_snapshot,
    restore_snapshot,
    verify_snapshot,
)
from prodml.ops._backup import blob_path
from prodml.project._verify import verify_project
from servicekit import libpq, pg_url_or_skip, redis_url_or_skip
from servingkit import lr_model, register, serving_project

pytestmark = pytest.mark.integration
runner = CliRunner()

ENTITIES = {"origin": ["EWR", "JFK", "XXX"], "tailnum": ["N1", "N2", "N3"]}
REQUEST = {"sched_dep_time": [517, 1230, 2359]}
END = T0 + timedelta(days=4, hours=6)


class Stores:
    """The three external stores of one test: a PostgreSQL schema, a Redis key prefix
    and an S3 bucket prefix, with what each holds."""

    def __init__(self, pg_url: str, redis_url: str, s3_endpoint: str) -> None:
        import redis
        from pyarrow import fs as pafs

        self.pg_url, self.redis_url, self.endpoint = pg_url, redis_url, s3_endpoint
        self.schema = f"prodml_bk_{uuid.uuid4().hex[:10]}"
        self.prefix = f"prodml_bk_{uuid.uuid4().hex[:8]}"
        self.bucket = f"prodml-bk-{uuid.uuid4().hex[:10]}"
        self.s3 = pafs.S3FileSystem(endpoint_override=s3_endpoint.split("://")[1], scheme="http",
                                    region="us-east-1", allow_bucket_creation=True)  # fmt: skip
        self.s3.create_dir(self.bucket)
        self.redis = redis.Redis.from_url(redis_url)

    def environ(self, **changes: str) -> dict[str, str]:
        env = {
            "PRODML__METADATA__TYPE": "postgresql",
            "PRODML__METADATA__URL": self.pg_url,
            "PRODML__METADATA__SCHEMA_NAME": self.schema,
            "PRODML__ONLINE_STORE__TYPE": "redis",
            "PRODML__ONLINE_STORE__URL": self.redis_url,
            "PRODML__ONLINE_STORE__KEY_PREFIX": self.prefix,
            "PRODML__ARTIFACTS__TYPE": "s3",
            "PRODML__ARTIFACTS__BUCKET": self.bucket,
            "PRODML__ARTIFACTS__PREFIX": "artifacts/",
            "PRODML__ARTIFACTS__ENDPOINT_URL": self.endpoint,
            "PRODML__ARTIFACTS__REGION": "us-east-1",
        }
        env.update(changes)
        return env

    # -- what each store holds ---------------------------------------------------------

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        import psycopg

        with psycopg.connect(libpq(self.pg_url)) as conn:
            names = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "ORDER BY table_name", (self.schema,)).fetchall()]  # fmt: skip
            return {
                name: sorted(
                    conn.execute(f'SELECT * FROM "{self.schema}"."{name}"').fetchall(), key=repr
                )
                for name in names
            }

    def redis_state(self) -> dict[bytes, dict[bytes, bytes]]:
        keys = sorted(self.redis.scan_iter(match=f"{self.prefix}:*"))
        return {key: self.redis.hgetall(key) for key in keys}

    def objects(self) -> dict[str, bytes]:
        from pyarrow import fs as pafs

        found = self.s3.get_file_info(pafs.FileSelector(self.bucket, recursive=True))
        out = {}
        for info in found:
            if info.type == pafs.FileType.File:
                with self.s3.open_input_stream(info.path) as handle:
                    out[info.path] = handle.read()
        return out

    # -- losing them -------------------------------------------------------------------

    def drop_schema(self) -> None:
        import psycopg

        with psycopg.connect(libpq(self.pg_url), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def flush_redis(self) -> None:
        keys = list(self.redis.scan_iter(match=f"{self.prefix}:*"))
        if keys:
            self.redis.delete(*keys)

    def empty_bucket(self) -> None:
        self.s3.delete_dir_contents(self.bucket, missing_dir_ok=True)

    def lose_everything(self) -> None:
        self.drop_schema()
        self.flush_redis()
        self.empty_bucket()

    def close(self) -> None:
        self.lose_everything()
        self.redis.close()


@pytest.fixture
def stores(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stores]:
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} (PostgreSQL's client programs) is not installed")
    found = Stores(pg_url_or_skip(), redis_url_or_skip(), s3_endpoint)
    for key, value in found.environ().items():
        monkeypatch.setenv(key, value)
    try:
        yield found
    finally:
        found.close()


def scaled_project(root: Path) -> tuple[dict[str, Any], np.ndarray]:
    """A project on the three stores: features applied and materialized into Redis, a
    model registered (its artifact on S3) and aliased; its online values and the
    model's predictions."""
    project = make_project(root)
    try:
        assert project.db.dialect == "postgresql"
        assert type(project.features.online).__name__ == "RedisOnlineStore"
        project.features.apply()
        project.features.materialize(end=END)
        model, X = lr_model()
        version = register(project, model, X)
        project.registry.set_alias("lr", "candidate", version.version, actor="test")
        online = project.features.get_online("flight_delay", ENTITIES, REQUEST, now=END).values
        predictions = project.registry.load("lr@candidate").model.predict_proba(X)
        return online, predictions
    finally:
        project.close()


def reopened(root: Path) -> tuple[dict[str, Any], np.ndarray]:
    _, X = lr_model()
    with Project.open(root) as project:
        online = project.features.get_online("flight_delay", ENTITIES, REQUEST, now=END).values
        return online, project.registry.load("lr@candidate").model.predict_proba(X)


def assert_all_empty(stores: Stores) -> None:
    assert stores.objects() == {}
    assert stores.redis_state() == {}
    assert stores.tables() == {}


def test_round_trip_after_losing_every_store(stores: Stores, tmp_path: Path) -> None:
    root = tmp_path / "project"
    online, predictions = scaled_project(root)
    tables, redis_state, objects = stores.tables(), stores.redis_state(), stores.objects()
    assert tables
    assert redis_state
    assert objects

    result = backup_project(root, tmp_path / "backups")
    manifest = read_snapshot(result.path)
    assert {e.store for e in manifest.external} == {"metadata", "online", "artifacts"}
    assert len([e for e in manifest.external if e.store == "artifacts"]) == len(objects)
    assert manifest.schema_revision is not None

    stores.lose_everything()
    shutil.rmtree(root)
    restored = tmp_path / "restored"
    restore_snapshot(result.path, restored)

    report = verify_project(restored)
    assert report.worst() is None, report.to_dict()
    assert stores.objects() == objects
    assert stores.redis_state() == redis_state
    assert stores.tables() == tables  # every row of every table
    online_after, predictions_after = reopened(restored)
    assert online_after == online
    np.testing.assert_array_equal(predictions_after, predictions)

    # A second backup of the restored project reuses every blob: artifacts are not
    # downloaded again (their keys name their SHA-256).
    again = backup_project(restored, tmp_path / "backups", record=False)
    assert {e.sha256 for e in read_snapshot(again.path).external if e.store == "artifacts"} == {
        e.sha256 for e in manifest.external if e.store == "artifacts"
    }
    assert again.new_blobs < result.new_blobs
    # Retention keeps the blobs of the kept snapshot's external state.
    pruned = prune_snapshots(tmp_path / "backups", keep_last=1, keep_daily=0, keep_weekly=0)
    assert pruned.removed == (result.id,)
    verify_snapshot(again.path)


def test_restore_refuses_a_store_that_is_not_empty_before_writing_any(
    stores: Stores, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    scaled_project(root)
    snapshot = backup_project(root, tmp_path / "backups", record=False).path

    # Everything still there: the metadata schema is the first store found not empty.
    with pytest.raises(ConflictError, match=stores.schema):
        restore_snapshot(snapshot, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    done = runner.invoke(app, ["restore", str(snapshot), str(tmp_path / "out"), "--json"])
    assert done.exit_code != 0
    assert stores.schema in done.output
    assert not (tmp_path / "out").exists()

    # Only the Redis prefix still holds keys: refused before the schema or the bucket
    # is written to.
    redis_state = stores.redis_state()
    stores.drop_schema()
    stores.empty_bucket()
    with pytest.raises(ConflictError, match=stores.prefix):
        restore_snapshot(snapshot, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert stores.tables() == {}
    assert stores.objects() == {}
    assert stores.redis_state() == redis_state

    # The snapshot says PostgreSQL; a restore configured for SQLite is refused by name.
    stores.flush_redis()
    sqlite = {k: v for k, v in stores.environ().items() if not k.startswith("PRODML__METADATA")}
    with pytest.raises(ConfigError, match=r"\[metadata\] type = 'sqlite'"):
        restore_snapshot(snapshot, tmp_path / "out", environ=sqlite)
    assert not (tmp_path / "out").exists()


def test_a_failing_store_undoes_the_others_and_a_damaged_dump_is_named(
    stores: Stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "project"
    scaled_project(root)
    snapshot = backup_project(root, tmp_path / "backups", record=False).path
    stores.lose_everything()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("pg_restore into schema failed (exit 1): simulated")

    with monkeypatch.context() as patch:
        patch.setattr(external_module, "_restore_postgres", broken)
        with pytest.raises(StorageError, match="simulated"):
            restore_snapshot(snapshot, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert_all_empty(stores)

    (dump,) = [e for e in read_snapshot(snapshot).external if e.store == "metadata"]
    blob = blob_path(snapshot.parent.parent, dump.sha256)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"postgresql\.pgdump \(metadata store\) is damaged"):
        restore_snapshot(snapshot, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert_all_empty(stores)
    assert list_snapshots(tmp_path / "backups") == [snapshot]


def table_rows(root: Path, environ: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every prodml table of the project at ``root``, in a set order."""
    from sqlalchemy import select

    from prodml.storage import Base

    with Project.open(root, environ=environ) as project, project.db.engine.connect() as con:
        return {
            table.name: sorted((tuple(row) for row in con.execute(select(table))), key=repr)
            for table in Base.metadata.sorted_tables
        }


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    import psycopg

    url = pg_url_or_skip()
    schema = f"prodml_mv_{uuid.uuid4().hex[:10]}"
    yield url, schema
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_an_embedded_project_restores_onto_postgresql(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    url, schema = pg_schema
    root = tmp_path / "laptop"
    project, _ = serving_project(root)
    model, X = lr_model(C=0.5)
    register(project, model, X)
    versions = [(v.version, v.artifact_digest) for v in project.registry.versions("lr")]
    audit = len(project.registry.audit_log())
    predictions = project.registry.load("lr:2").model.predict_proba(X)
    project.close()
    snapshot = backup_project(root, tmp_path / "backups", record=False).path

    environ = {**os.environ, "PRODML__METADATA__TYPE": "postgresql",
               "PRODML__METADATA__URL": url, "PRODML__METADATA__SCHEMA_NAME": schema}  # fmt: skip
    out = tmp_path / "server"
    restore_snapshot(snapshot, out, environ=environ)
    assert not (out / ".prodml" / "meta.db").exists()  # no stale copy left to open
    restore_snapshot(snapshot, tmp_path / "plain")  # the same snapshot, on SQLite
    assert table_rows(tmp_path / "plain", dict(os.environ)) == table_rows(out, environ)
    assert verify_project(out, environ=environ).worst() is None
    with Project.open(out, environ=environ) as moved:
        assert moved.db.dialect == "postgresql"
        assert [(v.version, v.artifact_digest) for v in moved.registry.versions("lr")] == versions
        assert len(moved.registry.audit_log()) == audit
        np.testing.assert_array_equal(moved.registry.load("lr:2").model.predict_proba(X),
                                      predictions)  # fmt: skip
        assert moved.deployments.get("lr") is not None
        # the id sequences continue after the copied rows
        assert register(moved, lr_model(C=0.25)[0], X).version == 3
        assert len(moved.registry.audit_log()) > audit

    # The schema now holds the project: a second restore into it is refused first.
    with pytest.raises(ConflictError, match=schema):
        restore_snapshot(snapshot, tmp_path / "again", environ=environ)
    assert not (tmp_path / "again").exists()
