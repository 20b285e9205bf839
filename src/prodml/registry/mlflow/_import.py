"""Import a model from MLflow into the prodml registry as an ``mlflow_pyfunc`` version.

The model directory is downloaded through an explicit ``MlflowClient`` (MLflow's own
``models:/`` and ``runs:/`` resolution reads the *global* registry URI, so prodml resolves
those URIs itself and downloads only the concrete artifact location). Its MLflow
signature becomes the prodml :class:`~prodml.registry.Signature`, and the directory is
archived deterministically by the ``mlflow_pyfunc`` format and stored content-addressed.

>>> parse_models_uri("models:/churn@champion")
ModelsUri(name='churn', version=None, alias='champion', model_id=None, path='')
>>> parse_models_uri("models:/churn/3/sub/dir")
ModelsUri(name='churn', version='3', alias=None, model_id=None, path='sub/dir')
>>> parse_models_uri("models:/m-0123abc").model_id
'm-0123abc'
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa

from prodml.core import (
    DTYPES,
    DefinitionError,
    ModelNotFoundError,
    ProdMLError,
    SchemaError,
    SourceError,
    check_name,
    dtype_name,
)
from prodml.registry._records import ModelVersion
from prodml.registry._signature import ColumnSpec, Signature
from prodml.registry.mlflow._mirror import (
    describe_uri,
    is_not_found,
    make_client,
    require_mlflow,
    scrub,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from prodml.registry._registry import ModelRegistry

__all__ = ["ModelsUri", "import_mlflow_model", "parse_models_uri", "to_signature"]

#: MLflow column types → prodml dtypes.
MLFLOW_TYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "string": "string",
    "boolean": "bool",
    "datetime": "timestamp",
    "binary": "binary",
}
_MAX_HOPS = 3
# MLflow writes this into a local model directory whenever the model is loaded through a
# models:/ URI; it says how the model was last reached, not what it is, so it is dropped.
_REGISTERED_META = "registered_model_meta"


@dataclass(frozen=True)
class ModelsUri:
    """The parts of a ``models:/`` URI: a registered version (by number, ``latest`` or
    alias) or a logged model id, and a path inside the model."""

    name: str | None
    version: str | None
    alias: str | None
    model_id: str | None
    path: str


def parse_models_uri(uri: str) -> ModelsUri:
    """Split ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or ``models:/MODEL_ID``."""
    parsed = urlparse(uri)
    parts = [part for part in parsed.path.split("/") if part]
    if parsed.scheme != "models" or parsed.netloc or not parts:
        raise SourceError(
            f"MLflow model URI {uri!r} is invalid: expected models:/NAME/VERSION, "
            "models:/NAME@ALIAS, models:/NAME/latest or models:/MODEL_ID"
        )
    first, rest = parts[0], parts[1:]
    if "@" in first:
        name, _, alias = first.partition("@")
        return ModelsUri(name, None, alias, None, "/".join(rest))
    if not rest:
        return ModelsUri(None, None, None, first, "")
    selector = rest[0]
    if not ((selector.isascii() and selector.isdigit()) or selector.lower() == "latest"):
        raise SourceError(
            f"MLflow model URI {uri!r}: version {selector!r} is not supported: expected a "
            "version number, 'latest' or an alias (models:/NAME@ALIAS); MLflow stages are "
            "deprecated"
        )
    return ModelsUri(first, selector.lower(), None, None, "/".join(rest[1:]))


@dataclass(frozen=True)
class _Located:
    """Where a model's files are, and what MLflow knows about it."""

    location: str
    name: str | None
    run_id: str | None
    description: str


def _join(base: str, path: str) -> str:
    return base if not path else f"{base.rstrip('/')}/{path}"


