"""Hostile inputs to the registry and training surface: odd references, wrong types,
malformed deployment specs, labels that are not binary, and CLI commands that must fail
without a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prodml.cli import app
from prodml.core import (
    DefinitionError,
    ModelNotFoundError,
    ProdMLError,
    SchemaError,
    TrainingError,
)
from prodml.registry import DeploymentSpec, DeploymentStore, ModelVersion
from prodml.training import evaluate, measure_performance
from trainkit import END, T0, labelled_rows, make_training_project

RegisterFn = Callable[..., ModelVersion]


# --- references -------------------------------------------------------------------------
@pytest.mark.parametrize("ref", ["m:²", "m:١"])
def test_a_version_of_non_ascii_digits_is_a_definition_error(
    env: Any, register: RegisterFn, ref: str
) -> None:
    register("m")
    with pytest.raises(DefinitionError, match="positive integer"):
        env.registry.get(ref)
    with pytest.raises(DefinitionError):
        env.registry.set_alias("m", "x", ref.partition(":")[2])


def test_a_version_too_large_for_the_database_is_not_found(env: Any, register: RegisterFn) -> None:
    register("m")
    with pytest.raises(ModelNotFoundError, match="has no version"):
        env.registry.get("m:" + "9" * 30)
    with pytest.raises(ModelNotFoundError, match="has no version"):
        env.registry.set_alias("m", "x", 10**30)


@pytest.mark.parametrize("ref", [None, 5, 1.5])
def test_a_reference_that_is_not_a_string_is_a_definition_error(
    env: Any, register: RegisterFn, ref: Any
) -> None:
    register("m")
    with pytest.raises(DefinitionError, match="model reference"):
        env.registry.get(ref)


def test_an_alias_is_not_pointed_at_version_true(env: Any, register: RegisterFn) -> None:
    register("m")
    with pytest.raises(DefinitionError, match="version must be"):
        env.registry.set_alias("m", "x", True)
    assert env.registry.aliases("m") == {}


# --- registering ------------------------------------------------------------------------
def test_numpy_metrics_are_stored_as_numbers_and_nan_as_null(
    env: Any, register: RegisterFn
) -> None:
    version = register(
        "m", metrics={"auc": np.float32(0.5), "rows": np.int64(3), "ece": float("nan")}
    )
    assert version.metrics == {"auc": 0.5, "rows": 3.0, "ece": None}
    assert env.registry.get(version.ref).metrics == version.metrics


@pytest.mark.parametrize("value", ["0.8", True, [0.8], object()])
def test_a_metric_that_is_not_a_number_is_refused_naming_it(
    env: Any, register: RegisterFn, value: Any
) -> None:
    with pytest.raises(DefinitionError, match="metric 'auc' must be a number"):
        register("m", metrics={"auc": value})
    with pytest.raises(ModelNotFoundError):
        env.registry.get("m")  # nothing registered


def test_a_gate_that_is_not_a_mapping_or_no_signature_is_refused(
    env: Any, register: RegisterFn
) -> None:
    with pytest.raises(DefinitionError, match="gate must be a mapping"):
        register("m", gate="BLESSED")
    with pytest.raises(DefinitionError, match="signature must be a Signature"):
        register("m", signature=None)
    with pytest.raises(ModelNotFoundError):
        env.registry.get("m")


# --- deployments ------------------------------------------------------------------------
def _store(env: Any) -> DeploymentStore:
    return DeploymentStore(env.db, env.clock)


def _single(**extra: Any) -> dict[str, Any]:
    arms = [{"name": "champion", "model": "m:1", "role": "champion"}]
    return {"policy": "single", "arms": arms, **extra}


@pytest.mark.parametrize("paused", ["false", 0, 1, None])
def test_paused_must_be_a_bool(env: Any, register: RegisterFn, paused: Any) -> None:
    register("m")
    with pytest.raises(DefinitionError, match="paused must be true or false"):
        _store(env).deploy("e", _single(paused=paused), actor="t")


@pytest.mark.parametrize(
    "spec", [[1, 2], "single", {"policy": "ab", "arms": "abc"}, {"policy": "ab", "arms": ["m:1"]}]
)
def test_a_malformed_spec_is_a_definition_error(env: Any, register: RegisterFn, spec: Any) -> None:
    register("m")
    with pytest.raises(DefinitionError, match="deployment spec is malformed"):
        _store(env).deploy("e", spec, actor="t")
    with pytest.raises(DefinitionError, match="deployment spec is malformed"):
        DeploymentSpec.from_dict(spec)


@pytest.mark.parametrize("weight", ["x", None, [0.2]])
def test_set_weights_refuses_a_weight_that_is_not_a_number(
    env: Any, register: RegisterFn, weight: Any
) -> None:
    register("m")
    register("m")
    store = _store(env)
    store.deploy("c", DeploymentSpec.canary("m:1", "m:2", weight=0.1), actor="t")
    with pytest.raises(DefinitionError, match="arm 'challenger': weight must be a finite number"):
        store.set_weights("c", {"challenger": weight}, actor="t")
    assert store.get("c").revision == 1


def test_a_canary_weight_above_one_is_refused_naming_the_challenger(
    env: Any, register: RegisterFn
) -> None:
    register("m")
    register("m")
    store = _store(env)
    store.deploy("c", DeploymentSpec.canary("m:1", "m:2", weight=0.1), actor="t")
    with pytest.raises(DefinitionError, match=r"arm 'challenger': weight must be in \[0.0, 1.0\]"):
        store.set_weights("c", {"challenger": 1.5}, actor="t")


# --- evaluation -------------------------------------------------------------------------
def test_evaluate_refuses_repeated_or_unhashable_segments() -> None:
    y, p = [0, 1, 0, 1], [0.2, 0.8, 0.3, 0.7]
    repeated = pd.DataFrame([["x", "x"]] * 4, columns=["a", "a"])
    with pytest.raises(SchemaError, match="appear more than once"):
        evaluate(y, p, task="classification", segments=repeated, slice_min_rows=1)
    lists = pd.DataFrame({"a": [[1], [2], [1], [2]]})
    with pytest.raises(SchemaError, match="segment column 'a'"):
        evaluate(y, p, task="classification", segments=lists, slice_min_rows=1)


def test_measure_performance_refuses_a_single_value_for_many_rows() -> None:
    with pytest.raises(TrainingError, match="a single value"):
        measure_performance(lambda X: 0.5, pd.DataFrame({"a": [1.0, 2.0]}))


# --- training labels --------------------------------------------------------------------
@pytest.fixture(scope="module")
def training_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "project"
    root.mkdir()
    make_training_project(root).close()
    return root


@pytest.mark.parametrize(
    ("values", "found"),
    [
        (lambda n, rng: rng.integers(0, 3, n).tolist(), r"\[2\]"),
        (lambda n, rng: rng.choice(["no", "yes"], n).tolist(), r"\['no', 'yes'\]"),
        (lambda n, rng: (rng.random(n) * 0.9 + 0.05).tolist(), "dtype float64"),
    ],
)
def test_a_label_that_is_not_binary_is_refused_not_cast_to_bool(
    training_root: Path, values: Callable[..., list[Any]], found: str
) -> None:
    from prodml import Project

    rows = labelled_rows()
    late = pa.array(values(rows.num_rows, np.random.default_rng(0)))
    original = pq.read_table(training_root / "data" / "rows.parquet")
    pq.write_table(
        rows.set_column(rows.column_names.index("late"), "late", late),
        training_root / "data" / "rows.parquet",
    )
    try:
        with Project.open(training_root) as project:
            with pytest.raises(SchemaError, match=f"(?s)'late'.*{found}.*expected binary"):
                project.training.train(T0, END)
            assert "flight_delay" not in {m["name"] for m in project.registry.models()}
    finally:
        pq.write_table(original, training_root / "data" / "rows.parquet")


# --- CLI --------------------------------------------------------------------------------
def _cli(root: Path, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--project", str(root)])


def test_cli_lineage_of_a_run_with_an_unrecorded_dataset(training_root: Path) -> None:
    from prodml import Project
    from prodml.registry import infer_signature

    with Project.open(training_root) as project:
        run = project.registry.start_run("ext", environment=False)
        run.log_dataset("ab" * 32)
        run.end()
        signature = infer_signature(pd.DataFrame({"x": [0.0]}), np.array([0.0]))
        project.registry.register(
            "ext", {"w": 1}, signature=signature, format="cloudpickle", run_id=run.id
        )
    result = _cli(training_root, "models", "lineage", "ext:1")
    assert result.exit_code == 0, result.exception
    assert "not recorded" in result.stdout


@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_cli_alias_delete_with_an_odd_version_fails_without_traceback(
    training_root: Path, as_json: list[str]
) -> None:
    result = _cli(training_root, "models", "alias", "nope:²", "x", "--delete", *as_json)
    assert result.exit_code == 4, result.exception
    assert isinstance(result.exception, SystemExit)


def test_mlflow_import_from_a_refused_tracking_uri_is_a_prodml_error(
    env: Any, tmp_path: Path
) -> None:
    pytest.importorskip("mlflow")
    from prodml.registry.mlflow import import_mlflow_model

    with pytest.raises(ProdMLError):
        import_mlflow_model(env.registry, "models:/x/1", tracking_uri=f"file://{tmp_path}/no")


def test_a_corrupt_champion_artifact_fails_the_gate_not_the_job(tmp_path: Path) -> None:
    from prodml.core import IntegrityError

    root = tmp_path / "project"
    root.mkdir()
    with make_training_project(root) as project:
        first = project.training.train(T0, END).version
        assert first is not None
        project.registry.approve(first.ref)
        project.registry.set_alias("flight_delay", "champion", first.ref)
        digest = first.artifact_digest
        (root / ".prodml" / "artifacts" / "sha256" / digest[:2] / digest[2:]).write_bytes(b"bad")
        with pytest.raises(IntegrityError):
            project.registry.load(first.ref)
        second = project.training.train(T0, END, params={"C": 0.5})
    assert second.version is not None
    assert second.champion == first.ref
    assert second.gate.status == "NOT_BLESSED"
    assert any(f"champion {first.ref} could not be loaded" in r for r in second.gate.reasons)
