"""Layer 1 storage: the metadata DB, the content-addressed artifact store, Parquet IO and
the partitioned prediction/label logs.

Imports only :mod:`prodml.core` and third-party libraries. The Arrow-based pieces (table
IO, the logs) load on first use, so opening the metadata DB does not import Arrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prodml.core import lazy_attributes
from prodml.storage._artifacts import ArtifactStore, check_digest, digest_key
from prodml.storage._backends import ARTIFACT_BACKENDS, blob_store_class, open_artifact_store
from prodml.storage._blob_local import LocalBlobStore
from prodml.storage._blob_memory import MemoryBlobStore
from prodml.storage._blobs import BlobStore, check_key
from prodml.storage._columns import UTCDateTime
from prodml.storage._metadata import MetadataDB, open_metadata_db
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
)
from prodml.storage._urls import metadata_url, redact_url

if TYPE_CHECKING:
    from prodml.storage._log_format import LABELS_DIR, PREDICTIONS_DIR
    from prodml.storage._log_reader import QuarantinedFile, quarantined_files, read_log
    from prodml.storage._logs import LogBlock, LogStats, LogWriter
    from prodml.storage._migrate import head_revision
    from prodml.storage._tables import read_table, write_table
else:
    __getattr__ = lazy_attributes(
        __name__,
        {
            "prodml.storage._log_format": ["LABELS_DIR", "PREDICTIONS_DIR"],
            "prodml.storage._log_reader": ["QuarantinedFile", "quarantined_files", "read_log"],
            "prodml.storage._logs": ["LogBlock", "LogStats", "LogWriter"],
            "prodml.storage._migrate": ["head_revision"],
            "prodml.storage._tables": ["read_table", "write_table"],
        },
    )

__all__ = [
    "ARTIFACT_BACKENDS",
    "DEFINITION_KINDS",
    "LABELS_DIR",
    "PREDICTIONS_DIR",
    "AlertEventRow",
    "AlertStateRow",
    "ArtifactStore",
    "Base",
    "BlobStore",
    "DatasetRow",
    "FeatureDefinitionRow",
    "FeatureHeadRow",
    "LocalBlobStore",
    "LogBlock",
    "LogStats",
    "LogWriter",
    "MaterializationRow",
    "MemoryBlobStore",
    "MetadataDB",
    "MonitorReferenceRow",
    "MonitorResultRow",
    "MonitorWindowRow",
    "QuarantinedFile",
    "UTCDateTime",
    "blob_store_class",
    "check_digest",
    "check_key",
    "digest_key",
    "head_revision",
    "metadata_url",
    "open_artifact_store",
    "open_metadata_db",
    "quarantined_files",
    "read_log",
    "read_table",
    "redact_url",
    "write_table",
]
