"""Monitoring: reference profiles per model version, computed windows and their results,
alert states and the notifications sent.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 00:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "monitor_references",
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("model_version", name="pk_monitor_references"),
    )
    op.create_table(
        "monitor_windows",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("arm", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("shadow", sa.Boolean(), nullable=False),
        _time("window_start"),
        _time("window_end"),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _time("computed_at"),
        sa.Column("label_rows", sa.Integer(), nullable=False),
        sa.Column("labels_final", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitor_windows"),
        sa.UniqueConstraint(
            "endpoint",
            "arm",
            "model_version",
            "window_start",
            "window_end",
            name="uq_monitor_windows_scope_window",
        ),
    )
    op.create_index("ix_monitor_windows_window_end", "monitor_windows", ["window_end"])
    op.create_table(
        "monitor_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("window_id", sa.Integer(), nullable=False),
        sa.Column("check", sa.String(32), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("column", sa.String(256), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["window_id"],
            ["monitor_windows.id"],
            name="fk_monitor_results_window_id_monitor_windows",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_monitor_results"),
        sa.UniqueConstraint(
            "window_id",
            "check",
            "metric",
            "column",
            name="uq_monitor_results_window_id_check_metric_column",
        ),
    )
    op.create_table(
        "alert_states",
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(512), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("rule", "scope", name="pk_alert_states"),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(512), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _time("window_end"),
        _time("sent_at"),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
    )
    op.create_index("ix_alert_events_rule_scope", "alert_events", ["rule", "scope"])


def downgrade() -> None:
    op.drop_index("ix_alert_events_rule_scope", table_name="alert_events")
    op.drop_index("ix_monitor_windows_window_end", table_name="monitor_windows")
    for table in (
        "alert_events",
        "alert_states",
        "monitor_results",
        "monitor_windows",
        "monitor_references",
    ):
        op.drop_table(table)
