"""Operations: the backups and disaster-recovery drills a project has run.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 00:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "ops_events",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("snapshot", sa.String(160), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ops_events"),
    )
    op.create_index("ix_ops_events_kind", "ops_events", ["kind"])
    op.create_index("ix_ops_events_finished_at", "ops_events", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_ops_events_finished_at", table_name="ops_events")
    op.drop_index("ix_ops_events_kind", table_name="ops_events")
    op.drop_table("ops_events")
