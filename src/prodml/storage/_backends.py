"""Artifact backends as plugins: name → ``module:Class``, imported only when used.

>>> blob_store_class("memory").__name__
'MemoryBlobStore'
>>> blob_store_class("s4")
Traceback (most recent call last):
...
prodml.core.errors.ConfigError: artifacts backend 's4' is unknown: expected one of 'local', 'memory'
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

from prodml.core import ConfigError
from prodml.storage._artifacts import ArtifactStore
from prodml.storage._blobs import BlobStore

__all__ = ["ARTIFACT_BACKENDS", "ArtifactsBackendConfig", "blob_store_class", "open_artifact_store"]

ARTIFACT_BACKENDS: dict[str, str] = {
    "local": "prodml.storage._blob_local:LocalBlobStore",
    "memory": "prodml.storage._blob_memory:MemoryBlobStore",
}


class ArtifactsBackendConfig(Protocol):
    """What :func:`open_artifact_store` needs of a config section: its backend ``type``."""

    @property
    def type(self) -> str: ...


def blob_store_class(name: str) -> type[BlobStore]:
    """Import and return the :class:`BlobStore` class registered under ``name``."""
    try:
        target = ARTIFACT_BACKENDS[name]
    except KeyError:
        known = ", ".join(repr(k) for k in sorted(ARTIFACT_BACKENDS))
        raise ConfigError(
            f"artifacts backend {name!r} is unknown: expected one of {known}"
        ) from None
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"artifacts backend {name!r}: cannot import {target} ({exc}); "
            "is its optional dependency installed?"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, BlobStore)):
        raise ConfigError(f"artifacts backend {name!r}: {target} is not a BlobStore subclass")
    return cls


def open_artifact_store(config: ArtifactsBackendConfig, root: str | Path) -> ArtifactStore:
    """The :class:`ArtifactStore` described by an ``[artifacts]`` config section.

    Relative paths in the section are resolved against the project ``root``.
    """
    return ArtifactStore(blob_store_class(config.type).from_config(config, Path(root)))
