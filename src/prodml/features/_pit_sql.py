"""The DuckDB queries of the point-in-time join, one per plan (chosen in ``_pit_plan``).

Every query reads two narrow registered Arrow tables — entity rows ``(__k*, __row, __t,
__lo)`` and feature rows ``(__k*, __et, __ct, __ord)``: join keys, int64 epoch times,
positions — and returns ``(__row, __ord)`` for the entity rows that pick a feature row
(an inner ``ASOF JOIN``). Feature values never enter DuckDB; the caller gathers them.

A feature row is *visible* from ``__v`` on: its event time, or with the created-time
guard ``greatest(event time, created time)``. Its *rank* is ``(event time, created time,
ordinal)``. An entity row at ``t`` picks the highest-ranked row visible at ``t``: the
running maximum of the rank over visibility time, read by an as-of match on ``t``. When
that row is older than the TTL (``__lo`` is the earliest event time inside it), every
visible row is, hence one TTL test on the pick.

Packing turns tuples into single integers that sort the same way, so that DuckDB sorts
and compares plain int64 (or HUGEINT) values instead of structs:

>>> TimePacking(low=100, high=200, bits=3).rows("__et")
'((__et - 100) * 8) | __ord'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RankPacking", "TimePacking", "grouped_sql", "packed_sql", "running_sql"]

_FRAME = "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"


@dataclass(frozen=True)
class TimePacking:
    """``(time - low) * 2**bits | ordinal`` as an int64, for times in ``[low, high]``;
    entity times are clipped to ``[low - 1, high]`` (bounds to ``high + 1``) first."""

    low: int
    high: int
    bits: int

    @property
    def mask(self) -> int:
        return (1 << self.bits) - 1

    def rows(self, time: str) -> str:
        """A feature row's packed time: unique, in ``(time, ordinal)`` order."""
        return f"(({time} - {self.low}) * {1 << self.bits}) | __ord"

    def at(self, time: str) -> str:
        """An entity time, packed to sort after every row at or before it."""
        return f"{self._clipped(time, self.high)} | {self.mask}"

    def since(self, time: str) -> str:
        """A TTL's lower bound, packed to sort before every row at or after it."""
        return self._clipped(time, self.high + 1)

    def _clipped(self, time: str, high: int) -> str:
        return (
            f"((least(greatest({time}, {self.low - 1}), {high}) - {self.low}) * {1 << self.bits})"
        )


@dataclass(frozen=True)
class RankPacking:
    """``(event time, created time, ordinal)`` as one HUGEINT: event time minus
    ``event_low`` above ``created_shift`` bits, created time minus ``created_low`` plus
    one (0 when null, so null ranks oldest) above ``ordinal_bits`` bits, the ordinal below."""

    event_low: int
    created_low: int
    created_shift: int
    ordinal_bits: int

    def rank(self) -> str:
        return (
            f"((__et - {self.event_low})::HUGEINT << {self.created_shift}) | "
            f"(coalesce(__ct - {self.created_low} + 1, 0)::HUGEINT << {self.ordinal_bits}) | "
            "__ord"
        )

    def ordinal(self, rank: str) -> str:
        return f"({rank} & {(1 << self.ordinal_bits) - 1})::BIGINT"

    def event(self, rank: str) -> str:
        return f"({rank} >> {self.created_shift})::BIGINT + {self.event_low}"


def _keys(n_keys: int) -> str:
    return ", ".join(f"__k{i}" for i in range(n_keys))


def _valid(n_keys: int) -> str:
    return " AND ".join(["__et IS NOT NULL", *(f"__k{i} IS NOT NULL" for i in range(n_keys))])


def _on(n_keys: int, right: str) -> str:
    return " AND ".join(f"e.__k{i} = {right}.__k{i}" for i in range(n_keys))


def packed_sql(
    entities: str, features: str, *, n_keys: int, packing: TimePacking, ttl: bool
) -> str:
    """No created time: the packed event time is rank and visibility at once, so one
    as-of join picks the latest event time and, among equal ones, the last row."""
    keys = _keys(n_keys)
    lows = f", {packing.since('__lo')} AS __lo" if ttl else ""
    where = " WHERE f.__v >= e.__lo" if ttl else ""
    return (
        f"SELECT e.__row, f.__v & {packing.mask} AS __ord "
        f"FROM (SELECT {keys}, __row, {packing.at('__t')} AS __v{lows} FROM {entities}) AS e "
        f"ASOF JOIN (SELECT {keys}, {packing.rows('__et')} AS __v FROM {features} "
        f"WHERE {_valid(n_keys)}) AS f ON {_on(n_keys, 'f')} AND e.__v >= f.__v{where}"
    )


def running_sql(
    entities: str,
    features: str,
    *,
    n_keys: int,
    visible: str,
    time: TimePacking,
    rank: RankPacking,
    ttl: bool,
) -> str:
    """A created time, packable: rows ordered by packed visibility time (unique, so no
    group-by), the running maximum of the packed rank, an as-of match of the packed
    entity time."""
    keys = _keys(n_keys)
    lows = ", __lo" if ttl else ""
    where = f" WHERE {rank.event('w.__b')} >= e.__lo" if ttl else ""
    return (
        f"WITH w AS (SELECT {keys}, {time.rows(visible)} AS __v, max({rank.rank()}) "
        f"OVER (PARTITION BY {keys} ORDER BY {time.rows(visible)} {_FRAME}) AS __b "
        f"FROM {features} WHERE {_valid(n_keys)}) "
        f"SELECT e.__row, {rank.ordinal('w.__b')} AS __ord "
        f"FROM (SELECT {keys}, __row{lows}, {time.at('__t')} AS __v FROM {entities}) AS e "
        f"ASOF JOIN w ON {_on(n_keys, 'w')} AND e.__v >= w.__v{where}"
    )


def grouped_sql(entities: str, features: str, *, n_keys: int, visible: str, ttl: bool) -> str:
    """Any times (the fallback when they do not pack; ``__ct`` is the smallest int64
    where null): per ``(keys, visibility time)`` the best rank as a struct, its running
    maximum, an as-of match of the raw entity time."""
    keys = _keys(n_keys)
    where = " WHERE w.__b.e >= e.__lo" if ttl else ""
    return (
        f"WITH g AS (SELECT {keys}, {visible} AS __v, "
        f"max({{'e': __et, 'c': __ct, 'o': __ord}}) AS __b "
        f"FROM {features} WHERE {_valid(n_keys)} GROUP BY {keys}, {visible}), "
        f"w AS (SELECT {keys}, __v, max(__b) OVER (PARTITION BY {keys} ORDER BY __v {_FRAME}) "
        f"AS __b FROM g) "
        f"SELECT e.__row, w.__b.o AS __ord FROM {entities} AS e ASOF JOIN w "
        f"ON {_on(n_keys, 'w')} AND e.__t >= w.__v{where}"
    )
