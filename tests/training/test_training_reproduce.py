"""``reproduce``: identical predictions for a deterministic model; a precise diff when
the data or the code changed."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurekit import T0
from prodml import Project
from prodml.core import StateError
from prodml.training import reproduce
from trainkit import make_training_project

END = T0 + timedelta(days=10)


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def trained(tmp_path: Path) -> Project:
    root = tmp_path / "p"
    project = make_training_project(root)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "project")
    project.training.train(T0, END)
    yield project
    project.close()


def test_an_unchanged_project_reproduces_exactly(trained: Project) -> None:
    report = reproduce(trained.training, "flight_delay:1")
    assert report.match, report.to_dict()
    assert report.data == []
    assert report.predictions == []
    assert report.metrics == []
    assert report.code == []
    assert report.rerun != report.run
    rerun = trained.registry.get_run(report.rerun)
    assert rerun.tags["reproduces"] == "flight_delay:1"
    assert len(trained.registry.versions("flight_delay")) == 1  # nothing registered


def test_changed_labels_show_as_data_prediction_and_metric_differences(trained: Project) -> None:
    path = trained.root / "data" / "rows.parquet"
    table = pq.read_table(path)
    late = table["late"].to_pylist()
    flipped = [not v if i % 7 == 0 else v for i, v in enumerate(late)]
    index = table.schema.get_field_index("late")
    pq.write_table(table.set_column(index, "late", pa.array(flipped)), path)
    report = reproduce(trained.training, "flight_delay:1")
    assert not report.match
    assert report.data[0].startswith("training set fingerprint ")
    assert "column 'late' values changed" in report.data
    assert report.predictions
    assert report.metrics
    assert any(line.startswith("roc_auc: ") for line in report.metrics)
    # The data file is tracked: the working tree is now dirty.
    assert any(line.startswith("code dirty: False → True") for line in report.code)


def test_changed_training_code_shows_as_a_code_difference(trained: Project) -> None:
    train_py = trained.root / "train.py"
    train_py.write_text(
        train_py.read_text().replace(
            'LogisticRegression(C=data.params["C"]', 'LogisticRegression(C=data.params["C"] / 1000'
        )
    )
    report = reproduce(trained.training, "flight_delay:1")
    assert not report.match
    assert report.data == []
    assert any("training function train.py:train source sha256" in line for line in report.code)
    assert any(line.startswith("code diff_sha256: None → ") for line in report.code)
    assert report.predictions


def test_environment_differences_are_listed(trained: Project) -> None:
    from prodml.storage._models import RunRow

    version = trained.registry.get("flight_delay:1")
    with trained.db.write() as session:
        row = session.get(RunRow, version.run_id)
        assert row is not None
        env = dict(row.environment)
        env["packages"] = {**env["packages"], "numpy": "0.0.1"}
        row.environment = env
    report = reproduce(trained.training, "flight_delay:1")
    assert report.match  # same data and predictions despite the recorded difference
    assert any(line.startswith("package numpy: 0.0.1 → ") for line in report.environment)


def test_a_version_without_a_run_cannot_be_reproduced(trained: Project) -> None:
    loaded = trained.registry.load("flight_delay:1")
    trained.registry.register(
        "imported", loaded.model, signature=loaded.signature, source="elsewhere"
    )
    with pytest.raises(StateError, match="imported:1 has no training run"):
        reproduce(trained.training, "imported:1")
