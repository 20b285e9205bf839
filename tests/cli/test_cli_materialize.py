"""`prodml features materialize --rebuild`: asks before it deletes, refuses (exit 2) when
no one can answer, and rebuilds the online store from the changed source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from featurekit import make_project, planes_table
from prodml.cli import app

runner = CliRunner()
END = "2013-01-05T00:00:00"


def _year_of_n1(root: Path) -> Any:
    args = ["features", "get", "flight_delay", "-e", "origin=EWR", "-e", "tailnum=N1"]
    result = runner.invoke(app, [*args, "-r", "sched_dep_time=830", "-p", str(root), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["values"]["year"][0]


def _materialized(root: Path) -> Path:
    """A materialized project whose planes source then changed behind the watermark."""
    make_project(root).close()
    for args in (["features", "apply"], ["features", "materialize", "--end", END]):
        result = runner.invoke(app, [*args, "-p", str(root), "--json"])
        assert result.exit_code == 0, result.output
    planes = planes_table()
    years = pa.array([1970, 1998, 2010], pa.int64())
    pq.write_table(planes.set_column(2, "year", years), root / "data" / "planes.parquet")
    return root


def test_rebuild_asks_first_and_rebuilds_from_the_changed_source(tmp_path: Path) -> None:
    root = _materialized(tmp_path / "proj")
    rebuild = ["features", "materialize", "--rebuild", "--end", END, "-p", str(root)]

    refused = runner.invoke(app, [*rebuild, "--json"])  # no standard input
    assert refused.exit_code == 2, refused.output
    error = json.loads(refused.stdout)
    assert error["exit_code"] == 2
    assert "--yes" in error["error"]
    assert "planes" in error["error"]
    assert "weather" in error["error"]
    assert _year_of_n1(root) == 2001

    declined = runner.invoke(app, rebuild, input="n\n")
    assert declined.exit_code == 1, declined.output
    assert "Delete the online records" in declined.stderr
    assert "nothing was changed" in declined.stderr
    assert _year_of_n1(root) == 2001

    confirmed = runner.invoke(app, [*rebuild, "--json"], input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    removed = {r["view"]: r["removed"] for r in json.loads(confirmed.stdout)["materialized"]}
    assert removed == {"planes": 3, "weather": 3}
    assert _year_of_n1(root) == 1970


def test_rebuild_with_yes_and_one_view(tmp_path: Path) -> None:
    root = _materialized(tmp_path / "proj")
    args = ["features", "materialize", "--rebuild", "--yes", "--view", "planes", "--end", END]
    result = runner.invoke(app, [*args, "-p", str(root), "--json"])
    assert result.exit_code == 0, result.output
    [planes] = json.loads(result.stdout)["materialized"]
    assert (planes["view"], planes["removed"]) == ("planes", 3)
    assert _year_of_n1(root) == 1970
    # An unknown view is reported before anything is asked or deleted.
    unknown = ["features", "materialize", "--rebuild", "--view", "nope", "-p", str(root)]
    result = runner.invoke(app, [*unknown, "--json"])
    assert result.exit_code == 4, result.output
    assert "'nope'" in json.loads(result.stdout)["error"]


def test_rebuild_without_a_terminal_or_yes_exits_2(tmp_path: Path) -> None:
    root = _materialized(tmp_path / "proj")
    command = [sys.executable, "-m", "prodml.cli", "features", "materialize", "--rebuild"]
    done = subprocess.run(
        [*command, "-p", str(root)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "--yes" in done.stderr
    assert _year_of_n1(root) == 2001
