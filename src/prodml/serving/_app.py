"""The HTTP server: FastAPI routes over one :class:`ServingRuntime`.

Handlers take the raw request and answer with orjson bytes: request bodies are decoded
by the protocol codecs (``_v2``, ``_mlflow_wire``, ``_native``) against the model's
signature, not by pydantic, which keeps the hot path short; the OpenAPI schema still
describes every body (``openapi_extra``). Every error is ``{"error": …}`` (plus
``details`` for contract violations) with a status from :func:`status_of`; no stack
trace and no input value ever reaches a client.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from prodml.core import (
    AuthError,
    ConflictError,
    DataValidationError,
    DefinitionError,
    NotFoundError,
    ProdMLError,
    SchemaError,
    ServingConfig,
    ServingError,
    StateError,
)
from prodml.serving._admin import add_admin_routes
from prodml.serving._auth import RoleError, Tokens
from prodml.serving._endpoint import EndpointTable, stratum_of
from prodml.serving._feedback import FeedbackHandler
from prodml.serving._idempotency import IdempotencyStore, open_idempotency_store
from prodml.serving._mlflow_wire import decode_invocations, encode_predictions
from prodml.serving._native import NativeRequest, decode_native, encode_native
from prodml.serving._predlog import frame_rows
from prodml.serving._responses import JSON, json_response
from prodml.serving._routes import (
    VERSION,
    add_health_routes,
    add_mlflow_routes,
    add_native_routes,
    add_v2_routes,
)
from prodml.serving._runtime import Prediction, ServingRuntime
from prodml.serving._v2 import (
    BINARY_CONTENT_TYPE,
    decode_infer,
    encode_infer_body,
    json_header_length,
    model_metadata,
    split_infer_body,
)
from prodml.serving._wire import FieldProblem, RequestInvalid

__all__ = ["create_app", "status_of"]

log = logging.getLogger("prodml.serving")

MAX_ID_LENGTH = 128


def status_of(exc: BaseException) -> int:
    """The HTTP status of an error."""
    if isinstance(exc, RequestInvalid):
        return exc.status
    if isinstance(exc, RoleError):
        return 403
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError | StateError):
        return 409
    if isinstance(exc, SchemaError | DataValidationError | DefinitionError):
        return 422
    if isinstance(exc, ServingError):
        return 503
    return 500


def error_response(exc: BaseException, request_id: str | None = None) -> Response:
    status = status_of(exc)
    if (isinstance(exc, ProdMLError) and status < 500) or isinstance(exc, ServingError):
        body: dict[str, Any] = {"error": str(exc).splitlines()[0]}
        details = getattr(exc, "details", None)
        if details:
            body["details"] = [d.to_dict() for d in details]
    else:
        reference = request_id or uuid.uuid4().hex
        log.error("request %s failed: %r", reference, exc, exc_info=exc)
        body = {"error": f"internal error; see the server log for request {reference}"}
    return json_response(body, status)


class Server:
    """The request handlers, bound to one runtime."""

    def __init__(self, runtime: ServingRuntime, tokens: Tokens) -> None:
        self.runtime = runtime
        self.config: ServingConfig = runtime.config
        self.tokens = tokens
        self.idempotency: IdempotencyStore = open_idempotency_store(
            self.config.idempotency_store, redis_url=self.config.redis_url
        )
        self.feedback = FeedbackHandler(runtime)

    # -- plumbing ---------------------------------------------------------------------
    async def body(self, request: Request) -> bytes:
        limit = self.config.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestInvalid(f"request body over the {limit}-byte limit", status=413)
        data = await request.body()
        if len(data) > limit:
            raise RequestInvalid(f"request body over the {limit}-byte limit", status=413)
        return data

    async def json(self, request: Request) -> Any:
        return _json(await self.body(request))

    async def remember(self, key: str, body: bytes | None = None) -> bytes | None:
        """The cached response of ``key`` (``body`` None), or store ``body`` under it.
        A shared store (Redis) is called off the event loop."""
        store = self.idempotency
        ttl = self.config.idempotency_ttl_s
        if self.config.idempotency_store == "memory":
            if body is None:
                return store.get(key)
            store.put(key, body, ttl)
            return None
        loop = asyncio.get_running_loop()
        if body is None:
            return await loop.run_in_executor(None, store.get, key)
        await loop.run_in_executor(None, store.put, key, body, ttl)
        return None

    def check_predict_token(self, request: Request) -> None:
        if self.config.predict_requires_token:
            self.tokens.require(request.headers.get("authorization"), "viewer")

    async def answer(
        self,
        request: Request,
        table: EndpointTable,
        frame: pd.DataFrame,
        *,
        request_id: str,
        key: RequestKey | None,
        encode: Callable[[Prediction], bytes],
        protocol: str,
        unit: str | None = None,
        arm: str | None = None,
        native: NativeRequest | None = None,
        native_output: bool = False,
        columns: Sequence[str] | None = None,
    ) -> Response:
        """Route, predict, log, count and encode one request (idempotently with a key:
        the same key with the same request replays the stored answer; with another
        request it is refused)."""
        started = time.perf_counter()
        if len(request_id) > MAX_ID_LENGTH or (key is not None and len(key.value) > MAX_ID_LENGTH):
            raise RequestInvalid(
                f"request id or idempotency key longer than {MAX_ID_LENGTH} characters",
                status=422,
                details=[FieldProblem("id", "too_long", f"at most {MAX_ID_LENGTH} characters")],
            )
        cache_key = "" if key is None else f"{table.endpoint}\0{key.value}"
        if key is not None:
            cached = await self.remember(cache_key)
            if cached is not None:
                if cached[:_DIGEST] != key.fingerprint:
                    raise RequestInvalid(
                        f"{key.field} was first used with a different request to endpoint "
                        f"{table.endpoint!r}; send a new request with a new key",
                        status=422,
                        details=[
                            FieldProblem(key.field, "reused", "a new key for a different request")
                        ],
                    )
                self.runtime.metrics.idempotent_replays.labels(table.endpoint).inc()
                return Response(cached[_DIGEST:], 200, {"Idempotent-Replayed": "true"}, JSON)
        wanted = table.primary.soft is not None or self.runtime.log.log_features
        rows = frame_rows(frame, columns) if wanted else []
        violations = self.runtime.soft_check(table, rows) if table.primary.soft else []
        if violations and self.config.on_soft_violation == "reject":
            raise RequestInvalid.of(
                [FieldProblem(v.column, v.kind, v.message) for v in violations], status=422
            )
        if native is not None and native.missing:
            violations = [*violations, *native.missing]
        spec = table.deployment.spec
        unit_value = unit or request.headers.get("x-prodml-unit")
        if unit_value is None and spec.unit is not None and native is not None:
            found = native.field(spec.unit)
            unit_value = None if found is None else str(found)
        if unit_value is None and spec.unit is not None and spec.unit in frame.columns:
            unit_value = str(frame[spec.unit].iloc[0])
        unit_value = unit_value or request_id
        stratum = None
        if spec.stratify_by is not None:
            source = native.first_row() if native is not None else (rows[0] if rows else {})
            if not source and spec.stratify_by in frame.columns:
                source = {spec.stratify_by: frame[spec.stratify_by].iloc[0]}
            stratum = stratum_of(source, spec.stratify_by)
        prediction = await self.runtime.predict(
            table, frame, request_id=request_id, unit=unit_value, stratum=stratum, arm=arm,
            violations=violations, native=native_output,
        )  # fmt: skip
        body = encode(prediction)
        latency_ms = (time.perf_counter() - started) * 1000
        metrics = self.runtime.metrics
        metrics.requests.labels(table.endpoint, prediction.arm, prediction.status, "").inc()
        metrics.latency.labels(table.endpoint, prediction.arm).observe(latency_ms / 1000)
        self.runtime.log.record(
            prediction, frame, rows=rows or None, unit=unit_value, latency_ms=latency_ms,
            protocol=protocol,
            entities=native.entities if native is not None else None,
            feature_versions=native.versions if native is not None else None,
            freshness=native.freshness if native is not None else None,
        )  # fmt: skip
        if key is not None:
            await self.remember(cache_key, key.fingerprint + body)
        return Response(body, 200, {"X-Request-ID": request_id}, JSON)

    # -- OIP V2 -------------------------------------------------------------------------
    async def v2_infer(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        version = request.path_params.get("version")
        self.check_predict_token(request)
        table = self.runtime.table(name)
        arm = None if version is None else self.arm_of_version(table, version)
        signature = (table.arms[arm].model if arm else table.primary).signature
        raw = await self.body(request)
        body, binary = split_infer_body(raw, _header_length(request.headers))
        decoded = decode_infer(body, signature, binary=binary, model=name)
        request_id = decoded.id or request.headers.get("x-request-id") or uuid.uuid4().hex

        header_lengths: list[int | None] = []  # the encoded answer's; none when replayed

        def encode(p: Prediction) -> bytes:
            model_version = p.model.split(":", 1)[1] if p.model else ""
            body, length = encode_infer_body(
                name, model_version, decoded.id, p.scores, signature, outputs=decoded.outputs,
                parameters=decoded.parameters or None, binary=decoded.binary_outputs,
            )  # fmt: skip
            header_lengths.append(length)
            return body

        key = RequestKey.of(request, decoded.id, raw)
        response = await self.answer(
            request, table, decoded.frame, request_id=request_id, key=key, encode=encode,
            protocol="v2", arm=arm, columns=signature.columns,
        )  # fmt: skip
        if decoded.binary_outputs:  # the JSON, then the tensor bytes (also when replayed)
            length = header_lengths[0] if header_lengths else None
            if length is None:  # a replayed answer: measured from its stored bytes
                length = json_header_length(bytes(response.body))
            response.headers["Inference-Header-Content-Length"] = str(length)
            response.headers["Content-Type"] = BINARY_CONTENT_TYPE
        return response

    def arm_of_version(self, table: EndpointTable, version: str) -> str:
        for state in table.arms.values():
            if state.model.ref.split(":", 1)[1] == version and state.arm.role != "shadow":
                return state.name
        raise NotFoundError(
            f"model {table.endpoint!r} has no serving version {version!r}: expected one of "
            f"{_versions(table)}"
        )

    async def v2_model(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        table = self.runtime.table(name)
        version = request.path_params.get("version")
        model = table.arms[self.arm_of_version(table, version)].model if version else table.primary
        return json_response(model_metadata(name, _versions(table), model.signature))

    async def v2_model_ready(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        table = self.runtime.table(name)
        version = request.path_params.get("version")
        if version is not None:
            self.arm_of_version(table, version)
        return json_response({"name": name, "ready": self.runtime.ready})

    # -- MLflow scoring protocol --------------------------------------------------------
    async def invocations(self, request: Request) -> Response:
        self.check_predict_token(request)
        name = request.path_params.get("name") or request.query_params.get("endpoint")
        table = self.runtime.table(name) if name else self.runtime.only_endpoint()
        model = table.primary
        raw = await self.body(request)
        frame = decode_invocations(raw, request.headers.get("content-type", JSON), model.signature)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex

        def encode(p: Prediction) -> bytes:
            return encode_predictions(p.scores)

        return await self.answer(
            request, table, frame, request_id=request_id,
            key=RequestKey.of(request, None, raw), encode=encode, protocol="mlflow",
            native_output=True, columns=model.columns,
        )  # fmt: skip

    # -- native -------------------------------------------------------------------------
    async def native_predict(self, request: Request) -> Response:
        self.check_predict_token(request)
        table = self.runtime.table(request.path_params["name"])
        raw = await self.body(request)
        native = await decode_native(_json(raw), table, self.runtime)
        request_id = native.request_id or request.headers.get("x-request-id") or uuid.uuid4().hex

        def encode(p: Prediction) -> bytes:
            return encode_native(p, native)

        key = RequestKey.of(request, native.request_id, raw)
        return await self.answer(
            request, table, native.frame, request_id=request_id, key=key, encode=encode,
            protocol="native", unit=native.unit, native=native, columns=table.primary.columns,
        )  # fmt: skip


def create_app(runtime: ServingRuntime, *, tokens: Tokens | None = None) -> FastAPI:
    """The ASGI app; its lifespan starts the runtime (loads every deployment) and closes
    it at shutdown (drains shadows, syncs bandits, flushes the logs)."""
    server = Server(runtime, tokens or Tokens(runtime.config.tokens))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.close()
            server.idempotency.close()

    app = FastAPI(
        title="prodml serving",
        version=VERSION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        default_response_class=Response,  # each route declares its answers (_openapi)
    )
    app.state.server = server

    @app.exception_handler(ProdMLError)
    async def prodml_error(request: Request, exc: ProdMLError) -> Response:
        return error_response(exc, request.headers.get("x-request-id"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return json_response({"error": str(exc.detail)}, exc.status_code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return json_response({"error": "request parameters are invalid"}, 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return error_response(exc, request.headers.get("x-request-id"))

    add_health_routes(app, server)
    add_v2_routes(app, server)
    add_mlflow_routes(app, server)
    add_native_routes(app, server)
    add_admin_routes(app, server)
    return app


def _versions(table: EndpointTable) -> list[str]:
    """The version numbers of every model an endpoint's arms serve, as V2 names them."""
    return sorted({state.model.ref.split(":", 1)[1] for state in table.arms.values()})


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise RequestInvalid("request body is not valid JSON", status=400) from None


