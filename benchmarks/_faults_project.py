"""The project ``benchmarks/faults.py`` probes: a small flights-like feature project
(one feature view of hourly weather per airport, one on-demand feature from the request)
with a logistic regression trained through ``prodml train``'s code path, approved,
deployed on endpoint ``flights`` and materialized to the online store, in a few seconds.
Also the request bodies of every protocol and a prediction log over past hours for the
monitoring probe."""

from __future__ import annotations

import shutil
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prodml import Project
from prodml.core import SimulatedClock
from prodml.registry import DeploymentSpec
from prodml.serving import Prediction, PredictionLog

ENDPOINT = "flights"
ORIGINS = ("EWR", "JFK", "LGA")
T0 = datetime(2013, 1, 1, tzinfo=UTC)
DAYS = 10
END = T0 + timedelta(days=DAYS)

FEATURES_PY = """
from prodml.features import Entity, FeatureService, FeatureView, Field, OnDemandFeature, ParquetSource

origin = Entity("origin", join_keys=["origin"])
weather = FeatureView("weather", entities=[origin], source=ParquetSource("data/weather.parquet"),
                      event_time="time_hour",
                      features=[Field("temp", "float64"), Field("wind_speed", "float64")])
dep_hour = OnDemandFeature("dep_hour", lambda c: c["sched_dep_time"] // 100,
                           inputs=["sched_dep_time"], dtype="int64")
flights = FeatureService("flights", features=[weather, dep_hour])
"""

TRAIN_PY = """
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import prodml


@prodml.trainer(service="flights", label="late", entity_rows="data/rows.parquet",
                timestamp="sched_dep", seed=7)
def train(data):
    model = make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500))
    return model.fit(data.X_train.astype("float64"), data.y_train)
"""


def _weather(rng: np.random.Generator) -> pa.Table:
    hours = [T0 + timedelta(hours=h) for h in range(24 * DAYS)]
    return pa.table(
        {
            "origin": pa.array([o for _ in hours for o in ORIGINS]),
            "time_hour": pa.array([t for t in hours for _ in ORIGINS], pa.timestamp("us", "UTC")),
            "temp": pa.array(rng.normal(40, 10, len(hours) * len(ORIGINS)).round(1)),
            "wind_speed": pa.array(rng.gamma(2, 5, len(hours) * len(ORIGINS)).round(1)),
        }
    )


