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
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

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
from prodml.features import FeatureFunctionError
from prodml.serving._admin import add_admin_routes
from prodml.serving._auth import RoleError, Tokens
from prodml.serving._endpoint import EndpointTable, stratum_of
from prodml.serving._feedback import FeedbackHandler
from prodml.serving._idempotency import IdempotencyStore, open_idempotency_store
from prodml.serving._metrics import ERROR_SCOPE_KEY, ResponseCounting, Scope, error_label
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
    V2Request,
    decode_infer,
    encode_infer_body,
    json_header_length,
    model_metadata,
    split_infer_body,
)
from prodml.serving._wire import FieldProblem, RequestInvalid
from prodml.validation import RowViolation

__all__ = ["create_app", "status_of"]

log = logging.getLogger("prodml.serving")

MAX_ID_LENGTH = 128
JSON_TYPES = ("application/json",)
"""What the JSON routes read (native predict, feedback, admin changes)."""
V2_TYPES = ("application/json", BINARY_CONTENT_TYPE)
"""What V2 infer reads: JSON, or JSON then binary tensor data (Triton's extension)."""
_T = TypeVar("_T")
_REQUIRED: Any = object()  # Server.json: the body may not be empty


def status_of(exc: BaseException) -> int:
    """The HTTP status of an error."""
    if isinstance(exc, RequestInvalid):
        return exc.status
    if isinstance(exc, FeatureFunctionError):  # a 422 when the request's values caused it
        return 422 if exc.input_fault else 500
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
    """The ``{"error": …}`` answer of ``exc``. A 500, and a user feature function's
    failure, also carry the request id (``X-Request-ID``, else a new one) to find the
    server's log line by; the log names the exception types and frames, not their
    messages (which may quote a client's values)."""
    status = status_of(exc)
    if (isinstance(exc, ProdMLError) and status < 500) or isinstance(exc, ServingError):
        body: dict[str, Any] = {"error": str(exc).splitlines()[0]}
        details = getattr(exc, "details", None)
        if details:
            body["details"] = [d.to_dict() for d in details]
        if isinstance(exc, FeatureFunctionError):
            body["request_id"] = request_id or uuid.uuid4().hex
            log.info("request %s: %s", body["request_id"], body["error"])
    else:
        reference = request_id or uuid.uuid4().hex
        log.error("request %s failed:\n%s", reference, _trace(exc))
        body = {
            "error": f"internal error; see the server log for request {reference}",
            "request_id": reference,
        }
    shown = body.get("request_id")
    return json_response(body, status, None if shown is None else {"X-Request-ID": shown})


