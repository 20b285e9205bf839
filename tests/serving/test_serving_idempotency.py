"""One contract suite over every registered idempotency store (memory, Redis), then each
one's own."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from contractkit import Contract
from prodml.core.errors import ConfigError, StorageError
from prodml.serving._idempotency import (
    IDEMPOTENCY_STORES,
    IdempotencyOptions,
    IdempotencyStore,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
    open_idempotency_store,
)
from servicekit import redis_url_or_skip


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Target:
    store: IdempotencyStore
    wait: Callable[[float], None]  # let ``seconds`` pass, for this store's notion of time


def _memory_target() -> Iterator[Target]:
    clock = FakeClock()

    def advance(seconds: float) -> None:
        clock.now += seconds

    store = open_idempotency_store("memory", clock_fn=clock)
    yield Target(store, advance)
    store.close()


def _redis_target() -> Iterator[Target]:
    import redis

    url = redis_url_or_skip()
    prefix = f"prodml:test:idem:{uuid.uuid4().hex}:"
    store = open_idempotency_store("redis", redis_url=url, redis_prefix=prefix)
    yield Target(store, time.sleep)
    store.close()
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


CONTRACT = Contract(
    IDEMPOTENCY_STORES,
    {"memory": _memory_target, "redis": _redis_target},
    integration={"redis"},
)


def test_idempotency_contract_covers_every_registered_store() -> None:
    CONTRACT.check()


@pytest.fixture(params=CONTRACT.cases())
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    for opened in CONTRACT.factory(request.param)():
        assert isinstance(opened.store, IDEMPOTENCY_STORES.load(request.param))
        yield opened


def test_missing_key_is_none(target: Target) -> None:
    assert target.store.get("ep:missing") is None


def test_first_put_wins_and_get_returns_it(target: Target) -> None:
    store = target.store
    assert store.put("ep:k1", b'{"y": 1}', ttl_s=60)
    assert not store.put("ep:k1", b'{"y": 2}', ttl_s=60)
    assert store.get("ep:k1") == b'{"y": 1}'


def test_keys_are_independent(target: Target) -> None:
    store = target.store
    assert store.put("a:k", b"A", ttl_s=60)
    assert store.put("b:k", b"B", ttl_s=60)
    assert (store.get("a:k"), store.get("b:k")) == (b"A", b"B")


def test_binary_values_round_trip(target: Target) -> None:
    value = bytes(range(256)) * 4
    assert target.store.put("ep:bin", value, ttl_s=60)
    assert target.store.get("ep:bin") == value


def test_values_expire_after_their_ttl(target: Target) -> None:
    store = target.store
    assert store.put("ep:short", b"old", ttl_s=0.2)
    assert store.put("ep:long", b"kept", ttl_s=60)
    assert store.get("ep:short") == b"old"
    target.wait(0.35)
    assert store.get("ep:short") is None
    assert store.get("ep:long") == b"kept"
    assert store.put("ep:short", b"new", ttl_s=60)  # a fresh write after expiry wins
    assert store.get("ep:short") == b"new"


def test_first_writer_wins_under_eight_threads(target: Target) -> None:
    store = target.store
    keys = [f"ep:race{k}" for k in range(20)]
    barrier = threading.Barrier(8)
    won: dict[str, list[int]] = {key: [] for key in keys}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for key in keys:
                barrier.wait()
                if store.put(key, f"writer-{i}".encode(), ttl_s=60):
                    with lock:
                        won[key].append(i)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for key in keys:
        assert len(won[key]) == 1, key
        assert store.get(key) == f"writer-{won[key][0]}".encode()


@pytest.mark.parametrize(
    ("key", "value", "ttl_s", "error"),
    [
        ("", b"v", 1.0, ValueError),
        ("k", "not bytes", 1.0, TypeError),
        ("k", b"v", 0.0, ValueError),
        ("k", b"v", -5, ValueError),
        ("k", b"v", float("inf"), ValueError),
        ("k", b"v", True, ValueError),
    ],
)
def test_put_rejects_bad_arguments(
    target: Target, key: str, value: object, ttl_s: float, error: type[Exception]
) -> None:
    with pytest.raises(error, match="idempotency"):
        target.store.put(key, value, ttl_s)  # type: ignore[arg-type]
    assert target.store.get("k") is None


def test_get_rejects_an_empty_key(target: Target) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        target.store.get("")


# --- memory ---------------------------------------------------------------------------


def test_memory_store_evicts_the_oldest_first() -> None:
    store = MemoryIdempotencyStore(FakeClock(), max_entries=3)
    for key in ("k1", "k2", "k3", "k4"):
        assert store.put(key, key.encode(), ttl_s=60)
    assert len(store) == 3
    assert store.get("k1") is None
    assert [store.get(k) for k in ("k2", "k3", "k4")] == [b"k2", b"k3", b"k4"]


def test_memory_store_drops_expired_entries_on_write() -> None:
    clock = FakeClock()
    store = MemoryIdempotencyStore(clock)
    for i in range(10):
        store.put(f"k{i}", b"v", ttl_s=1)
    clock.now += 1.0  # expiry is inclusive: a value lives for [put, put + ttl)
    store.put("fresh", b"v", ttl_s=1)
    assert len(store) == 1


def test_memory_store_clears_on_close() -> None:
    with MemoryIdempotencyStore() as store:
        store.put("k", b"v", ttl_s=60)
    assert len(store) == 0


def test_memory_store_rejects_a_bad_bound() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryIdempotencyStore(max_entries=0)


# --- redis ----------------------------------------------------------------------------


def test_unreachable_redis_is_a_storage_error_without_the_password() -> None:
    pytest.importorskip("redis")
    with pytest.raises(StorageError, match="unreachable") as info:
        RedisIdempotencyStore("redis://app:s3cret@127.0.0.1:1/0", timeout_s=0.5)
    assert "s3cret" not in str(info.value)
    assert "redis://app:***@127.0.0.1:1/0" in str(info.value)


def test_a_malformed_redis_url_is_a_config_error() -> None:
    pytest.importorskip("redis")
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        RedisIdempotencyStore("http://:pw@127.0.0.1:6379")


@pytest.mark.integration
def test_redis_store_keys_live_under_the_prefix_with_a_ttl() -> None:
    import redis

    url = redis_url_or_skip()
    prefix = f"prodml:test:idem:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(url)
    with RedisIdempotencyStore(url, prefix=prefix) as store:
        store.put("ep:k", b"v", ttl_s=30)
        assert client.get(prefix + "ep:k") == b"v"
        assert 0 < client.pttl(prefix + "ep:k") <= 30_000
    client.delete(prefix + "ep:k")
    client.close()


# --- open_idempotency_store -----------------------------------------------------------


def test_open_memory_store_uses_the_clock() -> None:
    clock = FakeClock()
    store = open_idempotency_store("memory", clock_fn=clock)
    assert isinstance(store, MemoryIdempotencyStore)
    store.put("k", b"v", ttl_s=5)
    clock.now += 5
    assert store.get("k") is None


@pytest.mark.integration
def test_open_redis_store() -> None:
    url = redis_url_or_skip()
    with open_idempotency_store("redis", redis_url=url) as store:
        assert isinstance(store, RedisIdempotencyStore)


def test_open_redis_store_needs_a_url() -> None:
    with pytest.raises(ConfigError, match=r"serving\.redis_url"):
        open_idempotency_store("redis")


def test_open_rejects_an_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="expected one of"):
        open_idempotency_store("metadata")  # type: ignore[arg-type]


def test_each_store_is_built_from_the_options_it_uses() -> None:
    clock = FakeClock()
    options = IdempotencyOptions(clock_fn=clock, max_entries=2, max_bytes=10_000)
    store = IDEMPOTENCY_STORES.load("memory").from_options(options)
    assert isinstance(store, MemoryIdempotencyStore)
    assert (store.max_entries, store.max_bytes) == (2, 10_000)
    with pytest.raises(ConfigError, match=r"serving\.redis_url"):
        IDEMPOTENCY_STORES.load("redis").from_options(options)
    with pytest.raises(TypeError, match="cannot be opened from idempotency options"):
        IdempotencyStore.from_options(options)
