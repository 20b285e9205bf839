"""The MLflow bridge (extra ``prodml[mlflow]``): :class:`MlflowMirror` mirrors runs,
versions, approvals and aliases to an MLflow server; :func:`import_mlflow_model` brings an
MLflow model into the registry as an ``mlflow_pyfunc`` version.

MLflow itself is imported only when one of them is used, so this package imports
without it.
"""

from __future__ import annotations

from prodml.registry.mlflow._import import import_mlflow_model
from prodml.registry.mlflow._mirror import MlflowMirror

__all__ = ["MlflowMirror", "import_mlflow_model"]
