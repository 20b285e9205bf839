"""``@prodml.trainer``: declare the user's training function and what it trains on.

The function receives a :class:`TrainingData` (time-split frames, params, seed, the
warm-start parent, the run) and returns a fitted model::

    @prodml.trainer(service="flight_delay", label="late", entity_rows=flight_rows,
                    timestamp="sched_dep", params={"max_iter": 200})
    def train(data):
        model = HistGradientBoostingClassifier(**data.params, random_state=data.seed)
        return model.fit(data.X_train, data.y_train, sample_weight=data.w_train)

It lives in ``train.py`` (``[training] module``); :func:`load_trainer` imports it.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from prodml.core import ConfigError, DefinitionError, TrainingConfig, check_name
from prodml.features import import_user_file
from prodml.registry import Run

__all__ = ["EntityRows", "TrainerSpec", "TrainingData", "load_trainer", "trainer"]

Task = Literal["classification", "regression"]
EntityRows = Callable[[datetime, datetime], "pd.DataFrame | pa.Table"]


@dataclass
class TrainingData:
    """What a training function gets: time-ordered splits and the run's context."""

    X_train: pd.DataFrame
    y_train: pd.Series
    w_train: np.ndarray | None
    X_valid: pd.DataFrame | None
    y_valid: pd.Series | None
    params: dict[str, Any]
    seed: int
    features: list[str]
    parent: Any | None = None
    run: Run | None = None


@dataclass(frozen=True)
class TrainerSpec:
    """A training function and its declaration; calling it trains."""

    func: Callable[[TrainingData], Any]
    service: str
    label: str
    entity_rows: EntityRows | str | None = None
    timestamp: str = "event_timestamp"
    model_name: str | None = None
    inputs: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    task: Task = "classification"
    segments: tuple[str, ...] | None = None
    recency_half_life_days: float | None = None
    origin: str | None = None

    def __call__(self, data: TrainingData) -> Any:
        return self.func(data)

    @property
    def name(self) -> str:
        """The registered model name (default: the feature service's name)."""
        return self.model_name or self.service

    @property
    def qualname(self) -> str:
        """Where the function lives: ``train.py:train`` when loaded from the project."""
        return self.origin or f"{self.func.__module__}.{self.func.__qualname__}"

    def source_sha256(self) -> str | None:
        """SHA-256 of the training function's source (``None`` if unavailable)."""
        try:
            source = inspect.getsource(self.func)
        except (OSError, TypeError):
            return None
        return hashlib.sha256(source.encode("utf-8")).hexdigest()


def trainer(
    *,
    service: str,
    label: str,
    entity_rows: EntityRows | str | None = None,
    timestamp: str = "event_timestamp",
    model_name: str | None = None,
    inputs: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    task: Task = "classification",
    segments: Sequence[str] | None = None,
    recency_half_life_days: float | None = None,
) -> Callable[[Callable[[TrainingData], Any]], TrainerSpec]:
    """Declare a training function.

    ``entity_rows`` gives the labelled rows of a time window: a function
    ``(start, end) -> DataFrame | Table`` or a Parquet path relative to the project;
    ``timestamp`` names their time column. ``inputs`` adds entity-row columns (say
    ``origin``) to the service's features as model inputs. ``segments`` overrides
    ``[training] segments``; ``recency_half_life_days`` weights recent rows more.
    """
    check_name(service, kind="feature service")
    if model_name is not None:
        check_name(model_name, kind="model")
    if task not in ("classification", "regression"):
        raise DefinitionError(f"trainer task {task!r}: expected 'classification' or 'regression'")
    if recency_half_life_days is not None and recency_half_life_days <= 0:
        raise DefinitionError(
            f"trainer recency_half_life_days {recency_half_life_days!r}: expected > 0"
        )

    def wrap(func: Callable[[TrainingData], Any]) -> TrainerSpec:
        return TrainerSpec(
            func=func,
            service=service,
            label=label,
            entity_rows=entity_rows,
            timestamp=timestamp,
            model_name=model_name,
            inputs=tuple(inputs),
            params=dict(params or {}),
            seed=seed,
            task=task,
            segments=None if segments is None else tuple(segments),
            recency_half_life_days=recency_half_life_days,
        )

    return wrap


def load_trainer(root: Path, config: TrainingConfig) -> TrainerSpec:
    """Import ``[training] module`` and return its trainer (the one named by
    ``[training] trainer``, else the only ``@prodml.trainer`` in the module)."""
    path = (root / config.module).resolve()
    if not path.is_file():
        raise ConfigError(
            f"[training] module {config.module!r}: no such file {str(path)!r}; write a "
            "train.py with a @prodml.trainer function"
        )
    module = import_user_file(path, prefix="prodml_user_train", what="training module")
    found = {k: v for k, v in vars(module).items() if isinstance(v, TrainerSpec)}
    if config.trainer is not None:
        if config.trainer not in found:
            raise ConfigError(
                f"[training] trainer {config.trainer!r}: no @prodml.trainer function of that "
                f"name in {config.module}; found: {sorted(found) or 'none'}"
            )
        return replace(found[config.trainer], origin=f"{config.module}:{config.trainer}")
    if len(found) != 1:
        raise ConfigError(
            f"{config.module} defines {len(found)} @prodml.trainer functions "
            f"({sorted(found) or 'none'}); expected exactly one, or name it in [training] trainer"
        )
    name, only = next(iter(found.items()))
    return replace(only, origin=f"{config.module}:{name}")
