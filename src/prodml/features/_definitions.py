"""Feature definitions: fields, entities and feature views (on-demand features are in
``_on_demand``, services in ``_service``).

Definitions are plain objects written once in the project's ``features.py``; the same
objects drive training sets, materialization and online reads. A definition's
``version`` is the SHA-256 of its normalised spec, so any change to it — a feature, a
TTL, the source, a function body — yields a new version.

>>> from datetime import timedelta
>>> origin = Entity("origin", join_keys=["origin"])
>>> weather = FeatureView("weather", entities=[origin], source=ParquetSource("w.parquet"),
...                       event_time="time_hour", ttl=timedelta(hours=3),
...                       features=[Field("temp", "float64"), Field("wind_speed", "float64")])
>>> weather[["temp"]].feature_names
('temp',)
>>> len(weather.version)
64
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

from prodml.core import DefinitionError, arrow_type, canonical_json, check_name
from prodml.features._sources import Definition, ParquetSource, PythonSource, Source, SqlSource

__all__ = [
    "Entity",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "no_duplicates",
    "spec_version",
]


def spec_version(spec: Mapping[str, Any]) -> str:
    """SHA-256 of a spec's canonical JSON."""
    return hashlib.sha256(canonical_json(dict(spec))).hexdigest()


@dataclass(frozen=True)
class Field:
    """A typed column: ``Field("temp", "float64")``. The view or on-demand feature that
    declares it checks the dtype, so an unknown one is reported with both their names."""

    name: str
    dtype: str
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, kind="field")

    def check_dtype(self, *, owner: str) -> None:
        """Raise naming ``owner`` (the view or on-demand feature), the field and the
        accepted names when the dtype is unknown; views check their fields with it."""
        try:
            arrow_type(self.dtype)
        except DefinitionError as exc:
            raise DefinitionError(f"{owner}: field {self.name!r}: {exc}") from None

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


class Entity(Definition):
    """Something features describe (an airport, a plane), identified by its join keys."""

    kind = "entity"

    def __init__(
        self, name: str, join_keys: Sequence[str] | None = None, description: str = ""
    ) -> None:
        self.name = check_name(name, kind="entity")
        keys = list(join_keys) if join_keys is not None else [name]
        if not keys:
            raise DefinitionError(f"entity {name!r}: join_keys must name at least one column")
        for key in keys:
            check_name(key, kind=f"entity {name!r} join key")
        if len(set(keys)) != len(keys):
            raise DefinitionError(f"entity {name!r}: join_keys {keys} repeat a column")
        self.join_keys: tuple[str, ...] = tuple(keys)
        self.description = description

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "join_keys": list(self.join_keys)}

    @cached_property
    def version(self) -> str:
        return spec_version(self.spec())

    def __repr__(self) -> str:
        return f"Entity({self.name!r}, join_keys={list(self.join_keys)})"


