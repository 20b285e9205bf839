"""The peers of ``pit_join.py``, each a script run in its own virtual environment.

Every script reads a JSON payload on stdin, loads the entity rows (untimed), then times
one join that reads the feature Parquet file and returns one row of features per entity
row, and writes ``row_id`` plus the features to ``out_path`` (untimed). It prints one
JSON line: ``wall_s``, ``rss_before_mb`` (before the timed part), ``peak_rss_mb``
(``ru_maxrss`` of the whole process) and the peer's version.

The semantics are prodml's (``src/prodml/features/_pit.py``): for an entity row at ``t``
the candidates are the rows of its entity with ``event <= t`` and ``event >= t - ttl``
(both inclusive) and, under the created-time guard, ``created <= t`` (null created:
known at its event time); the pick has the highest rank ``(event, created with null
oldest, file position)``. Polars, DuckDB and pandas implement it the way a user of
theirs would have to: *visible time* ``v = max(event, created)``, rank every row by
sorting, the running maximum of the rank per entity in ``v`` order, an as-of join of
``t`` on ``v``, then the TTL test on the picked row's event time (if the best visible
row is older than the TTL, every visible row is). Without the guard ``v`` is the event
time. Feast has the guard (``get_historical_features(filter_by_created_timestamp=True)``)
and breaks ties on the created time; its source is rewritten first (``GUARDED``: null
created times, rows tied on event and created time), inside the timed section. Feast's
file store breaks ties with unstable sorts (about 2.5% of rows wrong at 100k under the
guard), so it runs without the guard on a source whose ties are removed first
(``UNGUARDED``), and is compared with prodml's join without the guard.
"""

from __future__ import annotations

_HEADER = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
payload = json.loads(sys.stdin.read())
FEATURES = payload["features"]
TTL_US = payload["ttl_us"]
GUARD = payload["guard"]

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

def finish(wall, cpu, baseline, version, **extra):
    print(json.dumps({
        "wall_s": wall, "cpu_s": cpu, "rss_before_mb": baseline, "version": version,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra,
    }))
"""

POLARS = (
    _HEADER
    + r"""
import polars as pl

entities = pl.read_parquet(payload["entities_path"], columns=["entity_id", "event_timestamp"])
baseline = rss_mb()
began, cpu = time.perf_counter(), time.process_time()
features = pl.read_parquet(payload["features_path"])
# rank r: position in (entity, event, created with nulls first, file position) order
ranked = (
    features.select("entity_id", "event_timestamp", "created")
    .with_row_index("ord")
    .sort(["entity_id", "event_timestamp", "created", "ord"], nulls_last=False)
    .with_row_index("r")
)
visible = (
    pl.max_horizontal("event_timestamp", "created") if GUARD else pl.col("event_timestamp")
)
# running maximum of r per entity in visible-time order; ranks grow with the entity id,
# so a plain cum_max over rows sorted by (entity, v) is the per-entity one
steps = (
    ranked.select("entity_id", visible.alias("v"), "r")
    .sort(["entity_id", "v"])
    .with_columns(pl.col("r").cum_max())
)
left = entities.with_row_index("row").sort(["entity_id", "event_timestamp"])
joined = left.join_asof(
    steps, left_on="event_timestamp", right_on="v", by="entity_id",
    strategy="backward", check_sortedness=False,
)
best = joined.get_column("r")
picked_event = ranked.get_column("event_timestamp").gather(best)
picked_ord = ranked.get_column("ord").gather(best)
lower = joined.get_column("event_timestamp") - pl.duration(microseconds=TTL_US)
keep = (
    joined.select("row")
    .with_columns(
        ord=pl.when(picked_event >= lower).then(picked_ord).otherwise(None),
    )
    .sort("row")
)
out = features.select(FEATURES)[keep.get_column("ord")]
out = out.with_columns(keep.get_column("row").alias("row_id"))
wall, cpu = time.perf_counter() - began, time.process_time() - cpu
out.write_parquet(payload["out_path"])
finish(wall, cpu, baseline, pl.__version__)
"""
)

DUCKDB = (
    _HEADER
    + r"""
import duckdb
import pyarrow.parquet as pq

entities = pq.read_table(
    payload["entities_path"], columns=["entity_id", "event_timestamp", "row_id"]
)
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
if payload.get("memory_limit"):  # the documented remedy for out-of-memory: spill sooner
    con.execute(f"SET memory_limit = '{payload['memory_limit']}'")
    con.execute(f"SET temp_directory = '{payload['temp_directory']}'")
