"""Online read latency, like for like: prodml's ``features.get_online`` against Feast's
``get_online_features``, on SQLite and on Redis, same data, same keys, same statistic.

N entities × 5 float features (100k; 10k with ``--quick``) are written once per backend
by each system's own path: prodml materializes a feature view from Parquet into its
configured online store (``[online_store] type = "sqlite"`` then ``type = "redis"``
in ``prodml.toml``); Feast ``write_to_online_store``-s the same Parquet file into its
``sqlite`` / ``redis`` online store (``feast[redis]`` in its own venv,
``benchmarks/.venvs/feast_redis``, built on first use). Then, for batches of 1 and of
100 random entities, each round times every key list once (after 50 untimed warm-up
reads) with the public read a user calls:

* prodml: ``project.features.get_online("bench_service", {"entity_id": keys})``;
* Feast: ``store.get_online_features(features=[all 5], entity_rows=...).to_dict()``.

Rounds are interleaved (prodml, Feast, prodml, Feast…; Feast serves rounds from one
long-lived process, ``_online_feast_peer.py``) and every system gets the same
statistic: per round the p50 and p99 of its per-read latencies, then the median and the
minimum of those over the rounds. Every value of every feature of every entity read in
every timed round is checked: both systems' values (float64, request order) are
compared with the source data and with each other, element by element in the first
round and by SHA-256 in the others. After the rounds, a diagnostic (not in the rows)
times prodml's layers on the same keys — the bare backend fetch, ``OnlineStore.read``,
``get_online`` — and a row that misses its target says in its note where the time goes.

Redis is 127.0.0.1:6379 (``--redis-url``), database 11: prodml's keys have a unique
prefix and Feast a unique project; only those keys are deleted at the end.

    .venv/bin/python benchmarks/online_read.py [--quick] [--no-peer] [--rounds N]

The last stdout line is ``_table.emit``'s JSON: figures, load average and one row per
comparison (ratio = Feast / prodml: above 1 means prodml is faster; target 5).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peers
from _table import Row, emit, interleaved, load_average, summary

FEAST_REQUIREMENTS = ["feast[redis]==0.67.0"]
FEATURES = [f"f{i}" for i in range(5)]
NOW = datetime(2013, 6, 1, tzinfo=UTC)
TARGET = 5.0
WARMUP = 50
SIZES = (1, 100)
BACKENDS = ("sqlite", "redis")
PEER_SCRIPT = Path(__file__).resolve().parent / "_online_feast_peer.py"

FEATURES_PY = """
from datetime import timedelta
from prodml.features import Entity, FeatureService, FeatureView, Field, ParquetSource

entity = Entity("entity", join_keys=["entity_id"])
bench = FeatureView("bench", entities=[entity], source=ParquetSource("features.parquet"),
                    event_time="event_timestamp", ttl=timedelta(days=7),
                    features=[Field(f"f{i}", "float64") for i in range(5)])
bench_service = FeatureService("bench_service", features=[bench])
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


def to_array(results: list[dict[str, list[Any]]]) -> np.ndarray:
    """Values as float64 (None → NaN), shape (key list, entity, feature) — the same
    layout and dtype the Feast peer digests."""
    return np.array(
        [[[np.nan if v is None else v for v in r[name]] for name in FEATURES] for r in results],
        dtype=np.float64,
    ).transpose(0, 2, 1)


def digest(values: np.ndarray) -> str:
    return hashlib.sha256(values.tobytes()).hexdigest()


def check_equal(what: str, got: np.ndarray, expected: np.ndarray) -> None:
    if got.shape != expected.shape:
        raise RuntimeError(f"{what}: shape {got.shape}, expected {expected.shape}")
    bad = ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise RuntimeError(
            f"{what}: {int(bad.sum())} of {got.size} values differ; first at (key list, "
            f"entity, feature) {first}: {got[first]!r} vs {expected[first]!r}"
        )


def latency(times_ns: list[int]) -> dict[str, float]:
    ms = np.array(times_ns) / 1e6
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


