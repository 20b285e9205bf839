"""Benchmark: prodml's model registry against MLflow's tracking and model registry, both
on a fresh SQLite database in a temporary folder, and both again on a fresh PostgreSQL
database, in one process, on the same data.

Workloads (sizes ÷10 with ``--quick``):

1. run logging: 1,000 runs of 10 params + 10 metrics, then ended. prodml:
   ``start_run(params=..., seed=i)`` as a context manager with ``log_metrics`` inside
   (environment capture on, as by default; no ``code_dir``). MLflow: ``create_run``,
   one ``log_batch`` and ``set_terminated``; and, as a second figure, 100 runs logged one
   call per value (``log_param`` ×10, ``log_metric`` ×10).
2. search by metric: ``m0 >= 0.5`` ordered by ``m0`` descending, limit 100, median of 20;
   both systems hold the same values (seeded), so the ``m0`` lists returned must match.
3. version registration: 100 registrations of one fitted scikit-learn
   ``LogisticRegression``. prodml's ``register`` serialises the model (skops), hashes it,
   stores the blob (content-addressed: identical bytes are written once) and records the
   version with an audit entry; MLflow's ``create_model_version`` only records a pointer
   to a model saved once beforehand with ``mlflow.sklearn.save_model`` to a local folder
   (its path is the ``source``). prodml's time is also split into its parts: format
   detection (which serialises the model to check it), serialising, and the rest.

Fairness choices: both SQLite databases run as prodml configures its own, in WAL mode with
``synchronous=NORMAL`` (``--mlflow-journal default`` measures MLflow on its defaults, a
rollback journal with ``synchronous=FULL``): the journal is set in MLflow's database file
before MLflow opens it and every SQLAlchemy connection of the process sets the pragmas.
MLflow's async logging is off (its default) and its telemetry is off
(``MLFLOW_DISABLE_TELEMETRY``; it only adds work to MLflow). ``MlflowClient.create_run``
adds no git or system tags (only the fluent ``mlflow.start_run`` does), so there is
nothing to turn off there. Both databases are created and migrated, and each system
logs one run and registers one version, before any timing (first calls import skops,
compile SQL, open connections). The machine's load is not controlled: compare the ratios
of one run, not absolute figures across runs.

PostgreSQL (``--pg-url``, default the local server's ``test`` database with trust auth):
prodml's metadata DB supports it (``[metadata] type = "postgresql"``; here
``MetadataDB.open`` on a ``postgresql+psycopg`` URL), so both systems run there too, like
for like: each round creates one scratch database per system (``CREATE DATABASE
prodml_bench_registry_<pid>_<round>_<system>``) and drops it afterwards (``WITH
(FORCE)``, which also ends the connections pools still hold); both use the psycopg 3
driver through SQLAlchemy, the server's settings as they are (recorded in the JSON:
``fsync``, ``synchronous_commit``), the artifacts in a local folder as on SQLite. If the
server is unreachable (or ``--no-postgres``), that side is skipped with the reason
printed and recorded; the SQLite figures are unaffected. Before the search each system's
database is ``ANALYZE``d (see :func:`analyze`), as autovacuum would do soon after the
inserts.

    .venv/bin/python benchmarks/registry.py [--quick]

``--rounds`` (default 5) repeats the whole comparison on fresh databases, interleaving
the four (prodml SQLite, MLflow SQLite, prodml PostgreSQL, MLflow PostgreSQL, then the
reverse order); every figure is the median over the rounds (the min is in the JSON
beside it) and the ratios are of the medians.

The last stdout line is one JSON object (``_table.emit``) with every figure, the targets,
the ratios (MLflow / prodml: above 1 means prodml is faster) and the table rows: run
logging (target 10x on SQLite WAL), search and registration, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os

os.environ["MLFLOW_ENABLE_ASYNC_LOGGING"] = "false"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import argparse
import logging
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prodml.core import SystemClock
from prodml.registry import ModelRegistry, detect_format, get_format, infer_signature
from prodml.storage import ArtifactStore, LocalBlobStore, MetadataDB

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import Row, emit, load_average

warnings.filterwarnings("ignore")
import mlflow  # noqa: E402
import mlflow.sklearn  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

for _name in ("mlflow", "alembic"):
    logging.getLogger(_name).setLevel(logging.ERROR)

TARGETS = {"logging_ratio_min": 10.0, "register_ms_max": 5.0}
N_PARAMS = 10
N_METRICS = 10
SEARCH_WHERE = ("m0", 0.5)
SEARCH_LIMIT = 100
SEARCH_REPEAT = 20
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# ---------------------------------------------------------------- figures


def summary(seconds: list[float]) -> dict[str, float]:
    """Mean, p50 and p99 in ms and the total in s of a list of durations."""
    ms = np.asarray(seconds) * 1e3
    return {
        "n": len(seconds),
        "mean_ms": round(float(ms.mean()), 4),
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "total_s": round(float(ms.sum() / 1e3), 4),
    }


def timed(action: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    """Durations of ``repeat`` calls of ``action`` and its last result."""
    out: list[float] = []
    result = None
    for _ in range(repeat):
        began = time.perf_counter()
        result = action()
        out.append(time.perf_counter() - began)
    return out, result


def aggregate(figures: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The median and the min over rounds of every number in the figures (other values
    from the first round)."""
    median: dict[str, Any] = {}
    low: dict[str, Any] = {}
    for key, value in figures[0].items():
        if isinstance(value, dict):
            median[key], low[key] = aggregate([f[key] for f in figures])
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values = [f[key] for f in figures]
            middle = (statistics.median_low(values) if isinstance(value, int)
                      else round(float(statistics.median(values)), 4))  # fmt: skip
            median[key], low[key] = middle, min(values)
        else:
            median[key] = low[key] = value
    return median, low


