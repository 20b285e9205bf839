"""Where prodml's point-in-time join spends its time on ``pit_join.py``'s data.

    python benchmarks/_pit_profile.py [--rows 1000000] [--repeat 3] [--pyinstrument]

Prints the wall time of the whole join, then (with ``--pyinstrument``, if installed) a
profile of one join.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pit_join
from prodml.features._pit import JoinView, point_in_time_join


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-guard", action="store_true")
    parser.add_argument("--pyinstrument", action="store_true")
    args = parser.parse_args()
    folder = pit_join.ensure_data(args.rows)
    entities = pq.read_table(folder / "entities.parquet", columns=["entity_id", "event_timestamp"])
    view = JoinView(
        name="bench",
        relation=f"SELECT * FROM read_parquet('{folder / 'features.parquet'}')",
        join_keys=(("entity_id", "entity_id"),),
        event_time="event_timestamp",
        created_time="created",
        ttl=pit_join.TTL,
        features=tuple((name, name) for name in pit_join.FEATURES),
    )
    con = duckdb.connect()

    def join() -> None:
        point_in_time_join(
            con, entities, "event_timestamp", [view], created_time_guard=not args.no_guard
        )

    for _ in range(args.repeat):
        began = time.perf_counter()
        join()
        print(f"join: {time.perf_counter() - began:.3f} s", flush=True)
    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
        join()
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
