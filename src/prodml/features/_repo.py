"""The set of definitions a project declares, loaded from its ``features.py``.

Objects reachable from the module's globals are collected, including entities and views
referenced only through services. Two different objects of one kind may not share a name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeAlias

from prodml.core import DefinitionError, FeatureNotFoundError
from prodml.features._definitions import Entity, FeatureView
from prodml.features._on_demand import OnDemandFeature
from prodml.features._service import FeatureService
from prodml.storage import DEFINITION_KINDS

__all__ = ["KINDS", "Definition", "FeatureRepo", "import_user_file"]

Definition: TypeAlias = Entity | FeatureView | OnDemandFeature | FeatureService
KINDS = DEFINITION_KINDS  # dependency order: entities first, services last
_KIND_LABEL = {
    "entity": "entity",
    "feature_view": "feature view",
    "on_demand_feature": "on-demand feature",
    "feature_service": "feature service",
}


class FeatureRepo:
    """Definitions by kind and name."""

    def __init__(self, objects: Iterable[Definition] = ()) -> None:
        self._by_kind: dict[str, dict[str, Definition]] = {k: {} for k in KINDS}
        for obj in objects:
            self.add(obj)

    @classmethod
    def from_file(cls, path: str | Path) -> FeatureRepo:
        """Import the definitions module at ``path`` and collect its objects."""
        path = Path(path)
        if not path.exists():
            raise FeatureNotFoundError(
                f"feature definitions file {str(path)!r} does not exist; create it or set "
                "[features] definitions in prodml.toml"
            )
        module = import_user_file(path, prefix="prodml_user_features", what="feature definitions")
        return cls(v for v in vars(module).values() if isinstance(v, _DEFINITION_TYPES))

    def add(self, obj: Definition) -> None:
        """Add ``obj`` and everything it references; a different object under an existing
        name is an error."""
        if isinstance(obj, FeatureService):
            for member in obj.members:
                self.add(member.view if not isinstance(member, OnDemandFeature) else member)
        elif isinstance(obj, FeatureView):
            for entity in obj.entities:
                self.add(entity)
        table = self._by_kind[obj.kind]
        existing = table.get(obj.name)
        if existing is not None and existing is not obj and existing.version != obj.version:
            raise DefinitionError(
                f"{_KIND_LABEL[obj.kind]} name {obj.name!r} is defined twice with different "
                f"definitions (versions {existing.version[:12]} and {obj.version[:12]}); "
                "names must be unique per kind"
            )
        table[obj.name] = obj

    def all(self) -> list[Definition]:
        """Every object, entities first, services last (dependency order)."""
        return [obj for kind in KINDS for obj in self._by_kind[kind].values()]

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def get(self, kind: str, name: str) -> Any:
        try:
            return self._by_kind[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise FeatureNotFoundError(
                f"unknown {_KIND_LABEL[kind]} {name!r}; defined: {known}"
            ) from None

    def service(self, name_or_obj: str | FeatureService) -> FeatureService:
        if isinstance(name_or_obj, FeatureService):
            return name_or_obj
        result: FeatureService = self.get("feature_service", name_or_obj)
        return result

    def view(self, name: str) -> FeatureView:
        result: FeatureView = self.get("feature_view", name)
        return result

    def views(self) -> list[FeatureView]:
        return [v for v in self._by_kind["feature_view"].values() if isinstance(v, FeatureView)]

    def __len__(self) -> int:
        return sum(len(t) for t in self._by_kind.values())


_DEFINITION_TYPES = (Entity, FeatureView, OnDemandFeature, FeatureService)


def import_user_file(path: Path, *, prefix: str, what: str) -> ModuleType:
    """Import the user's Python file ``path`` (``features.py``, ``train.py``, a label
    job's module) as a module of its own, named ``prefix`` and a hash of its path. A
    file that raises on import is a :class:`DefinitionError` naming ``what`` and the
    file (one that raises a DefinitionError itself keeps it)."""
    resolved = Path(path).resolve()
    name = f"{prefix}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise DefinitionError(f"{what}: cannot import {str(resolved)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except DefinitionError:
        sys.modules.pop(name, None)
        raise
    except Exception as exc:
        sys.modules.pop(name, None)
        raise DefinitionError(
            f"{what} {str(resolved)!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    return module