def make_runs(count: int, seed: int) -> list[tuple[dict[str, float], dict[str, float]]]:
    """``count`` (params, metrics) pairs of seeded random values."""
    rng = np.random.default_rng(seed)
    params = rng.random((count, N_PARAMS)).round(6)
    metrics = rng.random((count, N_METRICS))
    return [
        (
            {f"p{j}": float(params[i, j]) for j in range(N_PARAMS)},
            {f"m{j}": float(metrics[i, j]) for j in range(N_METRICS)},
        )
        for i in range(count)
    ]


# ---------------------------------------------------------------- prodml


def prodml_logging(registry: ModelRegistry, runs: list[Any]) -> tuple[list[float], list[str]]:
    seconds, ids = [], []
    for i, (params, metrics) in enumerate(runs):
        began = time.perf_counter()
        with registry.start_run("bench", params=params, seed=i) as run:
            run.log_metrics(metrics)
        seconds.append(time.perf_counter() - began)
        ids.append(run.id)
    return seconds, ids


def prodml_search(registry: ModelRegistry) -> tuple[list[float], list[float]]:
    key, value = SEARCH_WHERE
    seconds, found = timed(
        lambda: registry.search_runs(
            "bench", where=f"{key} >= {value}", order_by=f"{key} desc", limit=SEARCH_LIMIT
        ),
        SEARCH_REPEAT,
    )
    return seconds, [info.metrics[key] for info in found]


