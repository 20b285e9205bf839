"""Hostile inputs and faults on the storage layer's logs and on ``prodml.toml``: each
test is one way a bad value or a failing disk got a raw error, a stalled log, duplicated
or hidden records, or a config that passed validation and broke later."""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prodml.core import ConfigError, SimulatedClock, StorageError, load_config_text
from prodml.storage import _logs
from prodml.storage._log_format import LOG_TIMESTAMP
from prodml.storage._log_reader import QuarantinedFile, log_files, read_log
from prodml.storage._logs import LogWriter

T0 = datetime(2013, 1, 1, 5, 30, tzinfo=UTC)


def _writer(root: Path) -> LogWriter:
    return LogWriter(root, clock=SimulatedClock(T0), max_wait_s=3600.0)


def _records(n: int, endpoint: str = "e", **extra: Any) -> list[dict[str, Any]]:
    return [
        {"time": T0 + timedelta(minutes=i), "endpoint": endpoint, "i": i, **extra} for i in range(n)
    ]


# -- the writer ----------------------------------------------------------------------------


class _BrokenOffset(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        raise RuntimeError("no offset")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\ud800", id="lone-surrogate"),
        pytest.param(["ok", "\udfff"], id="surrogate-in-list"),
        pytest.param(datetime(2013, 1, 1, tzinfo=_BrokenOffset()), id="datetime-broken-tz"),
    ],
)
def test_one_odd_value_neither_stalls_the_log_nor_loses_the_other_records(
    tmp_path: Path, value: object
) -> None:
    writer = _writer(tmp_path)
    writer.extend(_records(3))
    writer.append({"time": T0, "endpoint": "e", "i": 99, "odd": value})
    writer.extend(_records(2, endpoint="other"))
    writer.close()
    stats = writer.stats
    assert (stats.queued, stats.written_rows, stats.failed_flushes) == (0, 6, 0)
    table = read_log(tmp_path)
    assert sorted(table["i"].to_pylist()) == [0, 0, 1, 1, 2, 99]
    odd = [v for v in table["odd"].to_pylist() if v is not None]
    assert len(odd) == 1  # kept as text, not dropped
    assert odd[0]


def test_a_not_a_time_value_in_a_datetime_column_is_a_null(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    writer = _writer(tmp_path)
    writer.append({"time": T0, "endpoint": "e", "at": pd.NaT})
    writer.append({"time": T0, "endpoint": "e", "at": datetime(2013, 1, 2, tzinfo=UTC)})
    writer.close()
    assert (writer.stats.queued, writer.stats.written_rows) == (0, 2)
    assert read_log(tmp_path)["at"].to_pylist() == [None, datetime(2013, 1, 2, tzinfo=UTC)]


def test_a_column_name_that_is_not_utf8_does_not_stall_the_log(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.extend(_records(2))
    writer.append({"time": T0, "endpoint": "e", "\ud800": 1})
    writer.close()
    assert (writer.stats.queued, writer.stats.written_rows) == (0, 3)
    assert read_log(tmp_path).num_rows == 3


def test_a_time_whose_utc_hour_is_before_year_one_is_dropped_not_retried_forever(
    tmp_path: Path,
) -> None:
    writer = _writer(tmp_path)
    writer.extend(_records(2))
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))  # UTC: year 0
    writer.append({"time": early, "endpoint": "e", "i": 99})
    writer.close()
    stats = writer.stats
    assert (stats.queued, stats.written_rows, stats.dropped) == (0, 2, 1)
    assert "'time'" in str(stats.last_error)
    assert read_log(tmp_path)["i"].to_pylist() == [0, 1]


