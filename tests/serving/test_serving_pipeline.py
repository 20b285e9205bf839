"""The request pipeline's parts on their own: the one table of HTTP errors, the
pipeline's policies (idempotency keys, routing unit and stratum), the native codec
without a runtime, and the module structure that keeps codecs and route modules free of
the runtime and the app."""

from __future__ import annotations

import grimp
import pandas as pd
import pytest
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from prodml.core import (
    AuthError,
    BadOutputError,
    CircuitOpenError,
    ConfigError,
    ConflictError,
    DataValidationError,
    DefinitionError,
    DeploymentNotFoundError,
    ModelTimeoutError,
    ServingError,
    StateError,
    StorageError,
    TimestampError,
)
from prodml.features import FeatureFunctionError
from prodml.registry import ColumnSpec, DeploymentSpec, Signature
from prodml.serving import _metrics, status_of
from prodml.serving._auth import RoleError
from prodml.serving._errors import classify, error_label, error_response
from prodml.serving._native import NativeRequest, NativeSchema, decode_native
from prodml.serving._policy import Call, RequestKey, check_ids, stratum, unit_of
from prodml.serving._wire import RequestInvalid


# -- one table: status and label ---------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "status", "label"),
    [
        (RequestInvalid("bad body", status=400), 400, "request_invalid"),
        (RequestInvalid("too many", status=413), 413, "request_invalid"),
        (RoleError("viewer may not"), 403, "forbidden"),
        (AuthError("no token"), 401, "unauthorized"),
        (DeploymentNotFoundError("no endpoint"), 404, "not_found"),
        (ConflictError("moved"), 409, "conflict"),
        (StateError("paused"), 409, "state"),
        (FeatureFunctionError("f", feature="f", input_fault=True), 422, "feature_function"),
        (FeatureFunctionError("f", feature="f", input_fault=False), 500, "feature_function"),
        (TimestampError("naive"), 422, "schema"),
        (DataValidationError("bad data"), 422, "data_validation"),
        (DefinitionError("bad definition"), 422, "definition"),
        (ModelTimeoutError("slow"), 503, "timeout"),
        (CircuitOpenError("open"), 503, "circuit_open"),
        (BadOutputError("nan"), 503, "bad_output"),
        (ServingError("down"), 503, "unavailable"),
        (RequestValidationError([]), 422, "parameters"),
        (HTTPException(404), 404, "route"),
        (HTTPException(405), 405, "method"),
        (HTTPException(413), 413, "too_large"),
        (HTTPException(418), 418, "http"),
        (StorageError("disk"), 500, "internal"),
        (ConfigError("bad config"), 500, "internal"),
        (KeyError("x"), 500, "internal"),
    ],
)
def test_one_table_gives_an_errors_status_and_label(
    error: BaseException, status: int, label: str
) -> None:
    assert classify(error) == (status, label)
    assert status_of(error) == status
    assert error_label(error) == _metrics.error_label(error) == label


def test_an_error_response_has_the_tables_status() -> None:
    for error in (StateError("paused"), ServingError("down"), RoleError("no"), KeyError("x")):
        assert error_response(error, "r-1").status_code == status_of(error)


# -- policies ------------------------------------------------------------------------------
def key_of(call: Call, body_id: str | None, raw: bytes) -> RequestKey:
    key = RequestKey.of(call, body_id, raw)
    assert key is not None
    return key


def test_an_idempotency_key_fingerprints_route_content_type_and_body() -> None:
    call = Call("/invocations", "application/json", idempotency_key="k-1")
    key = key_of(call, "body-id", b"{}")
    assert (key.value, key.field) == ("k-1", "Idempotency-Key")
    assert key_of(call, None, b"{}").fingerprint == key.fingerprint
    for other in (
        Call("/v1/endpoints/lr/invocations", "application/json", idempotency_key="k-1"),
        Call("/invocations", "text/csv", idempotency_key="k-1"),
        Call("/invocations", "application/json", "12", idempotency_key="k-1"),
    ):
        assert key_of(other, None, b"{}").fingerprint != key.fingerprint
    assert key_of(call, None, b"[]").fingerprint != key.fingerprint