_DIGEST = hashlib.sha256().digest_size


@dataclass(frozen=True)
class RequestKey:
    """A request's idempotency key with the SHA-256 of what the request asks (route,
    content type and body). The ``Idempotency-Key`` header is a key proper: reused for a
    different request, it is refused. A body ``id`` (V2, native) is a correlation id
    that clients reuse freely, so only a byte-identical retry of the same route replays
    an answer: its key includes the fingerprint."""

    value: str
    field: str
    fingerprint: bytes

    @classmethod
    def of(cls, request: Request, body_id: str | None, raw: bytes) -> RequestKey | None:
        header = request.headers.get("idempotency-key")
        if header:
            return cls(header, "Idempotency-Key", _fingerprint(request, raw))
        if body_id:
            fingerprint = _fingerprint(request, raw)
            # 64 characters, whatever the id's length
            value = hashlib.sha256(body_id.encode() + b"\0" + fingerprint).hexdigest()
            return cls(value, "id", fingerprint)
        return None


def _fingerprint(request: Request, raw: bytes) -> bytes:
    """SHA-256 of what a request asks: its route, content type and body."""
    digest = hashlib.sha256()
    headers = request.headers
    for part in (
        request.url.path,
        headers.get("content-type", ""),
        headers.get("inference-header-content-length", ""),
    ):
        digest.update(part.encode() + b"\0")
    digest.update(raw)
    return digest.digest()


def _header_length(headers: Mapping[str, str]) -> int | None:
    """The JSON length Triton's binary tensor extension puts in
    ``Inference-Header-Content-Length`` (``None``: the whole body is JSON)."""
    value = headers.get("inference-header-content-length")
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()):  # "²".isdigit(), but int("²") fails
        problem = FieldProblem(
            "Inference-Header-Content-Length", "is not a byte count", "a non-negative integer"
        )
        raise RequestInvalid.of([problem], status=400)
    return int(value)
