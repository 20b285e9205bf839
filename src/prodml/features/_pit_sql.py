"""The DuckDB queries of the point-in-time join, one per plan.

Every query reads two narrow registered Arrow tables and returns ``(__row, __ord)``: the
entity row's position and the position of the feature row it picks, for entity rows
that pick one (an inner ``ASOF JOIN``). Feature values never enter DuckDB's join; the
caller gathers them by position. Times are int64 epoch counts, keys ``__k0, __k1, …``.

Feature table columns: ``__k*`` and either ``__v`` (packed plan) or ``__et``, ``__ct``
(created time, ``INT64_MIN`` where absent) and ``__ord``. Entity table columns: ``__k*``,
``__row``, ``__t`` (or packed ``__v``) and, with a TTL, ``__lo`` (the earliest event time
still inside it).

>>> print(packed_sql("e", "f", n_keys=1, mask=7, ttl=False))  # doctest: +NORMALIZE_WHITESPACE
SELECT e.__row, f.__v & 7 AS __ord FROM e AS e ASOF JOIN
  (SELECT __k0, __v FROM f WHERE __v IS NOT NULL AND __k0 IS NOT NULL) AS f
  ON e.__k0 = f.__k0 AND e.__v >= f.__v
"""

from __future__ import annotations

__all__ = ["latest_sql", "packed_sql", "visible_sql"]


def _keys(n_keys: int, prefix: str = "") -> str:
    return ", ".join(f"{prefix}__k{i}" for i in range(n_keys))


def _not_null(n_keys: int) -> str:
    return " AND ".join(f"__k{i} IS NOT NULL" for i in range(n_keys))


def _on(n_keys: int, right: str) -> str:
    return " AND ".join(f"e.__k{i} = {right}.__k{i}" for i in range(n_keys))


def packed_sql(entities: str, features: str, *, n_keys: int, mask: int, ttl: bool) -> str:
    """Plan without created time: ``__v`` packs ``(event time, ordinal)`` into one int64,
    so the as-of match is the latest event time and, among equal ones, the last row."""
    where = " WHERE f.__v >= e.__lo" if ttl else ""
    return (
        f"SELECT e.__row, f.__v & {mask} AS __ord FROM {entities} AS e ASOF JOIN "
        f"(SELECT {_keys(n_keys)}, __v FROM {features} "
        f"WHERE __v IS NOT NULL AND {_not_null(n_keys)}) AS f "
        f"ON {_on(n_keys, 'f')} AND e.__v >= f.__v{where}"
    )


def latest_sql(entities: str, features: str, *, n_keys: int, ttl: bool) -> str:
    """Plan without the created-time guard: per ``(keys, event time)`` keep the row with
    the latest ``(created time, ordinal)``, then match the latest event time."""
    where = " WHERE g.__v >= e.__lo" if ttl else ""
    keys = _keys(n_keys)
    return (
        f"WITH g AS (SELECT {keys}, __et AS __v, max({{'c': __ct, 'o': __ord}}).o AS __o "
        f"FROM {features} WHERE __et IS NOT NULL AND {_not_null(n_keys)} "
        f"GROUP BY {keys}, __et) "
        f"SELECT e.__row, g.__o AS __ord FROM {entities} AS e ASOF JOIN g "
        f"ON {_on(n_keys, 'g')} AND e.__t >= g.__v{where}"
    )


def visible_sql(entities: str, features: str, *, n_keys: int, ttl: bool) -> str:
    """Plan with the created-time guard: a row becomes visible at ``greatest(event time,
    created time)``; per key, a running maximum over visibility time of
    ``(event time, created time, ordinal)`` is the best row known by then, and the as-of
    match on visibility time picks it. When the best known row is older than the TTL,
    so is every visible row, hence the TTL test on the picked row alone."""
    where = " WHERE w.__b.e > e.__lo" if ttl else ""
    keys = _keys(n_keys)
    return (
        f"WITH g AS (SELECT {keys}, greatest(__et, __ct) AS __v, "
        f"max({{'e': __et, 'c': __ct, 'o': __ord}}) AS __b "
        f"FROM {features} WHERE __et IS NOT NULL AND {_not_null(n_keys)} "
        f"GROUP BY {keys}, greatest(__et, __ct)), "
        f"w AS (SELECT {keys}, __v, max(__b) OVER (PARTITION BY {keys} ORDER BY __v "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __b FROM g) "
        f"SELECT e.__row, w.__b.o AS __ord FROM {entities} AS e ASOF JOIN w "
        f"ON {_on(n_keys, 'w')} AND e.__t >= w.__v{where}"
    )
