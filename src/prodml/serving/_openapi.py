"""The OpenAPI document's declarations for every route, written out by hand.

Handlers read the raw request (faster than pydantic models on the hot path), so FastAPI
sees neither their parameters nor their bodies: each route declares here its path,
query and header parameters (``openapi_extra``), its request body in every content
type it accepts, its answers by status with their schemas, and whether it needs a
bearer token (:data:`BEARER`). The document validates as OpenAPI 3.1 and is what
schema-driven clients and tests (schemathesis) generate requests from.
"""

from __future__ import annotations

from typing import Any

from fastapi import Path
from fastapi.security import HTTPBearer

from prodml.core import NAME_PATTERN
from prodml.serving._v2 import DATATYPES

__all__ = [
    "ACTION",
    "ADMIN",
    "ADMIN_CHANGE",
    "BEARER",
    "DEPLOY",
    "DEPLOYMENTS_OK",
    "DEPLOYMENT_OK",
    "ENDPOINTS_OK",
    "ENDPOINT_NAME",
    "ENDPOINT_OK",
    "ENDPOINT_PATH",
    "ENDPOINT_QUERY",
    "FEEDBACK",
    "FEEDBACK_OK",
    "HEADER_LENGTH",
    "HEALTHZ",
    "HISTORY_OK",
    "INVOCATIONS",
    "MODEL_NAME",
    "NATIVE",
    "NATIVE_OK",
    "PREDICTIONS",
    "PREDICT_ERRORS",
    "PREDICT_HEADERS",
    "PROMOTE",
    "READYZ",
    "V2_INFER",
    "V2_INFER_OK",
    "V2_LIVE",
    "V2_MODEL_METADATA",
    "V2_MODEL_READY",
    "V2_READY",
    "V2_SERVER_METADATA",
    "VERSION",
    "WEIGHTS",
    "answers",
    "json_answer",
    "operation",
    "text_answer",
]

Schema = dict[str, Any]
Responses = dict[int | str, dict[str, Any]]

BEARER = HTTPBearer(
    scheme_name="bearer",
    description="A token of `[[serving.tokens]]` in prodml.toml: `Authorization: Bearer <token>`",
    auto_error=False,  # the handlers check the token and its role themselves
)
"""The bearer-token security scheme (a FastAPI dependency that only declares it)."""

_NAME: Schema = {"type": "string", "pattern": NAME_PATTERN.pattern}
ENDPOINT_PATH = Path(
    description="The endpoint's name", json_schema_extra={"pattern": NAME_PATTERN.pattern}
)
"""A path parameter naming an endpoint (for handlers FastAPI reads parameters for)."""

_MAX_ID = 128  # the longest request id or idempotency key a predict route accepts


def _parameter(name: str, where: str, description: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


MODEL_NAME = _parameter("model_name", "path", "The endpoint's name (V2 calls it the model)", _NAME)
VERSION = _parameter(
    "version",
    "path",
    "A model version number one of the endpoint's live arms serves",
    {"type": "string", "pattern": "^[0-9]+$"},
)
ENDPOINT_NAME = _parameter("name", "path", "The endpoint's name", _NAME)
ENDPOINT_QUERY = _parameter(
    "endpoint", "query", "The endpoint to score with (needed when several are deployed)", _NAME
)
PREDICT_HEADERS = [
    _parameter(
        "Idempotency-Key",
        "header",
        "Replays the first answer to a retry of the same request under this key; a "
        "different request under a used key is refused with 422",
        {"type": "string", "maxLength": _MAX_ID},
    ),
    _parameter(
        "X-Request-ID",
        "header",
        "The request id logged with the prediction (default: a new one)",
        {"type": "string", "maxLength": _MAX_ID},
    ),
    _parameter(
        "X-Prodml-Unit",
        "header",
        "The routing unit that keeps a caller on one arm (default: the deployment's unit "
        "field, else the request id)",
        {"type": "string"},
    ),
]
HEADER_LENGTH = _parameter(
    "Inference-Header-Content-Length",
    "header",
    "Triton's binary tensor extension: the byte length of the JSON part of the body; the "
    "raw tensor bytes follow it",
    {"type": "integer", "minimum": 0},
)

# -- answers ---------------------------------------------------------------------------

_PROBLEM: Schema = {
    "type": "object",
    "required": ["field", "problem", "expected"],
    "properties": {
        "field": {"type": "string"},
        "problem": {"type": "string"},
        "expected": {"type": "string"},
    },
}
_ERROR_BODY: Schema = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {"error": {"type": "string"}, "details": {"type": "array", "items": _PROBLEM}},
}
_ERRORS = {
    400: "The body is malformed (not JSON, not the protocol's shape)",
    401: "A bearer token is missing or unknown",
    403: "The token's role may not do this",
    404: "No such endpoint, model version or route",
    409: "The request conflicts with the endpoint's state",
    413: "The body is over `serving.max_request_bytes` (streamed bodies are cut off there, "
    "with `Connection: close`), or holds more rows than `serving.max_batch_rows`",
    415: "The content type is not one the route reads (a JSON route reads "
    "`application/json`, charset UTF-8 if given)",
    422: "The request does not fit the contract (model inputs, field types, reused key)",
    503: "The model or the server cannot answer now (not ready, timed out, circuit open)",
}


