"""Benchmark: how long a rollback takes to reach every live server.

A project serves endpoint ``lr`` from ``--servers`` ``prodml serve`` processes (the
first with ``--workers`` worker processes); version 2 has just been promoted over
version 1. The clock starts when ``prodml deployments rollback lr`` is launched (its
start-up included) and stops when every server has answered ``--consecutive`` V2
requests in a row with version 1 (so every worker of a multi-worker server has
switched). The servers pick the change up within ``[serving] watch_interval_s``
(``--watch``). Target: under 5 minutes.

    .venv/bin/python benchmarks/rollback_time.py [--servers 2] [--workers 2] [--watch 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from prodml import Project
from prodml.registry import DeploymentSpec, infer_signature

FEATURES = ["f0", "f1", "f2", "f3"]
DEADLINE_S = 600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def build(root: Path, watch: float) -> None:
    project = Project.init(root, name="rollback")
    with (root / "prodml.toml").open("a") as config:
        config.write(f"\n[serving]\nwatch_interval_s = {watch}\n")
    project.close()
    with Project.open(root) as project:
        rng = np.random.default_rng(0)
        X = pd.DataFrame(rng.normal(size=(500, len(FEATURES))), columns=FEATURES)
        y = (X["f0"] > 0).astype(int)
        refs = []
        for C in (1.0, 0.01):
            model = LogisticRegression(C=C).fit(X, y)
            sample = X.head(5)
            version = project.registry.register(
                "lr", model, signature=infer_signature(sample, np.zeros(5)), actor="bench"
            )
            project.registry.approve(version.ref, actor="bench")
            refs.append(version.ref)
        project.registry.set_alias("lr", "champion", 1, actor="bench")
        project.deployments.deploy("lr", DeploymentSpec.canary(refs[0], refs[1], weight=0.1),
                                   actor="bench")  # fmt: skip
        project.deployments.promote("lr", "challenger", actor="bench")


def body() -> dict[str, object]:
    return {"inputs": [{"name": f, "shape": [1], "datatype": "FP64", "data": [0.5]}
                       for f in FEATURES]}  # fmt: skip


def served_version(client: httpx.Client, url: str) -> str:
    answer = client.post(f"{url}/v2/models/lr/infer", json=body())
    answer.raise_for_status()
    return str(answer.json()["model_version"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--watch", type=float, default=1.0)
    parser.add_argument("--consecutive", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prodml-bench-rollback-") as tmp:
        root = Path(tmp) / "project"
        build(root, args.watch)
        servers = []
        for i in range(args.servers):
            port = free_port()
            workers = args.workers if i == 0 else 1
            process = subprocess.Popen(
                [sys.executable, "-m", "prodml.cli", "serve", "-p", str(root), "--port",
                 str(port), "--workers", str(workers), "--log-level", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            servers.append((process, f"http://127.0.0.1:{port}"))
        try:
            with httpx.Client(timeout=30.0) as client:
                for process, url in servers:
                    deadline = time.monotonic() + DEADLINE_S
                    while True:
                        try:
                            if served_version(client, url) == "2":
                                break
                        except httpx.HTTPError:
                            pass
                        if process.poll() is not None or time.monotonic() > deadline:
                            raise SystemExit(f"server {url} did not start serving version 2")
                        time.sleep(0.1)
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "prodml.cli", "deployments", "rollback",
                                "lr", "-p", str(root), "--reason", "benchmark"],
                               check=True, stdout=subprocess.DEVNULL)  # fmt: skip
                command_s = time.perf_counter() - started
                reached = {}
                for _, url in servers:
                    streak = 0
                    while streak < args.consecutive:
                        streak = streak + 1 if served_version(client, url) == "1" else 0
                        if time.perf_counter() - started > DEADLINE_S:
                            raise SystemExit(f"server {url} still serves version 2")
                    reached[url] = round(time.perf_counter() - started, 3)
        finally:
            for process, _ in servers:
                process.terminate()
            for process, _ in servers:
                process.wait(60)
    total = max(reached.values())
    figures = {"servers": args.servers, "workers_of_first": args.workers,
               "watch_interval_s": args.watch, "command_s": round(command_s, 3),
               "all_servers_s": total, "per_server_s": reached, "target_s": 300.0,
               "meets_target": total <= 300.0,
               "load_average": [round(v, 2) for v in os.getloadavg()]}  # fmt: skip
    print(f"rollback reached {args.servers} servers ({args.workers} workers on the first) in "
          f"{total:.2f} s (the command itself {command_s:.2f} s; watch interval "
          f"{args.watch:g} s; target < 300 s); load {figures['load_average']}")  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
