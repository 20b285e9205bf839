"""Online store: the latest feature values per entity, read on the request path.

Backends (``memory``, ``sqlite``, ``redis``) are plugins in :data:`ONLINE_BACKENDS`,
opened from config by :func:`open_online_store`; ``RedisOnlineStore`` is imported only
when first used, since redis-py is an optional dependency (``prodml[redis]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prodml.features.online._base import OnlineConfig, OnlineStore
from prodml.features.online._keys import encode_entity_key, encode_entity_keys
from prodml.features.online._memory import MemoryOnlineStore
from prodml.features.online._read import OnlineRead
from prodml.features.online._registry import ONLINE_BACKENDS, load_backend, open_online_store
from prodml.features.online._sqlite import SqliteOnlineStore

if TYPE_CHECKING:
    from prodml.features.online._redis import RedisOnlineStore

__all__ = [
    "ONLINE_BACKENDS",
    "MemoryOnlineStore",
    "OnlineConfig",
    "OnlineRead",
    "OnlineStore",
    "RedisOnlineStore",
    "SqliteOnlineStore",
    "encode_entity_key",
    "encode_entity_keys",
    "load_backend",
    "open_online_store",
]


def __getattr__(name: str) -> Any:
    if name == "RedisOnlineStore":
        from prodml.features.online._redis import RedisOnlineStore

        return RedisOnlineStore
    raise AttributeError(f"module 'prodml.features.online' has no attribute {name!r}")