con.register("entities", entities)
path = payload["features_path"].replace("'", "''")
visible = (
    "greatest(event_timestamp, coalesce(created, event_timestamp))" if GUARD
    else "event_timestamp"
)
features = ", ".join(f"f.{name}" for name in FEATURES)
# rank as a struct (created null -> -infinity, so null ranks oldest), its running
# maximum per entity in visible-time order (RANGE frame: rows with equal v share it)
sql = f'''
WITH f AS (
    SELECT *, file_row_number AS ord
    FROM read_parquet('{path}', file_row_number = true)
), w AS (
    SELECT entity_id, {visible} AS v,
        max({{'e': event_timestamp, 'c': coalesce(created, '-infinity'::TIMESTAMPTZ),
              'o': ord}}) OVER (PARTITION BY entity_id ORDER BY {visible}) AS best
    FROM f
)
SELECT e.row_id, {features}
FROM entities AS e
ASOF LEFT JOIN w ON e.entity_id = w.entity_id AND e.event_timestamp >= w.v
LEFT JOIN f ON f.ord = w.best.o
    AND w.best.e >= e.event_timestamp - INTERVAL ({TTL_US}) MICROSECOND
ORDER BY e.row_id
'''
baseline = rss_mb()
began, cpu = time.perf_counter(), time.process_time()
out = con.sql(sql).to_arrow_table()
wall, cpu = time.perf_counter() - began, time.process_time() - cpu
pq.write_table(out, payload["out_path"])
finish(wall, cpu, baseline, duckdb.__version__)
"""
)

FEAST = (
    _HEADER
    + r"""
from datetime import timedelta
from pathlib import Path
import duckdb
import pandas as pd
import pyarrow.parquet as pq
import feast
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float64

repo = Path(payload["repo"])
(repo / "data").mkdir(parents=True, exist_ok=True)
(repo / "feature_store.yaml").write_text(
    "project: pitbench\nregistry: data/registry.db\nprovider: local\n"
    "online_store:\n  type: sqlite\n  path: data/online.db\n"
    f"offline_store:\n  type: {payload['store']}\n"
    "entity_key_serialization_version: 3\n"
)
source_path = str(repo / "data" / "features.parquet")
src = payload["features_path"].replace("'", "''")
# Feast's rules differ from prodml's in two places; the source is rewritten so that they
# do not matter: a null created time means "not known" to Feast's created-time filter
# (prodml: known at the event time, oldest in a tie) -> 1970, which is visible at any
# entity time and ranks oldest; Feast leaves rows equal in (entity, event time,
# created time) in no defined order (prodml: the last in the file wins) -> keep that one
GUARDED = f'''
COPY (
    SELECT * EXCLUDE (created, file_row_number),
        coalesce(created, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS created
    FROM read_parquet('{src}', file_row_number = true)
    QUALIFY row_number() OVER (
        PARTITION BY entity_id, event_timestamp, created
        ORDER BY file_row_number DESC) = 1
) TO '{source_path}' (FORMAT parquet)
'''
# Without the guard a tie in (entity, event time) can be settled up front: keep the
# best row (created time, null oldest, then the last in the file). The file store needs
# this: it orders ties by two successive sorts that are not stable, so it cannot be
# trusted to break a tie on the created time (hence it runs without the guard).
UNGUARDED = f'''
COPY (
    SELECT * EXCLUDE (file_row_number) FROM read_parquet('{src}', file_row_number = true)
    QUALIFY row_number() OVER (
        PARTITION BY entity_id, event_timestamp
        ORDER BY created DESC NULLS LAST, file_row_number DESC) = 1
) TO '{source_path}' (FORMAT parquet)
'''
PREPARE = GUARDED if GUARD else UNGUARDED

def prepare():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(PREPARE)
    con.close()

prepare()  # so that the source exists when the view is applied
store = FeatureStore(repo_path=str(repo))
entity = Entity(name="entity", join_keys=["entity_id"])
view = FeatureView(
    name="bench", entities=[entity], ttl=timedelta(microseconds=TTL_US),
    schema=[Field(name=f, dtype=Float64) for f in FEATURES],
    source=FileSource(
        path=source_path, timestamp_field="event_timestamp",
        created_timestamp_column="created",
    ),
)
store.apply([entity, view])
entity_df = pd.read_parquet(payload["entities_path"])
baseline = rss_mb()
began, cpu = time.perf_counter(), time.process_time()
prepare()
job = store.get_historical_features(
    entity_df=entity_df, features=[f"bench:{f}" for f in FEATURES],
    filter_by_created_timestamp=GUARD,
)
out = job.to_arrow()
wall, cpu = time.perf_counter() - began, time.process_time() - cpu
pq.write_table(out.select(["row_id", *FEATURES]), payload["out_path"])
finish(wall, cpu, baseline, feast.__version__)
"""
)

SCRIPTS = {"polars": POLARS, "duckdb": DUCKDB, "feast_duckdb": FEAST, "feast_file": FEAST}