class ProdmlSide:
    """A prodml project whose online store is ``backend``, materialized from Parquet."""

    def __init__(self, root: Path, data: pa.Table, backend: str, redis_url: str) -> None:
        from prodml import Project

        self.prefix = f"prodml_bench_online_{uuid.uuid4().hex[:8]}"
        self.redis_url = redis_url
        self.backend = backend
        Project.init(root, name="bench").close()
        config = root / "prodml.toml"
        if backend == "redis":
            section = (
                f'[online_store]\ntype = "redis"\nurl = "{redis_url}"\n'
                f'key_prefix = "{self.prefix}"\n\n'
            )
            text, found = re.subn(r"(?ms)^\[online_store\]\n.*?\n\n", section, config.read_text())
            if found != 1:
                raise RuntimeError("prodml.toml has no [online_store] section to set to Redis")
            config.write_text(text)
        pq.write_table(data, root / "features.parquet")
        (root / "features.py").write_text(FEATURES_PY)
        self.project = Project.open(root)
        kind = type(self.project.features.online).__name__
        if kind.lower() != f"{backend}onlinestore":
            raise RuntimeError(f"prodml opened a {kind}, expected the {backend} store")
        self.project.features.apply()
        start = time.perf_counter()
        self.project.features.materialize(end=NOW)
        self.write_s = time.perf_counter() - start

    def round(self, key_lists: list[list[int]]) -> tuple[list[int], np.ndarray]:
        get = self.project.features.get_online
        requests = [{"entity_id": keys} for keys in key_lists]
        for entities in requests[:WARMUP]:
            get("bench_service", entities, now=NOW)
        times = []
        results = []
        for entities in requests:
            t = time.perf_counter_ns()
            result = get("bench_service", entities, now=NOW)
            times.append(time.perf_counter_ns() - t)
            results.append(result)
        return times, to_array([r.values for r in results])

    def layers(self, key_lists: list[list[int]], passes: int = 3) -> dict[str, float]:
        """Where ``get_online``'s time goes (diagnostic, not in the rows): p50 of the
        backend's bare fetch (``_read``: one SQLite SELECT / one Redis HMGET), of
        ``OnlineStore.read`` (+ key encoding, JSON decode, TTL), of ``get_online`` (+ the
        feature-service layer) and of ``FeatureView.version`` alone (cached: it was once
        a third of the layer), each timed on the same key lists in turn; the least p50 of
        ``passes`` passes."""
        from prodml.features.online import encode_entity_key

        features = self.project.features
        view = features.repo.view("bench")
        store = features.online
        namespace, ttl = f"{view.name}:{view.version}", view.ttl
        calls: dict[str, Callable[[list[int]], object]] = {
            "fetch_ms": lambda keys: store._read(  # diagnostic only
                namespace, [encode_entity_key((k,)) for k in keys]
            ),
            "store_read_ms": lambda keys: store.read(
                namespace, [(k,) for k in keys], FEATURES, now=NOW, ttl=ttl
            ),
            "get_online_ms": lambda keys: features.get_online(
                "bench_service", {"entity_id": keys}, now=NOW
            ),
            "view_version_ms": lambda keys: view.version,
        }
        best = dict.fromkeys(calls, float("inf"))
        for _ in range(passes):
            times: dict[str, list[int]] = {name: [] for name in calls}
            for keys in key_lists:
                for name, call in calls.items():
                    t = time.perf_counter_ns()
                    call(keys)
                    times[name].append(time.perf_counter_ns() - t)
            for name, t in times.items():
                best[name] = min(best[name], latency(t)["p50_ms"])
        return best

    def close(self) -> None:
        self.project.close()
        if self.backend == "redis":
            drop_redis_keys(self.redis_url, f"{self.prefix}:*")


