"""Model versions: numbering, references, loading a verified artifact and refusing a
tampered one, and registering against an unknown run."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from prodml.core import (
    ArtifactNotFoundError,
    DefinitionError,
    IntegrityError,
    ModelNotFoundError,
    ModelRef,
    RunNotFoundError,
    SchemaError,
)
from prodml.registry import ModelRegistry, ModelVersion, infer_signature

RegisterFn = Callable[..., ModelVersion]


def _fitted() -> tuple[LogisticRegression, pd.DataFrame]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = (X["a"] + 0.5 * X["b"] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    return LogisticRegression().fit(X, y), X


def test_versions_are_numbered_per_model(env: Any, register: RegisterFn) -> None:
    assert [register("a").version for _ in range(3)] == [1, 2, 3]
    assert register("b").version == 1
    assert register("a").version == 4
    reg: ModelRegistry = env.registry
    assert [v.version for v in reg.versions("a")] == [1, 2, 3, 4]
    assert [v.ref for v in reg.versions("b")] == ["b:1"]
    assert reg.models() == [
        {"name": "a", "latest": 4, "latest_status": "pending", "aliases": {}},
        {"name": "b", "latest": 1, "latest_status": "pending", "aliases": {}},
    ]


def test_a_version_records_what_was_registered(env: Any, register: RegisterFn) -> None:
    reg: ModelRegistry = env.registry
    run = reg.start_run("m", environment=False)
    run.end()
    env.clock.advance(timedelta(hours=1))
    data = b"not really a pickle, but bytes all the same"
    version = register(
        "m",
        artifact=data,
        run_id=run.id,
        metrics={"auc": 0.8},
        profile={"rows": 10},
        evaluation={"champion": None},
        gate={"status": "BLESSED", "checks": []},
        description="first",
        source="train.py",
        actor="alice",
    )
    assert version.artifact_digest == hashlib.sha256(data).hexdigest()
    assert version.artifact_size == len(data)
    assert (version.format, version.run_id, version.created_by) == ("cloudpickle", run.id, "alice")
    assert version.created_at == env.clock.now()
    assert (version.status, version.status_actor, version.status_time) == ("pending", None, None)
    assert (version.gate_status, version.blessed) == ("BLESSED", True)
    assert version.metrics == {"auc": 0.8}
    assert (version.profile, version.evaluation) == ({"rows": 10}, {"champion": None})
    assert (version.description, version.source, version.aliases) == ("first", "train.py", ())
    assert reg.get("m:1") == version
    assert reg.artifact_bytes("m:1") == data
    [entry] = reg.audit_log("m:1")
    assert (entry.actor, entry.action, entry.object_type, entry.before) == (
        "alice",
        "register",
        "model_version",
        None,
    )
    assert entry.after == {
        "artifact": version.artifact_digest,
        "format": "cloudpickle",
        "gate": "BLESSED",
    }
    assert version.to_dict()["ref"] == "m:1"
    assert "profile" not in version.to_dict()
    assert version.to_dict(full=True)["profile"] == {"rows": 10}


def test_references_resolve(env: Any, register: RegisterFn) -> None:
    reg: ModelRegistry = env.registry
    first, second, third = (register("m") for _ in range(3))
    reg.set_alias("m", "staging", 2)
    assert reg.get("m:2") == dataclasses.replace(second, aliases=("staging",))
    assert reg.get(ModelRef("m", version=1)) == first
    assert reg.get("m@staging").version == 2
    assert reg.get(ModelRef("m", alias="staging")).version == 2
    assert reg.get("m") == third
    assert reg.get("m:latest") == third
    assert reg.load("m@staging").version.version == 2


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("ghost", r"model 'ghost' is not registered"),
        ("ghost:1", r"model 'ghost' is not registered"),
        ("ghost@champion", r"model 'ghost' is not registered"),
        ("ghost:latest", r"model 'ghost' is not registered"),
        ("m:9", r"model 'm' has no version 9"),
        ("m:0", r"model 'm' has no version 0"),
        ("m@champion", r"model 'm' has no alias 'champion'"),
    ],
)
def test_unknown_references_are_not_found(
    env: Any, register: RegisterFn, ref: str, message: str
) -> None:
    register("m")
    reg: ModelRegistry = env.registry
    for call in (reg.get, reg.load, reg.artifact_bytes, reg.lineage):
        with pytest.raises(ModelNotFoundError, match=message):
            call(ref)


def test_listing_an_unknown_model_is_not_found(env: Any) -> None:
    reg: ModelRegistry = env.registry
    for call in (reg.versions, reg.aliases):
        with pytest.raises(ModelNotFoundError, match=r"model 'ghost' is not registered"):
            call("ghost")


@pytest.mark.parametrize("ref", ["m:two", "m:-1", "bad name", "m@", "m@bad alias"])
def test_malformed_references_are_definition_errors(env: Any, ref: str) -> None:
    with pytest.raises(DefinitionError, match=r"model reference|name is invalid"):
        env.registry.get(ref)


def test_a_loaded_version_predicts_like_the_original(env: Any) -> None:
    model, X = _fitted()
    reg: ModelRegistry = env.registry
    signature = infer_signature(X, model.predict_proba(X)[:, 1])
    version = reg.register("clf", model, signature=signature)
    assert version.format == "skops"
    loaded = reg.load("clf")
    assert loaded.version == version
    np.testing.assert_array_equal(loaded.predict(X), model.predict_proba(X)[:, 1])
    np.testing.assert_array_equal(loaded.predict(X[["b", "a"]]), model.predict_proba(X)[:, 1])
    np.testing.assert_array_equal(loaded.model.predict(X), model.predict(X))
    with pytest.raises(SchemaError, match=r"clf:1: input column 'b' is missing"):
        loaded.predict(X[["a"]])


def test_a_tampered_artifact_is_refused_at_load(env: Any, register: RegisterFn) -> None:
    reg: ModelRegistry = env.registry
    version = register("m")
    digest = version.artifact_digest
    [blob] = [p for p in env.artifacts_dir.rglob("*") if p.is_file() and p.name == digest[2:]]
    assert blob.parent.name == digest[:2]
    assert reg.load("m").model["payload"]  # loads while intact
    original = blob.read_bytes()
    blob.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    for call in (reg.load, reg.artifact_bytes):
        with pytest.raises(IntegrityError, match=digest):
            call("m:1")
    blob.unlink()
    with pytest.raises(ArtifactNotFoundError):
        reg.load("m:1")


def test_register_with_an_unknown_run_writes_nothing(env: Any, register: RegisterFn) -> None:
    reg: ModelRegistry = env.registry
    with pytest.raises(RunNotFoundError, match="run-missing"):
        register("fresh", run_id="run-missing")
    assert reg.models() == []
    assert reg.audit_log() == []
    with pytest.raises(ModelNotFoundError, match="'fresh'"):
        reg.get("fresh")

    register("m")
    with pytest.raises(RunNotFoundError, match="run-missing"):
        register("m", run_id="run-missing")
    assert [v.version for v in reg.versions("m")] == [1]
    assert [e.object_id for e in reg.audit_log()] == ["m:1"]
    assert register("m").version == 2  # the failed call used no number


def test_records_are_snapshots(env: Any, register: RegisterFn) -> None:
    reg: ModelRegistry = env.registry
    version = register("m", metrics={"auc": 0.8})
    version.metrics["auc"] = 1.0
    version.signature.clear()
    assert reg.get("m:1").metrics == {"auc": 0.8}
    assert reg.get("m:1").signature["inputs"] == [{"name": "x", "dtype": "float64"}]
