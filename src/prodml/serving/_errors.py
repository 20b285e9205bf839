"""What an error is over HTTP: one table from exception class to (HTTP status, error
label), read by the error responses (:func:`error_response`) and by the ``error`` label
of ``prodml_responses_total`` (:func:`error_label`) alike.

An error takes the row of the nearest class of its MRO in :data:`ERRORS`; one of no row
is a 500 labelled ``internal``. A few rows refine the status by the instance: a
:class:`RequestInvalid` carries its own, a user feature function's failure is a 422 when
the request's values caused it, an HTTP exception keeps its status code (and is labelled
by it when it means no route, no method or a body too large).

>>> from prodml.core import CircuitOpenError, DeploymentNotFoundError
>>> classify(DeploymentNotFoundError("no such endpoint")), classify(KeyError("x"))
((404, 'not_found'), (500, 'internal'))
>>> classify(CircuitOpenError("arm 'canary' circuit breaker is open"))
(503, 'circuit_open')
>>> classify(HTTPException(413)), error_label(HTTPException(418))
((413, 'too_large'), 'http')
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from prodml.core import (
    AuthError,
    BadOutputError,
    CircuitOpenError,
    ConflictError,
    DataValidationError,
    DefinitionError,
    ModelTimeoutError,
    NotFoundError,
    ProdMLError,
    SchemaError,
    ServingError,
    StateError,
)
from prodml.features import FeatureFunctionError
from prodml.serving._auth import RoleError
from prodml.serving._responses import json_response
from prodml.serving._wire import RequestInvalid

__all__ = ["ERRORS", "ErrorClass", "classify", "error_label", "error_response", "status_of"]

log = logging.getLogger("prodml.serving")


@dataclass(frozen=True)
class ErrorClass:
    """The HTTP status and the ``prodml_responses_total`` label of a class of errors;
    ``refine`` (if any) gives an instance's own (status, label) from the class's."""

    status: int
    label: str
    refine: Callable[[Any, int, str], tuple[int, str]] | None = None


def _own_status(exc: Any, status: int, label: str) -> tuple[int, str]:
    return int(exc.status), label


def _by_fault(exc: Any, status: int, label: str) -> tuple[int, str]:
    return (422 if exc.input_fault else 500), label


_HTTP_LABELS: Mapping[int, str] = {404: "route", 405: "method", 413: "too_large"}


def _by_status_code(exc: Any, status: int, label: str) -> tuple[int, str]:
    code = int(exc.status_code)
    return code, _HTTP_LABELS.get(code, label)


#: Exception class → how it is answered and counted; a fixed vocabulary of labels,
#: never an error's text.
ERRORS: Mapping[type[BaseException], ErrorClass] = {
    RequestInvalid: ErrorClass(400, "request_invalid", _own_status),
    RoleError: ErrorClass(403, "forbidden"),
    AuthError: ErrorClass(401, "unauthorized"),
    NotFoundError: ErrorClass(404, "not_found"),
    ConflictError: ErrorClass(409, "conflict"),
    StateError: ErrorClass(409, "state"),
    FeatureFunctionError: ErrorClass(500, "feature_function", _by_fault),
    SchemaError: ErrorClass(422, "schema"),
    DataValidationError: ErrorClass(422, "data_validation"),
    DefinitionError: ErrorClass(422, "definition"),
    ModelTimeoutError: ErrorClass(503, "timeout"),
    CircuitOpenError: ErrorClass(503, "circuit_open"),
    BadOutputError: ErrorClass(503, "bad_output"),
    ServingError: ErrorClass(503, "unavailable"),
    RequestValidationError: ErrorClass(422, "parameters"),
    HTTPException: ErrorClass(500, "http", _by_status_code),
}
_INTERNAL = (500, "internal")


def classify(exc: BaseException) -> tuple[int, str]:
    """The (HTTP status, error label) of ``exc``: its nearest class in :data:`ERRORS`."""
    for cls in type(exc).__mro__:
        row = ERRORS.get(cls)
        if row is not None:
            if row.refine is None:
                return row.status, row.label
            return row.refine(exc, row.status, row.label)
    return _INTERNAL


def status_of(exc: BaseException) -> int:
    """The HTTP status of an error."""
    return classify(exc)[0]


def error_label(exc: BaseException) -> str:
    """The ``error`` label of an exception in ``prodml_responses_total``."""
    return classify(exc)[1]


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