def prodml_register(
    registry: ModelRegistry,
    artifacts: ArtifactStore,
    model: Any,
    signature: Any,
    run_id: str,
    count: int,
) -> dict[str, Any]:
    """The registration as asked for (format detected), then its parts: with the format
    given, with bytes already serialised, and format detection, serialising and storing
    an existing blob on their own."""
    metrics = {"roc_auc": 0.8, "log_loss": 0.4}

    def register(name: str, **extra: Any) -> Any:
        return registry.register(
            name, model, signature=signature, metrics=metrics, run_id=run_id, **extra
        )

    full, _ = timed(lambda: register("bench_model"), count)
    given, _ = timed(lambda: register("bench_model_skops", format="skops"), count)
    fmt = get_format("skops")
    detect, _ = timed(lambda: detect_format(model), count)
    serialise, data = timed(lambda: fmt.save(model), count)
    store, _ = timed(lambda: artifacts.put_bytes(data), count)
    prebuilt, _ = timed(lambda: register("bench_model_bytes", format="skops", artifact=data), count)
    return {
        "register": summary(full),
        "register_format_given": summary(given),
        "register_preserialised": summary(prebuilt),
        "detect_format": summary(detect),
        "serialise": summary(serialise),
        "put_bytes_existing": summary(store),
        "artifact_bytes": len(data),
    }


def analyze(url: str | None) -> None:
    """On PostgreSQL, refresh the planner's statistics (``ANALYZE``) before the search,
    as autovacuum does within a minute of the inserts: run right after 1,000 runs are
    logged into fresh tables, the planner guesses one row per table, and prodml's search
    took 84 ms instead of 1.3 ms (a nested loop over every run). Both systems get it."""
    if url is None or not url.startswith("postgresql"):
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as con:
            con.execute(text("ANALYZE"))
    finally:
        engine.dispose()


def run_prodml(
    workdir: Path, runs: list[Any], model: Any, n_versions: int, url: str | None = None
) -> dict[str, Any]:
    db = MetadataDB.open(url or f"sqlite:///{workdir}/meta.db")
    artifacts = ArtifactStore(LocalBlobStore(workdir / "artifacts"))
    registry = ModelRegistry(db, artifacts, SystemClock())
    # Warm-up outside the timing: the environment capture is cached per process.
    with registry.start_run("warmup") as run:
        run.log_metrics({"x": 1.0})
    logging_s, ids = prodml_logging(registry, runs)
    analyze(url)
    search_s, m0 = prodml_search(registry)
    X = pd.DataFrame(np.zeros((2, 10)), columns=[f"x{i}" for i in range(10)])
    signature = infer_signature(X, model.predict_proba(X.to_numpy())[:, 1])
    # Warm-up outside the timing: the first registration imports skops.
    registry.register("warmup_model", model, signature=signature)
    versions = prodml_register(registry, artifacts, model, signature, ids[0], n_versions)
    db.close()
    return {
        "logging": summary(logging_s),
        "search": {"median_ms": round(statistics.median(search_s) * 1e3, 4), "found": len(m0)},
        "search_m0": m0,
        **versions,
    }


# ---------------------------------------------------------------- MLflow


def mlflow_logging_batch(client: MlflowClient, experiment: str, runs: list[Any]) -> list[float]:
    seconds = []
    for params, metrics in runs:
        began = time.perf_counter()
        run_id = client.create_run(experiment).info.run_id
        stamp = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, stamp, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        client.set_terminated(run_id)
        seconds.append(time.perf_counter() - began)
    return seconds


def mlflow_logging_single(client: MlflowClient, experiment: str, runs: list[Any]) -> list[float]:
    seconds = []
    for params, metrics in runs:
        began = time.perf_counter()
        run_id = client.create_run(experiment).info.run_id
        for key, value in params.items():
            client.log_param(run_id, key, str(value))
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        client.set_terminated(run_id)
        seconds.append(time.perf_counter() - began)
    return seconds


