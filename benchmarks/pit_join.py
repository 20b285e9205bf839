"""Benchmark: prodml's point-in-time join against Polars, DuckDB, pandas and Feast.

Data (cached under ``benchmarks/.data/``): N entity rows and N feature rows (``--rows``,
1M by default, 100k with ``--quick``) over N/10 entities, five float features, times
uniform over 30 days, TTL 7 days, and the cases the join's rules are about:

- tied feature times: 10% of the feature rows repeat another row's (entity, event
  time); half of those also repeat its created time, so file order decides;
- late-arriving rows: 10% have a created time up to 3 days after their event time,
  1% have none (null: known at the event time, oldest in a tie);
- null feature values: 5% of each feature;
- entity rows exactly at a feature row's event time (15%: inclusive bound), exactly
  one TTL after it (5%: inclusive TTL bound), one microsecond more (3%: just outside),
  and exactly at a late row's created time (5%: the guard's inclusive bound); no two
  entity rows share (entity, time) — Feast's file store would merge them into one.

The join is prodml's default (``created_time_guard`` on: a row is invisible before its
created time). Polars ``join_asof``, DuckDB ``ASOF JOIN``, pandas ``merge_asof`` and
Feast's DuckDB offline store (``filter_by_created_timestamp=True``) implement the same
rules (``_pit_peers`` says how), and that work is inside their timed section. Feast's
file (Dask) store cannot break ties on the created time (unstable sorts), so it is
compared with prodml's join with the guard off (``prodml_noguard``), on a source whose
ties are removed first (timed too). Every engine reads the feature Parquet file inside
its timed section; entity rows are loaded before it. prodml's two results also give the
number of entity rows that the late-arriving rows change.

Each engine runs in its own process for each round, in turn (A B C … A B C …, ``--rounds``
rounds, at least 5); a process times one join and reports its peak resident memory
(``ru_maxrss``, whole process) and the RSS it had before the join. Every engine gets the
median and the minimum of its rounds. Results are checked equal to prodml's on every
row and every column (NaN and null are both "missing"); a disagreement fails the
benchmark (exit status 1). Feast drops entity rows without a match inside the TTL: those
are reported as rows missing; a dropped row for which prodml found a match counts as a
disagreement. Peers are installed on first use in ``benchmarks/.venvs`` (``_peers``).

    python benchmarks/pit_join.py [--quick | --rows N] [--rounds 5] [--no-feast]
                                  [--feast-file auto|yes|no]
    python benchmarks/pit_join.py --rows 10000000 --entity-rows 100000000 --scale

``--scale`` is the run at scale: ``--entity-rows`` entity rows (100M by default) against
``--rows`` feature rows, one round of prodml, Polars and DuckDB each (the strongest
peers; pandas and Feast hold every row in memory several times over), with each
process's peak memory. prodml splits a join this large into partitions by key
(``features/_pit_plan.py``). The entity rows are made the same way, from the feature
rows; results are checked equal on every row and column as in a normal run.

Wall time is what is compared; each process's CPU seconds in the timed part (all its
threads) are reported beside it, as a check on a loaded machine. Above 1M rows Feast's
file store is skipped unless ``--feast-file yes`` (its memory grows past the machine's).

The last stdout line is one JSON object (``_table.emit``) with every figure and a table
row per comparison (ratio = peer / prodml medians).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _peers  # noqa: E402
import _pit_peers  # noqa: E402
from _table import Row, emit, interleaved, load_average, summary  # noqa: E402

DATA = HERE / ".data"
TTL = timedelta(days=7)
TTL_US = TTL // timedelta(microseconds=1)
FEATURES = [f"f{i}" for i in range(5)]
DAYS = 30
HOUR_US = 3_600 * 1_000_000
PEERS = {
    "polars": ["polars"],
    "duckdb": ["duckdb", "pyarrow"],
    "feast": ["feast[duckdb]==0.67.0"],
}
# the least ratio (peer / prodml) promised
TARGET_ASOF = 1.3  # the faster of Polars join_asof and DuckDB ASOF JOIN
TARGET_FEAST_DUCKDB = 5.0
TARGET_FEAST_FILE = 20.0
TARGET_PANDAS = 1.5


# ---------------------------------------------------------------- data


def ensure_data(rows: int, entity_rows: int | None = None) -> Path:
    """Write (once) ``rows`` feature rows and ``entity_rows`` entity rows (default:
    ``rows``)."""
    entity_rows = rows if entity_rows is None else entity_rows
    suffix = "" if entity_rows == rows else f"_{entity_rows}"
    folder = DATA / f"pit_cases_{rows}{suffix}"
    done = folder / "cases.json"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240101)
    start = np.datetime64("2024-01-01T00:00:00", "us").astype(np.int64)
    span = DAYS * 86_400 * 1_000_000
    n_entities = max(1, rows // 10)
    stamp = pa.timestamp("us", tz="UTC")

    entity = rng.integers(0, n_entities, rows)
    event = start + rng.integers(0, span, rows)
    created = event + rng.integers(0, HOUR_US, rows)
    late = rng.random(rows) < 0.10
    created[late] = event[late] + rng.integers(HOUR_US, 72 * HOUR_US, int(late.sum()))
    tie = rng.random(rows) < 0.10
    origin = rng.choice(np.flatnonzero(~tie), int(tie.sum()))
    entity[tie], event[tie] = entity[origin], event[origin]
    same_created = rng.random(len(origin)) < 0.5
    tie_rows = np.flatnonzero(tie)
    created[tie_rows] = np.where(
        same_created, created[origin], event[origin] + rng.integers(0, 2 * HOUR_US, len(origin))
    )
    created_null = rng.random(rows) < 0.01
    columns: dict[str, Any] = {
        "entity_id": entity,
        "event_timestamp": pa.array(event, stamp),
        "created": pa.array(created, stamp, mask=created_null),
    }
    for name in FEATURES:
        columns[name] = pa.array(rng.random(rows), mask=rng.random(rows) < 0.05)
    pq.write_table(pa.table(columns), folder / "features.parquet", row_group_size=131_072)

    count = entity_rows
    keys = rng.integers(0, n_entities, count)
    times = start + rng.integers(0, span, count)
    kind = rng.random(count)
    source = rng.integers(0, rows, count)
    cases = {
        "exact_event_time": kind < 0.15,
        "exact_ttl_bound": (kind >= 0.15) & (kind < 0.20),
        "just_past_ttl": (kind >= 0.20) & (kind < 0.23),
        "exact_created_time_of_late_row": (kind >= 0.23) & (kind < 0.28),
    }
    offsets = {
        "exact_event_time": event,
        "exact_ttl_bound": event + TTL_US,
        "just_past_ttl": event + TTL_US + 1,
    }
    late_rows = np.flatnonzero(late & ~created_null)
    for case, rows_of in cases.items():
        if case == "exact_created_time_of_late_row":
            picked = rng.choice(late_rows, int(rows_of.sum()))
            keys[rows_of], times[rows_of] = entity[picked], created[picked]
        else:
            keys[rows_of], times[rows_of] = entity[source[rows_of]], offsets[case][source[rows_of]]
    while True:  # entity rows unique in (entity, time)
        order = np.lexsort((times, keys))
        same = (np.diff(keys[order]) == 0) & (np.diff(times[order]) == 0)
        again = order[1:][same]
        if len(again) == 0:
            break
        times[again] = start + rng.integers(0, span, len(again))
        for mask in cases.values():
            mask[again] = False
    entities = pa.table(
        {"entity_id": keys, "event_timestamp": pa.array(times, stamp), "row_id": np.arange(count)}
    )
    pq.write_table(entities, folder / "entities.parquet")
    summary_of_cases = {
        "feature_rows_tied": int(tie.sum()),
        "feature_rows_tied_same_created": int(same_created.sum()),
        "feature_rows_late": int(late.sum()),
        "feature_rows_created_null": int(created_null.sum()),
        **{f"entity_rows_{case}": int(mask.sum()) for case, mask in cases.items()},
    }
    done.write_text(json.dumps(summary_of_cases))
    return folder


# ---------------------------------------------------------------- children


def rss_mb() -> float:
    """Current resident memory of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_prodml(folder: Path, *, guard: bool, out: Path) -> dict[str, Any]:
    import duckdb

    import prodml
    from prodml.features._pit import JoinView, point_in_time_join

    entities = pq.read_table(folder / "entities.parquet", columns=["entity_id", "event_timestamp"])
    source = str(folder / "features.parquet").replace("'", "''")
    view = JoinView(
        name="bench",
        relation=f"SELECT * FROM read_parquet('{source}')",
        join_keys=(("entity_id", "entity_id"),),
        event_time="event_timestamp",
        created_time="created",
        ttl=TTL,
        features=tuple((name, name) for name in FEATURES),
    )
    con = duckdb.connect()
    baseline = rss_mb()
    began, cpu = time.perf_counter(), time.process_time()
    result = point_in_time_join(con, entities, "event_timestamp", [view], created_time_guard=guard)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    result = result.append_column("row_id", pa.array(np.arange(result.num_rows)))
    pq.write_table(result, out)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_before_mb": baseline,
        "peak_rss_mb": _peers.peak_rss_mb(),
        "version": getattr(prodml, "__version__", "dev"),
    }