def _locate(client: MlflowClient, uri: str, hops: int = 0) -> _Located:
    """Resolve ``models:/`` and ``runs:/`` URIs to a concrete artifact location."""
    scheme = urlparse(uri).scheme
    if scheme not in {"models", "runs"}:
        return _Located(uri, None, None, "")
    if hops >= _MAX_HOPS:
        raise SourceError(f"MLflow model URI {uri!r} resolves to itself: expected a location")
    if scheme == "runs":
        run_id, _, path = urlparse(uri).path.strip("/").partition("/")
        run = client.get_run(run_id)
        return _Located(_run_location(client, run_id, run, path), None, run_id, "")
    ref = parse_models_uri(uri)
    if ref.model_id is not None:
        logged = client.get_logged_model(ref.model_id)
        return _Located(_join(logged.artifact_location, ref.path), None, logged.source_run_id, "")
    name = str(ref.name)
    if ref.alias is not None:
        try:
            version = client.get_model_version_by_alias(name, ref.alias)
        except Exception as exc:  # MLflow reports a missing alias as an invalid parameter
            if is_not_found(exc) or "not found" in str(exc).lower():
                raise ModelNotFoundError(
                    f"MLflow model {name!r} has no alias {ref.alias!r} (URI {uri!r}): {exc}"
                ) from exc
            raise
    elif ref.version == "latest":
        found = client.search_model_versions(filter_string=f"name = '{name}'")
        if not found:
            raise ModelNotFoundError(f"MLflow model {name!r} has no versions (URI {uri!r})")
        version = max(found, key=lambda mv: int(mv.version))
    else:
        version = client.get_model_version(name, str(ref.version))
    location = client.get_model_version_download_uri(name, version.version)
    if urlparse(location).scheme in {"models", "runs"}:
        location = _locate(client, location, hops + 1).location
    return _Located(_join(location, ref.path), name, version.run_id, version.description or "")


def _run_location(client: MlflowClient, run_id: str, run: Any, path: str) -> str:
    """A path in a run: a model logged by the run under that name (MLflow 3 keeps logged
    models outside the run's artifacts), else the run's own artifacts."""
    first, _, rest = path.partition("/")
    if first:
        token: str | None = None
        while True:
            page = client.search_logged_models(
                experiment_ids=[run.info.experiment_id],
                filter_string=f"name = '{first}'",
                page_token=token,
            )
            for logged in page:
                if logged.source_run_id == run_id:
                    return _join(logged.artifact_location, rest)
            token = page.token
            if not token:
                break
    return _join(run.info.artifact_uri, path)


def _column_dtype(spec: Any, *, model: str, where: str) -> str:
    from mlflow.types.schema import DataType

    if isinstance(spec.type, DataType) and spec.type.name in MLFLOW_TYPES:
        return MLFLOW_TYPES[spec.type.name]
    raise SchemaError(
        f"{model}: {where} column {spec.name!r} has MLflow type {spec.type}: expected one of "
        f"{', '.join(sorted(MLFLOW_TYPES))}"
    )


def _numpy_dtype(dtype: np.dtype[Any], *, model: str) -> str:
    kinds = {"O": "string", "U": "string", "S": "binary", "M": "timestamp", "b": "bool"}
    name = kinds.get(dtype.kind)
    if name is None:
        try:
            name = dtype_name(pa.from_numpy_dtype(dtype))
        except (pa.ArrowException, TypeError):
            name = str(dtype)
    if name not in DTYPES:
        raise SchemaError(
            f"{model}: output tensor has dtype {dtype}: expected one of {', '.join(sorted(DTYPES))}"
        )
    return name


def _output(outputs: Any, *, model: str) -> tuple[str, tuple[int, ...]]:
    if outputs is None:
        return "float64", ()
    specs = list(outputs.inputs)
    if outputs.is_tensor_spec():
        if len(specs) != 1:
            raise SchemaError(f"{model}: {len(specs)} output tensors: expected one")
        dims = tuple(int(d) for d in specs[0].shape[1:])
        if any(d < 0 for d in dims):
            raise SchemaError(f"{model}: output shape {specs[0].shape}: expected fixed sizes")
        return _numpy_dtype(specs[0].type, model=model), () if dims == (1,) else dims
    dtypes = {_column_dtype(spec, model=model, where="output") for spec in specs}
    if len(dtypes) != 1:
        raise SchemaError(
            f"{model}: output columns have types {sorted(dtypes)}: expected one common type"
        )
    return dtypes.pop(), () if len(specs) == 1 else (len(specs),)


