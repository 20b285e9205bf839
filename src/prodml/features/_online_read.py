"""Online reads for a feature service: one batched store read per view, then the
service's on-demand features computed by the same function as in training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from prodml.core import SchemaError, arrow_type
from prodml.features._on_demand import apply_on_demand
from prodml.features._service import FeatureService
from prodml.features.online import OnlineStore

__all__ = ["OnlineFeatures", "ViewFreshness", "columns_of", "read_online"]

Rows = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class ViewFreshness:
    """Per requested entity: age of the record in seconds, stale (older than the TTL:
    values nulled), found (a record exists)."""

    ages_s: list[float | None]
    stale: list[bool]
    found: list[bool]

    def to_dict(self) -> dict[str, Any]:
        return {"ages_s": self.ages_s, "stale": self.stale, "found": self.found}


@dataclass(frozen=True, slots=True)
class OnlineFeatures:
    """Feature values (columnar, in request order), per-view versions and freshness."""

    service: str
    values: dict[str, list[Any]]
    versions: dict[str, str]
    freshness: dict[str, ViewFreshness]

    def __len__(self) -> int:
        return len(next(iter(self.values.values()), []))

    def row(self, index: int) -> dict[str, Any]:
        return {name: column[index] for name, column in self.values.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "values": self.values,
            "versions": self.versions,
            "freshness": {view: f.to_dict() for view, f in self.freshness.items()},
        }


def columns_of(rows: Rows, *, what: str) -> dict[str, list[Any]]:
    """Column lists from a mapping of columns or a list of row mappings.

    A column's values come in a sequence (a list, tuple, NumPy array or pandas Series):
    a string or a single value where the values are expected is a :class:`SchemaError`,
    not read as one entity per character.

    >>> columns_of({"origin": ["JFK", "EWR"]}, what="entities")
    {'origin': ['JFK', 'EWR']}
    >>> columns_of([{"origin": "JFK"}], what="entities")
    {'origin': ['JFK']}
    >>> columns_of({"origin": "JFK"}, what="entities")
    Traceback (most recent call last):
    ...
    prodml.core.errors.SchemaError: entities: column 'origin' is of type str, not a list of values; expected one value per entity row, in a list
    """
    given: object = rows
    if type(rows) is dict or isinstance(rows, Mapping):  # a dict skips the ABC check
        columns = {str(k): _values(v, what=what, column=str(k)) for k, v in rows.items()}
    elif isinstance(rows, Sequence) and not isinstance(given, str | bytes):
        names: dict[str, None] = {}
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise SchemaError(
                    f"{what}: row {index} is a {type(row).__name__}; expected a mapping of "
                    "column name to value"
                )
            names.update(dict.fromkeys(row))
        columns = {n: [row.get(n) for row in rows] for n in names}
    else:
        raise SchemaError(
            f"{what}: got a {type(rows).__name__}; expected a mapping of column name to a "
            "list of values, or a list of row mappings"
        )
    if len(columns) > 1:
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise SchemaError(f"{what}: columns have different lengths {sorted(lengths)}")
    return columns


def _values(values: Any, *, what: str, column: str) -> list[Any]:
    """One column's values as a list; a string, mapping, set or single value is refused."""
    if not isinstance(values, str | bytes | bytearray | Mapping | set | frozenset):
        try:
            return list(values)
        except TypeError:
            pass
    raise SchemaError(
        f"{what}: column {column!r} is of type {type(values).__name__}, not a list of values; "
        "expected one value per entity row, in a list"
    )


def read_online(
    store: OnlineStore,
    service: FeatureService,
    entities: Rows,
    request_data: Rows | None,
    *,
    now: datetime,
) -> OnlineFeatures:
    """Values of every feature of ``service`` for each entity row."""
    where = f"online read of feature service {service.name!r}"
    keys_in = columns_of(entities, what=f"{where}: entities")
    needed = service.join_keys
    if len(keys_in) != len(needed) or not all(k in keys_in for k in needed):
        unknown = sorted(set(keys_in) - set(needed))
        if unknown:
            raise SchemaError(
                f"{where}: unknown entity key(s) {unknown}; the service is keyed by {list(needed)}"
            )
        missing = [k for k in needed if k not in keys_in]
        raise SchemaError(
            f"{where}: entity key(s) {missing} not given; the service is keyed by {list(needed)}"
        )
    count = len(next(iter(keys_in.values()), []))
    values: dict[str, list[Any]] = {}
    versions: dict[str, str] = {}
    freshness: dict[str, ViewFreshness] = {}
    for projection in service.projections:
        view = projection.view
        join_keys = view.join_keys
        if len(join_keys) == 1:
            keys = [(value,) for value in keys_in[join_keys[0]]]
        else:
            keys = list(zip(*(keys_in[k] for k in join_keys), strict=True))
        result = store.read(view.online_namespace, keys, projection.feature_names, now=now,
                            ttl=view.ttl)  # fmt: skip
        values.update(result.values)
        versions[view.name] = view.version
        freshness[view.name] = ViewFreshness(result.ages_s, result.stale, result.found)
    if service.on_demand:
        extra = (
            columns_of(request_data, what=f"{where}: request data")
            if request_data is not None
            else {}
        )
        table = _input_table(service, keys_in, extra, values, count)
        table = apply_on_demand(table, service.on_demand)
        for odf in service.on_demand:
            versions[odf.name] = odf.version
            for name in odf.output_names:
                values[name] = table.column(name).to_pylist()
    ordered = {name: values[name] for name in service.output_names}
    return OnlineFeatures(service.name, ordered, versions, freshness)


def _input_table(
    service: FeatureService,
    keys: dict[str, list[Any]],
    request: dict[str, list[Any]],
    features: dict[str, list[Any]],
    count: int,
) -> pa.Table:
    where = f"online read of feature service {service.name!r}"
    shadowed = sorted(set(request) & set(service.output_names))
    if shadowed:
        raise SchemaError(
            f"{where}: request field(s) {shadowed} have the names of features of the service; "
            "expected request fields other than the features (rename them)"
        )
    for name in sorted(set(request) & set(keys)):
        if request[name] != keys[name]:
            raise SchemaError(
                f"{where}: request field {name!r} is also an entity key, with other values; "
                "expected the entity key's values or no such request field"
            )
    columns: dict[str, pa.Array] = {}
    for name, column in {**keys, **request}.items():
        if len(column) != count:
            raise SchemaError(
                f"{where}: request field {name!r} has {len(column)} value(s) for {count} entities"
            )
        try:
            columns[name] = pa.array(column)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            kinds = sorted({type(value).__name__ for value in column})
            raise SchemaError(
                f"{where}: field {name!r} holds values of types {kinds} that do not make one "
                f"column ({type(exc).__name__}); expected values of one type"
            ) from None
    for projection in service.projections:
        for field in projection.features:
            kind = arrow_type(field.dtype)
            raw = features[field.name]
            if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
                columns[field.name] = pa.array(raw, type=pa.string()).cast(kind)
            else:
                columns[field.name] = pa.array(raw, type=kind)
    return pa.table(columns) if columns else pa.table({"__rows": pa.nulls(count)})
