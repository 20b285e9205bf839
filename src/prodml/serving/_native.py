"""The native prediction protocol: ``POST /v1/endpoints/{name}/predict`` with entity keys
and request data; the server fetches the entities' features from the online store and
computes on-demand features by the same code path as training.

Request (single)::

    {"entities": {"origin": "EWR", "carrier": "UA"}, "request_data": {"sched_dep_time": 517},
     "unit": "user-1", "id": "optional request id"}

Request (batch): ``entities`` (and ``request_data``) are lists of such mappings.
Response: ``request_id``, ``endpoint``, ``model_version``, ``arm``, ``status`` and
``prediction`` (single) or ``predictions`` (batch).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd

from prodml.core import SchemaError, StateError, ensure_utc
from prodml.features import columns_of
from prodml.serving._endpoint import EndpointTable
from prodml.serving._wire import FieldProblem, RequestInvalid, check_columns

if TYPE_CHECKING:
    from prodml.serving._runtime import Prediction, ServingRuntime

__all__ = ["NativeRequest", "decode_native", "encode_native"]

_KEYS = frozenset({"entities", "request_data", "unit", "id"})


@dataclass
class NativeRequest:
    """A decoded native request: the model's input frame and what to log with it."""

    frame: pd.DataFrame
    entities: dict[str, list[Any]]
    request: dict[str, list[Any]]
    versions: dict[str, str]
    batch: bool
    unit: str | None = None
    request_id: str | None = None
    freshness: dict[str, tuple[list[float | None], list[bool]]] | None = None

    def field(self, name: str) -> Any:
        for source in (self.entities, self.request):
            if source.get(name):
                return source[name][0]
        return None

    def first_row(self) -> dict[str, Any]:
        return {k: v[0] for k, v in {**self.entities, **self.request}.items() if v}


def _rows(value: Any, what: str) -> tuple[list[Mapping[str, Any]], bool]:
    if isinstance(value, Mapping):
        return [value], False
    if isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value):
        return value, True
    raise RequestInvalid(
        f"field {what!r}: expected an object or a non-empty list of objects",
        status=422,
        details=[FieldProblem(what, "wrong_type", "object or list of objects")],
    )


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


async def decode_native(body: Any, table: EndpointTable, runtime: ServingRuntime) -> NativeRequest:
    """Check the body, fetch online features, build the model's input frame."""
    if not isinstance(body, Mapping):
        raise RequestInvalid("request body must be a JSON object", status=400)
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise RequestInvalid(
            f"unknown request field(s) {unknown}: expected {sorted(_KEYS)}",
            status=422,
            details=[FieldProblem(k, "extra_field", "not part of the request") for k in unknown],
        )
    if "entities" not in body:
        raise RequestInvalid(
            "field 'entities' is missing",
            status=422,
            details=[FieldProblem("entities", "missing_field", "entity keys of the request")],
        )
    entity_rows, batch = _rows(body["entities"], "entities")
    request_rows: list[Mapping[str, Any]] = []
    if body.get("request_data") is not None:
        request_rows, _ = _rows(body["request_data"], "request_data")
        if len(request_rows) == 1 and len(entity_rows) > 1:
            request_rows = request_rows * len(entity_rows)
        if len(request_rows) != len(entity_rows):
            raise RequestInvalid(
                f"'request_data' has {len(request_rows)} rows for {len(entity_rows)} entities",
                status=422,
                details=[FieldProblem("request_data", "length", f"{len(entity_rows)} rows")],
            )
    if len(entity_rows) > runtime.config.max_batch_rows:
        raise RequestInvalid(
            f"{len(entity_rows)} rows in one request: the limit is {runtime.config.max_batch_rows}",
            status=413,
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
    service = table.service
    if service is None or runtime.features is None:
        # the deployed model has no feature service: no retry helps until a redeploy (409)
        raise StateError(
            f"endpoint {table.endpoint!r} cannot fetch features: {table.service_error}; "
            f"send the model's inputs to /v2/models/{table.endpoint}/infer instead"
        )
    entities = columns_of(entity_rows, what="entities")
    request = {n: _times(v) for n, v in columns_of(request_rows, what="request_data").items()}
    loop = asyncio.get_running_loop()
    try:
        online = await loop.run_in_executor(
            None, runtime.features.get_online, service, entities, request or None
        )
    except SchemaError as exc:
        raise RequestInvalid(
            str(exc).splitlines()[0],
            status=422,
            details=[FieldProblem("entities", "schema", "the feature service's entity keys")],
        ) from None
    for view, fresh in online.freshness.items():
        ages = [a for a in fresh.ages_s if a is not None]
        histogram = runtime.metrics.feature_age.labels(view)
        for age in ages:
            histogram.observe(age)
        stale = sum(fresh.stale)
        if stale:
            runtime.metrics.feature_stale.labels(view).inc(stale)
    signature = table.primary.signature
    columns: dict[str, Sequence[Any]] = {}
    for name in signature.columns:
        if name in online.values:
            columns[name] = online.values[name]
        elif name in request:
            columns[name] = request[name]
        elif name in entities:
            columns[name] = entities[name]
    used = set(signature.columns) | set(entities)
    for odf in service.on_demand:
        used.update(odf.inputs)
    deployment_spec = table.deployment.spec
    used.update(n for n in (deployment_spec.unit, deployment_spec.stratify_by) if n)
    extra = sorted(set(request) - used)
    if extra:
        raise RequestInvalid(
            f"request_data field(s) {extra} are not read by endpoint {table.endpoint!r}",
            status=422,
            details=[FieldProblem(n, "extra_field", "not read by the model") for n in extra],
        )
    frame = check_columns(columns, signature)
    return NativeRequest(
        frame=frame,
        entities=entities,
        request=request,
        versions=online.versions,
        batch=batch,
        unit=None if unit is None else str(unit),
        request_id=None if request_id is None else str(request_id),
        freshness={view: (f.ages_s, f.stale) for view, f in online.freshness.items()},
    )


def encode_native(prediction: Prediction, request: NativeRequest) -> bytes:
    scores = prediction.scores.tolist()
    body: dict[str, Any] = {
        "request_id": prediction.request_id,
        "endpoint": prediction.endpoint,
        "model_version": prediction.model,
        "arm": prediction.arm,
        "status": prediction.status,
    }
    if request.batch:
        body["predictions"] = scores
    else:
        body["prediction"] = scores[0]
    if prediction.violations:
        body["warnings"] = sorted({f"{v.column}: {v.kind}" for v in prediction.violations})
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
