"""The MLflow bridge against a real local MLflow (SQLite backend, artifacts in tmp):
mirroring runs, versions, approvals and aliases, importing MLflow models as verified
``mlflow_pyfunc`` versions, signature mapping and the errors of both."""

from __future__ import annotations

import hashlib
import logging
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from prodml.core import (
    ConfigError,
    IntegrityError,
    MlflowConfig,
    ModelNotFoundError,
    SchemaError,
    SimulatedClock,
    SourceError,
    StorageError,
)
from prodml.registry import AliasEvent, ColumnSpec, ModelRegistry, Signature, infer_signature
from prodml.registry.mlflow import MlflowMirror, import_mlflow_model
from prodml.registry.mlflow._import import parse_models_uri, to_signature
from prodml.registry.mlflow._mirror import MAX_PARAM_VALUE
from prodml.storage import ArtifactStore, LocalBlobStore, MetadataDB, digest_key

pytest.importorskip("mlflow", reason="mlflow is an optional extra: pip install 'prodml[mlflow]'")

pytestmark = [
    # MLflow's SQLAlchemy store configures a deprecated loader; its pyfunc module warns
    # about an inferred type hint on import. Neither is prodml's to fix.
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
    pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning"),
]

START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
START_MS = 1_709_294_400_000  # START in ms since the epoch, computed by hand


@dataclass(frozen=True)
class Server:
    uri: str
    root: Path
    client: Any  # mlflow.MlflowClient


