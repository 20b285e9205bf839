"""Rollout: the evidence of each deployment change, two more deployment actions
(``advance``, ``decommission``), rollout plans and decisions, controller leases.

Changing the deployment history's ``action`` CHECK constraint recreates the table on
SQLite (batch mode: copy, drop, rename), which drops its append-only triggers; they are
created again at once, in the same transaction. PostgreSQL alters the table in place
and keeps its triggers. A downgrade is refused while the history holds an action the
old constraint does not allow (the history is append-only: such rows cannot go).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 00:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from prodml.core import MigrationError

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

OLD_ACTIONS = (
    "deploy",
    "set_weights",
    "pause",
    "resume",
    "promote",
    "rollback",
    "guardrail",
    "delete",
)
NEW_ACTIONS = (*OLD_ACTIONS, "advance", "decommission")
# The name revision 0003 stored: the naming convention prefixed its explicit name again.
_CHECK = "ck_deployment_history_ck_deployment_history_action"
_MESSAGE = "deployment history is append-only: rows cannot be changed or deleted"


def _time(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _allowed(actions: tuple[str, ...]) -> str:
    return "action IN (" + ", ".join(f"'{action}'" for action in actions) + ")"


def _history(actions: tuple[str, ...], *, evidence: bool) -> sa.Table:
    """The deployment history as it is before a batch change (SQLite copies it from
    this description instead of reflecting it, which would lose the CHECK name)."""
    columns: list[sa.Column[object]] = [
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _time("time"),
    ]
    if evidence:
        columns.append(sa.Column("evidence", sa.JSON(), nullable=True))
    return sa.Table(
        "deployment_history",
        sa.MetaData(),
        *columns,
        sa.PrimaryKeyConstraint("id", name="pk_deployment_history"),
        sa.UniqueConstraint("endpoint", "revision", name="uq_deployment_history_endpoint_revision"),
        sa.CheckConstraint(_allowed(actions), name=_CHECK),
    )


def upgrade() -> None:
    with op.batch_alter_table(
        "deployment_history", copy_from=_history(OLD_ACTIONS, evidence=False)
    ) as batch:
        batch.add_column(sa.Column("evidence", sa.JSON(), nullable=True))
        batch.drop_constraint(op.f(_CHECK), type_="check")
        batch.create_check_constraint(op.f(_CHECK), _allowed(NEW_ACTIONS))
    _recreate_sqlite_triggers()
    op.create_table(
        "rollout_plans",
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _time("created_at"),
        sa.Column("created_by", sa.String(128), nullable=False),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("endpoint", name="pk_rollout_plans"),
    )
    op.create_table(
        "rollout_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        _time("time"),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollout_decisions"),
    )
    op.create_index("ix_rollout_decisions_endpoint", "rollout_decisions", ["endpoint"])
    op.create_index("ix_rollout_decisions_time", "rollout_decisions", ["time"])
    op.create_table(
        "controller_leases",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        _time("acquired_at"),
        _time("expires_at"),
        sa.PrimaryKeyConstraint("name", name="pk_controller_leases"),
    )


def downgrade() -> None:
    added = [action for action in NEW_ACTIONS if action not in OLD_ACTIONS]
    query = sa.text("SELECT COUNT(*) FROM deployment_history WHERE action IN :added")
    query = query.bindparams(sa.bindparam("added", expanding=True))
    count = op.get_bind().execute(query, {"added": added}).scalar_one()
    if count:
        raise MigrationError(
            f"deployment_history holds {count} rows with action in {added}, "
            "which revision 0004 does not allow; the history is append-only, so the schema "
            "cannot go below revision 0005 (restore a backup taken before upgrading)"
        )
    op.drop_table("controller_leases")
    op.drop_index("ix_rollout_decisions_time", table_name="rollout_decisions")
    op.drop_index("ix_rollout_decisions_endpoint", table_name="rollout_decisions")
    op.drop_table("rollout_decisions")
    op.drop_table("rollout_plans")
    with op.batch_alter_table(
        "deployment_history", copy_from=_history(NEW_ACTIONS, evidence=True)
    ) as batch:
        batch.drop_constraint(op.f(_CHECK), type_="check")
        batch.create_check_constraint(op.f(_CHECK), _allowed(OLD_ACTIONS))
        batch.drop_column("evidence")
    _recreate_sqlite_triggers()


def _recreate_sqlite_triggers() -> None:
    """SQLite's batch mode rebuilt the table without its triggers: put them back (the
    same three as revision 0003). PostgreSQL altered the table in place."""
    if op.get_context().dialect.name != "sqlite":
        return
    for name in (
        "deployment_history_unchangeable",
        "deployment_history_undeletable",
        "deployment_history_unreplaceable",
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
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
