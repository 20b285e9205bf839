"""``prodml dr drill``: prove a backup restores into a project that serves the same
predictions — because a backup that was never restored is a hope, not a backup.

Backup (or take the given snapshot) → restore into a fresh directory → start ``prodml
serve`` on it → replay a sample of the logged requests its deployment still serves
(the newest records of each serving model version, with their logged feature values,
through OIP V2 ``/v2/models/{endpoint}/versions/{version}/infer``) → compare every
output with the logged one, bit for bit. It reports the time to restore (RTO: from the
start of the restore to the server answering), the data a restore from this snapshot
loses (RPO: the snapshot's age when the restore started), and pass/fail, and records
the drill in the source project's metadata DB.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prodml.core import IntegrityError, StorageError, load_config
from prodml.ops._backup import backup_project, record_event
from prodml.ops._restore import read_snapshot, restore_snapshot
from prodml.storage import open_log_stores

__all__ = ["DrillResult", "run_drill"]

_BATCH = 500
_READY_S = 180.0
_V2_TYPES = {"float64": "FP64", "float32": "FP32", "int64": "INT64", "int32": "INT32",
             "bool": "BOOL", "string": "BYTES"}  # fmt: skip

Say = Callable[[str], None]


@dataclass
class DrillResult:
    """What a drill found: ``passed`` when the restored server answered every replayed
    request exactly as logged (and at least one was replayed)."""

    snapshot: str
    passed: bool
    rto_s: float
    rpo_s: float
    replayed: int
    mismatches: int
    endpoints: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "passed": self.passed, "rto_s": round(self.rto_s, 3),
                "rpo_s": round(self.rpo_s, 3), "replayed": self.replayed,
                "mismatches": self.mismatches, "endpoints": self.endpoints,
                "examples": self.examples, "problem": self.problem}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _http(
    url: str, body: Any = None, timeout: float = 60.0, *, binary: bytes = b""
) -> tuple[int, Any]:
    """GET (no ``body``) or POST JSON to ``url``; with ``binary``, the JSON is followed by
    those tensor bytes (OIP V2's binary extension: NaN travels as it is)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if binary and data is not None:
        headers = {"Content-Type": "application/octet-stream",
                   "Inference-Header-Content-Length": str(len(data))}  # fmt: skip
        data += binary
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers=headers)  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _v2_body(inputs: list[dict[str, Any]], batch: pa.Table) -> tuple[dict[str, Any], bytes]:
    """A V2 infer request of ``batch``'s logged feature values: floating-point inputs
    as binary tensors (exact, NaN included), the others as JSON data."""
    tensors, raw = [], []
    for spec in inputs:
        column = batch[f"feature.{spec['name']}"]
        tensor: dict[str, Any] = {"name": spec["name"], "shape": [batch.num_rows],
                                  "datatype": spec["datatype"]}  # fmt: skip
        kind = {"FP64": np.float64, "FP32": np.float32}.get(spec["datatype"])
        if kind is not None:
            values = np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False))
            data = values.astype(kind).astype("<" + np.dtype(kind).str[1:]).tobytes()
            tensor["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            tensor["data"] = column.to_pylist()
        tensors.append(tensor)
    return {"inputs": tensors}, b"".join(raw)


class _Server:
    """``prodml serve`` on the restored project, in a process of its own."""

    def __init__(self, root: Path, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "prodml.cli", "serve", "-p", str(root), "--port",
                   str(self.port), "--workers", "1", "--log-level", "warning"]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StorageError(f"the restored project's server exited with code "
                                   f"{self.process.returncode} (log: {self._log.name})")  # fmt: skip
            try:
                status, _ = _http(self.url + "/readyz", timeout=2.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise StorageError(f"the restored project's server was not ready within {deadline_s:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _serving_versions(url: str) -> dict[str, list[str]]:
    """Each endpoint's non-shadow model versions as the server reports them."""
    status, endpoints = _http(url + "/v1/endpoints")
    if status != 200:
        raise StorageError(f"GET /v1/endpoints answered {status}: {endpoints}")
    return {
        str(e["endpoint"]): sorted(
            {str(a["model"]) for a in e.get("arms", []) if a.get("role") != "shadow"}
        )
        for e in endpoints
    }


def _sample(logs: Any, endpoint: str, versions: list[str], n: int) -> pa.Table:
    """The newest ``n`` logged records of ``endpoint`` answered by one of ``versions``
    (ok, not shadow, a finite output), read a day at a time backwards."""
    latest = logs.predictions.latest_hour(endpoint)
    if latest is None:
        return pa.table({})
    end, parts, count = latest + timedelta(hours=1), [], 0
    for _ in range(400):
        start = end - timedelta(days=1)
        table = logs.predictions.read(endpoint=endpoint, start=start, end=end)
        end = start
        if table.num_rows == 0:
            if count:
                break
            continue
        keep = pc.and_(pc.equal(table["status"], "ok"),
                       pc.invert(pc.fill_null(table["shadow"], False)))  # fmt: skip
        keep = pc.and_(keep, pc.is_in(table["model_version"], pa.array(versions)))
        keep = pc.and_(keep, pc.is_finite(pc.cast(table["output"], pa.float64())))
        table = table.filter(keep)
        parts.append(table)
        count += table.num_rows
        if count >= n:
            break
    if not parts:
        return pa.table({})
    table = pa.concat_tables(parts[::-1], promote_options="permissive")
    return table.slice(max(table.num_rows - n, 0))


def _replay(url: str, endpoint: str, table: pa.Table, result: DrillResult) -> None:
    for version in sorted(set(table["model_version"].to_pylist())):
        rows = table.filter(pc.equal(table["model_version"], version))
        number = version.split(":", 1)[1]
        status, meta = _http(f"{url}/v2/models/{endpoint}/versions/{number}")
        if status != 200:
            raise StorageError(f"{endpoint} version {number}: metadata answered {status}: {meta}")
        inputs = meta["inputs"]
        for offset in range(0, rows.num_rows, _BATCH):
            batch = rows.slice(offset, _BATCH)
            body, binary = _v2_body(inputs, batch)
            status, answer = _http(f"{url}/v2/models/{endpoint}/versions/{number}/infer", body,
                                   binary=binary)  # fmt: skip
            logged = np.asarray(pc.cast(batch["output"], pa.float64()).to_numpy(), np.float64)
            if status != 200:
                result.mismatches += batch.num_rows
                if len(result.examples) < 5:
                    result.examples.append({"endpoint": endpoint, "version": version,
                                            "error": f"{status}: {str(answer)[:300]}"})  # fmt: skip
                continue
            served = np.asarray(answer["outputs"][0]["data"], np.float64).reshape(-1)
            same = served.view(np.uint64) == logged.view(np.uint64)  # bit for bit
            result.replayed += batch.num_rows
            result.mismatches += int(np.count_nonzero(~same))
            for i in np.flatnonzero(~same)[: max(0, 5 - len(result.examples))]:
                result.examples.append({
                    "endpoint": endpoint, "version": version,
                    "request_id": batch["request_id"][int(i)].as_py(),
                    "logged": float(logged[i]), "served": float(served[i]),
                })  # fmt: skip
        result.endpoints[endpoint] = result.endpoints.get(endpoint, 0) + rows.num_rows


def run_drill(
    root: Path,
    dest: Path,
    *,
    snapshot: Path | None = None,
    sample: int = 10_000,
    keep: Path | None = None,
    say: Say | None = None,
    actor: str = "prodml dr drill",
) -> DrillResult:
    """Run a drill of the project at ``root`` with backups in ``dest`` (a new snapshot
    unless ``snapshot`` is given); ``keep``: restore there and leave it (default: a
    temporary directory, removed)."""
    tell = say or (lambda text: None)
    started = datetime.now(UTC)
    root = root.resolve()
    if snapshot is None:
        tell("backing up")
        snapshot = backup_project(root, dest).path
    manifest = read_snapshot(snapshot)
    taken = datetime.fromisoformat(manifest.created_at)
    scratch = Path(tempfile.mkdtemp(prefix="prodml-drill-"))
    target = keep if keep is not None else scratch / "restored"
    result = DrillResult(snapshot.name, False, math.nan, math.nan, 0, 0)
    server = None
    try:
        restore_started = datetime.now(UTC)
        result.rpo_s = (restore_started - taken).total_seconds()
        tell(f"restoring {snapshot.name}")
        restore_snapshot(snapshot, target)
        server = _Server(target, scratch / "server.log")
        server.wait_ready(_READY_S)
        result.rto_s = (datetime.now(UTC) - restore_started).total_seconds()
        config = load_config(target)
        logs = open_log_stores(target / config.project.state_dir, config.logs.type, config.logs)
        versions = _serving_versions(server.url)
        per_endpoint = max(1, sample // max(1, len(versions)))
        for endpoint, serving in versions.items():
            table = _sample(logs, endpoint, serving, per_endpoint)
            tell(f"replaying {table.num_rows:,} logged requests of {endpoint}")
            if table.num_rows:
                _replay(server.url, endpoint, table, result)
        if result.replayed == 0:
            result.problem = "no logged request of a serving model version to replay"
        result.passed = result.replayed > 0 and result.mismatches == 0
    except (IntegrityError, StorageError, OSError, KeyError, ValueError) as exc:
        result.problem = f"{type(exc).__name__}: {exc}"
        result.passed = False
    finally:
        if server is not None:
            server.stop()
        if keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    record_event(root, "drill", status="passed" if result.passed else "failed",
                 snapshot=snapshot.name, detail=result.to_dict(), started_at=started,
                 actor=actor)  # fmt: skip
    return result
