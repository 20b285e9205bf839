"""A training set reports, per feature view, how many entity rows picked a feature row
stamped exactly at their own time (an exact tie under the inclusive bound)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from typer.testing import CliRunner

from featurekit import FEATURES_PY, T0, make_project
from prodml import Project
from prodml.cli import app

EXACT_FEATURES_PY = (
    FEATURES_PY
    + """
user = Entity("user", join_keys=["user_id"])
hourly = FeatureView("hourly", entities=[origin], source=ParquetSource("data/weather.parquet"),
                     event_time="time_hour", ttl=timedelta(hours=3),
                     features=[Field("temp", "float64")])
per_flight = FeatureView("per_flight", entities=[user],
                         source=ParquetSource("data/user_rates.parquet"), event_time="event_time",
                         features=[Field("late_rate", "float64")])
per_flight_strict = FeatureView("per_flight_strict", entities=[user],
                                source=ParquetSource("data/user_rates.parquet"),
                                event_time="event_time",
                                features=[Field("late_rate", "float64")], inclusive=False)
inclusive = FeatureService("inclusive", features=[hourly, per_flight])
strict = FeatureService("strict", features=[per_flight_strict])
"""
)
N = 3000


def _rows() -> pa.Table:
    """Flights at random minutes over ten days (some on the hour), users flying ten times."""
    rng = np.random.default_rng(11)
    minutes = np.sort(rng.integers(0, 60 * 24 * 10, N))
    return pa.table(
        {
            "origin": pa.array(rng.choice(["EWR", "JFK", "LGA", "XXX"], N)),
            "user_id": pa.array(np.arange(N) // 10),
            "sched_dep": pa.array(
                [T0 + timedelta(minutes=int(m)) for m in minutes], pa.timestamp("us", tz="UTC")
            ),
            "late": pa.array(rng.random(N) < 0.3),
        }
    )


def _project(root: Path, rows: pa.Table) -> Project:
    """Hourly weather, and a per-flight view: one row per flight at the flight's own time."""
    project = make_project(root)
    late = rows["late"].to_numpy(zero_copy_only=False).astype(np.float64)
    users = rows["user_id"].to_numpy()
    rate = np.array([late[: i + 1][users[: i + 1] == users[i]].mean() for i in range(N)])
    pq.write_table(
        pa.table({"user_id": rows["user_id"], "event_time": rows["sched_dep"], "late_rate": rate}),
        root / "data" / "user_rates.parquet",
    )
    pq.write_table(rows, root / "data" / "rows.parquet")
    (root / "features.py").write_text(EXACT_FEATURES_PY)
    project.features.reload()
    project.features.apply()
    return project


def test_exact_time_ties_are_counted_per_view(tmp_path: Path) -> None:
    rows = _rows()
    project = _project(tmp_path / "p", rows)
    try:
        built = project.features.build_training_set(
            rows, "inclusive", timestamp="sched_dep", label="late"
        )
        strict = project.features.build_training_set(
            rows, "strict", timestamp="sched_dep", label="late"
        )
    finally:
        project.close()
    seconds = pc.cast(rows["sched_dep"], pa.int64()).to_numpy() // 1_000_000
    known = np.isin(rows["origin"].to_numpy(zero_copy_only=False), ["EWR", "JFK", "LGA"])
    on_the_hour = int((known & (seconds % 3600 == 0)).sum())
    assert on_the_hour > 0  # some flights leave on the hour: ties by chance

    hourly = built.coverage["hourly"]
    assert (hourly.rows, hourly.picked, hourly.matched) == (N, int(known.sum()), int(known.sum()))
    assert hourly.exact_time == on_the_hour
    assert hourly.exact_time_share == on_the_hour / int(known.sum())
    assert hourly.exact_time_share < 0.1

    per_flight = built.coverage["per_flight"]
    assert per_flight.picked == per_flight.exact_time == N  # every flight reads its own row
    assert per_flight.exact_time_share == 1.0

    strict_view = strict.coverage["per_flight_strict"]
    first_flights = N // 10  # the first flight of each user has nothing strictly before it
    assert strict_view.picked == N - first_flights - _same_time_firsts(rows)
    assert strict_view.exact_time == 0
    assert strict_view.exact_time_share == 0.0

    summary = built.summary()["coverage"]
    assert summary["per_flight"] == {
        "rows": N,
        "matched": N,
        "picked": N,
        "exact_time": N,
        "exact_time_share": 1.0,
    }
    assert summary["hourly"]["exact_time"] == on_the_hour


def _same_time_firsts(rows: pa.Table) -> int:
    """Later flights of a user at the same minute as the user's first: nothing before them."""
    users = rows["user_id"].to_numpy()
    times = pc.cast(rows["sched_dep"], pa.int64()).to_numpy()
    first = {}
    count = 0
    for user, time in zip(users, times, strict=True):
        if user in first:
            count += int(time == first[user])
        else:
            first[user] = time
    return count


def test_cli_build_training_set_json_reports_the_ties(tmp_path: Path) -> None:
    rows = _rows()
    root = tmp_path / "p"
    _project(root, rows).close()
    result = CliRunner().invoke(
        app,
        [
            "features", "build-training-set", str(root / "data" / "rows.parquet"),
            "--service", "inclusive", "--timestamp", "sched_dep", "--json", "-p", str(root),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    coverage = json.loads(result.stdout)["coverage"]
    assert coverage["per_flight"]["exact_time_share"] == 1.0
    assert 0 < coverage["hourly"]["exact_time"] < coverage["hourly"]["picked"]
