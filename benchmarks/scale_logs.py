"""Benchmark at scale: the prediction-log writer and the monitoring pass over N records
(default 50M), prodml and its strongest peer side by side, with peak memory.

Every side runs in a child process of its own that reports its wall seconds and its
peak resident memory (``VmHWM``, see :func:`peak_rss_mb`); the sides alternate round after round
(``--rounds``, ``_table.interleaved``) and each gets the median and minimum of its
rounds. Nothing holds the N records as Python objects: requests are made 10,000 at a
time, logs are written and read hour by hour, checks scan the files batch by batch.

1. **Prediction-log writer.** The same stream of N requests (seeded: 32-hex request id,
   user unit, three features ``temp``/``wind_speed``/``dep_hour``, entity ``origin``,
   score, latency; one row each) is logged by both sides; the time includes making the
   request stream (the same code on both sides; ``source_s`` is its cost alone).

   * prodml: ``PredictionLog`` (``prodml.serving``) opened on ``open_log_stores`` with
     the ``[serving]`` defaults (flush 5,000 rows or 1 s, queue 200,000), exactly as
     ``serving_app`` opens it, and ``PredictionLog.record(prediction, frame, rows=…,
     unit=…, latency_ms=…, protocol="native", entities=…, feature_versions=…)`` per
     request as the server's recorder calls it, then ``close()``. The record is built,
     checked and queued on the calling thread; the writer's background thread groups
     the queue by endpoint and UTC hour and writes each group as its own zstd Parquet
     file (temp file, fsync, rename) under ``endpoint=…/date=…/hour=…``. The driver
     never lets the queue overflow (it waits when it is full: a server would drop and
     count those records), so the figure is the sustained throughput; ``dropped`` must
     be 0.
   * peer, **pyarrow ``ParquetWriter``**: the simplest thing a user would write — the
     same record dict per request (``datetime.now``, the same fields, feature versions
     as JSON) into a list, ``pa.Table.from_pylist`` + ``ParquetWriter.write_table`` every
     5,000 records (zstd), one file. It is a floor, not an equivalent: no durability
     (no fsync, one file that is unreadable until closed, every record lost on a crash),
     no partitioning by endpoint/date/hour (the monitoring pass and retention need it),
     no background thread (the caller's thread does the writing: a request would wait
     for it), no bounded queue, no schema checks, no mixed-type handling.

   Check: both file sets are read back (``request_id`` and ``output``, batch by batch):
   record count, sum of ``output`` and a checksum of the ids (sum mod 2^64 of each id's
   first 16 hex digits) must equal the source's.

2. **Monitoring pass.** A real project (``_faults_project.build``: features, a logistic
   regression trained, approved and deployed on endpoint ``flights``) with
   ``[monitoring] window = "1h"``, its reference fitted and stored beforehand (the
   steady state: later passes load it). Its prediction log gets N records over one day
   (24 hourly windows), in the log layout (one zstd file per hour and 500k records,
   ``write_table`` as a compacted log holds them), every column the server logs;
   features are drawn from the reference rows (the training set), with drift: from hour
   12 ``temp`` + 0.5 reference std, from hour 18 also ``wind_speed`` × 1.5; scores are
   the model's own.

   * prodml: ``Project.open`` then ``project.monitor.run(endpoint=…)`` (what ``prodml
     monitor run`` calls): every window read with all its columns, operational,
     quality, drift (normed Wasserstein per feature, share), prediction (score drift,
     positive share, estimated performance) and label checks, results stored in the
     metadata DB. Timed: the pass (opening the project excluded). Each round runs on
     a fresh copy of the project (the log directory is moved in, not copied).
   * peer, **Evidently 0.7.23** (``_scale_evidently.py``, its own venv, the pin of
     ``drift.py``): per window, ``pd.read_parquet`` of the same files (the three
     feature columns) and ``Report([DataDriftPreset(num_method="wasserstein")])``
     against the same reference rows. It computes the feature drift only (a subset of
     prodml's pass).

   Check: per window and feature, prodml's stored drift value and Evidently's score
   agree within 1e-6 relative (both are the exact normed Wasserstein distance).

    .venv/bin/python benchmarks/scale_logs.py [--records N | --quick] [--rounds R]
        [--only writer|monitoring] [--hours H] [--workdir DIR]

``--hours`` changes how many hourly windows the monitored log spans (24): ``--records
2100000 --hours 1`` puts one 50M run's window in one pass, to see its time and memory.

The last stdout line is the JSON of ``_table.emit``: rows "writer" (seconds per 1M
records) and "monitoring pass" (seconds), prodml vs peer; figures include every side's
peak memory and the load average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _peers import peak_rss_mb, peer_env, peer_python, run_json  # noqa: E402
from _table import Row, emit, interleaved, load_average, summary  # noqa: E402
from experiment_analysis import _hex_ids  # noqa: E402

EVIDENTLY = ["evidently==0.7.23", "pandas<3", "pyarrow"]  # drift.py's pin
ENDPOINT = "flights"
MODEL = "flights:1"
ORIGINS = ("EWR", "JFK", "LGA")
FEATURE_VERSIONS = {"weather": "9b1c77aa"}
CHUNK = 10_000  # requests made at a time
BATCH = 5_000  # the peer's batch: [serving] log_flush_rows' default
UNITS = 2_000_000
SEED = 7
DAY = datetime(2013, 2, 1, tzinfo=UTC)  # the monitored day (the model trained on January)
HOURS = int(os.environ.get("SCALE_LOGS_HOURS", "24"))  # set by --hours, for the children too
FILE_ROWS = 500_000
AGREE_REL = 1e-6
LOG_TIMESTAMP = pa.timestamp("us", tz="UTC")
MASK64 = (1 << 64) - 1


# -- the request stream ---------------------------------------------------------------------


def _arrays(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """The requests, CHUNK at a time, as arrays."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, CHUNK):
        k = min(CHUNK, n - start)
        yield {
            "ids": _hex_ids(rng, k),
            "units": np.char.add("user-", rng.integers(0, UNITS, k).astype(str)),
            "temp": rng.normal(40.0, 10.0, k).round(1),
            "wind": rng.gamma(2.0, 5.0, k).round(1),
            "hour": rng.integers(5, 23, k),
            "origin": np.asarray(ORIGINS)[rng.integers(0, 3, k)],
            "scores": rng.random(k),
            "latency": rng.gamma(2.0, 4.0, k),
        }


