"""Which arm answers: shadow mirroring, sticky canary and A/B splits (with valid
statistics), stratified assignment, pause, the Thompson-sampling bandit fed by
``/v1/feedback``, feedback validation, and hot swaps under traffic. In-process, through
the ASGI app; bulk traffic goes through ``httpx.ASGITransport`` on the app's own event
loop so that thousands of requests stay fast."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from scipy import stats

from prodml.project import serving_app
from prodml.registry import Arm, BanditSpec, DeploymentSpec
from prodml.serving import ServingRuntime
from servingkit import FEATURES, PATIENT_MS, lr_model, register, row, serving_project

ALPHA = 0.001  # a correct router fails a statistical check here once in a thousand runs
BULK = "[serving]\nlog_features = false\n"  # tests of thousands of requests log less


class Served:
    """A project with ``lr:1`` (champion) and more LRs registered, and its app."""

    def __init__(self, root: Path, config: str = "", extra_models: int = 1) -> None:
        self.project, champion = serving_project(root, config=config)
        self.versions = [champion]
        self.models = [lr_model()[0]]
        for i in range(extra_models):
            model, X = lr_model(C=0.05 * (i + 1), seed=i + 1)
            self.versions.append(register(self.project, model, X))
            self.models.append(model)
        self.app: FastAPI | None = None

    def refs(self) -> list[str]:
        return [v.ref for v in self.versions]

    def deploy(self, spec: DeploymentSpec) -> None:
        if spec.timeout_ms == DeploymentSpec.timeout_ms:  # no test here is about timeouts
            spec = dataclasses.replace(spec, timeout_ms=PATIENT_MS)
        self.project.deployments.deploy("lr", spec, actor="test")

    def client(self) -> TestClient:
        self.app = serving_app(self.project)
        return TestClient(self.app)

    @property
    def runtime(self) -> ServingRuntime:
        assert self.app is not None
        runtime: ServingRuntime = self.app.state.server.runtime
        return runtime

    def scores(self, index: int, rows: Sequence[dict[str, float]]) -> np.ndarray:
        frame = pd.DataFrame(list(rows), columns=FEATURES)
        return np.asarray(self.models[index].predict_proba(frame)[:, 1])

    def log(self, kind: str = "predictions") -> list[dict[str, Any]]:
        store = self.project.logs.predictions if kind == "predictions" else self.project.logs.labels
        rows: list[dict[str, Any]] = store.read().to_pylist()
        return rows


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    made: list[Served] = []

    def make(config: str = "", extra_models: int = 1) -> Served:
        made.append(Served(tmp_path / f"project{len(made)}", config, extra_models))
        return made[-1]

    yield make
    for item in made:
        item.project.close()


def v2_body(values: dict[str, float]) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": n, "shape": [1], "datatype": "FP64", "data": [values[n]]} for n in FEATURES
        ]
    }


BODY = v2_body(row(0))


def send_many(
    client: TestClient,
    app: FastAPI | None,
    requests: Sequence[tuple[dict[str, Any], dict[str, str]]],
    concurrency: int = 16,
) -> list[httpx.Response]:
    """POST each (V2 body, headers) to ``/v2/models/lr/infer`` concurrently, on the
    app's event loop (the TestClient keeps the app's lifespan running)."""
    assert app is not None

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            gate = asyncio.Semaphore(concurrency)

            async def one(body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
                async with gate:
                    return await http.post("/v2/models/lr/infer", json=body, headers=headers)

            return await asyncio.gather(*(one(b, h) for b, h in requests))

    responses = client.portal.call(run)  # type: ignore[union-attr]
    bad = [r for r in responses if r.status_code != 200]
    assert not bad, bad[0].text
    return responses


def arms_of_units(
    served: Served, client: TestClient, units: Sequence[str], body: dict[str, Any] = BODY
) -> list[str]:
    """The model version that answered each unit (one request per unit)."""
    responses = send_many(client, served.app, [(body, {"X-Prodml-Unit": u}) for u in units])
    return [r.json()["model_version"] for r in responses]


def refresh(served: Served, client: TestClient) -> list[str]:
    changed: list[str] = client.portal.call(served.runtime.refresh)  # type: ignore[union-attr]
    return changed


# -- shadow ----------------------------------------------------------------------------
def test_shadow_is_logged_and_never_answers(served: Callable[..., Served]) -> None:
    s = served()
    s.deploy(DeploymentSpec.shadow(s.versions[0].ref, s.versions[1].ref))
    rows = [row(seed) for seed in range(20)]
    with s.client() as client:
        answers: dict[str, float] = {}
        for values in rows:
            response = client.post("/v2/models/lr/infer", json=v2_body(values))
            assert response.status_code == 200, response.text
            assert response.json()["model_version"] == "1"
            answers[response.headers["X-Request-ID"]] = response.json()["outputs"][0]["data"][0]
    champion, shadow = s.scores(0, rows), s.scores(1, rows)
    assert list(answers.values()) == pytest.approx(champion.tolist(), rel=1e-9)
    assert not np.allclose(champion, shadow)
    log = s.log()
    live = [r for r in log if not r["shadow"]]
    mirrored = [r for r in log if r["shadow"]]
    assert len(live) == len(mirrored) == len(rows)
    assert {(r["arm"], r["model_version"], r["status"]) for r in mirrored} == {
        ("shadow", "lr:2", "ok")
    }
    # the record says which role answered, and which live arm a shadow record mirrors
    assert {(r["role"], r["shadow_of"]) for r in live} == {("champion", None)}
    assert {(r["role"], r["shadow_of"]) for r in mirrored} == {("shadow", "champion")}
    by_request = {r["request_id"]: r["output"] for r in mirrored}
    assert set(by_request) == set(answers)
    expected_shadow = dict(zip(answers, shadow.tolist(), strict=True))
    for request_id, answer in answers.items():
        assert by_request[request_id] == pytest.approx(expected_shadow[request_id], rel=1e-9)
        assert by_request[request_id] != pytest.approx(answer, rel=1e-6)


def test_shadow_fraction_samples_units_deterministically(served: Callable[..., Served]) -> None:
    s = served(BULK)
    s.deploy(DeploymentSpec.shadow(s.versions[0].ref, s.versions[1].ref, fraction=0.5))
    units = [f"user-{i}" for i in range(200)]
    with s.client() as client:
        for _ in range(2):
            assert set(arms_of_units(s, client, units)) == {"1"}
    log = s.log()
    assert sum(not r["shadow"] for r in log) == 2 * len(units)
    mirrored = Counter(r["unit"] for r in log if r["shadow"])
    assert set(mirrored.values()) == {2}  # a unit is sampled in both passes or in neither
    assert stats.binomtest(len(mirrored), len(units), 0.5).pvalue > ALPHA


# -- canary and A/B --------------------------------------------------------------------
def test_canary_is_sticky_per_unit_and_splits_by_weight(served: Callable[..., Served]) -> None:
    s = served(BULK)
    s.deploy(DeploymentSpec.canary(s.versions[0].ref, s.versions[1].ref, weight=0.3))
    units = [f"customer-{i}" for i in range(500)]
    with s.client() as client:
        first = dict(zip(units, arms_of_units(s, client, units), strict=True))
        again = units[::5]
        for _ in range(2):
            repeated = arms_of_units(s, client, again, body=v2_body(row(9)))
            assert repeated == [first[u] for u in again]
    on_challenger = sum(arm == "2" for arm in first.values())
    assert stats.binomtest(on_challenger, len(units), 0.3).pvalue > ALPHA


@pytest.mark.slow
def test_ab_three_arms_split_by_weight(served: Callable[..., Served]) -> None:
    s = served(BULK, extra_models=2)
    weights = {"1": 0.5, "2": 0.3, "3": 0.2}
    arms = tuple(
        Arm(f"arm{v}", ref, "champion" if v == "1" else "arm", w)
        for (v, w), ref in zip(weights.items(), s.refs(), strict=True)
    )
    s.deploy(DeploymentSpec("ab", arms))
    units = [f"visitor-{i}" for i in range(3000)]
    with s.client() as client:
        counts = Counter(arms_of_units(s, client, units))
    observed = [counts[v] for v in weights]
    assert sum(observed) == len(units)
    expected = [w * len(units) for w in weights.values()]
    assert stats.chisquare(observed, expected).pvalue > ALPHA


def test_stratified_assignment_is_per_stratum(served: Callable[..., Served]) -> None:
    s = served(BULK, extra_models=2)
    weights = (0.5, 0.3, 0.2)
    arms = tuple(
        Arm(f"arm{i}", ref, "champion" if i == 0 else "arm", w)
        for i, (ref, w) in enumerate(zip(s.refs(), weights, strict=True))
    )
    s.deploy(DeploymentSpec("ab", arms, stratify_by="f1"))
    units = [f"member-{i}" for i in range(400)]
    by_stratum: dict[float, list[str]] = {}
    with s.client() as client:
        for stratum in (0.0, 1.0):
            body = v2_body({**row(3), "f1": stratum})
            by_stratum[stratum] = arms_of_units(s, client, units, body=body)
            repeat = arms_of_units(s, client, units[:50], body=v2_body({**row(4), "f1": stratum}))
            assert repeat == by_stratum[stratum][:50]  # sticky within a stratum
    for assigned in by_stratum.values():
        counts = Counter(assigned)
        observed = [counts[str(v)] for v in (1, 2, 3)]
        expected = [w * len(units) for w in weights]
        assert stats.chisquare(observed, expected).pvalue > ALPHA
    # each stratum hashes with its own salt: a unit's two arms agree only by chance
    same = sum(a == b for a, b in zip(by_stratum[0.0], by_stratum[1.0], strict=True))
    chance = sum(w * w for w in weights)
    assert stats.binomtest(same, len(units), chance).pvalue > ALPHA
    # every record names the stratum it was routed in and its arm's role
    logged = Counter((r["stratum"], r["role"]) for r in s.log())
    assert {stratum for stratum, _ in logged} == {"0.0", "1.0"}
    assert {role for _, role in logged} == {"champion", "arm"}
    assert sum(logged.values()) == 2 * (len(units) + 50)


# -- pause, refresh, hot swap ----------------------------------------------------------
def test_paused_deployment_serves_only_the_champion(served: Callable[..., Served]) -> None:
    s = served("[serving]\nwatch_interval_s = 3600\n")
    s.deploy(DeploymentSpec.canary(s.versions[0].ref, s.versions[1].ref, weight=1.0))
    units = [f"u{i}" for i in range(40)]
    with s.client() as client:
        assert set(arms_of_units(s, client, units)) == {"2"}
        s.project.deployments.pause("lr", actor="test", reason="incident")
        assert set(arms_of_units(s, client, units)) == {"2"}  # not applied until a refresh
        assert refresh(s, client) == ["lr"]
        assert set(arms_of_units(s, client, units)) == {"1"}
        assert client.get("/v1/endpoints/lr").json()["paused"] is True
        s.project.deployments.resume("lr", actor="test")
        assert refresh(s, client) == ["lr"]
        assert refresh(s, client) == []
        assert set(arms_of_units(s, client, units)) == {"2"}


def test_hot_swap_under_traffic_drops_no_request(served: Callable[..., Served]) -> None:
    s = served("[serving]\nwatch_interval_s = 3600\n")
    s.deploy(DeploymentSpec.canary(s.versions[0].ref, s.versions[1].ref, weight=0.0))
    stop = threading.Event()
    changes: list[int] = []

    def operator(client: TestClient) -> None:
        weights = [0.2, 0.9, 0.5, 0.0, 0.7, 0.3]
        while not stop.is_set():
            weight = weights[len(changes) % len(weights)]
            deployment = s.project.deployments.set_weights(
                "lr", {"challenger": weight}, actor="test"
            )
            refresh(s, client)
            changes.append(deployment.revision)
            stop.wait(0.02)

    with s.client() as client:
        thread = threading.Thread(target=operator, args=(client,))
        thread.start()
        try:
            seen: set[str] = set()
            for i in range(300):
                response = client.post(
                    "/v2/models/lr/infer", json=BODY, headers={"X-Prodml-Unit": f"u{i}"}
                )
                assert response.status_code == 200, response.text
                seen.add(response.json()["model_version"])
        finally:
            stop.set()
            thread.join()
        assert len(changes) >= 5
        assert seen == {"1", "2"}
        for weight, version in ((1.0, "2"), (0.0, "1")):
            s.project.deployments.set_weights("lr", {"challenger": weight}, actor="test")
            refresh(s, client)
            assert set(arms_of_units(s, client, [f"after-{i}" for i in range(50)])) == {version}
    statuses = Counter(r["status"] for r in s.log())
    assert statuses == {"ok": 400}


# -- bandit and feedback ---------------------------------------------------------------
def test_bandit_shifts_traffic_to_the_rewarded_arm(served: Callable[..., Served]) -> None:
    s = served("[serving]\nbandit_sync_s = 0.2\n")
    arms = (Arm("a", s.versions[0].ref, "arm"), Arm("b", s.versions[1].ref, "arm"))
    burn_in = 10
    s.deploy(DeploymentSpec("bandit", arms, bandit=BanditSpec("bernoulli", burn_in, 0.05)))
    served_by: list[str] = []
    with s.client() as client:
        for i in range(160):
            response = client.post("/v2/models/lr/infer", json=v2_body(row(i)))
            assert response.status_code == 200, response.text
            arm = "a" if response.json()["model_version"] == "1" else "b"
            served_by.append(arm)
            feedback = {
                "endpoint": "lr",
                "request_id": response.headers["X-Request-ID"],
                "reward": 1 if arm == "b" else 0,
            }
            answer = client.post("/v1/feedback", json=feedback)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {
                "accepted": 1,
                "dropped": 0,
                "matched": 1,
                "unmatched": 0,
                "by_entity": 0,
                "rewarded": 1,
            }
        unknown = {"endpoint": "lr", "request_id": "never-served", "reward": 1}
        answer = client.post("/v1/feedback", json=unknown)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "accepted": 1,
            "dropped": 0,
            "matched": 0,
            "unmatched": 1,
            "by_entity": 0,
            "rewarded": 0,
            "unmatched_request_ids": ["never-served"],
        }
    late = served_by[-100:]
    assert late.count("b") > 80  # Thompson sampling with a 5% floor per arm
    assert served_by.count("a") >= burn_in

    state = s.project.deployments.bandit_state("lr")
    assert state is not None
    b, a = state["arms"]["b"], state["arms"]["a"]
    assert (b["alpha"], b["beta"], b["pulls"]) == (
        1 + served_by.count("b"),
        1,
        served_by.count("b"),
    )
    assert (a["alpha"], a["beta"], a["pulls"]) == (
        1,
        1 + served_by.count("a"),
        served_by.count("a"),
    )

    log = s.log()
    assert len(log) == len(served_by)
    propensities = [r["propensity"] for r in log]
    assert all(p is not None and 0 < p <= 1 for p in propensities)
    final = [r["propensity"] for r in log[-50:] if r["arm"] == "b"]
    assert np.median(final) > 0.8
    labels = s.log("labels")
    assert len(labels) == len(served_by) + 1
    assert "never-served" in {r["request_id"] for r in labels}


def test_feedback_is_validated_per_item(served: Callable[..., Served]) -> None:
    s = served()
    known = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)  # in the window
    good = [
        {"endpoint": "lr", "request_id": "r-1", "label": 1},
        {"endpoint": "lr", "request_id": "r-2", "label": 0, "time": known.isoformat()},
        {
            "endpoint": "lr",
            "entities": {"customer": 7},
            "event_time": (known - timedelta(days=1)).isoformat(),
            "label": 1,
        },
    ]
    bad = [
        {"request_id": "r-3", "label": 1},
        {"endpoint": "lr", "request_id": "r-4"},
        {"endpoint": "lr", "request_id": "r-5", "label": 1, "time": "yesterday"},
        {"endpoint": "lr", "request_id": "r-6", "reward": []},
        {"endpoint": "lr", "request_id": "r-7", "reward": {"a": 1}},
    ]
    with s.client() as client:
        for item, field in zip(bad, ["endpoint", "label", "time", "reward", "reward"], strict=True):
            response = client.post("/v1/feedback", json=item)
            assert response.status_code == 422, response.text
            assert [d["field"] for d in response.json()["details"]] == [f"items[0].{field}"]
        response = client.post("/v1/feedback", json={"items": [good[0], *bad[:3]]})
        assert response.status_code == 422
        fields = [d["field"] for d in response.json()["details"]]
        assert fields == ["items[1].endpoint", "items[2].label", "items[3].time"]
        assert client.post("/v1/feedback", json={"items": []}).status_code == 422

        response = client.post("/v1/feedback", json={"items": good})
        assert response.status_code == 200, response.text
        assert response.json() == {
            "accepted": 3,
            "dropped": 0,
            "matched": 0,
            "unmatched": 2,
            "by_entity": 1,
            "rewarded": 0,
            "unmatched_request_ids": ["r-1", "r-2"],
        }
    labels = s.log("labels")
    assert len(labels) == 3  # nothing of the rejected batches
    assert sorted(r["request_id"] or "" for r in labels) == ["", "r-1", "r-2"]
    assert {r["label"] for r in labels} == {0, 1}
    explicit = next(r for r in labels if r["request_id"] == "r-2")
    assert explicit["time"] == known


def test_feedback_for_an_unknown_endpoint_is_refused_and_creates_nothing(
    served: Callable[..., Served],
) -> None:
    s = served()
    items = [
        {"endpoint": "lr", "request_id": "r-1", "label": 1},
        {"endpoint": "nope", "request_id": "r-2", "label": 1},
    ]
    with s.client() as client:
        response = client.post("/v1/feedback", json={"items": items})
    assert response.status_code == 404, response.text
    assert [d["field"] for d in response.json()["details"]] == ["items[1].endpoint"]
    assert "'lr'" in response.json()["details"][0]["expected"]
    assert "nope" not in response.text
    assert s.log("labels") == []
    labels_dir = s.project.state_dir / "logs" / "labels"
    assert not (labels_dir / "endpoint=nope").exists()


def test_feedback_labels_must_fit_the_endpoints_task(served: Callable[..., Served]) -> None:
    s = served()
    with s.client() as client:
        for label in ("late", "1", [1]):
            item = {"endpoint": "lr", "request_id": "r-1", "label": label}
            response = client.post("/v1/feedback", json=item)
            assert response.status_code == 422, (label, response.text)
            assert [d["field"] for d in response.json()["details"]] == ["items[0].label"]
        for label in (0, 1, 0.5, True):
            item = {"endpoint": "lr", "request_id": "r-1", "label": label}
            assert client.post("/v1/feedback", json=item).status_code == 200


def test_feedback_counts_matched_request_ids_from_memory_and_from_the_log(
    served: Callable[..., Served],
) -> None:
    s = served()
    with s.client() as client:
        answered = [
            client.post("/v2/models/lr/infer", json=v2_body(row(i))).headers["X-Request-ID"]
            for i in range(3)
        ]
    with s.client() as client:  # a restarted server: nothing in memory, all on disk
        items = [{"endpoint": "lr", "request_id": i, "label": 1} for i in [*answered, "ghost"]]
        response = client.post("/v1/feedback", json={"items": items})
        fresh = client.post("/v2/models/lr/infer", json=v2_body(row(9))).headers["X-Request-ID"]
        again = client.post(
            "/v1/feedback", json={"endpoint": "lr", "request_id": fresh, "label": 0}
        )
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["matched"], data["unmatched"]) == (3, 1)
    assert data["unmatched_request_ids"] == ["ghost"]
    assert again.json()["matched"] == 1  # still in the writer's queue: matched in memory


# -- light models answered on the event loop -------------------------------------------
def test_inline_prediction_answers_like_the_thread_pool(served: Callable[..., Served]) -> None:
    rows = [row(seed) for seed in range(200)]
    answers = {}
    for limit in ("1000", "0"):  # every LR batch is light / inline switched off
        s = served(BULK + f"inline_predict_max_ms = {limit}\n")
        s.deploy(DeploymentSpec.canary(s.versions[0].ref, s.versions[1].ref, weight=0.3))
        with s.client() as client:
            sent = [(v2_body(r), {"X-Prodml-Unit": f"u{i}"}) for i, r in enumerate(rows)]
            responses = send_many(client, s.app, sent)
            table = s.runtime.table("lr")
            assert {state.model.batcher.inline_limit_s for state in table.arms.values()} == {
                float(limit) / 1000
            }
            described = client.get("/v1/endpoints/lr").json()["arms"]
            where = "threads" if limit == "0" else "event_loop"
            assert [arm["runs_on"] for arm in described] == [where, where]
        answers[limit] = [
            (r.json()["model_version"], r.json()["outputs"][0]["data"][0]) for r in responses
        ]
        by_version = {"1": s.scores(0, rows), "2": s.scores(1, rows)}
        for i, (version, score) in enumerate(answers[limit]):
            assert score == pytest.approx(by_version[version][i], rel=1e-9)
    assert [v for v, _ in answers["1000"]] == [v for v, _ in answers["0"]]  # same sticky arms
