"""Label jobs: a DuckDB query or a Python function computes an endpoint's labels; a run
writes the ones known by the clock's now and not written before, checked as feedback is,
and keeps its watermark under the state directory."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prodml.core import (
    ConfigError,
    NotFoundError,
    SchemaError,
    SimulatedClock,
    SourceError,
    load_config_text,
)
from prodml.core._label_config import LabelJobConfig, LabelsConfig
from prodml.monitoring._records import LabelIndex
from prodml.serving import LabelJobRun, run_label_jobs
from prodml.serving._label_jobs import watermark_path
from prodml.storage import MemoryLogStore

T = datetime(2013, 6, 1, tzinfo=UTC)
LATE = "SELECT flight_id AS request_id, arr_delay > 15 AS label, landed_at AS time " \
       "FROM 'data/flights.parquet' WHERE landed_at IS NOT NULL"  # fmt: skip


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project root with ``data/flights.parquet``: six flights landing an hour apart
    from ``T``, the last one not landed."""
    (tmp_path / "data").mkdir()
    landed = [T + timedelta(hours=h) for h in range(5)] + [None]
    pq.write_table(
        pa.table(
            {
                "flight_id": pa.array(range(100, 106)),
                "arr_delay": pa.array([40.0, -3.0, 16.0, 0.0, 90.0, None]),
                "landed_at": pa.array(landed, pa.timestamp("us", tz="UTC")),
            }
        ),
        tmp_path / "data" / "flights.parquet",
    )
    return tmp_path


Runner = Callable[..., list[LabelJobRun]]


@pytest.fixture
def run(root: Path) -> tuple[Runner, MemoryLogStore, SimulatedClock]:
    """``run(*jobs)`` against one label log and clock."""
    store, clock = MemoryLogStore("labels"), SimulatedClock(T)

    def runner(*jobs: LabelJobConfig) -> list[LabelJobRun]:
        return run_label_jobs(jobs, root=root, state_dir=root / ".prodml", store=store, clock=clock)

    return runner, store, clock


def _job(**fields: Any) -> LabelJobConfig:
    return LabelJobConfig.model_validate({"name": "late_flights", "endpoint": "flights", **fields})


def test_a_run_writes_the_labels_known_by_now_once(
    root: Path, run: tuple[Runner, MemoryLogStore, SimulatedClock]
) -> None:
    runner, store, clock = run
    job = _job(sql=LATE)
    clock.set(T + timedelta(hours=2, minutes=30))
    (first,) = runner(job)
    assert (first.name, first.written, first.watermark) == (
        "late_flights", 3, T + timedelta(hours=2)
    )  # fmt: skip
    assert runner(job) == [LabelJobRun("late_flights", 0, T + timedelta(hours=2))]
    clock.set(T + timedelta(hours=10))
    assert [r.to_dict() for r in runner(job)] == [
        {"name": "late_flights", "written": 2, "watermark": "2013-06-01T04:00:00+00:00"}
    ]
    labels = store.read(endpoint="flights")
    assert labels["request_id"].to_pylist() == ["100", "101", "102", "103", "104"]
    assert labels["label"].to_pylist() == [True, False, True, False, True]
    assert labels["time"].to_pylist() == [T + timedelta(hours=h) for h in range(5)]
    assert set(labels["source"].to_pylist()) == {"job:late_flights"}
    saved = json.loads(watermark_path(root / ".prodml", "late_flights").read_text())
    assert saved["watermark"] == "2013-06-01T04:00:00+00:00"
    assert runner(job)[0].written == 0


LABELS_PY = """
from pathlib import Path

import pandas as pd


def landed(start, end):
    with Path(__file__).with_name("calls.txt").open("a") as calls:
        calls.write(f"{start} {end}\\n")
    times = pd.to_datetime(["2013-06-01 00:00", "2013-06-01 01:00", "2013-06-01 09:00"], utc=True)
    return pd.DataFrame({
        "flight": [100, 101, 102],
        "origin": ["JFK", "EWR", "JFK"],
        "event_time": times - pd.Timedelta(hours=5),
        "label": [1, 0, 1],
        "time": times,
    })
"""


def test_a_function_job_by_entities_is_called_with_its_window_and_joined_by_the_monitor(
    root: Path, run: tuple[Runner, MemoryLogStore, SimulatedClock]
) -> None:
    runner, store, clock = run
    (root / "labels.py").write_text(LABELS_PY)
    job = _job(function="labels.py:landed", join="entities")
    clock.set(T + timedelta(hours=1))
    assert runner(job)[0].written == 2
    clock.set(T + timedelta(hours=12))
    assert runner(job)[0].written == 1
    assert (root / "calls.txt").read_text().splitlines() == [
        "None 2013-06-01 01:00:00+00:00",
        "2013-06-01 01:00:00+00:00 2013-06-01 12:00:00+00:00",
    ]
    labels = store.read(endpoint="flights")
    assert [json.loads(e) for e in labels["entities"].to_pylist()] == [
        {"flight": 100, "origin": "JFK"}, {"flight": 101, "origin": "EWR"},
        {"flight": 102, "origin": "JFK"},
    ]  # fmt: skip
    assert labels["request_id"].null_count == 3
    # The monitor's label index answers the predictions logged at each event time.
    predictions = MemoryLogStore("predictions")
    with predictions.open_writer(clock=clock) as writer:
        for i, (flight, origin) in enumerate([(100, "JFK"), (101, "EWR"), (102, "LGA")]):
            writer.append({"time": T - timedelta(hours=5) + timedelta(hours=i), "row": 0,
                           "endpoint": "flights", "request_id": f"r{i}",
                           "entity.flight": flight, "entity.origin": origin})  # fmt: skip
    index = LabelIndex(store, "flights", predictions=predictions).get(T - timedelta(days=1))
    found = dict(zip(index["request_id"].to_pylist(), index["label"].to_pylist(), strict=True))
    assert found == {"r0": 1.0, "r1": 0.0}


