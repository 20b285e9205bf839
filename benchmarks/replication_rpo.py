"""Benchmark: what a crash loses with continuous replication of the metadata DB.

A project's metadata DB is replicated by ``start_replication`` (Litestream, every
``--interval`` seconds) while a writer process commits registry runs as fast as it can
(each a transaction with a metric). After a few seconds both the writer and the
replicator are killed with SIGKILL at once (the machine is gone), the replica is
restored to its latest point, and the recovery point is measured: the commit time of
the newest run in the source DB minus that of the newest run in the restored copy, and
how many committed runs are missing. Repeated ``--trials`` times; the worst is the
figure (target: ≤ 1 s of writes lost).

    .venv/bin/python benchmarks/replication_rpo.py [--trials 5] [--interval 0.1] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prodml import Project
from prodml.ops import restore_replica, start_replication

WRITER = """
import sys, time
from prodml import Project
with Project.open(sys.argv[1]) as project:
    i = 0
    while True:
        with project.registry.start_run("bench", environment=False) as run:
            run.log_metric("i", i)
        i += 1
"""


def newest(database: Path) -> tuple[float, int]:
    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT start_time FROM runs").fetchall()
    finally:
        con.close()
    times = [r[0] for r in rows]
    latest = max(times)
    value = latest if isinstance(latest, (int, float)) else _epoch(str(latest))
    return value, len(times)


def _epoch(text: str) -> float:
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(text.replace(" ", "T"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def trial(root: Path, work: Path, interval: float, seconds: float, n: int) -> dict[str, float]:
    replicas = work / f"replicas-{n}"
    replicator = start_replication(root, str(replicas), interval_s=interval)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root)])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    for process in (writer, replicator):
        process.send_signal(signal.SIGKILL)
    for process in (writer, replicator):
        process.wait()
    restored = restore_replica(str(replicas / "meta.db"), work / f"restored-{n}.db")
    source_t, source_n = newest(root / ".prodml" / "meta.db")
    restored_t, restored_n = newest(restored)
    return {"lost_s": round(source_t - restored_t, 3), "lost_runs": source_n - restored_n,
            "committed_runs": source_n}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prodml-bench-rpo-") as tmp:
        work = Path(tmp)
        root = work / "project"
        Project.init(root, name="rpo").close()
        results = [trial(root, work, args.interval, args.seconds, n) for n in range(args.trials)]
    worst = max(r["lost_s"] for r in results)
    figures = {
        "interval_s": args.interval,
        "trials": results,
        "worst_lost_s": worst,
        "worst_lost_runs": max(r["lost_runs"] for r in results),
        "target_s": 1.0,
        "meets_target": worst <= 1.0,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    for r in results:
        print(f"  lost {r['lost_s']:.3f} s ({r['lost_runs']} of {r['committed_runs']} runs)")
    print(f"worst: {worst:.3f} s of writes lost with a {args.interval:g} s interval "
          f"(target ≤ 1 s); load {figures['load_average']}")  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
