"""Retraining: the jobs of the retraining controller.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 00:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "retrain_jobs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("policy", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=True),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        _time("window_start", nullable=True),
        _time("window_end", nullable=True),
        sa.Column("candidate", sa.String(160), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _time("started_at"),
        _time("finished_at", nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_retrain_jobs"),
    )
    op.create_index("ix_retrain_jobs_policy", "retrain_jobs", ["policy"])
    op.create_index("ix_retrain_jobs_status", "retrain_jobs", ["status"])
    op.create_index("ix_retrain_jobs_started_at", "retrain_jobs", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_retrain_jobs_started_at", table_name="retrain_jobs")
    op.drop_index("ix_retrain_jobs_status", table_name="retrain_jobs")
    op.drop_index("ix_retrain_jobs_policy", table_name="retrain_jobs")
    op.drop_table("retrain_jobs")