def drop_redis_keys(url: str, pattern: str) -> int:
    """Delete the keys matching ``pattern`` (only this run's unique prefix/project)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()
    return len(keys)


class FeastPeer:
    """The long-lived Feast process (``_online_feast_peer.py``), one command per line."""

    def __init__(self, workdir: Path) -> None:
        python = _peers.peer_python("feast_redis", FEAST_REQUIREMENTS)
        self.stderr: IO[str] = (workdir / "feast_stderr.log").open("w")
        self.proc = subprocess.Popen(
            [str(python), "-u", str(PEER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=_peers.peer_env(),
        )
        self.log = workdir / "feast_stderr.log"

    def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"Feast peer exited; stderr:\n{self.log.read_text()[-4000:]}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"Feast peer, {cmd['op']}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.stderr.close()


def measure_size(
    backend: str,
    size: int,
    *,
    prodml: ProdmlSide,
    feast: FeastPeer | None,
    key_lists: list[list[int]],
    truth: np.ndarray,
    rounds: int,
    workdir: Path,
) -> dict[str, Any]:
    """Interleaved rounds of ``size``-entity reads; every round's values checked."""
    stats: dict[str, list[dict[str, float]]] = {"prodml": [], "feast": []}
    digests: dict[str, set[str]] = {"prodml": set(), "feast": set()}
    first_values: dict[str, np.ndarray] = {}

    def prodml_round() -> float:
        times, values = prodml.round(key_lists)
        if not stats["prodml"]:
            check_equal(f"prodml {backend} {size} entities vs source", values, truth)
            first_values["prodml"] = values
        digests["prodml"].add(digest(values))
        stats["prodml"].append(latency(times))
        return stats["prodml"][-1]["p50_ms"]

    def feast_round() -> float:
        assert feast is not None
        dump = workdir / f"feast_{backend}_{size}.npy"
        first = not stats["feast"]
        reply = feast.call(
            op="round", backend=backend, size=size, dump=str(dump) if first else None
        )
        if first:
            values = np.load(dump)
            check_equal(f"Feast {backend} {size} entities vs source", values, truth)
            check_equal(
                f"prodml vs Feast {backend} {size} entities", first_values["prodml"], values
            )
        digests["feast"].add(reply["digest"])
        stats["feast"].append(latency(reply["times_ns"]))
        return stats["feast"][-1]["p50_ms"]

    sides: dict[str, Callable[[], float]] = {"prodml": prodml_round}
    if feast is not None:
        sides["feast"] = feast_round
    interleaved(rounds, sides)
    all_digests = digests["prodml"] | digests["feast"]
    if len(all_digests) != 1 or digest(truth) not in all_digests:
        raise RuntimeError(f"{backend} {size}: values differ between rounds or systems")
    entry: dict[str, Any] = {"values_checked_per_round": int(truth.size)}
    for side, rows in stats.items():
        if not rows:
            continue
        entry[side] = {
            stat: summary([r[stat] for r in rows]) for stat in ("p50_ms", "p99_ms", "mean_ms")
        }
        p50, p99 = entry[side]["p50_ms"], entry[side]["p99_ms"]
        print(
            f"[{backend}] {size:>3} entities  {side:<6} p50 median {p50['median']:.3f} ms "
            f"(min {p50['min']:.3f})  p99 median {p99['median']:.3f} ms "
            f"(min {p99['min']:.3f})",
            file=sys.stderr,
        )
    entry["prodml_layers_p50"] = prodml.layers(key_lists)
    return entry