def child_pandas(folder: Path, *, out: Path) -> dict[str, Any]:
    """The same rules with pandas: rank by sorting, running maximum, ``merge_asof``."""
    import pandas as pd

    entities = pd.read_parquet(
        folder / "entities.parquet", columns=["entity_id", "event_timestamp"]
    )
    entities["event_timestamp"] = entities["event_timestamp"].dt.tz_convert(None)
    baseline = rss_mb()
    began, cpu = time.perf_counter(), time.process_time()
    features = pd.read_parquet(folder / "features.parquet")
    for column in ("event_timestamp", "created"):  # naive UTC: tz-aware to_numpy() is objects
        features[column] = features[column].dt.tz_convert(None)
    ranked = (
        features[["entity_id", "event_timestamp", "created"]]
        .assign(ord=np.arange(len(features)))
        .sort_values(["entity_id", "event_timestamp", "created", "ord"], na_position="first")
    )
    event, created = ranked["event_timestamp"], ranked["created"]
    steps = pd.DataFrame(
        {
            "entity_id": ranked["entity_id"].to_numpy(),
            "v": created.where(created > event, event).to_numpy(),
            "best": np.arange(len(ranked)),
        }
    ).sort_values(["entity_id", "v"])
    # ranks grow with the entity id: a global running maximum is the per-entity one
    steps["best"] = np.maximum.accumulate(steps["best"].to_numpy())
    steps = steps.sort_values("v", kind="stable")
    left = entities.assign(row=np.arange(len(entities))).sort_values("event_timestamp")
    merged = pd.merge_asof(
        left, steps, left_on="event_timestamp", right_on="v", by="entity_id", direction="backward"
    )
    best = merged["best"].fillna(-1).to_numpy(dtype=np.int64)
    ranked_event = ranked["event_timestamp"].to_numpy()
    ranked_ord = ranked["ord"].to_numpy()
    lower = (merged["event_timestamp"] - pd.Timedelta(TTL)).to_numpy()
    ok = (best >= 0) & (ranked_event[np.maximum(best, 0)] >= lower)
    picks = np.full(len(entities), -1, dtype=np.int64)
    picks[merged["row"].to_numpy()] = np.where(ok, ranked_ord[np.maximum(best, 0)], -1)
    values = features[FEATURES].iloc[np.maximum(picks, 0)].reset_index(drop=True)
    values = values.mask(pd.Series(picks < 0), axis=0)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    values.assign(row_id=np.arange(len(values))).to_parquet(out)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_before_mb": baseline,
        "peak_rss_mb": _peers.peak_rss_mb(),
        "version": pd.__version__,
    }