def _requests(n: int, seed: int) -> Iterator[tuple[Any, ...]]:
    """The requests as the server has them: Python values (scores: one array)."""
    for a in _arrays(n, seed):
        yield (a["ids"].to_pylist(), a["units"].tolist(), a["temp"].tolist(),
               a["wind"].tolist(), a["hour"].tolist(), a["origin"].tolist(), a["scores"],
               a["latency"].tolist())  # fmt: skip


def _id_sum(ids: pa.Array | pa.ChunkedArray) -> int:
    """Sum mod 2^64 of each 32-hex id's first 16 hex digits."""
    chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
    total = 0
    for arr in chunks:
        if len(arr) == 0:
            continue
        if arr.null_count:
            raise AssertionError("null request ids")
        _, off_buf, data_buf = arr.buffers()
        offsets = np.frombuffer(off_buf, dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
        if not np.all(np.diff(offsets) == 32):
            raise AssertionError("request ids are not 32 characters")
        data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
        text = data.reshape(-1, 32)[:, :16].astype(np.uint64)
        nibbles = np.where(text >= 97, text - 87, text - 48)
        shifts = np.arange(60, -1, -4, dtype=np.uint64)
        values = np.bitwise_or.reduce(nibbles << shifts, axis=1)
        total = (total + int(values.sum(dtype=np.uint64))) & MASK64
    return total


def expected(n: int, seed: int) -> dict[str, Any]:
    """Count, output sum and id checksum of the request stream."""
    count, out_sum, ids = 0, 0.0, 0
    for a in _arrays(n, seed):
        count += len(a["scores"])
        out_sum += float(a["scores"].sum())
        ids = (ids + _id_sum(a["ids"])) & MASK64
    return {"records": count, "output_sum": out_sum, "id_sum": ids}


def scan(files: list[Path]) -> dict[str, Any]:
    """Count, output sum and id checksum of Parquet files, batch by batch."""
    count, out_sum, ids = 0, 0.0, 0
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(
            batch_size=200_000, columns=["request_id", "output"]
        ):
            count += batch.num_rows
            out_sum += float(np.sum(batch.column("output").to_numpy(zero_copy_only=False)))
            ids = (ids + _id_sum(batch.column("request_id"))) & MASK64
    return {"records": count, "output_sum": out_sum, "id_sum": ids, "files": len(files)}


# -- writer sides (child processes) ---------------------------------------------------------


def side_source(n: str) -> dict[str, Any]:
    """Only make the request stream (what both writer sides include)."""
    c0, t0 = time.process_time(), time.perf_counter()
    made = 0
    for chunk in _requests(int(n), SEED):
        made += len(chunk[0])
    return {"seconds_total": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "peak_rss_mib": peak_rss_mb(), "records": made}  # fmt: skip


def side_writer_prodml(out: str, n: str) -> dict[str, Any]:
    """Log the requests with the server's PredictionLog; see the module docstring."""
    import pandas as pd

    from prodml.core import ServingConfig, SystemClock
    from prodml.serving import Prediction, PredictionLog
    from prodml.storage import open_log_stores

    config = ServingConfig()
    state = Path(out) / ".prodml"
    c0, t0 = time.process_time(), time.perf_counter()
    log = PredictionLog(
        open_log_stores(state),
        clock=SystemClock(),
        flush_rows=config.log_flush_rows,
        flush_interval_s=config.log_flush_interval_s,
        max_queue=config.log_max_queue,
        log_features=config.log_features,
    )
    writer = log.predictions
    one_row = pd.DataFrame(index=[0])
    waited = 0.0
    room = config.log_max_queue - CHUNK
    for ids, units, temp, wind, hour, origin, scores, latency in _requests(int(n), SEED):
        for i, request_id in enumerate(ids):
            prediction = Prediction(request_id, ENDPOINT, "champion", MODEL, scores[i : i + 1],
                                    "ok", role="champion")  # fmt: skip
            log.record(
                prediction, one_row,
                rows=[{"temp": temp[i], "wind_speed": wind[i], "dep_hour": hour[i]}],
                unit=units[i], latency_ms=latency[i], protocol="native",
                entities={"origin": [origin[i]]}, feature_versions=FEATURE_VERSIONS,
            )  # fmt: skip
        if writer.stats.queued > room:  # full: wait for the flusher rather than drop
            w0 = time.perf_counter()
            while writer.stats.queued > room:
                time.sleep(0.002)
            waited += time.perf_counter() - w0
    log.close(timeout=3600)
    seconds, cpu, peak = time.perf_counter() - t0, time.process_time() - c0, peak_rss_mb()
    stats = writer.stats
    files = sorted((state / "logs" / "predictions").rglob("*.parquet"))
    return {"seconds_total": seconds, "cpu_seconds": cpu, "peak_rss_mib": peak,
            "waited_s": waited, "dropped": stats.dropped, "written_rows": stats.written_rows,
            "failed_flushes": stats.failed_flushes, "check": scan(files)}  # fmt: skip


def _peer_schema() -> pa.Schema:
    s, f = pa.string(), pa.float64()
    return pa.schema([
        ("time", LOG_TIMESTAMP), ("request_id", s), ("endpoint", s), ("arm", s), ("role", s),
        ("model_version", s), ("unit", s), ("stratum", s), ("status", s), ("shadow", pa.bool_()),
        ("shadow_of", s), ("latency_ms", f), ("propensity", f), ("fallback_from", s),
        ("error", s), ("violations", s), ("protocol", s), ("feature_versions", s),
        ("row", pa.int64()), ("output", f), ("entity.origin", s), ("feature.temp", f),
        ("feature.wind_speed", f), ("feature.dep_hour", pa.int64()),
    ])  # fmt: skip


def side_writer_arrow(out: str, n: str) -> dict[str, Any]:
    """Log the requests with a plain pyarrow ParquetWriter; see the module docstring."""
    path = Path(out) / "predictions.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = _peer_schema()
    c0, t0 = time.process_time(), time.perf_counter()
    batch: list[dict[str, Any]] = []
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for ids, units, temp, wind, hour, origin, scores, latency in _requests(int(n), SEED):
            for i, request_id in enumerate(ids):
                batch.append({
                    "time": datetime.now(UTC), "request_id": request_id, "endpoint": ENDPOINT,
                    "arm": "champion", "role": "champion", "model_version": MODEL,
                    "unit": units[i], "stratum": None, "status": "ok", "shadow": False,
                    "shadow_of": None, "latency_ms": latency[i], "propensity": None,
                    "fallback_from": None, "error": None, "violations": None,
                    "protocol": "native", "feature_versions": json.dumps(FEATURE_VERSIONS),
                    "row": 0, "output": scores[i : i + 1].tolist()[0],
                    "entity.origin": origin[i], "feature.temp": temp[i],
                    "feature.wind_speed": wind[i], "feature.dep_hour": hour[i],
                })  # fmt: skip
                if len(batch) >= BATCH:
                    writer.write_table(pa.Table.from_pylist(batch, schema))
                    batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema))
    seconds, cpu, peak = time.perf_counter() - t0, time.process_time() - c0, peak_rss_mb()
    return {"seconds_total": seconds, "cpu_seconds": cpu, "peak_rss_mib": peak,
            "check": scan([path])}  # fmt: skip