def wal_everywhere() -> None:
    """Every SQLite connection SQLAlchemy opens from now on runs in WAL mode with
    ``synchronous=NORMAL``: what prodml sets on its own database, here given to MLflow's."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if _WAL_LISTENING:
        return
    _WAL_LISTENING.append(True)

    @event.listens_for(Engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        if isinstance(connection, sqlite3.Connection):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()


_WAL_LISTENING: list[bool] = []


def sqlite_settings(path: Path) -> dict[str, Any]:
    con = sqlite3.connect(path)
    try:
        return {"journal_mode": con.execute("PRAGMA journal_mode").fetchone()[0]}
    finally:
        con.close()


def run_mlflow(
    workdir: Path,
    runs: list[Any],
    single_runs: list[Any],
    model: Any,
    n_versions: int,
    journal: str = "wal",
    uri: str | None = None,
) -> dict[str, Any]:
    if uri is None and journal == "wal":
        with sqlite3.connect(workdir / "mlflow.db") as con:  # persists in the file
            con.execute("PRAGMA journal_mode=WAL")
        wal_everywhere()
    client = MlflowClient(tracking_uri=uri or f"sqlite:///{workdir}/mlflow.db")
    # The first call creates and migrates the database; the warm-up experiment absorbs it.
    warmup = client.create_experiment("warmup", artifact_location=(workdir / "mlruns_w").as_uri())
    experiment = client.create_experiment("bench", artifact_location=(workdir / "mlruns").as_uri())
    side = client.create_experiment("single", artifact_location=(workdir / "mlruns_s").as_uri())
    mlflow_logging_batch(client, warmup, runs[:1])
    batch_s = mlflow_logging_batch(client, experiment, runs)
    single_s = mlflow_logging_single(client, side, single_runs)
    analyze(uri)

    key, value = SEARCH_WHERE
    search_s, found = timed(
        lambda: client.search_runs(
            [experiment],
            f"metrics.{key} >= {value}",
            order_by=[f"metrics.{key} DESC"],
            max_results=SEARCH_LIMIT,
        ),
        SEARCH_REPEAT,
    )
    m0 = [run.data.metrics[key] for run in found]

    source = workdir / "mlflow_model"
    mlflow.sklearn.save_model(model, str(source))
    run_id = found[0].info.run_id
    client.create_registered_model("warmup_model")
    client.create_model_version("warmup_model", source=str(source), run_id=run_id)
    client.create_registered_model("bench_model")
    register_s, _ = timed(
        lambda: client.create_model_version("bench_model", source=str(source), run_id=run_id),
        n_versions,
    )
    database: dict[str, Any] = (
        {"postgresql": "scratch database, server settings"}
        if uri is not None
        else {
            "sqlite": {
                **sqlite_settings(workdir / "mlflow.db"),
                "synchronous": "NORMAL" if journal == "wal" else "FULL (default)",
            }
        }
    )
    return {
        "version": mlflow.__version__,
        **database,
        "logging_batch": summary(batch_s),
        "logging_single": summary(single_s),
        "search": {"median_ms": round(statistics.median(search_s) * 1e3, 4), "found": len(m0)},
        "search_m0": m0,
        "register": summary(register_s),
        "register_source": "local folder written once by mlflow.sklearn.save_model",
    }


# ---------------------------------------------------------------- PostgreSQL


class ScratchServer:
    """The PostgreSQL server of ``url``: creates and drops scratch databases on it."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        self.url = make_url(url)
        self.prefix = f"prodml_bench_registry_{os.getpid()}"

    def _admin(self) -> Any:
        import psycopg

        u = self.url
        return psycopg.connect(
            host=u.host or "127.0.0.1",
            port=u.port or 5432,
            user=u.username,
            password=u.password,
            dbname=u.database or "postgres",
            connect_timeout=5,
            autocommit=True,
        )

    def probe(self) -> tuple[str | None, dict[str, Any]]:
        """Why the server cannot be used (None: it can), and its relevant settings."""
        try:
            with self._admin() as con:
                settings = {
                    name: con.execute(f"SHOW {name}").fetchone()[0]
                    for name in ("server_version", "fsync", "synchronous_commit", "wal_level")
                }
                con.execute(f'CREATE DATABASE "{self.prefix}_probe"')
                con.execute(f'DROP DATABASE "{self.prefix}_probe"')
        except Exception as exc:  # any failure: the PostgreSQL side is skipped, with why
            first = str(exc).strip().splitlines()
            return f"{type(exc).__name__}: {first[0] if first else ''}", {}
        return None, settings

    @contextmanager
    def database(self, suffix: str) -> Iterator[str]:
        """A fresh database for the ``with`` block; yields its SQLAlchemy URL."""
        name = f"{self.prefix}_{suffix}"
        with self._admin() as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            con.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.url.set(drivername="postgresql+psycopg", database=name).render_as_string(
                hide_password=False
            )
        finally:
            with self._admin() as con:
                con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------- report


