"""The HTTP server: FastAPI routes over one :class:`ServingRuntime`.

Handlers take the raw request and answer with orjson bytes: they read what HTTP carries
(path, headers, body) and hand it to the request pipeline (``_pipeline``), whose codecs
(``_v2``, ``_mlflow_wire``, ``_native``) decode bodies against the model's signature,
not pydantic, which keeps the hot path short; the OpenAPI schema still describes every
body (``openapi_extra``). Every error is ``{"error": …}`` (plus ``details`` for contract
violations) with a status from :func:`~prodml.serving._errors.status_of`; no stack trace
and no input value ever reaches a client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from prodml.core import NotFoundError, ProdMLError
from prodml.serving._admin import AdminAction, add_admin_routes
from prodml.serving._auth import Tokens
from prodml.serving._endpoint import EndpointTable
from prodml.serving._errors import error_label, error_response
from prodml.serving._feedback import FeedbackHandler
from prodml.serving._http import JSON_TYPES, RouteContext, parse_json, require_content_type
from prodml.serving._metrics import ERROR_SCOPE_KEY, ResponseCounting, Scope
from prodml.serving._pipeline import Answer, Pipeline
from prodml.serving._policy import Call
from prodml.serving._responses import JSON, json_response
from prodml.serving._routes import (
    VERSION,
    add_health_routes,
    add_mlflow_routes,
    add_native_routes,
    add_v2_routes,
)
from prodml.serving._runtime import ServingRuntime
from prodml.serving._v2 import BINARY_CONTENT_TYPE, model_metadata
from prodml.serving._wire import FieldProblem, RequestInvalid

__all__ = ["create_app"]

V2_TYPES = ("application/json", BINARY_CONTENT_TYPE)
"""What V2 infer reads: JSON, or JSON then binary tensor data (Triton's extension)."""


class Server:
    """The request handlers, bound to one runtime: each reads its request and hands it
    to the pipeline."""

    def __init__(self, runtime: ServingRuntime, tokens: Tokens) -> None:
        self.runtime = runtime
        self.context = RouteContext(runtime, tokens)
        self.pipeline = Pipeline(runtime)
        self.idempotency = self.pipeline.idempotency
        self.feedbacks = FeedbackHandler(self.context)

    # -- OIP V2 -------------------------------------------------------------------------
    async def v2_infer(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        version = request.path_params.get("version")
        self.context.check_predict_token(request)
        table = self.runtime.table(name)
        arm = None if version is None else self.arm_of_version(table, version)
        require_content_type(request, V2_TYPES, missing_ok=True)  # tritonclient sends none
        header_length = _header_length(request.headers)
        raw = await self.context.body(request)
        answer = await self.pipeline.v2(
            table, raw, _call(request), model=name, arm=arm, header_length=header_length
        )
        response = _response(answer)
        if answer.header_length is not None:  # the JSON, then the tensor bytes
            response.headers["Inference-Header-Content-Length"] = str(answer.header_length)
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
        self.context.check_predict_token(request)
        name = request.path_params.get("name")
        if not name and request.scope.get("query_string"):  # parsed only when there is one
            name = request.query_params.get("endpoint")
        table = self.runtime.table(name) if name else self.runtime.only_endpoint()
        raw = await self.context.body(request)
        return _response(await self.pipeline.mlflow(table, raw, _call(request)))

    # -- native -------------------------------------------------------------------------
    async def native_predict(self, request: Request) -> Response:
        self.context.check_predict_token(request)
        table = self.runtime.table(request.path_params["name"])
        require_content_type(request, JSON_TYPES)
        raw = await self.context.body(request)
        body = parse_json(raw)
        return _response(await self.pipeline.native(table, body, raw, _call(request)))

    async def feedback(self, request: Request) -> Response:
        return await self.feedbacks.handle(request)


def _call(request: Request) -> Call:
    """What the pipeline reads of a prediction request's line and headers."""
    headers = request.headers
    return Call(  # the path as ``request.url.path`` has it, without building the URL
        path=request.scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C"),
        content_type=headers.get("content-type", ""),
        header_length=headers.get("inference-header-content-length", ""),
        request_id=headers.get("x-request-id"),
        unit=headers.get("x-prodml-unit"),
        idempotency_key=headers.get("idempotency-key"),
    )


def _response(answer: Answer) -> Response:
    if answer.replayed:
        return Response(answer.body, 200, {"Idempotent-Replayed": "true"}, JSON)
    return Response(answer.body, 200, {"X-Request-ID": answer.request_id}, JSON)


def create_app(
    runtime: ServingRuntime,
    *,
    tokens: Tokens | None = None,
    actions: Sequence[AdminAction] = (),
) -> FastAPI:
    """The ASGI app; its lifespan starts the runtime (loads every deployment) and closes
    it at shutdown (drains shadows, syncs bandits, flushes the logs). ``actions`` add
    admin commands of the layers above (see :class:`~prodml.serving._admin.AdminAction`)."""
    server = Server(runtime, tokens or Tokens(runtime.config.tokens))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.close()
            server.pipeline.close()

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

    add_health_routes(app, server.context)
    add_v2_routes(app, server.context, server)
    add_mlflow_routes(app, server.context, server)
    add_native_routes(app, server.context, server)
    add_admin_routes(app, server.context, actions)
    return app


def _versions(table: EndpointTable) -> list[str]:
    """The version numbers of every model an endpoint's arms serve, as V2 names them."""
    return sorted({state.model.ref.split(":", 1)[1] for state in table.arms.values()})


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
