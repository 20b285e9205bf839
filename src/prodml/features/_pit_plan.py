"""Choosing and running the query that picks one feature row per entity row.

Four plans (three in SQL, whose rules are in ``_pit_sql``, and one in NumPy):

- **packed** — no created time: ``(event time, ordinal)`` packed into one int64, when the
  event-time span and the row count fit in 62 bits (30 days in microseconds and a
  million rows take 62): one as-of join, no group-by, no window;
- **running** — a created time (guarded or only breaking ties): ``(visibility time,
  ordinal)`` packed into one int64 and the rank into one HUGEINT, a running maximum;
- **grouped** — the general fallback when times span too much to pack: ranks as
  structs, grouped per visibility time, then the running maximum.

- **sorted** — a created time, one integer key, and keys and times packable together into
  62 bits (the common case): the running plan in NumPy instead of SQL — ranks by one
  sort (ties re-sorted by created time and ordinal), the running maximum over rows
  sorted by (key, visibility time), and one ``searchsorted`` of the entity rows, sorted
  first (on a second thread while the feature rows are ranked, on large joins: NumPy's
  sorts release the GIL; in pieces on two threads when the entity rows far outnumber
  the feature rows, each piece looked up as it is ready). DuckDB's window and as-of
  join each sort both sides again; on a million rows this takes under half the time
  (``benchmarks/pit_join.py``).

Large joins run in **partitions**: when the entity and feature rows together exceed
``_PARTITION_ROWS``, both sides are split by a hash of their keys (equal keys, one
partition; each side keeps its order within a partition) and each partition is picked
on its own, so the plans' sorts and temporaries are those of one partition, not of the
whole join — a hundred million entity rows join in the memory of a twenty-million-row
partition plus the positions. A feature row is only ever picked by entity rows of the
same key, and ties go to the later row within the key, so partitions change nothing.

Packing is exact, not an approximation: a packed value sorts like the tuple it packs,
and entity times outside the feature rows' range are clipped to just outside it.

A strict bound (``inclusive=False``: rows strictly before ``t``) is the inclusive rule at
``t - 1``: times are integer counts of one unit, so ``x < t`` is ``x <= t - 1``. Only
the as-of time moves; the TTL's lower bound stays ``t - ttl``. Every plan therefore runs
unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from prodml.features._pit_partitions import partitions
from prodml.features._pit_sql import (
    RankPacking,
    TimePacking,
    grouped_sql,
    packed_sql,
    running_sql,
)

__all__ = ["INT64_MIN", "pick_rows"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_TIME_BITS = 62
_RANK_BITS = 126
_TIE_BITS = 63
#: Rows (feature + entity) from which the entity side is prepared on a second thread.
_PARALLEL_ROWS = 200_000
#: Entity rows per piece of the NumPy plan's entity side, when it outnumbers the feature rows
#: (pieces are sorted on two threads).
_PROBE_ROWS = 8_000_000
#: Rows (feature + entity) per partition of a large join (about 2 GiB of working memory).
_PARTITION_ROWS = 24_000_000

Positions = npt.NDArray[np.int64]


class _Sides(NamedTuple):
    """Both sides of a join as :func:`pick_rows` takes them."""

    entity_keys: Sequence[pa.ChunkedArray]
    entity_times: pa.ChunkedArray
    feature_keys: Sequence[pa.ChunkedArray]
    event: pa.ChunkedArray
    created: pa.ChunkedArray | None


class _Rules(NamedTuple):
    """How a join picks (see :func:`pick_rows`) and the name its tables take."""

    guard: bool
    ttl: int | None
    name: str
    inclusive: bool


def pick_rows(
    con: duckdb.DuckDBPyConnection,
    *,
    entity_keys: Sequence[pa.ChunkedArray],
    entity_times: pa.ChunkedArray,
    feature_keys: Sequence[pa.ChunkedArray],
    event: pa.ChunkedArray,
    created: pa.ChunkedArray | None,
    guard: bool,
    ttl: int | None,
    name: str,
    inclusive: bool = True,
) -> tuple[Positions, Positions]:
    """Positions ``(entity row, feature row)`` of every entity row that picks a feature row.

    Times are int64 epoch counts of one unit, ``ttl`` in the same unit; ``name`` prefixes
    the two Arrow tables registered on ``con`` while the query runs. ``inclusive=False``
    admits only rows visible strictly before each entity time.
    """
    sides = _Sides(entity_keys, entity_times, feature_keys, event, created)
    rules = _Rules(guard, ttl, name, inclusive)
    parts = -(-(len(entity_times) + len(event)) // _PARTITION_ROWS)
    if parts > 1 and event.null_count < len(event):
        return _partitioned(con, parts, sides, rules)
    return _pick_all(con, sides, rules)


def _partitioned(
    con: duckdb.DuckDBPyConnection, parts: int, sides: _Sides, rules: _Rules
) -> tuple[Positions, Positions]:
    """:func:`pick_rows` partition by partition (see the module docstring)."""
    name = rules.name
    pairs = zip(sides.entity_keys, sides.feature_keys, strict=True)
    keys = [(_plain(e), _plain(f)) for e, f in pairs]
    entity_parts, feature_parts = partitions(con, keys, parts, name)
    rows: list[Positions] = []
    ords: list[Positions] = []
    for mine, theirs in zip(entity_parts, feature_parts, strict=True):
        if len(mine) == 0 or len(theirs) == 0:
            continue
        part = _Sides(
            entity_keys=[key.take(mine) for key, _ in keys],
            entity_times=sides.entity_times.take(mine),
            feature_keys=[key.take(theirs) for _, key in keys],
            event=sides.event.take(theirs),
            created=None if sides.created is None else sides.created.take(theirs),
        )
        picked_rows, picked_ords = _pick_all(con, part, rules)
        rows.append(mine[picked_rows])
        ords.append(theirs[picked_ords])
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(rows), np.concatenate(ords)


def _pick_all(
    con: duckdb.DuckDBPyConnection, sides: _Sides, rules: _Rules
) -> tuple[Positions, Positions]:
    """:func:`pick_rows` over all the rows given, in one plan."""
    entity_keys, entity_times, feature_keys, event, created = sides
    guard, ttl, name, inclusive = rules
    if event.null_count == len(event):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if ttl is not None and ttl > INT64_MAX:
        ttl = None  # longer than any span between two int64 times in the same unit
    at = entity_times if inclusive else _just_before(entity_times)
    since = None
    if ttl is not None:
        since = pc.subtract(pc.max_element_wise(entity_times, INT64_MIN + ttl), ttl)
    picked = None
    if created is not None and len(entity_keys) == 1:
        picked = _running_sorted(
            (_plain(entity_keys[0]), _plain(feature_keys[0])),
            at,
            since,
            event=event,
            created=created,
            guard=guard,
        )
    if picked is None:
        picked = _pick_sql(
            con,
            entity_keys=entity_keys,
            feature_keys=feature_keys,
            at=at,
            since=since,
            event=event,
            created=created,
            guard=guard,
            name=name,
        )
    rows, ords = picked
    if not inclusive and _min_max(entity_times)[0] == INT64_MIN:
        # nothing is strictly before the smallest int64 time; t - 1 was clipped to it
        keep = np.asarray(entity_times.to_numpy(), dtype=np.int64)[rows] != INT64_MIN
        rows, ords = rows[keep], ords[keep]
    return rows, ords


def _pick_sql(
    con: duckdb.DuckDBPyConnection,
    *,
    entity_keys: Sequence[pa.ChunkedArray],
    feature_keys: Sequence[pa.ChunkedArray],
    at: pa.ChunkedArray,
    since: pa.ChunkedArray | None,
    event: pa.ChunkedArray,
    created: pa.ChunkedArray | None,
    guard: bool,
    name: str,
) -> tuple[Positions, Positions]:
    """:func:`pick_rows` by one of the SQL plans (``at``: the as-of time per entity row,
    ``since``: the TTL's lower bound or None)."""
    n_keys = len(entity_keys)
    keys = [
        _narrow(_plain(mine), _plain(theirs))
        for mine, theirs in zip(entity_keys, feature_keys, strict=True)
    ]
    entity_cols = {f"__k{i}": key for i, (key, _) in enumerate(keys)}
    entity_cols["__row"] = pa.chunked_array([np.arange(len(at), dtype=np.int64)])
    entity_cols["__t"] = at
    if since is not None:
        entity_cols["__lo"] = since
    feature_cols = {f"__k{i}": key for i, (_, key) in enumerate(keys)}
    feature_cols["__et"] = event
    feature_cols["__ord"] = pa.chunked_array([np.arange(len(event), dtype=np.int64)])
    guarded = guard and created is not None
    visible = "greatest(__et, __ct)" if guarded else "__et"
    time = _time_packing(_visible(event, created) if guarded else event)
    rank = None if created is None else _rank_packing(event, created)
    entities, features = f"{name}_entities", f"{name}_features"
    ttl_on = since is not None
    if time is not None and created is None:
        sql = packed_sql(entities, features, n_keys=n_keys, packing=time, ttl=ttl_on)
    elif time is not None and rank is not None:
        feature_cols["__ct"] = created
        sql = running_sql(
            entities, features, n_keys=n_keys, visible=visible, time=time, rank=rank, ttl=ttl_on
        )
    else:
        feature_cols["__ct"] = (
            pa.chunked_array([np.full(len(event), INT64_MIN, dtype=np.int64)])
            if created is None
            else pc.fill_null(created, INT64_MIN)
        )
        sql = grouped_sql(entities, features, n_keys=n_keys, visible=visible, ttl=ttl_on)
    con.register(entities, pa.table(entity_cols))
    con.register(features, pa.table(feature_cols))
    try:
        result = con.sql(sql).to_arrow_table()
    finally:
        con.unregister(entities)
        con.unregister(features)
    return _positions(result.column("__row")), _positions(result.column("__ord"))


def _ints(values: pa.ChunkedArray) -> tuple[Positions, npt.NDArray[np.bool_] | None]:
    """Integer values as int64 (nulls as 0) and their validity (None: no nulls)."""
    if values.null_count == 0:
        return np.asarray(values.to_numpy(), dtype=np.int64), None
    valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(pc.fill_null(values, 0).to_numpy(), dtype=np.int64), valid


def _running_sorted(
    keys: tuple[pa.ChunkedArray, pa.ChunkedArray],
    at: pa.ChunkedArray,
    since: pa.ChunkedArray | None,
    *,
    event: pa.ChunkedArray,
    created: pa.ChunkedArray,
    guard: bool,
) -> tuple[Positions, Positions] | None:
    """The running plan in NumPy, for one integer key; None when (key, time) does not
    pack into 62 bits (or the key is not an integer): the SQL plans then run.

    ``at`` is the as-of time per entity row, ``since`` the TTL's lower bound (or None);
    a feature row ranks by ``(event, created (null oldest), ordinal)`` and is visible
    from ``greatest(event, created)`` under the guard, else from its event time."""
    entity_key, feature_key = keys
    if not (pa.types.is_integer(entity_key.type) and pa.types.is_integer(feature_key.type)):
        return None
    fkey, fkey_valid = _ints(feature_key)
    ev, ev_valid = _ints(event)
    cr, cr_valid = _ints(created)
    valid = _both(fkey_valid, ev_valid)
    chosen: Positions | None = None
    if valid is not None:
        chosen = np.flatnonzero(valid)
        fkey, ev, cr = fkey[chosen], ev[chosen], cr[chosen]
        cr_valid = None if cr_valid is None else cr_valid[chosen]
    n = len(ev)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if guard:
        seen = np.maximum(ev, cr)
        if cr_valid is not None:
            np.copyto(seen, ev, where=~cr_valid)
    else:
        seen = ev
    kmin, kmax = int(fkey.min()), int(fkey.max())
    tlow, thigh = int(ev.min()), int(seen.max())
    tbits = (thigh - tlow).bit_length()
    if (kmax - kmin).bit_length() + tbits > _TIME_BITS:
        return None
    bounds = (kmin, kmax, tlow, thigh, tbits)
    if len(ev) + len(at) >= _PARALLEL_ROWS:
        # the entity side on the other threads while this one ranks the feature rows,
        # then each piece looked up as it is ready: one piece unless it is much larger
        # than the feature side (then in pieces, two threads; else a thread would wait)
        count = -(-len(at) // max(_PROBE_ROWS, len(ev)))
        cuts = np.linspace(0, len(at), count + 1).astype(np.int64).tolist()
        with ThreadPoolExecutor(2, thread_name_prefix="prodml-pit") as pool:
            pending = [
                pool.submit(_probes, entity_key.slice(a, b - a), at.slice(a, b - a), bounds)
                for a, b in itertools.pairwise(cuts)
            ]
            steps, best_row = _steps(fkey, ev, cr, cr_valid, seen, bounds)
            looked = [_lookup(steps, best_row, tbits, *piece.result()) for piece in pending]
        picked = np.concatenate([found for found, _ in looked])
        ok = np.concatenate([can for _, can in looked])
        del looked
    else:
        steps, best_row = _steps(fkey, ev, cr, cr_valid, seen, bounds)
        picked, ok = _lookup(steps, best_row, tbits, *_probes(entity_key, at, bounds))
    if since is not None:
        ok &= ev[picked] >= np.asarray(since.to_numpy(), dtype=np.int64)
    rows = np.flatnonzero(ok)
    ords = picked[rows]
    return rows, (ords if chosen is None else chosen[ords])


def _lookup(
    steps: Positions,
    best_row: Positions,
    tbits: int,
    ok: npt.NDArray[np.bool_],
    probe: Positions,
    probe_order: Positions,
) -> tuple[Positions, npt.NDArray[np.bool_]]:
    """The feature row each entity row picks (0 where none: ``ok`` then False), from the
    sorted steps and the entity rows' sorted probes (see :func:`_probes`)."""
    step = np.searchsorted(steps, probe, side="right") - 1
    found = step >= 0
    np.maximum(step, 0, out=step)
    found &= (steps[step] >> tbits) == (probe >> tbits)  # the step is of the same key
    picked = np.empty(len(probe), dtype=np.int64)
    picked[probe_order] = np.where(found, best_row[step], -1)
    ok &= picked >= 0
    np.maximum(picked, 0, out=picked)
    return picked, ok


Bounds = tuple[int, int, int, int, int]
"""The feature rows' ``(min key, max key, min event time, max visible time, time bits)``."""


def _steps(
    fkey: Positions,
    ev: Positions,
    cr: Positions,
    cr_valid: npt.NDArray[np.bool_] | None,
    seen: Positions,
    bounds: Bounds,
) -> tuple[Positions, Positions]:
    """The feature side of :func:`_running_sorted`: the packed ``(key, visibility time)``
    of every row, sorted (the steps), the row ranked highest among those visible at each
    step."""
    kmin, _, tlow, _, tbits = bounds
    n = len(ev)
    high_key = np.subtract(fkey, kmin)
    high_key <<= tbits
    # rank: one sort on (key, event time); runs of equal ones re-sorted on (created, ordinal)
    ranked = np.subtract(ev, tlow)
    ranked |= high_key
    order = _packed_order(ranked, tbits)
    in_order = ranked[order]
    tied = in_order[1:] == in_order[:-1]
    if tied.any():
        run = np.zeros(n, dtype=bool)
        run[:-1] |= tied
        run[1:] |= tied
        spots = np.flatnonzero(run)
        members = order[spots]
        created_rank = (
            cr[members] if cr_valid is None else np.where(cr_valid[members], cr[members], INT64_MIN)
        )
        order[spots] = members[_tie_order(ranked[members], created_rank, members)]
    # the running maximum of the rank over (key, visibility time): ranks grow with the
    # key, so one running maximum over all rows is the running maximum per key. The
    # rows are taken in rank order (the rank of ``order[i]`` is ``i``), so sorting them
    # by visibility gives each step's rank directly: ``by_visible``. A row is mostly
    # visible in its event-time order (created soon after the event), so rank order is
    # nearly sorted by visibility: a stable (run-merging) sort takes a quarter of
    # sorting from scratch, and no longer when it is not.
    visible = np.subtract(seen, tlow)
    visible |= high_key
    visible = visible[order]
    by_visible = np.argsort(visible, kind="stable")
    steps = visible[by_visible]
    best = np.maximum.accumulate(by_visible)
    return steps, order[best]  # best is non-decreasing: a gather in memory order


def _probes(
    entity_key: pa.ChunkedArray, at: pa.ChunkedArray, bounds: Bounds
) -> tuple[npt.NDArray[np.bool_], Positions, Positions]:
    """The entity side of :func:`_running_sorted`: which rows can match at all, their
    ``(key, as-of time)`` packed as the steps are, sorted, and the sorting permutation
    (so that every lookup after the search reads in memory order)."""
    kmin, kmax, tlow, thigh, tbits = bounds
    ekey, ekey_valid = _ints(entity_key)
    times = np.asarray(at.to_numpy(), dtype=np.int64)
    ok = (ekey >= kmin) & (ekey <= kmax) & (times >= tlow)
    if ekey_valid is not None:
        ok &= ekey_valid
    # a row that cannot match (``ok`` False) is dropped after the search
    probe = np.subtract(ekey, kmin)
    probe <<= tbits
    clipped = np.minimum(times, thigh)
    clipped -= tlow
    probe |= clipped
    probe[~ok] = 0  # any value will do: keeps the keys in range for the sort
    probe_order = _packed_order(probe, tbits)
    return ok, probe[probe_order], probe_order


#: Rows per key (on average) up to which :func:`_packed_order` groups by key first.
_ROWS_PER_KEY = 64


def _packed_order(packed: Positions, shift: int) -> Positions:
    """The stable permutation sorting ``packed`` (equal values keep their order; the
    key is ``packed >> shift``).

    With many keys of a few rows each (entities), the rows are grouped by key with
    ``np.sort`` of ``(key, position)`` packed into one int64 (a value sort, three times
    faster than ``argsort``), then a stable sort on the whole value only orders each
    key's short run: on 10M rows of 1M keys, 1.2 s instead of 1.8 s. Otherwise (or when
    the key and a position do not fit in 63 bits) one stable ``argsort`` (on 10M random
    values, as fast as the default quicksort)."""
    n = len(packed)
    position_bits = max(n - 1, 1).bit_length()
    if n < 2 or int(packed.min()) < 0:
        return np.argsort(packed, kind="stable")
    key_range = (int(packed.max()) >> shift) + 1
    if key_range.bit_length() + position_bits > 63 or n > _ROWS_PER_KEY * key_range:
        return np.argsort(packed, kind="stable")
    by_key = packed >> shift
    by_key <<= position_bits
    by_key |= np.arange(n, dtype=np.int64)
    by_key.sort()
    key = by_key >> position_bits
    keys = 1 + int(np.count_nonzero(key[1:] != key[:-1]))
    del key
    if n > _ROWS_PER_KEY * keys:  # few keys after all: long runs, sort once
        return np.argsort(packed, kind="stable")
    by_key &= (1 << position_bits) - 1
    return by_key[np.argsort(packed[by_key], kind="stable")]


def _tie_order(group: Positions, created: Positions, members: Positions) -> Positions:
    """The permutation sorting tied rows by ``(group, created, members)``; ``group`` is
    non-decreasing and ``members`` (ordinals) are distinct.

    When the members already increase within each group (the rank sort is stable), a
    stable sort on ``(group, created)`` is enough, and created times are packed relative
    to their group's oldest (null, ``INT64_MIN``, oldest of all) beside the group's dense
    rank: one sort of nearly sorted values. Otherwise each key becomes its dense rank and
    the three ranks are packed into one int64, unique, so one unstable sort orders them:
    a 3-key ``lexsort`` (stable merge sorts) took 3–4× as long. The lexsort stays for
    sizes whose ranks do not pack into 63 bits."""
    m = len(members)
    if m == 0:
        return np.empty(0, np.int64)
    run = _dense_ranks(group)
    fast = _within_groups(run, created, members)
    if fast is not None:
        return fast
    by_created = np.argsort(created)
    created_rank = np.empty(m, np.int64)
    created_rank[by_created] = _dense_ranks(created[by_created])
    member_bits = (m - 1).bit_length()
    created_bits = int(created_rank.max()).bit_length()
    if int(run[-1]).bit_length() + created_bits + member_bits > _TIE_BITS:
        return np.lexsort((members, created, group))
    member_rank = np.empty(m, np.int64)
    member_rank[np.argsort(members)] = np.arange(m, dtype=np.int64)
    packed = (run << (created_bits + member_bits)) | (created_rank << member_bits) | member_rank
    return np.argsort(packed)


def _within_groups(run: Positions, created: Positions, members: Positions) -> Positions | None:
    """:func:`_tie_order` when ``members`` increase within each run of ``run`` (dense
    group ranks) and the created times relative to their run's oldest pack beside the
    run; None otherwise."""
    new_run = run[1:] != run[:-1]
    if not np.all(new_run | (members[1:] > members[:-1])):
        return None
    valid = created != INT64_MIN
    rel = np.zeros(len(created), dtype=np.int64)
    if valid.any():
        known = created[valid]
        if int(known.max()) - int(known.min()) >= 2**62:  # the differences could overflow
            return None
        starts = np.flatnonzero(np.concatenate([[True], new_run]))
        oldest = np.minimum.reduceat(np.where(valid, created, INT64_MAX), starts)
        np.subtract(created, oldest[run], out=rel, where=valid)
        rel[valid] += 1  # nulls stay 0: older than any created time
    bits = int(rel.max()).bit_length()
    if int(run[-1]).bit_length() + bits > _TIE_BITS:
        return None
    packed = run << bits
    packed |= rel
    return np.argsort(packed, kind="stable")


def _dense_ranks(ordered: Positions) -> Positions:
    """Each value's rank among the distinct values of ``ordered`` (sorted, non-empty)."""
    return np.cumsum(np.concatenate([[True], ordered[1:] != ordered[:-1]])) - 1


def _both(
    left: npt.NDArray[np.bool_] | None, right: npt.NDArray[np.bool_] | None
) -> npt.NDArray[np.bool_] | None:
    if left is None:
        return right
    return left if right is None else left & right


def _just_before(times: pa.ChunkedArray) -> pa.ChunkedArray:
    """``t - 1``: the last instant strictly before ``t`` (clipped at the smallest int64)."""
    return pc.subtract(pc.max_element_wise(times, INT64_MIN + 1), 1)


def _visible(event: pa.ChunkedArray, created: pa.ChunkedArray | None) -> pa.ChunkedArray:
    """``greatest(event, created)``; the event time where created is null, null where event is."""
    if created is None:
        return event
    return pc.coalesce(pc.max_element_wise(event, created, skip_nulls=False), event)


def _time_packing(times: pa.ChunkedArray) -> TimePacking | None:
    """The int64 packing of ``(time, ordinal)``, None when it needs over 62 bits."""
    low, high = _min_max(times)
    if low is None or high is None or low == INT64_MIN or high == INT64_MAX:
        return None
    bits = max(1, len(times).bit_length())
    fits = (high + 1 - low).bit_length() + bits <= _TIME_BITS
    return TimePacking(low, high, bits) if fits else None


def _rank_packing(event: pa.ChunkedArray, created: pa.ChunkedArray) -> RankPacking | None:
    """The HUGEINT packing of ``(event time, created time, ordinal)``, None over 126 bits."""
    event_low, event_high = _min_max(event)
    created_low, created_high = _min_max(created)
    if event_low is None or event_high is None:
        return None
    if created_low is None or created_high is None:
        created_low, created_high = 0, -1  # every created time null: code 0 throughout
    ordinal_bits = max(1, len(event).bit_length())
    created_shift = (created_high - created_low + 1).bit_length() + ordinal_bits
    if (event_high - event_low).bit_length() + created_shift > _RANK_BITS:
        return None
    return RankPacking(event_low, created_low, created_shift, ordinal_bits)


def _plain(key: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary-encoded keys decoded, so DuckDB compares values rather than two enum types."""
    if pa.types.is_dictionary(key.type):
        return key.cast(key.type.value_type)
    return key


def _narrow(
    entity_key: pa.ChunkedArray, feature_key: pa.ChunkedArray
) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Integer keys as int32 when every value fits: the as-of join sorts on them, and
    narrower sort keys sort faster (about a sixth of the join on a million rows)."""
    if not (pa.types.is_integer(entity_key.type) and pa.types.is_integer(feature_key.type)):
        return entity_key, feature_key
    bounds = [_min_max(entity_key), _min_max(feature_key)]
    values = [value for pair in bounds for value in pair if value is not None]
    if values and (min(values) < _INT32_MIN or max(values) > _INT32_MAX):
        return entity_key, feature_key
    return entity_key.cast(pa.int32()), feature_key.cast(pa.int32())


def _positions(column: pa.ChunkedArray) -> Positions:
    if column.num_chunks == 0:
        return np.empty(0, np.int64)
    return np.asarray(column.to_numpy(), dtype=np.int64)


def _min_max(values: pa.ChunkedArray) -> tuple[int | None, int | None]:
    bounds = pc.min_max(values)
    return bounds["min"].as_py(), bounds["max"].as_py()