# -- the monitoring pass --------------------------------------------------------------------


def _training_table(project: Any, ref: str) -> tuple[pa.Table, list[str]]:
    """The reference rows of ``ref`` (its training set, as the reference fitter finds
    it) and its inputs."""
    version = project.registry.get(ref)
    run = project.registry.get_run(version.run_id)
    fingerprint = (version.evaluation or {}).get("training_set") or next(
        fp for role, fp in run.datasets if role == "train"
    )
    table = project.features.get_training_set(str(fingerprint)).table
    inputs = [name for name in run.job.get("inputs", []) if name in table.column_names]
    return table, inputs


def side_build_monitoring(work: str, n: str) -> dict[str, Any]:
    return build_monitoring(Path(work), int(n))


def build_monitoring(work: Path, n: int, seed: int = SEED) -> dict[str, Any]:
    """The project (reference stored), its reference rows as Parquet and a log of ``n``
    records over DAY's hours in ``work / "log"`` (moved into a project copy per round)."""
    import pandas as pd

    from _faults_project import build
    from prodml import Project
    from prodml.core import SimulatedClock
    from prodml.storage._log_format import hour_dir
    from prodml.storage._tables import write_table

    base = work / "project"
    ref = build(base, seed)
    with (base / "prodml.toml").open("a") as config:
        config.write('\n[monitoring]\nwindow = "1h"\n')
    log_root = work / "log"
    with Project.open(base, clock=SimulatedClock(DAY)) as project:
        project.monitor.reference(ref, ENDPOINT)  # fitted and stored: the steady state
        table, inputs = _training_table(project, ref)
        loaded = project.registry.load(ref)
        names = list(loaded.signature.columns)
        reference = table.select(inputs)
        pq.write_table(reference, work / "reference.parquet")
        rng = np.random.default_rng(seed)
        ref_cols = {c: reference[c].to_numpy(zero_copy_only=False) for c in inputs}
        origins = (table["origin"].to_numpy(zero_copy_only=False)
                   if "origin" in table.column_names else None)  # fmt: skip
        temp_std = float(np.nanstd(ref_cols["temp"].astype(np.float64)))
        per_hour = n // HOURS
        for h in range(HOURS):
            rows_h = per_hour if h < HOURS - 1 else n - per_hour * (HOURS - 1)
            for part, start in enumerate(range(0, rows_h, FILE_ROWS)):
                k = min(FILE_ROWS, rows_h - start)
                pick = rng.integers(0, reference.num_rows, k)
                feats = {c: ref_cols[c][pick] for c in inputs}
                if h >= 12:
                    feats["temp"] = feats["temp"] + 0.5 * temp_std
                if h >= 18:
                    feats["wind_speed"] = feats["wind_speed"] * 1.5
                frame = pd.DataFrame(feats)[names]
                scores = np.asarray(loaded.predict(frame), dtype=np.float64)
                begins = DAY + timedelta(hours=h)
                micros = int(begins.timestamp()) * 1_000_000
                times = np.sort(rng.integers(0, 3_600_000_000, k)) + micros
                origin = origins[pick] if origins is not None else rng.choice(ORIGINS, k)
                columns: dict[str, Any] = {
                    "time": pa.array(times, LOG_TIMESTAMP),
                    "request_id": _hex_ids(rng, k),
                    "endpoint": pa.array(np.full(k, ENDPOINT)),
                    "arm": pa.array(np.full(k, "champion")),
                    "role": pa.array(np.full(k, "champion")),
                    "model_version": pa.array(np.full(k, ref)),
                    "unit": pa.array(np.char.add("user-", rng.integers(0, UNITS, k).astype(str))),
                    "stratum": pa.nulls(k, pa.string()),
                    "status": pa.array(np.full(k, "ok")),
                    "shadow": pa.array(np.zeros(k, bool)),
                    "shadow_of": pa.nulls(k, pa.string()),
                    "latency_ms": rng.gamma(2.0, 4.0, k),
                    "propensity": pa.nulls(k, pa.float64()),
                    "fallback_from": pa.nulls(k, pa.string()),
                    "error": pa.nulls(k, pa.string()),
                    "violations": pa.nulls(k, pa.string()),
                    "protocol": pa.array(np.full(k, "native")),
                    "feature_versions": pa.array(np.full(k, json.dumps(FEATURE_VERSIONS))),
                    "row": pa.array(np.zeros(k, np.int64)),
                    "output": scores,
                    "entity.origin": pa.array(origin),
                }
                for c in inputs:
                    columns[f"feature.{c}"] = pa.array(feats[c], from_pandas=True)
                directory = hour_dir(log_root, "endpoint", ENDPOINT, begins.date(), begins.hour)
                write_table(pa.table(columns), directory / f"{begins:%Y%m%dT%H%M%S}-{part}.parquet")
    windows = []
    for h in range(HOURS):
        begins = DAY + timedelta(hours=h)
        directory = hour_dir(log_root, "endpoint", ENDPOINT, begins.date(), begins.hour)
        windows.append({"start": begins.isoformat(),
                        "files": [str(p) for p in sorted(directory.glob("*.parquet"))]})  # fmt: skip
    return {"ref": ref, "inputs": inputs, "windows": windows, "base": str(base),
            "log": str(log_root), "reference": str(work / "reference.parquet")}  # fmt: skip


