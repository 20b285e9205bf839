"""One week of the flights demo served by a real ``prodml serve`` over HTTP: the demo
loop's in-process path (route, answer, log, label, analyse) checked out of process.

A copy of the built demo (its replay ends on 10 May 2013) is deployed as a 50 % canary
of its first two versions. Each flight of 10–16 May is one Open Inference Protocol V2
request carrying its point-in-time features (the offline join the loop serves, nothing
from after departure), with its id as request id and routing unit. Every answer must
come from the arm :func:`~prodml.serving.routed_arms` picks for that id, with the score
the registered model gives in process; each labelled flight's label goes back through
``POST /v1/feedback``, and after a graceful stop the logs and the experiment analysis
hold exactly what was sent."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from prodml import Project
from prodml.demo._loop import served_flights
from prodml.registry import DeploymentSpec
from prodml.serving import routed_arms
from servingkit import PATIENT_MS, ServerProcess

pytestmark = pytest.mark.slow

ENDPOINT = "flight_delay"
CHAMPION, CHALLENGER = "flight_delay:1", "flight_delay:2"
WEEK_START = datetime(2013, 5, 10, tzinfo=UTC)  # where the built demo's replay stopped
WEEK_END = datetime(2013, 5, 17, tzinfo=UTC)
DEADLINE_S = 120.0  # the longest any wait on the server may take, however busy the machine
CLIENTS = 32  # requests in flight at once: the server micro-batches their model calls
FEEDBACK_ITEMS = 1000  # [serving] feedback_max_items


@dataclass(frozen=True)
class Week:
    """The flights departing in the week, in departure order: their request ids, labels
    (None: cancelled or diverted), and model inputs as the demo loop builds them."""

    ids: list[str]
    late: list[bool | None]
    table: pa.Table  # the point-in-time training set rows
    features: pd.DataFrame


def week_of_flights(project: Project) -> Week:
    flights, training_set = served_flights(project, WEEK_START, WEEK_END)
    table = training_set.table
    assert table.num_rows == flights.num_rows
    ids = [f"http-{i}" for i in table["flight_id"].to_pylist()]
    return Week(ids, table["late"].to_pylist(), table, table.to_pandas())


def in_process_scores(project: Project, week: Week, ref: str) -> np.ndarray:
    """``ref``'s scores of the week as the demo loop computes them in process."""
    model = project.registry.load(ref)
    out = np.asarray(model.predict(week.features[list(model.signature.columns)]))
    return np.asarray(out[:, -1] if out.ndim == 2 else out, dtype=np.float64)


def v2_bodies(week: Week, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One V2 infer body per flight, its request id the flight's: each input the
    server's model metadata names, with the flight's value (null for a missing or NaN
    one: JSON has no NaN)."""
    columns = {
        spec["name"]: [
            None if isinstance(v, float) and math.isnan(v) else v
            for v in week.table[spec["name"]].to_pylist()
        ]
        for spec in inputs
    }

    def tensor(spec: dict[str, Any], row: int) -> dict[str, Any]:
        name = spec["name"]
        return {
            "name": name,
            "shape": [1],
            "datatype": spec["datatype"],
            "data": [columns[name][row]],
        }

    return [
        {"id": request_id, "inputs": [tensor(spec, i) for spec in inputs]}
        for i, request_id in enumerate(week.ids)
    ]


def replay(client: httpx.Client, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Each body as one V2 request routed by its id, :data:`CLIENTS` at a time."""

    def predict(body: dict[str, Any]) -> httpx.Response:
        headers = {"X-Prodml-Unit": body["id"]}
        return client.post(f"/v2/models/{ENDPOINT}/infer", json=body, headers=headers)

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(predict, bodies))


def send_labels(client: httpx.Client, week: Week, labelled: list[int]) -> list[dict[str, Any]]:
    """The labels of the ``labelled`` flights, by request id, in feedback requests of at
    most :data:`FEEDBACK_ITEMS` items; each request's counts."""
    counts = []
    for start in range(0, len(labelled), FEEDBACK_ITEMS):
        items = [
            {"endpoint": ENDPOINT, "request_id": week.ids[i], "label": week.late[i]}
            for i in labelled[start : start + FEEDBACK_ITEMS]
        ]
        response = client.post("/v1/feedback", json={"items": items})
        assert response.status_code == 200, response.text
        counts.append(response.json())
    return counts