def test_a_body_id_key_includes_the_fingerprint() -> None:
    first = key_of(Call("/v2/models/lr/infer"), "req-1", b"a")
    second = key_of(Call("/v2/models/lr/infer"), "req-1", b"b")
    assert first.field == "id"
    assert len(first.value) == 64
    assert first.value != second.value
    assert RequestKey.of(Call("/v2/models/lr/infer"), None, b"a") is None


def test_ids_past_the_limit_are_refused() -> None:
    check_ids("r" * 128, None)
    with pytest.raises(RequestInvalid) as caught:
        check_ids("r" * 129, None)
    assert caught.value.status == 422
    key = RequestKey.of(Call("/invocations", idempotency_key="k" * 129), None, b"")
    with pytest.raises(RequestInvalid):
        check_ids("r", key)


def test_the_routing_unit_comes_from_the_request_then_its_unit_field_then_its_id() -> None:
    spec = DeploymentSpec.single("lr:1")
    by_user = DeploymentSpec.from_dict({**spec.to_dict(), "unit": "user"})
    frame = pd.DataFrame({"user": ["u-7"], "x": [1.0]})
    assert unit_of(by_user, frame, request_id="r", unit="sent", native=None) == "sent"
    assert unit_of(by_user, frame, request_id="r", unit=None, native=None) == "u-7"
    native = NativeRequest(entities={"user": ["u-9"]}, request={}, batch=False)
    assert unit_of(by_user, frame, request_id="r", unit=None, native=native) == "u-9"
    assert unit_of(spec, frame, request_id="r", unit=None, native=None) == "r"


def test_the_stratum_is_read_from_the_first_row() -> None:
    spec = DeploymentSpec.single("lr:1")
    frame = pd.DataFrame({"x": [1.0]})
    assert stratum(spec, frame, [{"x": 1.0}], None) is None
    stratified = DeploymentSpec.from_dict({**spec.to_dict(), "stratify_by": "x"})
    rows = [{"x": 1.0}, {"x": 2.0}]
    assert stratum(stratified, frame, rows, None) == stratum(stratified, frame, rows[:1], None)
    assert stratum(stratified, frame, rows, None) is not None


# -- the native codec needs no runtime -------------------------------------------------------
def schema() -> NativeSchema:
    signature = Signature((ColumnSpec("x", "float64"),), "float64")
    return NativeSchema("lr", signature, {}, None, "model lr:1 has no training run")


def test_decode_native_checks_the_body_before_the_service() -> None:
    with pytest.raises(RequestInvalid) as caught:
        decode_native([1, 2], schema(), max_rows=10)
    assert caught.value.status == 400
    with pytest.raises(RequestInvalid) as caught:
        decode_native({"entities": {"x": 1}, "extra": 1}, schema(), max_rows=10)
    assert caught.value.status == 422
    with pytest.raises(RequestInvalid) as caught:
        decode_native({"entities": [{"x": 1}] * 11}, schema(), max_rows=10)
    assert caught.value.status == 413


def test_decode_native_refuses_an_endpoint_without_a_feature_service() -> None:
    with pytest.raises(StateError, match="endpoint 'lr' cannot fetch features: model lr:1"):
        decode_native({"entities": {"x": 1}}, schema(), max_rows=10)


# -- structure ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("prodml")


@pytest.mark.parametrize("codec", ["_native", "_v2", "_mlflow_wire"])
def test_codecs_reach_neither_the_runtime_nor_the_metrics(
    graph: grimp.ImportGraph, codec: str
) -> None:
    imported = graph.find_modules_directly_imported_by(f"prodml.serving.{codec}")
    assert not imported & {"prodml.serving._runtime", "prodml.serving._metrics"}


@pytest.mark.parametrize("module", ["_routes", "_admin", "_feedback", "_pipeline", "_http"])
def test_only_the_app_imports_the_app(graph: grimp.ImportGraph, module: str) -> None:
    assert not graph.chain_exists(f"prodml.serving.{module}", "prodml.serving._app")