def print_comparison(p: dict[str, Any], m: dict[str, Any], title: str) -> None:
    rows = [
        ("run logging, mean ms/run", p["logging"]["mean_ms"], m["logging_batch"]["mean_ms"]),
        ("run logging, p50 ms/run", p["logging"]["p50_ms"], m["logging_batch"]["p50_ms"]),
        ("run logging, p99 ms/run", p["logging"]["p99_ms"], m["logging_batch"]["p99_ms"]),
        ("run logging, total s", p["logging"]["total_s"], m["logging_batch"]["total_s"]),
        (
            "  MLflow one call/value, mean ms",
            p["logging"]["mean_ms"],
            m["logging_single"]["mean_ms"],
        ),
        ("search m0>=0.5, median ms", p["search"]["median_ms"], m["search"]["median_ms"]),
        ("register version, mean ms", p["register"]["mean_ms"], m["register"]["mean_ms"]),
        ("register version, p50 ms", p["register"]["p50_ms"], m["register"]["p50_ms"]),
        ("register version, p99 ms", p["register"]["p99_ms"], m["register"]["p99_ms"]),
    ]
    print(f"{title:<36} {'prodml':>10} {'MLflow':>10} {'MLflow/prodml':>14}")
    for name, ours, theirs in rows:
        print(f"{name:<36} {ours:>10.3f} {theirs:>10.3f} {theirs / ours:>13.1f}x")


def print_table(report: dict[str, Any]) -> None:
    p, m = report["prodml"], report["mlflow"]
    print_comparison(p, m, "SQLite (WAL, NORMAL)")
    pg = report["postgresql"]
    if "skipped" in pg:
        print(f"PostgreSQL: skipped ({pg['skipped']})")
    else:
        print_comparison(pg["prodml"], pg["mlflow"], f"PostgreSQL {pg['server']['server_version']}")
        print(f"PostgreSQL server: fsync {pg['server']['fsync']}, synchronous_commit "
              f"{pg['server']['synchronous_commit']}; a scratch database per system and round")  # fmt: skip
    verdict = report["pass"]
    print(
        f"target run logging ratio >= {TARGETS['logging_ratio_min']:.0f}x: "
        f"{report['ratio_logging_batch']}x -> {'PASS' if verdict['logging'] else 'FAIL'}"
    )
    print(
        f"target prodml register mean <= {TARGETS['register_ms_max']:.0f} ms: "
        f"{p['register']['mean_ms']:.3f} ms -> {'PASS' if verdict['register'] else 'FAIL'}"
    )
    print(
        f"prodml register parts (mean ms): format given {p['register_format_given']['mean_ms']:.3f}, "
        f"bytes given {p['register_preserialised']['mean_ms']:.3f}; alone: detect_format "
        f"{p['detect_format']['mean_ms']:.3f}, skops serialise {p['serialise']['mean_ms']:.3f}, "
        f"put_bytes of an existing blob {p['put_bytes_existing']['mean_ms']:.3f}; "
        f"artifact {p['artifact_bytes']} bytes"
    )
    print(
        "note: prodml's register serialises, hashes and stores the model; MLflow's "
        "create_model_version only records a pointer to a folder saved once beforehand."
    )
    print(f"search: every side returned {p['search']['found']} runs with identical m0 values")
    print(f"MLflow's SQLite: journal_mode {m['sqlite']['journal_mode']}, synchronous "
          f"{m['sqlite']['synchronous']}; prodml's: wal, NORMAL")  # fmt: skip


