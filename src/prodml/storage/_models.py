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
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from prodml.storage._columns import UTCDateTime

__all__ = [
    "APPROVAL_STATUSES",
    "DEFINITION_KINDS",
    "DEPLOYMENT_ACTIONS",
    "RUN_STATUSES",
    "AlertEventRow",
    "AlertStateRow",
    "AliasHistoryRow",
    "AuditRow",
    "BanditDecisionRow",
    "BanditStateRow",
    "Base",
    "ControllerLeaseRow",
    "DatasetRow",
    "DeploymentHistoryRow",
    "DeploymentRow",
    "FeatureDefinitionRow",
    "FeatureHeadRow",
    "MaterializationRow",
    "ModelAliasRow",
    "ModelVersionRow",
    "MonitorReferenceRow",
    "MonitorResultRow",
    "MonitorWindowRow",
    "RegisteredModelRow",
    "RetrainJobRow",
    "RolloutDecisionRow",
    "RolloutPlanRow",
    "RunDatasetRow",
    "RunLatestMetricRow",
    "RunMetricRow",
    "RunRow",
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


RUN_STATUSES = ("running", "finished", "failed")
APPROVAL_STATUSES = ("pending", "approved", "rejected")


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    return CheckConstraint(
        f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")", name=column
    )


class RegisteredModelRow(Base):
    """A model name; its row is locked while versions are allocated or aliases move."""

    __tablename__ = "registered_models"

    name: Mapped[str] = mapped_column(_NAME, primary_key=True)
    next_version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunRow(Base):
    """A tracked training run: what went in (params, data, code, environment) and its status."""

    __tablename__ = "runs"
    __table_args__ = (_one_of("status", RUN_STATUSES),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(_NAME, index=True)
    status: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[dict[str, str]] = mapped_column(JSON)
    seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    environment: Mapped[dict[str, Any]] = mapped_column(JSON)
    code: Mapped[dict[str, Any]] = mapped_column(JSON)
    service_name: Mapped[str | None] = mapped_column(_NAME, nullable=True)
    service_version: Mapped[str | None] = mapped_column(_HASH, nullable=True)
    parent_version: Mapped[str | None] = mapped_column(String(160), nullable=True)
    job: Mapped[dict[str, Any]] = mapped_column(JSON)
    artifacts: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime())
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RunMetricRow(Base):
    """One logged metric value (the full history, with step and time)."""

    __tablename__ = "run_metrics"
    __table_args__ = (Index("ix_run_metrics_run_key_step", "run_id", "key", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    key: Mapped[str] = mapped_column(String(256))
    value: Mapped[float | None] = mapped_column(Double, nullable=True)  # NULL = NaN
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())


class RunLatestMetricRow(Base):
    """The latest value (highest step) of each metric of a run, for searching by metric."""

    __tablename__ = "run_latest_metrics"
    __table_args__ = (Index("ix_run_latest_metrics_key_value", "key", "value"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    value: Mapped[float | None] = mapped_column(Double, nullable=True)  # NULL = NaN
    step: Mapped[int] = mapped_column(BigInteger)


class RunDatasetRow(Base):
    """A dataset (by fingerprint) a run used, and in which role (train/validation/test)."""

    __tablename__ = "run_datasets"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(_HASH, primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)


class ModelVersionRow(Base):
    """One immutable model version. Only the approval columns ever change; triggers in
    the migration refuse any other update and every delete."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        _one_of("status", APPROVAL_STATUSES),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(ForeignKey("registered_models.name"))
    version: Mapped[int] = mapped_column(Integer)
    artifact_digest: Mapped[str] = mapped_column(_HASH)
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(64))
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    profile: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    gate_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), nullable=True, index=True)
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    description: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    status_actor: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    status_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ModelAliasRow(Base):
    """Where an alias (``champion``, ``challenger``, any name) points now."""

    __tablename__ = "model_aliases"

    name: Mapped[str] = mapped_column(ForeignKey("registered_models.name"), primary_key=True)
    alias: Mapped[str] = mapped_column(_NAME, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AliasHistoryRow(Base):
    """Every move of an alias: from which version to which (``None`` = unset)."""

    __tablename__ = "alias_history"
    __table_args__ = (Index("ix_alias_history_name_alias", "name", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(_NAME)
    alias: Mapped[str] = mapped_column(_NAME)
    previous_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditRow(Base):
    """One state change: who did what to which object, before and after."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(256), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


DEPLOYMENT_ACTIONS = (
    "deploy",
    "set_weights",
    "pause",
    "resume",
    "promote",
    "rollback",
    "guardrail",
    "delete",
    "advance",
    "decommission",
)


class DeploymentRow(Base):
    """An endpoint's current deployment; ``revision`` grows by one with every change."""

    __tablename__ = "deployments"

    endpoint: Mapped[str] = mapped_column(_NAME, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class DeploymentHistoryRow(Base):
    """Every change of a deployment (``spec`` is NULL for a delete). Append-only:
    triggers in the migration refuse every update and delete. The unique
    (endpoint, revision) index also serves lookups by endpoint."""

    __tablename__ = "deployment_history"
    __table_args__ = (
        UniqueConstraint("endpoint", "revision"),
        _one_of("action", DEPLOYMENT_ACTIONS),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(_NAME)
    revision: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class BanditStateRow(Base):
    """The shared bandit posterior of an endpoint (``BanditState.to_dict()``)."""

    __tablename__ = "bandit_states"

    endpoint: Mapped[str] = mapped_column(_NAME, primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BanditDecisionRow(Base):
    """Which arm served a bandit request, so a reward arriving later at any replica
    finds its arm."""

    __tablename__ = "bandit_decisions"

    request_id: Mapped[str] = mapped_column(_NAME, primary_key=True)
    endpoint: Mapped[str] = mapped_column(_NAME)
    arm: Mapped[str] = mapped_column(_NAME)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class MonitorReferenceRow(Base):
    """The drift reference of a model version: a ``DriftReference`` blob in the artifact
    store (``digest``) and where it was fitted from (``source``)."""

    __tablename__ = "monitor_references"

    model_version: Mapped[str] = mapped_column(_NAME, primary_key=True)
    digest: Mapped[str] = mapped_column(_HASH)
    source: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MonitorWindowRow(Base):
    """One computed window of one (endpoint, arm, model version): computed once; its
    delayed-label results are refreshed until ``labels_final``."""

    __tablename__ = "monitor_windows"
    __table_args__ = (
        UniqueConstraint(
            "endpoint",
            "arm",
            "model_version",
            "window_start",
            "window_end",
            name="uq_monitor_windows_scope_window",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(_NAME)
    arm: Mapped[str] = mapped_column(_NAME)
    model_version: Mapped[str] = mapped_column(_NAME)
    shadow: Mapped[bool] = mapped_column(Boolean)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    rows: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    label_rows: Mapped[int] = mapped_column(Integer)
    labels_final: Mapped[bool] = mapped_column(Boolean)


class MonitorResultRow(Base):
    """One metric of one window: ``check`` (drift, quality, performance, …), ``metric``,
    ``column`` ('' for window-level metrics), value, threshold and status."""

    __tablename__ = "monitor_results"
    __table_args__ = (UniqueConstraint("window_id", "check", "metric", "column"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    window_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("monitor_windows.id", ondelete="CASCADE")
    )
    check: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(64))
    column: Mapped[str] = mapped_column(String(256))
    value: Mapped[float | None] = mapped_column(Double, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Double, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class AlertStateRow(Base):
    """The current state of one alert rule in one scope (``AlertState.to_dict()``)."""

    __tablename__ = "alert_states"

    rule: Mapped[str] = mapped_column(_NAME, primary_key=True)
    scope: Mapped[str] = mapped_column(String(512), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertEventRow(Base):
    """A notification sent (firing or resolved), with the window that caused it."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ix_alert_events_rule_scope", "rule", "scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(_NAME)
    scope: Mapped[str] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16))
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class RolloutPlanRow(Base):
    """An endpoint's rollout plan and the controller's state of it (JSON the rollout
    controller defines); ``version`` grows by one with every write (optimistic
    concurrency)."""

    __tablename__ = "rollout_plans"

    endpoint: Mapped[str] = mapped_column(_NAME, primary_key=True)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(24))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RolloutDecisionRow(Base):
    """One decision of a rollout pass (advance, hold, promote, …) with its evidence and
    the deployment revision it wrote, if any."""

    __tablename__ = "rollout_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(_NAME, index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)


class ControllerLeaseRow(Base):
    """Who holds a named controller lease, until when (see :mod:`prodml.storage._leases`)."""

    __tablename__ = "controller_leases"

    name: Mapped[str] = mapped_column(_NAME, primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RetrainJobRow(Base):
    """One retraining job of the retraining controller: what triggered it and why, the
    data window, each step with its duration and outcome (JSON the controller defines),
    the candidate version it registered, and how it ended."""

    __tablename__ = "retrain_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    policy: Mapped[str] = mapped_column(_NAME, index=True)
    model: Mapped[str] = mapped_column(_NAME)
    endpoint: Mapped[str | None] = mapped_column(_NAME, nullable=True)
    trigger: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(24), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    candidate: Mapped[str | None] = mapped_column(String(160), nullable=True)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    actor: Mapped[str] = mapped_column(String(128))


class OpsEventRow(Base):
    """A backup or disaster-recovery drill the project ran: when, its snapshot, whether
    it passed, and its figures (JSON the ops package defines)."""

    __tablename__ = "ops_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(16))
    snapshot: Mapped[str | None] = mapped_column(String(160), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(128))
