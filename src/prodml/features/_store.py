"""``project.features``: the feature layer's entry object. It wires definitions, the
registry, the offline, online and dataset stores together; the work happens in the
modules it calls."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from prodml.core import Clock, Config, DataValidationError, SchemaError, ensure_utc
from prodml.features._definitions import FeatureView
from prodml.features._materialize import Materializer, MaterializeResult, Progress
from prodml.features._offline import OfflineStore, to_arrow
from prodml.features._on_demand import apply_on_demand
from prodml.features._online_read import OnlineFeatures, read_online
from prodml.features._registry import AppliedDefinition, DefinitionRegistry
from prodml.features._repo import Definition, FeatureRepo
from prodml.features._service import FeatureService
from prodml.features._training_set import DatasetStore, TrainingSet
from prodml.features.online import OnlineStore, open_online_store
from prodml.storage import MetadataDB
from prodml.validation import Expectations, ValidationReport, validate

__all__ = ["FeatureStore"]

log = logging.getLogger("prodml.features")


class FeatureStore:
    """Definitions, training sets, materialization and online reads of one project."""

    def __init__(self, *, root: Path, config: Config, db: MetadataDB, clock: Clock) -> None:
        self.root = root
        self.config = config
        self.clock = clock
        self.registry = DefinitionRegistry(db, clock)
        self.offline = OfflineStore(config.offline_store, root)
        self.datasets = DatasetStore(db, root / config.features.datasets_path, clock.now)
        self._db = db
        self._repo: FeatureRepo | None = None
        self._online: OnlineStore | None = None

    # -- definitions -------------------------------------------------------------------
    @property
    def definitions_path(self) -> Path:
        return self.root / self.config.features.definitions

    @property
    def repo(self) -> FeatureRepo:
        """Definitions loaded from the project's definitions file (once)."""
        if self._repo is None:
            self._repo = FeatureRepo.from_file(self.definitions_path)
        return self._repo

    def reload(self) -> FeatureRepo:
        self._repo = None
        return self.repo

    def apply(
        self, objects: Iterable[Definition] | None = None
    ) -> builtins.list[AppliedDefinition]:
        """Store definitions (default: everything in the definitions file) in the registry."""
        if objects is None:
            return self.registry.apply(self.reload().all())
        objects = list(objects)
        applied = self.registry.apply(objects)
        repo = self._repo if self._repo is not None else FeatureRepo()
        for obj in objects:
            repo.add(obj)
        self._repo = repo
        return applied

    def list(self, kind: str | None = None) -> builtins.list[AppliedDefinition]:
        return self.registry.list(kind)

    def service(self, service: str | FeatureService) -> FeatureService:
        """Resolve a service and check that it and its members are applied and current."""
        svc = self.repo.service(service) if isinstance(service, str) else service
        self.registry.require_current(svc)
        return svc

    # -- training sets -----------------------------------------------------------------
    def build_training_set(
        self,
        entity_rows: pd.DataFrame | pa.Table,
        service: str | FeatureService,
        *,
        timestamp: str = "event_timestamp",
        label: str | None = None,
        created_time_guard: bool | None = None,
    ) -> TrainingSet:
        """Join features point-in-time to ``entity_rows`` and persist the snapshot.

        Every entity row appears once, in input order, with its own columns first and
        then one column per feature (nulls where nothing is visible at the row's time).
        """
        svc = self.service(service)
        rows = to_arrow(entity_rows, what=f"entity rows for feature service {svc.name!r}")
        if label is not None and label not in rows.column_names:
            raise SchemaError(
                f"entity rows for feature service {svc.name!r}: no label column {label!r}; "
                f"columns: {rows.column_names}"
            )
        guard = (
            self.config.features.created_time_guard
            if created_time_guard is None
            else created_time_guard
        )
        table = self.offline.join(rows, svc, timestamp=timestamp, created_time_guard=guard)
        table = apply_on_demand(table, svc.on_demand)
        self._check_expectations(svc, table)
        versions = {p.view.name: p.view.version for p in svc.projections}
        versions.update({o.name: o.version for o in svc.on_demand})
        return self.datasets.save(
            table,
            service_name=svc.name,
            service_version=svc.version,
            feature_versions=versions,
            timestamp=timestamp,
            label=label,
        )

    def get_training_set(self, fingerprint: str) -> TrainingSet:
        return self.datasets.load(fingerprint)

    def _check_expectations(self, svc: FeatureService, table: pa.Table) -> None:
        policy = self.config.features.on_violation
        if policy == "ignore":
            return
        failures: list[tuple[str, ValidationReport]] = []
        for projection in svc.projections:
            view = projection.view
            if view.expectations is None:
                continue
            expectations = Expectations.load(self.root / view.expectations)
            columns = [c for c in expectations.columns if c in projection.feature_names]
            subset = expectations.model_copy(
                update={
                    "columns": {c: expectations.columns[c] for c in columns},
                    "extra_columns": "allow",
                }
            )
            report = validate(table.select(columns), subset)
            if not report.ok:
                failures.append((view.name, report))
        if not failures:
            return
        text = "; ".join(f"feature view {name!r}: {r.summary()}" for name, r in failures)
        if policy == "error":
            raise DataValidationError(
                f"training set for feature service {svc.name!r} violates declared expectations: {text}",
                report={name: r.to_dict() for name, r in failures},
            )
        log.warning("training set for %r violates expectations: %s", svc.name, text)

    # -- online ------------------------------------------------------------------------
    @property
    def online(self) -> OnlineStore:
        if self._online is None:
            self._online = open_online_store(self.config.online_store, self.root)
        return self._online

    def materialize(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        views: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> builtins.list[MaterializeResult]:
        """Load views' rows visible in ``(watermark or start, end]`` into the online store."""
        targets = self._views(views)
        for view in targets:
            self.registry.require_current(view)
        materializer = Materializer(
            self._db,
            self.offline,
            self.online,
            self.clock,
            chunk=timedelta(hours=self.config.features.materialize_chunk_hours),
            created_time_guard=self.config.features.created_time_guard,
        )
        return materializer.run(targets, start, self.clock.now() if end is None else end, progress)

    def get_online(
        self,
        service: str | FeatureService,
        entities: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
        request_data: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]] | None = None,
        *,
        now: datetime | None = None,
    ) -> OnlineFeatures:
        """Current feature values for entities, computed on-demand features, per-view
        versions and freshness."""
        svc = self.repo.service(service) if isinstance(service, str) else service
        at = ensure_utc(now) if now is not None else self.clock.now()
        return read_online(self.online, svc, entities, request_data, now=at)

    def _views(self, names: Sequence[str] | None) -> builtins.list[FeatureView]:
        if names is None:
            return self.repo.views()
        return [self.repo.view(n) for n in names]

    def close(self) -> None:
        if self._online is not None:
            self._online.close()
            self._online = None
