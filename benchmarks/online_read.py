"""Online read latency: prodml's SQLite online store against Feast's, same data, same keys.

Writes N entities × 5 float features (100k; 10k with ``--quick``) to a SQLite online
store in a temporary folder, then times in-process batch reads of 1 and of 100 random
entities (p50/p99 in ms). Feast's SQLite online store does the same in its own venv
(``benchmarks/.venvs/feast``, built on first use): a minimal repo (FileSource over the
same Parquet file, one Entity, one FeatureView), ``write_to_online_store``, then
``get_online_features(...).to_dict()`` for the same key lists. The last stdout line is
one JSON object with every figure, the targets and the ratios (Feast / prodml: above 1
means prodml is faster).

    .venv/bin/python benchmarks/online_read.py [--quick] [--no-peer]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from prodml.features.online import SqliteOnlineStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peers

FEAST_REQUIREMENT = "feast==0.67.0"
FEATURES = [f"f{i}" for i in range(5)]
NAMESPACE = "bench_view:1"
NOW = datetime(2013, 6, 1, tzinfo=UTC)
TTL = timedelta(days=7)
TARGETS = {"p50_ms_1": 0.1, "p99_ms_1": 1.0, "p50_ms_100": 2.0}

PEER_SCRIPT = r"""
import json, sys, time, warnings
from datetime import timedelta
from pathlib import Path

warnings.filterwarnings("ignore")
import logging
logging.disable(logging.WARNING)
import numpy as np
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float64
from feast.value_type import ValueType

args = json.load(sys.stdin)
repo = Path(args["workdir"]) / "feast_repo"
(repo / "data").mkdir(parents=True)
(repo / "feature_store.yaml").write_text(
    "project: bench\n"
    "provider: local\n"
    "registry:\n"
    f"  path: {repo / 'data' / 'registry.db'}\n"
    "  cache_ttl_seconds: 0\n"
    "online_store:\n"
    "  type: sqlite\n"
    f"  path: {repo / 'data' / 'online.db'}\n"
    "entity_key_serialization_version: 3\n"
)
entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
source = FileSource(path=args["parquet"], timestamp_field="event_timestamp")
view = FeatureView(
    name="bench_view",
    entities=[entity],
    ttl=timedelta(days=7),
    schema=[Field(name=name, dtype=Float64) for name in args["features"]],
    online=True,
    source=source,
)
store = FeatureStore(repo_path=str(repo))
store.apply([entity, view])
frame = pd.read_parquet(args["parquet"])
start = time.perf_counter()
store.write_to_online_store("bench_view", frame)
write_s = time.perf_counter() - start
refs = [f"bench_view:{name}" for name in args["features"]]

def measure(key_lists, warmup):
    rows = [[{"entity_id": k} for k in keys] for keys in key_lists]
    for r in rows[:warmup]:
        store.get_online_features(features=refs, entity_rows=r).to_dict()
    times = []
    for r in rows:
        t = time.perf_counter_ns()
        store.get_online_features(features=refs, entity_rows=r).to_dict()
        times.append(time.perf_counter_ns() - t)
    ms = np.array(times) / 1e6
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))

