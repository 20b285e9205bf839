"""Errors as a client and an operator see them: client input never causes a 500; a user
feature function's failure is a 422 (the input's fault) or a 500, each with a request id;
a 500 leaves the keep-alive connection usable; every response is counted in /metrics by
endpoint, route, status and error type; no error body or log line at INFO or above
repeats a value the client sent; the bearer scheme is case-insensitive; the GET routes
declare their 404s."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from prodml import Project
from prodml.core import ServingError, SimulatedClock
from prodml.demo import flights_features
from prodml.features import FeatureFunctionError
from prodml.project import serving_app
from prodml.registry import DeploymentSpec
from servingkit import FEATURES, TOKEN, free_port, row, serving_project, tokens_toml
from trainkit import END, make_served_project

VIEWER, ADMIN = TOKEN["viewer"], TOKEN["admin"]
CONFIG = """
[serving]
watch_interval_s = 3600
max_request_bytes = 65536
""" + tokens_toml("viewer", "admin")
CARD = "4111111111111111"
WORD = "zqxsentinelzqx"
#: how 1e30 prints: JSON, Python float, Python int, an Arrow cast's message
HUGE = ("1e+30", "1e30", "1E+30", "1000000000000000019884624838656", "99999999999999995")
SENTINELS = (CARD, WORD, *HUGE)


def leaks(text: str) -> list[str]:
    return [s for s in SENTINELS if s in text]


def server_log(caplog: pytest.LogCaptureFixture) -> str:
    """What prodml logged at INFO or above (the test client's own request log aside)."""
    records = caplog.records
    return "\n".join(
        r.getMessage() for r in records if r.levelno >= logging.INFO and r.name.startswith("prodml")
    )


# -- projects -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lr_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project, _ = serving_project(tmp_path_factory.mktemp("errors") / "p", config=CONFIG)
    yield project
    project.close()


@pytest.fixture
def lr(lr_project: Project) -> Iterator[TestClient]:
    with TestClient(serving_app(lr_project), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("errors-native") / "p"
    make_served_project(root, {"flight_delay": DeploymentSpec.single("flight_delay:1")})
    return root


@pytest.fixture
def native(native_dir: Path) -> Iterator[TestClient]:
    project = Project.open(native_dir, clock=SimulatedClock(END))
    with TestClient(serving_app(project), raise_server_exceptions=False) as client:
        yield client
    project.close()


def on_demand(client: TestClient) -> Any:
    table = client.app.state.server.runtime.table("flight_delay")  # type: ignore[attr-defined]
    return next(f for f in table.service.on_demand if f.name == "dep_hour")


def predict_native(client: TestClient, request_data: Any, **extra: Any) -> httpx.Response:
    body = {"entities": {"origin": "EWR", "tailnum": "N1"}, "request_data": request_data}
    return client.post("/v1/endpoints/flight_delay/predict", json={**body, **extra})


# -- 8: no 500 from client input -------------------------------------------------------
@pytest.mark.parametrize("value", ["not a time", CARD, True, [[1]], {"a": 1}, 1e30, 17.5])
def test_a_mistyped_on_demand_input_is_a_422_naming_the_field(
    native: TestClient, value: Any
) -> None:
    response = predict_native(native, {"sched_dep_time": value})
    assert response.status_code == 422, response.text
    assert "sched_dep_time" in response.text
    assert leaks(response.text) == []


@pytest.mark.parametrize(
    ("feature", "column"),
    [("dep_weekday", "sched_dep"), ("dep_month", "sched_dep"), ("dep_hour", "sched_dep_time")],
)
def test_the_demo_features_fail_on_bad_input_without_repeating_it(
    feature: str, column: str
) -> None:
    """The flights demo's on-demand features on values of the wrong kind: an input fault
    whose message names the feature, the exception type and the input dtypes only."""
    odf = getattr(flights_features, feature)
    for values in (["not a time", CARD], [WORD, None]):
        with pytest.raises(FeatureFunctionError) as info:
            odf.compute({column: np.array(values, dtype=object)})
        assert info.value.input_fault
        assert str(info.value).startswith(f"on-demand feature {feature!r}: its function raised ")
        assert leaks(str(info.value)) == []
        assert "not a time" not in str(info.value)


def test_a_feature_function_failing_on_the_input_is_a_422_with_a_request_id(
    native: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(columns: Any) -> Any:
        raise ValueError(f"cannot read {CARD} {WORD}")

    monkeypatch.setattr(on_demand(native), "func", fails)
    response = predict_native(native, {"sched_dep_time": 1730}, id="req-17")
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"].startswith("on-demand feature 'dep_hour': its function raised ValueError")
    assert body["request_id"] == response.headers["x-request-id"]
    assert leaks(response.text) == []


def test_any_other_feature_function_failure_is_a_500_with_a_request_id(
    native: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fails(columns: Any) -> Any:
        raise ZeroDivisionError(f"{WORD} {CARD}")

    monkeypatch.setattr(on_demand(native), "func", fails)
    with caplog.at_level(logging.INFO):
        response = native.post(
            "/v1/endpoints/flight_delay/predict",
            json={"entities": {"origin": "EWR", "tailnum": "N1"},
                  "request_data": {"sched_dep_time": 1730}},
            headers={"X-Request-ID": "trace-me-42"},
        )  # fmt: skip
    assert response.status_code == 500, response.text
    assert response.json() == {
        "error": "internal error; see the server log for request trace-me-42",
        "request_id": "trace-me-42",
    }
    logged = server_log(caplog)
    assert "trace-me-42" in logged
    assert "ZeroDivisionError" in logged
    assert leaks(logged) == []
    assert "Traceback" not in response.text


class InProcessServer:
    """The app under uvicorn on a free loopback port, in a thread of this process (so a
    test can break a part of it)."""

    def __init__(self, project: Project) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            serving_app(project), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.app = config.app
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InProcessServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise TimeoutError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def runtime(self) -> Any:
        return self.app.state.server.runtime  # type: ignore[union-attr]


def test_a_500_leaves_the_keep_alive_connection_usable(
    lr_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    with InProcessServer(lr_project) as server:
        runtime = server.runtime
        original = runtime.predict
        calls = []

        async def predict(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError(f"broken {CARD}")
            return await original(*args, **kwargs)

        monkeypatch.setattr(runtime, "predict", predict)
        body = {"dataframe_records": [row(1)]}
        with httpx.Client(base_url=server.url, timeout=30) as client:
            first = client.post("/invocations", json=body)
            assert first.status_code == 500, first.text
            assert first.headers.get("connection", "").lower() != "close"
            assert CARD not in first.text
            pool = client._transport._pool  # type: ignore[attr-defined]
            connection = pool.connections[0]
            second = client.post("/invocations", json=body)
            assert second.status_code == 200, second.text
            assert pool.connections == [connection]  # the same connection, still open
            assert connection.info()  # and it is alive


# -- 9: every response counted ----------------------------------------------------------
def responses(client: TestClient) -> dict[tuple[str, str, str, str], float]:
    text = client.get("/metrics").text
    found: dict[tuple[str, str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "prodml_responses":
            continue
        for sample in family.samples:
            if sample.name == "prodml_responses_total":
                labels = sample.labels
                key = (labels["endpoint"], labels["route"], labels["code"], labels["error"])
                found[key] = sample.value
    return found


def test_every_response_is_counted_by_endpoint_route_code_and_error(
    lr: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    v2 = "/v2/models/{model_name}/infer"
    v2_body = {
        "inputs": [
            {"name": n, "shape": [1], "datatype": "FP64", "data": [v]} for n, v in row(2).items()
        ]
    }
    viewer = {"Authorization": f"Bearer {VIEWER}"}
    spec = {"spec": DeploymentSpec.single("lr:1").to_dict()}
    runtime = lr.app.state.server.runtime  # type: ignore[attr-defined]
    original = runtime.predict
    failures: list[BaseException] = []

    async def predict(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await original(*args, **kwargs)

    monkeypatch.setattr(runtime, "predict", predict)
    sent = [
        (lr.post("/v2/models/lr/infer", json=v2_body), ("lr", v2, "200", "")),
        (lr.post("/v2/models/lr/infer", content=b"{"), ("lr", v2, "400", "request_invalid")),
        (lr.post("/v2/models/nope/infer", json=v2_body), ("unknown", v2, "404", "not_found")),
        (lr.get("/no/such/route"), ("unknown", "unmatched", "404", "route")),
        (
            lr.post("/v2/models/lr/infer", content=b" " * 70_000),
            ("lr", v2, "413", "too_large"),
        ),
        (
            lr.post("/invocations", content=b"f0\n1", headers={"Content-Type": "text/plain"}),
            ("lr", "/invocations", "415", "request_invalid"),
        ),
        (
            lr.post("/invocations", json={"dataframe_records": [{"f0": "x"}]}),
            ("lr", "/invocations", "422", "request_invalid"),
        ),
        (
            lr.get("/v1/admin/deployments"),
            ("unknown", "/v1/admin/deployments", "401", "unauthorized"),
        ),
        (
            lr.put("/v1/admin/deployments/lr", json=spec, headers=viewer),
            ("lr", "/v1/admin/deployments/{endpoint}", "403", "forbidden"),
        ),
    ]
    failures.append(RuntimeError("boom"))
    sent.append((lr.post("/v2/models/lr/infer", json=v2_body), ("lr", v2, "500", "internal")))
    failures.append(ServingError("every arm failed"))
    sent.append((lr.post("/v2/models/lr/infer", json=v2_body), ("lr", v2, "503", "unavailable")))
    for response, (_, _, code, _) in sent:
        assert str(response.status_code) == code, response.text
    responses(lr)
    counted = responses(lr)  # the first scrape counted too
    for _, key in sent:
        assert counted.get(key, 0) >= 1, (key, counted)
    assert counted[("unknown", "/metrics", "200", "")] >= 1
    assert {endpoint for endpoint, *_ in counted} <= {"lr", "unknown"}


# -- 10: no client value in an error or a log line --------------------------------------
def _v2(data: Any, datatype: str = "FP64", **tensor: Any) -> dict[str, Any]:
    inputs = [{"name": n, "shape": [1], "datatype": "FP64", "data": [0.5]} for n in FEATURES[1:]]
    first = {"name": "f0", "shape": [1], "datatype": datatype, "data": [data], **tensor}
    return {"inputs": [first, *inputs]}


def _records(value: Any) -> dict[str, Any]:
    return {"dataframe_records": [{**row(3), "f0": value}]}


JSON_PROBES: list[tuple[str, Any]] = [
    ("/v2/models/lr/infer", _v2(CARD)),
    ("/v2/models/lr/infer", _v2(1e30, "INT64")),
    ("/v2/models/lr/infer", _v2(CARD, "INT64")),
    ("/v2/models/lr/infer", _v2(WORD, "BOOL")),
    ("/v2/models/lr/infer", _v2(0.5, WORD)),
    ("/v2/models/lr/infer", _v2(0.5, shape=[CARD])),
    ("/v2/models/lr/infer", {**_v2(0.5), "id": [CARD]}),
    ("/v2/models/lr/infer", {**_v2(0.5), "parameters": WORD}),
    ("/v2/models/lr/infer", {**_v2(0.5), "outputs": [{"name": WORD}]}),
    ("/v2/models/lr/infer", {"inputs": WORD}),
    ("/v2/models/lr/versions/" + CARD + "/infer", _v2(0.5)),
    ("/invocations", _records(CARD)),
    ("/invocations", _records(WORD)),
    ("/invocations", {"dataframe_split": {"columns": FEATURES, "data": [[CARD] * 20]}}),
    ("/invocations", {"instances": [[1e30, WORD]]}),
    ("/invocations", {"inputs": {"f0": [WORD]}}),
    ("/invocations", {"dataframe_records": {"f0": CARD}}),
    ("/invocations", {WORD: 1}),
    ("/invocations", {CARD: [1], "instances": 2}),
    ("/invocations?endpoint=" + CARD, _records(0.5)),
    ("/v1/endpoints/" + WORD + "/invocations", _records(0.5)),
    ("/v1/endpoints/" + WORD + "/predict", {"entities": {"a": CARD}}),
    ("/v1/feedback", {"endpoint": "lr", "request_id": CARD, "label": WORD}),
    ("/v1/feedback", {"endpoint": WORD, "request_id": "r", "label": 1e30}),
    ("/v1/feedback", {"items": [{"endpoint": "lr", "time": CARD, "label": 1, "x": WORD}]}),
]
CSV_PROBES = [
    f"{','.join(FEATURES)}\n{CARD}x,{','.join(['0.5'] * 19)}\n",
    f"{CARD},{WORD}\n1,2\n",  # no header: the first row is taken as the names
    f'{",".join(FEATURES)}\n"{WORD},1\n',
    f"{','.join(FEATURES)}\n1e30,{','.join(['x'] * 19)}\n",
]


@pytest.mark.parametrize(("path", "body"), JSON_PROBES)
def test_json_errors_never_repeat_a_client_value(
    lr: TestClient, caplog: pytest.LogCaptureFixture, path: str, body: Any
) -> None:
    with caplog.at_level(logging.INFO):
        response = lr.post(path, json=body)
    assert response.status_code >= 400, response.text
    assert leaks(response.text) == []
    assert leaks(server_log(caplog)) == []


@pytest.mark.parametrize("text", CSV_PROBES)
def test_csv_errors_never_repeat_a_client_value(
    lr: TestClient, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    with caplog.at_level(logging.INFO):
        response = lr.post("/invocations", content=text, headers={"Content-Type": "text/csv"})
    assert response.status_code >= 400, response.text
    assert leaks(response.text) == []
    assert leaks(server_log(caplog)) == []


NATIVE_PROBES: list[dict[str, Any]] = [
    {"entities": {"origin": CARD, "tailnum": 1e30}, "request_data": {"sched_dep_time": 1}},
    {"entities": {"origin": "EWR", "tailnum": "N1"}, "request_data": {"sched_dep_time": CARD}},
    {"entities": {"origin": "EWR", "tailnum": "N1"}, "request_data": {"sched_dep_time": 1e30}},
    {"entities": {"origin": "EWR", "tailnum": "N1"}, "request_data": {WORD: 1, CARD: 2}},
    {"entities": {"origin": "EWR", "tailnum": "N1", WORD: CARD}},
    {"entities": {"origin": "EWR", "tailnum": "N1"}, WORD: CARD},
    {"entities": {"origin": "EWR", "tailnum": "N1"}, "unit": [CARD]},
    {"entities": [{"origin": "EWR"}, WORD]},
    {"entities": {"origin": ["EWR"], "tailnum": [CARD, WORD]}},
]


@pytest.mark.parametrize("body", NATIVE_PROBES)
def test_native_errors_never_repeat_a_client_value(
    native: TestClient, caplog: pytest.LogCaptureFixture, body: dict[str, Any]
) -> None:
    with caplog.at_level(logging.INFO):
        response = native.post("/v1/endpoints/flight_delay/predict", json=body)
    assert response.status_code >= 400, response.text
    assert leaks(response.text) == []
    assert leaks(server_log(caplog)) == []


def test_client_field_names_are_not_repeated(lr: TestClient) -> None:
    """A name the client made up is client input too (a CSV without a header row makes
    its first row the names): errors count such names and list the expected ones."""
    response = lr.post("/invocations", json={"dataframe_records": [{**row(0), CARD: 1}]})
    assert response.status_code == 422, response.text
    assert CARD not in response.text
    problem = response.json()["details"][0]
    assert problem["field"] == "request"
    assert problem["problem"] == "has 1 name not among the model's inputs"
    assert problem["expected"].startswith("only the model's inputs: f0, f1, ")


# -- 14: the bearer scheme, and 404s in the OpenAPI schema -------------------------------
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(lr: TestClient, scheme: str) -> None:
    response = lr.get("/v1/admin/deployments", headers={"Authorization": f"{scheme} {VIEWER}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("header", ["Basic " + VIEWER, VIEWER, "Bearer", "Bearer  ", "Bearer x"])
def test_other_authorizations_are_refused(lr: TestClient, header: str) -> None:
    assert lr.get("/v1/admin/deployments", headers={"Authorization": header}).status_code == 401


def test_get_routes_that_can_404_declare_it(lr: TestClient) -> None:
    schema = lr.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if get is None or "{" not in path:
            continue
        assert "404" in get["responses"], path
        assert get["responses"]["404"]["content"]["application/json"]["schema"], path
    probes = {
        "/v2/models/nope": 404,
        "/v2/models/nope/ready": 404,
        "/v2/models/lr/versions/99": 404,
        "/v1/endpoints/nope": 404,
    }
    for path, status in probes.items():
        assert lr.get(path).status_code == status, path
    admin = {"Authorization": f"Bearer {VIEWER}"}
    assert lr.get("/v1/admin/deployments/nope/history", headers=admin).status_code == 404
