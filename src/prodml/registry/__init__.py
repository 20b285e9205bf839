"""Layer 3, registry: tracked runs, immutable model versions, approvals, aliases,
lineage, deployments and the audit log, stored in the metadata DB; model artifacts are
content-addressed in the artifact store and verified before every load.

Imports only :mod:`prodml.core`, :mod:`prodml.storage`, :mod:`prodml.stats` and
:mod:`prodml.validation`. Deployments (SciPy, for bandit states), signatures and model
formats (NumPy, pandas) load on first use, so reading versions and aliases needs none of
them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prodml.core import lazy_attributes
from prodml.registry._environment import (
    capture_code,
    capture_environment,
    diff_code,
    diff_environments,
)
from prodml.registry._records import AliasEvent, AuditEntry, ModelVersion, RunInfo
from prodml.registry._registry import LoadedModel, ModelRegistry, RegistryListener, default_actor
from prodml.registry._runs import Run

if TYPE_CHECKING:
    from prodml.registry._deployment_spec import (
        POLICIES,
        ROLES,
        Arm,
        BanditSpec,
        Deployment,
        DeploymentSpec,
        Guardrails,
    )
    from prodml.registry._deployments import DeploymentStore
    from prodml.registry._signature import ColumnSpec, Signature, infer_signature
    from prodml.registry.formats import (
        MODEL_FORMATS,
        ModelFormat,
        detect_format,
        get_format,
        register_format,
    )
else:
    __getattr__ = lazy_attributes(
        __name__,
        {
            "prodml.registry._deployment_spec": [
                "POLICIES",
                "ROLES",
                "Arm",
                "BanditSpec",
                "Deployment",
                "DeploymentSpec",
                "Guardrails",
            ],
            "prodml.registry._deployments": ["DeploymentStore"],
            "prodml.registry._signature": ["ColumnSpec", "Signature", "infer_signature"],
            "prodml.registry.formats": [
                "MODEL_FORMATS",
                "ModelFormat",
                "detect_format",
                "get_format",
                "register_format",
            ],
        },
    )

__all__ = [
    "MODEL_FORMATS",
    "POLICIES",
    "ROLES",
    "AliasEvent",
    "Arm",
    "AuditEntry",
    "BanditSpec",
    "ColumnSpec",
    "Deployment",
    "DeploymentSpec",
    "DeploymentStore",
    "Guardrails",
    "LoadedModel",
    "ModelFormat",
    "ModelRegistry",
    "ModelVersion",
    "RegistryListener",
    "Run",
    "RunInfo",
    "Signature",
    "capture_code",
    "capture_environment",
    "default_actor",
    "detect_format",
    "diff_code",
    "diff_environments",
    "get_format",
    "infer_signature",
    "register_format",
]
