"""The native prediction protocol's codec: ``POST /v1/endpoints/{name}/predict`` with entity
keys and request data. :func:`decode_native` checks a body against the endpoint's
:class:`NativeSchema`; the pipeline then fetches the entities' features from the online
store (on-demand features computed by the same code path as training) and
:func:`native_frame` builds the model's input from them; :func:`encode_native` writes
the answer.

Request (single)::

    {"entities": {"origin": "EWR", "carrier": "UA"}, "request_data": {"sched_dep_time": 517},
     "unit": "user-1", "id": "optional request id"}

Request (batch): ``entities`` (and ``request_data``) are lists of such objects, or
objects of equally long lists (column form, ``{"origin": ["EWR", "JFK"], …}``); N rows
in, N predictions out. One row of ``request_data`` goes with every entity. Entity keys
and request fields are checked against the types of the model's training set (a whole
float is taken for an integer; nothing else is coerced). An entity with no row in a
feature view's online store is counted and logged, and by the endpoint's
``on_missing_entity`` policy served with a warning (``warn``), served (``serve``) or
refused (``refuse``).
Response: ``request_id``, ``endpoint``, ``model_version``, ``arm``, ``status``,
``prediction`` (single) or ``predictions`` (batch), and ``warnings`` when there are any.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pandas as pd

from prodml.core import StateError, ensure_utc
from prodml.features import FeatureService, columns_of
from prodml.registry import Signature
from prodml.serving._prediction import Prediction
from prodml.serving._wire import (
    FieldProblem,
    RequestInvalid,
    check_columns,
    check_row_limit,
    expected_values,
    typed_columns,
    unknown_fields,
)
from prodml.validation import RowViolation

__all__ = ["NativeRequest", "NativeSchema", "decode_native", "encode_native", "native_frame"]

_KEYS = frozenset({"entities", "request_data", "unit", "id"})


@dataclass(frozen=True)
class NativeSchema:
    """What a native body is checked against: the endpoint's model signature, the types
    of its entity keys and request fields as trained, its feature service (None: it has
    none, or the server has no feature store; ``service_error`` says why) and the
    request fields its deployment routes by (``unit``, ``stratify_by``)."""

    endpoint: str
    signature: Signature
    request_types: Mapping[str, str]
    service: FeatureService | None
    service_error: str | None = None
    routing_fields: tuple[str, ...] = ()

    def require_service(self) -> FeatureService:
        """The feature service, or a 409: no retry helps until a redeploy."""
        if self.service is None:
            raise StateError(
                f"endpoint {self.endpoint!r} cannot fetch features: {self.service_error}; "
                f"send the model's inputs to /v2/models/{self.endpoint}/infer instead"
            )
        return self.service


@dataclass(frozen=True)
class NativeRequest:
    """A decoded native body: its entity keys and request fields as typed columns,
    whether it is a batch, and its optional routing unit and request id."""

    entities: dict[str, list[Any]]
    request: dict[str, list[Any]]
    batch: bool
    unit: str | None = None
    request_id: str | None = None

    def field(self, name: str) -> Any:
        for source in (self.entities, self.request):
            if source.get(name):
                return source[name][0]
        return None

    def first_row(self) -> dict[str, Any]:
        return {k: v[0] for k, v in {**self.entities, **self.request}.items() if v}


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, list | Mapping)


def _columns(
    value: Any, what: str, known: Collection[str] = ()
) -> tuple[dict[str, list[Any]], bool]:
    """The columns of a request part and whether it is a batch. A part is one row (an
    object of values), rows (a list of objects) or columns (an object of equally long
    lists); every value is a scalar. Problems are named ``what.field``."""
    problems: list[FieldProblem] = []
    if isinstance(value, Mapping) and value and not all(map(_is_scalar, value.values())):
        lists = {str(k): v for k, v in value.items() if isinstance(v, list)}
        problems += [
            FieldProblem(_field(what, k, known), "is a single value beside lists", "a list")
            for k, v in value.items()
            if not isinstance(v, list)
        ]
        if problems:
            raise RequestInvalid.of(problems)
        length = len(next(iter(lists.values())))
        if length == 0:
            raise RequestInvalid.of([FieldProblem(what, "has no rows", "at least one row")])
        for name, column in lists.items():
            if len(column) != length:
                problems.append(
                    FieldProblem(
                        _field(what, name, known),
                        f"has {len(column)} values",
                        f"{length} like the first",
                    )
                )
            elif not all(map(_is_scalar, column)):
                row = next(i for i, v in enumerate(column) if not _is_scalar(v))
                problems.append(
                    FieldProblem(_field(what, name, known), f"is nested at row {row}", "scalars")
                )
        if problems:
            raise RequestInvalid.of(problems)
        return lists, True
    if isinstance(value, Mapping):
        rows: list[Mapping[str, Any]] = [value]
    elif isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value):
        rows = value
    else:
        raise RequestInvalid(
            f"field {what!r}: expected an object, a non-empty list of objects, or an object "
            "of equally long lists",
            status=422,
            details=[FieldProblem(what, "wrong_type", "object, list of objects or columns")],
        )
    columns = columns_of(rows, what=what)
    for name, column in columns.items():
        if not all(map(_is_scalar, column)):
            row = next(i for i, v in enumerate(column) if not _is_scalar(v))
            problem = FieldProblem(_field(what, name, known), f"is nested at row {row}", "a scalar")
            problems.append(problem)
    if problems:
        raise RequestInvalid.of(problems)
    return columns, not isinstance(value, Mapping)


def _field(what: str, name: Any, known: Collection[str]) -> str:
    """``what.name`` for a field the endpoint knows; a made-up name is not repeated."""
    return f"{what}.{name}" if name in known else f"{what}.(unknown field)"


_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _times(values: list[Any]) -> list[Any]:
    """A request column of ISO 8601 date-times (JSON has no time type) as UTC datetimes,
    so on-demand features get timestamps as they do in training; others unchanged."""
    if not values or not all(isinstance(v, str) and _ISO_TIME.match(v) for v in values):
        return values
    try:
        return [ensure_utc(datetime.fromisoformat(v.replace("Z", "+00:00"))) for v in values]
    except ValueError:
        return values


def _declared_rows(value: Any) -> int:
    """How many rows a request part says it holds, read from list lengths alone: rows
    (a list) or columns (an object of lists; the longest)."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, Mapping):
        return max((len(v) for v in value.values() if isinstance(v, list)), default=1)
    return 1


