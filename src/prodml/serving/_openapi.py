"""Request-body schemas for the OpenAPI document. Handlers decode bodies themselves
(faster than pydantic models on the hot path), so the schema is written out here for
clients and for schema-driven tests."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ACTION",
    "ADMIN",
    "DEPLOY",
    "FEEDBACK",
    "INVOCATIONS",
    "NATIVE",
    "OK",
    "PREDICT",
    "V2_INFER",
    "WEIGHTS",
]

_ERROR = {
    "description": "Error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}, "details": {"type": "array"}},
                "required": ["error"],
            }
        }
    },
}
OK: dict[int | str, dict[str, Any]] = {200: {"description": "OK"}}
PREDICT: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prediction"},
    400: _ERROR,
    401: _ERROR,
    404: _ERROR,
    409: _ERROR,
    413: _ERROR,
    422: _ERROR,
    503: _ERROR,
}
ADMIN: dict[int | str, dict[str, Any]] = {
    200: {"description": "OK"},
    400: _ERROR,
    401: _ERROR,
    403: _ERROR,
    404: _ERROR,
    409: _ERROR,
    422: _ERROR,
}


def _json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": schema}},
        }
    }


_SCALAR = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}, {"type": "null"}]}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string"},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
V2_INFER = _json_body(
    {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": _TENSOR},
            "outputs": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        },
    }
)
INVOCATIONS: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
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
                }
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}
_ROWS = {
    "anyOf": [
        {"type": "object", "additionalProperties": _SCALAR},
        {"type": "array", "items": {"type": "object", "additionalProperties": _SCALAR}},
    ]
}
NATIVE = _json_body(
    {
        "type": "object",
        "required": ["entities"],
        "properties": {
            "entities": _ROWS,
            "request_data": _ROWS,
            "unit": {"type": "string"},
            "id": {"type": "string"},
        },
    }
)
_FEEDBACK_ITEM = {
    "type": "object",
    "required": ["endpoint"],
    "properties": {
        "endpoint": {"type": "string"},
        "request_id": {"type": "string"},
        "entities": {"type": "object"},
        "event_time": {"type": "string", "format": "date-time"},
        "time": {"type": "string", "format": "date-time"},
        "label": _SCALAR,
        "reward": {"type": "number"},
    },
}
FEEDBACK = _json_body(
    {
        "anyOf": [
            _FEEDBACK_ITEM,
            {
                "type": "object",
                "required": ["items"],
                "properties": {"items": {"type": "array", "items": _FEEDBACK_ITEM}},
            },
        ]
    }
)
DEPLOY = _json_body(
    {
        "type": "object",
        "required": ["spec"],
        "properties": {"spec": {"type": "object"}, "reason": {"type": "string"}},
    }
)
WEIGHTS = _json_body(
    {
        "type": "object",
        "required": ["weights"],
        "properties": {
            "weights": {"type": "object", "additionalProperties": {"type": "number"}},
            "reason": {"type": "string"},
        },
    }
)
ACTION = _json_body(
    {"type": "object", "properties": {"reason": {"type": "string"}, "arm": {"type": "string"}}},
    required=False,
)
