"""Online-store backends as plugins: name → ``module:Class``, imported only when used.

>>> sorted(ONLINE_BACKENDS)
['memory', 'redis', 'sqlite']
>>> load_backend("memory").__name__
'MemoryOnlineStore'
"""

from __future__ import annotations

import importlib
from pathlib import Path

from prodml.core import ConfigError
from prodml.features.online._base import OnlineConfig, OnlineStore

__all__ = ["ONLINE_BACKENDS", "load_backend", "open_online_store"]

ONLINE_BACKENDS: dict[str, str] = {
    "memory": "prodml.features.online._memory:MemoryOnlineStore",
    "redis": "prodml.features.online._redis:RedisOnlineStore",
    "sqlite": "prodml.features.online._sqlite:SqliteOnlineStore",
}

_EXTRAS = {"redis": "prodml[redis]"}


def load_backend(name: str) -> type[OnlineStore]:
    """The store class registered under ``name``."""
    try:
        target = ONLINE_BACKENDS[name]
    except KeyError:
        raise ConfigError(
            f"online_store.type: unknown backend {name!r}; expected one of {sorted(ONLINE_BACKENDS)}"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; install {_EXTRAS[name]}" if name in _EXTRAS else ""
        raise ConfigError(
            f"online_store.type {name!r}: cannot import {module_name} ({exc}){hint}"
        ) from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, OnlineStore)):
        raise ConfigError(f"online_store.type {name!r}: {target} is not an OnlineStore subclass")
    return cls


def open_online_store(config: OnlineConfig, root: Path) -> OnlineStore:
    """Open the online store a config section describes; relative paths are under ``root``."""
    return load_backend(config.type).from_config(config, Path(root))