class FeatureView(Definition):
    """Features of one or more entities, read from a source, valid from their event time
    for ``ttl`` (``None``: forever).

    ``inclusive`` is the point-in-time bound: ``True`` (the default) lets an entity row at
    ``t`` see feature rows with ``event_time <= t``; ``False`` only rows strictly before
    ``t`` (and, under the created-time guard, created strictly before ``t``). Use
    ``False`` when a row stamped at an event's own time carries an aggregate that
    includes that event (its label): with ``<=`` the training set would read the label.
    The spec names ``inclusive`` only when it is ``False``, so the default keeps a view's
    version.

    >>> user = Entity("user", join_keys=["user_id"])
    >>> rates = FeatureView("user_rates", entities=[user], source=ParquetSource("u.parquet"),
    ...                     event_time="ts", features=[Field("late_rate", "float64")],
    ...                     inclusive=False)
    >>> rates.spec()["inclusive"]
    False
    """

    kind = "feature_view"

    def __init__(
        self,
        name: str,
        *,
        entities: Sequence[Entity],
        source: Source,
        event_time: str,
        features: Sequence[Field],
        created_time: str | None = None,
        ttl: timedelta | None = None,
        expectations: str | None = None,
        description: str = "",
        inclusive: bool = True,
    ) -> None:
        self.name = check_name(name, kind="feature view")
        where = f"feature view {name!r}"
        if not entities or not all(isinstance(e, Entity) for e in entities):
            raise DefinitionError(f"{where}: entities must be a non-empty list of Entity")
        if not isinstance(source, ParquetSource | SqlSource | PythonSource):
            raise DefinitionError(
                f"{where}: source must be ParquetSource, SqlSource or PythonSource, got {source!r}"
            )
        if not features or not all(isinstance(f, Field) for f in features):
            raise DefinitionError(f"{where}: features must be a non-empty list of Field")
        for feature in features:
            feature.check_dtype(owner=where)
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl <= timedelta(0)):
            raise DefinitionError(f"{where}: ttl must be a positive timedelta or None, got {ttl!r}")
        if expectations is not None and not isinstance(expectations, str):
            raise DefinitionError(
                f"{where}: expectations must be the path of an expectations JSON file "
                f"(relative to the project), got {type(expectations).__name__}"
            )
        if not isinstance(inclusive, bool):
            raise DefinitionError(
                f"{where}: inclusive must be True (event_time <= t) or False (event_time < t), "
                f"got {inclusive!r}"
            )
        check_name(event_time, kind=f"{where} event_time column")
        if created_time is not None:
            check_name(created_time, kind=f"{where} created_time column")
        self.entities: tuple[Entity, ...] = tuple(entities)
        self.join_keys: tuple[str, ...] = tuple(k for e in self.entities for k in e.join_keys)
        names = [f.name for f in features]
        reserved = {*self.join_keys, event_time, *([created_time] if created_time else [])}
        no_duplicates(names, where=f"{where} features")
        no_duplicates(self.join_keys, where=f"{where} join keys")
        clash = sorted(reserved & set(names))
        if clash:
            raise DefinitionError(
                f"{where}: feature(s) {clash} reuse a join-key or time column name"
            )
        self.source = source
        self.event_time = event_time
        self.created_time = created_time
        self.ttl = ttl
        self.features: tuple[Field, ...] = tuple(features)
        self.expectations = expectations
        self.description = description
        self.inclusive = inclusive

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": self.name,
            "entities": [e.spec() for e in self.entities],
            "source": self.source.spec(),
            "event_time": self.event_time,
            "created_time": self.created_time,
            "ttl_seconds": None if self.ttl is None else self.ttl.total_seconds(),
            "features": [f.spec() for f in self.features],
            "expectations": self.expectations,
        }
        if not self.inclusive:
            spec["inclusive"] = False  # only when set: the default keeps existing versions
        return spec

    @cached_property
    def version(self) -> str:
        return spec_version(self.spec())

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @cached_property
    def online_namespace(self) -> str:
        """Where this version's records live in the online store: ``name:version``."""
        return f"{self.name}:{self.version}"

    def field(self, name: str) -> Field:
        for f in self.features:
            if f.name == name:
                return f
        raise DefinitionError(
            f"feature view {self.name!r} has no feature {name!r}; it has {list(self.feature_names)}"
        )

    def __getitem__(self, names: str | Sequence[str]) -> FeatureViewProjection:
        selected = [names] if isinstance(names, str) else list(names)
        return FeatureViewProjection(self, tuple(self.field(n) for n in selected))

    def __repr__(self) -> str:
        return f"FeatureView({self.name!r}, features={list(self.feature_names)})"


@dataclass(frozen=True)
class FeatureViewProjection:
    """A subset of a view's features, as taken by a service: ``planes[["year", "seats"]]``."""

    view: FeatureView
    features: tuple[Field, ...]

    def __post_init__(self) -> None:
        if not self.features:
            raise DefinitionError(
                f"feature view {self.view.name!r}: a selection needs at least one feature"
            )
        no_duplicates([f.name for f in self.features], where=f"selection of {self.view.name!r}")

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


def no_duplicates(names: Iterable[str], *, where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DefinitionError(f"{where}: {name!r} appears more than once")
        seen.add(name)