def _rows(rng: np.random.Generator, n: int = 3000) -> pa.Table:
    """Flights whose lateness depends on the departure hour."""
    minutes = np.sort(rng.integers(0, 60 * 24 * DAYS, n))
    sched_dep_time = rng.integers(500, 2359, n)
    p = 1 / (1 + np.exp(-(sched_dep_time // 100 - 15) / 2.0))
    return pa.table(
        {
            "origin": pa.array(rng.choice(ORIGINS, n)),
            "sched_dep": pa.array(
                [T0 + timedelta(minutes=int(m)) for m in minutes], pa.timestamp("us", "UTC")
            ),
            "sched_dep_time": pa.array(sched_dep_time),
            "late": pa.array(rng.random(n) < p),
        }
    )


def build(root: Path, seed: int) -> str:
    """Create, train, approve, deploy and materialize the project at ``root``; the
    model version's ref."""
    rng = np.random.default_rng(seed)
    Project.init(root, name="faults").close()
    (root / "data").mkdir()
    pq.write_table(_weather(rng), root / "data" / "weather.parquet")
    pq.write_table(_rows(rng), root / "data" / "rows.parquet")
    (root / "features.py").write_text(FEATURES_PY)
    (root / "train.py").write_text(TRAIN_PY)
    with Project.open(root) as project:
        project.features.apply()
        version = project.training.train(T0, END, actor="bench").version
        if version is None:
            raise RuntimeError("the probe project's model did not pass its gate")
        project.registry.approve(version.ref, actor="bench", reason="fault probes")
        project.deployments.deploy(ENDPOINT, DeploymentSpec.single(version.ref), actor="bench")
        project.features.materialize(end=END)
        return version.ref


def copy(source: Path, dest: Path, config: str = "") -> Path:
    """A copy of the project at ``source`` with ``config`` (TOML) appended."""
    shutil.copytree(source, dest)
    if config:
        with (dest / "prodml.toml").open("a") as out:
            out.write("\n" + config + "\n")
    return dest


def columns(root: Path, ref: str) -> list[tuple[str, str]]:
    """The deployed model's input columns and their dtypes."""
    with Project.open(root) as project:
        signature = project.registry.load(ref).signature
        return [(c.name, c.dtype) for c in signature.inputs]


# ---------------------------------------------------------------- request bodies


def _values(dtype: str, n: int, rng: np.random.Generator) -> list[Any]:
    if dtype.startswith("int"):
        return list(rng.integers(5, 23, n).tolist())
    if dtype == "bool":
        return list((rng.random(n) < 0.5).tolist())
    return list(rng.normal(40, 10, n).round(1).tolist())


_V2_TYPES = {
    "float64": "FP64",
    "float32": "FP32",
    "int64": "INT64",
    "int32": "INT32",
    "bool": "BOOL",
}
_PACK = {"FP64": "d", "FP32": "f", "INT64": "q", "INT32": "i", "BOOL": "?"}


def bodies(
    cols: list[tuple[str, str]], n: int, seed: int
) -> dict[str, tuple[bytes, dict[str, str]]]:
    """``n`` rows in each protocol: ``(body, headers)`` by protocol name; the route is
    :data:`ROUTES`'s."""
    rng = np.random.default_rng(seed)
    data = {name: _values(dtype, n, rng) for name, dtype in cols}
    json_type = {"Content-Type": "application/json"}
    v2_inputs = [
        {"name": name, "shape": [n], "datatype": _V2_TYPES[dtype], "data": data[name]}
        for name, dtype in cols
    ]
    binary_inputs, tensors = [], []
    for name, dtype in cols:
        kind = _V2_TYPES[dtype]
        raw = struct.pack(f"<{n}{_PACK[kind]}", *data[name])
        tensors.append(raw)
        binary_inputs.append(
            {"name": name, "shape": [n], "datatype": kind,
             "parameters": {"binary_data_size": len(raw)}}
        )  # fmt: skip
    header = orjson.dumps({"inputs": binary_inputs})
    names = [name for name, _ in cols]
    rows = list(zip(*(data[name] for name in names), strict=True))
    csv = ",".join(names) + "\n" + "\n".join(",".join(map(str, row)) for row in rows) + "\n"
    native = {
        "entities": {"origin": rng.choice(ORIGINS, n).tolist()},
        "request_data": {"sched_dep_time": rng.integers(500, 2359, n).tolist()},
    }
    return {
        "v2_json": (orjson.dumps({"inputs": v2_inputs}), json_type),
        "v2_binary": (
            header + b"".join(tensors),
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(header)),
            },
        ),
        "mlflow_json": (
            orjson.dumps({"dataframe_split": {"columns": names, "data": rows}}),
            json_type,
        ),
        "mlflow_csv": (csv.encode(), {"Content-Type": "text/csv"}),
        "native": (orjson.dumps(native), json_type),
    }


ROUTES = {
    "v2_json": f"/v2/models/{ENDPOINT}/infer",
    "v2_binary": f"/v2/models/{ENDPOINT}/infer",
    "mlflow_json": f"/v1/endpoints/{ENDPOINT}/invocations",
    "mlflow_csv": f"/v1/endpoints/{ENDPOINT}/invocations",
    "native": f"/v1/endpoints/{ENDPOINT}/predict",
}


# ---------------------------------------------------------------- a log over past hours


def write_log(root: Path, ref: str, hours: int, files_per_hour: int, rows: int) -> datetime:
    """``files_per_hour`` prediction-log files of ``rows`` records in each of ``hours``
    whole UTC hours ending two hours before now (so their hourly windows are closed and
    past the grace period); the first hour's start."""
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=hours + 2
    )
    with Project.open(root, clock=SimulatedClock(first)) as project:
        loaded = project.registry.load(ref)
        names = list(loaded.signature.columns)
        rng = np.random.default_rng(0)
        for hour in range(hours):
            for part in range(files_per_hour):
                begins = first + timedelta(hours=hour, minutes=60 * part / files_per_hour)
                clock = SimulatedClock(begins)
                frame = {
                    name: _values(dtype, rows, rng)
                    for name, dtype in ((c.name, c.dtype) for c in loaded.signature.inputs)
                }
                table = pd.DataFrame(frame)[names]
                scores = np.asarray(loaded.predict(table), dtype=np.float64)
                log = PredictionLog(project.logs, clock=clock, flush_rows=10**6,
                                    flush_interval_s=3600)  # fmt: skip
                try:
                    for i in range(rows):
                        clock.set(begins + timedelta(seconds=10 * i))
                        prediction = Prediction(f"log-{hour}-{part}-{i}", ENDPOINT, "champion",
                                                ref, scores[i : i + 1], "ok")  # fmt: skip
                        log.record(prediction, table.iloc[i : i + 1], unit="u", latency_ms=2.0)
                finally:
                    log.close()
    return first
