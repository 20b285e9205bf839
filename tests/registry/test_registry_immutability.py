"""Model versions are immutable: no public method changes one, the database refuses
raw SQL that would (on SQLite and PostgreSQL), and the records handed out are frozen."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text

from prodml.core import ConflictError, StorageError
from prodml.registry import AliasEvent, AuditEntry, ModelRegistry, ModelVersion, RunInfo
from prodml.storage import MetadataDB
from prodml.storage._models import ModelVersionRow

RegisterFn = Callable[..., ModelVersion]

# Every public attribute of ModelRegistry. A new one must be reviewed against the rule
# that nothing about a registered version changes but its approval state and aliases;
# then add it here.
PUBLIC_API = {
    "alias_history",
    "aliases",
    "approve",
    "artifact_bytes",
    "audit_log",
    "config",
    "delete_alias",
    "get",
    "get_run",
    "lineage",
    "listeners",
    "load",
    "metric_history",
    "models",
    "register",
    "reject",
    "search_runs",
    "set_alias",
    "start_run",
    "used_by",
    "versions",
}
# Parameters that carry a version's immutable content; only ``register`` may take them.
CONTENT_PARAMS = {
    "artifact",
    "evaluation",
    "format",
    "gate",
    "metrics",
    "model",
    "profile",
    "signature",
    "source",
    "description",
}
REFUSED = r"model versions are immutable|model versions cannot be"


def test_the_public_api_is_the_reviewed_allow_list(env: Any) -> None:
    reg: ModelRegistry = env.registry
    public = {name for name in dir(reg) if not name.startswith("_")}
    assert public == PUBLIC_API


def test_only_register_takes_a_versions_content() -> None:
    takers = {
        name
        for name, member in inspect.getmembers(ModelRegistry, inspect.isfunction)
        if not name.startswith("_") and CONTENT_PARAMS & set(inspect.signature(member).parameters)
    }
    assert takers == {"register"}
    mutators = {
        name
        for name in PUBLIC_API
        if any(word in name for word in ("update", "edit", "replace", "patch", "delete_version"))
    }
    assert mutators == set()


def _raw(db: MetadataDB, sql: str, **params: Any) -> None:
    with db.session() as session:
        session.execute(text(sql), params)


@pytest.mark.parametrize(
    ("column", "sql_value", "params"),
    [
        ("metrics", ":value", {"value": '{"auc": 0.99}'}),
        ("artifact_digest", ":value", {"value": "0" * 64}),
        (
            "signature",
            ":value",
            {"value": '{"inputs": [], "output": {"dtype": "float64", "shape": []}}'},
        ),
        ("gate", ":value", {"value": '{"status": "BLESSED"}'}),
        ("gate_status", ":value", {"value": "BLESSED"}),
        ("format", ":value", {"value": "skops"}),
        ("run_id", "NULL", {}),
        ("version", "version + 100", {}),
        ("name", ":value", {"value": "other"}),
        ("created_by", ":value", {"value": "mallory"}),
        ("description", ":value", {"value": "rewritten"}),
    ],
)
def test_raw_sql_cannot_change_a_frozen_column(
    env_any: Any,
    registrar: Callable[..., RegisterFn],
    column: str,
    sql_value: str,
    params: dict[str, Any],
) -> None:
    reg: ModelRegistry = env_any.registry
    run = reg.start_run("m", environment=False)
    run.end()
    registrar(reg)("m", metrics={"auc": 0.7}, gate={"status": "BLOCKED"}, run_id=run.id)
    registrar(reg)("other")
    before = reg.get("m:1")
    with pytest.raises((StorageError, ConflictError), match=REFUSED):
        _raw(
            env_any.db,
            f"UPDATE model_versions SET {column} = {sql_value} WHERE name = 'm'",
            **params,
        )
    assert reg.get("m:1") == before


def test_raw_sql_cannot_delete_a_version(
    env_any: Any, registrar: Callable[..., RegisterFn]
) -> None:
    reg: ModelRegistry = env_any.registry
    registrar(reg)("m")
    with pytest.raises((StorageError, ConflictError), match=r"model versions cannot be deleted"):
        _raw(env_any.db, "DELETE FROM model_versions WHERE name = 'm'")
    assert [v.version for v in reg.versions("m")] == [1]


def test_raw_sql_cannot_replace_a_version(
    env_any: Any, registrar: Callable[..., RegisterFn]
) -> None:
    reg: ModelRegistry = env_any.registry
    registrar(reg)("m", metrics={"auc": 0.7})
    before = reg.get("m:1")
    other = "'{\"auc\": 0.99}'"
    if env_any.db.dialect == "postgresql":
        other = f"CAST({other} AS json)"
    columns = [c.name for c in ModelVersionRow.__table__.columns]
    same_row_other_metrics = ", ".join(other if c == "metrics" else c for c in columns)
    insert = f"INTO model_versions ({', '.join(columns)}) SELECT {same_row_other_metrics} "
    if env_any.db.dialect == "sqlite":
        sql = f"INSERT OR REPLACE {insert} FROM model_versions"
    else:
        sql = (
            f"INSERT {insert} FROM model_versions "
            "ON CONFLICT (id) DO UPDATE SET metrics = EXCLUDED.metrics"
        )
    with pytest.raises((StorageError, ConflictError), match=REFUSED):
        _raw(env_any.db, sql)
    assert reg.get("m:1") == before


def test_the_orm_cannot_change_a_frozen_column(
    env_any: Any, registrar: Callable[..., RegisterFn]
) -> None:
    reg: ModelRegistry = env_any.registry
    registrar(reg)("m", metrics={"auc": 0.7})

    def change_metrics() -> None:
        with env_any.db.session() as session:
            row = session.scalars(select(ModelVersionRow)).one()
            row.metrics = {"auc": 0.99}

    with pytest.raises((StorageError, ConflictError), match=REFUSED):
        change_metrics()
    assert reg.get("m:1").metrics == {"auc": 0.7}


def test_the_approval_columns_can_change(
    env_any: Any, registrar: Callable[..., RegisterFn]
) -> None:
    reg: ModelRegistry = env_any.registry
    registrar(reg)("m")
    when = datetime(2024, 3, 2, tzinfo=UTC)
    with env_any.db.session() as session:
        row = session.scalars(select(ModelVersionRow)).one()
        row.status, row.status_actor, row.status_reason, row.status_time = (
            "approved",
            "ops",
            "manual fix",
            when,
        )
    version = reg.get("m:1")
    assert (version.status, version.status_actor, version.status_reason, version.status_time) == (
        "approved",
        "ops",
        "manual fix",
        when,
    )
    _raw(env_any.db, "UPDATE model_versions SET status = 'rejected' WHERE name = 'm'")
    assert reg.get("m:1").status == "rejected"


def test_records_are_frozen(env: Any, register: RegisterFn) -> None:
    reg: ModelRegistry = env.registry
    version = register("m", metrics={"auc": 0.7})
    reg.set_alias("m", "staging", 1)
    run = reg.start_run("m", environment=False).end()
    records: list[Any] = [version, run, reg.alias_history("m")[0], reg.audit_log()[0]]
    assert [type(r) for r in records] == [ModelVersion, RunInfo, AliasEvent, AuditEntry]
    for record in records:
        field = dataclasses.fields(record)[1].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, field, "changed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        version.metrics = {"auc": 1.0}  # type: ignore[misc]
    assert reg.get("m:1").metrics == {"auc": 0.7}
