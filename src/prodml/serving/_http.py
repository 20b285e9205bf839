"""What every route module shares of the HTTP layer: reading a request's body within
``serving.max_request_bytes``, refusing other content types, and :class:`RouteContext`,
the dependencies the route modules (``_routes``, ``_admin``, ``_feedback``) are handed
instead of reaching for the app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from prodml.core import ServingConfig
from prodml.serving._auth import Tokens
from prodml.serving._runtime import ServingRuntime
from prodml.serving._wire import FieldProblem, RequestInvalid

__all__ = [
    "JSON_TYPES",
    "REQUIRED",
    "Handler",
    "PredictHandlers",
    "RouteContext",
    "parse_json",
    "read_body",
    "require_content_type",
]

JSON_TYPES = ("application/json",)
"""What the JSON routes read (native predict, feedback, admin changes)."""
REQUIRED: Any = object()  # RouteContext.json: the body may not be empty

Handler = Callable[[Request], Awaitable[Response]]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, counted while it streams in: past ``limit`` bytes (declared or
    sent, with or without a Content-Length) a 413 with ``Connection: close``, since the
    rest of the body is left unread on the connection."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(data: bytes) -> Any:
    """A JSON body (400 when it is not JSON)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise RequestInvalid("request body is not valid JSON", status=400) from None


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


@dataclass(frozen=True)
class RouteContext:
    """What a route module needs of the server: the runtime and the bearer tokens, and
    the body reading every route shares."""

    runtime: ServingRuntime
    tokens: Tokens

    @property
    def config(self) -> ServingConfig:
        return self.runtime.config

    async def body(self, request: Request) -> bytes:
        """The request body, within ``serving.max_request_bytes`` (see :func:`read_body`)."""
        return await read_body(request, self.runtime.config.max_request_bytes)

    async def json(self, request: Request, *, empty: Any = REQUIRED) -> Any:
        """The parsed body of a JSON route (415 for another content type); an optional
        body (``empty`` given) may be empty, of any content type: ``empty`` is returned."""
        if empty is REQUIRED:
            require_content_type(request, JSON_TYPES)
        data = await self.body(request)
        if empty is not REQUIRED:
            if not data.strip():
                return empty
            require_content_type(request, JSON_TYPES)
        return parse_json(data)

    def check_predict_token(self, request: Request) -> None:
        """A viewer's bearer token, when ``serving.predict_requires_token``."""
        if self.runtime.config.predict_requires_token:
            self.tokens.require(request.headers.get("authorization"), "viewer")


class PredictHandlers(Protocol):
    """The handlers of the prediction routes that ``_routes`` registers."""

    async def v2_infer(self, request: Request) -> Response: ...

    async def v2_model(self, request: Request) -> Response: ...

    async def v2_model_ready(self, request: Request) -> Response: ...

    async def invocations(self, request: Request) -> Response: ...

    async def native_predict(self, request: Request) -> Response: ...

    async def feedback(self, request: Request) -> Response: ...
