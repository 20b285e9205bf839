"""Metadata DB behaviour every registered dialect must share (SQLite always, PostgreSQL
if reachable): the contract suite of :data:`~prodml.storage.METADATA_BACKENDS`."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text, update
from sqlalchemy.engine import make_url

from contractkit import Contract
from prodml.core import ConflictError, MigrationError, StorageError
from prodml.storage import (
    METADATA_BACKENDS,
    Base,
    DatasetRow,
    FeatureDefinitionRow,
    FeatureHeadRow,
    MaterializationRow,
    MetadataDB,
    head_revision,
)
from prodml.storage._engine import create_metadata_engine
from prodml.storage._migrate import alembic_config

TABLES = {
    "datasets",
    "feature_definitions",
    "feature_heads",
    "materializations",
    "runs",
    "run_metrics",
    "run_latest_metrics",
    "run_datasets",
    "registered_models",
    "model_versions",
    "model_aliases",
    "alias_history",
    "audit_log",
    "retrain_jobs",
}
V1, V2 = "a" * 64, "b" * 64
T0 = datetime(2013, 7, 1, 12, 0, tzinfo=UTC)

Target = tuple[str, str | None]


def _sqlite_target(request: pytest.FixtureRequest) -> Target:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return f"sqlite:///{tmp_path}/state/meta.db", None


def _postgres_target(request: pytest.FixtureRequest) -> Target:
    """A fresh schema in the test PostgreSQL; skips when it is unreachable."""
    url: str = request.getfixturevalue("pg_url")
    schema: str = request.getfixturevalue("pg_schema_factory")()
    return url, schema


CONTRACT: Contract[Callable[[pytest.FixtureRequest], Target]] = Contract(
    METADATA_BACKENDS,
    {"postgresql": _postgres_target, "sqlite": _sqlite_target},
    integration={"postgresql"},
)


def test_metadata_contract_covers_every_registered_dialect() -> None:
    CONTRACT.check()


@pytest.fixture(params=CONTRACT.cases())
def db_target(request: pytest.FixtureRequest) -> Target:
    """``(url, schema_name)`` of an empty metadata DB of one registered dialect."""
    return CONTRACT.factory(request.param)(request)


def _open(target: Target) -> MetadataDB:
    url, schema = target
    return MetadataDB.open(url, schema_name=schema)


def test_open_returns_the_class_registered_for_the_dialect(db_target: Target) -> None:
    with _open(db_target) as db:
        assert type(db) is METADATA_BACKENDS.load(db.dialect)
        assert type(db).backend == db.dialect
        assert repr(db).startswith("MetadataDB(")
        assert db.check() == []


def test_open_migrates_a_fresh_database_to_head(db_target: Target) -> None:
    with _open(db_target) as db:
        assert db.current_revision() == head_revision() == "0007"
        names = set(inspect(db.engine).get_table_names())
        assert names >= TABLES
        assert "prodml_alembic_version" in names


def test_open_twice_is_idempotent_and_keeps_data(db_target: Target) -> None:
    with _open(db_target) as db, db.session() as session:
        session.add(FeatureHeadRow(kind="entity", name="flight", version=V1, updated_at=T0))
    with _open(db_target) as db:
        assert db.current_revision() == head_revision()
        with db.session() as session:
            assert session.scalars(select(FeatureHeadRow.name)).all() == ["flight"]


def test_models_match_the_migrations(db_target: Target) -> None:
    with _open(db_target) as db, db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": "prodml_alembic_version"}
        )
        assert compare_metadata(context, Base.metadata) == []


def test_every_model_round_trips(db_target: Target) -> None:
    dataset = DatasetRow(
        fingerprint=V1,
        path="datasets/aaaa.parquet",
        row_count=336_776,
        start_time=datetime(2013, 1, 1, tzinfo=UTC),
        end_time=None,
        service_name="flight_delay",
        service_version=V2,
        timestamp_column="time_hour",
        label_column="late",
        feature_versions={"weather": V1, "planes": V2},
        profile={"columns": {"dep_delay": {"mean": 12.6, "nulls": 8255}}, "rows": 336776},
        created_at=T0,
    )
    with _open(db_target) as db:
        with db.session() as session:
            session.add(
                FeatureDefinitionRow(
                    kind="feature_view",
                    name="weather",
                    version=V1,
                    spec='{"ttl":3600}',
                    created_at=T0,
                )
            )
            session.add(
                FeatureHeadRow(kind="feature_view", name="weather", version=V1, updated_at=T0)
            )
            session.add(
                MaterializationRow(
                    view_name="weather",
                    view_version=V1,
                    watermark=T0,
                    rows_written=2**40,
                    updated_at=T0,
                )
            )
            session.add(dataset)
        with db.session() as session:
            definition = session.scalars(select(FeatureDefinitionRow)).one()
            assert (definition.id, definition.kind, definition.spec) == (
                1,
                "feature_view",
                '{"ttl":3600}',
            )
            assert definition.created_at == T0
            head = session.get(FeatureHeadRow, ("feature_view", "weather"))
            assert head is not None
            assert head.version == V1
            mat = session.get(MaterializationRow, ("weather", V1))
            assert mat is not None
            assert (mat.rows_written, mat.watermark) == (2**40, T0)
            row = session.get(DatasetRow, V1)
            assert row is not None
            assert row.feature_versions == {"weather": V1, "planes": V2}
            assert row.profile["columns"]["dep_delay"]["nulls"] == 8255
            assert (row.start_time, row.end_time, row.label_column) == (
                dataset.start_time,
                None,
                "late",
            )


def test_times_come_back_timezone_aware_in_utc(db_target: Target) -> None:
    paris = datetime(2013, 7, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    with _open(db_target) as db:
        with db.session() as session:
            session.add(FeatureHeadRow(kind="entity", name="aware", version=V1, updated_at=paris))
            session.add(
                FeatureHeadRow(
                    kind="entity", name="naive", version=V1, updated_at=datetime(2013, 7, 1, 12)
                )
            )
        with db.session() as session:
            rows = session.scalars(select(FeatureHeadRow).order_by(FeatureHeadRow.name)).all()
    for row in rows:
        assert row.updated_at == T0
        assert row.updated_at.tzinfo is UTC or row.updated_at.utcoffset() == timedelta(0)


def _add(db: MetadataDB, *rows: Base) -> None:
    with db.session() as session:
        session.add_all(rows)


def _definition(kind: str = "entity") -> FeatureDefinitionRow:
    return FeatureDefinitionRow(kind=kind, name="flight", version=V1, spec="{}", created_at=T0)


def test_duplicate_definition_version_is_a_conflict(db_target: Target) -> None:
    with _open(db_target) as db:
        _add(db, _definition())
        with pytest.raises(ConflictError, match=r"metadata DB .*: transaction failed"):
            _add(db, _definition())


def test_definition_kind_is_checked(db_target: Target) -> None:
    with (
        _open(db_target) as db,
        pytest.raises(ConflictError, match=r"ck_feature_definitions_kind|CHECK"),
    ):
        _add(db, _definition(kind="model"))


def _write_then_fail(db: MetadataDB) -> None:
    with db.write() as session:
        session.add(FeatureHeadRow(kind="entity", name="flight", version=V1, updated_at=T0))
        session.flush()
        raise RuntimeError("boom")


def test_session_rolls_back_and_reraises_on_error(db_target: Target) -> None:
    with _open(db_target) as db:
        with pytest.raises(RuntimeError, match="boom"):
            _write_then_fail(db)
        with db.session() as session:
            assert session.scalars(select(FeatureHeadRow)).all() == []


def test_concurrent_writers_do_not_lose_increments(db_target: Target) -> None:
    threads, increments = 4, 25
    with _open(db_target) as db:
        with db.session() as session:
            session.add(
                MaterializationRow(
                    view_name="v", view_version=V1, watermark=T0, rows_written=0, updated_at=T0
                )
            )
        barrier = threading.Barrier(threads)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                barrier.wait()
                for _ in range(increments):
                    with db.write() as session:
                        row = session.scalars(
                            select(MaterializationRow).with_for_update()  # no-op on SQLite
                        ).one()
                        current = row.rows_written
                        session.execute(update(MaterializationRow).values(rows_written=current + 1))
            except BaseException as exc:  # reported below
                errors.append(exc)

        pool = [threading.Thread(target=work) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        assert errors == []
        with db.session() as session:
            assert (
                session.scalars(select(MaterializationRow.rows_written)).one()
                == threads * increments
            )


_OPENER = """
import sys
from prodml.storage import MetadataDB
print("ready", flush=True)
sys.stdin.readline()
with MetadataDB.open(sys.argv[1], schema_name=sys.argv[2] or None) as db:
    print(db.current_revision(), flush=True)
