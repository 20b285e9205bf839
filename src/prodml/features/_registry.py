"""Applied definitions in the metadata database: every version ever applied stays
readable; ``feature_heads`` points at the current one per kind and name."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import select

from prodml.core import Clock, FeatureNotFoundError, ProdMLError, canonical_json
from prodml.features._repo import KINDS, Definition, FeatureRepo
from prodml.storage import FeatureDefinitionRow, FeatureHeadRow, MetadataDB

__all__ = ["AppliedDefinition", "DefinitionRegistry"]

Status = Literal["created", "updated", "unchanged", "current"]


@dataclass(frozen=True)
class AppliedDefinition:
    """One stored version of a definition."""

    kind: str
    name: str
    version: str
    spec: dict[str, Any]
    created_at: datetime
    status: Status = "current"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "status": self.status,
            "spec": self.spec,
        }


class DefinitionRegistry:
    """Stores and reads definition versions."""

    def __init__(self, db: MetadataDB, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def apply(self, objects: Iterable[Definition]) -> builtins.list[AppliedDefinition]:
        """Store every object (and what it references); one transaction for all."""
        repo = FeatureRepo(objects)
        now = self._clock.now()
        results: list[AppliedDefinition] = []
        with self._db.write() as session:
            for obj in repo.all():
                spec = obj.spec()
                version = obj.version
                head = session.get(FeatureHeadRow, (obj.kind, obj.name))
                known = session.scalar(
                    select(FeatureDefinitionRow).where(
                        FeatureDefinitionRow.kind == obj.kind,
                        FeatureDefinitionRow.name == obj.name,
                        FeatureDefinitionRow.version == version,
                    )
                )
                if known is None:
                    session.add(
                        FeatureDefinitionRow(
                            kind=obj.kind,
                            name=obj.name,
                            version=version,
                            spec=canonical_json(spec).decode(),
                            created_at=now,
                        )
                    )
                status: Status
                if head is None:
                    session.add(
                        FeatureHeadRow(
                            kind=obj.kind, name=obj.name, version=version, updated_at=now
                        )
                    )
                    status = "created"
                elif head.version != version:
                    head.version = version
                    head.updated_at = now
                    status = "updated"
                else:
                    status = "unchanged"
                created = now if known is None else known.created_at
                results.append(
                    AppliedDefinition(obj.kind, obj.name, version, spec, created, status)
                )
        return results

    def list(self, kind: str | None = None) -> builtins.list[AppliedDefinition]:
        """Current version of every definition (of one kind if given), by kind then name."""
        with self._db.session() as session:
            query = select(FeatureHeadRow, FeatureDefinitionRow).join(
                FeatureDefinitionRow,
                (FeatureDefinitionRow.kind == FeatureHeadRow.kind)
                & (FeatureDefinitionRow.name == FeatureHeadRow.name)
                & (FeatureDefinitionRow.version == FeatureHeadRow.version),
            )
            if kind is not None:
                _check_kind(kind)
                query = query.where(FeatureHeadRow.kind == kind)
            rows = session.execute(query).all()
            out = [_applied(defn) for _, defn in rows]
        order = {k: i for i, k in enumerate(KINDS)}
        return sorted(out, key=lambda d: (order[d.kind], d.name))

    def versions(self, kind: str, name: str) -> builtins.list[AppliedDefinition]:
        """Every stored version of one definition, oldest first."""
        _check_kind(kind)
        with self._db.session() as session:
            rows = session.scalars(
                select(FeatureDefinitionRow)
                .where(FeatureDefinitionRow.kind == kind, FeatureDefinitionRow.name == name)
                .order_by(FeatureDefinitionRow.id)
            ).all()
            return [_applied(r) for r in rows]

    def get(self, kind: str, name: str, version: str | None = None) -> AppliedDefinition:
        """One version (the current one by default); a version prefix of ≥ 8 hex digits works."""
        _check_kind(kind)
        if version is None:
            with self._db.session() as session:
                head = session.get(FeatureHeadRow, (kind, name))
                if head is None:
                    raise FeatureNotFoundError(
                        f"{kind.replace('_', ' ')} {name!r} has not been applied; run `prodml features apply`"
                    )
                version = head.version
        matches = [v for v in self.versions(kind, name) if v.version.startswith(version)]
        if len(matches) != 1:
            raise FeatureNotFoundError(
                f"{kind.replace('_', ' ')} {name!r} has no single version matching {version!r}"
            )
        found: AppliedDefinition = matches[0]
        return found

    def require_current(self, obj: Definition) -> None:
        """Raise unless ``obj``'s version is the applied, current one."""
        with self._db.session() as session:
            head = session.get(FeatureHeadRow, (obj.kind, obj.name))
            current = None if head is None else head.version
        if current != obj.version:
            label = obj.kind.replace("_", " ")
            state = (
                "has not been applied"
                if current is None
                else (
                    f"differs from the applied version {current[:12]} (definitions file: {obj.version[:12]})"
                )
            )
            raise FeatureNotFoundError(
                f"{label} {obj.name!r} {state}; run `prodml features apply` first"
            )


def _applied(row: FeatureDefinitionRow) -> AppliedDefinition:
    spec = orjson.loads(row.spec) if isinstance(row.spec, str | bytes) else row.spec
    return AppliedDefinition(row.kind, row.name, row.version, spec, row.created_at)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ProdMLError(f"definition kind {kind!r} is unknown; expected one of {list(KINDS)}")
