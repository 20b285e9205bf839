"""The server's OpenAPI document and schemathesis over it.

The document must validate as OpenAPI 3.1 (``openapi-spec-validator``) with every path,
query and header parameter, every request body (each content type a route reads) and
the bearer-token scheme of the admin routes declared, since schema-driven tools build
their requests from it.

Schemathesis then runs its own engine over **every** operation, as ``schemathesis run``
would, in-process through its ASGI transport: the examples, coverage, fuzzing and
stateful phases with a fixed seed and a bounded number of examples, the admin routes
with an admin token (the ``bearer`` scheme), and half of the generated endpoint names,
versions and V2 tensor names drawn from the real deployment so that requests also
reach the model. It must end with no schema error and no failed check. Every check is
on but ``positive_data_acceptance``: a request the schema allows can still be refused
by design (a tensor the model does not read, text that is not CSV, a deployment spec
naming no arm), which is a 4xx the document lists, not a bug.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from openapi_spec_validator import OpenAPIV31SpecValidator
from schemathesis import engine
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NOT_SET
from schemathesis.engine import Status, events
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from prodml import Project
from prodml.project import serving_app
from servingkit import FEATURES, row, serving_project

TOKEN = "prodml-schema-test-admin-token-0"  # 32 characters
CONFIG = f'[[serving.tokens]]\nname = "admin"\nrole = "admin"\ntoken = "{TOKEN}"\n'

# Every operation of the app; a new route fails test_every_operation_is_covered until
# it is listed here.
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2"),
    ("GET", "/v2/models/{model_name}"),
    ("GET", "/v2/models/{model_name}/ready"),
    ("POST", "/v2/models/{model_name}/infer"),
    ("GET", "/v2/models/{model_name}/versions/{version}"),
    ("GET", "/v2/models/{model_name}/versions/{version}/ready"),
    ("POST", "/v2/models/{model_name}/versions/{version}/infer"),
    ("GET", "/ping"),
    ("GET", "/health"),
    ("GET", "/version"),
    ("POST", "/invocations"),
    ("POST", "/v1/endpoints/{name}/invocations"),
    ("POST", "/v1/endpoints/{name}/predict"),
    ("POST", "/v1/feedback"),
    ("GET", "/v1/endpoints"),
    ("GET", "/v1/endpoints/{name}"),
    ("GET", "/v1/admin/deployments"),
    ("GET", "/v1/admin/deployments/{endpoint}/history"),
    ("PUT", "/v1/admin/deployments/{endpoint}"),
    ("POST", "/v1/admin/deployments/{endpoint}/weights"),
    ("POST", "/v1/admin/deployments/{endpoint}/pause"),
    ("POST", "/v1/admin/deployments/{endpoint}/resume"),
    ("POST", "/v1/admin/deployments/{endpoint}/rollback"),
    ("POST", "/v1/admin/deployments/{endpoint}/restore_previous"),
    ("POST", "/v1/admin/deployments/{endpoint}/promote"),
    ("GET", "/v1/admin/rollouts/{endpoint}"),
    ("GET", "/v1/admin/rollouts/{endpoint}/analysis"),
    ("PUT", "/v1/admin/rollouts/{endpoint}/plan"),
    ("POST", "/v1/admin/rollouts/{endpoint}/promote"),
    ("POST", "/v1/admin/rollouts/{endpoint}/advance"),
    ("POST", "/v1/admin/rollouts/{endpoint}/pause"),
    ("POST", "/v1/admin/rollouts/{endpoint}/resume"),
    ("POST", "/v1/admin/rollouts/{endpoint}/approve"),
    ("POST", "/v1/admin/rollouts/{endpoint}/rollback"),
    ("GET", "/v1/admin/retraining/{endpoint}"),
    ("GET", "/v1/admin/retraining/{endpoint}/history"),
    ("POST", "/v1/admin/retraining/{endpoint}/run"),
    ("POST", "/v1/admin/models/{endpoint}/approve"),
    ("POST", "/v1/admin/models/{endpoint}/reject"),
]
PREDICT = [
    "/v2/models/{model_name}/infer",
    "/v2/models/{model_name}/versions/{version}/infer",
    "/invocations",
    "/v1/endpoints/{name}/invocations",
    "/v1/endpoints/{name}/predict",
]


@dataclass(frozen=True)
class Api:
    schema: schemathesis.BaseSchema
    project: Project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project, _ = serving_project(tmp_path_factory.mktemp("schema") / "project", config=CONFIG)
    yield project
    project.close()


@pytest.fixture
def document(project: Project) -> dict[str, Any]:
    """The OpenAPI document as ``/openapi.json`` serves it (building it starts nothing)."""
    app: FastAPI = serving_app(project)
    return app.openapi()


@pytest.fixture
def api(project: Project) -> Iterator[Api]:
    """A fresh app per test: schemathesis ends every ASGI lifespan it started when a
    test ends, and a closed runtime does not start again."""
    app = serving_app(project)
    try:
        yield Api(schemathesis.openapi.from_asgi("/openapi.json", app), project)
    finally:
        asgi.shutdown_lifespans()  # a no-op when the plugin already did it


def assert_clean_error(response: Any) -> None:
    """An error answer is ``{"error": ...}`` JSON with no traceback in it."""
    if response.status_code < 400:
        return
    assert response.headers["content-type"] == ["application/json"], response.headers
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("error"), str), body
    assert set(body) <= {"error", "details"}, body
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


def headers_for(token: str | None) -> dict[str, str] | None:
    return None if token is None else {"Authorization": f"Bearer {token}"}


# -- the document ---------------------------------------------------------------------


def operations_of(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def declared(operation: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p["in"], p["name"].lower()) for p in operation.get("parameters", [])}


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    errors = [error.message for error in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


def test_every_parameter_and_body_is_declared(document: dict[str, Any]) -> None:
    for method, path, operation in operations_of(document):
        where = f"{method} {path}"
        names = declared(operation)
        for name in re.findall(r"{(\w+)}", path):
            assert ("path", name.lower()) in names, where
        assert all(p["required"] for p in operation.get("parameters", []) if p["in"] == "path")
        if method in ("POST", "PUT"):
            assert operation["requestBody"]["content"], where
        assert "200" in operation["responses"], where
        assert "HTTPValidationError" not in str(operation["responses"]), where
    operations = {(m, p): op for m, p, op in operations_of(document)}
    for path in PREDICT:
        names = declared(operations["POST", path])
        assert {("header", "idempotency-key"), ("header", "x-request-id")} <= names, path
        assert "security" not in operations["POST", path], path  # no token needed here
    for path in PREDICT[:2]:
        infer = operations["POST", path]
        assert ("header", "inference-header-content-length") in declared(infer)
        assert set(infer["requestBody"]["content"]) == {
            "application/json",
            "application/octet-stream",
        }
        assert "application/octet-stream" in infer["responses"]["200"]["content"]
    for path in PREDICT[2:4]:
        content = operations["POST", path]["requestBody"]["content"]
        assert set(content) == {"application/json", "text/csv", "application/vnd.apache.parquet"}
    assert ("query", "endpoint") in declared(operations["POST", "/invocations"])
    assert set(operations["GET", "/metrics"]["responses"]["200"]["content"]) == {"text/plain"}
    assert set(operations["GET", "/version"]["responses"]["200"]["content"]) == {"text/plain"}
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    for (method, path), operation in operations.items():
        if path.startswith("/v1/admin/"):
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_predict_routes_declare_the_token_when_one_is_required(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRODML__SERVING__PREDICT_REQUIRES_TOKEN", "true")
    secured = Project.open(project.root)
    try:
        document = serving_app(secured).openapi()
    finally:
        secured.close()
    operations = {(m, p): op for m, p, op in operations_of(document)}
    for path in PREDICT:
        assert operations["POST", path]["security"] == [{"bearer": []}], path
        assert "401" in operations["POST", path]["responses"], path
    assert "security" not in operations["GET", "/v2/models/{model_name}"]


def test_every_operation_is_covered(api: Api) -> None:
    found = [
        (operation.method.upper(), operation.path)
        for operation in (result.ok() for result in api.schema.get_all_operations())
    ]
    assert sorted(found) == sorted(OPERATIONS)


# -- schemathesis' own run ----------------------------------------------------------------

SEED = 20260611
RUN = f"""
seed = {SEED}

