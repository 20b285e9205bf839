"""The HTTP routes of the server's protocols (health, Open Inference Protocol V2, MLflow
scoring, native), each registered with its OpenAPI declaration (``_openapi``): handlers
read the raw request, so FastAPI sees none of their parameters and bodies, and the
route says them. The admin routes are in ``_admin``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Security
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.routing import request_response

from prodml.serving import _openapi as api
from prodml.serving._responses import JSON, json_response

if TYPE_CHECKING:
    from prodml.serving._http import Handler, PredictHandlers, RouteContext

__all__ = [
    "VERSION",
    "add_health_routes",
    "add_mlflow_routes",
    "add_native_routes",
    "add_v2_routes",
]

try:
    VERSION = package_version("prodml")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"


def add_health_routes(app: FastAPI, context: RouteContext) -> None:
    runtime = context.runtime

    @app.get("/healthz", responses=api.answers(api.HEALTHZ))
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", responses=api.READYZ)
    async def readyz() -> Response:
        """Ready: every deployed endpoint's models loaded and warmed, and the metadata DB
        and the online store answering (within 2 s)."""
        loop = asyncio.get_running_loop()
        try:
            stores = await asyncio.wait_for(loop.run_in_executor(None, runtime.check_stores), 2.0)
        except TimeoutError:
            stores = {"metadata": "no answer within 2 s"}
        loaded = runtime.ready and bool(runtime.tables)
        ready = loaded and all(v == "ok" for v in stores.values())
        body = {
            "ready": ready,
            "models_loaded": loaded,
            "stores": stores,
            "endpoints": {n: t.revision for n, t in sorted(runtime.tables.items())},
            "error": runtime.last_refresh_error,
        }
        return json_response(body, 200 if ready else 503)

    @app.get("/metrics", responses=api.answers(api.text_answer("Prometheus metrics")))
    async def metrics() -> Response:
        data, content_type = runtime.metrics.render()
        return Response(data, 200, media_type=content_type)


def _predict_route(
    app: FastAPI,
    context: RouteContext,
    path: str,
    handler: Handler,
    *parameters: dict[str, Any],
    body: dict[str, Any],
    ok: dict[str, Any],
    errors: Sequence[int] = api.PREDICT_ERRORS,
) -> None:
    """A POST route that predicts: its parameters, body and answers declared, and the
    bearer token when ``serving.predict_requires_token`` is on."""
    secured = context.config.predict_requires_token
    app.add_api_route(
        path,
        _raw(handler),
        methods=["POST"],
        openapi_extra=api.operation(*parameters, *api.PREDICT_HEADERS, body=body),
        responses=api.answers(ok, *errors, *([401, 403] if secured else [])),
        dependencies=[Security(api.BEARER)] if secured else None,
    )
    _answer_plainly(app)


def add_v2_routes(app: FastAPI, context: RouteContext, handlers: PredictHandlers) -> None:
    runtime = context.runtime

    @app.get("/v2/health/live", responses=api.answers(api.V2_LIVE))
    async def live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready", responses=api.V2_READY)
    async def ready() -> Response:
        ok = runtime.ready and bool(runtime.tables)
        return json_response({"ready": ok}, 200 if ok else 503)

    @app.get("/v2", responses=api.answers(api.V2_SERVER_METADATA))
    async def metadata() -> Response:
        extensions = ["binary_tensor_data"]  # Triton's, for inputs and outputs
        return json_response({"name": "prodml", "version": VERSION, "extensions": extensions})

    for path, params in (
        ("/v2/models/{model_name}", (api.MODEL_NAME,)),
        ("/v2/models/{model_name}/versions/{version}", (api.MODEL_NAME, api.VERSION)),
    ):
        app.add_api_route(
            path,
            _raw(handlers.v2_model),
            methods=["GET"],
            openapi_extra=api.operation(*params),
            responses=api.answers(api.V2_MODEL_METADATA, 404),
        )
        app.add_api_route(
            path + "/ready",
            _raw(handlers.v2_model_ready),
            methods=["GET"],
            openapi_extra=api.operation(*params),
            responses=api.answers(api.V2_MODEL_READY, 404),
        )
        _predict_route(
            app, context, path + "/infer", handlers.v2_infer, *params, api.HEADER_LENGTH,
            body=api.V2_INFER, ok=api.V2_INFER_OK,
        )  # fmt: skip


def add_mlflow_routes(app: FastAPI, context: RouteContext, handlers: PredictHandlers) -> None:
    ping_ok = api.answers(api.json_answer("Alive: MLflow's answer, a newline"))

    @app.get("/ping", responses=ping_ok)
    @app.get("/health", responses=ping_ok)
    async def ping() -> Response:
        return Response(b"\n", 200, media_type=JSON)

    @app.get("/version", responses=api.answers(api.text_answer("The prodml version")))
    async def version() -> Response:
        return Response(VERSION.encode(), 200, media_type="text/plain")

    _predict_route(
        app, context, "/invocations", handlers.invocations, api.ENDPOINT_QUERY,
        body=api.INVOCATIONS, ok=api.PREDICTIONS,
    )  # fmt: skip
    _predict_route(
        app, context, "/v1/endpoints/{name}/invocations", handlers.invocations, api.ENDPOINT_NAME,
        body=api.INVOCATIONS, ok=api.PREDICTIONS,
    )  # fmt: skip


def add_native_routes(app: FastAPI, context: RouteContext, handlers: PredictHandlers) -> None:
    runtime = context.runtime
    _predict_route(
        app, context, "/v1/endpoints/{name}/predict", handlers.native_predict, api.ENDPOINT_NAME,
        body=api.NATIVE, ok=api.NATIVE_OK,
    )  # fmt: skip
    by_role = context.config.feedback_requires_token  # a token of another role: 403
    secured = by_role or context.config.predict_requires_token
    auth = [401, 403] if by_role else [401] if secured else []
    app.add_api_route(
        "/v1/feedback",
        _raw(handlers.feedback),
        methods=["POST"],
        openapi_extra=api.operation(body=api.FEEDBACK),
        responses=api.answers(api.FEEDBACK_OK, 400, 404, 413, 415, 422, *auth),
        dependencies=[Security(api.BEARER)] if secured else None,
    )
    _answer_plainly(app)

    @app.get("/v1/endpoints", responses=api.answers(api.ENDPOINTS_OK))
    async def endpoints() -> Response:
        return json_response([t.describe() for _, t in sorted(runtime.tables.items())])

    async def endpoint(request: Request) -> Response:
        return json_response(runtime.table(request.path_params["name"]).describe())

    app.add_api_route(
        "/v1/endpoints/{name}",
        endpoint,
        methods=["GET"],
        openapi_extra=api.operation(api.ENDPOINT_NAME),
        responses=api.answers(api.ENDPOINT_OK, 404),
    )


def _answer_plainly(app: FastAPI) -> None:
    """The route just added to ``app`` answered by Starlette's plain request/response
    wrapper. Its handler reads the raw request and its dependencies only declare the
    bearer scheme to OpenAPI (the handler checks the token), so FastAPI's wrapper —
    solving those dependencies, its exit stacks — would only add work: about 15 µs of a
    prediction request's server time (``benchmarks/_serving_profile.py``). Routing and the
    OpenAPI document still use the route's declaration."""
    route = app.router.routes[-1]
    assert isinstance(route, APIRoute)
    route.app = request_response(route.endpoint)


def _raw(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` as a FastAPI endpoint taking the raw request (no body model)."""

    async def endpoint(request: Request) -> Response:
        return await handler(request)

    endpoint.__name__ = handler.__name__
    return endpoint
