"""The partitioned prediction/label log: LogWriter (batched, bounded, atomic) and read_log."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings

from prodml.core import SchemaError, SimulatedClock, StateError
from prodml.storage import LogBlock, LogStats, LogWriter, _atomic, _logs
from prodml.storage._log_format import CHANGED_MARKER
from prodml.storage._log_reader import read_log

T0 = datetime(2013, 1, 1, tzinfo=UTC)
FILE_NAME = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{32}\.parquet$")


def _writer(root: Path, **options: Any) -> LogWriter:
    return LogWriter(root, clock=SimulatedClock(T0), **options)


def _record(i: int, when: datetime, endpoint: str = "delay", **extra: Any) -> dict[str, Any]:
    return {"time": when, "endpoint": endpoint, "id": f"r{i}", **extra}


def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll until ``condition`` holds; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def _files(root: Path) -> list[Path]:
    """The log's files, without the date directories' change markers (each date directory
    holding a file has one)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != CHANGED_MARKER)
    for path in files:
        assert (path.parent.parent / CHANGED_MARKER).is_file(), path
    return files


def _column(table: pa.Table, name: str) -> list[Any]:
    """A column's values; an empty result may lack columns other than time and partition."""
    if table.num_rows == 0 and name not in table.column_names:
        return []
    values: list[Any] = table[name].to_pylist()
    return values


def _ids(root: Path, **filters: Any) -> list[str]:
    return _column(read_log(root, **filters), "id")


def _utc_hour_dir(record: dict[str, Any]) -> str:
    when = record["time"]
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return f"endpoint={record['endpoint']}/date={when:%Y-%m-%d}/hour={when:%H}"


