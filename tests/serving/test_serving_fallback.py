"""What a client sees when models fail: the champion answers for a failing challenger,
circuit breakers stop calling a broken arm and probe it later, a default response (or a
503) when the champion fails too, guardrails take a broken canary out of traffic, input
contracts (soft and hard), body limits and idempotent retries. In-process, through the
ASGI app."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from prodml import Project
from prodml.project import serving_app
from prodml.registry import Arm, DeploymentSpec, Guardrails, ModelVersion
from prodml.storage import read_log
from servingkit import (
    FEATURES,
    FlakyModel,
    GarbageModel,
    HangingModel,
    OverflowModel,
    ProjectFactory,
    RaisingModel,
    lr_model,
    register,
    row,
    v2_body,
)

Factory = ProjectFactory


def v2_score(response: Any) -> float:
    assert response.status_code == 200, response.text
    value: float = response.json()["outputs"][0]["data"][0]
    return value


def champion_scores(rows: list[dict[str, float]]) -> np.ndarray:
    """What lr:1 (``lr_model()``) answers for ``rows``: the positive class probability."""
    model, _ = lr_model()
    return np.asarray(model.predict_proba(pd.DataFrame(rows, columns=FEATURES))[:, 1])


def metric(client: TestClient, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    text = client.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def predictions(project: Project) -> pa.Table:
    return read_log(project.state_dir / "logs" / "predictions")


def challenger(project: Project, model: Any) -> ModelVersion:
    return register(project, model, lr_model()[1], format="cloudpickle")


# -- the champion answers for a failing challenger -------------------------------------
FAILURES: dict[str, tuple[Callable[[], Any], str]] = {  # challenger, failure kind
    "raising": (RaisingModel, "error"),
    "hanging": (lambda: HangingModel(1.0), "timeout"),  # against timeout_ms=250
    "garbage": (GarbageModel, "bad_output"),
}


@pytest.mark.parametrize(
    ("failure", "policy"),
    [("raising", "canary"), ("hanging", "canary"), ("garbage", "canary"), ("raising", "ab")],
)
def test_failing_challenger_is_answered_by_the_champion(
    make_project: Factory, failure: str, policy: str
) -> None:
    project, champion = make_project()
    build, kind = FAILURES[failure]
    bad = challenger(project, build())
    options: dict[str, Any] = {"timeout_ms": 250.0}
    if policy == "canary":
        spec = DeploymentSpec.canary(champion.ref, bad.ref, weight=1.0, **options)
    else:
        arms = (Arm("champion", champion.ref, "champion", 0.0), Arm("b", bad.ref, "arm", 1.0))
        spec = DeploymentSpec("ab", arms, **options)
    project.deployments.deploy("lr", spec, actor="test")
    rows = [row(seed) for seed in range(4)]  # fewer than breaker_failures (5)
    with TestClient(serving_app(project)) as client:
        answers = [
            v2_score(
                client.post(
                    "/v2/models/lr/infer", json=v2_body(r), headers={"X-Prodml-Unit": f"u{i}"}
                )
            )
            for i, r in enumerate(rows)
        ]
        assert answers == pytest.approx(champion_scores(rows).tolist(), rel=1e-9)
        arm = "challenger" if policy == "canary" else "b"
        assert metric(client, "prodml_arm_failures_total", arm=arm, kind=kind) == len(rows)
        assert metric(client, "prodml_fallbacks_total", endpoint="lr", to="champion") == len(rows)
        assert metric(client, "prodml_breaker_open", arm=arm) == 0
    log = predictions(project).to_pylist()
    assert len(log) == len(rows)
    assert {(r["status"], r["arm"], r["model_version"], r["fallback_from"]) for r in log} == {
        ("fallback", "champion", champion.ref, arm)
    }
    logged = sorted(r["output"] for r in log)
    assert logged == pytest.approx(sorted(answers), rel=1e-9)


def test_invocations_fall_back_to_the_champion_class_labels(make_project: Factory) -> None:
    project, champion = make_project()
    bad = challenger(project, RaisingModel())
    project.deployments.deploy(
        "lr", DeploymentSpec.canary(champion.ref, bad.ref, weight=1.0), actor="test"
    )
    rows = [row(seed) for seed in range(10, 13)]
    model, _ = lr_model()
    with TestClient(serving_app(project)) as client:
        response = client.post("/invocations", json={"dataframe_records": rows})
        assert response.status_code == 200, response.text
        expected = model.predict(pd.DataFrame(rows, columns=FEATURES)).tolist()
        assert response.json() == {"predictions": expected}
    log = predictions(project)
    assert log.column("status").to_pylist() == ["fallback"] * 3


# -- failing shadows ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("failure", "error"), [("raising", "RuntimeError"), ("garbage", "BadOutputError")]
)
def test_failing_shadow_never_touches_the_answers(
    make_project: Factory, failure: str, error: str
) -> None:
    project, champion = make_project()
    bad = challenger(project, FAILURES[failure][0]())
    project.deployments.deploy("lr", DeploymentSpec.shadow(champion.ref, bad.ref), actor="test")
    rows = [row(seed) for seed in range(4)]  # fewer than breaker_failures (5)
    with TestClient(serving_app(project)) as client:
        answers = [v2_score(client.post("/v2/models/lr/infer", json=v2_body(r))) for r in rows]
        assert answers == pytest.approx(champion_scores(rows).tolist(), rel=1e-9)
    # closing the app answered the shadow calls still queued, and logged them
    log = predictions(project).to_pylist()
    live = [r for r in log if not r["shadow"]]
    mirrored = [r for r in log if r["shadow"]]
    assert [r["status"] for r in live] == ["ok"] * len(rows)
    assert len(mirrored) == len(rows)
    assert {(r["status"], r["error"], r["output"]) for r in mirrored} == {("error", error, None)}
    assert {r["request_id"] for r in mirrored} == {r["request_id"] for r in live}


def test_shadow_with_nan_for_one_request_fails_only_that_request(make_project: Factory) -> None:
    project, champion = make_project()
    wild = challenger(project, OverflowModel())
    spec = DeploymentSpec.shadow(champion.ref, wild.ref)
    project.deployments.deploy("lr", spec, actor="test")
    rows = [row(seed) for seed in range(3)]
    rows[1] = {**rows[1], "f0": 1e6}  # the shadow answers NaN for this one
    with TestClient(serving_app(project)) as client:
        for r in rows:
            assert client.post("/v2/models/lr/infer", json=v2_body(r)).status_code == 200
    log = [r for r in predictions(project).to_pylist() if r["shadow"]]
    assert sorted((r["status"], r["error"]) for r in log) == [
        ("error", "NonFiniteOutputError"), ("ok", None), ("ok", None)
    ]  # fmt: skip


def test_hanging_shadow_drops_mirrors_beyond_its_queue(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prodml.serving._served as served_module

    monkeypatch.setattr(served_module, "_SHADOW_CAPACITY", 2)
    project, champion = make_project("[serving]\nshutdown_timeout_s = 5\n")
    slow = challenger(project, HangingModel(0.5))
    project.deployments.deploy("lr", DeploymentSpec.shadow(champion.ref, slow.ref), actor="test")
    rows = [row(seed) for seed in range(6)]
    with TestClient(serving_app(project)) as client:
        began = time.perf_counter()
        answers = [v2_score(client.post("/v2/models/lr/infer", json=v2_body(r))) for r in rows]
        took = time.perf_counter() - began
        dropped = metric(client, "prodml_shadow_predictions_total", status="dropped")
    assert answers == pytest.approx(champion_scores(rows).tolist(), rel=1e-9)
    assert took < 0.5 * len(rows)  # nobody waited for the shadow
    assert dropped >= len(rows) - 2 - 2  # two waiting, at most two more once a batch went
    mirrored = [r for r in predictions(project).to_pylist() if r["shadow"]]
    assert len(mirrored) == len(rows) - dropped  # every accepted mirror was answered
    assert {r["status"] for r in mirrored} == {"ok"}


# -- circuit breaker -------------------------------------------------------------------
def test_breaker_stops_calling_a_failing_arm_and_closes_once_it_recovers(
    make_project: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prodml.serving._tables as tables_module
    from prodml.serving._breaker import CircuitBreaker

    now = [0.0]  # the breakers' clock, moved by hand: no request depends on machine speed
    monkeypatch.setattr(
        tables_module, "CircuitBreaker", functools.partial(CircuitBreaker, clock_fn=lambda: now[0])
    )
    project, champion = make_project(
        "[serving]\nbreaker_failures = 3\nbreaker_reset_s = 0.5\nwatch_interval_s = 3600\n"
    )
    switch = tmp_path / "broken"
    switch.touch()
    flaky = challenger(project, FlakyModel(str(switch)))
    project.deployments.deploy(
        "lr", DeploymentSpec.canary(champion.ref, flaky.ref, weight=1.0), actor="test"
    )
    expected = champion_scores([row(1)])[0]

    def ask(client: TestClient) -> float:
        return v2_score(client.post("/v2/models/lr/infer", json=v2_body(row(1))))

    def calls(client: TestClient) -> float:  # model calls that reached the challenger
        return metric(client, "prodml_model_latency_seconds_count", model=flaky.ref)

    with TestClient(serving_app(project)) as client:
        for _ in range(3):
            assert ask(client) == pytest.approx(expected)
        assert metric(client, "prodml_breaker_open", arm="challenger") == 1
        assert calls(client) == 3
        for _ in range(5):  # open: answered by the champion without calling the challenger
            assert ask(client) == pytest.approx(expected)
        assert calls(client) == 3
        assert metric(client, "prodml_arm_failures_total", kind="circuit_open") == 5
        assert metric(client, "prodml_arm_failures_total", kind="error") == 3

        now[0] += 0.6  # half-open: one trial call, which fails and re-opens the breaker
        assert ask(client) == pytest.approx(expected)
        assert ask(client) == pytest.approx(expected)
        assert calls(client) == 4
        assert metric(client, "prodml_breaker_open", arm="challenger") == 1

        switch.unlink()  # the challenger recovers
        assert ask(client) == pytest.approx(expected)  # still open: not called
        assert calls(client) == 4
        now[0] += 0.6
        assert ask(client) == pytest.approx(0.25)  # the trial succeeds: closed
        assert ask(client) == pytest.approx(0.25)
        assert calls(client) == 6
        assert metric(client, "prodml_breaker_open", arm="challenger") == 0
    statuses = predictions(project).column("status").to_pylist()
    assert statuses.count("fallback") == 11
    assert statuses.count("ok") == 2


# -- the champion fails too ------------------------------------------------------------
def broken_canary(project: Project, **options: Any) -> None:
    raising = challenger(project, RaisingModel())
    garbage = challenger(project, GarbageModel())
    spec = DeploymentSpec.canary(raising.ref, garbage.ref, weight=0.5, **options)
    project.deployments.deploy("lr", spec, actor="test")


def test_default_response_answers_when_every_arm_fails(make_project: Factory) -> None:
    project, _ = make_project()
    broken_canary(project, default_response=0.5)
    with TestClient(serving_app(project)) as client:
        for i in range(6):
            response = client.post(
                "/invocations",
                json={"dataframe_records": [row(i), row(i + 100)]},
                headers={"X-Prodml-Unit": f"unit-{i}"},
            )
            assert response.status_code == 200, response.text
            assert response.json() == {"predictions": [0.5, 0.5]}
        assert v2_score(client.post("/v2/models/lr/infer", json=v2_body(row(7)))) == 0.5
        assert metric(client, "prodml_fallbacks_total", to="default") == 7
    log = predictions(project).to_pylist()
    assert len(log) == 13
    assert {(r["status"], r["arm"], r["model_version"]) for r in log} == {
        ("degraded", "default", None)
    }
    assert {r["fallback_from"] for r in log} == {"champion", "challenger"}
    assert {r["output"] for r in log} == {0.5}


def test_without_default_response_every_arm_failing_is_503(make_project: Factory) -> None:
    project, _ = make_project()
    broken_canary(project)
    secret = 123.456789
    with TestClient(serving_app(project)) as client:
        values = {**row(3), "f0": secret}
        for response in (
            client.post("/invocations", json={"dataframe_records": [values]}),
            client.post("/v2/models/lr/infer", json=v2_body(values)),
        ):
            assert response.status_code == 503
            body = response.json()
            assert set(body) == {"error"}
            assert "lr" in body["error"]
            assert "default_response" in body["error"]
            assert "123.45" not in response.text
            assert "Traceback" not in response.text


# -- guardrails ------------------------------------------------------------------------
def test_guardrail_takes_a_failing_canary_out_of_traffic(make_project: Factory) -> None:
    project, champion = make_project("[serving]\nwatch_interval_s = 0.2\n")
    bad = challenger(project, RaisingModel())
    guard = Guardrails(window_s=60.0, min_requests=10, max_error_rate=0.1)
    spec = DeploymentSpec.canary(champion.ref, bad.ref, weight=0.5, guardrails=guard)
    project.deployments.deploy("lr", spec, actor="test")

    def send(client: TestClient, unit: str) -> None:
        response = client.post(
            "/v2/models/lr/infer", json=v2_body(row(1)), headers={"X-Prodml-Unit": unit}
        )
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == "1"

    with TestClient(serving_app(project)) as client:
        deadline = time.monotonic() + 60
        sent = 0
        while project.deployments.get("lr").spec.arm("challenger").weight > 0:
            assert time.monotonic() < deadline, "the guardrail never tripped"
            send(client, f"unit-{sent}")
            sent += 1
            if sent > 40:
                time.sleep(0.05)
        assert sent >= 10  # nothing is judged before min_requests calls to the challenger
        deployment = project.deployments.get("lr")
        assert deployment.spec.arm("champion").weight == 1.0
        last = project.deployments.history("lr")[-1]
        assert last["action"] == "guardrail"
        assert "error rate" in last["reason"]
        assert metric(client, "prodml_guardrail_trips_total", arm="challenger") == 1
        failures = metric(client, "prodml_arm_failures_total", arm="challenger")
        calls = metric(client, "prodml_model_latency_seconds_count", model=bad.ref)

        for i in range(40):
            send(client, f"after-{i}")
        assert metric(client, "prodml_arm_failures_total", arm="challenger") == failures
        assert metric(client, "prodml_model_latency_seconds_count", model=bad.ref) == calls
        assert metric(client, "prodml_guardrail_trips_total", arm="challenger") == 1
        deadline = time.monotonic() + 60
        while client.get("/v1/endpoints/lr").json()["revision"] != deployment.revision:
            assert time.monotonic() < deadline, "the server never loaded the guardrail's revision"
            time.sleep(0.05)
        assert client.get("/v1/endpoints/lr").json()["weights"] == {"champion": 1.0}
    log = predictions(project).to_pylist()
    after = [r for r in log if r["unit"].startswith("after-")]
    assert len(after) == 40
    assert {(r["status"], r["arm"]) for r in after} == {("ok", "champion")}


# -- input contracts -------------------------------------------------------------------
def test_soft_violation_is_served_and_counted(make_project: Factory) -> None:
    project, _ = make_project()
    values = {**row(2), "f0": 1e6}
    with TestClient(serving_app(project)) as client:
        response = client.post("/v2/models/lr/infer", json=v2_body(values))
        assert response.status_code == 200, response.text
        response = client.post("/invocations", json={"dataframe_records": [values, row(3)]})
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 2
        assert metric(client, "prodml_contract_violations_total", column="f0") == 2
        assert metric(client, "prodml_contract_violations_total", column="f1") == 0
    log = predictions(project).to_pylist()
    assert len(log) == 3
    flagged = [r["violations"] for r in log if r["violations"]]
    assert len(flagged) == 3  # one request's violation marks all its rows
    assert all(v.startswith("f0:") for v in flagged)


def test_soft_violation_is_rejected_when_configured(make_project: Factory) -> None:
    project, _ = make_project('[serving]\non_soft_violation = "reject"\n')
    values = {**row(2), "f0": 987654.321}
    with TestClient(serving_app(project)) as client:
        response = client.post("/v2/models/lr/infer", json=v2_body(values))
        assert response.status_code == 422
        details = response.json()["details"]
        assert [d["field"] for d in details] == ["f0"]
        assert "987654" not in response.text
        assert metric(client, "prodml_contract_violations_total", column="f0") == 1
        assert client.post("/v2/models/lr/infer", json=v2_body(row(2))).status_code == 200
    assert predictions(project).num_rows == 1


def test_hard_contract_violations_are_422_with_one_detail_per_field(
    make_project: Factory,
) -> None:
    project, _ = make_project()
    values: dict[str, Any] = {**row(4), "f5": "private-text-value", "zz_extra": 4242.4242}
    del values["f3"]
    with TestClient(serving_app(project)) as client:
        response = client.post("/invocations", json={"dataframe_records": [values]})
        assert response.status_code == 422, response.text
        fields = sorted(d["field"] for d in response.json()["details"])
        assert fields == ["f3", "f5", "request"]  # a made-up name is counted, not repeated

        inputs = [
            {"name": n, "shape": [1], "datatype": "FP64", "data": [values[n]]}
            for n in FEATURES
            if n not in ("f3", "f5")
        ]
        inputs.append({"name": "f5", "shape": [1], "datatype": "BYTES", "data": [values["f5"]]})
        inputs.append({"name": "zz_extra", "shape": [1], "datatype": "FP64", "data": [4242.4242]})
        response = client.post("/v2/models/lr/infer", json={"inputs": inputs})
        assert response.status_code == 422, response.text
        fields = sorted(d["field"] for d in response.json()["details"])
        assert fields == ["f3", "f5", "request"]  # a made-up name is counted, not repeated
        assert "private-text-value" not in response.text
        assert "4242.42" not in response.text
        assert metric(client, "prodml_requests_total", status="ok") == 0
    assert predictions(project).num_rows == 0


def test_oversized_body_is_413(make_project: Factory) -> None:
    project, _ = make_project("[serving]\nmax_request_bytes = 4096\n")
    with TestClient(serving_app(project)) as client:
        small = client.post("/invocations", json={"dataframe_records": [row(1)]})
        assert small.status_code == 200, small.text
        big = client.post("/invocations", json={"dataframe_records": [row(i) for i in range(50)]})
        assert big.status_code == 413
        assert "4096" in big.json()["error"]
        chunks = [b'{"dataframe_records": [', b"0" * 5000, b"]}"]  # streamed: no length
        streamed = client.post(
            "/invocations", content=iter(chunks), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413


# -- idempotency -----------------------------------------------------------------------
def test_idempotency_key_replays_the_first_answer_and_logs_once(make_project: Factory) -> None:
    project, _ = make_project("[serving]\nidempotency_from_body_id = true\n")
    with TestClient(serving_app(project)) as client:
        body = {"dataframe_records": [row(5)]}
        first = client.post("/invocations", json=body, headers={"Idempotency-Key": "k-1"})
        second = client.post("/invocations", json=body, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == second.status_code == 200
        assert second.content == first.content
        assert second.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        other = client.post("/invocations", json=body, headers={"Idempotency-Key": "k-2"})
        assert "Idempotent-Replayed" not in other.headers

        v2_first = client.post("/v2/models/lr/infer", json=v2_body(row(6), id="req-42"))
        v2_again = client.post("/v2/models/lr/infer", json=v2_body(row(6), id="req-42"))
        assert v2_first.status_code == v2_again.status_code == 200
        assert v2_first.json()["id"] == "req-42"
        assert v2_again.content == v2_first.content
        assert v2_again.headers["Idempotent-Replayed"] == "true"
        assert metric(client, "prodml_idempotent_replays_total", endpoint="lr") == 2
    log = predictions(project).to_pylist()
    assert len(log) == 3  # k-1, k-2 and req-42, once each
    assert [r["request_id"] for r in log].count("req-42") == 1
    assert first.headers["X-Request-ID"] in {r["request_id"] for r in log}


def test_a_key_reused_with_another_request_is_refused_not_replayed(
    make_project: Factory,
) -> None:
    project, _ = make_project()
    with TestClient(serving_app(project)) as client:
        key = {"Idempotency-Key": "k-reused"}
        first = client.post("/invocations", json={"dataframe_records": [row(1)]}, headers=key)
        other = client.post("/invocations", json={"dataframe_records": [row(2)]}, headers=key)
        retry = client.post("/invocations", json={"dataframe_records": [row(1)]}, headers=key)
        elsewhere = client.post("/v2/models/lr/infer", json=v2_body(row(1)), headers=key)
        v2_first = client.post("/v2/models/lr/infer", json=v2_body(row(3), id="req-7"))
        v2_other = client.post("/v2/models/lr/infer", json=v2_body(row(4), id="req-7"))
    assert first.status_code == 200, first.text
    assert other.status_code == 422, other.text
    assert other.json()["details"][0]["field"] == "Idempotency-Key"
    assert "k-reused" not in other.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert elsewhere.status_code == 422  # the same key on another route is another request
    # a body id correlates: another body with it is a new request, answered afresh
    assert v2_first.status_code == v2_other.status_code == 200
    assert "Idempotent-Replayed" not in v2_other.headers
    assert v2_other.json()["outputs"] != v2_first.json()["outputs"]
    log = predictions(project).to_pylist()
    assert len(log) == 3  # k-reused once, req-7 twice: the refusals are not predictions


def test_a_long_v2_id_is_a_request_id_up_to_128_characters(make_project: Factory) -> None:
    project, _ = make_project("[serving]\nidempotency_from_body_id = true\n")
    with TestClient(serving_app(project)) as client:
        body = {**v2_body(row(5)), "id": "r" * 128}
        first = client.post("/v2/models/lr/infer", json=body)
        again = client.post("/v2/models/lr/infer", json=body)
        too_long = client.post("/v2/models/lr/infer", json={**body, "id": "r" * 129})
    assert first.status_code == 200, first.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert too_long.status_code == 422
    assert "128" in too_long.json()["error"]