"""


def test_processes_opening_a_fresh_database_at_once_all_succeed(db_target: Target) -> None:
    url, schema = db_target
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, url, schema or ""],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:  # release them together
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == head_revision()


def test_database_from_a_newer_prodml_is_refused(db_target: Target) -> None:
    with _open(db_target) as db, db.session() as session:
        session.execute(text("UPDATE prodml_alembic_version SET version_num = '9999'"))
    with pytest.raises(
        MigrationError, match=r"could not upgrade the schema to revision '0007'.*9999"
    ):
        _open(db_target)


# --- revision 0005: the deployment history changes shape, its triggers stay ---------
APPEND_ONLY = r"deployment history is append-only"
HISTORY = Base.metadata.tables["deployment_history"]
ROLLOUT_TABLES = {"rollout_plans", "rollout_decisions", "controller_leases"}


def _migrate(target: Target, revision: str, *, down: bool = False) -> None:
    """Move the schema to ``revision`` with Alembic itself (``MetadataDB`` only upgrades)."""
    url, schema = target
    engine = create_metadata_engine(make_url(url), schema_name=schema)
    try:
        with engine.connect() as conn, conn.begin():
            (command.downgrade if down else command.upgrade)(alembic_config(conn), revision)
    finally:
        engine.dispose()


def _add_history(db: MetadataDB, revision: int, action: str, **extra: object) -> None:
    row = {"endpoint": "ep", "revision": revision, "action": action, "spec": None}
    row |= {"actor": "ann", "reason": None, "time": T0, **extra}
    with db.session() as session:
        session.execute(insert(HISTORY).values(**row))


def _history_refuses_changes(db: MetadataDB) -> None:
    for sql in (
        "UPDATE deployment_history SET actor = 'mallory'",
        "DELETE FROM deployment_history",
    ):
        with pytest.raises((StorageError, ConflictError), match=APPEND_ONLY), db.session() as s:
            s.execute(text(sql))
    if db.dialect == "sqlite":
        sql = (
            "INSERT OR REPLACE INTO deployment_history (id, endpoint, revision, action, actor, "
            "time) SELECT id, endpoint, revision, action, 'mallory', time FROM deployment_history"
        )
    else:
        sql = "TRUNCATE deployment_history"
    with pytest.raises((StorageError, ConflictError), match=APPEND_ONLY), db.session() as s:
        s.execute(text(sql))


def _columns(db: MetadataDB, table: str) -> set[str]:
    return {column["name"] for column in inspect(db.engine).get_columns(table)}


def test_upgrade_to_0005_keeps_the_history_and_its_append_only_triggers(
    db_target: Target,
) -> None:
    _migrate(db_target, "0004")
    url, schema = db_target
    with MetadataDB.open(url, schema_name=schema, upgrade=False) as old:
        assert old.current_revision() == "0004"
        _add_history(old, 1, "deploy")
    with _open(db_target) as db:
        assert db.current_revision() == head_revision()
        assert "evidence" in _columns(db, "deployment_history")
        assert set(inspect(db.engine).get_table_names()) >= ROLLOUT_TABLES
        _add_history(db, 2, "advance", evidence={"p_value": 0.01, "arms": ["a", "b"]})
        _add_history(db, 3, "decommission")
        with pytest.raises(ConflictError, match=r"CHECK|ck_deployment_history"):
            _add_history(db, 4, "bogus")
        with db.session() as session:
            rows = session.execute(
                select(HISTORY.c.revision, HISTORY.c.action, HISTORY.c.evidence).order_by(
                    HISTORY.c.revision
                )
            ).all()
        assert [tuple(row) for row in rows] == [
            (1, "deploy", None),
            (2, "advance", {"p_value": 0.01, "arms": ["a", "b"]}),
            (3, "decommission", None),
        ]
        _history_refuses_changes(db)


def test_downgrade_to_0004_and_upgrade_again(db_target: Target) -> None:
    with _open(db_target) as db:
        _add_history(db, 1, "deploy", evidence={"rule": "start"})
    _migrate(db_target, "0004", down=True)
    url, schema = db_target
    with MetadataDB.open(url, schema_name=schema, upgrade=False) as old:
        assert old.current_revision() == "0004"
        assert not set(inspect(old.engine).get_table_names()) & ROLLOUT_TABLES
        assert "evidence" not in _columns(old, "deployment_history")
        with pytest.raises(ConflictError, match=r"CHECK|ck_deployment_history"):
            _add_history(old, 2, "advance")
        _history_refuses_changes(old)
    with _open(db_target) as db:
        assert db.current_revision() == head_revision()
        _add_history(db, 2, "advance")
        _history_refuses_changes(db)


def test_downgrade_is_refused_while_the_history_holds_new_actions(db_target: Target) -> None:
    with _open(db_target) as db:
        _add_history(db, 1, "deploy")
        _add_history(db, 2, "advance")
    with pytest.raises(
        MigrationError, match=r"1 rows with action in \['advance', 'decommission'\]"
    ):
        _migrate(db_target, "0004", down=True)
    with _open(db_target) as db:
        assert db.current_revision() == head_revision()
        assert set(inspect(db.engine).get_table_names()) >= ROLLOUT_TABLES | {"retrain_jobs"}


def test_sqlite_parent_directory_is_created(tmp_path: Path) -> None:
    with MetadataDB.open(f"sqlite:///{tmp_path}/a/b/meta.db"):
        assert (tmp_path / "a" / "b" / "meta.db").is_file()
