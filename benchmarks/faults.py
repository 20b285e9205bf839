"""Faults and hostile input: what a ``prodml serve`` process loses, holds and answers
when it is killed, stopped under overload, sent huge or endless requests, or soaked
with idempotency keys, and what monitoring does with a corrupt prediction-log file.

Set-up (a few seconds): a small flights-like feature project in a temporary folder (one
feature view of hourly weather per airport, one on-demand feature of the request's
``sched_dep_time``), a logistic regression trained through ``prodml train``'s code path,
approved, deployed on endpoint ``flights`` (policy ``single``) and materialized to the
online store (``benchmarks/_faults_project.py``). Each probe runs on a copy of it, with
a ``prodml serve`` process of its own (1 worker, 127.0.0.1, a free port, the project's
config with the overrides the probe names), so one failure hides no other.

1. **kill -9**: one-row MLflow requests at ``--rate`` (200/s) with a unique
   ``X-Request-ID``, over 8 keep-alive connections, for 5 s; then SIGKILL to the server
   while requests are still due. Records lost = requests answered 200 whose id is not in
   the prediction log (every Parquet file under ``.prodml/logs/predictions`` read with
   pyarrow). Target: lost <= the records of one flush interval (answered rate x
   ``[serving] log_flush_interval_s``, read from the project's config), and each lost
   record answered within that interval before the kill.
2. **SIGTERM under overload**: 160 clients sending one-row requests back to back, half
   on keep-alive connections and half on a new connection per request, for 3 s; then
   200 more connections opened at once with a request written on each (they wait in
   the accept queue), and SIGTERM. No request is written after the signal. Targets:
   every request written gets an HTTP response (resets and EOFs: 0), every 200 is in
   the log (lost: 0), exit code 0.
3. **1 GiB chunked upload**: ``POST /invocations`` with ``Transfer-Encoding: chunked``
   (no Content-Length), 1 MiB chunks, stopping when the server answers or closes; the
   RSS of the server's process group (VmRSS from /proc, every 20 ms) against its idle
   RSS. Targets: peak <= idle + 100 MB, and the answer is 413.
4. **/healthz during a 100,000-row request**, on each protocol (V2 JSON tensors, V2
   binary tensors, MLflow ``dataframe_split``, MLflow CSV, native column form; bodies of
   1-2.4 MB, under the default ``max_request_bytes``): a thread polls ``/healthz`` back
   to back on its own connection and the longest gap between two answers that overlaps
   the request (sent to answered) is the stall: the median of 3 such requests (the
   longest gap in the 0.3 s before each, the machine's noise, is shown beside it).
   Targets: <= 100 ms, and the request refused (413 or 422) by the row limit
   (``max_batch_rows``, default 10,000). The same for an allowed 10,000-row request,
   and for no request at all (1 s of polling), are shown.
5. **Idempotency soak**: ``--soak-seconds`` (300; 30 with ``--quick``) of 200-row V2
   JSON requests (answers of ~4 KB) at 100/s, each with a unique ``Idempotency-Key``,
   after a warm-up without keys; RSS growth = peak RSS during the soak - RSS after the
   warm-up. The probe's project sets ``[serving] idempotency_max_bytes = 4 MiB`` and
   ``log_features = false`` (the log's per-row feature values would be 20,000
   records/s of other work). Target: growth <= the cap + 30 MB; without such a setting
   in ``ServingConfig`` the growth is shown and the probe fails. The full soak's answers
   add up to ~120 MB, so a cache that ignored its cap would fail; the quick soak's
   ~12 MB cannot tell (``answers_exceed_bound`` in the JSON).
6. **Monitoring with a corrupt log file**: hourly windows (``[monitoring] window =
   "1h"``), a prediction log of 4 closed hours x 2 files x 60 records written through
   ``PredictionLog``; one file overwritten with random bytes; ``prodml monitor run
   --json``. Targets: 4 of 4 windows computed, and their rows = every record but the
   corrupt file's.

The machine's load is not controlled (the clients share its cores with the server): the
1-minute load average is printed with the figures. A probe that cannot run (a server
that does not start) fails with its error and the others go on.

    .venv/bin/python benchmarks/faults.py [--quick] [--json] [--soak-seconds S] [--rate R]
    .venv/bin/python benchmarks/faults.py --only soak kill   # the probes whose name holds a word

The table lists each probe's figure, its target and PASS/FAIL; ``--json`` prints the
same as one JSON object instead. The exit code is 1 when any probe fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import uvloop

from prodml import Project
from prodml.core import ServingConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _faults_http as net
import _faults_project as setup

MB = 1_000_000
MIB = 1 << 20
TARGETS = {
    "upload_rss_over_idle_mb": 100.0,
    "healthz_stall_ms": 100.0,
    "soak_allowance_mb": 30.0,
}
SOAK_CAP_BYTES = 4 * MIB
SOAK_ROWS = 200  # per request: a V2 answer of ~4 KB
STALL_REPEATS = 3  # each /healthz stall is the median of this many requests
MLFLOW_PATH = f"/v1/endpoints/{setup.ENDPOINT}/invocations"
JSON_HEADERS = {"Content-Type": "application/json"}


def one_row_requests(
    columns: list[tuple[str, str]], rows: int = 1
) -> Callable[[int], tuple[str, bytes]]:
    """Request ``i``: a unique id and an MLflow body of ``rows`` rows (one of 64 bodies)."""
    pool = [setup.bodies(columns, rows, seed)["mlflow_json"][0] for seed in range(64)]

    def make(index: int) -> tuple[str, bytes]:
        request_id = f"{uuid.uuid4().hex}-{index}"
        headers = {**JSON_HEADERS, "X-Request-ID": request_id}
        return request_id, net.request_bytes(MLFLOW_PATH, pool[index % len(pool)], headers)

    return make


def flush_interval(project: Path) -> float:
    with Project.open(project) as opened:
        return float(opened.config.serving.log_flush_interval_s)


# ---------------------------------------------------------------- the probes


def probe_kill9(ctx: Context) -> dict[str, Any]:
    project = ctx.project("kill9")
    interval = flush_interval(project)
    make = one_row_requests(ctx.columns)
    server = net.Server(project, ctx.logs / "kill9.log")
    try:
        server.wait_ready()
        killed_at: list[float] = []

        def kill() -> None:
            killed_at.append(time.time())
            server.kill_group()

        load = uvloop.run(net.paced(server.port, make, ctx.rate, ctx.kill_seconds, at_end=kill,
                                    linger_s=0.3))  # fmt: skip
        server.wait(30)
    finally:
        server.stop()
    logged, unreadable = net.logged_ids(project / ".prodml")
    lost = {rid: at for rid, at in load.answered.items() if rid not in logged}
    ages = sorted(killed_at[0] - at for at in lost.values())
    times = sorted(load.answered.values())
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    bound = math.ceil(rate * interval)
    oldest = max(ages, default=0.0)
    return {
        "figure": f"{len(lost)} of {len(load.answered)} lost, oldest {oldest:.2f} s before the kill",
        "target": f"<= {bound} (rate {rate:.0f}/s x {interval:g} s), all within {interval:g} s",
        "pass": len(lost) <= bound and oldest <= interval and len(load.answered) > 0,
        "answered": len(load.answered),
        "lost": len(lost),
        "lost_bound": bound,
        "oldest_lost_age_s": round(oldest, 3),
        "answered_rate_per_s": round(rate, 1),
        "flush_interval_s": interval,
        "unreadable_log_files": unreadable,
        "statuses": load.statuses,
    }


def probe_sigterm(ctx: Context) -> dict[str, Any]:
    project = ctx.project("sigterm")
    make = one_row_requests(ctx.columns)
    server = net.Server(project, ctx.logs / "sigterm.log")
    try:
        server.wait_ready()

        def stop() -> None:
            server.signal(signal.SIGTERM)

        outcome = uvloop.run(
            net.burst(
                server.port, make, ctx.burst_workers, ctx.burst_seconds, ctx.burst_final, stop
            )
        )
        code = server.wait(90)
    finally:
        server.stop()
    logged, unreadable = net.logged_ids(project / ".prodml")
    lost = sum(rid not in logged for rid in outcome.ok_ids)
    return {
        "figure": (
            f"{outcome.unanswered} of {outcome.sent} sent unanswered, {lost} of "
            f"{len(outcome.ok_ids)} records lost, exit {code}"
        ),
        "target": "0 unanswered, 0 lost, exit 0",
        "pass": outcome.unanswered == 0 and lost == 0 and code == 0 and outcome.sent > 0,
        "sent": outcome.sent,
        "answered": outcome.answered,
        "unanswered": outcome.unanswered,
        "unanswered_by_kind": outcome.failures,
        "refused_before_stop": outcome.refused,
        "statuses": outcome.statuses,
        "ok": len(outcome.ok_ids),
        "lost": lost,
        "exit_code": code,
        "unreadable_log_files": unreadable,
        "clients": ctx.burst_workers,
        "queued_at_stop": ctx.burst_final - outcome.refused,
    }


def probe_upload(ctx: Context) -> dict[str, Any]:
    project = ctx.project("upload")
    with net.serving(project, ctx.logs / "upload.log") as server:
        body, headers = ctx.small["mlflow_json"]
        for _ in range(20):  # warm: the request path is loaded before the idle RSS
            net.post(server.port, "/invocations", body, headers)
        with net.RssSampler(server) as idle:
            time.sleep(0.5)
        idle_rss = sorted(rss for _, rss in idle.samples)[len(idle.samples) // 2]
        with net.RssSampler(server) as sampler:
            answer = net.chunked_upload(server.port, "/invocations", 1024 * MIB, MIB)
            time.sleep(0.2)
        alive = server.process.poll() is None
    over = (sampler.peak - idle_rss) / MB
    limit = TARGETS["upload_rss_over_idle_mb"]
    return {
        "figure": (
            f"peak {over:+.0f} MB over idle ({idle_rss / MB:.0f} MB) after "
            f"{answer['sent_bytes'] / MIB:.0f} MiB, answer {answer['status']}"
        ),
        "target": f"<= +{limit:g} MB, 413",
        "pass": over <= limit and answer["status"] == 413 and alive,
        "idle_rss_mb": round(idle_rss / MB, 1),
        "peak_rss_mb": round(sampler.peak / MB, 1),
        "peak_over_idle_mb": round(over, 1),
        "streamed_mib": answer["sent_bytes"] // MIB,
        "status": answer["status"],
        "seconds": answer["seconds"],
        "server_alive_after": alive,
    }


def probe_healthz(ctx: Context) -> dict[str, Any]:
    project = ctx.project("healthz")
    big = setup.bodies(ctx.columns, 100_000, 1)
    allowed = setup.bodies(ctx.columns, 10_000, 2)
    out: dict[str, Any] = {"protocols": {}}
    with net.serving(project, ctx.logs / "healthz.log") as server:
        for name, (body, headers) in ctx.small.items():
            status, text = net.post(server.port, setup.ROUTES[name], body, headers)
            if status != 200:
                raise RuntimeError(f"{name}: a 10-row request answered {status}: {text[:300]!r}")
        with net.HealthPoller(server.port) as idle:
            time.sleep(1.0)
        out["idle_stall_ms"] = round(idle.longest_gap_ms(), 1)
        for name in setup.ROUTES:
            figures: dict[str, Any] = {}
            for size, bodies in (("100k", big), ("10k", allowed)):
                body, headers = bodies[name]
                runs = [_stall(server, setup.ROUTES[name], body, headers)
                        for _ in range(STALL_REPEATS)]  # fmt: skip
                stalls = sorted(r["stall_ms"] for r in runs)
                figures[size] = {
                    "status": runs[0]["status"],
                    "statuses": sorted({r["status"] for r in runs}),
                    "stall_ms": stalls[len(stalls) // 2],
                    "stall_ms_runs": [r["stall_ms"] for r in runs],
                    "noise_ms_runs": [r["noise_ms"] for r in runs],
                    "request_s": runs[0]["request_s"],
                    "body_mb": round(len(body) / MB, 2),
                    "healthz_failures": sum(r["healthz_failures"] for r in runs),
                }
                if "error" in runs[0]:
                    figures[size]["error"] = runs[0]["error"]
            out["protocols"][name] = figures
    limit = TARGETS["healthz_stall_ms"]
    refused = {n: f["100k"] for n, f in out["protocols"].items()}
    worst = max(refused, key=lambda n: refused[n]["stall_ms"])
    ok = all(
        f["stall_ms"] <= limit and set(f["statuses"]) <= {413, 422} and not f["healthz_failures"]
        for f in refused.values()
    )
    out.update(
        figure=", ".join(f"{n} {f['stall_ms']:.0f} ms/{f['status']}" for n, f in refused.items()),
        target=f"each <= {limit:g} ms and 413/422",
        worst=worst,
        worst_stall_ms=refused[worst]["stall_ms"],
    )
    out["pass"] = ok
    return out


def _stall(server: net.Server, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """The longest gap between /healthz answers while one request runs, and its answer."""
    with net.HealthPoller(server.port) as poller:
        time.sleep(0.3)
        began = time.perf_counter()
        status, text = net.post(server.port, path, body, headers)
        ended = time.perf_counter()
        time.sleep(0.1)
    out: dict[str, Any] = {
        "status": status,
        "stall_ms": round(poller.longest_gap_ms(began, ended), 1),
        # the same before the request was sent: the machine's and the client's noise
        "noise_ms": round(poller.longest_gap_ms(began - 0.3, began - 0.01), 1),
        "request_s": round(ended - began, 3),
        "healthz_failures": poller.failures,
    }
    if status != 200:
        out["error"] = _error_text(text)
    return out


def _error_text(raw: bytes) -> str:
    try:
        return str(orjson.loads(raw).get("error", ""))[:200]
    except (orjson.JSONDecodeError, AttributeError):
        return raw[:200].decode(errors="replace")


def probe_soak(ctx: Context) -> dict[str, Any]:
    has_cap = "idempotency_max_bytes" in ServingConfig.model_fields
    config = "[serving]\nlog_features = false\n"
    if has_cap:
        config += f"idempotency_max_bytes = {SOAK_CAP_BYTES}\n"
    project = ctx.project("soak", config)
    with Project.open(project) as opened:
        cap = getattr(opened.config.serving, "idempotency_max_bytes", None)
    rows = setup.bodies(ctx.columns, SOAK_ROWS, 5)["v2_json"][0]
    path = setup.ROUTES["v2_json"]

    def make(index: int, keyed: bool = True) -> tuple[str, bytes]:
        headers = dict(JSON_HEADERS)
        if keyed:
            headers["Idempotency-Key"] = f"soak-{uuid.uuid4().hex}"
        return str(index), net.request_bytes(path, rows, headers)

    with net.serving(project, ctx.logs / "soak.log") as server:
        warm = uvloop.run(net.paced(server.port, lambda i: make(i, False), 100, 5.0,
                                    connections=8))  # fmt: skip
        with net.RssSampler(server, 0.25) as before:
            time.sleep(1.0)
        baseline = sorted(rss for _, rss in before.samples)[len(before.samples) // 2]
        _, answer = net.post(server.port, path, rows, JSON_HEADERS)
        with net.RssSampler(server, 0.25) as sampler:
            soak = uvloop.run(net.paced(server.port, make, 100, ctx.soak_seconds, connections=8))
        alive = server.process.poll() is None
    growth = (sampler.peak - baseline) / MB
    errors = soak.broken + sum(n for s, n in soak.statuses.items() if s != 200)
    allowance = TARGETS["soak_allowance_mb"]
    bound = None if cap is None else cap / MB + allowance
    stored = soak.sent * (len(answer) + 69) / MB  # answers, keys and a SHA-256 each
    return {
        "figure": (
            f"{growth:+.0f} MB over {ctx.soak_seconds:g} s, {soak.sent:,} keys "
            f"({stored:.0f} MB of answers), {errors} errors"
        ),
        "target": (
            f"<= cap {cap / MB:.1f} MB + {allowance:g} MB"
            if cap is not None
            else "bounded by [serving] idempotency_max_bytes: no such setting (cap unset)"
        ),
        "pass": bound is not None and growth <= bound and errors == 0 and alive,
        "cap_bytes": cap,
        "baseline_rss_mb": round(baseline / MB, 1),
        "peak_rss_mb": round(sampler.peak / MB, 1),
        "final_rss_mb": round(sampler.samples[-1][1] / MB, 1) if sampler.samples else None,
        "growth_mb": round(growth, 1),
        "requests": soak.sent,
        "uncapped_answers_mb": round(stored, 1),  # what a cache keeping every answer holds
        # whether the soak's answers outgrow the bound: a cache without a cap would fail
        "answers_exceed_bound": bound is not None and stored > bound,
        "errors": errors,
        "statuses": soak.statuses,
        "warmup_statuses": warm.statuses,
        "seconds": ctx.soak_seconds,
    }


def probe_monitor(ctx: Context) -> dict[str, Any]:
    hours, files, rows = 4, 2, 60
    project = ctx.project("monitor", '[monitoring]\nwindow = "1h"\nmin_rows = 10\n')
    first = setup.write_log(project, ctx.ref, hours, files, rows)
    paths = sorted((project / ".prodml" / "logs" / "predictions").rglob("*.parquet"))
    bad = paths[len(paths) // 2]
    bad_rows = pq.read_metadata(bad).num_rows
    bad.write_bytes(random.Random(7).randbytes(bad.stat().st_size))
    run = subprocess.run(
        [sys.executable, "-m", "prodml.cli", "monitor", "run", "-p", str(project), "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    expected_rows = hours * files * rows - bad_rows
    starts = {(first + timedelta(hours=h)).isoformat() for h in range(hours)}
    try:
        data = json.loads(run.stdout)
    except json.JSONDecodeError:
        data = {}
    windows = [w for w in data.get("computed", []) if w.get("start") in starts]
    computed = [w for w in windows if w.get("status") == "computed"]
    counted = sum(int(w.get("rows") or 0) for w in windows)
    out = {
        "figure": (
            f"{len(computed)} of {hours} windows, {counted} of {expected_rows} rows, "
            f"exit {run.returncode}"
        ),
        "target": f"{hours} of {hours} windows, {expected_rows} rows",
        "pass": len(computed) == hours and counted == expected_rows and run.returncode == 0,
        "windows_computed": len(computed),
        "windows_total": hours,
        "rows_counted": counted,
        "rows_expected": expected_rows,
        "corrupt_file_rows": bad_rows,
        "exit_code": run.returncode,
        "quarantined": len(data.get("quarantined", [])),
    }
    said = (run.stderr or run.stdout).strip().splitlines()
    if run.returncode != 0 and said:
        out["error"] = said[-1][:300]
    return out


PROBES: dict[str, Callable[[Context], dict[str, Any]]] = {
    "kill -9": probe_kill9,
    "SIGTERM under overload": probe_sigterm,
    "1 GiB chunked upload": probe_upload,
    "/healthz during 100k rows": probe_healthz,
    "idempotency soak": probe_soak,
    "monitoring, corrupt file": probe_monitor,
}


# ---------------------------------------------------------------- running


class Context:
    """The built project, its model's columns, the run's settings and a work folder."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.workdir = workdir
        self.logs = workdir / "server-logs"
        self.logs.mkdir()
        self.base = workdir / "base"
        print("[setup] building the probe project", file=sys.stderr)
        self.ref = setup.build(self.base, args.seed)
        self.columns = setup.columns(self.base, self.ref)
        self.small = setup.bodies(self.columns, 10, 0)
        self.rate = args.rate
        self.kill_seconds = 5.0
        self.burst_seconds = 3.0
        self.burst_workers = 160
        self.burst_final = 200
        self.soak_seconds = args.soak_seconds or (30.0 if args.quick else 300.0)

    def project(self, name: str, config: str = "") -> Path:
        return setup.copy(self.base, self.workdir / name, config)


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"benchmark": "faults", "quick": args.quick, "cpus": os.cpu_count()}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prodml-faults-") as tmp:
        ctx = Context(args, Path(tmp))
        report["setup_s"] = round(time.perf_counter() - began, 1)
        report["rate_per_s"] = ctx.rate
        report["soak_seconds"] = ctx.soak_seconds
        report["probes"] = {}
        for name, probe in PROBES.items():
            if args.only and not any(word in name for word in args.only):
                continue
            print(f"[probe] {name}", file=sys.stderr)
            started = time.perf_counter()
            try:
                result = probe(ctx)
            except Exception as exc:  # one probe's failure hides no other
                traceback.print_exc(file=sys.stderr)
                tail = "".join(path.read_text(errors="replace")[-1500:]
                               for path in ctx.logs.glob("*.log"))  # fmt: skip
                result = {"figure": f"error: {type(exc).__name__}: {str(exc)[:300]}",
                          "target": "-", "pass": False, "server_log_tail": tail[-1500:]}  # fmt: skip
            result["seconds"] = round(time.perf_counter() - started, 1)
            report["probes"][name] = result
            print(f"[probe] {name}: {result['figure']} -> "
                  f"{'PASS' if result['pass'] else 'FAIL'}", file=sys.stderr)  # fmt: skip
    report["wall_s"] = round(time.perf_counter() - began, 1)
    report["load_average"] = [round(v, 2) for v in os.getloadavg()]
    report["pass"] = all(p["pass"] for p in report["probes"].values())
    return report