def test_concurrent_appends_land_exactly_once_in_the_right_directories(tmp_path: Path) -> None:
    rng = random.Random(7)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    per_thread = {
        t: [
            _record(
                t * 10_000 + i,
                (T0 + timedelta(minutes=rng.randrange(22 * 60, 26 * 60))).astimezone(
                    rng.choice(zones)
                ),
                endpoint=rng.choice(["a", "b.v2", "c-x"]),
                value=rng.random(),
            )
            for i in range(500)
        ]
        for t in range(4)
    }
    writer = _writer(tmp_path, max_batch_rows=64, max_wait_s=0.02).start()
    start = threading.Barrier(len(per_thread))
    accepted: list[bool] = []

    def produce(records: list[dict[str, Any]]) -> None:
        start.wait()
        accepted.extend([writer.append(record) for record in records])

    threads = [threading.Thread(target=produce, args=(rs,)) for rs in per_thread.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()

    expected = [r for rs in per_thread.values() for r in rs]
    assert accepted == [True] * 2000
    stats = writer.stats
    assert stats == LogStats(
        queued=0,
        appended=2000,
        written_rows=2000,
        written_files=stats.written_files,
        dropped=0,
        failed_flushes=0,
        last_error=None,
    )
    found: Counter[tuple[str, str, datetime, float]] = Counter()
    files = _files(tmp_path)
    assert len(files) == stats.written_files
    for path in files:
        assert FILE_NAME.match(path.name), path.name
        table = pq.read_table(path).to_pylist()
        for row in table:
            assert path.parent.relative_to(tmp_path).as_posix() == _utc_hour_dir(row)
            found[row["id"], row["endpoint"], row["time"], row["value"]] += 1
    assert found == Counter((r["id"], r["endpoint"], r["time"], r["value"]) for r in expected)
    assert set(found.values()) == {1}
    assert {p.parent.relative_to(tmp_path).as_posix() for p in files} == {
        _utc_hour_dir(r) for r in expected
    }


def test_flushes_when_max_batch_rows_are_queued(tmp_path: Path) -> None:
    writer = _writer(tmp_path, max_batch_rows=10, max_wait_s=60).start()
    for i in range(9):
        writer.append(_record(i, T0))
    time.sleep(0.1)
    assert writer.stats.written_rows == 0
    writer.append(_record(9, T0))
    _wait_for(lambda: writer.stats.written_rows == 10)
    assert writer.stats.written_files == 1
    writer.close()


def test_flushes_when_the_oldest_record_is_max_wait_s_old(tmp_path: Path) -> None:
    writer = _writer(tmp_path, max_batch_rows=1000, max_wait_s=0.2).start()
    began = time.monotonic()
    for i in range(3):
        writer.append(_record(i, T0))
    assert writer.stats.written_rows == 0
    _wait_for(lambda: writer.stats.written_rows == 3)
    assert time.monotonic() - began >= 0.2
    assert sorted(_ids(tmp_path)) == ["r0", "r1", "r2"]
    writer.close()


def test_one_file_per_group_of_at_most_max_batch_rows(tmp_path: Path) -> None:
    clock = SimulatedClock(T0)
    writer = LogWriter(tmp_path, clock=clock, max_batch_rows=10)
    for i in range(25):
        writer.append(_record(i, T0 + timedelta(minutes=i)))
    writer.append(_record(99, T0 + timedelta(hours=1)))
    assert writer.flush() == 26
    clock.advance(timedelta(seconds=1))
    writer.append(_record(100, T0))
    assert writer.flush() == 1
    first_hour = sorted((tmp_path / "endpoint=delay/date=2013-01-01/hour=00").iterdir())
    assert sorted(pq.read_metadata(p).num_rows for p in first_hour[:3]) == [5, 10, 10]
    assert first_hour[-1].name.startswith("20130101T000001000000Z-")  # the clock names files
    assert pq.read_metadata(first_hour[-1]).num_rows == 1
    assert writer.stats.written_files == 5


def test_full_queue_drops_and_counts_without_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    real_write = _logs.write_table

    def blocked_write(table: pa.Table, path: Path, **options: Any) -> Path:
        entered.set()
        release.wait(60)
        return real_write(table, path, **options)

    monkeypatch.setattr(_logs, "write_table", blocked_write)
    writer = _writer(tmp_path, max_batch_rows=10, max_wait_s=60, max_queue=50).start()
    for i in range(10):
        assert writer.append(_record(i, T0))
    assert entered.wait(60)  # the flusher holds 10 rows and is stuck writing them
    results, slowest = [], 0.0
    for i in range(10, 85):
        began = time.perf_counter()
        results.append(writer.append(_record(i, T0)))
        slowest = max(slowest, time.perf_counter() - began)
    assert results == [True] * 40 + [False] * 35
    assert slowest < 5.0  # never waits for the stuck write (held until released below)
    stats = writer.stats
    assert (stats.queued, stats.appended, stats.dropped, stats.written_rows) == (50, 50, 35, 0)
    release.set()
    writer.close()
    assert writer.stats.written_rows == 50
    assert sorted(_ids(tmp_path)) == sorted(f"r{i}" for i in range(50))


class _RenameFault:
    """Make ``os.replace`` into the log fail on chosen calls, after the temp file is complete."""

    def __init__(self, root: Path, fail_calls: set[int]) -> None:
        self.root, self.fail_calls, self.calls = str(root), fail_calls, 0
        self.real = os.replace

    def __call__(self, src: Any, dst: Any) -> None:
        if str(dst).startswith(self.root):
            self.calls += 1
            if self.calls in self.fail_calls:
                assert Path(src).stat().st_size > 0  # the temp file was written in full
                raise OSError(28, "No space left on device")
        self.real(src, dst)


@pytest.fixture
def rename_fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _RenameFault:
    fault = _RenameFault(tmp_path, set())
    monkeypatch.setattr(_atomic.os, "replace", fault)
    return fault


def test_failed_write_leaves_no_file_keeps_rows_and_retries_once(
    tmp_path: Path, rename_fault: _RenameFault
) -> None:
    writer = _writer(tmp_path)
    expected = [_record(i, T0 + timedelta(hours=i % 3), f"e{i % 2}") for i in range(30)]
    for record in expected:
        writer.append(record)
    rename_fault.fail_calls = {1, 2, 3, 4, 5, 6}
    assert writer.flush() == 0
    assert _files(tmp_path) == []  # no partial Parquet file, no temp file left behind
    stats = writer.stats
    assert (stats.queued, stats.written_rows, stats.failed_flushes) == (30, 0, 1)
    assert stats.last_error is not None
    assert "No space left on device" in stats.last_error
    assert _ids(tmp_path) == []

    rename_fault.fail_calls = {rename_fault.calls + 3}  # the third of six groups fails
    written = writer.flush()
    assert 0 < written < 30
    assert writer.stats.queued == 30 - written
    assert writer.stats.failed_flushes == 2
    assert writer.flush() == 30 - written
    assert Counter(_ids(tmp_path)) == Counter(r["id"] for r in expected)
    assert all(p.suffix == ".parquet" for p in _files(tmp_path))


def test_background_flusher_retries_after_a_failure(
    tmp_path: Path, rename_fault: _RenameFault
) -> None:
    rename_fault.fail_calls = {1}
    writer = _writer(tmp_path, max_batch_rows=5, max_wait_s=0.01).start()
    for i in range(5):
        writer.append(_record(i, T0))
    _wait_for(lambda: writer.stats.written_rows == 5)
    assert writer.stats.failed_flushes == 1
    writer.close()
    assert sorted(_ids(tmp_path)) == [f"r{i}" for i in range(5)]


def test_close_drains_everything_then_drops(tmp_path: Path) -> None:
    with _writer(tmp_path, max_batch_rows=10_000, max_wait_s=60) as writer:
        for i in range(100):
            writer.append(_record(i, T0 + timedelta(minutes=i)))
    assert writer.stats.written_rows == 100
    assert writer.append(_record(100, T0)) is False
    assert writer.append(_record(101, T0)) is False
    writer.close()  # idempotent
    stats = writer.stats
    assert (stats.appended, stats.dropped, stats.queued) == (100, 2, 0)
    assert len(_ids(tmp_path)) == 100
    with pytest.raises(StateError, match="closed"):
        writer.start()


def test_append_stores_a_copy_of_the_record(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    record = _record(0, T0, value=1)
    writer.append(record)
    record["value"] = 2
    record["extra"] = "late"
    writer.flush()
    assert read_log(tmp_path).to_pydict() == {
        "time": [T0],
        "endpoint": ["delay"],
        "id": ["r0"],
        "value": [1],
    }


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs POSIX signals")
def test_close_from_a_signal_handler_drains_and_then_drops(tmp_path: Path) -> None:
    writer = _writer(tmp_path, max_batch_rows=100, max_wait_s=0.01).start()
    previous = signal.signal(signal.SIGUSR1, lambda *_: writer.close(timeout=5))
    try:
        accepted = []
        for i in range(2000):
            accepted.append(writer.append(_record(i, T0)))
            if i == 999:
                os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    stats = writer.stats
    assert 1000 <= stats.appended < 2000
    assert accepted == [True] * stats.appended + [False] * (2000 - stats.appended)
    assert (stats.dropped, stats.written_rows, stats.queued) == (
        2000 - stats.appended,
        stats.appended,
        0,
    )
    assert sorted(_ids(tmp_path)) == sorted(f"r{i}" for i in range(stats.appended))


def test_close_registered_with_atexit_writes_the_queue_at_exit(tmp_path: Path) -> None:
    script = f"""
import atexit
from datetime import UTC, datetime
from pathlib import Path
from prodml.core import SystemClock
from prodml.storage._logs import LogWriter

writer = LogWriter(Path({str(tmp_path)!r}), clock=SystemClock(), max_wait_s=60).start()
atexit.register(writer.close)
for i in range(10):
    writer.append({{"time": datetime(2013, 1, 1, tzinfo=UTC), "endpoint": "e", "id": f"r{{i}}"}})
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert sorted(_ids(tmp_path)) == sorted(f"r{i}" for i in range(10))


def test_close_without_a_started_thread_writes_the_queue(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.append(_record(0, T0))
    writer.close(timeout=1)
    assert _ids(tmp_path) == ["r0"]


class _PlusTwo(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=2)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


def test_column_types_mixed_missing_nested_and_odd_values(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    rows: list[dict[str, Any]] = [
        {"mixed": 1, "num": 1, "flag": True, "nested": {"z": 1, "a": [1, 2]}, "big": 2**70},
        {"mixed": "x", "num": 2.5, "only_here": "o", "nested": [{"b": None}], "big": 1},
        {"mixed": 2.5, "num": None, "flag": False, "np": np.int64(3), "at": datetime(2013, 1, 1)},
        {"mixed": None, "np": np.float32(0.5), "at": datetime(2013, 1, 1, 3, tzinfo=_PlusTwo())},
        {"mixed": True, "seen": T0, "nested": None, "all_null": None},
        {"mixed": T0 + timedelta(hours=5)},
    ]
    for i, row in enumerate(rows):
        writer.append(_record(i, T0 + timedelta(seconds=i), **row))
    writer.flush()
    table = read_log(tmp_path)
    assert table.num_rows == 6
    assert table.column_names[:3] == ["time", "endpoint", "id"]
    columns = table.to_pydict()
    assert columns["mixed"] == ["1", "x", "2.5", None, "true", "2013-01-01 05:00:00.000000Z"]
    assert table.schema.field("num").type == pa.float64()
    assert columns["num"] == [1.0, 2.5, None, None, None, None]
    assert columns["flag"] == [True, None, False, None, None, None]
    assert columns["only_here"] == [None, "o", None, None, None, None]
    assert columns["nested"] == ['{"a":[1,2],"z":1}', '[{"b":null}]', None, None, None, None]
    assert columns["big"] == [str(2**70), "1", None, None, None, None]
    assert table.schema.field("np").type == pa.float64()
    assert columns["np"] == [None, None, 3.0, 0.5, None, None]
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert columns["at"] == [None, None, T0, T0 + timedelta(hours=1), None, None]
    assert columns["seen"] == [None, None, None, None, T0, None]
    assert table.schema.field("all_null").type == pa.null()


@pytest.mark.parametrize(
    "rows",
    [
        [{"a": 1, "b": 2}, {"a": 3, "c": 4}],  # as many keys, not the same ones
        [{"b": 2, "a": 1}, {"a": 3, "b": 4}],  # the same keys in another order
        [{"a": 1}, {"b": 2}],  # one key each
        [{}, {}],  # time and partition only
        [{"a": 1}, {"a": 2, "b": 3}],  # more keys later
    ],
)
def test_every_key_becomes_a_column_in_first_seen_order(tmp_path: Path, rows: list[dict[str, Any]]) -> None:  # fmt: skip
    writer = _writer(tmp_path)
    records = [{"time": T0, "endpoint": "delay", **row} for row in rows]
    assert writer.extend(records) == len(records)
    writer.flush()
    table = read_log(tmp_path)
    keys = list(dict.fromkeys(k for r in records for k in r))
    assert table.column_names == keys
    assert table.to_pylist() == [{k: r.get(k) for k in keys} for r in records]


def test_a_time_arrow_cannot_convert_drops_only_that_row(tmp_path: Path) -> None:
    class Broken(tzinfo):
        def utcoffset(self, dt: datetime | None) -> timedelta:
            raise ValueError("no offset")

        def dst(self, dt: datetime | None) -> timedelta:
            return timedelta(0)

    writer = _writer(tmp_path)
    writer.append(_record(0, T0))
    writer.append(_record(1, datetime(2013, 1, 1, tzinfo=Broken())))
    writer.append(_record(2, T0))
    assert writer.flush() == 2
    stats = writer.stats
    assert (stats.dropped, stats.queued, stats.failed_flushes) == (1, 0, 0)
    assert stats.last_error is not None
    assert "'time'" in stats.last_error
    assert _ids(tmp_path) == ["r0", "r2"]


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"endpoint": "e"}, "time"),
        ({"time": "2013-01-01", "endpoint": "e"}, "time"),
        ({"time": T0.date(), "endpoint": "e"}, "time"),
        ({"time": 1357000000, "endpoint": "e"}, "time"),
        ({"time": T0}, "endpoint"),
        ({"time": T0, "endpoint": ""}, "endpoint"),
        ({"time": T0, "endpoint": None}, "endpoint"),
        ({"time": T0, "endpoint": 3}, "endpoint"),
        ({"time": T0, "endpoint": "../etc"}, "endpoint"),
        ({"time": T0, "endpoint": "a/b"}, "endpoint"),
        ({"time": T0, "endpoint": ".hidden"}, "endpoint"),
        ({"time": T0, "endpoint": "x" * 129}, "endpoint"),
    ],
)
def test_bad_time_or_partition_raises_schema_error(
    tmp_path: Path, record: dict[str, Any], field: str
) -> None:
    writer = _writer(tmp_path)
    with pytest.raises(SchemaError, match=f"'{field}'"):
        writer.append(record)
    assert writer.stats.appended == writer.stats.queued == 0


def test_custom_time_and_partition_fields(tmp_path: Path) -> None:
    writer = _writer(tmp_path, time_field="label_time", partition_field="model")
    writer.append({"label_time": T0, "model": "m1", "label": 1})
    with pytest.raises(SchemaError, match="'model'"):
        writer.append({"label_time": T0, "model": "no/slash"})
    writer.close()
    assert [p.parent.relative_to(tmp_path).as_posix() for p in _files(tmp_path)] == [
        "model=m1/date=2013-01-01/hour=00"
    ]
    table = read_log(tmp_path, time_field="label_time", partition_field="model", partition="m1")
    assert table.to_pydict() == {"label_time": [T0], "model": ["m1"], "label": [1]}


# -- read_log ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """A log over 30 hours on three dates, three endpoints; every record has its own time."""
    root = tmp_path_factory.mktemp("log")
    rng = random.Random(3)
    minutes = rng.sample(range(20 * 60, 50 * 60), 400)
    writer = _writer(root, max_batch_rows=50)
    records: list[dict[str, Any]] = []
    for i, minute in enumerate(minutes):
        record = _record(i, T0 + timedelta(minutes=minute), rng.choice(["a", "b", "c"]))
        if i % 3:
            record["score"] = i / 7
        records.append(record)
        writer.append(record)
        if i == 200:
            writer.flush()
    writer.close()
    return root, records


_moments = st.none() | st.integers(18 * 60, 52 * 60).map(
    lambda m: T0 + timedelta(minutes=m, seconds=30)
)


@settings(max_examples=30, deadline=None)
@given(
    partition=st.sampled_from([None, "a", "b", "c", "missing"]),
    start=_moments,
    end=_moments,
    naive=st.booleans(),
)
def test_read_log_window_and_partition_match_brute_force(
    log: tuple[Path, list[dict[str, Any]]],
    partition: str | None,
    start: datetime | None,
    end: datetime | None,
    naive: bool,
) -> None:
    log_root, records = log
    if naive:  # naive bounds mean UTC
        start = None if start is None else start.replace(tzinfo=None)
        end = None if end is None else end.replace(tzinfo=None)
    table = read_log(log_root, partition=partition, start=start, end=end)
    expected = sorted(
        (
            r
            for r in records
            if (partition is None or r["endpoint"] == partition)
            and (start is None or r["time"] >= start.replace(tzinfo=UTC))
            and (end is None or r["time"] < end.replace(tzinfo=UTC))
        ),
        key=lambda r: r["time"],
    )
    assert _column(table, "id") == [r["id"] for r in expected]
    assert _column(table, "endpoint") == [r["endpoint"] for r in expected]
    assert _column(table, "time") == [r["time"] for r in expected]
    assert _column(table, "score") == [r.get("score") for r in expected]


def test_read_log_prunes_directories_outside_the_window(
    log: tuple[Path, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    log_root, _ = log
    opened: list[Path] = []
    real = ds.dataset

    def spy(source: Any, **kwargs: Any) -> ds.Dataset:
        opened.extend(Path(path) for path in source)
        return real(source, **kwargs)

    monkeypatch.setattr(ds, "dataset", spy)
    start = T0 + timedelta(days=1, hours=5, minutes=10)
    table = read_log(log_root, partition="b", start=start, end=start + timedelta(hours=1))
    assert table.num_rows > 0
    assert opened
    assert {p.parent.relative_to(log_root).as_posix() for p in opened} <= {
        "endpoint=b/date=2013-01-02/hour=05",
        "endpoint=b/date=2013-01-02/hour=06",
    }


def test_read_log_columns_and_unknown_columns(log: tuple[Path, list[dict[str, Any]]]) -> None:
    log_root, records = log
    table = read_log(log_root, columns=["id", "nowhere"], end=T0 + timedelta(hours=26))
    expected = sorted(
        (r for r in records if r["time"] < T0 + timedelta(hours=26)), key=lambda r: r["time"]
    )
    assert expected
    assert table.column_names == ["id", "nowhere"]
    assert table["id"].to_pylist() == [r["id"] for r in expected]
    assert table["nowhere"].null_count == len(expected)


def test_read_log_unifies_schemas_across_files(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    hours = [T0 + timedelta(hours=h) for h in range(4)]
    writer.append(_record(0, hours[0], y=1, n=1, only_first=True, w=T0))
    writer.append(_record(1, hours[1], y="one", n=2.5, w="s"))
    writer.append(_record(2, hours[2], y=2.5, n=None))
    writer.append(_record(3, hours[3], y=None, n=4, only_last=[1]))
    writer.close()
    assert writer.stats.written_files == 4
    table = read_log(tmp_path)
    assert table.schema.field("y").type == pa.string()
    assert table.schema.field("n").type == pa.float64()
    assert table.to_pydict() == {
        "time": hours,
        "endpoint": ["delay"] * 4,
        "id": ["r0", "r1", "r2", "r3"],
        "y": ["1", "one", "2.5", None],
        "n": [1.0, 2.5, None, 4.0],
        "only_first": [True, None, None, None],
        "w": ["2013-01-01 00:00:00.000000Z", "s", None, None],
        "only_last": [None, None, None, "[1]"],
    }


def test_read_log_sorts_files_that_overlap_in_time_stably(tmp_path: Path) -> None:
    """Two flushes of one hour whose records interleave in time (two workers): read
    back by time, ties in file order, every column moved with its row."""
    clock = SimulatedClock(T0)
    writer = LogWriter(tmp_path, clock=clock)
    times = [0, 30, 30, 50, 10, 30, 40, 60]  # seconds; the second file starts earlier
    for i, second in enumerate(times):
        writer.append(_record(i, T0 + timedelta(seconds=second), x=float(i), s=f"v{i}"))
        if i == 3:
            writer.flush()
            clock.advance(timedelta(minutes=1))  # file names sort by write time
    writer.close()
    assert writer.stats.written_files == 2
    table = read_log(tmp_path)
    order = sorted(range(len(times)), key=lambda i: times[i])  # sorted() is stable
    assert table["id"].to_pylist() == [f"r{i}" for i in order]
    assert table["x"].to_pylist() == [float(i) for i in order]
    assert table["s"].to_pylist() == [f"v{i}" for i in order]
    assert table["time"].to_pylist() == [T0 + timedelta(seconds=times[i]) for i in order]
    assert table.column_names == ["time", "endpoint", "id", "x", "s"]


def test_read_log_of_a_missing_or_empty_root_is_an_empty_table(tmp_path: Path) -> None:
    empty = read_log(tmp_path / "missing")
    assert empty.num_rows == 0
    assert empty.schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert empty.column_names == ["time", "endpoint"]
    stray = tmp_path / "endpoint=a" / "date=2013-01-01" / "hour=00"
    stray.mkdir(parents=True)
    (stray / ".x.parquet.123.tmp").write_bytes(b"PAR1 half")
    (tmp_path / "endpoint=a" / "date=not-a-date").mkdir()
    (tmp_path / "README").write_text("not a log")
    assert read_log(tmp_path).num_rows == 0
    assert read_log(tmp_path, columns=["id", "time"]).column_names == ["id", "time"]


def test_read_log_rejects_a_path_unsafe_partition(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="'partition'"):
        read_log(tmp_path, partition="../other")


# -- column blocks --------------------------------------------------------------------------


def _block(ids: list[str], when: datetime, endpoint: str = "delay", **fields: Any) -> LogBlock:
    """A block of ``len(ids)`` records; list-valued ``fields`` vary by row."""
    varying = {"id", *(key for key, value in fields.items() if isinstance(value, list))}
    return LogBlock(
        len(ids), {"time": when, "endpoint": endpoint, "id": ids, **fields}, frozenset(varying)
    )


def _expanded(block: LogBlock) -> list[dict[str, Any]]:
    """The brute-force reference: the block as one dict per record."""
    return [
        {k: (v[i] if k in block.varying else v) for k, v in block.fields.items()}
        for i in range(block.rows)
    ]


_ITEMS = st.lists(
    st.tuples(
        st.booleans(),  # a block (True) or one record
        st.integers(1, 7),  # rows of a block
        st.sampled_from(["e0", "e1"]),
        st.integers(0, 2),  # hour
        st.sampled_from(["a", "b", None]),  # an extra field: constant, varying or absent
    ),
    min_size=1,
    max_size=25,
)


@given(items=_ITEMS, size=st.integers(1, 9))
@settings(max_examples=60, deadline=None)
def test_blocks_and_records_write_what_the_same_records_one_by_one_would(
    tmp_path_factory: pytest.TempPathFactory,
    items: list[tuple[bool, int, str, int, str | None]],
    size: int,
) -> None:
    blocks_root, rows_root = tmp_path_factory.mktemp("blocks"), tmp_path_factory.mktemp("rows")
    mixed, reference = _writer(blocks_root, max_batch_rows=size), _writer(rows_root)
    n = 0
    for is_block, rows, endpoint, hour, extra in items:
        when = T0 + timedelta(hours=hour, minutes=n % 60)
        ids = [f"r{n + i}" for i in range(rows if is_block else 1)]
        n += len(ids)
        fields: dict[str, Any] = {}
        if extra == "a":
            fields["x"] = 1.5
        elif extra == "b":  # varying in a block, a plain value in a record
            values = [float(i) if i % 2 else None for i in range(len(ids))]
            fields["y"] = values if is_block else values[0]
        if is_block:
            block = _block(ids, when, endpoint, **fields)
            assert mixed.extend_block(block) == block.rows
            records = _expanded(block)
        else:
            records = [{"time": when, "endpoint": endpoint, "id": ids[0], **fields}]
            assert mixed.append(records[0])
        for record in records:
            reference.append(record)
    assert mixed.flush() == reference.flush() == n
    assert mixed.stats.appended == n
    assert mixed.stats.queued == 0

    def rows_of(root: Path) -> list[dict[str, Any]]:
        """Each file's rows without their nulls (files split differently, and a column
        all null in one file is typed null there)."""
        rows = [
            {key: value for key, value in row.items() if value is not None}
            for path in _files(root)
            for row in pq.read_table(path).to_pylist()
        ]
        return sorted(rows, key=lambda row: int(row["id"][1:]))

    assert rows_of(blocks_root) == rows_of(rows_root)
    for path in _files(blocks_root):  # files keep to max_batch_rows unless one block is larger
        rows_in_file = pq.read_metadata(path).num_rows
        assert rows_in_file <= max(size, 7)
        assert path.parent.relative_to(blocks_root).as_posix().startswith("endpoint=e")


def test_a_block_goes_to_its_partition_and_hour_with_the_live_columns_first(
    tmp_path: Path,
) -> None:
    writer = _writer(tmp_path)
    writer.append(_record(0, T0, feature=1.0))
    writer.extend_block(_block(["s0", "s1"], T0 + timedelta(minutes=5), shadow=True))
    writer.extend_block(_block(["s2"], T0 + timedelta(hours=1), endpoint="other"))
    assert writer.flush() == 4
    files = _files(tmp_path)
    assert [p.parent.relative_to(tmp_path).as_posix() for p in files] == [
        "endpoint=delay/date=2013-01-01/hour=00",
        "endpoint=other/date=2013-01-01/hour=01",
    ]
    table = pq.read_table(files[0])
    assert table.column_names == ["time", "endpoint", "id", "feature", "shadow"]
    assert table.to_pydict()["feature"] == [1.0, None, None]
    assert table.to_pydict()["shadow"] == [None, True, True]
    assert table["time"].to_pylist() == [T0, *[T0 + timedelta(minutes=5)] * 2]


def test_a_block_larger_than_the_room_left_is_cut_and_the_rest_counted(tmp_path: Path) -> None:
    writer = _writer(tmp_path, max_queue=5)
    writer.append(_record(0, T0))
    assert writer.extend_block(_block([f"s{i}" for i in range(6)], T0, score=list(range(6)))) == 4
    assert writer.extend_block(_block(["late"], T0)) == 0
    stats = writer.stats
    assert (stats.queued, stats.appended, stats.dropped) == (5, 5, 3)
    assert writer.flush() == 5
    table = read_log(tmp_path)
    assert table["id"].to_pylist() == ["r0", "s0", "s1", "s2", "s3"]
    assert table["score"].to_pylist() == [None, 0, 1, 2, 3]


def test_a_failed_write_keeps_blocks_for_the_retry(
    tmp_path: Path, rename_fault: _RenameFault
) -> None:
    writer = _writer(tmp_path, max_batch_rows=3)
    writer.extend_block(_block(["a0", "a1"], T0))
    writer.append(_record(0, T0))
    writer.extend_block(_block(["b0", "b1", "b2", "b3"], T0))  # larger than a file: alone
    rename_fault.fail_calls = {2}
    written = writer.flush()
    assert 0 < written < 7
    assert writer.stats.queued == 7 - written
    assert writer.flush() == 7 - written
    assert Counter(_ids(tmp_path)) == Counter(["a0", "a1", "r0", "b0", "b1", "b2", "b3"])
    assert writer.stats.written_files == 2


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (LogBlock(0, {"time": T0, "endpoint": "e"}), "rows >= 1"),
        (LogBlock(1, {"endpoint": "e"}), "'time'"),
        (LogBlock(1, {"time": "2013", "endpoint": "e"}), "'time'"),
        (LogBlock(1, {"time": T0, "endpoint": "../x"}), "'endpoint'"),
        (LogBlock(1, {"time": [T0], "endpoint": "e"}, frozenset({"time"})), "'time'.*one value"),
        (
            LogBlock(1, {"time": T0, "endpoint": ["e"]}, frozenset({"endpoint"})),
            "'endpoint'.*one value",
        ),
        (LogBlock(2, {"time": T0, "endpoint": "e", "y": [1]}, frozenset({"y"})), "'y'.*2 values"),
        (LogBlock(2, {"time": T0, "endpoint": "e", "y": "ab"}, frozenset({"y"})), "'y'.*sequence"),
        (LogBlock(1, {"time": T0, "endpoint": "e"}, frozenset({"y"})), "'y' is missing"),
    ],
)
def test_a_bad_block_raises_schema_error_and_queues_nothing(
    tmp_path: Path, block: LogBlock, message: str
) -> None:
    writer = _writer(tmp_path)
    with pytest.raises(SchemaError, match=message):
        writer.extend_block(block)
    assert writer.stats.appended == writer.stats.queued == 0
