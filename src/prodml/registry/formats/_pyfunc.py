"""The ``mlflow_pyfunc`` format: an MLflow model directory, archived as deterministic bytes.

The "model" saved is a path to a local MLflow model directory (one holding ``MLmodel``).
:func:`archive` packs it as a gzipped tar with sorted entries and fixed times, owners and
modes, so the same directory always gives the same bytes and fingerprint. Loading extracts
the archive into a temporary directory that lives as long as the returned
:class:`PyfuncModel` and calls ``mlflow.pyfunc.load_model``. MLflow (the ``prodml[mlflow]``
extra) is imported only then. Pyfunc flavours unpickle, so the format is ``trusted_only``.

>>> import tempfile
>>> from pathlib import Path
>>> tmp = tempfile.TemporaryDirectory()
>>> _ = (Path(tmp.name) / "MLmodel").write_text("flavors: {}\\n")
>>> archive(tmp.name) == archive(tmp.name), PyfuncFormat().can_save(tmp.name)
(True, True)
>>> tmp.cleanup()
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prodml.core import ProdMLError, StorageError, TrainingError
from prodml.registry.formats._base import ModelFormat, to_scores

__all__ = ["PyfuncFormat", "PyfuncModel", "archive", "extract"]

_MLMODEL = "MLmodel"


def _tar_entry(name: str, *, directory: bool, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def archive(directory: str | os.PathLike[str]) -> bytes:
    """``directory`` as a gzipped tar whose bytes depend only on its file names and contents."""
    root = Path(directory)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).parts):
            name = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise TrainingError(
                    f"MLflow model directory {root}: {name} is a symbolic link; "
                    "expected only regular files and directories"
                )
            if path.is_dir():
                tar.addfile(_tar_entry(name, directory=True))
            else:
                data = path.read_bytes()
                tar.addfile(_tar_entry(name, directory=False, size=len(data)), io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


def extract(data: bytes, target: Path) -> None:
    """Unpack an :func:`archive` into ``target`` (paths outside it are refused)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r") as tar:
            tar.extractall(target, filter="data")
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise StorageError(
            f"model bytes are not a readable MLflow model archive ({type(exc).__name__}: {exc})"
        ) from exc
    if not (target / _MLMODEL).is_file():
        raise StorageError(f"MLflow model archive has no {_MLMODEL} file at its root")


class PyfuncModel:
    """A loaded MLflow pyfunc model and the temporary directory its files live in.

    The directory is removed when this object is garbage-collected or :meth:`close` is
    called, whichever comes first.
    """

    def __init__(self, model: Any, directory: Path) -> None:
        self.model = model
        self.path = directory
        self._cleanup = weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)

    def predict(self, X: pd.DataFrame) -> Any:
        """The pyfunc model's own ``predict`` output."""
        return self.model.predict(X)

    def close(self) -> None:
        """Remove the extracted files now."""
        self._cleanup()


class PyfuncFormat(ModelFormat):
    """MLflow pyfunc models, saved from and loaded into local model directories."""

    name = "mlflow_pyfunc"
    trusted_only = True
    requires = ("mlflow",)
    extra = "mlflow"

    def can_save(self, model: Any) -> bool:
        return isinstance(model, str | os.PathLike) and (Path(model) / _MLMODEL).is_file()

    def save(self, model: Any) -> bytes:
        if not self.can_save(model):
            raise TrainingError(
                f"mlflow_pyfunc format: expected a path to an MLflow model directory "
                f"containing {_MLMODEL}, got {model!r}"
            )
        return archive(model)

    def load(self, data: bytes) -> PyfuncModel:
        import mlflow.pyfunc

        directory = Path(tempfile.mkdtemp(prefix="prodml-pyfunc-"))
        try:
            extract(data, directory / "model")
            model = mlflow.pyfunc.load_model(str(directory / "model"))
        except ProdMLError:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        except Exception as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise StorageError(
                f"MLflow model could not be loaded ({type(exc).__name__}: {exc})"
            ) from exc
        return PyfuncModel(model, directory)

    def predict(self, model: Any, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """``model.predict(X)`` as a NumPy array, 1-d when the model has one output."""
        return to_scores(model.predict(X))
