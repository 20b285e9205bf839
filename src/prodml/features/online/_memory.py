"""In-process online store: a dict per namespace, for tests and single-process demos.

Records hold the same encoded payloads as the other backends, so a read returns exactly
what SQLite or Redis would.

>>> store = MemoryOnlineStore()
>>> store.read("v:1", [(1,)], ["x"], now=_EPOCH, ttl=None).found
[False]
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from prodml.core import ConfigError, MemoryOnlineConfig
from prodml.features.online._base import OnlineConfig, OnlineStore
from prodml.features.online._batch import OnlineBatch
from prodml.features.online._read import Record

__all__ = ["MemoryOnlineStore"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# event µs, created µs (None when absent), payload
_Stored = tuple[int, int | None, bytes]


class MemoryOnlineStore(OnlineStore):
    """Online store held in a dict; thread-safe, lost when the process ends."""

    def __init__(self) -> None:
        self._namespaces: dict[str, dict[str, _Stored]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: OnlineConfig, root: Path) -> Self:
        if not isinstance(config, MemoryOnlineConfig):
            raise ConfigError(f"online_store.type: expected 'memory', got {config.type!r}")
        return cls()

    def _write(self, namespace: str, batch: OnlineBatch) -> int:
        created = [None] * len(batch) if batch.created_us is None else batch.created_us.tolist()
        rows = zip(batch.entity_keys, batch.event_us.tolist(), created, batch.payloads, strict=True)
        written = 0
        with self._lock:
            records = self._namespaces.setdefault(namespace, {})
            for key, event_us, created_us, payload in rows:
                old = records.get(key)
                if old is None or _newer(event_us, created_us, old[0], old[1]):
                    records[key] = (event_us, created_us, payload)
                    written += 1
        return written

    def _read(self, namespace: str, entity_keys: list[str]) -> list[Record | None]:
        records = self._namespaces.get(namespace, {})
        found: list[Record | None] = []
        for key in entity_keys:
            stored = records.get(key)
            found.append(None if stored is None else (stored[0], stored[2]))
        return found

    def _delete_namespace(self, namespace: str) -> int:
        with self._lock:
            return len(self._namespaces.pop(namespace, {}))

    def _close(self) -> None:
        with self._lock:
            self._namespaces.clear()


def _newer(event_us: int, created_us: int | None, old_event: int, old_created: int | None) -> bool:
    if event_us != old_event:
        return event_us > old_event
    return created_us is not None and old_created is not None and created_us > old_created
