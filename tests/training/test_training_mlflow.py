"""A project with ``[mlflow] tracking_uri`` mirrors its training runs, versions,
approvals and aliases to a real local MLflow (SQLite backend), and `prodml models import`
brings an MLflow model back as a version that predicts exactly like MLflow."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from featurekit import T0
from prodml import Project
from prodml.cli import app
from trainkit import CONFIG, make_training_project

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.filterwarnings(
    "ignore:The ``noload`` loader strategy is deprecated",
    "ignore:.*Any type hint is inferred as AnyType:UserWarning",
)


def test_training_through_a_project_is_visible_in_mlflow_and_imports_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    config = CONFIG + f'\n[mlflow]\ntracking_uri = "{tracking}"\nexperiment = "flights"\n'
    project = make_training_project(tmp_path / "p", config=config)
    with project:
        result = project.training.train(T0, T0 + timedelta(days=10), actor="alice")
        assert result.version is not None
        project.registry.approve(result.version.ref, actor="bob", reason="ok")
        project.registry.set_alias("flight_delay", "champion", 1, actor="bob")
    client = mlflow.MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("flights")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["prodml.run_id"] == result.run.id
    assert run.data.tags["prodml.datasets"] == f"train:{result.training_set}"
    assert run.data.params["C"] == "1.0"
    assert run.data.metrics["roc_auc"] == pytest.approx(result.report.metrics["roc_auc"])
    assert run.info.status == "FINISHED"
    (mirrored,) = client.search_model_versions("name='flight_delay'")
    assert mirrored.tags["prodml.version"] == "1"
    assert mirrored.tags["prodml.status"] == "approved"
    assert mirrored.tags["prodml.artifact_sha256"] == result.version.artifact_digest
    assert mirrored.run_id == run.info.run_id
    assert client.get_model_version_by_alias("flight_delay", "champion").version == mirrored.version

    # ...and an MLflow model comes back in through the CLI and predicts like MLflow.
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    model = LogisticRegression().fit(X, X["a"] + rng.normal(size=200) > 0)
    with monkeypatch.context() as env:  # these MLflow calls take no client argument
        env.setenv("MLFLOW_TRACKING_URI", tracking)
        experiment_id = client.create_experiment("imports", artifact_location=str(tmp_path / "art"))
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=mlflow.models.infer_signature(X, model.predict(X)),
                registered_model_name="outside",
            )
        expected = mlflow.pyfunc.load_model("models:/outside/1").predict(X)
    result = CliRunner().invoke(
        app, ["models", "import", "models:/outside/1", "-p", str(tmp_path / "p"), "--json"]
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    imported = json.loads(result.stdout)
    assert imported["ref"] == "outside:1"
    assert imported["format"] == "mlflow_pyfunc"
    with Project.open(tmp_path / "p") as project:
        predictions = project.registry.load("outside:1").predict(X)
    np.testing.assert_array_equal(np.asarray(predictions), np.asarray(expected))