def _rows_of(columns: Mapping[str, list[Any]]) -> int:
    return len(next(iter(columns.values()), []))


def decode_native(body: Any, schema: NativeSchema, *, max_rows: int) -> NativeRequest:
    """Check a parsed body against ``schema`` (at most ``max_rows`` rows): its fields,
    shapes and types, and that it sends every request field an on-demand feature reads
    and none that nothing reads."""
    if not isinstance(body, Mapping):
        raise RequestInvalid("request body must be a JSON object", status=400)
    unknown = set(body) - _KEYS
    if unknown:  # counted, not named: a made-up name is client input
        raise RequestInvalid.of(
            [unknown_fields(len(unknown), "the request's fields", ", ".join(sorted(_KEYS)))]
        )
    if "entities" not in body:
        raise RequestInvalid(
            "field 'entities' is missing",
            status=422,
            details=[FieldProblem("entities", "missing_field", "entity keys of the request")],
        )
    count = max(_declared_rows(body["entities"]), _declared_rows(body.get("request_data")))
    check_row_limit(count, max_rows, "entities")  # before any value
    known = {*schema.request_types, *schema.signature.columns}
    if schema.service is not None:
        known.update(schema.service.join_keys)
    entities, batch = _columns(body["entities"], "entities", known)
    count = _rows_of(entities)
    request: dict[str, list[Any]] = {}
    if body.get("request_data") is not None:
        request, _ = _columns(body["request_data"], "request_data", known)
        rows = _rows_of(request)
        if rows == 1 and count > 1:
            request = {name: column * count for name, column in request.items()}
        elif rows != count:
            raise RequestInvalid(
                f"'request_data' has {rows} rows for {count} entities",
                status=422,
                details=[FieldProblem("request_data", "length", f"{count} rows, or one")],
            )
    unit = body.get("unit")
    request_id = body.get("id")
    for name, value in (("unit", unit), ("id", request_id)):
        if value is not None and not isinstance(value, str | int):
            raise RequestInvalid(
                f"field {name!r}: expected a string",
                status=422,
                details=[FieldProblem(name, "wrong_type", "string")],
            )
    service = schema.require_service()
    types = schema.request_types
    entities = typed_columns(
        entities, types, prefix="entities.", required=frozenset(service.join_keys)
    )
    request = typed_columns(request, types, prefix="request_data.")
    request = {n: v if n in types else _times(v) for n, v in request.items()}
    _check_request_fields(schema, service, entities, request)
    return NativeRequest(
        entities=entities,
        request=request,
        batch=batch,
        unit=None if unit is None else str(unit),
        request_id=None if request_id is None else str(request_id),
    )


