"""The result of an online read: columnar lists in request order, cheap to build.

Columnar lists are what the request path needs (one list per feature becomes one model
input column) and cost one list comprehension per feature to build, with no per-entity
dict or datetime objects.

>>> r = assemble_read("v:1", ("x",), [(1_000_000, b'{"x":2.5}'), None], now_us=3_000_000,
...                   ttl_us=None)
>>> r.values, r.found, r.ages_s, r.row(0)
({'x': [2.5, None]}, [True, False], [2.0, None], {'x': 2.5})
>>> r.event_time(0).isoformat()
'1970-01-01T00:00:01+00:00'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from prodml.core.errors import FeatureNotFoundError

__all__ = ["OnlineRead", "Record", "assemble_read"]

Record = tuple[int, bytes]
"""A stored record as a backend returns it: (event time in µs since the epoch, payload)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class OnlineRead:
    """Feature values of a batch of entities, one list entry per requested entity.

    ``values[feature][i]`` is the value for the i-th requested key: None when the entity
    is missing, its record is stale or the stored value is null. Values are as stored:
    bool, int, float, str (timestamps and dates as ISO 8601), list or None.
    ``event_times_us[i]`` (µs since the epoch, UTC) and ``ages_s[i]`` (seconds from the
    event time to ``now``) are None for a missing entity and reported for a stale one.
    ``stale[i]`` means the record is older than the TTL; ``found[i]`` that it exists.
    """

    namespace: str
    features: tuple[str, ...]
    values: dict[str, list[Any]]
    event_times_us: list[int | None]
    ages_s: list[float | None]
    found: list[bool]
    stale: list[bool]

    def __len__(self) -> int:
        return len(self.found)

    def row(self, index: int) -> dict[str, Any]:
        """The feature values of one requested entity as a dict."""
        return {name: self.values[name][index] for name in self.features}

    def event_time(self, index: int) -> datetime | None:
        """The event time of one requested entity's record, None if it was not found."""
        micros = self.event_times_us[index]
        return None if micros is None else _EPOCH + timedelta(microseconds=micros)


def assemble_read(
    namespace: str,
    features: tuple[str, ...],
    records: Sequence[Record | None],
    *,
    now_us: int,
    ttl_us: int | None,
) -> OnlineRead:
    """Build an :class:`OnlineRead` from records aligned with the requested keys."""
    count = len(records)
    event_times: list[int | None] = [None] * count
    ages: list[float | None] = [None] * count
    found = [False] * count
    stale = [False] * count
    decoded: list[dict[str, Any] | None] = [None] * count
    loads = orjson.loads
    for i, record in enumerate(records):
        if record is None:
            continue
        event_us, payload = record
        found[i] = True
        event_times[i] = event_us
        age_us = now_us - event_us
        ages[i] = age_us / 1e6
        if ttl_us is not None and age_us > ttl_us:
            stale[i] = True
        else:
            decoded[i] = loads(payload)
    values: dict[str, list[Any]] = {}
    for name in features:
        try:
            values[name] = [None if d is None else d[name] for d in decoded]
        except KeyError:
            stored = next(sorted(d) for d in decoded if d is not None and name not in d)
            raise FeatureNotFoundError(
                f"online namespace {namespace!r}: feature {name!r} is not stored; "
                f"records hold {stored}"
            ) from None
    return OnlineRead(namespace, features, values, event_times, ages, found, stale)