def test_a_failure_after_the_file_is_in_place_does_not_write_the_rows_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _logs.mark_changed
    calls = {"n": 0}

    def failing_after_rename(day: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the touch after the rename
            raise OSError(errno.EIO, "I/O error")
        real(day)

    writer = _writer(tmp_path)
    writer.extend(_records(5))
    monkeypatch.setattr(_logs, "mark_changed", failing_after_rename)
    writer.flush()
    monkeypatch.setattr(_logs, "mark_changed", real)
    writer.close()
    assert sorted(read_log(tmp_path)["i"].to_pylist()) == [0, 1, 2, 3, 4]
    assert (writer.stats.queued, writer.stats.written_rows) == (0, 5)


def test_a_full_disk_keeps_the_rows_for_a_retry_that_writes_them_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = _writer(tmp_path)
    writer.extend(_records(5))
    with monkeypatch.context() as patch:
        patch.setattr(_logs, "write_table", disk_full)
        assert writer.flush() == 0
    assert writer.stats.queued == 5
    assert "No space" in str(writer.stats.last_error)
    writer.close()
    assert sorted(read_log(tmp_path)["i"].to_pylist()) == [0, 1, 2, 3, 4]


# -- the reader ----------------------------------------------------------------------------


def _log_with_foreign_time(root: Path, time_type: pa.DataType) -> Path:
    writer = _writer(root)
    writer.extend(_records(3))
    writer.append({"time": T0 + timedelta(hours=1), "endpoint": "e", "i": 3})
    writer.close()
    hour = root / "endpoint=e" / "date=2013-01-01" / "hour=05"
    foreign = hour / "foreign.parquet"
    when = pa.array([datetime(2013, 1, 1, 5, 45)]).cast(time_type)
    pq.write_table(pa.table({"time": when, "i": [7]}), foreign)
    return foreign


@pytest.mark.parametrize(
    "time_type",
    [
        pytest.param(pa.timestamp("us"), id="naive"),
        pytest.param(pa.timestamp("ns", tz="UTC"), id="nanoseconds"),
        pytest.param(pa.timestamp("us", tz="America/New_York"), id="other-zone"),
        pytest.param(pa.string(), id="text"),
    ],
)
def test_a_file_whose_time_column_is_not_utc_microseconds_is_quarantined_alone(
    tmp_path: Path, time_type: pa.DataType
) -> None:
    foreign = _log_with_foreign_time(tmp_path, time_type)
    quarantine: list[QuarantinedFile] = []
    table = read_log(tmp_path, start=T0, end=T0 + timedelta(days=1), quarantine=quarantine)
    assert table.schema.field("time").type == LOG_TIMESTAMP
    assert sorted(table["i"].to_pylist()) == [0, 1, 2, 3]
    assert [moved.source for moved in quarantine] == [foreign]
    assert "'time'" in quarantine[0].reason
    assert "timestamp[us, tz=UTC]" in quarantine[0].reason


def test_a_file_whose_time_column_is_naive_is_refused_by_name(tmp_path: Path) -> None:
    foreign = _log_with_foreign_time(tmp_path, pa.timestamp("us"))
    with pytest.raises(StorageError, match=r"foreign\.parquet") as caught:
        read_log(tmp_path)
    assert "timestamp[us, tz=UTC]" in str(caught.value)
    assert log_files(tmp_path) is None  # scanning readers fall back to read_log
    assert foreign.exists()


# -- prodml.toml ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("[monitoring]\nwatch_interval_s = inf\n", "watch_interval_s", id="watch"),
        pytest.param("[serving]\nlog_flush_interval_s = inf\n", "log_flush_interval_s", id="f"),
        pytest.param("[serving]\nshutdown_timeout_s = inf\n", "shutdown_timeout_s", id="stop"),
        pytest.param("[gate]\nlatency_p99_ms = inf\n", "latency_p99_ms", id="gate"),
        pytest.param(
            "[monitoring.numeric]\nstatistic = 'psi'\nthreshold = inf\n", "threshold", id="drift"
        ),
        pytest.param(
            "[[monitoring.alerts.sinks]]\nname = 's'\ntype = 'log'\ntimeout_s = inf\n",
            "timeout_s",
            id="sink",
        ),
    ],
)
def test_an_infinite_number_in_the_config_is_refused(text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config_text(text, environ={})


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("[monitoring]\ngrace = '99999999999999999999d'\n", "grace", id="grace"),
        pytest.param("[monitoring]\nlabel_horizon = '999999999d'\n", "label_horizon", id="horizon"),
        pytest.param("[monitoring]\nwindow = '99999999999h'\n", "window", id="window"),
        pytest.param("[monitoring]\nstep = '99999999999mo'\n", "step", id="step"),
        pytest.param(
            "[[monitoring.alerts.rules]]\nname = 'r'\nmetric = 'drift.share'\n"
            "threshold = 0.1\nfor = '99999999999999999999d'\n",
            "for",
            id="alert-for",
        ),
        pytest.param(
            "[[retraining.policies]]\nname = 'p'\nmodel = 'm'\nstart = '2013-01-01'\n"
            "cooldown = '99999999999999999999d'\n"
            "[[retraining.policies.triggers]]\nkind = 'schedule'\nevery = '1d'\n",
            "cooldown",
            id="cooldown",
        ),
        pytest.param(
            "[features]\nmaterialize_chunk_hours = 99999999999\n",
            "materialize_chunk_hours",
            id="chunk",
        ),
    ],
)
def test_a_duration_too_long_for_a_date_is_refused_by_name(text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config_text(text, environ={})


@pytest.mark.parametrize(
    "reference",
    ["2013-13-45/2013-14-01", "2013-06-01/2013-01-01", "2013-01-01/2013-01-01"],
)
def test_a_reference_window_that_is_no_window_is_refused(reference: str) -> None:
    with pytest.raises(ConfigError, match="reference"):
        load_config_text(f"[monitoring]\nreference = '{reference}'\n", environ={})


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("[project]\nstate_dir = ''\n", "state_dir", id="state-empty"),
        pytest.param('[project]\nstate_dir = "a\\u0000b"\n', "state_dir", id="state-nul"),
        pytest.param("[artifacts]\ntype = 'local'\npath = ''\n", "path", id="artifacts"),
        pytest.param('[metadata]\ntype = "sqlite"\npath = "a\\u0000b"\n', "path", id="meta"),
        pytest.param("[offline_store]\npath = ''\n", "path", id="offline"),
        pytest.param("[features]\ndatasets_path = ''\n", "datasets_path", id="datasets"),
    ],
)
def test_an_empty_or_nul_path_in_the_config_is_refused(text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config_text(text, environ={})


def test_a_state_dir_that_cannot_be_created_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    """``state_dir = "prodml.toml"`` (a file in the way) raised a raw FileExistsError."""
    from prodml import Project

    Project.init(tmp_path / "p", name="p").close()
    config = tmp_path / "p" / "prodml.toml"
    text = config.read_text()
    config.write_text(
        text.replace("[project]\n", '[project]\nstate_dir = "prodml.toml/state"\n', 1)
    )
    with pytest.raises(StorageError, match=r"state_dir 'prodml.toml/state' cannot be created"):
        Project.open(tmp_path / "p")


@pytest.mark.parametrize("value", ["1e300", "1e-9", "0"])
def test_a_retraining_lease_outside_a_second_to_a_week_is_refused(value: str) -> None:
    """1e300 raised an OverflowError in every ``prodml controller`` command; 1e-9 lost the
    lease before each job's first step."""
    with pytest.raises(ConfigError, match="lease_s"):
        load_config_text(f"[project]\nname = 'p'\n\n[retraining]\nlease_s = {value}\n")


def test_a_serving_port_given_as_a_boolean_is_refused() -> None:
    """``port = true`` was read as port 1."""
    with pytest.raises(ConfigError, match="port"):
        load_config_text("[project]\nname = 'p'\n\n[serving]\nport = true\n")
    assert (
        load_config_text("[project]\nname = 'p'\n\n[serving]\nport = 9000\n").serving.port == 9000
    )
