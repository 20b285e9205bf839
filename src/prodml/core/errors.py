"""The one exception hierarchy of prodml.

Every error raised on purpose by prodml derives from :class:`ProdMLError`; HTTP status
mapping lives in ``serving`` and exit codes in ``cli``, never here. A message names the
object, the field and what was expected.

The whole tree::

    ProdMLError
    ├── ConfigError                 prodml.toml or an environment override is invalid
    ├── ProjectNotFoundError        no prodml.toml at or above the given path
    ├── NotFoundError               a named object does not exist
    │   ├── FeatureNotFoundError    feature view / service / entity / feature
    │   ├── DatasetNotFoundError    training-set snapshot
    │   ├── ArtifactNotFoundError   blob in the artifact store
    │   ├── ModelNotFoundError      registered model, version or alias
    │   ├── DeploymentNotFoundError no deployment on that endpoint
    │   └── RunNotFoundError        training run
    ├── AuthError                   a missing, unknown or under-privileged token
    ├── ConflictError               an object with that name or id already exists,
    │                               or a concurrent change won
    ├── DefinitionError             a feature definition is malformed
    ├── SchemaError                 a table lacks a column or has the wrong type
    │   └── TimestampError          missing, null, or mixed naive/aware timestamps
    ├── StateError                  the object's state forbids the action (approving
    │                               twice, aliasing a rejected or unblessed version)
    ├── DataValidationError         data violates its expectations (carries a report)
    ├── IntegrityError              stored bytes do not match their recorded hash,
    │                               or the metadata DB fails its consistency check
    ├── StorageError                a backend (database, file system, Redis) failed
    │   └── MigrationError          the metadata schema could not be brought up to date
    ├── SourceError                 a feature source could not be read or computed
    ├── TrainingError               a user's training function or model failed
    └── ServingError                a model could not answer a request
        ├── ModelTimeoutError       an arm took longer than its timeout
        ├── CircuitOpenError        an arm's circuit breaker is open
        └── BadOutputError          a model returned output its signature does not allow
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactNotFoundError",
    "AuthError",
    "BadOutputError",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "DataValidationError",
    "DatasetNotFoundError",
    "DefinitionError",
    "DeploymentNotFoundError",
    "FeatureNotFoundError",
    "IntegrityError",
    "MigrationError",
    "ModelNotFoundError",
    "ModelTimeoutError",
    "NotFoundError",
    "ProdMLError",
    "ProjectNotFoundError",
    "RunNotFoundError",
    "SchemaError",
    "ServingError",
    "SourceError",
    "StateError",
    "StorageError",
    "TimestampError",
    "TrainingError",
]


class ProdMLError(Exception):
    """Root of every error prodml raises on purpose."""


class ConfigError(ProdMLError):
    """The project configuration is invalid."""


class ProjectNotFoundError(ProdMLError):
    """No prodml project at the given path."""


class NotFoundError(ProdMLError):
    """A named object does not exist."""


class FeatureNotFoundError(NotFoundError):
    """A feature view, service, entity or feature does not exist."""


class DatasetNotFoundError(NotFoundError):
    """A training-set snapshot does not exist."""


class ArtifactNotFoundError(NotFoundError):
    """A blob is not in the artifact store."""


class ModelNotFoundError(NotFoundError):
    """A registered model, model version or alias does not exist."""


class RunNotFoundError(NotFoundError):
    """A training run does not exist."""


class DeploymentNotFoundError(NotFoundError):
    """No deployment exists on the endpoint."""


class AuthError(ProdMLError):
    """A request's bearer token is missing, unknown, or its role may not do this."""


class ConflictError(ProdMLError):
    """An object already exists, or a concurrent change won."""


class DefinitionError(ProdMLError):
    """A feature definition is malformed."""


class SchemaError(ProdMLError):
    """A table lacks a declared column or holds the wrong type."""


class TimestampError(SchemaError):
    """A timestamp column is missing, null, or mixes naive and timezone-aware values."""


class StateError(ProdMLError):
    """The object's current state forbids the requested action."""


class DataValidationError(ProdMLError):
    """Data violates its expectations; ``report`` holds the violations."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class IntegrityError(ProdMLError):
    """Stored bytes are damaged: they do not match their recorded SHA-256, or the
    metadata DB fails its own consistency check (SQLite ``quick_check``)."""


class StorageError(ProdMLError):
    """A storage backend failed."""


class MigrationError(StorageError):
    """The metadata schema could not be migrated."""


class SourceError(ProdMLError):
    """A feature source could not be read or computed."""


class TrainingError(ProdMLError):
    """A user's training function, or the model it returned, failed."""


class ServingError(ProdMLError):
    """A model could not answer a request."""


class ModelTimeoutError(ServingError):
    """An arm took longer than its timeout."""


class CircuitOpenError(ServingError):
    """An arm's circuit breaker is open: it is not called until it may have recovered."""


class BadOutputError(ServingError):
    """A model returned output its signature does not allow (wrong shape, non-finite)."""
