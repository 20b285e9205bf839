"""``prodml labels run``: the label jobs of prodml.toml through the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli import app
from prodml.storage import read_log

runner = CliRunner()
PAST = datetime(2013, 6, 1, tzinfo=UTC)
FUTURE = datetime(2999, 1, 1, tzinfo=UTC)  # not landed yet by any clock this test runs on

JOBS = """
[[labels.jobs]]
name = "late_flights"
endpoint = "flight_delay"
sql = "SELECT flight_id AS request_id, arr_delay > 15 AS label, landed_at AS time FROM 'data/flights.parquet' WHERE landed_at IS NOT NULL"

[[labels.jobs]]
name = "broken"
endpoint = "flight_delay"
sql = "SELECT flight_id AS request_id, landed_at AS time FROM 'data/flights.parquet'"
"""


def run(*args: str) -> tuple[int, Any]:
    result = runner.invoke(app, [*args, "--json"])
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def root(tmp_path: Path) -> str:
    """A project with four flights, three landed in the past and one in the future, and
    two label jobs (the second lacks its label column)."""
    Project.init(tmp_path / "p", name="label-jobs").close()
    root = tmp_path / "p"
    (root / "data").mkdir()
    landed = [PAST, PAST + timedelta(hours=1), PAST + timedelta(hours=2), FUTURE]
    pq.write_table(
        pa.table(
            {
                "flight_id": ["f1", "f2", "f3", "f4"],
                "arr_delay": [30.0, 2.0, 16.0, 50.0],
                "landed_at": pa.array(landed, pa.timestamp("us", tz="UTC")),
            }
        ),
        root / "data" / "flights.parquet",
    )
    with (root / "prodml.toml").open("a") as config:
        config.write(JOBS)
    return str(root)


def test_labels_run_writes_known_labels_once_and_reports_each_job(root: str) -> None:
    code, out = run("labels", "run", "late_flights", "-p", root)
    assert code == 0, out
    assert out == {
        "jobs": [{"name": "late_flights", "written": 3, "watermark": "2013-06-01T02:00:00+00:00"}]
    }
    labels = read_log(Path(root) / ".prodml" / "logs" / "labels", partition="flight_delay")
    assert labels["request_id"].to_pylist() == ["f1", "f2", "f3"]  # f4 has not landed yet
    assert labels["label"].to_pylist() == [True, False, True]
    assert set(labels["source"].to_pylist()) == {"job:late_flights"}
    watermark = Path(root) / ".prodml" / "label_jobs" / "late_flights.json"
    assert json.loads(watermark.read_text())["watermark"] == "2013-06-01T02:00:00+00:00"

    code, out = run("labels", "run", "late_flights", "-p", root)
    assert (code, out["jobs"][0]["written"]) == (0, 0)
    result = runner.invoke(app, ["labels", "run", "late_flights", "-p", root])
    assert result.exit_code == 0
    assert "late_flights" in result.stdout


def test_labels_run_names_the_failing_job_and_column_and_an_unknown_job(root: str) -> None:
    code, out = run("labels", "run", "-p", root)  # every job: late_flights, then broken
    assert code == 7, out
    assert "label job 'broken'" in out["error"]
    assert "'label'" in out["error"]
    code, out = run("labels", "run", "nope", "-p", root)
    assert code == 4, out
    assert "'nope'" in out["error"]
    assert "late_flights" in out["error"]


def test_labels_run_without_jobs_runs_none(tmp_path: Path) -> None:
    Project.init(tmp_path / "p", name="no-jobs").close()
    assert run("labels", "run", "-p", str(tmp_path / "p")) == (0, {"jobs": []})
