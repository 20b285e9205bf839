"""The ``skops`` format: scikit-learn models saved without pickle, loaded only when every
type they hold is allow-listed.

skops names files and objects inside its zip archive by ``id()`` and stamps the current
time on every entry, so the same model saved twice gives different bytes. :func:`canonical`
renumbers ids and files in the order they appear and fixes the timestamps, so equal models
give equal bytes and therefore equal SHA-256 fingerprints within one environment.

On load, the types skops does not trust by default are accepted only when they are
*classes* from an allow-listed package (:data:`ALLOWED_PREFIXES`); functions (``builtins.eval``,
``numpy.load``) and anything from other packages are refused with a :class:`ConfigError`
telling the user to register the model in the ``cloudpickle`` format instead.

>>> is_allowed("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")
True
>>> is_allowed("builtins.eval"), is_allowed("mypackage.Model")
(False, False)
"""

from __future__ import annotations

import importlib
import io
import zipfile
from pathlib import PurePosixPath
from typing import Any, ClassVar

import orjson
import skops.io as sio  # type: ignore[import-untyped, unused-ignore]
from sklearn.base import BaseEstimator  # type: ignore[import-untyped, unused-ignore]

from prodml.core import ConfigError, StorageError, TrainingError
from prodml.registry.formats._base import ModelFormat

__all__ = ["ALLOWED_PREFIXES", "SkopsFormat", "canonical", "is_allowed"]

#: Packages whose classes a skops archive may hold beyond skops' own trusted set.
ALLOWED_PREFIXES: tuple[str, ...] = ("builtins.", "collections.", "numpy.", "scipy.", "sklearn.")

_SCHEMA = "schema.json"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def _resolve(path: str) -> Any:
    """The object at a dotted path such as ``pkg.module.Class.Inner``, or None."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            found = getattr(found, attr, None)
        return found
    return None


def is_allowed(type_path: str) -> bool:
    """Whether a type skops reports as untrusted may be loaded: a class (not a function)
    from one of :data:`ALLOWED_PREFIXES`."""
    if not type_path.startswith(ALLOWED_PREFIXES):
        return False
    return isinstance(_resolve(type_path), type)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.create_system = 0
    info.external_attr = 0o644 << 16
    return info


def _fixed_times(data: bytes) -> bytes:
    """A zip archive (such as a scipy ``.npz``) rewritten with fixed entry timestamps."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            info = _entry(item.filename)
            info.compress_type = item.compress_type
            dst.writestr(info, src.read(item))
    return out.getvalue()


def canonical(raw: bytes) -> bytes:
    """A skops archive rewritten so that its bytes depend only on the saved model:
    object ids and file names renumbered in order of first appearance, fixed times."""
    return canonical_with_types(raw)[0]


TypeKey = frozenset[tuple[tuple[str, str], ...]]


def canonical_with_types(raw: bytes) -> tuple[bytes, TypeKey]:
    """:func:`canonical`, and a key naming every type the archive refers to: the string
    attributes of each schema node (class, module, loader, function paths …). Archives
    with equal keys refer to the same types, so they share one safety verdict."""
    with zipfile.ZipFile(io.BytesIO(raw)) as src:
        schema = orjson.loads(src.read(_SCHEMA))
        members = set(src.namelist()) - {_SCHEMA}
        ids: dict[int, int] = {}
        files: dict[str, str] = {}
        shapes: set[tuple[tuple[str, str], ...]] = set()

        def renumber(node: Any) -> None:
            # Visits only dicts and lists (most values are scalars): this walk is a
            # measurable part of every registration.
            if isinstance(node, list):
                for item in node:
                    if isinstance(item, dict | list):
                        renumber(item)
                return
            strings = []
            for key, value in node.items():
                if isinstance(value, str):
                    if key != "file":
                        strings.append((key, value))
                    elif value in members:
                        suffix = PurePosixPath(value).suffix
                        node[key] = files.setdefault(value, f"{len(files) + 1}{suffix}")
                elif key == "__id__" and isinstance(value, int):
                    node[key] = ids.setdefault(value, len(ids) + 1)
                elif isinstance(value, dict | list):
                    renumber(value)
            strings.sort()
            shapes.add(tuple(strings))

        renumber(schema)
        unreferenced = sorted(members - set(files))
        if unreferenced:
            raise StorageError(
                f"skops archive holds files its schema does not reference: {unreferenced}"
            )
        contents = {new: src.read(old) for old, new in files.items()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name, data in contents.items():
            dst.writestr(_entry(name), _fixed_times(data) if name.endswith(".npz") else data)
        dst.writestr(_entry(_SCHEMA), orjson.dumps(schema))
    return out.getvalue(), frozenset(shapes)


class SkopsFormat(ModelFormat):
    """scikit-learn estimators and pipelines saved with skops (no pickle on load)."""

    name = "skops"
    trusted_only = False
    #: Safety verdicts by :data:`TypeKey`: retraining the same pipeline skips the check.
    #: Loading always checks the bytes themselves, so a verdict only picks the format.
    _verdicts: ClassVar[dict[TypeKey, bool]] = {}
    _MAX_VERDICTS = 1024

    def can_save(self, model: Any) -> bool:
        return self.save_if_safe(model) is not None

    def save_if_safe(self, model: Any) -> bytes | None:
        if not isinstance(model, BaseEstimator):
            return None
        try:
            data, types = canonical_with_types(self._dumps(model))
            safe = self._verdicts.get(types)
            if safe is None:
                safe = not self._refused(data)
                if len(self._verdicts) < self._MAX_VERDICTS:
                    self._verdicts[types] = safe
            return data if safe else None
        except (TrainingError, StorageError):
            return None

    def save(self, model: Any) -> bytes:
        return canonical(self._dumps(model))

    @staticmethod
    def _dumps(model: Any) -> bytes:
        try:
            raw: bytes = sio.dumps(model)
        except Exception as exc:
            raise TrainingError(
                f"model of type {type(model).__name__} cannot be saved with skops "
                f"({type(exc).__name__}: {exc}): register it in the 'cloudpickle' format instead"
            ) from exc
        return raw

    def load(self, data: bytes) -> Any:
        untrusted = self._untrusted(data)
        refused = [name for name in untrusted if not is_allowed(name)]
        if refused:
            raise ConfigError(
                f"skops model holds types outside the allow-list ({', '.join(ALLOWED_PREFIXES)}"
                f" classes): {', '.join(refused)}; register the model in the 'cloudpickle' "
                "format instead"
            )
        try:
            return sio.loads(data, trusted=untrusted)
        except Exception as exc:
            raise StorageError(
                f"skops model could not be loaded ({type(exc).__name__}: {exc})"
            ) from exc

    def _untrusted(self, data: bytes) -> list[str]:
        try:
            return list(sio.get_untrusted_types(data=data))
        except Exception as exc:
            raise StorageError(
                f"model bytes are not a readable skops archive ({type(exc).__name__}: {exc})"
            ) from exc

    def _refused(self, data: bytes) -> list[str]:
        return [name for name in self._untrusted(data) if not is_allowed(name)]
