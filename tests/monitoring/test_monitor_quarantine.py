"""An unreadable Parquet file in the prediction or label log (0 bytes, random bytes, a
truncated file, a column no other file's type can be read as) is moved to the log's
quarantine, reported in the results of the windows of its hour and in the pass's output,
and raised as an alert; every other window and endpoint is computed, and a re-run is
clean."""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli import app
from prodml.core import SimulatedClock
from prodml.core.errors import StorageError
from prodml.serving import Prediction, PredictionLog
from prodml.storage import read_log
from prodml.storage._log_format import quarantine_root

ROWS = 30  # per file; two files per hour
HOURS = 4
BAD_HOUR = 1


def _first_hour() -> datetime:
    """Recent enough that a pass from the wall clock computes a handful of windows."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=HOURS + 2)


def _project(trained: tuple[Path, str, pa.Table], dest: Path, *, endpoints: int = 1) -> Path:
    """A copy of the trained project with hourly windows and, per endpoint, two
    prediction files and two label files in each of ``HOURS`` hours."""
    root, model, table = trained
    shutil.copytree(root, dest)
    text = (dest / "prodml.toml").read_text()
    (dest / "prodml.toml").write_text(text + '\n[monitoring]\nwindow = "1h"\nmin_rows = 10\n')
    first = _first_hour()
    with Project.open(dest, clock=SimulatedClock(first)) as project:
        loaded = project.registry.load(model)
        inputs = loaded.signature.columns
        for number in range(endpoints):
            endpoint = "flights" if number == 0 else f"flights{number}"
            for hour in range(HOURS):
                for batch in range(2):
                    seed = 1000 * number + 10 * hour + batch
                    _log_batch(project, loaded, model, inputs, table, endpoint, first, hour,
                               batch, seed)  # fmt: skip
    return dest


def _log_batch(
    project: Project,
    loaded: Any,
    model: str,
    inputs: list[str],
    table: pa.Table,
    endpoint: str,
    first: datetime,
    hour: int,
    batch: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    frame = table.to_pandas().iloc[rng.integers(0, table.num_rows, ROWS)].reset_index(drop=True)
    scores = np.asarray(loaded.predict(frame[inputs]), dtype=np.float64)
    records = frame[inputs].to_dict("records")
    begins = first + timedelta(hours=hour, minutes=30 * batch)
    clock = SimulatedClock(begins)
    log = PredictionLog(project.logs, clock=clock, flush_rows=10_000, flush_interval_s=600)
    try:
        for i in range(ROWS):
            at = begins + timedelta(seconds=20 * i)
            clock.set(at)
            request_id = f"{endpoint}-{seed}-{i}"
            log.record(
                Prediction(request_id, endpoint, "champion", model,
                           scores[i : i + 1], "ok"),
                frame.iloc[i : i + 1], rows=[records[i]], unit="u", latency_ms=3.0,
            )  # fmt: skip
            log.record_label(
                {"time": at + timedelta(seconds=5), "endpoint": endpoint,
                 "request_id": request_id, "row": 0, "label": bool(frame.at[i, "late"])}
            )  # fmt: skip
    finally:
        log.close()


def _files(root: Path, log: str, endpoint: str = "flights") -> list[Path]:
    return sorted((root / ".prodml" / "logs" / log / f"endpoint={endpoint}").rglob("*.parquet"))


def _bad_file(root: Path, log: str = "predictions") -> Path:
    """The first file of ``BAD_HOUR``."""
    hour = f"hour={_first_hour() + timedelta(hours=BAD_HOUR):%H}"
    return next(p for p in _files(root, log) if p.parent.name == hour)


def _corrupt(path: Path, how: str) -> bytes:
    data = path.read_bytes()
    if how == "empty":
        bad = b""
    elif how == "garbage":
        bad = random.Random(7).randbytes(len(data))
    else:
        bad = data[: len(data) // 2]
    path.write_bytes(bad)
    return bad


def _run(root: Path) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["monitor", "run", "-p", str(root), "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def _quarantined_result(window: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in window["results"] if r["check"] == "log")


@pytest.mark.parametrize("how", ["empty", "garbage", "truncated"])
def test_an_unreadable_prediction_file_is_quarantined_and_the_rest_computed(
    trained: tuple[Path, str, pa.Table], tmp_path: Path, how: str
) -> None:
    root = _project(trained, tmp_path / "p")
    bad = _bad_file(root)
    bad_rows = pq.read_metadata(bad).num_rows
    assert bad_rows == ROWS
    content = _corrupt(bad, how)
    state = root / ".prodml"
    moved = quarantine_root(state / "logs" / "predictions") / bad.relative_to(
        state / "logs" / "predictions"
    )

    data = _run(root)

    first = _first_hour()
    computed = {w["start"]: w for w in data["computed"]}
    for hour in range(HOURS):
        window = computed[(first + timedelta(hours=hour)).isoformat()]
        expected = 2 * ROWS - (bad_rows if hour == BAD_HOUR else 0)
        assert window["status"] == "computed"
        assert window["rows"] == expected  # all but the bad file's own rows
        log_result = _quarantined_result(window)
        assert log_result["metric"] == "quarantined_files"
        assert log_result["value"] == (1.0 if hour == BAD_HOUR else 0.0)
    window = computed[(first + timedelta(hours=BAD_HOUR)).isoformat()]
    files = _quarantined_result(window)["details"]["files"]
    assert files == [moved.relative_to(state).as_posix()]
    assert not bad.exists()
    assert moved.read_bytes() == content  # moved whole, never rewritten
    assert [(q["log"], q["endpoint"], q["path"]) for q in data["quarantined"]] == [
        ("predictions", "flights", bad.relative_to(state).as_posix())
    ]
    assert data["quarantined"][0]["quarantined_to"] == moved.relative_to(state).as_posix()
    assert data["quarantined"][0]["reason"]
    fired = [(n["rule"], n["state"]) for n in data["notifications"]]
    assert ("log_quarantine", "firing") in fired
    fired_at = data["notifications"][0]["window_start"].replace("Z", "+00:00")
    assert datetime.fromisoformat(fired_at) == first + timedelta(hours=BAD_HOUR)
    assert data["notifications"][0]["evidence"][-1]["details"]["files"] == files

    again = _run(root)
    assert again["computed"] == []
    assert again["quarantined"] == []
    assert [n for n in again["notifications"] if n["state"] == "firing"] == []
    assert moved.read_bytes() == content


def test_a_pass_reports_quarantined_files_and_other_endpoints_go_on(
    trained: tuple[Path, str, pa.Table], tmp_path: Path
) -> None:
    root = _project(trained, tmp_path / "p", endpoints=2)
    first = _first_hour()
    # Every file of one hour of the first endpoint is unreadable: that window is empty.
    hour = f"hour={first + timedelta(hours=BAD_HOUR):%H}"
    bad = [p for p in _files(root, "predictions") if p.parent.name == hour]
    assert len(bad) == 2
    for path in bad:
        _corrupt(path, "empty")
    with Project.open(root, clock=SimulatedClock(first + timedelta(hours=HOURS, minutes=10))) as p:
        outcome = p.monitor.run()
        stored = p.monitor.stored(endpoint="flights")
    by_endpoint: dict[str, list[Any]] = {}
    for report in outcome.computed:
        by_endpoint.setdefault(report.window.endpoint, []).append(report)
    assert [r.window.rows for r in by_endpoint["flights1"]] == [2 * ROWS] * HOURS
    assert [r.window.rows for r in by_endpoint["flights"]] == [2 * ROWS, 0, 2 * ROWS, 2 * ROWS]
    empty = by_endpoint["flights"][BAD_HOUR]
    assert empty.window.status == "empty"
    assert [(r.check, r.metric, r.value) for r in empty.results] == [
        ("log", "quarantined_files", 2.0)
    ]
    assert len(outcome.quarantined) == 2
    # The stored window says the same as the pass.
    saved = next(s for s in stored if s.window.start == empty.window.start)
    assert [(r.metric, r.value) for r in saved.results] == [("quarantined_files", 2.0)]
    notes = [(n["rule"], n["state"], n["scope"]) for n in outcome.notifications]
    assert notes[0][:2] == ("log_quarantine", "firing")
    assert "endpoint=flights" in notes[0][2]
    assert ("log_quarantine", "resolved") in [n[:2] for n in notes]  # the next clean window


def test_an_unreadable_label_file_is_quarantined_and_labels_are_joined_from_the_rest(
    trained: tuple[Path, str, pa.Table], tmp_path: Path
) -> None:
    root = _project(trained, tmp_path / "p")
    bad = _bad_file(root, "labels")
    content = _corrupt(bad, "garbage")
    state = root / ".prodml"
    data = _run(root)
    first = _first_hour()
    computed = {w["start"]: w for w in data["computed"]}
    for hour in range(HOURS):
        window = computed[(first + timedelta(hours=hour)).isoformat()]
        assert window["rows"] == 2 * ROWS
        assert window["label_rows"] == (ROWS if hour == BAD_HOUR else 2 * ROWS)
        assert _quarantined_result(window)["value"] == (1.0 if hour == BAD_HOUR else 0.0)
    assert [(q["log"], q["path"]) for q in data["quarantined"]] == [
        ("labels", bad.relative_to(state).as_posix())
    ]
    moved = state / data["quarantined"][0]["quarantined_to"]
    assert moved.read_bytes() == content
    assert "log_quarantine" in {n["rule"] for n in data["notifications"]}
    assert _run(root)["quarantined"] == []


def test_the_human_output_names_the_quarantined_file(
    trained: tuple[Path, str, pa.Table], tmp_path: Path
) -> None:
    root = _project(trained, tmp_path / "p")
    bad = _bad_file(root)
    _corrupt(bad, "truncated")
    result = CliRunner().invoke(app, ["monitor", "run", "-p", str(root)])
    assert result.exit_code == 0, result.output
    assert "quarantine" in result.output.lower()
    assert bad.name in result.output.replace("\n", "")


def _write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_read_log_quarantines_a_file_whose_columns_cannot_be_unified(tmp_path: Path) -> None:
    root = tmp_path / "logs" / "predictions"
    hour = root / "endpoint=e" / "date=2013-01-01" / "hour=05"
    when = datetime(2013, 1, 1, 5, tzinfo=UTC)
    _write(hour / "a.parquet", pa.table({"time": [when], "endpoint": ["e"], "x": [1.5]}))
    _write(hour / "b.parquet", pa.table({"time": [when], "endpoint": ["e"], "x": [[1, 2]]}))
    with pytest.raises(StorageError, match=r"b\.parquet"):
        read_log(root)  # without a quarantine list: refused as before, naming the file
    moved: list[Any] = []
    table = read_log(root, quarantine=moved)
    assert table["x"].to_pylist() == [1.5]
    assert [(q.source.name, q.target) for q in moved] == [
        ("b.parquet", tmp_path / "logs" / "quarantine" / "predictions" / hour.relative_to(root)
         / "b.parquet")
    ]  # fmt: skip
    assert "cast" in moved[0].reason.lower()
    assert read_log(root, quarantine=moved).num_rows == 1  # nothing new to move
    assert len(moved) == 1


def test_read_log_with_every_file_unreadable_is_an_empty_log(tmp_path: Path) -> None:
    root = tmp_path / "logs" / "labels"
    hour = root / "endpoint=e" / "date=2013-01-01" / "hour=05"
    hour.mkdir(parents=True)
    (hour / "a.parquet").write_bytes(b"")
    moved: list[Any] = []
    table = read_log(root, quarantine=moved, columns=["time", "label"])
    assert table.column_names == ["time", "label"]
    assert table.num_rows == 0
    assert [q.source.name for q in moved] == ["a.parquet"]
    # A second file of the same name quarantined later never replaces the first.
    (hour / "a.parquet").write_bytes(b"x")
    read_log(root, quarantine=moved)
    kept = sorted(p.read_bytes() for p in moved[0].target.parent.iterdir())
    assert kept == [b"", b"x"]


def test_read_log_quarantines_a_file_with_a_corrupt_page(tmp_path: Path) -> None:
    root = tmp_path / "logs" / "predictions"
    hour = root / "endpoint=e" / "date=2013-01-01" / "hour=05"
    when = datetime(2013, 1, 1, 5, tzinfo=UTC)
    rows = 2000
    good = pa.table({"time": [when] * rows, "endpoint": ["e"] * rows, "x": list(range(rows))})
    _write(hour / "a.parquet", good)
    _write(hour / "b.parquet", good)
    data = bytearray((hour / "b.parquet").read_bytes())
    data[100:400] = bytes(300)  # inside the first data page; the footer is intact
    (hour / "b.parquet").write_bytes(bytes(data))
    pq.read_metadata(hour / "b.parquet")  # still opens: only reading its pages fails
    moved: list[Any] = []
    table = read_log(root, quarantine=moved)
    assert table.num_rows == rows
    assert [q.source.name for q in moved] == ["b.parquet"]
    assert moved[0].target.read_bytes() == bytes(data)
