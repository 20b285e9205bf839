"""A small project with a learnable label, a train.py and a gate, for training tests."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from featurekit import T0, make_project
from prodml import Project
from prodml.cli import app
from prodml.registry import DeploymentSpec

END = T0 + timedelta(days=10)  # the end of the labelled rows' ten days

TRAIN_PY = """
from pathlib import Path

import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.impute import SimpleImputer

import prodml

ROWS = Path(__file__).resolve().parent / "data" / "rows.parquet"


@prodml.trainer(service="flight_delay", label="late", entity_rows="data/rows.parquet",
                timestamp="sched_dep", params={"C": 1.0}, seed=7, segments=["origin"])
def train(data):
    model = make_pipeline(SimpleImputer(), LogisticRegression(C=data.params["C"], max_iter=500))
    return model.fit(data.X_train.astype("float64"), data.y_train)
"""

CONFIG = """
[training]
slice_min_rows = 50

[gate]
thresholds = ["roc_auc >= 0.6"]
robustness = true

[[gate.change]]
metric = "roc_auc"
max_degradation = 0.05
per_slice = true
"""


def labelled_rows(n: int = 3000, seed: int = 3, *, days: int = 10) -> pa.Table:
    """Flights over ``days`` days whose lateness depends on the departure hour."""
    rng = np.random.default_rng(seed)
    minutes = np.sort(rng.integers(0, 60 * 24 * days, n))
    sched_dep_time = rng.integers(500, 2359, n)
    hour = sched_dep_time // 100
    p = 1 / (1 + np.exp(-(hour - 15) / 2.0))
    return pa.table(
        {
            "flight_id": pa.array(np.arange(n)),
            "origin": pa.array(rng.choice(["EWR", "JFK", "LGA"], n)),
            "tailnum": pa.array(rng.choice(["N1", "N2", "N3"], n)),
            "sched_dep": pa.array(
                [T0 + timedelta(minutes=int(m)) for m in minutes], pa.timestamp("us", tz="UTC")
            ),
            "sched_dep_time": pa.array(sched_dep_time),
            "late": pa.array(rng.random(n) < p),
        }
    )


def make_served_project(root: Path, deployments: Mapping[str, DeploymentSpec]) -> None:
    """The training project with ``flight_delay:1`` trained over ``T0``–``END``,
    approved and aliased ``champion``, the given endpoints deployed and the online store
    materialized up to ``END``; closed again."""
    project = make_training_project(root)
    try:
        version = project.training.train(T0, END, actor="test").version
        assert version is not None
        project.registry.approve(version.ref, actor="test", reason="test")
        project.registry.set_alias("flight_delay", "champion", version.ref, actor="test")
        for endpoint, spec in deployments.items():
            project.deployments.deploy(endpoint, spec, actor="test")
        project.features.materialize(end=END)
    finally:
        project.close()


def make_training_project(root: Path, *, train_py: str = TRAIN_PY, config: str = CONFIG) -> Project:
    """The feature test project plus labelled rows, train.py and a [training]/[gate] config."""
    project = make_project(root)
    project.close()
    pq.write_table(labelled_rows(), root / "data" / "rows.parquet")
    (root / "train.py").write_text(train_py)
    text = (root / "prodml.toml").read_text()
    for name in dict.fromkeys(re.findall(r"^\[(\w+)\]", config, flags=re.MULTILINE)):
        section = f"[{name}]"
        if section not in text:
            continue
        start = text.index(section)
        end = text.find("\n[", start + 1)
        text = text[:start] + text[end + 1 :] if end != -1 else text[:start]
    (root / "prodml.toml").write_text(text + config)
    project = Project.open(root)
    project.features.apply()
    return project


def cli_json(*args: str) -> tuple[int, Any]:
    """Run ``prodml ARGS --json`` in-process: the exit code and the parsed output (the
    raw text when it is not JSON)."""
    result = CliRunner().invoke(app, [*args, "--json"])
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.stdout + result.stderr
