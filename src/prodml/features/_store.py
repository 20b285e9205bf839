"""``project.features``: the feature layer's entry object. It wires definitions, the
registry, the offline, online and dataset stores together; the work happens in the
modules it calls."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from prodml.core import Clock, Config, DataValidationError, SchemaError, ensure_utc
from prodml.features._definitions import FeatureView
from prodml.features._entity_file import read_entity_rows
from prodml.features._materialize import Materializer, MaterializeResult, Progress, watermarks
from prodml.features._offline import OfflineStore, to_arrow
from prodml.features._on_demand import apply_on_demand
from prodml.features._online_read import OnlineFeatures, read_online
from prodml.features._registry import AppliedDefinition, DefinitionRegistry
from prodml.features._repo import Definition, FeatureRepo
from prodml.features._service import FeatureService
from prodml.features._training_set import (
    DatasetStore,
    TrainingSet,
    ViewCoverage,
    unmatched_views,
    view_coverage,
)
from prodml.features.online import OnlineStore, open_online_store
from prodml.storage import MetadataDB
from prodml.storage._blob_s3 import S3BlobStore
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
        datasets = config.features.datasets_path
        self.datasets = DatasetStore(
            db,
            S3BlobStore.from_url(datasets, what="[features] datasets_path")
            if datasets.startswith("s3://")
            else root / datasets,
            clock.now,
        )
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
        """Store definitions (default: everything in the definitions file) in the registry.

        Each feature view is first checked against its source's schema where the source
        can be read (Parquet and SQL sources): a declared column the source lacks, or
        holds with an incompatible type, raises before anything is stored."""
        if objects is None:
            everything = self.reload().all()
            self._check_sources(everything)
            return self.registry.apply(everything)
        objects = list(objects)
        self._check_sources(FeatureRepo(objects).all())
        applied = self.registry.apply(objects)
        repo = self._repo if self._repo is not None else FeatureRepo()
        for obj in objects:
            repo.add(obj)
        self._repo = repo
        return applied

    def _check_sources(self, objects: Iterable[Definition]) -> None:
        for obj in objects:
            if isinstance(obj, FeatureView) and not self.offline.check_source(obj):
                log.warning(
                    "feature view %r: source %r not checked at apply (a Python function, or "
                    "not readable now); its columns are checked when a build reads it",
                    obj.name,
                    obj.source,
                )

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
        entity_rows: pd.DataFrame | pa.Table | str | Path,
        service: str | FeatureService,
        *,
        timestamp: str = "event_timestamp",
        label: str | None = None,
        created_time_guard: bool | None = None,
        on_unmatched_view: Literal["warn", "error"] | None = None,
    ) -> TrainingSet:
        """Join features point-in-time to ``entity_rows`` and persist the snapshot.

        ``entity_rows`` is a DataFrame, an Arrow table, or the path of a Parquet or CSV
        file. Every entity row appears once, in input order, with its own columns first
        and then one column per feature (nulls where nothing is visible at the row's
        time). No entity rows, or a view whose source has no rows, is an error; a view
        that gives no value to any row is a warning in the result's ``warnings`` (an
        error with ``on_unmatched_view="error"``; default ``[features] on_unmatched_view``).
        The result's ``coverage`` also counts, per view, the rows that picked a feature
        row stamped exactly at their own time (see :class:`ViewCoverage`).
        """
        svc = self.service(service)
        if isinstance(entity_rows, str | Path):
            rows = read_entity_rows(entity_rows, timestamp=timestamp)
            empty = f"entity rows file {str(entity_rows)!r} holds no rows"
        else:
            rows = to_arrow(entity_rows, what=f"entity rows for feature service {svc.name!r}")
            empty = f"entity rows for feature service {svc.name!r}: the table has no rows"
        if rows.num_rows == 0:
            raise DataValidationError(
                f"{empty}; expected at least one entity row to join the features of "
                f"feature service {svc.name!r} to"
            )
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
        joined = self.offline.join(rows, svc, timestamp=timestamp, created_time_guard=guard)
        table = apply_on_demand(joined.table, svc.on_demand)
        coverage = view_coverage(table, svc, joined.matches)
        self._check_coverage(svc, coverage, on_unmatched_view)
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
            coverage=coverage,
        )

    def get_training_set(self, fingerprint: str) -> TrainingSet:
        return self.datasets.load(fingerprint)

    def _check_coverage(
        self,
        svc: FeatureService,
        coverage: Mapping[str, ViewCoverage],
        policy: Literal["warn", "error"] | None,
    ) -> None:
        unmatched = unmatched_views(coverage)
        if not unmatched:
            return
        if (policy or self.config.features.on_unmatched_view) == "error":
            raise DataValidationError(
                f"training set for feature service {svc.name!r}: {'; '.join(unmatched)} "
                '([features] on_unmatched_view = "warn" builds it anyway)',
                report={
                    name: c.to_dict() for name, c in coverage.items() if c.rows and not c.matched
                },
            )
        for message in unmatched:
            log.warning("training set for feature service %r: %s", svc.name, message)

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
        rebuild: bool = False,
    ) -> builtins.list[MaterializeResult]:
        """Load views' rows visible in ``(watermark or start, end]`` into the online store.

        ``rebuild=True`` first drops the online records and the watermark of each view's
        current version, so it is materialized again from ``start`` (or its earliest
        row): the online store then equals a fresh materialization, also where source
        rows changed behind the watermark. Every view is checked before any is reset.
        """
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
        at = self.clock.now() if end is None else end
        return materializer.run(targets, start, at, progress, rebuild=rebuild)

    def watermarks(self) -> dict[str, datetime | None]:
        """Each applied feature view's materialization watermark (None: never loaded):
        how fresh its online rows are."""
        return watermarks(self._db, self._views(None))

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
