"""Idempotency keys: a retried request with the same key, within a TTL, gets the same
response bytes instead of a second prediction (and a second prediction-log record).

:class:`IdempotencyStore` is the interface: ``get`` a stored response, ``put`` one
with a TTL — atomically, first writer wins, so two replicas racing on one retry agree
on a single answer. Callers namespace keys themselves (endpoint + client key). Public
methods check their arguments, backends write ``_get`` / ``_put`` / ``_close``.

* :class:`MemoryIdempotencyStore` — one process: a dict in insertion order with expiry,
  bounded by bytes (``serving.idempotency_max_bytes``; oldest entries evicted first, a
  value larger than the cap not stored), thread-safe; time from ``clock_fn``.
* :class:`RedisIdempotencyStore` — shared by replicas: ``SET key value NX PX ttl``;
  its memory is Redis's, freed by the TTL; redis-py is imported only when this store is
  opened.

Stores are plugins: :data:`IDEMPOTENCY_STORES` maps a ``serving.idempotency_store`` name
to its class, which :meth:`IdempotencyStore.from_options` builds from the
:class:`IdempotencyOptions` every kind is opened with.

>>> now = [0.0]
>>> store = open_idempotency_store("memory", clock_fn=lambda: now[0])
>>> store.put("predict:abc", b'{"y": 1}', ttl_s=60), store.put("predict:abc", b"other", ttl_s=60)
(True, False)
>>> store.get("predict:abc")
b'{"y": 1}'
>>> now[0] = 60.0
>>> store.get("predict:abc") is None
True
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

from prodml.core import Plugins
from prodml.core.errors import ConfigError, StorageError
from prodml.storage import redact_url

if TYPE_CHECKING:
    import redis

__all__ = [
    "IDEMPOTENCY_STORES",
    "IdempotencyOptions",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "RedisIdempotencyStore",
    "open_idempotency_store",
]

DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
ENTRY_OVERHEAD = 200
"""Bytes an entry costs beyond its key and value (dict slot, tuple, object headers)."""


@dataclass(frozen=True)
class IdempotencyOptions:
    """What :func:`open_idempotency_store` passes to every kind; each takes what it uses."""

    redis_url: str | None = None
    clock_fn: Callable[[], float] = time.monotonic
    redis_prefix: str = "prodml:idem:"
    max_entries: int = DEFAULT_MAX_ENTRIES
    max_bytes: int = DEFAULT_MAX_BYTES


class IdempotencyStore(ABC):
    """Response bytes by idempotency key, each kept for its own TTL."""

    @classmethod
    def from_options(cls, options: IdempotencyOptions) -> IdempotencyStore:
        """Open the store from the serving options (the constructor of a registered kind)."""
        raise TypeError(f"{cls.__name__} cannot be opened from idempotency options")

    def get(self, key: str) -> bytes | None:
        """The response stored under ``key``, or None if there is none or it expired."""
        _check_key(key)
        return self._get(key)

    def put(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Store ``value`` for ``ttl_s`` seconds unless ``key`` already holds a live value.

        True when this call stored it; False when another writer got there first (then
        ``get`` returns theirs) or when the store cannot hold a value this large (then
        nothing is stored).
        """
        _check_key(key)
        if not isinstance(value, bytes):
            raise TypeError(
                f"idempotency value for {key!r}: expected bytes, got {type(value).__name__}"
            )
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not ttl_s > 0:
            raise ValueError(f"idempotency ttl_s for {key!r}: expected a number > 0, got {ttl_s!r}")
        if not math.isfinite(ttl_s):
            raise ValueError(
                f"idempotency ttl_s for {key!r}: expected a finite number, got {ttl_s!r}"
            )
        return self._put(key, value, float(ttl_s))

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abstractmethod
    def _get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def _put(self, key: str, value: bytes, ttl_s: float) -> bool: ...

    def _close(self) -> None:
        return None