p50_1, p99_1 = measure(args["keys_1"], 50)
p50_100, p99_100 = measure(args["keys_100"], 20)
sample = store.get_online_features(
    features=refs, entity_rows=[{"entity_id": k} for k in args["sample"]]
).to_dict()
import feast
print(json.dumps({
    "version": feast.__version__,
    "write_s": write_s,
    "p50_ms_1": p50_1, "p99_ms_1": p99_1, "p50_ms_100": p50_100, "p99_ms_100": p99_100,
    "sample_f0": sample["f0"],
}))
"""


def make_data(entities: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    base_us = int((NOW - timedelta(days=1)).timestamp() * 1_000_000)
    stamps = base_us + rng.integers(0, 86_400_000_000, entities)
    columns: dict[str, Any] = {
        "entity_id": np.arange(entities, dtype=np.int64),
        "event_timestamp": pa.array(stamps, pa.timestamp("us", tz="UTC")),
    }
    for name in FEATURES:
        columns[name] = rng.random(entities)
    return pa.table(columns)


def percentiles(
    fn: Callable[[list[tuple[int]]], object], key_lists: list[list[int]]
) -> tuple[float, float]:
    requests = [[(k,) for k in keys] for keys in key_lists]
    for keys in requests[:50]:
        fn(keys)
    times = []
    for keys in requests:
        start = time.perf_counter_ns()
        fn(keys)
        times.append(time.perf_counter_ns() - start)
    ms = np.array(times) / 1e6
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def run_prodml(
    data: pa.Table, workdir: Path, keys_1: list[list[int]], keys_100: list[list[int]]
) -> dict[str, Any]:
    with SqliteOnlineStore(workdir / "prodml_online.db") as store:
        start = time.perf_counter()
        written = store.write_batch(
            NAMESPACE,
            data,
            key_columns=["entity_id"],
            event_time_column="event_timestamp",
            feature_columns=FEATURES,
        )
        write_s = time.perf_counter() - start
        if written != data.num_rows:
            raise RuntimeError(f"prodml wrote {written} records, expected {data.num_rows}")

        def read(keys: list[tuple[int]]) -> object:
            return store.read(NAMESPACE, keys, FEATURES, now=NOW, ttl=TTL)

        p50_1, p99_1 = percentiles(read, keys_1)
        p50_100, p99_100 = percentiles(read, keys_100)
        check = store.read(NAMESPACE, [(k,) for k in range(5)], FEATURES, now=NOW, ttl=TTL)
        if check.values["f0"] != data.column("f0").to_pylist()[:5] or any(check.stale):
            raise RuntimeError("prodml returned different values than were written")
    return {
        "write_s": round(write_s, 3),
        "p50_ms_1": p50_1,
        "p99_ms_1": p99_1,
        "p50_ms_100": p50_100,
        "p99_ms_100": p99_100,
    }


SERVICE_FEATURES_PY = """
from datetime import timedelta
from prodml.features import Entity, FeatureService, FeatureView, Field, ParquetSource

entity = Entity("entity", join_keys=["entity_id"])
bench = FeatureView("bench", entities=[entity], source=ParquetSource("features.parquet"),
                    event_time="event_timestamp", ttl=timedelta(days=7),
                    features=[Field(f"f{i}", "float64") for i in range(5)])