def native_frame(
    request: NativeRequest, values: Mapping[str, Sequence[Any]], signature: Signature
) -> pd.DataFrame:
    """The model's input: each signature column from the online ``values`` (features),
    else the request's fields, else its entity keys."""
    columns: dict[str, Sequence[Any]] = {}
    for name in signature.columns:
        if name in values:
            columns[name] = values[name]
        elif name in request.request:
            columns[name] = request.request[name]
        elif name in request.entities:
            columns[name] = request.entities[name]
    return check_columns(columns, signature)


def _check_request_fields(
    schema: NativeSchema,
    service: FeatureService,
    entities: Mapping[str, Any],
    request: Mapping[str, Any],
) -> None:
    """Before any feature is fetched: every request field an on-demand feature reads is
    sent (422 naming it), and no field is sent that nothing reads (422 counting them)."""
    features = {f.name for p in service.projections for f in p.features}
    features.update(n for odf in service.on_demand for n in odf.output_names)
    inputs = {i for odf in service.on_demand for i in odf.inputs}
    model = set(schema.signature.columns)
    fields = (inputs | model) - features - set(service.join_keys)
    fields.update(schema.routing_fields)
    missing = sorted(inputs - features - set(entities) - set(request))
    if missing:
        types = schema.request_types
        raise RequestInvalid.of(
            [
                FieldProblem(
                    f"request_data.{name}",
                    "is missing",
                    expected_values(types[name]) if name in types else "a value",
                )
                for name in missing
            ]
        )
    extra = set(request) - fields - set(entities)
    if extra:
        read = ", ".join(sorted(fields)) or "none"
        raise RequestInvalid.of(
            [unknown_fields(len(extra), f"the fields endpoint {schema.endpoint!r} reads", read,
                            where="request_data")]
        )  # fmt: skip


def encode_native(
    prediction: Prediction, *, batch: bool, hidden: Collection[RowViolation] = ()
) -> bytes:
    """The answer: ``prediction`` (single) or ``predictions`` (``batch``), and the
    violations found as ``warnings``, but for those ``hidden``."""
    scores = prediction.scores.tolist()
    body: dict[str, Any] = {
        "request_id": prediction.request_id,
        "endpoint": prediction.endpoint,
        "model_version": prediction.model,
        "arm": prediction.arm,
        "status": prediction.status,
    }
    if batch:
        body["predictions"] = scores
    else:
        body["prediction"] = scores[0]
    warnings = sorted({f"{v.column}: {v.kind}" for v in prediction.violations if v not in hidden})
    if warnings:
        body["warnings"] = warnings
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
