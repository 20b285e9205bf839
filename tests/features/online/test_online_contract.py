"""One contract suite run against every registered online-store backend (memory,
SQLite, Redis)."""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contractkit import Contract
from prodml.core import FeatureNotFoundError, SchemaError, StorageError, TimestampError
from prodml.features.online import (
    ONLINE_BACKENDS,
    MemoryOnlineStore,
    OnlineRead,
    OnlineStore,
    SqliteOnlineStore,
)
from servicekit import redis_url_or_skip

T0 = datetime(2013, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


Factory = Callable[[], OnlineStore]


@dataclass
class Opening:
    """Where the stores of one test live: its directory, a fresh Redis key prefix, and
    the stores opened so far."""

    tmp_path: Path
    prefix: str
    opened: list[OnlineStore] = field(default_factory=list)
    redis_url: str | None = None


def _open_memory(opening: Opening) -> OnlineStore:
    return opening.opened[0] if opening.opened else MemoryOnlineStore()  # one per process


def _open_sqlite(opening: Opening) -> OnlineStore:
    return SqliteOnlineStore(opening.tmp_path / "online.db")


def _open_redis(opening: Opening) -> OnlineStore:
    """A store under the test's key prefix; skips the test when Redis is unreachable."""
    from prodml.features.online import RedisOnlineStore

    if opening.redis_url is None:
        opening.redis_url = redis_url_or_skip()
    return RedisOnlineStore(opening.redis_url, key_prefix=opening.prefix)


CONTRACT = Contract(
    ONLINE_BACKENDS,
    {"memory": _open_memory, "redis": _open_redis, "sqlite": _open_sqlite},
    integration={"redis"},
)


def test_online_contract_covers_every_registered_backend() -> None:
    CONTRACT.check()


@pytest.fixture(params=CONTRACT.cases())
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Opens stores of one backend that share state (same file, same key prefix)."""
    backend: str = request.param
    opening = Opening(tmp_path, f"prodml-test-{uuid.uuid4().hex}")
    open_one = CONTRACT.factory(backend)

    def factory() -> OnlineStore:
        store = open_one(opening)
        assert isinstance(store, ONLINE_BACKENDS.load(backend))
        opening.opened.append(store)
        return store

    yield factory
    if opening.redis_url is not None:
        import redis

        with redis.Redis.from_url(opening.redis_url) as client:
            keys = list(client.scan_iter(match=f"{opening.prefix}:*"))
            if keys:
                client.delete(*keys)
    for store in opening.opened:
        store.close()


@pytest.fixture
def store(open_store: Factory) -> OnlineStore:
    return open_store()


def table(
    ids: Sequence[Any],
    events: Sequence[float],
    xs: Sequence[Any],
    created: Sequence[float] | None = None,
) -> pa.Table:
    columns: dict[str, Any] = {
        "id": ids,
        "ts": pa.array([at(s) for s in events], pa.timestamp("us", tz="UTC")),
        "x": pa.array(xs, pa.float64()),
    }
    if created is not None:
        columns["cr"] = pa.array([at(s) for s in created], pa.timestamp("us", tz="UTC"))
    return pa.table(columns)


def put(
    store: OnlineStore,
    ids: Sequence[Any],
    events: Sequence[float],
    xs: Sequence[Any],
    created: Sequence[float] | None = None,
    namespace: str = "view:1",
) -> int:
    return store.write_batch(
        namespace,
        table(ids, events, xs, created),
        key_columns=["id"],
        event_time_column="ts",
        feature_columns=["x"],
        created_time_column=None if created is None else "cr",
    )


def get(
    store: OnlineStore,
    ids: Sequence[Any],
    *,
    now: datetime = NOW,
    ttl: timedelta | None = None,
    namespace: str = "view:1",
) -> OnlineRead:
    return store.read(namespace, [(i,) for i in ids], ["x"], now=now, ttl=ttl)


def test_online_write_then_read(store: OnlineStore) -> None:
    assert put(store, [1, 2, 3], [10, 20, 30], [1.0, 2.0, 3.0]) == 3
    r = get(store, [3, 1])
    assert r.values == {"x": [3.0, 1.0]}
    assert r.found == [True, True]
    assert r.stale == [False, False]
    assert r.event_times_us == [int(at(30).timestamp() * 1e6), int(at(10).timestamp() * 1e6)]
    assert r.event_time(0) == at(30)
    assert r.ages_s == [(NOW - at(30)).total_seconds(), (NOW - at(10)).total_seconds()]
    assert r.row(1) == {"x": 1.0}
    assert len(r) == 2


def test_online_newer_record_wins(store: OnlineStore) -> None:
    put(store, [1], [10], [1.0])
    assert put(store, [1], [11], [2.0]) == 1
    assert get(store, [1]).values["x"] == [2.0]


def test_online_older_record_is_ignored(store: OnlineStore) -> None:
    put(store, [1], [10], [1.0])
    assert put(store, [1, 2], [9, 9], [2.0, 2.0]) == 1
    assert get(store, [1, 2]).values["x"] == [1.0, 2.0]


def test_online_equal_record_keeps_stored_so_replay_writes_nothing(store: OnlineStore) -> None:
    assert put(store, [1, 2], [10, 10], [1.0, 2.0]) == 2
    assert put(store, [1, 2], [10, 10], [5.0, 5.0]) == 0
    assert get(store, [1, 2]).values["x"] == [1.0, 2.0]


def test_online_created_time_breaks_event_time_ties(store: OnlineStore) -> None:
    put(store, [1], [10], [1.0], created=[100])
    assert put(store, [1], [10], [2.0], created=[99]) == 0
    assert get(store, [1]).values["x"] == [1.0]
    assert put(store, [1], [10], [3.0], created=[101]) == 1
    assert get(store, [1]).values["x"] == [3.0]
    # A later event time wins whatever the created times.
    assert put(store, [1], [11], [4.0], created=[0]) == 1
    assert get(store, [1]).values["x"] == [4.0]


def test_online_absent_created_time_compares_equal(store: OnlineStore) -> None:
    put(store, [1, 2], [10, 10], [1.0, 1.0], created=[100, 100])
    assert put(store, [1], [10], [2.0]) == 0
    put(store, [3], [10], [1.0])
    assert put(store, [3], [10], [2.0], created=[500]) == 0
    assert put(store, [2, 3], [11, 11], [3.0, 3.0]) == 2
    assert get(store, [1, 2, 3]).values["x"] == [1.0, 3.0, 3.0]


def test_online_duplicates_in_one_batch_keep_newest_then_last(store: OnlineStore) -> None:
    written = put(store, [1, 1, 1, 2, 2], [20, 10, 20, 5, 5], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert written == 2
    assert get(store, [1, 2]).values["x"] == [3.0, 5.0]


def test_online_duplicates_in_one_batch_use_created_time(store: OnlineStore) -> None:
    written = put(store, [1, 1, 1], [10, 10, 9], [1.0, 2.0, 3.0], created=[50, 40, 90])
    assert written == 1
    assert get(store, [1]).values["x"] == [1.0]


def test_online_ttl_boundary(store: OnlineStore) -> None:
    ttl = timedelta(hours=1)
    put(store, [1, 2, 3], [0, 1e-6, 0], [1.0, 2.0, 3.0])
    edge = at(0) + ttl
    r = get(store, [1, 2, 3], now=edge, ttl=ttl)
    assert r.stale == [False, False, False]
    assert r.values["x"] == [1.0, 2.0, 3.0]
    r = get(store, [1, 2], now=edge + timedelta(microseconds=1), ttl=ttl)
    assert r.stale == [True, False]
    assert r.found == [True, True]
    assert r.values["x"] == [None, 2.0]
    assert r.ages_s == [3600.000001, 3600.0]
    assert r.event_times_us[0] == int(at(0).timestamp() * 1e6)
    assert get(store, [1], now=at(10**8), ttl=None).stale == [False]


def test_online_ttl_zero_and_negative(store: OnlineStore) -> None:
    put(store, [1], [0], [1.0])
    assert get(store, [1], now=at(0), ttl=timedelta(0)).stale == [False]
    assert get(store, [1], now=at(1), ttl=timedelta(0)).stale == [True]
    with pytest.raises(ValueError, match="ttl must be >= 0"):
        get(store, [1], ttl=timedelta(seconds=-1))


def test_online_naive_now_is_utc(store: OnlineStore) -> None:
    put(store, [1], [0], [1.0])
    naive = get(store, [1], now=at(60).replace(tzinfo=None))
    assert naive.ages_s == [60.0]


def test_online_missing_entities(store: OnlineStore) -> None:
    put(store, [1], [10], [1.0])
    r = get(store, [7, 1, 7], ttl=timedelta(days=365))
    assert r.values["x"] == [None, 1.0, None]
    assert r.found == [False, True, False]
    assert r.stale == [False, False, False]
    assert r.event_times_us[0] is None
    assert r.ages_s[0] is None
    assert r.event_time(0) is None
    unknown_namespace = get(store, [1], namespace="other:1")
    assert unknown_namespace.found == [False]
    assert get(store, []).values == {"x": []}


def test_online_multi_column_keys(store: OnlineStore) -> None:
    t = pa.table(
        {
            "origin": ["JFK", "JFK", "LGA"],
            "hour": [1, 2, 1],
            "ts": pa.array([at(0)] * 3, pa.timestamp("us", tz="UTC")),
            "temp": [10.0, 20.0, 30.0],
        }
    )
    written = store.write_batch(
        "weather:1",
        t,
        key_columns=["origin", "hour"],
        event_time_column="ts",
        feature_columns=["temp"],
    )
    assert written == 3
    keys = [("LGA", 1), ("JFK", 2), ("JFK", 1), ("LGA", 2), (1, "LGA")]
    r = store.read("weather:1", keys, ["temp"], now=NOW, ttl=None)
    assert r.values["temp"] == [30.0, 20.0, 10.0, None, None]


def test_online_keys_are_type_aware(store: OnlineStore) -> None:
    put(store, [1], [0], [1.0])
    put(store, ["1"], [0], [2.0])
    put(store, [True], [0], [3.0])
    r = store.read("view:1", [(1,), ("1",), (True,), (1.0,)], ["x"], now=NOW, ttl=None)
    assert r.values["x"] == [1.0, 2.0, 3.0, None]


def test_online_null_nan_and_typed_values(store: OnlineStore) -> None:
    t = pa.table(
        {
            "id": [1, 2],
            "ts": pa.array([at(0), at(0)], pa.timestamp("ns", tz="America/New_York")),
            "f": [float("nan"), None],
            "i": pa.array([None, 7], pa.int64()),
            "s": ['a\u00e9"\\', None],
            "b": [True, False],
            "when": pa.array([at(5), None], pa.timestamp("us", tz="UTC")),
            "v": pa.array([[1.0, float("inf")], []], pa.list_(pa.float32())),
            "cat": pa.array(["x", "y"]).dictionary_encode(),
        }
    )
    features = ["f", "i", "s", "b", "when", "v", "cat"]
    written = store.write_batch(
        "typed:1", t, key_columns=["id"], event_time_column="ts", feature_columns=features
    )
    assert written == 2
    r = store.read("typed:1", [(1,), (2,)], features, now=NOW, ttl=None)
    assert r.row(0) == {
        "f": None,
        "i": None,
        "s": 'a\u00e9"\\',
        "b": True,
        "when": "2013-01-01T00:00:05+00:00",
        "v": [1.0, None],
        "cat": "x",
    }
    assert r.row(1) == {"f": None, "i": 7, "s": None, "b": False, "when": None, "v": [], "cat": "y"}
    assert r.event_times_us == [int(at(0).timestamp() * 1e6)] * 2


def test_online_feature_subset_and_unknown_feature(store: OnlineStore) -> None:
    t = table([1], [0], [1.0]).append_column("y", pa.array([2], pa.int64()))
    store.write_batch(
        "v:2", t, key_columns=["id"], event_time_column="ts", feature_columns=["x", "y"]
    )
    r = store.read("v:2", [(1,), (2,)], ["y"], now=NOW, ttl=None)
    assert r.values == {"y": [2, None]}
    assert r.features == ("y",)
    with pytest.raises(FeatureNotFoundError, match=r"feature 'z' is not stored.*\['x', 'y'\]"):
        store.read("v:2", [(1,)], ["x", "z"], now=NOW, ttl=None)
    # A stale or missing record cannot tell, so no error.
    assert store.read("v:2", [(9,)], ["z"], now=NOW, ttl=None).values == {"z": [None]}


def test_online_namespaces_are_isolated(store: OnlineStore) -> None:
    names = [f"view_{i}:{v}" for i in range(12) for v in ("a", "b")]
    for n, name in enumerate(names):
        assert put(store, [1, 2, n + 10], [0, 0, 0], [n, n, n], namespace=name) == 3
    for n, name in enumerate(names):
        assert get(store, [1, 2, n + 10, n + 11], namespace=name).values["x"] == [n, n, n, None]
    assert store.delete_namespace("view_3:a") == 3
    assert store.delete_namespace("view_3:a") == 0
    assert get(store, [1], namespace="view_3:a").found == [False]
    assert get(store, [1], namespace="view_3:b").values["x"] == [7.0]
    assert put(store, [1], [0], [99.0], namespace="view_3:a") == 1
    assert get(store, [1], namespace="view_3:a").values["x"] == [99.0]


def test_online_delete_namespace_rewinds_it_for_every_opener(open_store: Factory) -> None:
    """After a delete, a record older than the deleted one is stored again (a rebuild
    starts from scratch), and another store on the same backend sees the deletion."""
    writer, other = open_store(), open_store()
    assert put(writer, [1, 2], [100, 100], [1.0, 2.0]) == 2
    assert put(writer, [1], [50], [9.0]) == 0  # older: kept out by the upsert rule
    assert put(writer, [1], [100], [7.0], namespace="view:2") == 1
    assert other.delete_namespace("view:1") == 2
    assert get(writer, [1, 2]).found == [False, False]
    assert put(writer, [1], [50], [9.0]) == 1
    assert get(other, [1, 2]).values["x"] == [9.0, None]
    assert get(other, [1], namespace="view:2").values["x"] == [7.0]
    with pytest.raises(ValueError, match=r"namespace: expected a non-empty string"):
        writer.delete_namespace("")


def test_online_empty_batch_writes_nothing(store: OnlineStore) -> None:
    assert put(store, [], [], []) == 0
    assert get(store, [1]).found == [False]


def test_online_large_batch(store: OnlineStore) -> None:
    n = 5000
    assert put(store, list(range(n)), [0] * n, [float(i) for i in range(n)]) == n
    ids = list(range(0, n, 7))
    assert get(store, ids).values["x"] == [float(i) for i in ids]
    assert put(store, list(range(n)), [1] * n, [0.0] * n) == n


def test_online_invalid_batches_raise_and_write_nothing(store: OnlineStore) -> None:
    good = table([1], [0], [1.0])
    kwargs: dict[str, Any] = {"key_columns": ["id"], "event_time_column": "ts"}
    with pytest.raises(SchemaError, match="feature column 'nope' is missing"):
        store.write_batch("v:1", good, feature_columns=["nope"], **kwargs)
    with pytest.raises(TimestampError, match="event-time column 'x' has type double"):
        store.write_batch(
            "v:1", good, key_columns=["id"], event_time_column="x", feature_columns=[]
        )
    nulls = pa.table({"id": [1], "ts": pa.array([None], pa.timestamp("us")), "x": [1.0]})
    with pytest.raises(TimestampError, match="1 null values"):
        store.write_batch("v:1", nulls, feature_columns=["x"], **kwargs)
    binary = good.append_column("blob", pa.array([b"\x00"]))
    with pytest.raises(SchemaError, match="feature column 'blob' has type binary"):
        store.write_batch("v:1", binary, feature_columns=["blob"], **kwargs)
    with pytest.raises(ValueError, match="namespace"):
        store.write_batch("", good, feature_columns=["x"], **kwargs)
    assert get(store, [1]).found == [False]


def test_online_closed_store_raises(open_store: Factory) -> None:
    with open_store() as store:
        put(store, [1], [0], [1.0])
    with pytest.raises(StorageError, match="closed"):
        get(store, [1])
    with pytest.raises(StorageError, match="closed"):
        put(store, [1], [0], [1.0])
    store.close()


def test_online_reads_from_other_threads(store: OnlineStore) -> None:
    put(store, list(range(50)), [0] * 50, [float(i) for i in range(50)])
    results: list[list[Any]] = []

    def work() -> None:
        results.append(get(store, [3, 40]).values["x"])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[3.0, 40.0]] * 4


# --- property: every backend behaves like a dict-based reference model -------------------

Row = tuple[int, int, int, int]  # entity, event s, created s, value


def _older(a: tuple[int, int | None], b: tuple[int, int | None]) -> bool:
    if a[0] != b[0]:
        return a[0] < b[0]
    return a[1] is not None and b[1] is not None and a[1] < b[1]


def _reference_write(
    model: dict[int, tuple[int, int | None, float]], rows: list[Row], with_created: bool
) -> int:
    winners: dict[int, tuple[int, int | None, float]] = {}
    for entity, event, created, value in rows:
        row = (event, created if with_created else None, float(value))
        if entity not in winners or not _older(row[:2], winners[entity][:2]):
            winners[entity] = row
    written = 0
    for entity, row in winners.items():
        stored = model.get(entity)
        if stored is None or _older(stored[:2], row[:2]):
            model[entity] = row
            written += 1
    return written


_rows = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 3), st.integers(0, 3), st.integers(-9, 9)),
    max_size=8,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(st.tuples(st.booleans(), _rows), max_size=6))
def test_online_matches_reference_model(
    store: OnlineStore, batches: list[tuple[bool, list[Row]]]
) -> None:
    namespace = f"prop:{uuid.uuid4().hex}"  # the store outlives examples; namespaces do not
    model: dict[int, tuple[int, int | None, float]] = {}
    for with_created, rows in batches:
        expected = _reference_write(model, rows, with_created)
        written = put(
            store,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[3] for r in rows],
            created=[r[2] for r in rows] if with_created else None,
            namespace=namespace,
        )
        assert written == expected
    r = get(store, range(5), now=at(3), ttl=timedelta(seconds=1), namespace=namespace)
    for entity in range(5):
        stored = model.get(entity)
        assert r.found[entity] is (stored is not None)
        if stored is not None:
            fresh = 3 - stored[0] <= 1
            assert r.stale[entity] is not fresh
            assert r.values["x"][entity] == (stored[2] if fresh else None)
            assert r.event_times_us[entity] == int(at(stored[0]).timestamp() * 1e6)


# --- SQLite only -------------------------------------------------------------------------


def test_online_sqlite_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "online.db"
    with SqliteOnlineStore(path) as store:
        put(store, [1, 2], [10, 10], [1.0, 2.0], created=[5, 5])
    with SqliteOnlineStore(path) as store:
        assert get(store, [1, 2]).values["x"] == [1.0, 2.0]
        assert put(store, [1], [10], [9.0], created=[4]) == 0
        assert put(store, [2], [10], [9.0], created=[6]) == 1
    with SqliteOnlineStore(path) as store:
        assert get(store, [1, 2]).values["x"] == [1.0, 9.0]
        assert store.path == path


def test_online_sqlite_unwritable_path_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create folder"):
        SqliteOnlineStore(blocker / "sub" / "online.db")
    (tmp_path / "bad.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match=r"bad\.db: open failed"):
        SqliteOnlineStore(tmp_path / "bad.db")


def test_online_nan_is_stored_as_null() -> None:
    store = MemoryOnlineStore()
    put(store, [1], [0], [math.inf])
    assert get(store, [1]).values["x"] == [None]


def test_online_sqlite_concurrent_writers_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    stores = [SqliteOnlineStore(path), SqliteOnlineStore(path)]
    counts: list[int] = []

    def work(store: OnlineStore, offset: int) -> None:
        for step in range(20):
            ids = list(range(100))
            counts.append(put(store, ids, [step * 2 + offset] * 100, [float(offset)] * 100))

    threads = [threading.Thread(target=work, args=(s, i)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(counts) == 40
    # The newest event time (step 19, offset 1) wins whatever the interleaving.
    assert get(stores[0], range(100)).values["x"] == [1.0] * 100
    assert get(stores[1], [0]).event_times_us == [int(at(39).timestamp() * 1e6)]
    for store in stores:
        store.close()
