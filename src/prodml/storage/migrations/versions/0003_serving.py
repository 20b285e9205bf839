"""Deployments per endpoint and their history, shared bandit state and bandit decisions.

The deployment history is append-only: triggers refuse every update and delete (and
``INSERT OR REPLACE`` on SQLite, ``TRUNCATE`` on PostgreSQL), on SQLite and PostgreSQL
alike.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 00:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

ACTIONS = ("deploy", "set_weights", "pause", "resume", "promote", "rollback", "guardrail", "delete")
_MESSAGE = "deployment history is append-only: rows cannot be changed or deleted"


def _time(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        _time("updated_at"),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("endpoint", name="pk_deployments"),
    )
    allowed = ", ".join(f"'{action}'" for action in ACTIONS)
    op.create_table(
        "deployment_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _time("time"),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_history"),
        sa.UniqueConstraint("endpoint", "revision", name="uq_deployment_history_endpoint_revision"),
        sa.CheckConstraint(f"action IN ({allowed})", name="ck_deployment_history_action"),
    )
    op.create_table(
        "bandit_states",
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("endpoint", name="pk_bandit_states"),
    )
    op.create_table(
        "bandit_decisions",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("arm", sa.String(128), nullable=False),
        _time("time"),
        sa.PrimaryKeyConstraint("request_id", name="pk_bandit_decisions"),
    )
    op.create_index("ix_bandit_decisions_time", "bandit_decisions", ["time"])
    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER deployment_history_unchangeable BEFORE UPDATE ON deployment_history "
            f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
        )
        op.execute(
            "CREATE TRIGGER deployment_history_undeletable BEFORE DELETE ON deployment_history "
            f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
        )
        # INSERT OR REPLACE deletes the old row without firing delete triggers (unless
        # recursive_triggers is on): refuse any insert that would collide instead.
        op.execute(
            "CREATE TRIGGER deployment_history_unreplaceable BEFORE INSERT ON deployment_history "
            "WHEN EXISTS (SELECT 1 FROM deployment_history WHERE id = NEW.id "
            "OR (endpoint = NEW.endpoint AND revision = NEW.revision)) "
            f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
        )
        return
    op.execute(
        "CREATE FUNCTION prodml_deployment_history_guard() RETURNS trigger AS $$ BEGIN "
        f"RAISE EXCEPTION '{_MESSAGE}'; END $$ LANGUAGE plpgsql"
    )
    op.execute(
        "CREATE TRIGGER deployment_history_append_only BEFORE UPDATE OR DELETE "
        "ON deployment_history FOR EACH ROW EXECUTE FUNCTION prodml_deployment_history_guard()"
    )
    op.execute(
        "CREATE TRIGGER deployment_history_untruncatable BEFORE TRUNCATE ON deployment_history "
        "FOR EACH STATEMENT EXECUTE FUNCTION prodml_deployment_history_guard()"
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS deployment_history_untruncatable ON deployment_history")
        op.execute("DROP TRIGGER IF EXISTS deployment_history_append_only ON deployment_history")
        op.execute("DROP FUNCTION IF EXISTS prodml_deployment_history_guard()")
    op.drop_index("ix_bandit_decisions_time", table_name="bandit_decisions")
    for table in ("bandit_decisions", "bandit_states", "deployment_history", "deployments"):
        op.drop_table(table)