def test_a_row_column_names_the_row_each_label_answers(
    run: tuple[Runner, MemoryLogStore, SimulatedClock],
) -> None:
    runner, store, clock = run
    sql = "SELECT 'r1' AS request_id, 2 AS row, 0.5 AS label, TIMESTAMPTZ '2013-06-01 00:00:00+00' AS time"
    clock.set(T + timedelta(minutes=1))
    assert runner(_job(sql=sql))[0].written == 1
    labels = store.read(endpoint="flights")
    assert (labels["row"].to_pylist(), labels["label"].to_pylist()) == ([2], [0.5])


@pytest.mark.parametrize(
    ("fields", "error", "names"),
    [
        ({"sql": "SELECT * FROM 'data/missing.parquet'"}, SourceError, ["its sql failed"]),
        ({"sql": "SELECT 1 AS request_id, true AS label"}, SchemaError, ["'time'"]),
        ({"sql": "SELECT 1 AS request_id, now() AS time"}, SchemaError, ["'label' or 'reward'"]),
        ({"sql": "SELECT true AS label, now() AS time"}, SchemaError, ["'request_id'"]),
        ({"sql": "SELECT 1 AS flight, true AS label, now() AS time", "join": "entities"},
         SchemaError, ["'event_time'"]),
        ({"sql": "SELECT now() AS event_time, true AS label, now() AS time", "join": "entities"},
         SchemaError, ["no entity key column"]),
        ({"sql": "SELECT 1 AS request_id, true AS label, 'soon' AS time"},
         SchemaError, ["'time'", "not times"]),
        ({"sql": "SELECT 1 AS request_id, true AS label, NULL::TIMESTAMP AS time"},
         SchemaError, ["'time'", "1 empty"]),
        ({"sql": "SELECT 1 AS request_id, -1 AS row, true AS label, "
                 "TIMESTAMP '2013-05-01' AS time"}, SchemaError, ["'row'", "negative"]),
        ({"sql": "SELECT * FROM (VALUES ('a', 1, TIMESTAMP '2013-05-01'), "
                 "(NULL, NULL, TIMESTAMP '2013-05-02')) t(request_id, label, time)"},
         SchemaError, ["row 1 'request_id' missing_field", "row 1 'label' missing_field"]),
        # text the monitor would read as "no label": refused, not dropped without a word
        ({"sql": "SELECT * FROM (VALUES ('a', 'true', TIMESTAMP '2013-05-01'), "
                 "('b', 'yes', TIMESTAMP '2013-05-02')) t(request_id, label, time)"},
         SchemaError, ["row 1 'label' unreadable", "a finite number, a boolean"]),
        ({"function": "nowhere.py:labels"}, ConfigError, ["nowhere.py", "no such file"]),
    ],
)  # fmt: skip
def test_a_job_that_fails_or_lacks_a_column_is_an_error_naming_the_job(
    run: tuple[Runner, MemoryLogStore, SimulatedClock],
    fields: dict[str, Any],
    error: type[Exception],
    names: list[str],
) -> None:
    runner, store, _ = run
    with pytest.raises(error) as raised:
        runner(_job(**fields))
    message = str(raised.value)
    assert message.startswith("label job 'late_flights'"), message
    for name in names:
        assert name in message
    assert store.read(endpoint="flights").num_rows == 0


def test_labels_are_configured_once_in_prodml_toml() -> None:
    config = load_config_text(
        f'[[labels.jobs]]\nname = "late_flights"\nendpoint = "flights"\nsql = "{LATE}"\n'
        '[[labels.jobs]]\nname = "by_entity"\nendpoint = "flights"\n'
        'function = "labels.py:landed"\njoin = "entities"\n',
        environ={},
    )
    assert [(j.name, j.join) for j in config.labels.jobs] == [
        ("late_flights", "request_id"), ("by_entity", "entities")
    ]  # fmt: skip
    assert load_config_text("", environ={}).labels.jobs == ()
    with pytest.raises(ValueError, match="exactly one of sql and function"):
        _job()
    with pytest.raises(ValueError, match="exactly one of sql and function"):
        _job(sql="SELECT 1", function="labels.py:landed")
    with pytest.raises(ValueError, match="repeated"):
        LabelsConfig.model_validate({"jobs": [_job(sql="SELECT 1").model_dump()] * 2})
    with pytest.raises(NotFoundError, match=r"'nope'.*expected one of \['late_flights'"):
        config.labels.job("nope")
    with pytest.raises(ConfigError, match=r"labels\.jobs"):
        load_config_text('[[labels.jobs]]\nname = "x"\nendpoint = "e"\n', environ={})


def test_a_dataframe_with_naive_times_is_read_as_utc(
    root: Path, run: tuple[Runner, MemoryLogStore, SimulatedClock]
) -> None:
    runner, store, clock = run
    (root / "naive.py").write_text(
        "import pandas as pd\n\n\ndef labels(start, end):\n"
        "    return pd.DataFrame({'request_id': ['a'], 'reward': [0.25],\n"
        "                         'time': [pd.Timestamp('2013-06-01 03:00')]})\n"
    )
    clock.set(T + timedelta(hours=3))
    assert runner(_job(function="naive.py:labels"))[0].watermark == T + timedelta(hours=3)
    labels = store.read(endpoint="flights")
    assert labels["reward"].to_pylist() == [0.25]
    assert pd.Timestamp(labels["time"][0].as_py()) == pd.Timestamp(T + timedelta(hours=3))
