"""The LogStore contract, run against every registered backend."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from contractkit import Contract
from prodml.core import ConfigError, SchemaError, SimulatedClock, StorageError
from prodml.core._config import LogsConfig
from prodml.storage import (
    LOG_STORES,
    LocalLogStore,
    LogBlock,
    LogStore,
    LogStores,
    LogWriter,
    MemoryLogStore,
    QuarantinedFile,
    open_log_stores,
)
from prodml.storage._log_s3 import S3LogStore
from servicekit import s3_store

T0 = datetime(2013, 1, 1, 5, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
TS = pa.timestamp("us", tz="UTC")


def _corrupt_s3(store: LogStore) -> None:
    """Overwrite the first object of ``store`` with bytes that are not Parquet."""
    assert isinstance(store, S3LogStore)
    first = sorted(store._list(store.root + "/"))[0]
    store._save(first, b"not parquet")


def _open_s3(tmp: Path) -> LogStores:
    """The logs in a new bucket of the test S3 server (``s3_endpoint``, in the
    environment as PRODML_TEST_S3 for this case)."""
    bucket = s3_store(os.environ["PRODML_TEST_S3"]).bucket
    config = LogsConfig(type="s3", bucket=bucket, prefix="proj",
                        endpoint_url=os.environ["PRODML_TEST_S3"], region="us-east-1")  # fmt: skip
    return open_log_stores(tmp, "s3", config)


def _corrupt_local(store: LogStore) -> None:
    """Overwrite the first Parquet file of ``store`` with bytes that are not Parquet."""
    assert isinstance(store, LocalLogStore)
    first = sorted(store.root.rglob("*.parquet"))[0]
    first.write_bytes(b"not parquet")


@dataclass(frozen=True)
class Backend:
    """How the contract opens a backend's logs, and how it damages a stored file (None:
    the backend keeps nothing that can be damaged)."""

    open: Callable[[Path], LogStores]
    corrupt: Callable[[LogStore], None] | None


BACKENDS: dict[str, Backend] = {
    "local": Backend(lambda tmp: open_log_stores(tmp, "local"), _corrupt_local),
    "memory": Backend(lambda tmp: open_log_stores(tmp, "memory"), None),
    "s3": Backend(_open_s3, _corrupt_s3),
}
CONTRACT = Contract(LOG_STORES, BACKENDS, integration=("s3",))


def test_every_registered_backend_runs_the_contract() -> None:
    assert set(BACKENDS) == set(LOG_STORES)
    CONTRACT.check()


@pytest.fixture(params=CONTRACT.cases())
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    if name == "s3":
        monkeypatch.setenv("PRODML_TEST_S3", request.getfixturevalue("s3_endpoint"))
    return name


@pytest.fixture
def backend(case: str) -> Backend:
    return CONTRACT.factory(case)


@pytest.fixture
def logs(case: str, backend: Backend, tmp_path: Path) -> LogStores:
    logs = backend.open(tmp_path)
    assert isinstance(logs.predictions, LOG_STORES.load(case))
    assert isinstance(logs.labels, LOG_STORES.load(case))
    return logs


@pytest.fixture
def store(logs: LogStores) -> LogStore:
    return logs.predictions


def _writer(store: LogStore, **options: Any) -> LogWriter:
    return store.open_writer(clock=SimulatedClock(T0), **options)


def _write(store: LogStore, *records: dict[str, Any]) -> None:
    """Append ``records`` and write them, as one flush."""
    with _writer(store, max_wait_s=3600) as writer:
        assert writer.extend([dict(r) for r in records]) == len(records)


def _rec(hours: float, endpoint: str = "e", **fields: Any) -> dict[str, Any]:
    return {"time": T0 + hours * HOUR, "endpoint": endpoint, **fields}


def test_stores_are_named_after_their_logs(logs: LogStores) -> None:
    assert (logs.predictions.name, logs.labels.name) == ("predictions", "labels")


def test_append_extend_and_block_are_read_back_sorted_by_time(store: LogStore) -> None:
    with _writer(store, max_wait_s=3600) as writer:
        assert writer.append(_rec(0.2, id="a", x=1))
        assert writer.extend([_rec(0.1, id="b", x=2), _rec(0.3, id="c", x=3)]) == 2
        block = LogBlock(2, {**_rec(0.0), "id": ["d", "e"], "x": 4}, frozenset({"id"}))
        assert writer.extend_block(block) == 2
    assert writer.stats.written_rows == 5
    table = store.read()
    assert table.column_names == ["time", "endpoint", "id", "x"]
    assert table["id"].to_pylist() == ["d", "e", "b", "a", "c"]
    assert table["x"].to_pylist() == [4, 4, 2, 1, 3]
    assert table.schema.field("time").type == TS


def test_flush_makes_queued_records_readable_before_close(store: LogStore) -> None:
    writer = _writer(store, max_wait_s=3600)
    try:
        writer.append(_rec(0, id="a"))
        assert store.read().num_rows == 0
        assert writer.flush() == 1
        assert store.read()["id"].to_pylist() == ["a"]
    finally:
        writer.close()


def test_writers_share_one_log_and_the_two_logs_are_apart(logs: LogStores) -> None:
    _write(logs.predictions, _rec(0, id="p1"))
    _write(logs.predictions, _rec(1, id="p2"))
    _write(logs.labels, _rec(0, request_id="p1", label=1.0))
    assert logs.predictions.read()["id"].to_pylist() == ["p1", "p2"]
    assert logs.labels.read().column_names == ["time", "endpoint", "request_id", "label"]
    assert logs.labels.read()["request_id"].to_pylist() == ["p1"]


def test_read_keeps_start_inclusive_end_exclusive_and_one_endpoint(store: LogStore) -> None:
    _write(store, *(_rec(h, "a" if h % 2 else "b", id=f"r{h}") for h in range(6)))
    window = store.read(start=T0 + HOUR, end=T0 + 4 * HOUR)
    assert window["id"].to_pylist() == ["r1", "r2", "r3"]
    only_a = store.read(endpoint="a", start=T0 + HOUR)
    assert only_a["id"].to_pylist() == ["r1", "r3", "r5"]
    assert set(only_a["endpoint"].to_pylist()) == {"a"}
    naive = store.read(start=(T0 + 2 * HOUR).replace(tzinfo=None), end=T0 + 3 * HOUR)
    assert naive["id"].to_pylist() == ["r2"]  # naive means UTC


def test_read_columns_in_the_order_asked_with_absent_ones_null(store: LogStore) -> None:
    _write(store, _rec(0, id="a", x=1.5), _rec(0.1, id="b"))
    table = store.read(columns=["x", "nowhere", "id"])
    assert table.column_names == ["x", "nowhere", "id"]
    assert table.to_pydict() == {"x": [1.5, None], "nowhere": [None, None], "id": ["a", "b"]}


def test_read_unifies_schemas_across_writes(store: LogStore) -> None:
    _write(store, _rec(0, n=1, s=1, only_first=True))
    _write(store, _rec(1, n=2.5, s="text"))
    _write(store, _rec(2, n=None, s=None))
    table = store.read()
    assert table.column_names == ["time", "endpoint", "n", "s", "only_first"]
    assert table.schema.field("n").type == pa.float64()  # int with float: float
    assert table.schema.field("s").type == pa.string()  # any other conflict: text
    assert table.to_pydict()["n"] == [1.0, 2.5, None]
    assert table.to_pydict()["s"] == ["1", "text", None]
    assert table.to_pydict()["only_first"] == [True, None, None]


def test_empty_results_keep_their_columns(store: LogStore) -> None:
    empty = store.read()
    assert empty.column_names == ["time", "endpoint"]
    assert empty.schema.field("time").type == TS
    assert empty.schema.field("endpoint").type == pa.string()
    assert store.read(columns=["id", "time"]).column_names == ["id", "time"]
    _write(store, _rec(0, id="a"))
    assert store.read(endpoint="other").column_names == ["time", "endpoint"]
    assert store.read(start=T0 + 5 * HOUR).column_names == ["time", "endpoint"]
    # An hour that holds records but none in the window: the records' columns.
    none_yet = store.read(start=T0 + 0.1 * HOUR, end=T0 + 0.2 * HOUR)
    assert (none_yet.num_rows, none_yet.column_names) == (0, ["time", "endpoint", "id"])


def test_endpoints_are_sorted_and_first_hour_is_the_earliest(store: LogStore) -> None:
    assert store.endpoints() == []
    assert store.first_hour("b") is None
    _write(store, _rec(30, "b"), _rec(2, "b"), _rec(1, "a"))
    assert store.endpoints() == ["a", "b"]
    assert store.first_hour("b") == datetime(2013, 1, 1, 7, tzinfo=UTC)
    assert store.first_hour("a") == datetime(2013, 1, 1, 6, tzinfo=UTC)
    assert store.first_hour("c") is None


@pytest.mark.parametrize("name", ["../x", "", ".hidden", "a/b", "a b"])
def test_path_unsafe_endpoint_names_are_refused(store: LogStore, name: str) -> None:
    with _writer(store) as writer, pytest.raises(SchemaError, match="partition name"):
        writer.append(_rec(0, name))
    with pytest.raises(SchemaError, match="partition name"):
        store.read(endpoint=name)
    with pytest.raises(SchemaError, match="partition name"):
        store.first_hour(name)
    with pytest.raises(SchemaError, match="partition name"):
        store.quarantined(endpoint=name)
    assert store.endpoints() == []


def test_a_damaged_file_is_quarantined_and_listed(backend: Backend, store: LogStore) -> None:
    _write(store, _rec(0, id="bad"))
    _write(store, _rec(1, id="good"))
    assert store.quarantined() == []
    if backend.corrupt is None:
        assert store.damaged() == []
        moved: list[QuarantinedFile] = []
        assert store.read(quarantine=moved)["id"].to_pylist() == ["bad", "good"]
        assert moved == []
        return
    assert store.damaged() == []
    backend.corrupt(store)
    (damaged,) = store.damaged()  # named, and left where it is
    assert "predictions" in damaged[0]
    with pytest.raises(StorageError, match="cannot be read"):
        store.read()
    moved = []
    assert store.read(quarantine=moved)["id"].to_pylist() == ["good"]
    assert len(moved) == 1
    listed = store.quarantined()
    assert listed == store.quarantined(endpoint="e", start=T0, end=T0 + HOUR)
    assert len(listed) == 1
    assert listed[0].startswith("logs/quarantine/predictions/endpoint=e/date=2013-01-01/hour=05/")
    assert store.quarantined(start=T0 + HOUR) == []
    assert store.quarantined(endpoint="other") == []
    described = store.describe(moved[0])
    assert described == {
        "log": "predictions",
        "endpoint": "e",
        "path": listed[0].replace("logs/quarantine/predictions", "logs/predictions"),
        "quarantined_to": listed[0],
        "reason": moved[0].reason,
    }


def test_open_log_stores_refuses_an_unknown_kind_naming_the_known(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="log store 'cloud' is unknown: expected one of 'local'"):
        open_log_stores(tmp_path, "cloud")


def test_backends_open_the_two_logs_of_a_state_dir(tmp_path: Path) -> None:
    local = open_log_stores(tmp_path)
    assert isinstance(local.labels, LocalLogStore)
    assert isinstance(local.predictions, LocalLogStore)
    assert local.labels.root == tmp_path / "logs" / "labels"
    assert local.predictions.root == tmp_path / "logs" / "predictions"
    assert isinstance(open_log_stores(tmp_path, "memory").predictions, MemoryLogStore)
    with pytest.raises(ValueError, match="log 'audit' is unknown"):
        LocalLogStore.from_state_dir(tmp_path, "audit")
    with pytest.raises(ValueError, match="log 'audit' is unknown"):
        MemoryLogStore.from_state_dir(tmp_path, "audit")