def table_rows(report: dict[str, Any]) -> list[Row]:
    """Run logging, search and registration, prodml beside MLflow on each database."""
    out: list[Row] = []
    pg = report["postgresql"]
    databases = [("SQLite WAL", report["prodml"], report["mlflow"], report["prodml_min"],
                  report["mlflow_min"])]  # fmt: skip
    if "skipped" not in pg:
        databases.append(("PostgreSQL", pg["prodml"], pg["mlflow"], pg["prodml_min"],
                          pg["mlflow_min"]))  # fmt: skip
    rounds = f"median of {report['rounds']} rounds"
    for database, p, m, p_min, m_min in databases:
        sqlite = database == "SQLite WAL"
        measures = [
            ("run logging, mean", "ms/run", ("logging", "mean_ms"), ("logging_batch", "mean_ms"),
             10.0 if sqlite else None,
             f"{report['runs']} runs of {N_PARAMS} params + {N_METRICS} metrics; MLflow "
             "create_run + log_batch + set_terminated"),
            ("search by metric, median", "ms", ("search", "median_ms"), ("search", "median_ms"),
             None, f"m0 >= 0.5 order by m0 desc limit {SEARCH_LIMIT}, same runs returned"),
            ("register version, mean", "ms", ("register", "mean_ms"), ("register", "mean_ms"),
             None, "prodml serialises, hashes and stores the model; MLflow records a pointer "
             "to a folder saved once"),
        ]  # fmt: skip
        for measure, unit, (pk, pf), (mk, mf), target, note in measures:
            out.append(
                Row(
                    benchmark="registry",
                    measure=f"{measure} ({database})",
                    prodml=p[pk][pf],
                    peer=f"MLflow {m['version']} ({database})",
                    peer_value=m[mk][mf],
                    unit=unit,
                    target=target,
                    note=f"{note}; {rounds} (min prodml {p_min[pk][pf]}, MLflow {m_min[mk][mf]})",
                )
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes divided by 10")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median, min)")
    parser.add_argument("--mlflow-journal", choices=["wal", "default"], default="wal",
                        help="MLflow's SQLite: WAL + synchronous=NORMAL as prodml (default), or "
                        "MLflow's own defaults")  # fmt: skip
    parser.add_argument("--pg-url", default=os.environ.get("PRODML_BENCH_PG_URL", PG_URL),
                        help="PostgreSQL server (its database is only used to create and drop "
                        "scratch databases); default %(default)s")  # fmt: skip
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    n_runs, n_single, n_versions = 1_000 // scale, 100 // scale, 100 // scale
    runs = make_runs(n_runs, args.seed)
    single_runs = make_runs(n_single, args.seed + 1)
    rng = np.random.default_rng(args.seed + 2)
    X = rng.random((1_000, 10))
    model = LogisticRegression().fit(X, (X[:, 0] + rng.normal(0, 0.2, 1_000) > 0.5).astype(int))

    server = ScratchServer(args.pg_url)
    skipped, pg_settings = ("--no-postgres", {}) if args.no_postgres else server.probe()
    if skipped is not None:
        print(f"PostgreSQL side skipped: {skipped} ({server.url.render_as_string()})")
    sides: dict[str, Callable[[Path, int], dict[str, Any]]] = {
        "prodml": lambda wd, _r: run_prodml(wd, runs, model, n_versions),
        "mlflow": lambda wd, _r: run_mlflow(wd, runs, single_runs, model, n_versions,
                                            args.mlflow_journal),
    }  # fmt: skip

    def on_pg(kind: str) -> Callable[[Path, int], dict[str, Any]]:
        def side(wd: Path, r: int) -> dict[str, Any]:
            with server.database(f"{r}_{kind}") as url:
                if kind == "prodml":
                    return run_prodml(wd, runs, model, n_versions, url=url)
                return run_mlflow(wd, runs, single_runs, model, n_versions, uri=url)

        return side

    if skipped is None:
        sides["prodml_pg"], sides["mlflow_pg"] = on_pg("prodml"), on_pg("mlflow")

    began = time.perf_counter()
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(args.rounds):  # fresh databases each round; the order alternates
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        results: dict[str, dict[str, Any]] = {}
        with tempfile.TemporaryDirectory(prefix="prodml-registry-bench-") as tmp:
            for name in order:
                (Path(tmp) / name).mkdir()
                results[name] = sides[name](Path(tmp) / name, r)
        found = {name: result.pop("search_m0") for name, result in results.items()}
        if any(m0 != found["prodml"] for m0 in found.values()):
            raise RuntimeError(f"the sides returned different runs for the same search: {found}")
        rounds.append(results)
    ours, ours_min = aggregate([one["prodml"] for one in rounds])
    theirs, theirs_min = aggregate([one["mlflow"] for one in rounds])
    postgresql: dict[str, Any] = {"skipped": skipped}
    if skipped is None:
        pg_ours, pg_ours_min = aggregate([one["prodml_pg"] for one in rounds])
        pg_theirs, pg_theirs_min = aggregate([one["mlflow_pg"] for one in rounds])
        postgresql = {
            "server": {"url": server.url.render_as_string(), **pg_settings},
            "prodml": pg_ours,
            "mlflow": pg_theirs,
            "prodml_min": pg_ours_min,
            "mlflow_min": pg_theirs_min,
            "ratio_logging_batch": round(
                pg_theirs["logging_batch"]["mean_ms"] / pg_ours["logging"]["mean_ms"], 1
            ),
            "ratio_logging_single": round(
                pg_theirs["logging_single"]["mean_ms"] / pg_ours["logging"]["mean_ms"], 1
            ),
            "ratio_search": round(
                pg_theirs["search"]["median_ms"] / pg_ours["search"]["median_ms"], 1
            ),
            "ratio_register": round(
                pg_theirs["register"]["mean_ms"] / pg_ours["register"]["mean_ms"], 2
            ),
        }
    ratio_logging = round(theirs["logging_batch"]["mean_ms"] / ours["logging"]["mean_ms"], 1)
    report: dict[str, Any] = {
        "benchmark": "registry",
        "runs": n_runs,
        "single_call_runs": n_single,
        "versions": n_versions,
        "params": N_PARAMS,
        "metrics": N_METRICS,
        "search_repeat": SEARCH_REPEAT,
        "targets": TARGETS,
        "rounds": args.rounds,
        "statistic": "median over the rounds of each figure (min beside it)",
        "prodml": ours,
        "mlflow": theirs,
        "prodml_min": ours_min,
        "mlflow_min": theirs_min,
        "load_average": load_average(),
        "ratio_logging_batch": ratio_logging,
        "ratio_logging_single": round(
            theirs["logging_single"]["mean_ms"] / ours["logging"]["mean_ms"], 1
        ),
        "ratio_search": round(theirs["search"]["median_ms"] / ours["search"]["median_ms"], 1),
        "ratio_register": round(theirs["register"]["mean_ms"] / ours["register"]["mean_ms"], 2),
        "pass": {
            "logging": ratio_logging >= TARGETS["logging_ratio_min"],
            "register": ours["register"]["mean_ms"] <= TARGETS["register_ms_max"],
        },
        "postgresql": postgresql,
    }
    report["wall_s"] = round(time.perf_counter() - began, 2)
    print_table(report)
    print(f"{args.rounds} interleaved rounds, medians (min in the JSON); load "
          f"{report['load_average']}; wall time {report['wall_s']} s (after imports and model fit)")  # fmt: skip
    emit(report, table_rows(report))


if __name__ == "__main__":
    main()
