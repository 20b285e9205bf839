"""``project.registry``: prodml's system of record for runs and model versions.

Runs are tracked (:meth:`ModelRegistry.start_run`); versions are registered once and
never changed (:meth:`register`); approvals and aliases move under a per-model lock
with an audit entry each; a version loads only after its artifact's SHA-256 matches.
Listeners (the MLflow mirror) hear about every change after it is committed.

Model formats and signatures (NumPy, pandas, skops) are imported by the two methods
that serialise or load a model, :meth:`ModelRegistry.register` and
:meth:`ModelRegistry.load`: reading versions, aliases and runs needs neither.
"""

from __future__ import annotations

import builtins
import getpass
import logging
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from prodml.core import (
    Clock,
    DefinitionError,
    ModelRef,
    RegistryConfig,
    check_name,
    new_id,
)
from prodml.registry._approvals import change_status, move_alias
from prodml.registry._environment import capture_code, capture_environment
from prodml.registry._lineage import (
    version_lineage,
    versions_using_dataset,
    versions_using_view,
)
from prodml.registry._records import AliasEvent, AuditEntry, ModelVersion, RunInfo
from prodml.registry._runs import (
    Run,
    RunServices,
    insert_run,
    load_run,
    metric_rows,
    require_run,
    run_info,
    run_infos,
)
from prodml.registry._search import search_query
from prodml.registry._versions import (
    add_audit,
    allocate_version,
    audit_entry,
    lock_model,
    resolve_ref,
    version_record,
)
from prodml.storage import ArtifactStore, MetadataDB
from prodml.storage._models import (
    AliasHistoryRow,
    AuditRow,
    Base,
    ModelAliasRow,
    ModelVersionRow,
    RegisteredModelRow,
    RunRow,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from prodml.registry._signature import Signature
    from prodml.registry.formats import ModelFormat

__all__ = ["LoadedModel", "ModelRegistry", "RegistryListener", "default_actor"]

log = logging.getLogger(__name__)


def default_actor() -> str:
    """Who is acting: ``PRODML_ACTOR`` if set, else the OS user."""
    return os.environ.get("PRODML_ACTOR") or getpass.getuser()


class RegistryListener(Protocol):
    """Hears about committed changes (e.g. to mirror them to MLflow)."""

    def run_ended(self, run: RunInfo) -> None: ...
    def version_registered(self, version: ModelVersion) -> None: ...
    def alias_changed(self, event: AliasEvent) -> None: ...
    def status_changed(self, version: ModelVersion) -> None: ...


@dataclass(frozen=True)
class LoadedModel:
    """A verified, loaded model version; ``predict`` checks inputs against its signature."""

    version: ModelVersion
    model: Any
    format: ModelFormat
    signature: Signature

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        scores: np.ndarray = self.format.predict(
            self.model, self.signature.check(X, model=self.version.ref)
        )
        return scores


class ModelRegistry:
    """Runs, versions, approvals, aliases, lineage and the audit log."""

    def __init__(
        self,
        db: MetadataDB,
        artifacts: ArtifactStore,
        clock: Clock,
        config: RegistryConfig | None = None,
        listeners: Sequence[RegistryListener] = (),
    ) -> None:
        self._db = db
        self._artifacts = artifacts
        self._clock = clock
        self.config = config or RegistryConfig()
        self.listeners: builtins.list[RegistryListener] = list(listeners)
        self._run_services = RunServices(db, artifacts, clock.now, self._notify_run)

    # --- runs -----------------------------------------------------------------------
    def start_run(
        self,
        model_name: str,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        seed: int | None = None,
        service: tuple[str, str] | None = None,
        parent: str | None = None,
        code_dir: str | Path | None = None,
        environment: bool = True,
    ) -> Run:
        """Open a run (written at once as ``running``); use it as a context manager.

        ``service`` is (feature service name, version); ``code_dir`` is the directory
        whose git state is recorded; ``parent`` is the warm-start version ref.
        """
        check_name(model_name, kind="model")
        row = RunRow(
            id=new_id("run"),
            model_name=model_name,
            status="running",
            params={},
            tags={},
            seed=seed,
            environment=capture_environment() if environment else {},
            code={} if code_dir is None else capture_code(code_dir),
            service_name=None if service is None else service[0],
            service_version=None if service is None else service[1],
            parent_version=parent,
            job={},
            artifacts={},
            error=None,
            start_time=self._clock.now(),
            end_time=None,
        )
        with self._db.session() as session:
            insert_run(session, row)
        run = Run(self._run_services, row)
        if params:
            run.log_params(params)
        if tags:
            run.set_tags(tags)
        return run

    def get_run(self, run_id: str) -> RunInfo:
        with self._db.session() as session:
            return run_info(session, load_run(session, run_id))

    def search_runs(
        self,
        model_name: str | None = None,
        *,
        where: str | None = None,
        order_by: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> builtins.list[RunInfo]:
        """Runs matching metric conditions (``"roc_auc >= 0.7"``), best first by ``order_by``."""
        query = search_query(
            model_name=model_name, where=where, order_by=order_by, status=status, limit=limit
        )
        with self._db.session() as session:
            return run_infos(session, session.scalars(query).all())

    def metric_history(self, run_id: str, key: str) -> builtins.list[tuple[int, float]]:
        """(step, value) of every logged value of ``key``, by step."""
        with self._db.session() as session:
            load_run(session, run_id)
            return [
                (m.step, float("nan") if m.value is None else m.value)
                for m in metric_rows(session, run_id, key)
            ]

    # --- versions -------------------------------------------------------------------
    def register(
        self,
        name: str,
        model: Any,
        *,
        signature: Signature,
        format: str | None = None,
        run_id: str | None = None,
        profile: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        evaluation: Mapping[str, Any] | None = None,
        gate: Mapping[str, Any] | None = None,
        description: str = "",
        source: str | None = None,
        actor: str | None = None,
        artifact: bytes | None = None,
    ) -> ModelVersion:
        """Serialise ``model``, store its bytes content-addressed and record a new version.

        ``artifact`` gives bytes already serialised in ``format`` (then ``model`` is only
        used to pick the format when ``format`` is not given).

        The version starts ``pending``; nothing about it can change later but its
        approval state and aliases.
        """
        from prodml.registry.formats import detect_format, get_format, serialize  # see module doc

        check_name(name, kind="model")
        if not isinstance(signature, _signature_class()):
            raise DefinitionError(
                f"register {name!r}: signature must be a Signature (see "
                f"prodml.registry.infer_signature), got {type(signature).__name__}"
            )
        if gate is not None and not isinstance(gate, Mapping):
            raise DefinitionError(
                f"register {name!r}: gate must be a mapping with a 'status' (a gate "
                f"result's to_dict()), got {type(gate).__name__}"
            )
        stored_metrics = _metric_values(name, metrics or {})
        if artifact is None:
            fmt, data = serialize(model, format)
        else:
            fmt, data = (get_format(format) if format else detect_format(model)), artifact
        digest = self._artifacts.put_bytes(data)
        actor = actor or default_actor()
        gate_status = None if gate is None else str(gate.get("status"))
        with self._db.write() as session:
            if run_id is not None:
                require_run(session, run_id)
            number = allocate_version(session, name, now=self._clock.now)
            now = self._clock.now()
            values: dict[str, Any] = {
                "name": name,
                "version": number,
                "artifact_digest": digest,
                "artifact_size": len(data),
                "format": fmt.name,
                "signature": signature.to_dict(),
                "profile": None if profile is None else dict(profile),
                "metrics": stored_metrics,
                "evaluation": None if evaluation is None else dict(evaluation),
                "gate": None if gate is None else dict(gate),
                "gate_status": gate_status,
                "run_id": run_id,
                "source": source,
                "description": description,
                "created_by": actor,
                "created_at": now,
                "status": "pending",
                "status_actor": None,
                "status_reason": None,
                "status_time": None,
            }
            # Core INSERTs (no unit of work): the record is built here, nothing read back.
            session.connection().execute(insert(_VERSIONS), values)
            record = ModelVersion(**values, aliases=())
            add_audit(
                session,
                time=now,
                actor=actor,
                action="register",
                object_type="model_version",
                object_id=record.ref,
                before=None,
                after={"artifact": digest, "format": fmt.name, "gate": gate_status},
            )
        self._notify(lambda listener: listener.version_registered(record))
        return record

    def get(self, ref: str | ModelRef) -> ModelVersion:
        """A version by ``name:3``, ``name@alias`` or ``name`` (its latest)."""
        with self._db.session() as session:
            return version_record(session, resolve_ref(session, ref))

    def models(self) -> builtins.list[dict[str, Any]]:
        """Every registered model with its latest version and aliases."""
        with self._db.session() as session:
            names = session.scalars(
                select(RegisteredModelRow.name).order_by(RegisteredModelRow.name)
            )
            out = []
            for name in names.all():
                latest = resolve_ref(session, name)
                out.append(
                    {
                        "name": name,
                        "latest": latest.version,
                        "latest_status": latest.status,
                        "aliases": _aliases(session, name),
                    }
                )
            return out

    def versions(self, name: str) -> builtins.list[ModelVersion]:
        with self._db.session() as session:
            if session.get(RegisteredModelRow, name) is None:
                resolve_ref(session, name)  # raises ModelNotFoundError
            rows = session.scalars(
                select(ModelVersionRow)
                .where(ModelVersionRow.name == name)
                .order_by(ModelVersionRow.version)
            )
            return [version_record(session, row) for row in rows]

    def load(self, ref: str | ModelRef) -> LoadedModel:
        """Load a version after verifying its artifact's SHA-256 (``IntegrityError`` if not)."""
        from prodml.registry._signature import Signature  # see the module doc
        from prodml.registry.formats import get_format

        version = self.get(ref)
        data = self._artifacts.get_bytes(version.artifact_digest)
        fmt = get_format(version.format)
        model = fmt.load(data)
        return LoadedModel(version, model, fmt, Signature.from_dict(version.signature))

    def artifact_bytes(self, ref: str | ModelRef) -> bytes:
        """A version's verified artifact bytes."""
        return self._artifacts.get_bytes(self.get(ref).artifact_digest)

    # --- approvals and aliases ------------------------------------------------------
    def approve(
        self, ref: str | ModelRef, *, actor: str | None = None, reason: str | None = None
    ) -> ModelVersion:
        return self._change_status(ref, "approved", actor, reason)

    def reject(
        self, ref: str | ModelRef, *, actor: str | None = None, reason: str | None = None
    ) -> ModelVersion:
        return self._change_status(ref, "rejected", actor, reason)

    def _change_status(
        self, ref: str | ModelRef, status: str, actor: str | None, reason: str | None
    ) -> ModelVersion:
        target = self.get(ref)
        actor = actor or default_actor()
        with self._db.write() as session:
            events = change_status(
                session,
                target.name,
                target.version,
                status,
                actor=actor,
                reason=reason,
                now=self._clock.now(),
            )
            session.flush()
            record = version_record(session, resolve_ref(session, target.ref))
        self._notify(lambda listener: listener.status_changed(record))
        for event in events:
            self._notify(lambda listener, e=event: listener.alias_changed(e))  # type: ignore[misc]
        return record

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int | str,
        *,
        actor: str | None = None,
        reason: str | None = None,
    ) -> ModelVersion:
        """Point ``name@alias`` at ``version`` (a number or a ref such as ``name:3``)."""
        number = self._version_number(name, version)
        with self._db.write() as session:
            event = move_alias(
                session,
                name,
                alias,
                number,
                actor=actor or default_actor(),
                reason=reason,
                now=self._clock.now(),
                config=self.config,
            )
            session.flush()
            record = version_record(session, resolve_ref(session, ModelRef(name, version=number)))
        if event is not None:
            self._notify(lambda listener: listener.alias_changed(event))
        return record

    def delete_alias(
        self, name: str, alias: str, *, actor: str | None = None, reason: str | None = None
    ) -> None:
        with self._db.write() as session:
            lock_model(session, name)  # before reading the alias: no stale previous version
            resolve_ref(session, ModelRef(name, alias=alias))  # raises if unknown
            event = move_alias(
                session,
                name,
                alias,
                None,
                actor=actor or default_actor(),
                reason=reason,
                now=self._clock.now(),
                config=self.config,
            )
        if event is not None:
            self._notify(lambda listener: listener.alias_changed(event))

    def aliases(self, name: str) -> dict[str, int]:
        with self._db.session() as session:
            resolve_ref(session, name)
            return _aliases(session, name)

    def alias_history(self, name: str, alias: str | None = None) -> builtins.list[AliasEvent]:
        with self._db.session() as session:
            query = select(AliasHistoryRow).where(AliasHistoryRow.name == name)
            if alias is not None:
                query = query.where(AliasHistoryRow.alias == alias)
            return [
                AliasEvent(
                    r.name, r.alias, r.previous_version, r.version, r.actor, r.reason, r.time
                )
                for r in session.scalars(query.order_by(AliasHistoryRow.id))
            ]

    def audit_log(
        self, object_id: str | None = None, *, limit: int | None = None
    ) -> builtins.list[AuditEntry]:
        """State changes, oldest first; ``object_id`` filters (``name:3``, ``name@alias``)."""
        with self._db.session() as session:
            query = select(AuditRow).order_by(AuditRow.id)
            if object_id is not None:
                query = query.where(AuditRow.object_id == object_id)
            if limit is not None:
                query = query.limit(limit)
            return [audit_entry(row) for row in session.scalars(query)]

    # --- lineage --------------------------------------------------------------------
    def lineage(self, ref: str | ModelRef) -> dict[str, Any]:
        """Version → run → training sets → feature-view versions → sources."""
        with self._db.session() as session:
            return version_lineage(session, resolve_ref(session, ref))

    def used_by(
        self, *, dataset: str | None = None, feature_view: str | None = None
    ) -> dict[str, Any]:
        """Which versions used a dataset (fingerprint) or a feature view (``name`` or
        ``name:version-prefix``)."""
        if (dataset is None) == (feature_view is None):
            raise DefinitionError("used_by: give exactly one of dataset= or feature_view=")
        with self._db.session() as session:
            if feature_view is None:
                rows = versions_using_dataset(session, str(dataset))
                return {"dataset": dataset, "versions": [f"{r.name}:{r.version}" for r in rows]}
            view, _, version = feature_view.partition(":")
            datasets, rows = versions_using_view(session, view, version or None)
            return {
                "feature_view": feature_view,
                "datasets": datasets,
                "versions": [f"{r.name}:{r.version}" for r in rows],
            }

    # --- helpers --------------------------------------------------------------------
    def _version_number(self, name: str, version: int | str) -> int:
        if isinstance(version, bool) or not isinstance(version, int | str):
            raise DefinitionError(
                f"alias of model {name!r}: version must be a number or a reference "
                f"'{name}:3', got {version!r}"
            )
        if isinstance(version, int):
            return version
        text = str(version)
        if text.isascii() and text.isdigit():
            return int(text)
        resolved = self.get(text)
        if resolved.name != name:
            raise DefinitionError(
                f"alias of model {name!r} cannot point at {text!r}, a version of {resolved.name!r}"
            )
        return resolved.version

    def _notify_run(self, info: RunInfo) -> None:
        self._notify(lambda listener: listener.run_ended(info))

    def _notify(self, call: Callable[[RegistryListener], None]) -> None:
        for listener in self.listeners:
            try:
                call(listener)
            except Exception as exc:  # a mirror must never undo the system of record
                log.warning("registry listener %r failed: %s", listener, exc)


_VERSIONS = Base.metadata.tables["model_versions"]


def _signature_class() -> type[Signature]:
    from prodml.registry._signature import Signature  # see the module doc

    return Signature


def _metric_values(name: str, metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """A version's metrics as JSON numbers: every value a real number (NumPy scalars
    included) or None; NaN is stored as None (null), as evaluation reports store it."""
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        if value is None:
            out[str(key)] = None
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise DefinitionError(
                f"register {name!r}: metric {key!r} must be a number or None, got {value!r}"
            )
        number = float(value)
        out[str(key)] = None if math.isnan(number) else number
    return out


def _aliases(session: Session, name: str) -> dict[str, int]:
    rows = session.scalars(select(ModelAliasRow).where(ModelAliasRow.name == name))
    return {row.alias: row.version for row in rows}
