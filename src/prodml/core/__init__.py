"""Layer 0: errors, configuration, ids, clocks, fingerprints and column types — no I/O
beyond reading the config file and hashing files.

The names that need NumPy and Arrow (table fingerprints, column types) load on first
use, so reading the config and the errors stays cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prodml.core._alert_config import (
    AlertRuleConfig,
    AlertsConfig,
    AlertSinkConfig,
    format_duration,
    parse_duration,
)
from prodml.core._clock import Clock, SimulatedClock, SystemClock, ensure_utc
from prodml.core._config import (
    CONFIG_FILE,
    Config,
    DriftMethodConfig,
    FeaturesConfig,
    GateConfig,
    LocalArtifactsConfig,
    MemoryOnlineConfig,
    MetricChange,
    MlflowConfig,
    MonitoringConfig,
    OfflineStoreConfig,
    PostgresMetadataConfig,
    ProjectSection,
    QualityConfig,
    QualityThresholds,
    RedisOnlineConfig,
    RegistryConfig,
    S3ArtifactsConfig,
    ServingConfig,
    ServingToken,
    SqliteMetadataConfig,
    SqliteOnlineConfig,
    TrainingConfig,
    load_config,
    load_config_text,
)
from prodml.core._hashing import canonical_json, fingerprint_bytes, fingerprint_file
from prodml.core._ids import NAME_PATTERN, ModelRef, check_name, new_id, parse_ref
from prodml.core._json_data import json_mapping
from prodml.core._lazy import lazy_attributes
from prodml.core._monitor_metrics import MONITOR_METRICS, MonitorMetric
from prodml.core._plugins import Plugins
from prodml.core.errors import (
    ArtifactNotFoundError,
    AuthError,
    BadOutputError,
    CircuitOpenError,
    ConfigError,
    ConflictError,
    DatasetNotFoundError,
    DataValidationError,
    DefinitionError,
    DeploymentNotFoundError,
    FeatureNotFoundError,
    IntegrityError,
    MigrationError,
    ModelNotFoundError,
    ModelTimeoutError,
    NotFoundError,
    ProdMLError,
    ProjectNotFoundError,
    RunNotFoundError,
    SchemaError,
    ServingError,
    SourceError,
    StateError,
    StorageError,
    TimestampError,
    TrainingError,
)

if TYPE_CHECKING:
    from prodml.core._table_hash import fingerprint_table
    from prodml.core._types import DTYPES, arrow_type, dtype_name, is_compatible
else:
    __getattr__ = lazy_attributes(
        __name__,
        {
            "prodml.core._table_hash": ["fingerprint_table"],
            "prodml.core._types": ["DTYPES", "arrow_type", "dtype_name", "is_compatible"],
        },
    )

__all__ = [
    "CONFIG_FILE",
    "DTYPES",
    "MONITOR_METRICS",
    "NAME_PATTERN",
    "AlertRuleConfig",
    "AlertSinkConfig",
    "AlertsConfig",
    "ArtifactNotFoundError",
    "AuthError",
    "BadOutputError",
    "CircuitOpenError",
    "Clock",
    "Config",
    "ConfigError",
    "ConflictError",
    "DataValidationError",
    "DatasetNotFoundError",
    "DefinitionError",
    "DeploymentNotFoundError",
    "DriftMethodConfig",
    "FeatureNotFoundError",
    "FeaturesConfig",
    "GateConfig",
    "IntegrityError",
    "LocalArtifactsConfig",
    "MemoryOnlineConfig",
    "MetricChange",
    "MigrationError",
    "MlflowConfig",
    "ModelNotFoundError",
    "ModelRef",
    "ModelTimeoutError",
    "MonitorMetric",
    "MonitoringConfig",
    "NotFoundError",
    "OfflineStoreConfig",
    "Plugins",
    "PostgresMetadataConfig",
    "ProdMLError",
    "ProjectNotFoundError",
    "ProjectSection",
    "QualityConfig",
    "QualityThresholds",
    "RedisOnlineConfig",
    "RegistryConfig",
    "RunNotFoundError",
    "S3ArtifactsConfig",
    "SchemaError",
    "ServingConfig",
    "ServingError",
    "ServingToken",
    "SimulatedClock",
    "SourceError",
    "SqliteMetadataConfig",
    "SqliteOnlineConfig",
    "StateError",
    "StorageError",
    "SystemClock",
    "TimestampError",
    "TrainingConfig",
    "TrainingError",
    "arrow_type",
    "canonical_json",
    "check_name",
    "dtype_name",
    "ensure_utc",
    "fingerprint_bytes",
    "fingerprint_file",
    "fingerprint_table",
    "format_duration",
    "is_compatible",
    "json_mapping",
    "lazy_attributes",
    "load_config",
    "load_config_text",
    "new_id",
    "parse_duration",
    "parse_ref",
]