def measure_backend(
    backend: str,
    *,
    data: pa.Table,
    workdir: Path,
    keys: dict[int, list[list[int]]],
    expected: dict[int, np.ndarray],
    rounds: int,
    redis_url: str,
    feast: FeastPeer | None,
    feast_project: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    prodml = ProdmlSide(workdir / f"prodml_{backend}", data, backend, redis_url)
    try:
        out["prodml_write_s"] = round(prodml.write_s, 3)
        if feast is not None:
            redis_conn = redis_url.removeprefix("redis://").replace("/", ",db=")
            setup = feast.call(
                op="setup",
                backend=backend,
                workdir=str(workdir),
                parquet=str(workdir / "features.parquet"),
                keys=str(workdir / "keys.json"),
                features=FEATURES,
                project=feast_project,
                redis=redis_conn,
            )
            out["feast_write_s"] = round(setup["write_s"], 3)
            out["feast_version"] = setup["version"]
        print(
            f"[{backend}] written: prodml materialize {prodml.write_s:.2f}s"
            + (f", Feast write_to_online_store {setup['write_s']:.2f}s" if feast else ""),
            file=sys.stderr,
        )
        for size in SIZES:
            out[f"size_{size}"] = measure_size(
                backend,
                size,
                prodml=prodml,
                feast=feast,
                key_lists=keys[size],
                truth=expected[size],
                rounds=rounds,
                workdir=workdir,
            )
    finally:
        prodml.close()
        if feast is not None:
            feast.call(op="teardown", backend=backend)
    return out


def make_row(
    backend: str, size: int, result: dict[str, Any], entities: int, rounds: int, reads: int
) -> Row:
    entry = result[f"size_{size}"]
    label = "SQLite" if backend == "sqlite" else "Redis"
    row = Row(
        benchmark="online_read",
        measure=f"get_online p50, {size} entit{'y' if size == 1 else 'ies'} × 5 features ({label})",
        prodml=round(entry["prodml"]["p50_ms"]["median"], 4),
        peer=f"Feast {result['feast_version']}",
        peer_value=round(entry["feast"]["p50_ms"]["median"], 4),
        unit="ms",
        target=TARGET,
        note=f"{entities:,} entities; median of {rounds} interleaved rounds of {reads} reads; "
        f"all {entry['values_checked_per_round']:,} values per round checked equal",
    )
    if row.meets:
        return row
    layers = entry["prodml_layers_p50"]
    fetch, read, full = layers["fetch_ms"], layers["store_read_ms"], layers["get_online_ms"]
    fetch_what = "one SELECT" if backend == "sqlite" else "one HMGET round trip"
    why = (
        f"; target missed: of prodml's {full * 1e3:.0f} µs, {fetch * 1e3:.0f} µs is the "
        f"backend fetch ({fetch_what}), {(read - fetch) * 1e3:.0f} µs key encoding/JSON "
        f"decode/TTL (OnlineStore.read) and {(full - read) * 1e3:.0f} µs the feature-service "
        f"layer (argument checks, columns_of, the result objects); Feast's "
        f"{row.peer_value * 1e3:.0f} µs bounds the ratio at {row.peer_value / fetch:.1f}x "
        "even with no overhead over the fetch"
    )
    return Row(**{**row.__dict__, "note": row.note + why})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k entities, fewer reads")
    parser.add_argument("--no-peer", action="store_true", help="skip Feast")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (>= 5)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="sqlite,redis")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    entities = 10_000 if args.quick else 100_000
    reads = {1: 500, 100: 100} if args.quick else {1: 2_000, 100: 300}
    rounds = args.rounds or (5 if args.quick else 7)
    backends = [b for b in args.backends.split(",") if b]
    data = make_data(entities, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    keys = {size: rng.integers(0, entities, (reads[size], size)).tolist() for size in SIZES}
    columns = np.stack([data.column(name).to_numpy() for name in FEATURES], axis=1)
    expected = {size: columns[np.array(keys[size])] for size in SIZES}
    load_start = load_average()
    print(f"load average at start: {load_start}", file=sys.stderr)
    figures: dict[str, Any] = {
        "benchmark": "online_read",
        "entities": entities,
        "features": len(FEATURES),
        "reads_per_round": {str(k): v for k, v in reads.items()},
        "rounds": rounds,
        "load_average_start": load_start,
    }
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="prodml-online-bench-") as tmp:
        workdir = Path(tmp)
        pq.write_table(data, workdir / "features.parquet")
        (workdir / "keys.json").write_text(json.dumps({str(k): v for k, v in keys.items()}))
        feast = None if args.no_peer else FeastPeer(workdir)
        feast_project = f"bench_online_{uuid.uuid4().hex[:8]}"
        try:
            for backend in backends:
                result = measure_backend(
                    backend,
                    data=data,
                    workdir=workdir,
                    keys=keys,
                    expected=expected,
                    rounds=rounds,
                    redis_url=args.redis_url,
                    feast=feast,
                    feast_project=feast_project,
                )
                figures[backend] = result
                if feast is None:
                    continue
                for size in SIZES:
                    rows.append(make_row(backend, size, result, entities, rounds, reads[size]))
        finally:
            if feast is not None:
                feast.close()
            if "redis" in backends:
                drop_redis_keys(args.redis_url, f"*{feast_project}")
    for row in rows:
        print(
            f"{row.measure}: prodml {row.prodml:.3f} ms, {row.peer} {row.peer_value:.3f} ms, "
            f"ratio {row.ratio:.1f}x (target {row.target}x: {'met' if row.meets else 'MISSED'})",
            file=sys.stderr,
        )
    print(f"load average at end: {load_average()}", file=sys.stderr)
    emit(figures, rows)


if __name__ == "__main__":
    main()
