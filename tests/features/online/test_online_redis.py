"""The Redis online store's read path: each thread reads on a connection of its own,
a connection the server dropped is made again, and closing the store closes them all
(the contract suite covers what every backend must do)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import redis

from prodml.features.online import RedisOnlineStore
from rolloutkit import wait_until
from servicekit import redis_url_or_skip

DEADLINE_S = 120.0  # the longest any wait may take, however busy the machine

pytestmark = pytest.mark.integration

T0 = datetime(2013, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
NAMESPACE = "flights:1"


@pytest.fixture
def url() -> str:
    return redis_url_or_skip()


@pytest.fixture
def store(url: str) -> Iterator[RedisOnlineStore]:
    prefix = f"prodml-test-{uuid.uuid4().hex}"
    opened = RedisOnlineStore(url, key_prefix=prefix)
    ids = ["JFK", "LGA", "Zürich ✈", "東京"]
    opened.write_batch(
        NAMESPACE,
        pa.table({
            "origin": ids,
            "ts": pa.array([T0] * len(ids), pa.timestamp("us", tz="UTC")),
            "delay": [float(i) for i in range(len(ids))],
        }),
        key_columns=["origin"], event_time_column="ts", feature_columns=["delay"],
    )  # fmt: skip
    yield opened
    admin = redis.Redis.from_url(url)
    for key in admin.scan_iter(f"{prefix}*"):
        admin.delete(key)
    admin.close()
    opened.close()


def delays(store: RedisOnlineStore, *origins: str) -> list[object]:
    return store.read(NAMESPACE, [(o,) for o in origins], ["delay"], now=NOW, ttl=None).values[
        "delay"
    ]


def client_ids(url: str) -> set[int]:
    admin = redis.Redis.from_url(url)
    try:
        return {int(c["id"]) for c in admin.client_list()}
    finally:
        admin.close()


def own_id(store: RedisOnlineStore) -> int:
    """The id of the calling thread's own read connection."""
    return int(store._command("CLIENT", "ID"))


def test_keys_beyond_ascii_round_trip(store: RedisOnlineStore) -> None:
    assert delays(store, "東京", "Zürich ✈", "JFK", "nowhere") == [3.0, 2.0, 0.0, None]


def test_a_connection_the_server_dropped_is_made_again(store: RedisOnlineStore, url: str) -> None:
    assert delays(store, "LGA") == [1.0]
    first = own_id(store)
    admin = redis.Redis.from_url(url)
    try:
        assert admin.client_kill_filter(_id=first) == 1
    finally:
        admin.close()
    assert delays(store, "LGA", "JFK") == [1.0, 0.0]  # the same answer, on a new connection
    assert own_id(store) != first


def test_each_thread_reads_on_its_own_connection_and_close_closes_them(
    store: RedisOnlineStore, url: str
) -> None:
    seen: dict[str, tuple[list[object], int]] = {}
    barrier, read, checked = threading.Barrier(3), threading.Barrier(4), threading.Event()

    def work(name: str) -> None:
        barrier.wait(timeout=DEADLINE_S)
        seen[name] = (delays(store, "JFK", "東京"), own_id(store))
        read.wait(timeout=DEADLINE_S)
        checked.wait(timeout=DEADLINE_S)  # alive, and its connection with it, until checked

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        read.wait(timeout=DEADLINE_S)
        assert [values for values, _ in seen.values()] == [[0.0, 3.0]] * 3
        ids = {connection for _, connection in seen.values()}
        assert len(ids) == 3
        assert ids <= client_ids(url)
        store.close()
        wait_until(  # the server drops a closed client soon
            lambda: not ids & client_ids(url), timeout=DEADLINE_S, what="connections closed"
        )
    finally:
        checked.set()
        for thread in threads:
            thread.join(timeout=DEADLINE_S)


def test_a_command_error_keeps_the_connection_usable(store: RedisOnlineStore) -> None:
    before = own_id(store)
    with pytest.raises(redis.ResponseError):
        store._command("HMGET")  # wrong number of arguments: a whole error reply
    assert delays(store, "JFK") == [0.0]
    assert own_id(store) == before
