"""Layer 3 — features: definitions, the registry of their versions, the offline store
with point-in-time training sets, the online store, materialization and online reads."""

from __future__ import annotations

from prodml.features._definitions import Entity, FeatureView, FeatureViewProjection, Field
from prodml.features._entity_file import read_entity_rows
from prodml.features._materialize import MaterializeResult
from prodml.features._offline import to_arrow
from prodml.features._on_demand import FeatureFunctionError, OnDemandFeature
from prodml.features._online_read import OnlineFeatures, ViewFreshness, columns_of
from prodml.features._registry import AppliedDefinition
from prodml.features._repo import FeatureRepo, import_user_file
from prodml.features._service import FeatureService
from prodml.features._sources import ParquetSource, PythonSource, SqlSource
from prodml.features._store import FeatureStore
from prodml.features._training_set import TrainingSet, ViewCoverage

__all__ = [
    "AppliedDefinition",
    "Entity",
    "FeatureFunctionError",
    "FeatureRepo",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "MaterializeResult",
    "OnDemandFeature",
    "OnlineFeatures",
    "ParquetSource",
    "PythonSource",
    "SqlSource",
    "TrainingSet",
    "ViewCoverage",
    "ViewFreshness",
    "columns_of",
    "import_user_file",
    "read_entity_rows",
    "to_arrow",
]