def print_table(report: dict[str, Any]) -> None:
    rows = [(name, p["figure"], p["target"], "PASS" if p["pass"] else "FAIL")
            for name, p in report["probes"].items()]  # fmt: skip
    widths = [max(len(r[i]) for r in [("probe", "figure", "target", ""), *rows]) for i in range(3)]
    print(f"{'probe':<{widths[0]}}  {'figure':<{widths[1]}}  {'target':<{widths[2]}}  verdict")
    for name, figure, target, verdict in rows:
        print(f"{name:<{widths[0]}}  {figure:<{widths[1]}}  {target:<{widths[2]}}  {verdict}")
    healthz = report["probes"].get("/healthz during 100k rows", {})
    for protocol, sizes in healthz.get("protocols", {}).items():
        allowed = sizes["10k"]
        print(f"  /healthz stall during an allowed 10,000-row {protocol} request: "
              f"{allowed['stall_ms']:.0f} ms (answer {allowed['status']}, "
              f"{allowed['request_s']:.2f} s)")  # fmt: skip
    if "idle_stall_ms" in healthz:
        print(
            f"  /healthz longest gap with no request (client noise): {healthz['idle_stall_ms']} ms"
        )
    load = report["load_average"]
    print(f"load average {load[0]} {load[1]} {load[2]} on {report['cpus']} CPUs; "
          f"wall time {report['wall_s']} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 30 s soak instead of 300 s")
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    parser.add_argument("--soak-seconds", type=float, default=None, help="idempotency soak")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s of the kill -9 probe")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--only", nargs="*", default=None, help="probes whose name holds a word")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    report = run(args)
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print_table(report)
    sys.exit(0 if report["pass"] else 1)


if __name__ == "__main__":
    main()