[cache]
enabled = false

[generation]
max-examples = 20
deterministic = true
database = "none"

[checks]
positive_data_acceptance.enabled = false

[auth.openapi.bearer]
bearer = "{TOKEN}"

[dictionaries.endpoints]
values = ["lr"]
[dictionaries.versions]
values = ["1"]
[dictionaries.inputs]
values = {FEATURES!r}

[parameters]
"path.model_name" = {{ dictionary = "endpoints", probability = 0.5 }}
"path.name" = {{ dictionary = "endpoints", probability = 0.5 }}
"path.endpoint" = {{ dictionary = "endpoints", probability = 0.5 }}
"query.endpoint" = {{ dictionary = "endpoints", probability = 0.5 }}
"path.version" = {{ dictionary = "versions", probability = 0.5 }}
"body.inputs[*].name" = {{ dictionary = "inputs", probability = 0.5 }}
"""


@dataclass
class Run:
    """What one schemathesis run found: schema errors, failed checks (with the request
    that shows each), and the answers each operation got."""

    errors: list[str] = field(default_factory=list)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def record(self, recorder: Any) -> None:
        for case_id, checks in recorder.checks.items():
            interaction = recorder.interactions.get(case_id)
            response = None if interaction is None else interaction.response
            for check in checks:
                if check.status == Status.FAILURE and check.failure_info is not None:
                    failure = check.failure_info.failure
                    key = (recorder.label, f"{check.name}: {failure.title}")
                    shown = f"{failure.message}\n{check.failure_info.code_sample}"
                    if response is not None:
                        shown += f"\n-> {response.status_code} {response.content[:300]!r}"
                    self.failures.setdefault(key, shown)
        counts = self.statuses.setdefault(recorder.label, Counter())
        for interaction in recorder.interactions.values():
            if interaction.response is not None:
                counts[interaction.response.status_code] += 1


def run_schemathesis(app: FastAPI) -> Run:
    config = SchemathesisConfig.from_str(RUN)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    run = Run()
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.NonFatalError):
            run.errors.append(f"{event.label}: {event.value}")
        elif isinstance(event, events.FatalError):
            run.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.ScenarioFinished):
            run.record(event.recorder)
    return run


def test_schemathesis_finds_no_schema_error_and_no_failed_check(tmp_path: Path) -> None:
    # A project of its own: the admin operations change its deployment.
    project, _ = serving_project(tmp_path / "project", config=CONFIG)
    try:
        run = run_schemathesis(serving_app(project))
    finally:
        asgi.shutdown_lifespans()
        project.close()
    assert run.errors == []
    assert run.failures == {}, "\n\n".join(f"{k}\n{v}" for k, v in run.failures.items())
    tested = {label for label in run.statuses if " /" in label}
    assert {f"{method} {path}" for method, path in OPERATIONS} <= tested
    # Requests reached the real endpoint, past the routing, on every route that predicts.
    for path in PREDICT:
        reached = run.statuses[f"POST {path}"].keys() - {404, 405}
        assert reached, (path, run.statuses[f"POST {path}"])


# -- explicit cases against the real model -----------------------------------------------


@dataclass(frozen=True)
class Example:
    method: str
    path: str
    status: int
    params: dict[str, str] = field(default_factory=dict)
    body: Any = NOT_SET
    media_type: str | None = None
    token: str | None = None


def v2_body(**overrides: Any) -> dict[str, Any]:
    values = row(1)
    inputs = [{"name": n, "shape": [1], "datatype": "FP64", "data": [values[n]]} for n in FEATURES]
    return {"inputs": inputs, **overrides}


def records(**overrides: float) -> dict[str, Any]:
    return {"dataframe_records": [{**row(2), **overrides}]}


JSON = "application/json"
INFER = "/v2/models/{model_name}/infer"
LR = {"model_name": "lr"}
GRID = {"name": "x", "shape": [2, 20], "datatype": "FP64", "data": [[0.5] * 20, [-1e300] * 20]}
HUGE = {**GRID, "shape": [1, 20], "data": [1e308, -1e308] * 10}  # inf - inf inside the model
ADMIN = "/v1/admin/deployments"
# Floating-point warnings inside the model are not errors in production; the process-wide
# filterwarnings = error would turn them into model failures here.
FLOAT_WARNINGS = pytest.mark.filterwarnings("ignore::RuntimeWarning")
EXAMPLES = [
    pytest.param(Example("POST", INFER, 200, LR, v2_body()), id="v2-infer"),
    pytest.param(
        Example(
            "POST",
            "/v2/models/{model_name}/versions/{version}/infer",
            200,
            {**LR, "version": "1"},
            v2_body(id="x1", outputs=[{"name": "predict"}]),
        ),
        id="v2-version-infer",
    ),
    pytest.param(Example("POST", INFER, 200, LR, {"inputs": [GRID]}), id="v2-2d-tensor"),
    pytest.param(
        Example("POST", INFER, 200, LR, v2_body(parameters={"binary_data_output": True})),
        id="v2-binary-output",
    ),
    pytest.param(
        Example("POST", INFER, 422, LR, v2_body(inputs=v2_body()["inputs"][1:])),
        id="v2-missing-input",
    ),
    pytest.param(
        Example(
            "POST", INFER, 422, LR, {"inputs": [{**GRID, "datatype": "BYTES", "data": ["a"] * 40}]}
        ),
        id="v2-wrong-datatype",
    ),
    pytest.param(
        Example("POST", INFER, 400, LR, v2_body(outputs=[{"name": "nope"}])), id="v2-unknown-output"
    ),
    pytest.param(
        Example("GET", "/v2/models/{model_name}/versions/{version}", 404, {**LR, "version": "9"}),
        id="v2-unknown-version",
    ),
    pytest.param(
        Example("POST", INFER, 200, LR, {"inputs": [HUGE]}),  # served, with soft warnings
        id="v2-overflow",
        marks=FLOAT_WARNINGS,
    ),
    pytest.param(
        Example("POST", "/invocations", 200, body=records(), media_type=JSON), id="invocations"
    ),
    pytest.param(
        Example("POST", "/invocations", 200, body=records(f0=1e308, f1=-1e308), media_type=JSON),
        id="invocations-overflow-to-inf",
        marks=FLOAT_WARNINGS,
    ),
    pytest.param(
        Example("POST", "/v1/endpoints/{name}/invocations", 200, {"name": "lr"}, records(), JSON),
        id="invocations-named",
    ),
    pytest.param(
        Example("POST", "/invocations", 422, body="f0,f1\n1,2\n", media_type="text/csv"),
        id="invocations-csv-missing-columns",
    ),
    pytest.param(
        Example(
            "POST", "/v1/endpoints/{name}/predict", 409, {"name": "lr"}, {"entities": {"id": 1}}
        ),
        id="native-without-feature-service",
    ),
    pytest.param(
        Example(
            "POST", "/v1/feedback", 200, body={"endpoint": "lr", "request_id": "x1", "label": 1}
        ),
        id="feedback",
    ),
    pytest.param(
        Example("POST", "/v1/feedback", 422, body={"endpoint": "lr", "label": 1, "time": "soon"}),
        id="feedback-bad-item",
    ),
    pytest.param(Example("GET", "/v1/endpoints/{name}", 200, {"name": "lr"}), id="endpoint"),
    pytest.param(Example("GET", ADMIN, 401), id="admin-list-anonymous"),
    pytest.param(Example("GET", ADMIN, 401, token="x" * 32), id="admin-list-bad-token"),
    pytest.param(Example("GET", ADMIN, 200, token=TOKEN), id="admin-list"),
    pytest.param(
        Example("GET", ADMIN + "/{endpoint}/history", 200, {"endpoint": "lr"}, token=TOKEN),
        id="admin-history",
    ),
    pytest.param(
        Example("POST", ADMIN + "/{endpoint}/pause", 401, {"endpoint": "lr"}),
        id="admin-pause-anonymous",
    ),
    pytest.param(
        Example("POST", ADMIN + "/{endpoint}/pause", 404, {"endpoint": "nope"}, token=TOKEN),
        id="admin-pause-unknown",
    ),
    pytest.param(
        Example(
            "POST",
            ADMIN + "/{endpoint}/weights",
            422,
            {"endpoint": "lr"},
            {"weights": {"champion": "heavy"}},
            token=TOKEN,
        ),
        id="admin-weights-not-numbers",
    ),
    pytest.param(
        Example("PUT", ADMIN + "/{endpoint}", 422, {"endpoint": "lr"}, {"spec": {}}, token=TOKEN),
        id="admin-deploy-empty-spec",
    ),
]


@pytest.mark.parametrize("example", EXAMPLES)
def test_explicit_example(api: Api, example: Example) -> None:
    operation = api.schema[example.path][example.method]
    case = operation.Case(
        path_parameters=example.params or None,
        headers=headers_for(example.token),
        body=example.body,
        media_type=example.media_type or (None if example.body is NOT_SET else JSON),
    )
    response = case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])
    assert response.status_code == example.status, response.text
    assert_clean_error(response)