def run_child(engine: str, folder: Path, out: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", engine, "--folder", str(folder)]
    return _peers.run_json([*command, "--out", str(out)], what=f"{engine} child")


#: DuckDB's memory limit at scale: its default (80% of RAM) was killed for lack of memory
#: at 100M entity rows (the Arrow result is held outside it); DuckDB's documentation
#: says to lower it so that it spills to disk instead.
SCALE_DUCKDB_MEMORY = "12GB"


def run_peer(
    engine: str, folder: Path, out: Path, *, guard: bool, scale: bool = False
) -> dict[str, Any]:
    venv = "feast" if engine.startswith("feast") else engine
    python = _peers.peer_python(f"pit_{venv}", PEERS[venv])
    with tempfile.TemporaryDirectory(prefix="pit_") as repo:
        payload = {
            "repo": repo,
            "store": engine.removeprefix("feast_"),
            "features_path": str(folder / "features.parquet"),
            "entities_path": str(folder / "entities.parquet"),
            "out_path": str(out),
            "ttl_us": TTL_US,
            "features": FEATURES,
            "guard": guard,
        }
        if scale and engine == "duckdb":
            payload["memory_limit"] = SCALE_DUCKDB_MEMORY
            payload["temp_directory"] = str(Path(repo) / "duckdb_spill")
        return _peers.run_peer(python, _pit_peers.SCRIPTS[engine], payload)


# ---------------------------------------------------------------- checks


def _same(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Per value: equal, or both missing (NaN)."""
    same: np.ndarray = (left == right) | (np.isnan(left) & np.isnan(right))
    return same


def _column(path: Path, name: str) -> np.ndarray:
    """One column of a result file as float64 (NaN for missing) or int64 (``row_id``)."""
    column = pq.read_table(path, columns=[name]).column(name)
    if name == "row_id":
        return np.asarray(column.to_numpy(), dtype=np.int64)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def compare(reference: Path, other: Path, rows: int) -> dict[str, int]:
    """Disagreements of ``other`` with prodml's ``reference`` over every row and column
    (read a column at a time: at 100M rows both whole results would not fit twice)."""
    ref_ids = _column(reference, "row_id")
    assert np.array_equal(ref_ids, np.arange(rows)), "prodml's rows are not in input order"
    del ref_ids
    ids = _column(other, "row_id")
    valid = (ids >= 0) & (ids < rows)
    seen = np.zeros(rows, dtype=bool)  # a bitmap, not a sort: 100M ids take seconds
    seen[ids[valid]] = True
    found = int(seen.sum())
    report = {
        "rows": len(ids),
        "rows_missing": rows - found,
        "rows_duplicated": int(valid.sum()) - found,
    }
    missing = np.flatnonzero(~seen)
    del seen
    differs = np.zeros(int(valid.sum()), dtype=bool)
    matched = np.zeros(len(missing), dtype=bool)  # a missing row prodml found a value for
    for name in FEATURES:
        ref = _column(reference, name)
        mine, theirs = ref[ids[valid]], _column(other, name)[valid]
        differs |= ~_same(mine, theirs)
        matched |= ~np.isnan(ref[missing])
        del ref, mine, theirs
    differing = int(differs.sum()) + int((~valid).sum())
    missing_matched = int(matched.sum())
    report["rows_differing"] = differing
    report["missing_rows_prodml_matched"] = missing_matched
    report["disagreements"] = differing + missing_matched + report["rows_duplicated"]
    return report


# ---------------------------------------------------------------- main

# engine -> (runner kind, created-time guard)
ENGINES: dict[str, tuple[str, bool]] = {
    "prodml": ("prodml", True),
    "polars": ("peer", True),
    "duckdb": ("peer", True),
    "pandas": ("pandas", True),
    "feast_duckdb": ("peer", True),
    "prodml_noguard": ("prodml", False),
    "feast_file": ("peer", False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="entity and feature rows")
    parser.add_argument("--quick", action="store_true", help="100k rows")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (>= 5)")
    parser.add_argument("--no-feast", action="store_true", help="skip both Feast stores")
    parser.add_argument(
        "--feast-file",
        choices=["auto", "yes", "no"],
        default="auto",
        help="Feast's file (Dask) store; auto: up to 1M rows (it needs ~2.3 GB at 1M, "
        "growing with rows x feature rows per entity)",
    )
    parser.add_argument(
        "--entity-rows", type=int, help="entity rows (default: --rows; --scale: 100M)"
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="one round of prodml, Polars and DuckDB at --entity-rows entity rows",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, out = Path(args.folder), Path(args.out)
        if args.child == "pandas":
            figures = child_pandas(folder, out=out)
        else:
            figures = child_prodml(folder, guard=args.child == "prodml", out=out)
        print(json.dumps(figures))
        return

    rows = 100_000 if args.quick else args.rows
    entity_rows = args.entity_rows or (100_000_000 if args.scale else rows)
    rounds = 1 if args.scale else max(5, args.rounds)
    print(f"load average before: {load_average()}", flush=True)
    t0 = time.perf_counter()
    folder = ensure_data(rows, entity_rows)
    print(f"data ready in {time.perf_counter() - t0:.0f} s: {folder}", flush=True)
    engines = dict(ENGINES)
    if args.scale:
        engines = {k: v for k, v in engines.items() if k in ("prodml", "polars", "duckdb")}
    elif args.no_feast:
        engines = {k: v for k, v in engines.items() if not k.startswith("feast")}
    elif args.feast_file == "no" or (args.feast_file == "auto" and rows > 1_000_000):
        engines.pop("feast_file")
    for engine, (kind, _) in engines.items():  # install peers before timing anything
        if kind == "peer":
            venv = "feast" if engine.startswith("feast") else engine
            _peers.peer_python(f"pit_{venv}", PEERS[venv])

    reports: dict[str, list[dict[str, Any]]] = {engine: [] for engine in engines}

    def side(engine: str) -> Any:
        kind, guard = engines[engine]
        out = folder / f"out_{engine}.parquet"

        def run() -> float:
            if kind == "peer":
                figures = run_peer(engine, folder, out, guard=guard, scale=args.scale)
            else:
                figures = run_child("prodml" if engine == "prodml" else engine, folder, out)
            reports[engine].append(figures)
            print(
                f"  {engine:>15}: {figures['wall_s']:7.3f} s (CPU {figures['cpu_s']:6.2f} s), peak RSS "
                f"{figures['peak_rss_mb']:6.0f} MiB",
                flush=True,
            )
            return float(figures["wall_s"])

        return run

    times = interleaved(rounds, {engine: side(engine) for engine in engines})
    results: dict[str, Any] = {
        "rows": {"entity_rows": entity_rows, "feature_rows": rows, "entities": max(1, rows // 10)},
        "cases": json.loads((folder / "cases.json").read_text()),
        "ttl_days": TTL.days,
        "rounds": rounds,
        "engines": {},
    }
    for engine, walls in times.items():
        runs = reports[engine]
        results["engines"][engine] = {
            **summary(walls),
            "cpu_s": summary([r["cpu_s"] for r in runs]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "rss_before_mb": float(np.median([r["rss_before_mb"] for r in runs])),
            "version": runs[-1].get("version"),
            "guard": engines[engine][1],
        }

    agreement: dict[str, Any] = {}
    for engine, (_, guard) in engines.items():
        if not engine.startswith("prodml"):
            reference = folder / f"out_{'prodml' if guard else 'prodml_noguard'}.parquet"
            agreement[engine] = compare(reference, folder / f"out_{engine}.parquet", entity_rows)
    # what the data exercises: rows with a match, rows the created-time guard changes
    unguarded = "prodml_noguard" in engines
    found = np.zeros(entity_rows, dtype=bool)
    changed = np.zeros(entity_rows, dtype=bool)
    for name in FEATURES:  # prodml's result read once per column
        guarded = _column(folder / "out_prodml.parquet", name)
        found |= ~np.isnan(guarded)
        if unguarded:
            changed |= ~_same(guarded, _column(folder / "out_prodml_noguard.parquet", name))
    if unguarded:
        results["cases"]["entity_rows_changed_by_guard"] = int(changed.sum())
    results["cases"]["entity_rows_with_a_match"] = int(found.sum())
    results["agreement"] = agreement
    disagreements = sum(report["disagreements"] for report in agreement.values())
    results["disagreements"] = disagreements

    print(f"cases: {results['cases']}")
    for engine, figures in results["engines"].items():
        print(
            f"{engine:>15}: median {figures['median']:.3f} s, min {figures['min']:.3f} s, "
            f"CPU median {figures['cpu_s']['median']:.2f} s, "
            f"peak RSS {figures['peak_rss_mb']:.0f} MiB (version {figures['version']})"
        )
    for engine, report in agreement.items():
        print(f"{engine:>15} vs prodml: {report}")
    print(f"disagreements: {disagreements}  load average: {load_average()}")

    table = build_rows(results["engines"], rows, disagreements, entity_rows)
    emit(results, table)
    if disagreements:
        sys.exit(1)


def build_rows(
    engines: dict[str, Any], rows: int, disagreements: int, entity_rows: int | None = None
) -> list[Row]:
    entity_rows = rows if entity_rows is None else entity_rows
    scale = entity_rows != rows  # the targets are at 1M x 1M and 10M x 10M
    if not scale:
        size = f"{rows:,} x {rows:,} rows, median of rounds"
    else:
        peaks = ", ".join(f"{e} {engines[e]['peak_rss_mb']:,.0f} MiB" for e in engines)
        one = len(engines["prodml"]["runs"]) == 1
        rounds = "one round" if one else "median of rounds"
        size = f"{entity_rows:,} entity x {rows:,} feature rows, {rounds}; peak RSS {peaks}"
    flag = f"; {disagreements} DISAGREEMENTS" if disagreements else ""
    out: list[Row] = []

    def row(peer: str, base: str, target: float | None, note: str, missed: str = "") -> None:
        if peer not in engines:
            return
        if scale:
            target = None
            if peer == "duckdb":
                note += f"; DuckDB memory_limit {SCALE_DUCKDB_MEMORY}, spilling to disk"
        ratio = engines[peer]["median"] / engines[base]["median"]
        if target is not None and ratio < target:
            note += f"; TARGET MISSED ({ratio:.2f}x < {target}x){missed}"
        out.append(
            Row(
                benchmark="pit_join",
                measure="join wall time",
                prodml=engines[base]["median"],
                peer=peer,
                peer_value=engines[peer]["median"],
                unit="s",
                target=target,
                note=f"{size}; {note}{flag}",
            )
        )

    guard = "created-time guard on"
    row("polars", "prodml", TARGET_ASOF, f"{guard}; join_asof plus ranking, same rules")
    row("duckdb", "prodml", TARGET_ASOF, f"{guard}; ASOF JOIN plus window, same rules")
    row("pandas", "prodml", TARGET_PANDAS, f"{guard}; merge_asof plus ranking, same rules")
    feast = f"{guard}; filter_by_created_timestamp, source rewritten for ties and nulls"
    row("feast_duckdb", "prodml", TARGET_FEAST_DUCKDB, f"{feast}; DuckDB offline store")
    row(
        "feast_file",
        "prodml_noguard",
        TARGET_FEAST_FILE,
        "guard off on both sides (the file store's unstable sorts cannot break ties on "
        "the created time); ties removed first, timed; file (Dask) offline store",
        ": at 1M on a loaded machine prodml's guard-off join (run after Feast's DuckDB "
        "store in each round) took 1.3x its guarded one, though in one process the two "
        "are level (same NumPy plan); against the guarded median the ratio was ~22x",
    )
    return out


if __name__ == "__main__":
    main()
