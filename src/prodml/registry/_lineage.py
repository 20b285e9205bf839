"""Lineage across the metadata DB: model version → run → training sets → feature-view
versions → sources, and back (which versions used a dataset or a feature-view version).

The registry reads the feature layer's stored rows (datasets, definitions) by id; it
does not import the feature package (they are siblings; lineage crosses as ids).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from prodml.core import DatasetNotFoundError, FeatureNotFoundError
from prodml.registry._records import iso
from prodml.storage._models import (
    DatasetRow,
    FeatureDefinitionRow,
    ModelVersionRow,
    RunDatasetRow,
    RunRow,
)

__all__ = ["dataset_lineage", "version_lineage", "versions_using_dataset", "versions_using_view"]

_VIEW_KINDS = ("feature_view", "on_demand_feature")


def version_lineage(session: Session, row: ModelVersionRow) -> dict[str, Any]:
    """Everything a version came from, as one JSON-ready tree."""
    out: dict[str, Any] = {"version": f"{row.name}:{row.version}", "artifact": row.artifact_digest}
    out["source"] = row.source
    run = None if row.run_id is None else session.get(RunRow, row.run_id)
    if run is None:
        out["run"] = None
        out["datasets"] = []
        return out
    out["run"] = {
        "id": run.id,
        "status": run.status,
        "seed": run.seed,
        "code": run.code,
        "service": run.service_name,
        "service_version": run.service_version,
        "parent_version": run.parent_version,
        "python": run.environment.get("python"),
        "start_time": iso(run.start_time),
        "end_time": iso(run.end_time),
    }
    links = session.scalars(
        select(RunDatasetRow).where(RunDatasetRow.run_id == run.id).order_by(RunDatasetRow.role)
    ).all()
    out["datasets"] = [
        {"role": link.role, **dataset_lineage(session, link.fingerprint)} for link in links
    ]
    return out


def dataset_lineage(session: Session, fingerprint: str) -> dict[str, Any]:
    """A training set and the feature-view versions (with sources) it was built from."""
    row = session.get(DatasetRow, fingerprint)
    if row is None:
        return {"fingerprint": fingerprint, "recorded": False}
    versions = _json(row.feature_versions)
    views = []
    for name, version in sorted(versions.items()):
        spec = _definition(session, name, version)
        views.append(
            {
                "name": name,
                "version": version,
                "kind": None if spec is None else spec[0],
                "source": None if spec is None else _source(spec[0], spec[1]),
            }
        )
    return {
        "fingerprint": row.fingerprint,
        "recorded": True,
        "rows": row.row_count,
        "start_time": iso(row.start_time),
        "end_time": iso(row.end_time),
        "service": row.service_name,
        "service_version": row.service_version,
        "label": row.label_column,
        "feature_views": views,
    }


def _definition(session: Session, name: str, version: str) -> tuple[str, dict[str, Any]] | None:
    row = session.scalars(
        select(FeatureDefinitionRow).where(
            FeatureDefinitionRow.name == name,
            FeatureDefinitionRow.version == version,
            FeatureDefinitionRow.kind.in_(_VIEW_KINDS),
        )
    ).first()
    return None if row is None else (row.kind, orjson.loads(row.spec))


def _source(kind: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    if kind == "on_demand_feature":
        return {"type": "on_demand", "inputs": spec.get("inputs", [])}
    source = spec.get("source")
    return source if isinstance(source, dict) else None


def _json(value: Any) -> dict[str, str]:
    # Snapshots written by prodml 0.1.0 hold JSON text inside the JSON column.
    loaded = orjson.loads(value) if isinstance(value, str) else value
    return dict(loaded or {})


def versions_using_dataset(session: Session, fingerprint: str) -> list[ModelVersionRow]:
    """Versions whose run used the dataset (a fingerprint or a unique prefix of ≥ 8)."""
    fingerprint = _full_fingerprint(session, fingerprint)
    runs = select(RunDatasetRow.run_id).where(RunDatasetRow.fingerprint == fingerprint)
    return list(
        session.scalars(
            select(ModelVersionRow)
            .where(ModelVersionRow.run_id.in_(runs))
            .order_by(ModelVersionRow.name, ModelVersionRow.version)
        )
    )


def versions_using_view(
    session: Session, view: str, version: str | None = None
) -> tuple[list[str], list[ModelVersionRow]]:
    """Datasets built from the feature view (at ``version``, a prefix allowed) and the
    model versions trained on them."""
    known = session.scalars(
        select(FeatureDefinitionRow.version).where(
            FeatureDefinitionRow.name == view, FeatureDefinitionRow.kind.in_(_VIEW_KINDS)
        )
    ).all()
    if not known:
        raise FeatureNotFoundError(f"feature view {view!r} has never been applied")
    if version is not None and not any(v.startswith(version) for v in known):
        raise FeatureNotFoundError(
            f"feature view {view!r} has no version starting {version!r}; known: "
            + ", ".join(v[:12] for v in known)
        )
    fingerprints = []
    for row in session.scalars(select(DatasetRow)):
        used = _json(row.feature_versions).get(view)
        if used is not None and (version is None or used.startswith(version)):
            fingerprints.append(row.fingerprint)
    if not fingerprints:
        return [], []
    runs = select(RunDatasetRow.run_id).where(RunDatasetRow.fingerprint.in_(fingerprints))
    versions = session.scalars(
        select(ModelVersionRow)
        .where(ModelVersionRow.run_id.in_(runs))
        .order_by(ModelVersionRow.name, ModelVersionRow.version)
    )
    return sorted(fingerprints), list(versions)


def _full_fingerprint(session: Session, prefix: str) -> str:
    """The one recorded fingerprint starting with ``prefix`` (a full one must be recorded)."""
    matches = set(
        session.scalars(
            select(RunDatasetRow.fingerprint).where(
                RunDatasetRow.fingerprint.startswith(prefix, autoescape=True)
            )
        )
    ) | set(
        session.scalars(
            select(DatasetRow.fingerprint).where(
                DatasetRow.fingerprint.startswith(prefix, autoescape=True)
            )
        )
    )
    if len(prefix) < 8 or len(matches) != 1:
        raise DatasetNotFoundError(
            f"no single dataset with fingerprint {prefix!r} ({len(matches)} match; give at "
            "least 8 hex digits)"
        )
    return matches.pop()