def side_monitor_prodml(root: str) -> dict[str, Any]:
    """One monitoring pass over the project at ``root``; see the module docstring."""
    from prodml import Project
    from prodml.core import SimulatedClock

    now = DAY + timedelta(hours=HOURS, minutes=30)
    with Project.open(Path(root), clock=SimulatedClock(now)) as project:
        c0, t0 = time.process_time(), time.perf_counter()
        run = project.monitor.run(endpoint=ENDPOINT)
        seconds, cpu, peak = time.perf_counter() - t0, time.process_time() - c0, peak_rss_mb()
    windows: dict[str, dict[str, float | None]] = {}
    rows = 0
    for report in run.computed:
        rows += report.window.rows
        found = windows.setdefault(report.window.start.isoformat(), {})
        for result in report.results:
            if result.check == "drift" and result.column:
                found[result.column] = result.value
    return {"seconds_total": seconds, "cpu_seconds": cpu, "peak_rss_mib": peak, "rows": rows,
            "computed": len(run.computed), "windows": windows}  # fmt: skip


def disagreements(ours: dict[str, Any], theirs: dict[str, Any], inputs: list[str]) -> list[str]:
    out = []
    for start in sorted(set(ours) | set(theirs)):
        for c in inputs:
            a, b = ours.get(start, {}).get(c), theirs.get(start, {}).get(c)
            if a is None or b is None or not math.isclose(a, b, rel_tol=AGREE_REL, abs_tol=1e-12):
                out.append(f"{start} {c}: prodml {a!r}, Evidently {b!r}")
    return out