bench_service = FeatureService("bench_service", features=[bench])
"""


def run_prodml_service(
    data: pa.Table, workdir: Path, keys_1: list[list[int]], keys_100: list[list[int]]
) -> dict[str, Any]:
    """The whole prodml path Feast's get_online_features corresponds to: a project,
    materialization from Parquet, ``project.features.get_online`` for a service."""
    from prodml import Project

    root = workdir / "prodml_project"
    project = Project.init(root, name="bench")
    try:
        pq.write_table(data, root / "features.parquet")
        (root / "features.py").write_text(SERVICE_FEATURES_PY)
        project.features.apply()
        start = time.perf_counter()
        project.features.materialize(end=NOW)
        materialize_s = time.perf_counter() - start
        features = project.features

        def read(keys: list[tuple[int]]) -> object:
            return features.get_online(
                "bench_service", {"entity_id": [k[0] for k in keys]}, now=NOW
            )

        p50_1, p99_1 = percentiles(read, keys_1)
        p50_100, p99_100 = percentiles(read, keys_100)
        check = features.get_online("bench_service", {"entity_id": list(range(5))}, now=NOW)
        if check.values["f0"] != data.column("f0").to_pylist()[:5]:
            raise RuntimeError("prodml get_online returned different values than were written")
    finally:
        project.close()
    return {
        "materialize_s": round(materialize_s, 3),
        "p50_ms_1": p50_1,
        "p99_ms_1": p99_1,
        "p50_ms_100": p50_100,
        "p99_ms_100": p99_100,
    }


def run_feast(
    data: pa.Table, workdir: Path, keys_1: list[list[int]], keys_100: list[list[int]]
) -> dict[str, Any]:
    parquet = workdir / "features.parquet"
    pq.write_table(data, parquet)
    python = _peers.peer_python("feast", [FEAST_REQUIREMENT])
    payload = {
        "workdir": str(workdir),
        "parquet": str(parquet),
        "features": FEATURES,
        "keys_1": keys_1,
        "keys_100": keys_100,
        "sample": list(range(5)),
    }
    result = _peers.run_peer(python, PEER_SCRIPT, payload)
    expected = data.column("f0").to_pylist()[:5]
    if result.pop("sample_f0") != expected:
        raise RuntimeError("Feast returned different values than were written")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k entities, fewer iterations")
    parser.add_argument("--no-peer", action="store_true", help="skip Feast")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    entities = 10_000 if args.quick else 100_000
    iterations_1 = 2_000 if args.quick else 20_000
    iterations_100 = 300 if args.quick else 2_000
    data = make_data(entities, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    keys_1 = rng.integers(0, entities, (iterations_1, 1)).tolist()
    keys_100 = rng.integers(0, entities, (iterations_100, 100)).tolist()
    report: dict[str, Any] = {
        "benchmark": "online_read",
        "entities": entities,
        "features": len(FEATURES),
        "iterations_1": iterations_1,
        "iterations_100": iterations_100,
        "targets": TARGETS,
    }
    with tempfile.TemporaryDirectory(prefix="prodml-online-bench-") as tmp:
        workdir = Path(tmp)
        prodml = run_prodml(data, workdir, keys_1, keys_100)
        report["prodml"] = prodml
        report["meets_targets"] = all(prodml[name] <= limit for name, limit in TARGETS.items())
        print(
            f"prodml sqlite: write {prodml['write_s']:.2f}s  1 entity p50 {prodml['p50_ms_1']:.4f} ms "
            f"p99 {prodml['p99_ms_1']:.4f} ms  100 entities p50 {prodml['p50_ms_100']:.3f} ms "
            f"p99 {prodml['p99_ms_100']:.3f} ms"
        )
        service = run_prodml_service(data, workdir, keys_1, keys_100)
        report["prodml_service"] = service
        print(
            f"prodml get_online (service level): materialize {service['materialize_s']:.2f}s  "
            f"1 entity p50 {service['p50_ms_1']:.4f} ms p99 {service['p99_ms_1']:.4f} ms  "
            f"100 entities p50 {service['p50_ms_100']:.3f} ms p99 {service['p99_ms_100']:.3f} ms"
        )
        if not args.no_peer:
            feast = run_feast(data, workdir, keys_1, keys_100)
            report["feast"] = feast
            for size in (1, 100):
                figure = f"p50_ms_{size}"
                report[f"ratio_service_p50_{size}"] = round(feast[figure] / service[figure], 1)
            for stat in ("p50", "p99"):
                for size in (1, 100):
                    figure = f"{stat}_ms_{size}"
                    report[f"ratio_{stat}_{size}"] = round(feast[figure] / prodml[figure], 1)
            print(
                f"feast {feast['version']} sqlite: write {feast['write_s']:.2f}s  1 entity p50 "
                f"{feast['p50_ms_1']:.3f} ms p99 {feast['p99_ms_1']:.3f} ms  100 entities p50 "
                f"{feast['p50_ms_100']:.3f} ms p99 {feast['p99_ms_100']:.3f} ms"
            )
            print(
                f"ratio feast/prodml: p50 1 entity {report['ratio_p50_1']}x, "
                f"p50 100 entities {report['ratio_p50_100']}x"
            )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
