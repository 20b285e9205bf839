"""Fixtures for the registry tests: a registry on a fresh SQLite file or PostgreSQL
schema, a simulated clock, and a factory that registers small models."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prodml.core import RegistryConfig, SimulatedClock
from prodml.registry import ModelRegistry, ModelVersion, Signature, infer_signature
from prodml.storage import ArtifactStore, LocalBlobStore, MetadataDB

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
BLESSED: dict[str, Any] = {
    "status": "BLESSED",
    "checks": [{"name": "auc", "passed": True, "detail": "auc 0.81 >= 0.70"}],
}
BLOCKED: dict[str, Any] = {
    "status": "BLOCKED",
    "checks": [
        {"name": "auc", "passed": False, "detail": "auc 0.61 < champion 0.70"},
        {"name": "latency", "passed": True, "detail": "p99 4 ms <= 50 ms"},
    ],
}

Target = tuple[str, "str | None"]


@dataclass
class Env:
    """One registry and everything under it, for tests to poke at directly."""

    registry: ModelRegistry
    db: MetadataDB
    store: ArtifactStore
    clock: SimulatedClock
    artifacts_dir: Path
    target: Target


OpenEnv = Callable[..., Env]


@pytest.fixture
def open_env(tmp_path: Path, fixed_actor: str) -> Iterator[OpenEnv]:
    """``open_env(target, config=None)``: a registry on ``target`` with artifacts under
    ``tmp_path/artifacts``; every database opened is closed afterwards."""
    opened: list[MetadataDB] = []

    def make(target: Target, config: RegistryConfig | None = None) -> Env:
        url, schema = target
        db = MetadataDB.open(url, schema_name=schema)
        opened.append(db)
        artifacts_dir = tmp_path / "artifacts"
        store = ArtifactStore(LocalBlobStore(artifacts_dir))
        clock = SimulatedClock(T0)
        registry = ModelRegistry(db, store, clock, config)
        return Env(registry, db, store, clock, artifacts_dir, target)

    yield make
    for db in opened:
        db.close()


@pytest.fixture
def sqlite_target(tmp_path: Path) -> Target:
    """``(url, None)`` of a fresh SQLite file."""
    return f"sqlite:///{tmp_path}/state/meta.db", None


@pytest.fixture
def env(open_env: OpenEnv, sqlite_target: Target) -> Env:
    """A registry on a fresh SQLite file."""
    return open_env(sqlite_target)


@pytest.fixture
def env_any(open_env: OpenEnv, db_target: Target) -> Env:
    """A registry on a fresh database of each dialect (PostgreSQL when reachable)."""
    return open_env(db_target)


@pytest.fixture
def fixed_actor(monkeypatch: pytest.MonkeyPatch) -> str:
    """The default actor (``PRODML_ACTOR``), so audit expectations do not depend on the
    OS user; every registry fixture here uses it."""
    monkeypatch.setenv("PRODML_ACTOR", "tester")
    return "tester"


@pytest.fixture(scope="session")
def small_signature() -> Signature:
    """The signature of a one-column float model."""
    return infer_signature(pd.DataFrame({"x": [0.0, 1.0]}), np.array([0.0, 1.0]))


RegisterFn = Callable[..., ModelVersion]


def _registrar(registry: ModelRegistry, signature: Signature) -> RegisterFn:
    def register(name: str = "m", **kwargs: Any) -> ModelVersion:
        kwargs.setdefault("format", "cloudpickle")
        kwargs.setdefault("signature", signature)
        model = {"payload": uuid.uuid4().hex}  # distinct bytes for every version
        return registry.register(name, model, **kwargs)

    return register


@pytest.fixture
def registrar(small_signature: Signature) -> Callable[[ModelRegistry], RegisterFn]:
    """``registrar(registry)``: a ``register(name, **kwargs)`` for that registry."""
    return lambda registry: _registrar(registry, small_signature)


@pytest.fixture
def register(env: Env, small_signature: Signature) -> RegisterFn:
    """``register(name="m", **kwargs)``: a new version of a tiny cloudpickled model."""
    return _registrar(env.registry, small_signature)


@pytest.fixture
def blessed() -> dict[str, Any]:
    """A passing gate result."""
    return dict(BLESSED)


@pytest.fixture
def blocked() -> dict[str, Any]:
    """A failing gate result with one failed check."""
    return dict(BLOCKED)