# -- orchestration --------------------------------------------------------------------------


def _child(*args: str) -> dict[str, Any]:
    return run_json([sys.executable, __file__, "--side", *args], what=f"child {args[0]}",
                    timeout=6 * 3600)  # fmt: skip


def _stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "seconds": summary([r["seconds_total"] for r in runs]),
        "peak_rss_mib": summary([r["peak_rss_mib"] for r in runs]),
        "cpu_seconds": summary([r["cpu_seconds"] for r in runs]),
    }


def _keep(runs: dict[str, list[dict[str, Any]]], name: str, work: Callable[[], dict[str, Any]]) -> Callable[[], float]:  # fmt: skip
    def side() -> float:
        out = work()
        runs.setdefault(name, []).append(out)
        print(f"[round] {name}: {out['seconds_total']:.2f} s, peak {out['peak_rss_mib']:.0f} MiB, "
              f"load {load_average()}", file=sys.stderr, flush=True)  # fmt: skip
        return float(out["seconds_total"])

    return side


def run_writer(tmp: Path, records: int, rounds: int) -> dict[str, Any]:
    want = expected(records, SEED)
    runs: dict[str, list[dict[str, Any]]] = {}
    count = iter(range(10**6))

    def writer(kind: str) -> dict[str, Any]:
        out = tmp / f"writer-{kind}-{next(count)}"
        try:
            return _child(f"writer_{kind}", str(out), str(records))
        finally:
            shutil.rmtree(out, ignore_errors=True)

    interleaved(rounds, {
        "prodml": _keep(runs, "writer prodml", lambda: writer("prodml")),
        "pyarrow": _keep(runs, "writer pyarrow", lambda: writer("arrow")),
    })  # fmt: skip
    source = _child("source", str(records))
    problems = []
    for name, results in runs.items():
        for r in results:
            got = r["check"]
            if got["records"] != want["records"] or got["id_sum"] != want["id_sum"]:
                problems.append(f"{name}: {got} != {want}")
            elif not math.isclose(got["output_sum"], want["output_sum"], rel_tol=1e-9):
                problems.append(f"{name}: output sum {got['output_sum']} != {want['output_sum']}")
            if r.get("dropped"):
                problems.append(f"{name}: dropped {r['dropped']}")
    return {"runs": runs, "expected": want, "source": source, "problems": problems}