def test_a_week_replayed_through_a_served_canary_logs_and_analyses_like_the_loop(
    demo: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    source, _ = demo
    root = tmp_path / "flights"
    shutil.copytree(source, root)

    with Project.open(root) as project:
        versions = {v.ref for v in project.registry.versions(ENDPOINT)}
        assert {CHAMPION, CHALLENGER} <= versions, versions
        deployed = project.deployments.deploy(
            ENDPOINT,
            DeploymentSpec.canary(CHAMPION, CHALLENGER, weight=0.5, timeout_ms=PATIENT_MS),
            actor="test",
        )
        spec = deployed.spec
        week = week_of_flights(project)
        expected = {ref: in_process_scores(project, week, ref) for ref in (CHAMPION, CHALLENGER)}
        signatures = {ref: project.registry.get(ref).signature for ref in expected}
    assert signatures[CHAMPION] == signatures[CHALLENGER]  # one V2 body fits both arms
    arms, shadowed = routed_arms(spec, ENDPOINT, week.ids)
    assert not any(shadowed)
    models = {arm.name: arm.model for arm in spec.arms}
    routed = Counter(arms)
    assert min(routed.values()) > len(week.ids) / 3, routed  # routing matters
    labelled = [i for i, late in enumerate(week.late) if late is not None]

    started = datetime.now(UTC)
    server = ServerProcess(root)
    try:
        server.wait_ready(timeout=DEADLINE_S)
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        with httpx.Client(base_url=server.url, timeout=DEADLINE_S, limits=limits) as client:
            metadata = client.get(f"/v2/models/{ENDPOINT}")
            assert metadata.status_code == 200, metadata.text
            answers = replay(client, v2_bodies(week, metadata.json()["inputs"]))
            failed = Counter(r.status_code for r in answers if r.status_code != 200)
            assert not failed, (failed, next(r.text for r in answers if r.status_code != 200))
            for i, response in enumerate(answers):
                answer = response.json()
                assert answer["id"] == week.ids[i]
                model = f"{answer['model_name']}:{answer['model_version']}"
                assert model == models[arms[i]], (week.ids[i], arms[i], model)
                [output] = answer["outputs"]
                assert output["data"][0] == pytest.approx(expected[model][i], rel=0, abs=1e-12)

            counts = send_labels(client, week, labelled)
        assert sum(c["accepted"] for c in counts) == len(labelled)
        assert sum(c["matched"] for c in counts) == len(labelled)
        assert not any(c["dropped"] or c["unmatched"] for c in counts), counts
    finally:
        code = server.stop(timeout=DEADLINE_S)
    assert code == 0, b"".join(server.output).decode(errors="replace")

    with Project.open(root) as project:
        columns = ["request_id", "unit", "arm", "model_version", "status", "shadow", "output"]
        logged = project.logs.predictions.read(endpoint=ENDPOINT, start=started, columns=columns)
        labels = project.logs.labels.read(
            endpoint=ENDPOINT, start=started, columns=["request_id", "label"]
        )
        analysis = project.experiments.analyze(ENDPOINT, start=started, champion="champion")
    by_id = {r["request_id"]: r for r in logged.to_pylist()}
    assert len(by_id) == logged.num_rows == len(week.ids)  # one record per request
    assert sorted(by_id) == sorted(week.ids)
    for i, request_id in enumerate(week.ids):
        record = by_id[request_id]
        assert (record["unit"], record["arm"], record["model_version"]) == (
            request_id, arms[i], models[arms[i]],
        )  # fmt: skip
        assert (record["status"], record["shadow"]) == ("ok", False), record
        assert record["output"] == pytest.approx(
            expected[record["model_version"]][i], rel=0, abs=1e-12
        )
    sent_labels = sorted((week.ids[i], float(bool(week.late[i]))) for i in labelled)
    logged_labels = zip(labels["request_id"].to_pylist(), labels["label"].to_pylist(), strict=True)
    assert sorted((r, float(label)) for r, label in logged_labels) == sent_labels
    sent = Counter(arms[i] for i in labelled)
    for name in ("champion", "challenger"):
        arm = analysis.arm(name)
        assert arm.model_versions == (models[name],)
        assert (arm.records, arm.labelled, arm.errors) == (routed[name], sent[name], 0)