@dataclass(frozen=True)
class Setup:
    registry: ModelRegistry
    mirror: MlflowMirror
    clock: SimulatedClock
    experiment_id: str
    blobs: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    """One MLflow tracking DB for the module (creating its schema takes seconds)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    client.search_experiments()
    return Server(uri, root, client)


@pytest.fixture
def setup(tmp_path: Path, server: Server, request: pytest.FixtureRequest) -> Iterator[Setup]:
    """A fresh prodml registry mirroring into an experiment of its own."""
    experiment = f"prodml_{request.node.name}"
    experiment_id = server.client.create_experiment(
        experiment, artifact_location=(tmp_path / "mlruns").as_uri()
    )
    mirror = MlflowMirror(MlflowConfig(tracking_uri=server.uri, experiment=experiment))
    clock = SimulatedClock(START)
    with MetadataDB.open(f"sqlite:///{tmp_path}/meta.db") as db:
        artifacts = ArtifactStore(LocalBlobStore(tmp_path / "blobs"))
        yield Setup(
            ModelRegistry(db, artifacts, clock, listeners=[mirror]),
            mirror,
            clock,
            experiment_id,
            tmp_path / "blobs",
        )


def training_data(n: int = 60, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"distance": rng.normal(0.0, 1.0, n), "delay": rng.normal(0.0, 1.0, n)})
    y = (X["distance"] + 0.5 * X["delay"] > 0).astype(int).to_numpy()
    return X, y


def mlflow_runs(server: Server, experiment_id: str, run_id: str) -> list[Any]:
    return list(
        server.client.search_runs(
            [experiment_id], filter_string=f"tags.`prodml.run_id` = '{run_id}'"
        )
    )


def mlflow_versions(server: Server, name: str) -> dict[str, Any]:
    """MLflow versions of ``name`` by their ``prodml.version`` tag."""
    found = server.client.search_model_versions(filter_string=f"name = '{name}'")
    return {mv.tags["prodml.version"]: mv for mv in found if "prodml.version" in mv.tags}


# --- the mirror ----------------------------------------------------------------------------
def test_registry_mlflow_mirrors_runs_versions_approvals_and_aliases(
    setup: Setup, server: Server
) -> None:
    from mlflow.exceptions import MlflowException

    registry, client = setup.registry, server.client
    many = {f"p{i:03d}": i for i in range(150)}  # more than one log_batch holds
    params = {"C": 0.5, "solver": "lbfgs", "notes": "x" * 7000, "grid": {"C": [0.1, 1.0]}}
    with registry.start_run(
        "churn",
        params={**params, **many},
        tags={"team": "risk"},
        seed=7,
        service=("churn_features", "v1abc"),
        environment=False,
    ) as run:
        run.log_metric("auc", 0.80)
        run.log_metric("auc", 0.85)
        run.log_metric("loss", math.nan)
        run.log_dataset("a" * 64, "train")
        run.log_dataset("b" * 64, "validation")
        setup.clock.advance(timedelta(minutes=5))
    info = registry.get_run(run.id)

    (mirrored,) = mlflow_runs(server, setup.experiment_id, info.id)
    assert mirrored.info.status == "FINISHED"
    assert (mirrored.info.start_time, mirrored.info.end_time) == (START_MS, START_MS + 300_000)
    logged = mirrored.data.params
    assert len(logged) == len(params) + len(many)
    assert (logged["C"], logged["solver"], logged["p149"]) == ("0.5", "lbfgs", "149")
    assert logged["grid"] == '{"C": [0.1, 1.0]}'
    assert len(logged["notes"]) == MAX_PARAM_VALUE
    assert logged["notes"] == "x" * (MAX_PARAM_VALUE - 3) + "..."
    assert mirrored.data.metrics == {"auc": 0.85}  # latest value; NaN is not sent
    tags = mirrored.data.tags
    assert tags["team"] == "risk"
    assert tags["prodml.run_id"] == info.id
    assert tags["prodml.model"] == "churn"
    assert (tags["prodml.service"], tags["prodml.service_version"]) == ("churn_features", "v1abc")
    assert tags["prodml.datasets"] == f"train:{'a' * 64},validation:{'b' * 64}"
    assert tags["prodml.seed"] == "7"
    assert "prodml.parent_version" not in tags

    # Mirroring again finds the same MLflow run, logs nothing twice and updates its tags.
    setup.mirror.run_ended(
        replace(info, code={"commit": "0a1b2c", "dirty": True}, parent_version="churn:0")
    )
    (again,) = mlflow_runs(server, setup.experiment_id, info.id)
    assert again.info.run_id == mirrored.info.run_id
    assert len(client.get_metric_history(mirrored.info.run_id, "auc")) == 1
    assert again.data.tags["prodml.code.commit"] == "0a1b2c"
    assert again.data.tags["prodml.code.dirty"] == "true"
    assert again.data.tags["prodml.parent_version"] == "churn:0"

    with pytest.raises(RuntimeError), registry.start_run("churn", environment=False) as broken:
        raise RuntimeError("diverged")
    (failed,) = mlflow_runs(server, setup.experiment_id, broken.id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["prodml.error"] == "RuntimeError: diverged"

    # An unrelated MLflow version first, so MLflow's numbers differ from prodml's.
    client.create_registered_model("churn")
    client.create_model_version("churn", "file:///elsewhere/model")
    X, y = training_data()
    model = LogisticRegression().fit(X, y)
    signature = infer_signature(X, model.predict_proba(X)[:, 1])
    v1 = registry.register(
        "churn", model, signature=signature, run_id=info.id, gate={"status": "BLESSED"}
    )
    v2 = registry.register("churn", LogisticRegression(C=0.1).fit(X, y), signature=signature)

    versions = mlflow_versions(server, "churn")
    assert sorted(versions) == ["1", "2"]
    first, second = versions["1"], versions["2"]
    assert (str(first.version), str(second.version)) == ("2", "3")
    assert first.run_id == mirrored.info.run_id
    assert first.source == mirrored.info.artifact_uri
    expected_digest = hashlib.sha256(registry.artifact_bytes(v1.ref)).hexdigest()
    assert first.tags["prodml.artifact_sha256"] == expected_digest == v1.artifact_digest
    assert first.tags["prodml.format"] == "skops"
    assert first.tags["prodml.gate"] == "BLESSED"
    assert first.tags["prodml.status"] == "pending"
    assert first.tags["prodml.training_set"] == "a" * 64
    assert second.run_id is None
    assert second.source == "prodml://churn/2"
    assert second.tags["prodml.gate"] == "none"

    registry.approve(v1.ref, actor="alice", reason="offline evaluation passed")
    registry.set_alias("churn", "champion", 1, actor="alice")
    approved = client.get_model_version("churn", first.version).tags
    assert approved["prodml.status"] == "approved"
    assert approved["prodml.status_actor"] == "alice"
    assert approved["prodml.status_reason"] == "offline evaluation passed"
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "2"

    registry.approve(v2.ref, actor="bob")
    registry.set_alias("churn", "champion", 2, actor="bob")
    moved = client.get_model_version_by_alias("churn", "champion")
    assert (str(moved.version), moved.tags["prodml.version"]) == ("3", "2")
    assert "prodml.status_reason" not in moved.tags

    registry.delete_alias("churn", "champion", actor="bob")
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("churn", "champion")

    # Re-mirroring a version updates tags in place instead of creating another version.
    setup.mirror.version_registered(registry.get(v1.ref))
    assert sorted(mlflow_versions(server, "churn")) == ["1", "2"]
    assert len(client.search_model_versions(filter_string="name = 'churn'")) == 3


def test_registry_mlflow_mirror_failures_are_logged_and_clear(
    setup: Setup, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.client.delete_experiment(setup.experiment_id)
    with (
        caplog.at_level(logging.WARNING, logger="prodml.registry._registry"),
        setup.registry.start_run("churn", environment=False) as run,
    ):
        run.log_metric("auc", 0.7)
    assert setup.registry.get_run(run.id).status == "finished"  # the record is unharmed
    assert "experiment 'prodml_test_registry_mlflow_mirror_failures_are_logged_and_clear'" in (
        caplog.text
    )
    assert "is deleted" in caplog.text

    event = AliasEvent("ghost", "champion", None, 4, "alice", None, START)
    with pytest.raises(StorageError, match=r"ghost@champion.*ghost:4.*never mirrored"):
        setup.mirror.alias_changed(event)

    broken = MlflowMirror(MlflowConfig(tracking_uri="nosuchscheme://user:hunter2@host/x"))
    with pytest.raises(
        StorageError, match=r"MLflow mirror \(nosuchscheme.*could not mirror run"
    ) as failed:
        broken.run_ended(setup.registry.get_run(run.id))
    assert "hunter2" not in str(failed.value)


def test_registry_mlflow_requires_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError, match=r"pip install 'prodml\[mlflow\]'"):
        MlflowMirror(MlflowConfig(tracking_uri="sqlite:///unused.db"))
    with pytest.raises(ConfigError, match=r"pip install 'prodml\[mlflow\]'"):
        import_mlflow_model(None, "models:/churn/1")  # type: ignore[arg-type]


# --- import --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Logged:
    name: str
    run_id: str
    model: LogisticRegression
    X: pd.DataFrame


@pytest.fixture(scope="module")
def logged(server: Server) -> Logged:
    """A scikit-learn model logged to MLflow with a signature and registered as version 1."""
    import mlflow
    import mlflow.sklearn

    X, y = training_data(seed=1)
    model = LogisticRegression().fit(X, y)
    experiment_id = server.client.create_experiment(
        "source", artifact_location=(server.root / "source").as_uri()
    )
    # log_model has no client argument: it reads the tracking URI from the environment.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", server.uri)
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_metrics({"auc": 0.91, "log_loss": 0.33})
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=mlflow.models.infer_signature(X, model.predict(X)),
                registered_model_name="flights",
                pip_requirements=["scikit-learn"],
            )
    return Logged("flights", run.info.run_id, model, X)


def test_registry_mlflow_import_matches_mlflow_and_verifies_bytes(
    setup: Setup, server: Server, logged: Logged, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pyfunc

    version = import_mlflow_model(
        setup.registry, "models:/flights/1", tracking_uri=server.uri, actor="carol"
    )
    assert (version.ref, version.format, version.status) == (
        "flights:1",
        "mlflow_pyfunc",
        "pending",
    )
    assert (version.source, version.created_by) == ("models:/flights/1", "carol")
    assert version.metrics == server.client.get_run(logged.run_id).data.metrics
    assert version.metrics == {"auc": 0.91, "log_loss": 0.33}
    signature = Signature.from_dict(version.signature)
    assert signature.inputs == (ColumnSpec("distance", "float64"), ColumnSpec("delay", "float64"))
    assert (signature.output_dtype, signature.output_shape) == ("int64", ())

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)  # load_model reads the environment
    expected = np.asarray(mlflow.pyfunc.load_model("models:/flights/1").predict(logged.X))
    scores = setup.registry.load(version.ref).predict(logged.X)
    np.testing.assert_array_equal(scores, expected)
    np.testing.assert_array_equal(scores, logged.model.predict(logged.X))

    blob = setup.blobs / digest_key(version.artifact_digest)
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == version.artifact_digest
    assert blob.stat().st_size == version.artifact_size

    # The same MLflow model reached by alias or through its run archives to the same bytes.
    server.client.set_registered_model_alias("flights", "prod", "1")
    by_alias = import_mlflow_model(
        setup.registry, "models:/flights@prod", tracking_uri=server.uri, registry_uri=server.uri
    )
    by_run = import_mlflow_model(
        setup.registry,
        f"runs:/{logged.run_id}/model",
        name="flights_run",
        tracking_uri=server.uri,
        description="from its run",
    )
    assert by_alias.ref == "flights:2"
    assert by_alias.artifact_digest == by_run.artifact_digest == version.artifact_digest
    assert (by_run.ref, by_run.description) == ("flights_run:1", "from its run")

    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        setup.registry.load(version.ref)


def test_registry_mlflow_import_needs_a_signature(
    setup: Setup, server: Server, tmp_path: Path
) -> None:
    import mlflow.sklearn

    X, y = training_data(seed=2)
    path = tmp_path / "unsigned"
    mlflow.sklearn.save_model(
        LogisticRegression().fit(X, y), str(path), pip_requirements=["scikit-learn"]
    )
    server.client.create_registered_model("unsigned")
    server.client.create_model_version("unsigned", path.as_uri())
    with pytest.raises(SchemaError, match=r"must be logged with a signature.*infer_signature"):
        import_mlflow_model(setup.registry, "models:/unsigned/1", tracking_uri=server.uri)
    assert setup.registry.models() == []


@pytest.mark.parametrize(
    ("uri", "error", "message"),
    [
        ("models:/no_such_model/1", ModelNotFoundError, "no_such_model"),
        ("models:/flights/99", ModelNotFoundError, "flights/99"),
        ("models:/flights@nobody", ModelNotFoundError, "nobody"),
        ("runs:/0123456789abcdef0123456789abcdef/model", ModelNotFoundError, "0123456789abcdef"),
        ("models:/flights/Production", SourceError, "stages are deprecated"),
        ("models:/", SourceError, "expected models:/NAME/VERSION"),
    ],
)
def test_registry_mlflow_import_unknown_models_raise_prodml_errors(
    setup: Setup, server: Server, logged: Logged, uri: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        import_mlflow_model(setup.registry, uri, tracking_uri=server.uri)


# --- signature mapping and URI parsing -----------------------------------------------------
def test_registry_mlflow_signature_mapping() -> None:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    kinds = ["double", "float", "long", "integer", "string", "boolean", "datetime", "binary"]
    expected = ["float64", "float32", "int64", "int32", "string", "bool", "timestamp", "binary"]
    inputs = Schema([ColSpec(kind, f"c_{kind}") for kind in kinds])

    def convert(outputs: Any) -> Signature:
        return to_signature(ModelSignature(inputs, outputs), model="m")

    signature = convert(None)
    assert signature.inputs == tuple(
        ColumnSpec(f"c_{k}", e) for k, e in zip(kinds, expected, strict=True)
    )
    assert (signature.output_dtype, signature.output_shape) == ("float64", ())
    tensor = Schema([TensorSpec(np.dtype("float32"), (-1, 3))])
    assert (convert(tensor).output_dtype, convert(tensor).output_shape) == ("float32", (3,))
    column = Schema([TensorSpec(np.dtype("int64"), (-1, 1))])
    assert convert(column).output_shape == ()
    two = Schema([ColSpec("double", "p0"), ColSpec("double", "p1")])
    assert (convert(two).output_dtype, convert(two).output_shape) == ("float64", (2,))
    with pytest.raises(SchemaError, match="one common type"):
        convert(Schema([ColSpec("double", "p"), ColSpec("string", "label")]))
    with pytest.raises(SchemaError, match="tensor inputs"):
        to_signature(ModelSignature(tensor), model="m")
    with pytest.raises(SchemaError, match="must be logged with a signature"):
        to_signature(None, model="m")


@given(
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,20}", fullmatch=True),
    version=st.integers(1, 10_000),
    alias=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    path=st.lists(st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True), max_size=3),
)
def test_registry_mlflow_models_uri_round_trip(
    name: str, version: int, alias: str, path: list[str]
) -> None:
    sub = "/".join(path)
    by_number = parse_models_uri(f"models:/{name}/{version}/{sub}".rstrip("/"))
    assert (by_number.name, by_number.version, by_number.path) == (name, str(version), sub)
    by_alias = parse_models_uri(f"models:/{name}@{alias}/{sub}".rstrip("/"))
    assert (by_alias.name, by_alias.alias, by_alias.version, by_alias.path) == (
        name,
        alias,
        None,
        sub,
    )