def run_monitoring(tmp: Path, records: int, rounds: int) -> dict[str, Any]:
    work = tmp / "monitoring"
    work.mkdir()
    t0 = time.perf_counter()
    setup = _child("build_monitoring", str(work), str(records))  # keeps this process small
    print(f"[setup] project + {records:,}-record log in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr, flush=True)  # fmt: skip
    python = peer_python("evidently", EVIDENTLY)
    log = Path(setup["log"])
    count = iter(range(10**6))
    runs: dict[str, list[dict[str, Any]]] = {}

    def prodml_pass() -> dict[str, Any]:
        root = work / f"round-{next(count)}"
        shutil.copytree(setup["base"], root)
        target = root / ".prodml" / "logs" / "predictions"
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        log.rename(target)
        try:
            return _child("monitor_prodml", str(root))
        finally:
            target.rename(log)
            shutil.rmtree(root, ignore_errors=True)

    payload = {
        "reference": setup["reference"],
        "columns": {f"feature.{c}": c for c in setup["inputs"]},
        "windows": setup["windows"],
    }

    def evidently_pass() -> dict[str, Any]:
        return run_json([str(python), str(HERE / "_scale_evidently.py")], what="Evidently",
                        stdin=json.dumps(payload), env=peer_env(), timeout=6 * 3600)  # fmt: skip

    interleaved(rounds, {
        "prodml": _keep(runs, "monitor prodml", prodml_pass),
        "evidently": _keep(runs, "monitor Evidently", evidently_pass),
    })  # fmt: skip
    problems = disagreements(runs["monitor prodml"][-1]["windows"],
                             runs["monitor Evidently"][-1]["windows"], setup["inputs"])  # fmt: skip
    for r in runs["monitor prodml"]:
        if r["rows"] != records or r["computed"] != HOURS:
            problems.append(f"prodml pass: {r['rows']} rows in {r['computed']} windows")
    for r in runs["monitor Evidently"]:
        if r["rows"] != records:
            problems.append(f"Evidently: {r['rows']} rows")
    return {"runs": runs, "inputs": setup["inputs"], "problems": problems}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=50_000_000)
    parser.add_argument("--quick", action="store_true", help="1M records")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--workdir", help="where the temporary files go (default: $TMPDIR)")
    parser.add_argument(
        "--hours",
        type=int,
        default=24,
        help="hourly windows the monitored log spans (records / hours each)",
    )
    parser.add_argument("--only", choices=["writer", "monitoring"], help="one part only")
    parser.add_argument("--side", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side, *rest = args.side
        sides: dict[str, Callable[..., dict[str, Any]]] = {
            "source": side_source, "writer_prodml": side_writer_prodml,
            "writer_arrow": side_writer_arrow, "monitor_prodml": side_monitor_prodml,
            "build_monitoring": side_build_monitoring,
        }  # fmt: skip
        print(json.dumps(sides[side](*rest)))
        return

    records = 1_000_000 if args.quick else args.records
    if args.hours != HOURS:  # the children read it from the environment
        os.environ["SCALE_LOGS_HOURS"] = str(args.hours)
        raise SystemExit(os.spawnv(os.P_WAIT, sys.executable, [sys.executable, *sys.argv]))
    rounds = max(args.rounds, 1)
    figures: dict[str, Any] = {"records": records, "rounds": rounds, "cores": os.cpu_count()}
    rows: list[Row] = []
    problems: list[str] = []
    size = f"{records / 1e6:g}M records"
    with tempfile.TemporaryDirectory(prefix="prodml-scale-", dir=args.workdir) as tmp:
        if args.only in (None, "writer"):
            w = run_writer(Path(tmp), records, rounds)
            ours, theirs = _stats(w["runs"]["writer prodml"]), _stats(w["runs"]["writer pyarrow"])
            per_m = 1e6 / records
            figures["writer"] = {
                "prodml": ours, "pyarrow": theirs, "source_s": round(w["source"]["seconds_total"], 3),
                "prodml_waited_s": [round(r["waited_s"], 3) for r in w["runs"]["writer prodml"]],
                "prodml_files": w["runs"]["writer prodml"][-1]["check"]["files"],
                "expected": w["expected"], "check_ok": not w["problems"],
            }  # fmt: skip
            problems += w["problems"]
            print(f"writer prodml : median {ours['seconds']['median']:.2f} s "
                  f"(min {ours['seconds']['min']:.2f}), peak {ours['peak_rss_mib']['median']:.0f} MiB, "
                  f"{figures['writer']['prodml_files']} files, waited {figures['writer']['prodml_waited_s']} s")  # fmt: skip
            print(f"writer pyarrow: median {theirs['seconds']['median']:.2f} s "
                  f"(min {theirs['seconds']['min']:.2f}), peak {theirs['peak_rss_mib']['median']:.0f} MiB; "
                  f"request stream alone {figures['writer']['source_s']:.2f} s; "
                  f"read-back check: {'ok' if not w['problems'] else 'FAILED'}")  # fmt: skip
            note = (
                f"{size}, one row a request, PredictionLog.record → LogWriter (flush 5000 rows/1 s, "
                f"fsync'd partitioned files) vs ParquetWriter floor (one file, no fsync/partitions/"
                f"background thread); time includes making the requests ({figures['writer']['source_s']:.1f} s "
                f"alone); min prodml {ours['seconds']['min'] * per_m:.2f} s/1M, peer "
                f"{theirs['seconds']['min'] * per_m:.2f} s/1M; peak RSS prodml "
                f"{ours['peak_rss_mib']['median']:.0f} MiB, peer {theirs['peak_rss_mib']['median']:.0f} MiB; "
                f"read-back counts and checksums {'equal' if not w['problems'] else 'DIFFER'}"
            )
            rows.append(Row("scale logs", "prediction-log writer", round(ours["seconds"]["median"] * per_m, 4),
                            "pyarrow ParquetWriter", round(theirs["seconds"]["median"] * per_m, 4),
                            "s per 1M records", None, note))  # fmt: skip
        if args.only in (None, "monitoring"):
            m = run_monitoring(Path(tmp), records, rounds)
            ours = _stats(m["runs"]["monitor prodml"])
            theirs = _stats(m["runs"]["monitor Evidently"])
            figures["monitoring"] = {"prodml": ours, "evidently": theirs, "windows": HOURS,
                                     "drift_agrees": not m["problems"],
                                     "disagreements": m["problems"][:10]}  # fmt: skip
            problems += m["problems"]
            print(f"monitor prodml   : median {ours['seconds']['median']:.2f} s "
                  f"(min {ours['seconds']['min']:.2f}), peak {ours['peak_rss_mib']['median']:.0f} MiB")  # fmt: skip
            print(f"monitor Evidently: median {theirs['seconds']['median']:.2f} s "
                  f"(min {theirs['seconds']['min']:.2f}), peak {theirs['peak_rss_mib']['median']:.0f} MiB; "
                  f"drift agrees (rel {AGREE_REL:g}, {HOURS} windows × {len(m['inputs'])} features): "
                  f"{not m['problems']}")  # fmt: skip
            note = (
                f"{size} over {HOURS} hourly windows; prodml project.monitor.run (all checks, stored) "
                f"vs Evidently 0.7.23 DataDriftPreset(wasserstein) per window (feature drift only); "
                f"min prodml {ours['seconds']['min']:.2f} s, peer {theirs['seconds']['min']:.2f} s; "
                f"peak RSS prodml {ours['peak_rss_mib']['median']:.0f} MiB, peer "
                f"{theirs['peak_rss_mib']['median']:.0f} MiB; per-window drift "
                f"{'agrees' if not m['problems'] else 'DISAGREES'} within {AGREE_REL:g} rel"
            )
            rows.append(Row("scale logs", "monitoring pass", round(ours["seconds"]["median"], 4),
                            "Evidently 0.7.23 DataDriftPreset", round(theirs["seconds"]["median"], 4),
                            "s", None, note))  # fmt: skip
    figures["problems"] = problems[:20]
    print(f"load average: {load_average()}")
    for problem in problems[:20]:
        print("  PROBLEM", problem)
    emit(figures, rows)
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
