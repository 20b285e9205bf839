"""The metadata tables, as typed SQLAlchemy 2 models.

The schema is created and changed only by the Alembic migrations in
``prodml/storage/migrations``; these models must match them (a test compares the two).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from prodml.storage._columns import UTCDateTime

__all__ = [
    "DEFINITION_KINDS",
    "Base",
    "DatasetRow",
    "FeatureDefinitionRow",
    "FeatureHeadRow",
    "MaterializationRow",
]

DEFINITION_KINDS = ("entity", "feature_view", "on_demand_feature", "feature_service")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_HASH = String(64)
_NAME = String(128)


class Base(DeclarativeBase):
    """Declarative base of every prodml metadata table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FeatureDefinitionRow(Base):
    """One immutable version of a feature definition (its spec hashes to ``version``)."""

    __tablename__ = "feature_definitions"
    __table_args__ = (
        UniqueConstraint("kind", "name", "version"),
        CheckConstraint(
            "kind IN (" + ", ".join(f"'{kind}'" for kind in DEFINITION_KINDS) + ")", name="kind"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(_NAME)
    version: Mapped[str] = mapped_column(_HASH)
    spec: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FeatureHeadRow(Base):
    """The current version of each named definition."""

    __tablename__ = "feature_heads"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(_NAME, primary_key=True)
    version: Mapped[str] = mapped_column(_HASH)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MaterializationRow(Base):
    """How far a feature view version has been materialized to the online store."""

    __tablename__ = "materializations"

    view_name: Mapped[str] = mapped_column(_NAME, primary_key=True)
    view_version: Mapped[str] = mapped_column(_HASH, primary_key=True)
    watermark: Mapped[datetime] = mapped_column(UTCDateTime())
    rows_written: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DatasetRow(Base):
    """A training-set snapshot, identified by the fingerprint of its full content."""

    __tablename__ = "datasets"

    fingerprint: Mapped[str] = mapped_column(_HASH, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    row_count: Mapped[int] = mapped_column(BigInteger)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    service_name: Mapped[str] = mapped_column(_NAME)
    service_version: Mapped[str] = mapped_column(_HASH)
    timestamp_column: Mapped[str] = mapped_column(String(256))
    label_column: Mapped[str | None] = mapped_column(String(256), nullable=True)
    feature_versions: Mapped[dict[str, str]] = mapped_column(JSON)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
