"""Shared builders for feature-layer tests: a small flights-like project."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from prodml import Project

FEATURES_PY = """
from datetime import timedelta
from prodml.features import Entity, FeatureService, FeatureView, Field, OnDemandFeature, ParquetSource

origin = Entity("origin", join_keys=["origin"])
plane = Entity("plane", join_keys=["tailnum"])

weather = FeatureView("weather", entities=[origin], source=ParquetSource("data/weather.parquet"),
                      event_time="time_hour", created_time="created", ttl=timedelta(hours=3),
                      features=[Field("temp", "float64"), Field("wind_speed", "float64")])
planes = FeatureView("planes", entities=[plane], source=ParquetSource("data/planes.parquet"),
                     event_time="valid_from", features=[Field("year", "int64"), Field("seats", "int64")])
dep_hour = OnDemandFeature("dep_hour", lambda c: c["sched_dep_time"] // 100,
                           inputs=["sched_dep_time"], dtype="int64")
warm = OnDemandFeature("warm", lambda c: c["temp"] > 50.0, inputs=["temp"], dtype="bool")

flight_delay = FeatureService("flight_delay", features=[weather, planes[["year", "seats"]], dep_hour, warm])
"""

T0 = datetime(2013, 1, 1, tzinfo=UTC)


def weather_table(seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    hours = np.arange(0, 24 * 10)
    origins = ["EWR", "JFK", "LGA"]
    times = [T0 + timedelta(hours=int(h)) for h in hours for _ in origins]
    return pa.table(
        {
            "origin": pa.array([o for _ in hours for o in origins]),
            "time_hour": pa.array(times, pa.timestamp("us", tz="UTC")),
            "created": pa.array(
                [t + timedelta(minutes=30) for t in times], pa.timestamp("us", tz="UTC")
            ),
            "temp": pa.array(rng.normal(40, 10, len(times))),
            "wind_speed": pa.array(rng.gamma(2, 5, len(times))),
        }
    )


def planes_table() -> pa.Table:
    return pa.table(
        {
            "tailnum": ["N1", "N2", "N3"],
            "valid_from": pa.array([T0 - timedelta(days=1)] * 3, pa.timestamp("us", tz="UTC")),
            "year": pa.array([2001, 1998, 2010], pa.int64()),
            "seats": pa.array([55, 182, 20], pa.int64()),
        }
    )


def entity_rows(n: int = 50, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    minutes = rng.integers(0, 60 * 24 * 10, n)
    return pa.table(
        {
            "flight_id": pa.array(np.arange(n)),
            "origin": pa.array(rng.choice(["EWR", "JFK", "LGA", "XXX"], n)),
            "tailnum": pa.array(rng.choice(["N1", "N2", "N3", "N9"], n)),
            "sched_dep": pa.array(
                [T0 + timedelta(minutes=int(m)) for m in minutes], pa.timestamp("us", tz="UTC")
            ),
            "sched_dep_time": pa.array(rng.integers(500, 2359, n)),
            "late": pa.array(rng.random(n) < 0.2),
        }
    )


def make_project(root: Path, *, online: str = "sqlite") -> Project:
    project = Project.init(root, name="t")
    (root / "data").mkdir()
    pq.write_table(weather_table(), root / "data" / "weather.parquet")
    pq.write_table(planes_table(), root / "data" / "planes.parquet")
    (root / "features.py").write_text(FEATURES_PY)
    if online != "sqlite":
        text = (
            (root / "prodml.toml")
            .read_text()
            .replace('type = "sqlite"              # "memory"', f'type = "{online}"  # "memory"')
        )
        (root / "prodml.toml").write_text(text)
        project.close()
        project = Project.open(root)
    return project
