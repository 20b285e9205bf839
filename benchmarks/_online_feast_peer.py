"""Feast side of ``online_read.py``: runs in Feast's own venv, serves commands on stdin.

One JSON command per stdin line, one JSON reply per stdout line, so that the driver can
interleave Feast's rounds with prodml's (prodml, Feast, prodml, Feast…) without starting
a process per round. Commands:

``{"op": "setup", "backend": "sqlite"|"redis", ...}``
    build a Feast repo (FileSource over the shared Parquet file, one Entity, one
    FeatureView with every feature), ``apply`` it and ``write_to_online_store`` the data.
``{"op": "round", "backend": ..., "size": 1|100, "dump": path|null}``
    time ``get_online_features(...).to_dict()`` once per key list (warm-up reads first,
    untimed); reply with the nanoseconds of every read and a SHA-256 of every value read
    (float64, request order, all features); ``dump`` also saves the values as ``.npy``.
``{"op": "teardown", "backend": ...}``
    ``FeatureStore.teardown()`` (for Redis: drops this project's keys) and close.

This file is not imported by prodml; it only needs Feast (and numpy/pandas, its deps).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

WARMUP = 50


class Peer:
    def __init__(self) -> None:
        self.stores: dict[str, Any] = {}
        self.keys: dict[int, list[list[int]]] = {}
        self.features: list[str] = []

    def setup(self, cmd: dict[str, Any]) -> dict[str, Any]:
        import feast
        from feast import Entity, FeatureStore, FeatureView, Field, FileSource
        from feast.types import Float64
        from feast.value_type import ValueType

        backend = cmd["backend"]
        self.features = cmd["features"]
        self.keys = {int(k): v for k, v in json.loads(Path(cmd["keys"]).read_text()).items()}
        repo = Path(cmd["workdir"]) / f"feast_{backend}"
        (repo / "data").mkdir(parents=True)
        if backend == "sqlite":
            online = f"  type: sqlite\n  path: {repo / 'data' / 'online.db'}\n"
        else:
            online = f'  type: redis\n  connection_string: "{cmd["redis"]}"\n'
        (repo / "feature_store.yaml").write_text(
            f"project: {cmd['project']}\n"
            "provider: local\n"
            "registry:\n"
            f"  path: {repo / 'data' / 'registry.db'}\n"
            "  cache_ttl_seconds: 0\n"
            f"online_store:\n{online}"
            "entity_key_serialization_version: 3\n"
        )
        entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
        source = FileSource(path=cmd["parquet"], timestamp_field="event_timestamp")
        view = FeatureView(
            name="bench_view",
            entities=[entity],
            ttl=timedelta(days=7),
            schema=[Field(name=name, dtype=Float64) for name in self.features],
            online=True,
            source=source,
        )
        store = FeatureStore(repo_path=str(repo))
        store.apply([entity, view])
        frame = pd.read_parquet(cmd["parquet"])
        start = time.perf_counter()
        store.write_to_online_store("bench_view", frame)
        write_s = time.perf_counter() - start
        self.stores[backend] = store
        return {"version": feast.__version__, "write_s": write_s}

    def round(self, cmd: dict[str, Any]) -> dict[str, Any]:
        store = self.stores[cmd["backend"]]
        refs = [f"bench_view:{name}" for name in self.features]
        requests = [[{"entity_id": k} for k in keys] for keys in self.keys[cmd["size"]]]
        get = store.get_online_features
        for rows in requests[:WARMUP]:
            get(features=refs, entity_rows=rows).to_dict()
        times = []
        results = []
        for rows in requests:
            t = time.perf_counter_ns()
            result = get(features=refs, entity_rows=rows).to_dict()
            times.append(time.perf_counter_ns() - t)
            results.append(result)
        values = np.array(
            [
                [[np.nan if v is None else v for v in r[name]] for name in self.features]
                for r in results
            ],
            dtype=np.float64,
        ).transpose(0, 2, 1)  # (key list, entity, feature)
        if cmd.get("dump"):
            np.save(cmd["dump"], values)
        return {"times_ns": times, "digest": hashlib.sha256(values.tobytes()).hexdigest()}

    def teardown(self, cmd: dict[str, Any]) -> dict[str, Any]:
        store = self.stores.pop(cmd["backend"], None)
        if store is not None:
            store.teardown()
        return {}


def main() -> None:
    peer = Peer()
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            reply = getattr(peer, cmd["op"])(cmd)
        except Exception as exc:  # reported to the driver, which raises
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
