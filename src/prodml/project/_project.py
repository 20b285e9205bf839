"""``Project.open(path)``: config → stores → layer objects.

Opening a project reads its config and opens the metadata DB and the artifact store;
each layer's object (features, registry, deployments, training, monitor) is built, and
its package imported, on first use. A command imports only the layers it touches:
``prodml models list`` reads the registry without loading pandas, DuckDB or SciPy.
"""

from __future__ import annotations

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
    from prodml.training import Training

__all__ = ["Project"]


class Project:
    """One prodml project on disk (or on its configured backends)."""

    def __init__(self, root: Path, config: Config, clock: Clock) -> None:
        self.root = root
        self.config = config
        self.clock = clock
        self.state_dir = root / config.project.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.db: MetadataDB = open_metadata_db(config.metadata, root)
        self.artifacts: ArtifactStore = open_artifact_store(config.artifacts, root)

    # Each layer's package is imported by its property, on first use (see the module doc).
    @cached_property
    def features(self) -> FeatureStore:
        from prodml.features import FeatureStore

        return FeatureStore(root=self.root, config=self.config, db=self.db, clock=self.clock)

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
            registry=self.registry, features=self.features, state_dir=self.state_dir,
            clock=self.clock,
        )  # fmt: skip

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
        return cls.open(root, clock=clock)

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


def _listeners(config: Config) -> list[RegistryListener]:
    """The MLflow mirror when ``[mlflow] tracking_uri`` is set."""
    if config.mlflow.tracking_uri is None:
        return []
    from prodml.registry.mlflow import MlflowMirror  # optional extra, imported when configured

    return [MlflowMirror(config.mlflow)]
