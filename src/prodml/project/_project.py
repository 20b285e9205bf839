"""``Project.open(path)``: config → stores → layer objects.

Opening a project reads its config and opens the metadata DB and the artifact store;
each layer's object (features, registry, deployments, training, monitor) is built, and
its package imported, on first use. A command imports only the layers it touches:
``prodml models list`` reads the registry without loading pandas, DuckDB or SciPy.

Only ``prodml init`` (:meth:`Project.init`) creates a metadata DB unconditionally.
Opening a project whose metadata DB is missing or empty (SQLite: no file, a 0-byte
file, or no prodml tables; PostgreSQL: no prodml tables in the schema) creates it only
when the project has no state at all — no file in the state directory but the DB
(``meta.db`` or the configured SQLite file, and their ``-wal``/``-shm``/``-journal``
files), and no blob in the artifact store — which is what a hand-written
``prodml.toml`` opened for the first time looks like. A project with state (artifacts, logs, online or offline tables, snapshots…) is
refused with a :class:`~prodml.core.StorageError` naming the DB and how to restore it:
re-creating it empty would silently lose the registry, its audit trail and the
deployments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from prodml.core import (
    CONFIG_FILE,
    Clock,
    Config,
    ProjectNotFoundError,
    SqliteMetadataConfig,
    StorageError,
    SystemClock,
    load_config,
)
from prodml.project._scaffold import init_project
from prodml.registry import ModelRegistry, RegistryListener
from prodml.storage import ArtifactStore, MetadataDB, open_artifact_store, open_metadata_db

if TYPE_CHECKING:
    from prodml.features import FeatureStore
    from prodml.monitoring import Monitor
    from prodml.registry import DeploymentStore
    from prodml.retraining import Retraining
    from prodml.rollout import Rollouts
    from prodml.storage import LogStores
    from prodml.training import Training

__all__ = ["Project", "find_root", "project_state"]


class Project:
    """One prodml project on disk (or on its configured backends)."""

    def __init__(self, root: Path, config: Config, clock: Clock, *, new: bool = False) -> None:
        """Open the stores; ``new`` (a project being created) lets the metadata DB be
        created even beside existing state (see the module doc)."""
        self.root = root
        self.config = config
        self.clock = clock
        self.state_dir = root / config.project.state_dir
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, no permission, a read-only disk
            raise StorageError(
                f"project {root}: [project] state_dir {config.project.state_dir!r} cannot be "
                f"created at {self.state_dir} ({exc.strerror or exc}); expected a directory "
                "prodml can write to"
            ) from None
        self.artifacts: ArtifactStore = open_artifact_store(config.artifacts, root)
        self.db: MetadataDB = open_metadata_db(
            config.metadata,
            root,
            state=None if new else lambda: project_state(root, config, self.artifacts),
        )

    # Each layer's package is imported by its property, on first use (see the module doc).
    @cached_property
    def features(self) -> FeatureStore:
        from prodml.features import FeatureStore

        return FeatureStore(root=self.root, config=self.config, db=self.db, clock=self.clock)

    @cached_property
    def logs(self) -> LogStores:
        """The prediction and label logs, kept by the ``[logs] type`` backend."""
        from prodml.storage import open_log_stores

        return open_log_stores(self.state_dir, self.config.logs.type, self.config.logs)

    @cached_property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(
            self.db, self.artifacts, self.clock, self.config.registry,
            listeners=_listeners(self.config),
        )  # fmt: skip

    @cached_property
    def deployments(self) -> DeploymentStore:
        from prodml.registry import DeploymentStore

        return DeploymentStore(
            self.db, self.clock, self.config.registry, listeners=self.registry.listeners
        )

    @cached_property
    def training(self) -> Training:
        from prodml.training import Training

        return Training(
            root=self.root, config=self.config, features=self.features,
            registry=self.registry, clock=self.clock,
        )  # fmt: skip

    @cached_property
    def monitor(self) -> Monitor:
        from prodml.monitoring import Monitor

        return Monitor(
            config=self.config.monitoring, db=self.db, artifacts=self.artifacts,
            registry=self.registry, features=self.features, logs=self.logs, clock=self.clock,
        )  # fmt: skip

    @cached_property
    def rollout(self) -> Rollouts:
        """Rollout plans and the controller that acts on them; also the experiment
        analysis (:attr:`experiments`)."""
        from prodml.rollout import Rollouts

        return Rollouts(
            self.db, self.deployments, self.logs, self.clock, monitor=self.monitor.store
        )

    @cached_property
    def retraining(self) -> Retraining:
        """The retraining policies (``[[retraining.policies]]``) and their controller,
        which hands candidates to :attr:`rollout`."""
        from prodml.retraining import Retraining

        return Retraining(
            config=self.config.retraining, db=self.db, registry=self.registry,
            deployments=self.deployments, training=self.training, monitor=self.monitor.store,
            clock=self.clock, hand_off=self.rollout.hand_off,
        )  # fmt: skip

    @property
    def experiments(self) -> Rollouts:
        """``project.experiments.analyze(endpoint, …)``: the experiment analysis of an
        endpoint over its prediction and label logs (see :meth:`Rollouts.analyze`)."""
        return self.rollout

    @classmethod
    def open(
        cls,
        path: str | Path = ".",
        *,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Project:
        """Open the project whose ``prodml.toml`` is at or above ``path``."""
        root = find_root(Path(path))
        return cls(root, load_config(root, environ), clock or SystemClock())

    @classmethod
    def init(
        cls, path: str | Path = ".", *, name: str | None = None, clock: Clock | None = None
    ) -> Project:
        """Create a project at ``path`` (see :func:`init_project`) and open it."""
        root = init_project(Path(path), name=name)
        return cls(root, load_config(root), clock or SystemClock(), new=True)

    @property
    def name(self) -> str:
        return self.config.project.name

    def close(self) -> None:
        if "features" in vars(self):  # built on first use: nothing to close otherwise
            self.features.close()
        self.db.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r}, name={self.name!r})"


def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding ``prodml.toml``."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise ProjectNotFoundError(
        f"no {CONFIG_FILE} in {str(start)!r} or any parent directory; run `prodml init` to create a project"
    )


def project_state(root: Path, config: Config, artifacts: ArtifactStore) -> str | None:
    """What state the project holds besides its metadata DB (``None``: none at all):
    the state directory's entries holding a file, else blobs in the artifact store."""
    state_dir = root / config.project.state_dir
    dbs = [state_dir / "meta.db"]  # the default file, whichever backend is configured
    if isinstance(config.metadata, SqliteMetadataConfig):
        dbs.append(Path(config.metadata.path))
    db_files = {
        (db if db.is_absolute() else root / db).resolve().with_name(db.name + suffix)
        for db in dbs
        for suffix in ("", "-wal", "-shm", "-journal")
    }
    found: list[str] = []
    if state_dir.is_dir():
        for entry in sorted(state_dir.iterdir()):
            if entry.is_dir():
                if _holds_a_file(entry):
                    found.append(f"{entry.name}/")
            elif entry.resolve() not in db_files:
                found.append(entry.name)
    if found:
        return f"{state_dir} holds {', '.join(found)}"
    if artifacts.list():
        return f"the artifact store {artifacts.blobs!r} holds blobs"
    return None


def _holds_a_file(directory: Path) -> bool:
    return any(files for _, _, files in os.walk(directory))


def _listeners(config: Config) -> list[RegistryListener]:
    """The MLflow mirror when ``[mlflow] tracking_uri`` is set."""
    if config.mlflow.tracking_uri is None:
        return []
    from prodml.registry.mlflow import MlflowMirror  # optional extra, imported when configured

    return [MlflowMirror(config.mlflow)]