def _trace(exc: BaseException) -> str:
    """Where ``exc`` (and each exception it was raised from) was raised: types and stack
    frames, without the messages."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        parts.append(f"{type(current).__module__}.{type(current).__qualname__}\n{frames}")
        current = current.__cause__ or current.__context__
    return "raised from ".join(parts)


class Server:
    """The request handlers, bound to one runtime."""

    def __init__(self, runtime: ServingRuntime, tokens: Tokens) -> None:
        self.runtime = runtime
        self.config: ServingConfig = runtime.config
        self.tokens = tokens
        self.idempotency: IdempotencyStore = open_idempotency_store(
            self.config.idempotency_store,
            redis_url=self.config.redis_url,
            max_bytes=self.config.idempotency_max_bytes,
        )
        self.feedback = FeedbackHandler(runtime)

    # -- plumbing ---------------------------------------------------------------------
    async def body(self, request: Request) -> bytes:
        """The request body, counted while it streams in: past ``max_request_bytes``
        (declared or sent, with or without a Content-Length) a 413 with ``Connection:
        close``, since the rest of the body is left unread on the connection."""
        limit = self.config.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def json(self, request: Request, *, empty: Any = _REQUIRED) -> Any:
        """The parsed body of a JSON route (415 for another content type); an optional
        body (``empty`` given) may be empty, of any content type: ``empty`` is returned."""
        if empty is _REQUIRED:
            require_content_type(request, JSON_TYPES)
        data = await self.body(request)
        if empty is not _REQUIRED:
            if not data.strip():
                return empty
            require_content_type(request, JSON_TYPES)
        return _json(data)

    async def off_loop(self, work: Callable[[], _T], *, heavy: bool) -> _T:
        """``work()`` in a worker thread when ``heavy`` (a body over
        ``inline_decode_max_bytes`` to decode, more rows than a micro-batch to check and
        log), so that health probes and other requests are answered meanwhile; on the
        event loop otherwise, where a thread handoff would cost more than the work."""
        if not heavy:
            return work()
        return await asyncio.to_thread(work)

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

    def body_id(self, value: str | None) -> str | None:
        """A V2 / native body ``id`` as an idempotency key: only with
        ``serving.idempotency_from_body_id`` (else it is a correlation id only)."""
        return value if self.config.idempotency_from_body_id else None

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
        heavy = len(frame) > self.config.batch_max_size  # its rows and log in a thread

        def inspect() -> tuple[list[dict[str, Any]], list[RowViolation]]:
            rows = frame_rows(frame, columns) if wanted else []
            return rows, self.runtime.soft_check(table, rows) if table.primary.soft else []

        rows, violations = await self.off_loop(inspect, heavy=heavy)
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
        record = partial(
            self.runtime.log.record,
            prediction, frame, rows=rows or None, unit=unit_value, latency_ms=latency_ms,
            protocol=protocol,
            entities=native.entities if native is not None else None,
            feature_versions=native.versions if native is not None else None,
            freshness=native.freshness if native is not None else None,
        )  # fmt: skip
        await self.off_loop(record, heavy=heavy)
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
        require_content_type(request, V2_TYPES, missing_ok=True)  # tritonclient sends none
        header_length = _header_length(request.headers)
        raw = await self.body(request)

        def read() -> V2Request:
            body, binary = split_infer_body(raw, header_length)
            return decode_infer(
                body, signature, binary=binary, model=name, max_rows=self.config.max_batch_rows
            )

        decoded = await self.off_loop(read, heavy=len(raw) > self.config.inline_decode_max_bytes)
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

        key = RequestKey.of(request, self.body_id(decoded.id), raw)
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
            f"model {table.endpoint!r} has no such serving version: expected one of "
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
        content_type = request.headers.get("content-type", "")  # none: 415, as for others
        frame = await self.off_loop(
            partial(
                decode_invocations, raw, content_type, model.signature,
                max_rows=self.config.max_batch_rows,
            ),
            heavy=len(raw) > self.config.inline_decode_max_bytes,
        )  # fmt: skip
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
        require_content_type(request, JSON_TYPES)
        raw = await self.body(request)
        native = await decode_native(_json(raw), table, self.runtime)
        request_id = native.request_id or request.headers.get("x-request-id") or uuid.uuid4().hex

        def encode(p: Prediction) -> bytes:
            return encode_native(p, native)

        key = RequestKey.of(request, self.body_id(native.request_id), raw)
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

    # each handler leaves the error's type for ResponseCounting (prodml_responses_total)
    @app.exception_handler(ProdMLError)
    async def prodml_error(request: Request, exc: ProdMLError) -> Response:
        request.scope[ERROR_SCOPE_KEY] = error_label(exc)
        return error_response(exc, request.headers.get("x-request-id"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        request.scope[ERROR_SCOPE_KEY] = error_label(exc)
        return json_response({"error": str(exc.detail)}, exc.status_code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        request.scope[ERROR_SCOPE_KEY] = error_label(exc)
        return json_response({"error": "request parameters are invalid"}, 422)

    # ResponseCounting (below) answers what the handlers above leave; this is Starlette's
    # last resort, for a failure inside that middleware itself
    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return error_response(exc, request.headers.get("x-request-id"))

    def answer(exc: Exception, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """An exception no handler took (ResponseCounting catches it, so the connection
        stays open instead of being dropped after the 500)."""
        response = error_response(exc, Request(scope).headers.get("x-request-id"))
        return response.status_code, list(response.raw_headers), bytes(response.body)

    app.add_middleware(
        ResponseCounting, metrics=runtime.metrics, endpoints=lambda: runtime.tables, answer=answer
    )

    add_health_routes(app, server)
    add_v2_routes(app, server)
    add_mlflow_routes(app, server)
    add_native_routes(app, server)
    add_admin_routes(app, server)
    return app


def require_content_type(
    request: Request, accepted: Sequence[str], *, missing_ok: bool = False
) -> None:
    """Refuse (415) a body of another content type than ``accepted`` (case-insensitive;
    a ``charset`` parameter must say UTF-8). A browser's cross-site form or ``fetch``
    can only send the simple types (form-urlencoded, multipart, text/plain) without a
    CORS preflight, so a JSON route that refuses them cannot be posted to from another
    site. A missing Content-Type is refused too (a ``fetch`` of an untyped blob sends
    none), unless ``missing_ok`` (V2: tritonclient sends none)."""
    value = request.headers.get("content-type")
    if value is None and missing_ok:
        return
    mime, *options = (part.strip().lower() for part in (value or "").split(";"))
    charset = dict(option.partition("=")[::2] for option in options).get("charset", "utf-8")
    if mime not in accepted or charset.strip('"') not in ("utf-8", "utf8"):
        expected = " or ".join(accepted)
        raise RequestInvalid(
            f"unsupported content type: this route reads {expected} (charset UTF-8)",
            status=415,
            details=[FieldProblem("Content-Type", "is not supported", expected)],
        )


def _too_large(limit: int) -> HTTPException:
    """A 413 for a body past ``limit`` bytes, closing the connection: what is left of the
    body is never read, so the connection cannot carry another request."""
    return HTTPException(
        413,
        f"request body over the {limit}-byte limit (serving.max_request_bytes)",
        headers={"Connection": "close"},
    )


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
    content type and body); the store keeps the fingerprint and the answer's bytes. The
    ``Idempotency-Key`` header is a key proper: reused for a different request, it is
    refused. A body ``id`` (V2, native) is one only with
    ``serving.idempotency_from_body_id`` (callers pass ``None`` otherwise); clients reuse
    such ids freely, so only a byte-identical retry of the same route replays an answer:
    its key includes the fingerprint."""

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
