"""The ``cloudpickle`` format: any Python model, including classes defined in user code.

Unpickling can run arbitrary code, so this format is ``trusted_only``: the registry loads
it only after verifying that the SHA-256 of the bytes, read from the project's own
artifact store, matches the one recorded at registration. Never load bytes from elsewhere.

>>> fmt = CloudpickleFormat()
>>> fmt.load(fmt.save({"weights": [1.0, 2.0]}))
{'weights': [1.0, 2.0]}
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle  # type: ignore[import-untyped, unused-ignore]

from prodml.core import StorageError, TrainingError
from prodml.registry.formats._base import ModelFormat

__all__ = ["CloudpickleFormat"]


class CloudpickleFormat(ModelFormat):
    """Models pickled with cloudpickle (protocol 5); load only verified, own-store bytes."""

    name = "cloudpickle"
    trusted_only = True

    def can_save(self, model: Any) -> bool:
        try:
            self.save(model)
        except TrainingError:
            return False
        return True

    def save(self, model: Any) -> bytes:
        try:
            data: bytes = cloudpickle.dumps(model, protocol=5)
        except Exception as exc:
            raise TrainingError(
                f"model of type {type(model).__name__} cannot be pickled "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return data

    def load(self, data: bytes) -> Any:
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise StorageError(
                f"model bytes could not be unpickled ({type(exc).__name__}: {exc}); "
                "is a package the model needs missing or of another version?"
            ) from exc
