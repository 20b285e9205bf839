"""The MLflow mirror: a :class:`~prodml.registry.RegistryListener` that copies runs, model
versions, approvals and aliases to an MLflow tracking server and model registry, so teams
keep their MLflow UI while prodml stays the system of record.

Mirroring is idempotent: a run is found again by its ``prodml.run_id`` tag and a version
by its ``prodml.version`` tag (MLflow numbers versions on its own). Every call goes through
an explicit ``MlflowClient``; the global ``mlflow.set_tracking_uri`` state is never touched.

>>> truncate("abcdef", 5)
'ab...'
>>> param_value({"depth": 3, "loss": "log"}), param_value(0.5), param_value("gini")
('{"depth": 3, "loss": "log"}', '0.5', 'gini')
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any

from prodml.core import ConfigError, MlflowConfig, ProdMLError, StorageError, ensure_utc
from prodml.registry._records import AliasEvent, ModelVersion, RunInfo
from prodml.storage import redact_url

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, Run, RunTag
    from mlflow.entities.model_registry import ModelVersion as MlflowVersion

__all__ = [
    "MlflowMirror",
    "describe_uri",
    "is_not_found",
    "make_client",
    "param_value",
    "require_mlflow",
    "scrub",
    "truncate",
]

log = logging.getLogger(__name__)

RUN_TAG = "prodml.run_id"
VERSION_TAG = "prodml.version"
MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value (characters)
MAX_TAG_VALUE = 8000  # MLflow's limit on a run tag value (characters)
_ELLIPSIS = "..."
_STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# MLflow's log_batch limits: 100 params, 100 tags, 1000 entities per request.
_BATCH_PARAMS, _BATCH_TAGS, _BATCH_METRICS = 100, 100, 800


def require_mlflow() -> ModuleType:
    """The ``mlflow`` module; :class:`ConfigError` saying how to install it when missing."""
    try:
        import mlflow
    except ImportError as exc:
        raise ConfigError(
            f"MLflow is not installed ({exc}): the MLflow mirror and import_mlflow_model "
            "need it; install it with pip install 'prodml[mlflow]'"
        ) from exc
    return mlflow


def make_client(tracking_uri: str | None, registry_uri: str | None) -> MlflowClient:
    """A client bound to explicit URIs (``None``: MLflow's own default resolution)."""
    client: MlflowClient = require_mlflow().MlflowClient(
        tracking_uri=tracking_uri, registry_uri=registry_uri
    )
    return client


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``...`` when cut."""
    if len(text) <= limit:
        return text
    return text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def param_value(value: Any) -> str:
    """A prodml param (any JSON value) as an MLflow param string within MLflow's limit."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return truncate(text, MAX_PARAM_VALUE)


def millis(value: datetime) -> int:
    """Milliseconds since the Unix epoch, as MLflow stores times."""
    return (ensure_utc(value) - _EPOCH) // timedelta(milliseconds=1)


def run_tags(run: RunInfo) -> dict[str, str]:
    """The run's own tags plus its lineage as ``prodml.*`` tags (``None`` values left out)."""
    code = run.code or {}
    lineage: dict[str, Any] = {
        RUN_TAG: run.id,
        "prodml.model": run.model_name,
        "prodml.service": run.service_name,
        "prodml.service_version": run.service_version,
        "prodml.datasets": ",".join(f"{role}:{fp}" for fp, role in run.datasets) or None,
        "prodml.code.commit": code.get("commit"),
        "prodml.code.dirty": code.get("dirty"),
        "prodml.parent_version": run.parent_version,
        "prodml.seed": run.seed,
        "prodml.error": run.error,
        "mlflow.source.git.commit": code.get("commit"),
    }
    tags = dict(run.tags)
    for key, value in lineage.items():
        if value is not None:
            tags[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return {key: truncate(value, MAX_TAG_VALUE) for key, value in tags.items()}


def training_sets(datasets_tag: str | None) -> list[str]:
    """The ``train`` fingerprints in a ``prodml.datasets`` tag (``role:fp,role:fp``)."""
    items = (item.partition(":") for item in (datasets_tag or "").split(",") if item)
    return [fp for role, _, fp in items if role == "train"]


def version_tags(version: ModelVersion, run: Run | None) -> dict[str, str]:
    """The ``prodml.*`` tags of a mirrored model version."""
    evaluation = version.evaluation or {}
    training = evaluation.get("training_set")
    if training is None and run is not None:
        training = ",".join(training_sets(run.data.tags.get("prodml.datasets"))) or None
    tags = {
        VERSION_TAG: str(version.version),
        "prodml.artifact_sha256": version.artifact_digest,
        "prodml.format": version.format,
        "prodml.gate": version.gate_status or "none",
        "prodml.status": version.status,
        "prodml.training_set": training or "none",
        "prodml.created_by": version.created_by,
    }
    if version.run_id is not None:
        tags[RUN_TAG] = version.run_id
    return {**tags, **status_tags(version)}


def status_tags(version: ModelVersion) -> dict[str, str]:
    """``prodml.status`` and, once decided, who decided, why and when."""
    tags = {"prodml.status": version.status}
    if version.status_actor is not None:
        tags["prodml.status_actor"] = version.status_actor
    if version.status_reason is not None:
        tags["prodml.status_reason"] = version.status_reason
    if version.status_time is not None:
        tags["prodml.status_time"] = ensure_utc(version.status_time).isoformat()
    return tags


def scrub(text: str, *uris: str | None) -> str:
    """``text`` with every password in ``uris`` hidden (MLflow repeats URIs in errors).

    >>> scrub("cannot reach http://u:pw@host/x", "http://u:pw@host/x")
    'cannot reach http://u:***@host/x'
    """
    for uri in uris:
        if uri:
            text = text.replace(uri, redact_url(uri))
    return text


def describe_uri(uri: str | None) -> str:
    """A tracking URI for messages: password hidden, ``None`` named as MLflow's default."""
    return "MLflow's default tracking URI" if uri is None else redact_url(uri)


def is_not_found(exc: BaseException) -> bool:
    """Whether an MLflow exception says the object does not exist."""
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


class MlflowMirror:
    """Mirrors committed registry changes to MLflow (see the module docstring).

    Failures raise :class:`StorageError` naming the object and the (redacted) tracking
    URI; the registry logs them and carries on, since the mirror never undoes a change.
    """

    def __init__(self, config: MlflowConfig) -> None:
        require_mlflow()
        self.config = config
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MlflowMirror({self.target}, experiment={self.config.experiment!r})"

    @property
    def target(self) -> str:
        """The tracking URI with any password hidden, for messages."""
        return describe_uri(self.config.tracking_uri)

    @property
    def client(self) -> MlflowClient:
        """The MLflow client, created on first use (opening a project stays cheap)."""
        with self._lock:
            if self._client is None:
                self._client = make_client(self.config.tracking_uri, self.config.registry_uri)
            return self._client

    # --- listener -----------------------------------------------------------------------
    def run_ended(self, run: RunInfo) -> None:
        """Create (or find again) the MLflow run and log params, metrics, tags and status."""
        with self._failing(f"mirror run {run.id}"):
            from mlflow.entities import Metric, Param, RunTag

            found = self.find_run(run.id)
            if found is None:
                found = self.client.create_run(
                    self._experiment(),
                    start_time=millis(run.start_time),
                    tags={RUN_TAG: run.id},
                    run_name=run.id,
                )
            logged_params, logged_metrics = found.data.params, found.data.metrics
            at = millis(run.end_time or run.start_time)
            params = [
                Param(key, param_value(value))
                for key, value in sorted(run.params.items())
                if key not in logged_params
            ]
            metrics = [
                Metric(key, value, at, 0)
                for key, value in sorted(run.metrics.items())
                if not math.isnan(value) and logged_metrics.get(key) != value
            ]
            tags = [RunTag(key, value) for key, value in sorted(run_tags(run).items())]
            mlflow_id = found.info.run_id
            self._log_batch(mlflow_id, metrics, params, tags)
            status = _STATUS.get(run.status)
            if status is not None:
                end = None if run.end_time is None else millis(run.end_time)
                self.client.set_terminated(mlflow_id, status=status, end_time=end)
            log.debug("mirrored run %s to MLflow run %s at %s", run.id, mlflow_id, self.target)

    def version_registered(self, version: ModelVersion) -> None:
        """Create (or update) the MLflow model version carrying ``prodml.*`` tags."""
        with self._failing(f"mirror model version {version.ref}"):
            self._mirror_version(version)

    def status_changed(self, version: ModelVersion) -> None:
        """Update the approval tags of the mirrored version (mirroring it first if needed)."""
        with self._failing(f"mirror the {version.status} status of {version.ref}"):
            mirrored = self.find_version(version.name, version.version)
            if mirrored is None:
                self._mirror_version(version)
                return
            current = status_tags(version)
            for key, value in current.items():
                self.client.set_model_version_tag(version.name, mirrored.version, key, value)
            for key in ("prodml.status_actor", "prodml.status_reason", "prodml.status_time"):
                if key in mirrored.tags and key not in current:
                    self.client.delete_model_version_tag(version.name, mirrored.version, key)

    def alias_changed(self, event: AliasEvent) -> None:
        """Point (or remove) the MLflow alias at the mirrored version."""
        target = f"alias {event.name}@{event.alias}"
        with self._failing(f"mirror {target} → {event.version}"):
            if event.version is None:
                try:
                    self.client.delete_registered_model_alias(event.name, event.alias)
                except Exception as exc:
                    if not is_not_found(exc):
                        raise
                return
            mirrored = self.find_version(event.name, event.version)
            if mirrored is None:
                raise StorageError(
                    f"MLflow mirror ({self.target}): {target} cannot move to version "
                    f"{event.name}:{event.version}: that version was never mirrored "
                    f"(expected a model version tagged {VERSION_TAG}={event.version})"
                )
            self.client.set_registered_model_alias(event.name, event.alias, mirrored.version)

    # --- lookups ------------------------------------------------------------------------
    def find_run(self, run_id: str) -> Run | None:
        """The MLflow run mirroring prodml run ``run_id`` in the experiment, if any."""
        runs = self.client.search_runs(
            [self._experiment()], filter_string=f"tags.`{RUN_TAG}` = '{run_id}'", max_results=1
        )
        return runs[0] if runs else None

    def find_version(self, name: str, version: int) -> MlflowVersion | None:
        """The MLflow model version mirroring ``name:version``, if any."""
        found = self.client.search_model_versions(
            filter_string=f"name = '{name}' and tags.`{VERSION_TAG}` = '{version}'"
        )
        return min(found, key=lambda mv: int(mv.version)) if found else None

    # --- helpers ------------------------------------------------------------------------
    def _mirror_version(self, version: ModelVersion) -> None:
        self._ensure_registered_model(version.name)
        run = None if version.run_id is None else self.find_run(version.run_id)
        tags = version_tags(version, run)
        mirrored = self.find_version(version.name, version.version)
        if mirrored is not None:
            for key, value in tags.items():
                self.client.set_model_version_tag(version.name, mirrored.version, key, value)
            return
        source = (
            run.info.artifact_uri
            if run is not None and run.info.artifact_uri
            else f"prodml://{version.name}/{version.version}"
        )
        created = self.client.create_model_version(
            version.name,
            source,
            run_id=None if run is None else run.info.run_id,
            tags=tags,
            description=version.description or None,
        )
        log.debug(
            "mirrored %s as MLflow version %s at %s", version.ref, created.version, self.target
        )

    def _ensure_registered_model(self, name: str) -> None:
        try:
            self.client.get_registered_model(name)
        except Exception as exc:
            if not is_not_found(exc):
                raise
            try:
                self.client.create_registered_model(name, tags={"prodml.model": name})
            except Exception as again:  # created concurrently by another process
                if getattr(again, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                    raise

    def _experiment(self) -> str:
        if self._experiment_id is not None:
            return self._experiment_id
        name = self.config.experiment
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                self._experiment_id = self.client.create_experiment(name)
            except Exception as exc:  # created concurrently by another process
                if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                raise StorageError(
                    f"MLflow mirror ({self.target}): experiment {name!r} is deleted: restore "
                    "it in MLflow or set [mlflow] experiment to another name"
                )
            self._experiment_id = str(experiment.experiment_id)
        if self._experiment_id is None:  # pragma: no cover - MLflow returned neither
            raise StorageError(f"MLflow mirror ({self.target}): experiment {name!r} not found")
        return self._experiment_id

    def _log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric],
        params: Sequence[Param],
        tags: Sequence[RunTag],
    ) -> None:
        batches = max(
            -(-len(params) // _BATCH_PARAMS),
            -(-len(tags) // _BATCH_TAGS),
            -(-len(metrics) // _BATCH_METRICS),
        )
        for i in range(batches):
            self.client.log_batch(
                run_id,
                metrics=metrics[i * _BATCH_METRICS : (i + 1) * _BATCH_METRICS],
                params=params[i * _BATCH_PARAMS : (i + 1) * _BATCH_PARAMS],
                tags=tags[i * _BATCH_TAGS : (i + 1) * _BATCH_TAGS],
            )

    @contextmanager
    def _failing(self, action: str) -> Iterator[None]:
        """Re-raise any MLflow or transport failure as a :class:`StorageError`."""
        try:
            yield
        except ProdMLError:
            raise
        except Exception as exc:
            detail = scrub(str(exc), self.config.tracking_uri, self.config.registry_uri)
            raise StorageError(
                f"MLflow mirror ({self.target}, experiment {self.config.experiment!r}) "
                f"could not {action}: {type(exc).__name__}: {detail}"
            ) from exc
