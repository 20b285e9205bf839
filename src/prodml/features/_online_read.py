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
    """Column lists from a mapping of columns or a list of row mappings."""
    if type(rows) is dict or isinstance(rows, Mapping):  # a dict skips the ABC check
        columns = {str(k): list(v) for k, v in rows.items()}
    else:
        names: dict[str, None] = {}
        for row in rows:
            names.update(dict.fromkeys(row))
        columns = {n: [row.get(n) for row in rows] for n in names}
    if len(columns) > 1:
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise SchemaError(f"{what}: columns have different lengths {sorted(lengths)}")
    return columns


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
    columns: dict[str, pa.Array] = {}
    for name, column in {**keys, **request}.items():
        if len(column) != count:
            raise SchemaError(
                f"online read of feature service {service.name!r}: request field {name!r} has "
                f"{len(column)} value(s) for {count} entities"
            )
        columns[name] = pa.array(column)
    for projection in service.projections:
        for field in projection.features:
            kind = arrow_type(field.dtype)
            raw = features[field.name]
            if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
                columns[field.name] = pa.array(raw, type=pa.string()).cast(kind)
            else:
                columns[field.name] = pa.array(raw, type=kind)
    return pa.table(columns) if columns else pa.table({"__rows": pa.nulls(count)})
