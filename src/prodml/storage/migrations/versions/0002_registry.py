"""Runs, metrics, model versions, aliases and their history, the audit log.

Model versions are immutable: a trigger refuses every update that touches anything but
the approval columns, and every delete, on SQLite and PostgreSQL alike.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 00:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

#: Columns of model_versions that may change after registration (the approval state).
MUTABLE = ("status", "status_actor", "status_reason", "status_time")
FROZEN = (
    "id",
    "name",
    "version",
    "artifact_digest",
    "artifact_size",
    "format",
    "signature",
    "profile",
    "metrics",
    "evaluation",
    "gate",
    "gate_status",
    "run_id",
    "source",
    "description",
    "created_by",
    "created_at",
)
_MESSAGE = "model versions are immutable: only the approval status may change"


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _check(column: str, table: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=f"ck_{table}_{column}")


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("next_version", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("name", name="pk_registered_models"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("code", sa.JSON(), nullable=False),
        sa.Column("service_name", sa.String(128), nullable=True),
        sa.Column("service_version", sa.String(64), nullable=True),
        sa.Column("parent_version", sa.String(160), nullable=True),
        sa.Column("job", sa.JSON(), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _time("start_time"),
        _time("end_time", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        _check("status", "runs", ("running", "finished", "failed")),
    )
    op.create_index("ix_runs_model_name", "runs", ["model_name"])
    op.create_table(
        "run_metrics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("step", sa.BigInteger(), nullable=False),
        _time("timestamp"),
        sa.PrimaryKeyConstraint("id", name="pk_run_metrics"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_metrics_run_id_runs"),
    )
    op.create_index("ix_run_metrics_run_key_step", "run_metrics", ["run_id", "key", "step"])
    op.create_table(
        "run_latest_metrics",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_run_latest_metrics"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_latest_metrics_run_id_runs"),
    )
    op.create_index("ix_run_latest_metrics_key_value", "run_latest_metrics", ["key", "value"])
    op.create_table(
        "run_datasets",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "fingerprint", "role", name="pk_run_datasets"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_datasets_run_id_runs"),
    )
    op.create_index("ix_run_datasets_fingerprint", "run_datasets", ["fingerprint"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artifact_digest", sa.String(64), nullable=False),
        sa.Column("artifact_size", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("evaluation", sa.JSON(), nullable=True),
        sa.Column("gate", sa.JSON(), nullable=True),
        sa.Column("gate_status", sa.String(16), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        _time("created_at"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_actor", sa.String(128), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        _time("status_time", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
        _check("status", "model_versions", ("pending", "approved", "rejected")),
        sa.ForeignKeyConstraint(
            ["name"], ["registered_models.name"], name="fk_model_versions_name_registered_models"
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_model_versions_run_id_runs"),
    )
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("name", "alias", name="pk_model_aliases"),
        sa.ForeignKeyConstraint(
            ["name"], ["registered_models.name"], name="fk_model_aliases_name_registered_models"
        ),
    )
    op.create_table(
        "alias_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(128), nullable=False),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _time("time"),
        sa.PrimaryKeyConstraint("id", name="pk_alias_history"),
    )
    op.create_index("ix_alias_history_name_alias", "alias_history", ["name", "alias"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _time("time"),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(256), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_object_id", "audit_log", ["object_id"])
    _create_immutability_triggers()


def _create_immutability_triggers() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER model_versions_immutable BEFORE UPDATE OF "
            + ", ".join(FROZEN)
            + f" ON model_versions BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
        )
        op.execute(
            "CREATE TRIGGER model_versions_undeletable BEFORE DELETE ON model_versions "
            "BEGIN SELECT RAISE(ABORT, 'model versions cannot be deleted'); END"
        )
        # INSERT OR REPLACE deletes the old row without firing delete triggers (unless
        # recursive_triggers is on): refuse any insert that would collide instead.
        op.execute(
            "CREATE TRIGGER model_versions_unreplaceable BEFORE INSERT ON model_versions "
            "WHEN EXISTS (SELECT 1 FROM model_versions WHERE id = NEW.id "
            "OR (name = NEW.name AND version = NEW.version)) "
            "BEGIN SELECT RAISE(ABORT, 'model versions cannot be replaced'); END"
        )
        return
    changed = " OR ".join(
        f"NEW.{c} IS DISTINCT FROM OLD.{c}"
        for c in FROZEN
        if c not in {"signature", "profile", "metrics", "evaluation", "gate"}
    )
    # json has no equality operator in PostgreSQL: compare the text forms.
    changed += "".join(
        f" OR NEW.{c}::text IS DISTINCT FROM OLD.{c}::text"
        for c in ("signature", "profile", "metrics", "evaluation", "gate")
    )
    op.execute(
        "CREATE FUNCTION prodml_model_versions_guard() RETURNS trigger AS $$ BEGIN "
        "IF TG_OP = 'DELETE' THEN RAISE EXCEPTION 'model versions cannot be deleted'; END IF; "
        f"IF {changed} THEN RAISE EXCEPTION '{_MESSAGE}'; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql"
    )
    op.execute(
        "CREATE TRIGGER model_versions_immutable BEFORE UPDATE OR DELETE ON model_versions "
        "FOR EACH ROW EXECUTE FUNCTION prodml_model_versions_guard()"
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS model_versions_immutable ON model_versions")
        op.execute("DROP FUNCTION IF EXISTS prodml_model_versions_guard()")
    for table in (
        "audit_log",
        "alias_history",
        "model_aliases",
        "model_versions",
        "run_datasets",
        "run_latest_metrics",
        "run_metrics",
        "runs",
        "registered_models",
    ):
        op.drop_table(table)
