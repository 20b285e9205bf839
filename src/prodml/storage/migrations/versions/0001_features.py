"""Feature definitions, heads, materializations and dataset snapshots.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_KINDS = "'entity', 'feature_view', 'on_demand_feature', 'feature_service'"


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "feature_definitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_feature_definitions"),
        sa.UniqueConstraint(
            "kind", "name", "version", name="uq_feature_definitions_kind_name_version"
        ),
        sa.CheckConstraint(f"kind IN ({_KINDS})", name="ck_feature_definitions_kind"),
    )
    op.create_table(
        "feature_heads",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("kind", "name", name="pk_feature_heads"),
    )
    op.create_table(
        "materializations",
        sa.Column("view_name", sa.String(128), nullable=False),
        sa.Column("view_version", sa.String(64), nullable=False),
        _time("watermark"),
        sa.Column("rows_written", sa.BigInteger(), nullable=False),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("view_name", "view_version", name="pk_materializations"),
    )
    op.create_table(
        "datasets",
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        _time("start_time", nullable=True),
        _time("end_time", nullable=True),
        sa.Column("service_name", sa.String(128), nullable=False),
        sa.Column("service_version", sa.String(64), nullable=False),
        sa.Column("timestamp_column", sa.String(256), nullable=False),
        sa.Column("label_column", sa.String(256), nullable=True),
        sa.Column("feature_versions", sa.JSON(), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("fingerprint", name="pk_datasets"),
    )


def downgrade() -> None:
    for table in ("datasets", "materializations", "feature_heads", "feature_definitions"):
        op.drop_table(table)
