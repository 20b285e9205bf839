"""Online-store backends as plugins: name → ``module:Class``, imported only when used.

>>> sorted(ONLINE_BACKENDS)
['memory', 'redis', 'sqlite']
>>> load_backend("memory").__name__
'MemoryOnlineStore'
"""

from __future__ import annotations

from pathlib import Path

from prodml.core import Plugins
from prodml.features.online._base import OnlineConfig, OnlineStore

__all__ = ["ONLINE_BACKENDS", "load_backend", "open_online_store"]

ONLINE_BACKENDS: Plugins[OnlineStore] = Plugins(
    "online_store.type",
    OnlineStore,
    {
        "memory": "prodml.features.online._memory:MemoryOnlineStore",
        "redis": "prodml.features.online._redis:RedisOnlineStore",
        "sqlite": "prodml.features.online._sqlite:SqliteOnlineStore",
    },
    extras={"redis": "redis"},
)


def load_backend(name: str) -> type[OnlineStore]:
    """The store class registered under ``name``."""
    return ONLINE_BACKENDS.load(name)


def open_online_store(config: OnlineConfig, root: Path) -> OnlineStore:
    """Open the online store a config section describes; relative paths are under ``root``."""
    return load_backend(config.type).from_config(config, Path(root))
