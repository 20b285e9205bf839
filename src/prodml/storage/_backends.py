"""Artifact backends as plugins: name → ``module:Class``, imported only when used.

>>> blob_store_class("memory").__name__
'MemoryBlobStore'
>>> blob_store_class("s4")
Traceback (most recent call last):
...
prodml.core.errors.ConfigError: artifacts backend 's4' is unknown: expected one of 'local', 'memory', 's3'
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from prodml.core import Plugins
from prodml.storage._artifacts import ArtifactStore
from prodml.storage._blobs import BlobStore

__all__ = ["ARTIFACT_BACKENDS", "ArtifactsBackendConfig", "blob_store_class", "open_artifact_store"]

ARTIFACT_BACKENDS: Plugins[BlobStore] = Plugins(
    "artifacts backend",
    BlobStore,
    {
        "local": "prodml.storage._blob_local:LocalBlobStore",
        "memory": "prodml.storage._blob_memory:MemoryBlobStore",
        "s3": "prodml.storage._blob_s3:S3BlobStore",
    },
)


class ArtifactsBackendConfig(Protocol):
    """What :func:`open_artifact_store` needs of a config section: its backend ``type``."""

    @property
    def type(self) -> str: ...


def blob_store_class(name: str) -> type[BlobStore]:
    """Import and return the :class:`BlobStore` class registered under ``name``."""
    return ARTIFACT_BACKENDS.load(name)


def open_artifact_store(config: ArtifactsBackendConfig, root: str | Path) -> ArtifactStore:
    """The :class:`ArtifactStore` described by an ``[artifacts]`` config section.

    Relative paths in the section are resolved against the project ``root``.
    """
    return ArtifactStore(blob_store_class(config.type).from_config(config, Path(root)))
