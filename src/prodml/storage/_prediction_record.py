"""The records of the prediction and label logs, defined once.

:class:`PredictionRecord` and :class:`LabelRecord` are the definitions: each field's
Python type, Arrow type (as the log writer stores it) and meaning, in the order a writer
puts them. :data:`PREDICTION_SCHEMA`, :data:`LABEL_SCHEMA` and the field lists derive
from them. Being ``TypedDict`` s, the records cost nothing on the request path (a record
is a plain dict) while mypy checks the names and types of a record written as one.

Besides its fixed fields, a prediction record holds columns named per feature, entity
key and feature view; the functions below make and recognise those names.

>>> PREDICTION_SCHEMA.names[:4]
['time', 'request_id', 'endpoint', 'arm']
>>> feature_column("distance"), entity_column("origin"), feature_age_column("flights")
('feature.distance', 'entity.origin', 'feature_age.flights')
>>> features_in(["time", "feature.distance", "feature_age.flights", "entity.origin"])
{'distance': 'feature.distance'}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NotRequired, TypedDict, get_type_hints

import pyarrow as pa

from prodml.storage._log_format import LOG_TIMESTAMP

__all__ = [
    "ENTITY_PREFIX",
    "FEATURE_AGE_PREFIX",
    "FEATURE_PREFIX",
    "FEATURE_STALE_PREFIX",
    "LABEL_FIELDS",
    "LABEL_SCHEMA",
    "PREDICTION_FIELDS",
    "PREDICTION_SCHEMA",
    "LabelRecord",
    "LogField",
    "PredictionRecord",
    "entity_column",
    "entity_keys_in",
    "feature_age_column",
    "feature_ages_in",
    "feature_column",
    "feature_stale_column",
    "feature_stale_in",
    "features_in",
]


@dataclass(frozen=True)
class LogField:
    """One fixed field of a log record: its column ``name``, the Arrow ``type`` the
    writer stores (a column with no value in a file is stored as null there) and what
    it holds (``doc``)."""

    name: str
    type: pa.DataType
    doc: str


class PredictionRecord(TypedDict):
    """One predicted row, live or shadow (a shadow record holds no feature values: they
    are its live record's, found by ``request_id`` and ``row``)."""

    time: Annotated[datetime, LOG_TIMESTAMP, "when the prediction was logged (UTC)"]
    request_id: Annotated[str, pa.string(), "the request's id; feedback names it"]
    endpoint: Annotated[str, pa.string(), "the endpoint (the log's partition)"]
    arm: Annotated[str, pa.string(), "the deployment arm that answered"]
    role: Annotated[
        str | None, pa.string(), "the arm's role (champion, challenger, canary, shadow, arm)"
    ]
    model_version: Annotated[str | None, pa.string(), "the model version (name:version)"]
    unit: Annotated[str, pa.string(), "the routing unit (user, session or request id)"]
    stratum: Annotated[str | None, pa.string(), "the stratum it was routed in (stratified)"]
    status: Annotated[str, pa.string(), "ok, fallback, degraded or error"]
    shadow: Annotated[bool, pa.bool_(), "whether a shadow arm gave it (not answered)"]
    shadow_of: Annotated[str | None, pa.string(), "a shadow record's live arm"]
    latency_ms: Annotated[float, pa.float64(), "the prediction's latency in milliseconds"]
    propensity: Annotated[float | None, pa.float64(), "probability of the arm (bandits)"]
    fallback_from: Annotated[str | None, pa.string(), "the arm that failed, on fallback"]
    error: Annotated[str | None, pa.string(), "a failed prediction's error type (class name)"]
    violations: Annotated[str | None, pa.string(), "input violations 'column:kind;…'"]
    protocol: Annotated[str | None, pa.string(), "the wire protocol (mlflow, v2, native)"]
    feature_versions: Annotated[
        str | None, pa.string(), "feature view → version read, as JSON (sorted keys)"
    ]
    row: Annotated[int, pa.int64(), "the row's index in its request"]
    output: Annotated[float | None, pa.float64(), "the model's score for the row"]


class LabelRecord(TypedDict):
    """One label or reward, from ``POST /v1/feedback`` or a label import; it answers a
    request by ``request_id``, or the predictions whose entity keys are ``entities`` and whose
    time is exactly ``event_time``."""

    time: Annotated[datetime, LOG_TIMESTAMP, "when the label became known (UTC)"]
    endpoint: Annotated[str, pa.string(), "the endpoint (the log's partition)"]
    request_id: Annotated[str | None, pa.string(), "the request the label answers"]
    event_time: Annotated[datetime | None, LOG_TIMESTAMP, "the event, with entities (UTC)"]
    entities: Annotated[
        dict[str, Any] | None, pa.string(), "entity key → value, as JSON (no request_id)"
    ]
    label: Annotated[Any, pa.float64(), "the label: number or bool (a file mixing kinds: text)"]
    reward: Annotated[float | None, pa.float64(), "the reward (bandits)"]
    source: Annotated[str, pa.string(), "feedback, or import:<file name>"]
    row: NotRequired[Annotated[int, pa.int64(), "the row of the request (absent: every row)"]]


def _fields(record: type) -> tuple[LogField, ...]:
    """The fields of a record ``TypedDict``, in order, from its annotations."""
    hints = get_type_hints(record, include_extras=True)
    return tuple(LogField(name, *_arrow_and_doc(hint)) for name, hint in hints.items())


def _arrow_and_doc(hint: Any) -> tuple[pa.DataType, str]:
    while not hasattr(hint, "__metadata__"):  # NotRequired[Annotated[...]]
        (hint,) = hint.__args__
    arrow_type, doc = hint.__metadata__
    return arrow_type, doc


#: The fixed fields of a prediction record, in the order serving writes them.
PREDICTION_FIELDS = _fields(PredictionRecord)
PREDICTION_SCHEMA = pa.schema([(field.name, field.type) for field in PREDICTION_FIELDS])
#: The fields of a label record, in the order the feedback endpoint writes them.
LABEL_FIELDS = _fields(LabelRecord)
LABEL_SCHEMA = pa.schema([(field.name, field.type) for field in LABEL_FIELDS])

#: Prefixes of the per-name columns of a prediction record.
FEATURE_PREFIX = "feature."
ENTITY_PREFIX = "entity."
FEATURE_AGE_PREFIX = "feature_age."
FEATURE_STALE_PREFIX = "feature_stale."


def feature_column(name: str) -> str:
    """The column of feature ``name``'s value (live records of a logging endpoint)."""
    return FEATURE_PREFIX + name


def entity_column(key: str) -> str:
    """The column of entity key ``key``'s value (requests that name entities)."""
    return ENTITY_PREFIX + key


def feature_age_column(view: str) -> str:
    """The column of the age in seconds of feature view ``view``'s online values."""
    return FEATURE_AGE_PREFIX + view


def feature_stale_column(view: str) -> str:
    """The column saying whether feature view ``view``'s online values were stale."""
    return FEATURE_STALE_PREFIX + view


def _named(prefix: str, column_names: Iterable[str]) -> dict[str, str]:
    return {c[len(prefix) :]: c for c in column_names if c.startswith(prefix)}


def features_in(column_names: Iterable[str]) -> dict[str, str]:
    """Feature name → column, for the feature columns among ``column_names``."""
    return _named(FEATURE_PREFIX, column_names)


def entity_keys_in(column_names: Iterable[str]) -> dict[str, str]:
    """Entity key → column, for the entity columns among ``column_names``."""
    return _named(ENTITY_PREFIX, column_names)


def feature_ages_in(column_names: Iterable[str]) -> dict[str, str]:
    """Feature view → column, for the feature-age columns among ``column_names``.

    >>> feature_ages_in(["feature_age.flights", "feature_stale.flights"])
    {'flights': 'feature_age.flights'}
    """
    return _named(FEATURE_AGE_PREFIX, column_names)


def feature_stale_in(column_names: Iterable[str]) -> dict[str, str]:
    """Feature view → column, for the feature-staleness columns among ``column_names``."""
    return _named(FEATURE_STALE_PREFIX, column_names)
