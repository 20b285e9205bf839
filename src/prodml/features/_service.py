"""Feature services: the named, versioned set of features one model consumes.

>>> from datetime import timedelta
>>> from prodml.features._definitions import Entity, FeatureView, Field
>>> from prodml.features._sources import ParquetSource
>>> weather = FeatureView("weather", entities=[Entity("origin")], source=ParquetSource("w.parquet"),
...                       event_time="time_hour", ttl=timedelta(hours=3),
...                       features=[Field("temp", "float64"), Field("wind_speed", "float64")])
>>> FeatureService("svc", features=[weather[["temp"]]]).output_names
('temp',)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any, TypeAlias

from prodml.core import DefinitionError, check_name
from prodml.features._definitions import (
    FeatureView,
    FeatureViewProjection,
    no_duplicates,
    spec_version,
)
from prodml.features._on_demand import OnDemandFeature
from prodml.features._sources import Definition

__all__ = ["FeatureService", "ServiceMember"]


ServiceMember: TypeAlias = FeatureViewProjection | OnDemandFeature


class FeatureService(Definition):
    """The named, versioned set of features one model consumes, in order."""

    kind = "feature_service"

    def __init__(
        self,
        name: str,
        features: Sequence[FeatureView | FeatureViewProjection | OnDemandFeature],
        description: str = "",
    ) -> None:
        self.name = check_name(name, kind="feature service")
        where = f"feature service {name!r}"
        members: list[ServiceMember] = []
        for item in features:
            if isinstance(item, FeatureView):
                members.append(FeatureViewProjection(item, item.features))
            elif isinstance(item, FeatureViewProjection | OnDemandFeature):
                members.append(item)
            else:
                raise DefinitionError(
                    f"{where}: features must be FeatureView, view[[...]] or OnDemandFeature, got {item!r}"
                )
        if not members:
            raise DefinitionError(f"{where}: needs at least one feature")
        views = [m.view.name for m in members if isinstance(m, FeatureViewProjection)]
        no_duplicates(
            views, where=f"{where} feature views (select several features in one view[[...]])"
        )
        seen: dict[str, str] = {}
        for member in members:
            owner = member.view.name if isinstance(member, FeatureViewProjection) else member.name
            for fname in member.feature_names:
                if fname in seen:
                    raise DefinitionError(
                        f"{where}: feature name {fname!r} is defined twice "
                        f"(in {seen[fname]!r} and {owner!r}); feature names must be unique in a service"
                    )
                seen[fname] = owner
        self.members: tuple[ServiceMember, ...] = tuple(members)
        self.description = description

    @cached_property
    def projections(self) -> tuple[FeatureViewProjection, ...]:
        return tuple(m for m in self.members if isinstance(m, FeatureViewProjection))

    @cached_property
    def on_demand(self) -> tuple[OnDemandFeature, ...]:
        return tuple(m for m in self.members if isinstance(m, OnDemandFeature))

    @cached_property
    def output_names(self) -> tuple[str, ...]:
        return tuple(n for m in self.members for n in m.feature_names)

    @cached_property
    def join_keys(self) -> tuple[str, ...]:
        keys: dict[str, None] = {}
        for p in self.projections:
            keys.update(dict.fromkeys(p.view.join_keys))
        return tuple(keys)

    def spec(self) -> dict[str, Any]:
        members: list[dict[str, Any]] = []
        for m in self.members:
            if isinstance(m, FeatureViewProjection):
                members.append(
                    {
                        "view": m.view.name,
                        "version": m.view.version,
                        "features": list(m.feature_names),
                    }
                )
            else:
                members.append({"on_demand": m.name, "version": m.version})
        return {"name": self.name, "members": members}

    @cached_property
    def version(self) -> str:
        return spec_version(self.spec())

    def __repr__(self) -> str:
        return f"FeatureService({self.name!r}, features={list(self.output_names)})"
