"""Project configuration: one validated model tree read from ``prodml.toml``.

Environment variables ``PRODML__SECTION__KEY`` override the file (``PRODML__ONLINE_STORE__TYPE
=redis``). Unknown keys are errors. Backend sections are discriminated on ``type``.
Relative paths are relative to the project root, resolved by the caller.

>>> cfg = load_config_text('[project]\\nname = "demo"\\n[online_store]\\ntype = "memory"\\n', environ={})
>>> cfg.project.name, cfg.online_store.type, cfg.metadata.type
('demo', 'memory', 'sqlite')
>>> load_config_text("", environ={"PRODML__ONLINE_STORE__TYPE": "redis"}).online_store.type
'redis'
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from prodml.core._alert_config import AlertsConfig, parse_duration
from prodml.core._clock import ensure_utc
from prodml.core._config_errors import describe_errors
from prodml.core._config_section import MAX_SPAN, SPAN_PATTERN, PathText
from prodml.core._config_section import Section as _Section
from prodml.core._label_config import LabelsConfig
from prodml.core._monitor_metrics import DriftStatistic
from prodml.core._retraining_config import RetrainingConfig
from prodml.core.errors import ConfigError

__all__ = [
    "CONFIG_FILE",
    "ArtifactsConfig",
    "Config",
    "DriftMethodConfig",
    "FeaturesConfig",
    "GateConfig",
    "LocalArtifactsConfig",
    "LogsConfig",
    "MemoryOnlineConfig",
    "MetadataConfig",
    "MetricChange",
    "MlflowConfig",
    "MonitoringConfig",
    "OfflineStoreConfig",
    "OnlineStoreConfig",
    "PostgresMetadataConfig",
    "ProjectSection",
    "QualityConfig",
    "QualityThresholds",
    "RedisOnlineConfig",
    "RegistryConfig",
    "S3ArtifactsConfig",
    "ServingConfig",
    "ServingToken",
    "SqliteMetadataConfig",
    "SqliteOnlineConfig",
    "TrainingConfig",
    "load_config",
    "load_config_text",
]

CONFIG_FILE = "prodml.toml"
ENV_PREFIX = "PRODML__"


class ProjectSection(_Section):
    name: str = "prodml"
    state_dir: PathText = ".prodml"


class SqliteMetadataConfig(_Section):
    type: Literal["sqlite"] = "sqlite"
    path: PathText = ".prodml/meta.db"


class PostgresMetadataConfig(_Section):
    type: Literal["postgresql"]
    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db")
    schema_name: str | None = None


MetadataConfig = Annotated[
    SqliteMetadataConfig | PostgresMetadataConfig, Field(discriminator="type")
]


class LocalArtifactsConfig(_Section):
    type: Literal["local"] = "local"
    path: PathText = ".prodml/artifacts"


class S3ArtifactsConfig(_Section):
    """Artifacts in an S3-compatible bucket; credentials from the environment (AWS's
    variables, profile or role), never from this file."""

    type: Literal["s3"]
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None


ArtifactsConfig = Annotated[LocalArtifactsConfig | S3ArtifactsConfig, Field(discriminator="type")]


class LogsConfig(_Section):
    """Where the prediction and label logs are kept: the log store backend registered
    under ``type`` (``prodml.storage.LOG_STORES``; checked when the logs are opened).
    ``type = "s3"`` keeps them in an S3-compatible bucket: ``bucket`` (required),
    ``prefix``, ``endpoint_url``, ``region``; credentials from the environment."""

    type: str = "local"
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None

    @model_validator(mode="after")
    def _bucket_for_s3(self) -> LogsConfig:
        if self.type == "s3" and not self.bucket:
            raise ValueError("type 's3' needs bucket = \"<bucket name>\"")
        return self


class MemoryOnlineConfig(_Section):
    type: Literal["memory"]


class SqliteOnlineConfig(_Section):
    type: Literal["sqlite"] = "sqlite"
    path: PathText = ".prodml/online.db"


class RedisOnlineConfig(_Section):
    type: Literal["redis"]
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "prodml"


OnlineStoreConfig = Annotated[
    MemoryOnlineConfig | SqliteOnlineConfig | RedisOnlineConfig, Field(discriminator="type")
]


class OfflineStoreConfig(_Section):
    type: Literal["duckdb"] = "duckdb"
    path: PathText = ".prodml/offline"
    threads: int | None = Field(default=None, ge=1)
    memory_limit: str | None = None


class FeaturesConfig(_Section):
    definitions: PathText = "features.py"
    datasets_path: PathText = ".prodml/datasets"
    created_time_guard: bool = True
    on_violation: Literal["error", "warn", "ignore"] = "error"
    on_unmatched_view: Literal["warn", "error"] = Field(
        default="warn",
        description="a feature view that gives no value to any row of a training set: "
        "build it with a warning (counts in its summary) or refuse it",
    )
    materialize_chunk_hours: int = Field(default=24 * 7, ge=1, le=MAX_SPAN["h"])


class TrainingConfig(_Section):
    """``[training]``: where the training function lives and how data is split."""

    module: PathText = "train.py"
    trainer: str | None = Field(
        default=None, description="function name in `module`; default: the one decorated"
    )
    model_name: str | None = Field(default=None, description="default: the feature service")
    validation_fraction: float = Field(default=0.15, ge=0.0, lt=1.0)
    test_fraction: float = Field(default=0.15, gt=0.0, lt=1.0)
    test_split: Literal["fraction", "champion"] = Field(
        default="fraction",
        description='"champion": the test rows are those after the last row the champion was '
        "fitted on, so the candidate as evaluated and the champion learned from data up to the "
        "same time (the test_fraction split when there is no such cut)",
    )
    segments: tuple[str, ...] = Field(
        default=(), description="columns whose values get their own metrics (slices)"
    )
    slice_min_rows: int = Field(default=100, ge=1)
    robustness_dir: PathText = "robustness"
    refit: Literal["none", "full"] = Field(
        default="none",
        description='"full": after the gate, refit on every row of the window and register that',
    )
    calibration: Literal["none", "isotonic", "sigmoid"] = Field(
        default="none",
        description="classifiers: calibrate probabilities on the validation split",
    )


class MetricChange(_Section):
    """A change threshold against the champion, e.g. ROC-AUC may drop by at most 0.01."""

    metric: str
    max_degradation: float = Field(ge=0.0)
    relative: bool = False
    direction: Literal["higher", "lower"] | None = Field(
        default=None, description="which way is better; default: known per metric"
    )
    per_slice: bool = False


class GateConfig(_Section):
    """``[gate]``: what a candidate must show to be BLESSED."""

    thresholds: tuple[str, ...] = Field(
        default=(), description='value thresholds such as "roc_auc >= 0.70"'
    )
    change: tuple[MetricChange, ...] = ()
    latency_p99_ms: float | None = Field(default=None, gt=0)
    robustness: bool = True
    # The leakage check (prodml.training._leakage says why these defaults).
    leakage_check: bool = Field(default=True, description="single-feature AUC/R² per feature")
    leakage_max_auc: float = Field(default=0.95, gt=0.5, le=1.0, description="train AUC ≥: suspect")
    leakage_max_r2: float = Field(default=0.90, gt=0.0, le=1.0, description="train R² ≥: suspect")
    leakage_max_gap: float = Field(default=0.10, gt=0.0, description="train − test ≥: suspect")
    leakage_max_exact_time_share: float = Field(
        default=0.5, gt=0.0, le=1.0, description="a view's picks stamped at t, share ≥: suspect"
    )
    fail_on_leakage: bool = Field(default=False, description="a suspect fails the gate")


class RegistryConfig(_Section):
    """``[registry]``: approval rules."""

    require_approval: bool = Field(
        default=True, description="only approved versions may be aliased to production aliases"
    )
    production_aliases: tuple[str, ...] = ("champion",)


class MlflowConfig(_Section):
    """``[mlflow]``: mirror runs and versions to an MLflow tracking server."""

    tracking_uri: str | None = None
    registry_uri: str | None = None
    experiment: str = "prodml"


class ServingToken(_Section):
    """One bearer token and its role; give the token itself or the environment variable
    that holds it (``env``), so that secrets stay out of ``prodml.toml``."""

    name: str
    role: Literal["viewer", "operator", "admin", "labeler"]
    token: str | None = Field(default=None, min_length=16)
    env: str | None = None


class ServingConfig(_Section):
    """``[serving]``: the HTTP server, its runtime limits and its logs."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)

    @field_validator("port", "workers", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):  # pydantic reads true as 1: port 1, one worker
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value

    max_request_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="request body bytes, counted while the body streams in (413 past it)",
    )
    max_batch_rows: int = Field(
        default=10_000,
        ge=1,
        description="rows in one request on every protocol, counted before decoding (413)",
    )
    inline_decode_max_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        description=(
            "request bodies up to this size are decoded on the event loop; larger ones "
            "in a worker thread, so that health probes answer while they decode"
        ),
    )
    on_soft_violation: Literal["serve", "reject"] = Field(
        default="serve",
        description="out-of-range values and unseen categories: predict anyway or refuse",
    )
    on_missing_entity: Literal["serve", "warn", "refuse"] = Field(
        default="warn",
        description=(
            "an entity with no row in a feature view's online store (native requests): "
            "predict on null features with a warning in the response, predict silently "
            "(still counted and logged), or refuse with a 422; a deployment may override it"
        ),
    )
    batch_max_size: int = Field(default=32, ge=1, description="micro-batch rows per model call")
    batch_max_wait_ms: float = Field(
        default=0.0, ge=0.0, description="extra wait for a fuller micro-batch (0: adaptive only)"
    )
    prediction_threads: int = Field(default=4, ge=1)
    inline_predict_max_ms: float = Field(
        default=1.0,
        ge=0.0,
        description=(
            "a model whose full micro-batch predicts within this many ms is called on the "
            "event loop, where a thread handoff would cost more (0: always in the threads)"
        ),
    )
    breaker_failures: int = Field(default=5, ge=1, description="consecutive failures to open")
    breaker_reset_s: float = Field(default=10.0, gt=0)
    idempotency_ttl_s: float = Field(default=600.0, gt=0)
    idempotency_store: Literal["memory", "redis"] = Field(
        default="memory", description="redis: shared by every replica"
    )
    idempotency_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description=(
            "memory store: bytes of stored answers (oldest evicted first; an answer larger "
            "than this is not stored); a Redis store's memory is Redis's"
        ),
    )
    idempotency_from_body_id: bool = Field(
        default=False,
        description=(
            "also treat a V2 / native body 'id' as an idempotency key (a byte-identical "
            "retry replays); by default only the Idempotency-Key header is one"
        ),
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    watch_interval_s: float = Field(default=1.0, gt=0)
    bandit_sync_s: float = Field(default=1.0, gt=0)
    log_flush_rows: int = Field(default=5000, ge=1)
    log_flush_interval_s: float = Field(default=1.0, gt=0)
    log_max_queue: int = Field(default=200_000, ge=1)
    log_features: bool = Field(default=True, description="log feature values with predictions")
    feedback_lookback_days: float = Field(
        default=30.0,
        gt=0,
        description="how far back feedback request ids are looked for in the prediction log",
    )
    feedback_max_age_days: float = Field(
        default=90.0,
        gt=0,
        le=36_500,
        description=(
            "feedback whose time or event_time is older than this (or more than 5 minutes "
            "ahead of the server's clock) is refused with a 422"
        ),
    )
    feedback_max_items: int = Field(default=1000, ge=1, description="items in one feedback request")
    feedback_requires_token: bool = Field(
        default=False,
        description="feedback needs a bearer token of role labeler, operator or admin",
    )
    predict_requires_token: bool = False
    tokens: tuple[ServingToken, ...] = ()
    shutdown_timeout_s: float = Field(default=30.0, gt=0)


class DriftMethodConfig(_Section):
    """The drift statistic of one column (or a column type) and its threshold."""

    statistic: DriftStatistic
    threshold: float | None = Field(default=None, gt=0, description="default: the statistic's")


class QualityThresholds(_Section):
    """Data-quality thresholds of one feature; an unset one is ``[monitoring.quality]``'s."""

    missing_rate_increase: float | None = Field(default=None, ge=0, le=1)
    missing_rate_ratio: float | None = Field(default=None, ge=1)
    out_of_range_rate: float | None = Field(default=None, ge=0, le=1)
    unseen_category_rate: float | None = Field(default=None, ge=0, le=1)
    non_finite_rate: float | None = Field(default=None, ge=0, le=1)


class QualityConfig(_Section):
    """``[monitoring.quality]``: when a window's data-quality share of a feature is
    flagged (status ``breach``; the result carries the threshold). A missing rate is
    flagged above the reference's rate plus ``missing_rate_increase`` and, for a feature
    often missing already, above the rate times ``missing_rate_ratio`` — or once half the
    values present in the reference are gone. The other shares are flagged above their
    value. ``columns`` overrides them per feature."""

    missing_rate_increase: float = Field(
        default=0.10, ge=0, le=1, description="absolute increase over the reference's rate"
    )
    missing_rate_ratio: float = Field(
        default=1.5, ge=1, description="and relative: the reference's rate times this"
    )
    out_of_range_rate: float = Field(
        default=0.05, ge=0, le=1, description="share of numbers outside the reference range"
    )
    unseen_category_rate: float = Field(
        default=0.05, ge=0, le=1, description="share of categories the reference never saw"
    )
    non_finite_rate: float = Field(default=0.0, ge=0, le=1, description="share of ±inf (0: any)")
    columns: dict[str, QualityThresholds] = Field(default_factory=dict)


class MonitoringConfig(_Section):
    """``[monitoring]``: windows over the prediction log and the checks run on each.

    ``window`` is a tumbling window length: ``<n>h``, ``<n>d``, ``<n>w`` (aligned to
    UTC hours, midnights, Mondays) or ``<n>mo`` (calendar months); ``step`` makes it
    sliding (a window of ``window`` every ``step``). ``<n>rows`` counts live predictions
    instead (``step`` then in rows too). A window is computed once, when it
    has closed and ``grace`` has passed (so late log flushes are in); its delayed-label
    performance is recomputed while labels can still arrive, ``label_horizon`` after it.
    """

    window: str = Field(default="1d", pattern=SPAN_PATTERN)
    step: str | None = Field(default=None, pattern=SPAN_PATTERN)
    grace: str = Field(default="5m", pattern=r"^[0-9]+(s|m|h|d|w)$")
    reference: str = Field(
        default="training",
        pattern=r"^(training|\d{4}-\d{2}-\d{2}(T[0-9:]+Z?)?/\d{4}-\d{2}-\d{2}(T[0-9:]+Z?)?)$",
        description='"training" or a past window of the log, "START/END" (ISO dates, UTC)',
    )
    min_rows: int = Field(default=100, ge=1, description="fewer rows: reported, not scored")
    bins: int = Field(default=10, ge=2, le=1000, description="reference-quantile bins")
    numeric: DriftMethodConfig = DriftMethodConfig(statistic="wasserstein")
    categorical: DriftMethodConfig = DriftMethodConfig(statistic="jensen_shannon")
    columns: dict[str, DriftMethodConfig] = Field(
        default_factory=dict, description="per-feature statistic and threshold"
    )
    dataset_share: float = Field(default=0.5, gt=0, le=1)
    importance_weighted: bool = False
    label_horizon: str = Field(default="7d", pattern=r"^[0-9]+(s|m|h|d|w)$")
    segments: tuple[str, ...] = ()
    classification_threshold: float = Field(default=0.5, gt=0, lt=1)
    calibration: Literal["reference", "recent"] = Field(
        default="reference",
        description="estimated performance calibrated on the reference's test split, or on "
        "the labelled rows of the preceding window (falls back to the reference)",
    )
    label_rate_change: float = Field(
        default=0.05, gt=0, lt=1, description="label or predicted-positive share change that drifts"
    )
    watch_interval_s: float = Field(default=60.0, gt=0)
    quality: QualityConfig = QualityConfig()
    alerts: AlertsConfig = AlertsConfig()

    @field_validator("window", "step")
    @classmethod
    def _check_span(cls, value: str | None) -> str | None:
        if value is None:
            return value
        unit = value.lstrip("0123456789")  # the pattern has checked the shape
        if int(value[: -len(unit)]) > MAX_SPAN[unit]:
            raise ValueError(f"too long: expected at most {MAX_SPAN[unit]}{unit}")
        return value

    @field_validator("grace", "label_horizon")
    @classmethod
    def _check_duration(cls, value: str, info: ValidationInfo) -> str:
        parse_duration(value, field=str(info.field_name))  # too long for a date: refused
        return value

    @field_validator("reference")
    @classmethod
    def _check_reference(cls, value: str) -> str:
        if value == "training":
            return value
        try:
            start, end = (ensure_utc(datetime.fromisoformat(part)) for part in value.split("/"))
        except ValueError as exc:
            raise ValueError(f"expected START/END, two ISO dates: {exc}") from None
        if not start < end:
            raise ValueError("expected START/END with START before END")
        return value

    @model_validator(mode="after")
    def _check_step_kind(self) -> MonitoringConfig:
        if self.step is not None and self.window.endswith("rows") != self.step.endswith("rows"):
            raise ValueError(
                f"step {self.step!r}: a window of rows needs a step of rows, a time window "
                f"({self.window!r}) a time step"
            )
        return self


class Config(BaseSettings):
    """The whole configuration of one project."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    project: ProjectSection = ProjectSection()
    metadata: MetadataConfig = SqliteMetadataConfig()
    artifacts: ArtifactsConfig = LocalArtifactsConfig()
    logs: LogsConfig = LogsConfig()
    online_store: OnlineStoreConfig = SqliteOnlineConfig()
    offline_store: OfflineStoreConfig = OfflineStoreConfig()
    features: FeaturesConfig = FeaturesConfig()
    training: TrainingConfig = TrainingConfig()
    gate: GateConfig = GateConfig()
    registry: RegistryConfig = RegistryConfig()
    mlflow: MlflowConfig = MlflowConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    retraining: RetrainingConfig = RetrainingConfig()
    labels: LabelsConfig = LabelsConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, which arrives as init arguments.
        return (env_settings, init_settings)


def load_config(root: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``root/prodml.toml`` (missing file → defaults) with environment overrides."""
    path = Path(root) / CONFIG_FILE
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return load_config_text(text, environ=environ, source=str(path))


def load_config_text(
    text: str, *, environ: Mapping[str, str] | None = None, source: str = CONFIG_FILE
) -> Config:
    """Parse and validate configuration text; raise :class:`ConfigError` naming the key."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    env = dict(os.environ if environ is None else environ)
    _drop_sections_retyped_by_env(data, env)
    saved = _swap_environ(env) if environ is not None else None
    try:
        return Config(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, env)) from None
    finally:
        if saved is not None:
            _swap_environ(saved)


def _drop_sections_retyped_by_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """A section whose ``type`` the environment changes starts from the new type's defaults."""
    for key, value in env.items():
        if not key.upper().startswith(ENV_PREFIX) or not key.upper().endswith("__TYPE"):
            continue
        section = key[len(ENV_PREFIX) : -len("__TYPE")].lower()
        current = data.get(section)
        if isinstance(current, dict) and current.get("type", None) != value:
            data[section] = {}


def _swap_environ(new: Mapping[str, str]) -> dict[str, str]:
    old = {k: v for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)}
    for key in old:
        del os.environ[key]
    for key, value in new.items():
        if key.upper().startswith(ENV_PREFIX):
            os.environ[key] = value
    return old


def _describe(exc: ValidationError, source: str, env: Mapping[str, str]) -> str:
    details = describe_errors(exc, Config, environ=env, prefix="  ")
    return f"{source}: invalid configuration\n{details}"