def json_answer(description: str, schema: Schema | None = None) -> dict[str, Any]:
    """An answer with a JSON body (of ``schema`` when given)."""
    media: dict[str, Any] = {} if schema is None else {"schema": schema}
    return {"description": description, "content": {"application/json": media}}


def text_answer(description: str) -> dict[str, Any]:
    """An answer with a plain-text body."""
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def answers(ok: dict[str, Any], *errors: int) -> Responses:
    """The ``responses`` of a route: ``ok`` for 200 and the error body for each status
    of ``errors``."""
    return {200: ok, **{status: json_answer(_ERRORS[status], _ERROR_BODY) for status in errors}}


PREDICT_ERRORS = (400, 404, 409, 413, 415, 422, 503)
"""The error statuses of a route that predicts."""
ADMIN = (400, 401, 403, 404, 409, 413, 422)
"""The error statuses of an admin route."""
ADMIN_CHANGE = (*ADMIN, 415)
"""The error statuses of an admin route that takes a JSON body."""

_ANY_OBJECT: Schema = {"type": "object"}
HEALTHZ = json_answer(
    "The process is alive",
    {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
)
V2_LIVE = json_answer(
    "The server is live",
    {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
)
V2_SERVER_METADATA = json_answer(
    "The server's name, version and protocol extensions",
    {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
)
_DEPLOYMENT: Schema = {
    "type": "object",
    "required": ["endpoint", "revision", "spec"],
    "properties": {
        "endpoint": {"type": "string"},
        "revision": {"type": "integer"},
        "spec": _ANY_OBJECT,
    },
}
_V2_OUTPUT: Schema = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
        },
        "data": {"type": "array"},
    },
}
_V2_INFER_RESPONSE: Schema = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": _ANY_OBJECT,
        "outputs": {"type": "array", "items": _V2_OUTPUT},
    },
}
_V2_TENSOR_METADATA: Schema = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
V2_MODEL_METADATA = json_answer(
    "The model's metadata",
    {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _V2_TENSOR_METADATA},
            "outputs": {"type": "array", "items": _V2_TENSOR_METADATA},
        },
    },
)
V2_MODEL_READY = json_answer(
    "Whether the model is ready",
    {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
)
_BINARY: Schema = {"type": "string", "format": "binary"}
V2_INFER_OK = {
    "description": "The outputs. With binary outputs asked for (`binary_data_output`, or "
    "an output's `binary_data`), the body is the JSON of `Inference-Header-Content-Length` "
    "bytes followed by those outputs' raw little-endian bytes (`binary_data_size` each).",
    "headers": {
        "Inference-Header-Content-Length": {
            "description": "The byte length of the JSON part (binary outputs only)",
            "schema": {"type": "integer", "minimum": 0},
        }
    },
    "content": {
        "application/json": {"schema": _V2_INFER_RESPONSE},
        "application/octet-stream": {"schema": _BINARY},
    },
}
PREDICTIONS = json_answer(
    "The model's predictions", {"type": "object", "required": ["predictions"]}
)
NATIVE_OK = json_answer(
    "The prediction, the arm and model version that made it, and any warnings",
    {
        "type": "object",
        "required": ["request_id", "endpoint", "status"],
        "properties": {
            "request_id": {"type": "string"},
            "endpoint": {"type": "string"},
            "model_version": {"type": ["string", "null"]},
            "arm": {"type": ["string", "null"]},
            "status": {"type": "string"},
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    },
)
FEEDBACK_OK = json_answer("The items stored", _ANY_OBJECT)
ENDPOINT_OK = json_answer(
    "The endpoint: its revision, policy, arms and feature service",
    {"type": "object", "required": ["endpoint", "revision", "arms"]},
)
ENDPOINTS_OK = json_answer(
    "Every endpoint deployed on this server",
    {"type": "array", "items": {"type": "object", "required": ["endpoint", "revision", "arms"]}},
)
ADMIN_ACTION_OK = json_answer("The command's result", _ANY_OBJECT)
DEPLOYMENT_OK = json_answer("The deployment after the change", _DEPLOYMENT)
DEPLOYMENTS_OK = json_answer("Every deployment", {"type": "array", "items": _DEPLOYMENT})
HISTORY_OK = json_answer(
    "Every change of the deployment, oldest first",
    {"type": "array", "items": {"type": "object", "required": ["revision", "action"]}},
)
_READINESS: Schema = {
    "type": "object",
    "required": ["ready", "models_loaded", "stores", "endpoints"],
    "properties": {
        "ready": {"type": "boolean"},
        "models_loaded": {"type": "boolean"},
        "stores": {"type": "object", "additionalProperties": {"type": "string"}},
        "endpoints": {"type": "object", "additionalProperties": {"type": "integer"}},
        "error": {"type": ["string", "null"]},
    },
}
READYZ: Responses = {
    200: json_answer("Ready", _READINESS),
    503: json_answer("Not ready, and why", _READINESS),
}
_V2_READY: Schema = {"type": "object", "required": ["ready"], "properties": {"ready": {}}}
V2_READY: Responses = {
    200: json_answer("Ready", _V2_READY),
    503: json_answer("Not ready", _V2_READY),
}
# -- request bodies ----------------------------------------------------------------------


def _body(content: dict[str, Schema], *, required: bool = True) -> dict[str, Any]:
    return {
        "required": required,
        "content": {media: {"schema": schema} for media, schema in content.items()},
    }


def operation(*parameters: Schema, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``openapi_extra`` of a route: its parameters and its request body."""
    extra: dict[str, Any] = {}
    if parameters:
        extra["parameters"] = list(parameters)
    if body is not None:
        extra["requestBody"] = body
    return extra


_SCALAR: Schema = {"type": ["number", "string", "boolean", "null"]}
_TENSOR: Schema = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"enum": list(DATATYPES)},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
        },
        "data": {"type": "array"},
    },
}
_V2_REQUEST: Schema = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_output": {"type": "boolean"}},
        },
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "parameters": {
                        "type": "object",
                        "properties": {"binary_data": {"type": "boolean"}},
                    },
                },
            },
        },
    },
}


V2_INFER = _body(
    {
        "application/json": _V2_REQUEST,
        # Triton's binary tensor extension: the JSON, then the raw tensor bytes
        "application/octet-stream": _BINARY,
    }
)

INVOCATIONS = _body(
    {
        "application/json": {
            "type": "object",
            "properties": {
                "dataframe_split": {
                    "type": "object",
                    "properties": {
                        "columns": {"type": "array", "items": {"type": "string"}},
                        "data": {"type": "array", "items": {"type": "array"}},
                    },
                },
                "dataframe_records": {"type": "array", "items": {"type": "object"}},
                "instances": {"type": "array"},
                "inputs": {},
                "params": {"type": "object"},
            },
        },
        "text/csv": {"type": "string"},
        "application/vnd.apache.parquet": _BINARY,
    }
)


_ROWS: Schema = {
    "anyOf": [
        {"type": "object", "additionalProperties": _SCALAR},
        {"type": "array", "items": {"type": "object", "additionalProperties": _SCALAR}},
    ]
}
NATIVE = _body(
    {
        "application/json": {
            "type": "object",
            "required": ["entities"],
            "properties": {
                "entities": _ROWS,
                "request_data": _ROWS,
                "unit": {"type": "string"},
                "id": {"type": "string", "maxLength": _MAX_ID},
            },
        }
    }
)
_OPTIONAL_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
_FEEDBACK_ITEM: Schema = {
    "type": "object",
    "required": ["endpoint"],
    "additionalProperties": False,
    "properties": {
        "endpoint": _NAME,
        "request_id": {"type": ["string", "null"]},
        "entities": {
            "type": ["object", "null"],
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "event_time": _OPTIONAL_TIME,
        "time": _OPTIONAL_TIME,
        "label": _SCALAR,
        "reward": {"type": ["number", "null"]},
    },
}
FEEDBACK = _body(
    {
        "application/json": {
            "anyOf": [
                _FEEDBACK_ITEM,
                {
                    "type": "object",
                    "required": ["items"],
                    "additionalProperties": False,
                    "properties": {
                        "items": {"type": "array", "minItems": 1, "items": _FEEDBACK_ITEM}
                    },
                },
            ]
        }
    }
)
_REASON: Schema = {"type": ["string", "null"], "description": "Why, for the audit trail"}
_EXPECTED: Schema = {
    "type": ["integer", "null"],
    "minimum": 0,
    "description": "The revision the change was made against (0: no deployment yet; null or "
    "absent: any); another current revision is a 409 and nothing is written",
}
DEPLOY = _body(
    {
        "application/json": {
            "type": "object",
            "required": ["spec"],
            "additionalProperties": False,
            "properties": {"spec": _ANY_OBJECT, "reason": _REASON, "expected_revision": _EXPECTED},
        }
    }
)
WEIGHTS = _body(
    {
        "application/json": {
            "type": "object",
            "required": ["weights"],
            "additionalProperties": False,
            "properties": {
                "weights": {"type": "object", "additionalProperties": {"type": "number"}},
                "reason": _REASON,
                "expected_revision": _EXPECTED,
            },
        }
    }
)
ADMIN_BODY = _body({"application/json": _ANY_OBJECT}, required=False)
ACTION = _body(
    {
        "application/json": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"reason": _REASON, "expected_revision": _EXPECTED},
        }
    },
    required=False,
)
PROMOTE = _body(
    {
        "application/json": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "reason": _REASON,
                "arm": {"type": "string", "description": "The arm to promote (challenger)"},
                "expected_revision": _EXPECTED,
            },
        }
    },
    required=False,
)
