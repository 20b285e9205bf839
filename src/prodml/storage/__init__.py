"""Layer 1 storage: the metadata DB (with its controller leases), the content-addressed
artifact store, Parquet IO and the partitioned prediction/label logs.

Imports only :mod:`prodml.core` and third-party libraries. The Arrow-based pieces (table
IO, the logs) load on first use, so opening the metadata DB does not import Arrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prodml.core import lazy_attributes
from prodml.storage._artifacts import ArtifactStore, check_digest, digest_key
from prodml.storage._atomic import atomic_write
from prodml.storage._backends import ARTIFACT_BACKENDS, blob_store_class, open_artifact_store
from prodml.storage._blob_local import LocalBlobStore
from prodml.storage._blob_memory import MemoryBlobStore
from prodml.storage._blobs import BlobStore, check_key
from prodml.storage._columns import UTCDateTime
from prodml.storage._leases import Lease, LeaseInfo, default_holder
from prodml.storage._metadata import METADATA_BACKENDS, MetadataDB, open_metadata_db
from prodml.storage._models import (
    DEFINITION_KINDS,
    AlertEventRow,
    AlertStateRow,
    Base,
    DatasetRow,
    FeatureDefinitionRow,
    FeatureHeadRow,
    MaterializationRow,
    MonitorReferenceRow,
    MonitorResultRow,
    MonitorWindowRow,
    OpsEventRow,
    RetrainJobRow,
    RolloutDecisionRow,
    RolloutPlanRow,
)
from prodml.storage._urls import metadata_url, redact_url

if TYPE_CHECKING:
    from prodml.storage._log_block import LogBlock
    from prodml.storage._log_format import LABELS_DIR, PREDICTIONS_DIR, log_text
    from prodml.storage._log_memory import MemoryLogStore
    from prodml.storage._log_reader import (
        LogFiles,
        QuarantinedFile,
        log_files,
        quarantined_files,
        read_log,
    )
    from prodml.storage._log_s3 import S3LogStore
    from prodml.storage._log_store import (
        LOG_STORES,
        LocalLogStore,
        LogStore,
        LogStores,
        open_log_stores,
    )
    from prodml.storage._logs import LogSink, LogStats, LogWriter
    from prodml.storage._migrate import head_revision
    from prodml.storage._prediction_record import (
        ENTITY_PREFIX,
        FEATURE_AGE_PREFIX,
        FEATURE_PREFIX,
        FEATURE_STALE_PREFIX,
        LABEL_FIELDS,
        LABEL_SCHEMA,
        PREDICTION_FIELDS,
        PREDICTION_SCHEMA,
        LabelRecord,
        LogField,
        PredictionRecord,
        entity_column,
        entity_keys_in,
        feature_age_column,
        feature_ages_in,
        feature_column,
        feature_stale_column,
        feature_stale_in,
        features_in,
    )
    from prodml.storage._tables import read_table, write_table
else:
    __getattr__ = lazy_attributes(
        __name__,
        {
            "prodml.storage._log_format": ["LABELS_DIR", "PREDICTIONS_DIR", "log_text"],
            "prodml.storage._log_reader": [
                "LogFiles",
                "QuarantinedFile",
                "log_files",
                "quarantined_files",
                "read_log",
            ],
            "prodml.storage._log_memory": ["MemoryLogStore"],
            "prodml.storage._log_s3": ["S3LogStore"],
            "prodml.storage._log_store": [
                "LOG_STORES",
                "LocalLogStore",
                "LogStore",
                "LogStores",
                "open_log_stores",
            ],
            "prodml.storage._log_block": ["LogBlock"],
            "prodml.storage._logs": ["LogSink", "LogStats", "LogWriter"],
            "prodml.storage._migrate": ["head_revision"],
            "prodml.storage._prediction_record": [
                "ENTITY_PREFIX",
                "FEATURE_AGE_PREFIX",
                "FEATURE_PREFIX",
                "FEATURE_STALE_PREFIX",
                "LABEL_FIELDS",
                "LABEL_SCHEMA",
                "PREDICTION_FIELDS",
                "PREDICTION_SCHEMA",
                "LabelRecord",
                "LogField",
                "PredictionRecord",
                "entity_column",
                "entity_keys_in",
                "feature_age_column",
                "feature_ages_in",
                "feature_column",
                "feature_stale_column",
                "feature_stale_in",
                "features_in",
            ],
            "prodml.storage._tables": ["read_table", "write_table"],
        },
    )

__all__ = [
    "ARTIFACT_BACKENDS",
    "DEFINITION_KINDS",
    "ENTITY_PREFIX",
    "FEATURE_AGE_PREFIX",
    "FEATURE_PREFIX",
    "FEATURE_STALE_PREFIX",
    "LABELS_DIR",
    "LABEL_FIELDS",
    "LABEL_SCHEMA",
    "LOG_STORES",
    "METADATA_BACKENDS",
    "PREDICTIONS_DIR",
    "PREDICTION_FIELDS",
    "PREDICTION_SCHEMA",
    "AlertEventRow",
    "AlertStateRow",
    "ArtifactStore",
    "Base",
    "BlobStore",
    "DatasetRow",
    "FeatureDefinitionRow",
    "FeatureHeadRow",
    "LabelRecord",
    "Lease",
    "LeaseInfo",
    "LocalBlobStore",
    "LocalLogStore",
    "LogBlock",
    "LogField",
    "LogFiles",
    "LogSink",
    "LogStats",
    "LogStore",
    "LogStores",
    "LogWriter",
    "MaterializationRow",
    "MemoryBlobStore",
    "MemoryLogStore",
    "MetadataDB",
    "MonitorReferenceRow",
    "MonitorResultRow",
    "MonitorWindowRow",
    "OpsEventRow",
    "PredictionRecord",
    "QuarantinedFile",
    "RetrainJobRow",
    "RolloutDecisionRow",
    "RolloutPlanRow",
    "S3LogStore",
    "UTCDateTime",
    "atomic_write",
    "blob_store_class",
    "check_digest",
    "check_key",
    "default_holder",
    "digest_key",
    "entity_column",
    "entity_keys_in",
    "feature_age_column",
    "feature_ages_in",
    "feature_column",
    "feature_stale_column",
    "feature_stale_in",
    "features_in",
    "head_revision",
    "log_files",
    "log_text",
    "metadata_url",
    "open_artifact_store",
    "open_log_stores",
    "open_metadata_db",
    "quarantined_files",
    "read_log",
    "read_table",
    "redact_url",
    "write_table",
]