def to_signature(mlflow_signature: Any, *, model: str) -> Signature:
    """A prodml signature from an MLflow ``ModelSignature`` with named column inputs."""
    inputs = None if mlflow_signature is None else mlflow_signature.inputs
    if inputs is None:
        raise SchemaError(
            f"{model} has no signature: the MLflow model must be logged with a signature "
            "(signature=mlflow.models.infer_signature(X, model.predict(X)))"
        )
    if inputs.is_tensor_spec() or not inputs.has_input_names():
        raise SchemaError(
            f"{model}: its MLflow signature has unnamed or tensor inputs: expected named "
            "columns (infer_signature on a pandas DataFrame)"
        )
    columns = tuple(
        ColumnSpec(str(spec.name), _column_dtype(spec, model=model, where="input"))
        for spec in inputs.inputs
    )
    dtype, shape = _output(mlflow_signature.outputs, model=model)
    return Signature(inputs=columns, output_dtype=dtype, output_shape=shape)


@contextmanager
def _reading(uri: str, where: str, *secrets: str | None) -> Iterator[None]:
    """MLflow failures as prodml errors naming the URI and the (redacted) server."""
    try:
        yield
    except ProdMLError:
        raise
    except Exception as exc:
        detail = scrub(str(exc), *secrets)
        if is_not_found(exc):
            raise ModelNotFoundError(
                f"MLflow model {uri!r} was not found at {where}: {detail}"
            ) from exc
        raise SourceError(
            f"MLflow model {uri!r} could not be read from {where}: {type(exc).__name__}: {detail}"
        ) from exc


def import_mlflow_model(
    registry: ModelRegistry,
    uri: str,
    *,
    name: str | None = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    actor: str | None = None,
    description: str = "",
) -> ModelVersion:
    """Register the MLflow model at ``uri`` (``models:/NAME/VERSION``, ``models:/NAME@alias``,
    ``runs:/RUN_ID/PATH`` or an artifact location) as a new pending prodml version.

    The version is named ``name`` or the registered MLflow model's name; its metrics are
    those of the MLflow run that produced the model, and its source is ``uri``.
    """
    require_mlflow()
    import mlflow.artifacts
    import mlflow.models

    where = describe_uri(tracking_uri)
    with _reading(uri, where, tracking_uri, registry_uri):
        client = make_client(tracking_uri, registry_uri)  # refuses some URIs at once
        located = _locate(client, uri)
        metrics: dict[str, float] = {}
        if located.run_id:
            run_metrics = client.get_run(located.run_id).data.metrics
            metrics = {k: float(v) for k, v in run_metrics.items() if not math.isnan(v)}
    model_name = name or located.name
    if model_name is None:
        raise DefinitionError(
            f"MLflow model {uri!r} is not a registered model version: pass name= to choose "
            "the prodml model name"
        )
    if name is None:
        try:
            check_name(model_name, kind="model")
        except DefinitionError as exc:
            raise DefinitionError(
                f"{exc}; pass name= to import {uri!r} under another name"
            ) from exc
    with tempfile.TemporaryDirectory(prefix="prodml-mlflow-import-") as tmp:
        with _reading(uri, where, tracking_uri, registry_uri):
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=located.location,
                dst_path=str(Path(tmp) / "download"),
                tracking_uri=tracking_uri,
                registry_uri=registry_uri,
            )
        path = Path(local)
        if path.is_dir():
            (path / _REGISTERED_META).unlink(missing_ok=True)
        if not (path / "MLmodel").is_file():
            raise SourceError(
                f"MLflow model {uri!r}: {located.location} holds no MLmodel file: expected an "
                "MLflow model directory"
            )
        with _reading(uri, where, tracking_uri, registry_uri):
            mlflow_signature = mlflow.models.Model.load(str(path)).signature
        signature = to_signature(mlflow_signature, model=f"MLflow model {uri!r}")
        return registry.register(
            model_name,
            path,
            format="mlflow_pyfunc",
            signature=signature,
            source=uri,
            metrics=metrics,
            description=description or located.description,
            actor=actor,
        )
