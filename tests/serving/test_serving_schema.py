"""Schemathesis over the server's own OpenAPI document: no request generated from it —
fitting the schema or not, for made-up endpoints or the real ``lr``, with or without the
admin token — gets a 5xx, and every documented response matches its schema.

The cases come from each operation's ``as_strategy()`` driven by Hypothesis directly
(derandomized, bounded): schemathesis' lazy ``from_fixture`` loader does not run under
pytest 9.2 (it sets ``request.node._nodeid``, which pytest no longer has), and a schema
built at import time would need a project at collection. The app runs in-process
through schemathesis' ASGI transport, a fresh one per test: schemathesis' pytest plugin
ends every ASGI lifespan it started when a test ends.

Checks: ``not_a_server_error`` everywhere and ``response_schema_conformance`` (every
documented error is ``{"error": str, "details"?: list}``) everywhere but ``/ping`` and
``/health``, which answer ``"\n"`` as ``application/json`` exactly as MLflow's scoring
server does. ``status_code_conformance`` and ``content_type_conformance`` are left out:
the document lists only 200 for the GET routes (which also answer 404 for an unknown
model or endpoint) and ``application/json`` for ``/metrics`` and ``/version`` (plain
text) — correct answers that the document does not describe.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from prodml import Project
from prodml.project import serving_app
from servingkit import FEATURES, row, serving_project

TOKEN = "prodml-schema-test-admin-token-0"  # 32 characters
CONFIG = f'[[serving.tokens]]\nname = "admin"\nrole = "admin"\ntoken = "{TOKEN}"\n'
NOT_JSON = frozenset({"/ping", "/health"})  # MLflow's "\n" under application/json
FUZZ = settings(
    max_examples=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

# Every operation of the app; a new route fails test_every_operation_is_covered until
# it is listed here (and so fuzzed).
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
    ("POST", "/v1/admin/deployments/{endpoint}/promote"),
]
# Path values of the real deployment; admin routes that change it are never pinned to it
# (a generated pause or rollback of ``lr`` would change what the other cases see).
REAL = {"model_name": "lr", "version": "1", "name": "lr", "endpoint": "lr"}


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
def api(project: Project) -> Iterator[Api]:
    """A fresh app per test: schemathesis' pytest plugin ends every ASGI lifespan it
    started when a test ends, and a closed runtime does not start again."""
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


def pinned(method: str, path: str) -> dict[str, str] | None:
    names = [name for name in REAL if "{" + name + "}" in path]
    if not names or (path.startswith("/v1/admin/") and method != "GET"):
        return None
    return {name: REAL[name] for name in names}


def test_every_operation_is_covered(api: Api) -> None:
    found = [
        (operation.method.upper(), operation.path)
        for operation in (result.ok() for result in api.schema.get_all_operations())
    ]
    assert sorted(found) == sorted(OPERATIONS)


# The token matters to the admin routes only (predicting needs none in this config).
FUZZED = [
    pytest.param(method, path, token, id=f"{method} {path} {'admin' if token else 'anonymous'}")
    for method, path in OPERATIONS
    for token in ([None, TOKEN] if path.startswith("/v1/admin/") else [None])
]


@pytest.mark.parametrize(("method", "path", "token"), FUZZED)
def test_no_server_error(api: Api, method: str, path: str, token: str | None) -> None:
    operation = api.schema[path][method]
    headers = headers_for(token)
    modes = [GenerationMode.POSITIVE]
    if operation.body:
        modes.append(GenerationMode.NEGATIVE)
    strategies = [operation.as_strategy(mode, headers=headers) for mode in modes]
    real = pinned(method, path)
    if real is not None:
        strategies += [
            operation.as_strategy(mode, headers=headers, path_parameters=real) for mode in modes
        ]

    checks = [not_a_server_error]
    if path not in NOT_JSON:
        checks.append(response_schema_conformance)

    @FUZZ
    @given(case=st.one_of(strategies))
    def check(case: schemathesis.Case) -> None:
        assert_clean_error(case.call_and_validate(checks=checks))

    check()


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
        media_type=example.media_type,
    )
    response = case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])
    assert response.status_code == example.status, response.text
    assert_clean_error(response)