class MemoryIdempotencyStore(IdempotencyStore):
    """In-process store of at most ``max_bytes`` (keys, values and
    :data:`ENTRY_OVERHEAD` per entry) and ``max_entries`` entries; past either the
    oldest-written keys are evicted, and a value that alone exceeds ``max_bytes`` is not
    stored.

    >>> store = MemoryIdempotencyStore(max_bytes=1000)
    >>> store.put("a", b"x" * 500, 60), store.put("b", b"x" * 500, 60)
    (True, True)
    >>> store.get("a") is None, store.size_bytes <= 1000   # "a" made room for "b"
    (True, True)
    >>> store.put("big", b"x" * 1000, 60), store.get("b") is not None
    (False, True)
    """

    def __init__(
        self,
        clock_fn: Callable[[], float] = time.monotonic,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        for name, bound in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
                raise ValueError(
                    f"MemoryIdempotencyStore: {name} must be an integer >= 1, got {bound!r}"
                )
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock_fn
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, options: IdempotencyOptions) -> MemoryIdempotencyStore:
        """A store bounded by ``max_entries`` and ``max_bytes``, timed by ``clock_fn``."""
        return cls(options.clock_fn, max_entries=options.max_entries, max_bytes=options.max_bytes)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """What the stored entries cost, as counted against ``max_bytes``."""
        return self._bytes

    def _get(self, key: str) -> bytes | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= now:
                self._drop(key)
                return None
            return entry[1]

    def _put(self, key: str, value: bytes, ttl_s: float) -> bool:
        now = self._clock()
        entries = self._entries
        cost = _cost(key, value)
        with self._lock:
            entry = entries.get(key)
            if entry is not None:
                if entry[0] > now:
                    return False
                self._drop(key)
            if cost > self.max_bytes:
                return False  # evicting everything would still not make room
            while entries and next(iter(entries.values()))[0] <= now:
                self._drop(next(iter(entries)))  # expired at the old end: cheap to drop now
            while entries and (
                len(entries) >= self.max_entries or self._bytes + cost > self.max_bytes
            ):
                self._drop(next(iter(entries)))
            entries[key] = (now + ttl_s, value)
            self._bytes += cost
            return True

    def _drop(self, key: str) -> None:
        """Remove ``key``'s entry and its bytes (the lock is held)."""
        _, value = self._entries.pop(key)
        self._bytes -= _cost(key, value)

    def _close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


class RedisIdempotencyStore(IdempotencyStore):
    """Store in Redis under ``prefix + key``; Redis expires keys itself.

    The constructor pings the server so an unreachable Redis fails at startup, with a
    :class:`StorageError` naming the URL (password masked). ``timeout_s`` bounds every
    call: an idempotency check must not hang a request.
    """

    def __init__(self, url: str, prefix: str = "prodml:idem:", *, timeout_s: float = 2.0) -> None:
        import redis

        self._where = f"idempotency store {redact_url(url)}"
        self._error: type[Exception] = redis.RedisError
        self.prefix = prefix
        try:
            self._client: redis.Redis[bytes] = redis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        except ValueError as exc:
            raise ConfigError(f"{self._where}: invalid Redis URL: {exc}") from None
        try:
            self._client.ping()
        except redis.RedisError as exc:
            self._client.close()
            raise StorageError(f"{self._where}: Redis is unreachable: {exc}") from None

    @classmethod
    def from_options(cls, options: IdempotencyOptions) -> RedisIdempotencyStore:
        """A store at ``redis_url`` (required) under ``redis_prefix``."""
        if not options.redis_url:
            raise ConfigError("serving.redis_url: the 'redis' idempotency store needs a Redis URL")
        return cls(options.redis_url, options.redis_prefix)

    def _get(self, key: str) -> bytes | None:
        try:
            value: bytes | None = self._client.get(self.prefix + key)
        except self._error as exc:
            raise StorageError(f"{self._where}: get {key!r} failed: {exc}") from None
        return value

    def _put(self, key: str, value: bytes, ttl_s: float) -> bool:
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        try:
            stored = self._client.set(self.prefix + key, value, nx=True, px=ttl_ms)
        except self._error as exc:
            raise StorageError(f"{self._where}: put {key!r} failed: {exc}") from None
        return bool(stored)

    def _close(self) -> None:
        self._client.close()


#: Idempotency stores by ``serving.idempotency_store`` name: ``module:Class``, imported
#: only when opened.
IDEMPOTENCY_STORES: Plugins[IdempotencyStore] = Plugins(
    "serving.idempotency_store",
    IdempotencyStore,
    {
        "memory": "prodml.serving._idempotency:MemoryIdempotencyStore",
        "redis": "prodml.serving._idempotency:RedisIdempotencyStore",
    },
    extras={"redis": "redis"},
)


def open_idempotency_store(
    kind: Literal["memory", "redis"],
    *,
    redis_url: str | None = None,
    clock_fn: Callable[[], float] = time.monotonic,
    redis_prefix: str = "prodml:idem:",
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> IdempotencyStore:
    """The idempotency store ``kind`` names in :data:`IDEMPOTENCY_STORES`
    (``serving.idempotency_store`` in the config; ``max_bytes`` bounds the memory store:
    ``serving.idempotency_max_bytes``)."""
    if kind not in IDEMPOTENCY_STORES:
        raise ConfigError(
            f"serving.idempotency_store: expected one of {sorted(IDEMPOTENCY_STORES)}, got {kind!r}"
        )
    options = IdempotencyOptions(
        redis_url=redis_url,
        clock_fn=clock_fn,
        redis_prefix=redis_prefix,
        max_entries=max_entries,
        max_bytes=max_bytes,
    )
    return IDEMPOTENCY_STORES.load(kind).from_options(options)


def _cost(key: str, value: bytes) -> int:
    """The bytes an entry is counted for: its key, its value and the overhead."""
    return len(key) + len(value) + ENTRY_OVERHEAD


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"idempotency key: expected a non-empty string, got {key!r}")
