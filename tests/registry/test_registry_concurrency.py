"""Eight OS processes, each with its own MetadataDB on one SQLite file or PostgreSQL
schema, released together: one approval wins a race, and alias moves, registrations,
approvals and rejections lose nothing — dense version numbers, unbroken alias history
chains, and exactly one audit entry per change the workers saw succeed."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

import prodml.registry._registry as registry_module
from prodml.core import SimulatedClock
from prodml.registry import ModelRegistry, infer_signature
from prodml.storage import ArtifactStore, LocalBlobStore, MetadataDB
from servicekit import libpq, pg_url_or_skip

WORKERS = 8
MOVES = 20
TIMEOUT_S = 60.0
BLESSED = {"status": "BLESSED", "checks": []}

# One worker: opens its own registry, then runs each JSON command it is sent once it
# reads "go" (so all workers start together), printing one JSON line of what succeeded.
_WORKER = r"""
import json, random, sys, uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from prodml.core import ModelNotFoundError, SimulatedClock, StateError
from prodml.registry import ModelRegistry, infer_signature
from prodml.storage import ArtifactStore, LocalBlobStore, MetadataDB

targets, artifacts, worker = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
clock = SimulatedClock(datetime(2024, 3, 1, tzinfo=UTC))
dbs = [MetadataDB.open(url, schema_name=schema) for url, schema in targets]
registries = [ModelRegistry(db, ArtifactStore(LocalBlobStore(artifacts)), clock) for db in dbs]
signature = infer_signature(pd.DataFrame({"x": [0.0, 1.0]}), np.array([0.0, 1.0]))
blessed = {"status": "BLESSED", "checks": []}


class Heard:
    def __init__(self):
        self.events = []

    def run_ended(self, run): pass
    def version_registered(self, version): pass
    def status_changed(self, version): pass

    def alias_changed(self, e):
        self.events.append([e.alias, e.previous_version, e.version, e.actor, e.reason])


def race(registry, cmd):
    action = registry.approve if int(worker[1:]) % 2 == 0 else registry.reject
    try:
        version = action(cmd["ref"], actor=worker)
    except StateError as exc:
        return {"won": False, "error": "StateError", "message": str(exc)}
    return {"won": True, "status": version.status}


def churn(registry, cmd):
    name, rng, known = cmd["name"], random.Random(cmd["seed"]), list(cmd["known"])
    heard = Heard()
    registry.listeners.append(heard)
    done, refused = [], 0
    for i in range(cmd["moves"]):
        if i % 5 == 4:
            version = registry.register(
                name, {"w": worker, "i": i, "r": uuid.uuid4().hex}, signature=signature,
                format="cloudpickle", gate=blessed, actor=worker,
            )
            done.append(["register", version.ref, version.artifact_digest])
            if rng.random() < 0.3:  # alias it, then reject it: the alias must go
                registry.set_alias(name, "challenger", version.version, actor=worker)
                registry.reject(version.ref, actor=worker, reason="worse")
                done.append(["reject", version.ref])
            else:
                registry.approve(version.ref, actor=worker)
                done.append(["approve", version.ref])
                known.append(version.version)
        alias = rng.choice(["champion", "challenger"])
        if rng.random() < 0.1:
            try:
                registry.delete_alias(name, alias, actor=worker)
            except ModelNotFoundError:
                refused += 1
        else:
            registry.set_alias(name, alias, rng.choice(known), actor=worker, reason=f"{worker}/{i}")
    registry.listeners.remove(heard)
    return {"done": done, "alias_events": heard.events, "refused": refused}


print("ready", flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "exit":
        break
    print("armed", flush=True)
    sys.stdin.readline()  # "go"
    registry = registries[cmd["target"]]
    result = race(registry, cmd) if cmd["op"] == "race" else churn(registry, cmd)
    print(json.dumps(result), flush=True)
for db in dbs:
    db.close()
"""


class Pool:
    """The worker processes, with one reader thread each so reads can time out."""

    def __init__(self, targets: list[tuple[str, str | None]], artifacts: Path) -> None:
        self.targets = targets
        self.artifacts = artifacts
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", _WORKER, json.dumps(targets), str(artifacts), f"w{i}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(WORKERS)
        ]
        self.lines: list[queue.Queue[str]] = [queue.Queue() for _ in self.procs]
        self.pumps = [
            threading.Thread(target=self._pump, args=(proc, lines), daemon=True)
            for proc, lines in zip(self.procs, self.lines, strict=True)
        ]
        for pump in self.pumps:
            pump.start()
        self.expect("ready")

    @staticmethod
    def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put("<exited>")  # so a crashed worker fails the test at once

    def _fail(self, i: int, what: str) -> NoReturn:
        """Stop every worker and fail the test with worker ``i``'s stderr."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()
        stderr = self.procs[i].stderr
        text = stderr.read() if stderr is not None else ""
        self.close()
        pytest.fail(f"worker w{i} {what}; stderr:\n{text}")

    def _read(self, i: int, deadline: float) -> str:
        try:
            return self.lines[i].get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self._fail(i, f"said nothing for {TIMEOUT_S} s")

    def expect(self, word: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        for i in range(len(self.procs)):
            line = self._read(i, deadline)
            if line != word:
                self._fail(i, f"said {line!r}, expected {word!r}")

    def _send(self, line: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(line + "\n")
            proc.stdin.flush()

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send each worker its command, release them together, collect the results."""
        for proc, command in zip(self.procs, commands, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        self.expect("armed")
        self._send("go")
        deadline = time.monotonic() + TIMEOUT_S
        results = []
        for i in range(len(self.procs)):
            line = self._read(i, deadline)
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                self._fail(i, f"failed ({line!r})")
        return results

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None and proc.stdin is not None and not proc.stdin.closed:
                with contextlib.suppress(OSError):
                    proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                    proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pump in self.pumps:
            pump.join(timeout=10)
        for proc in self.procs:
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()


class Setup:
    """One target database: a registry on it in this process, and the worker pool."""

    def __init__(self, registry: ModelRegistry, pool: Pool, target: int) -> None:
        self.registry = registry
        self.pool = pool
        self.target = target
        self.signature = infer_signature(pd.DataFrame({"x": [0.0, 1.0]}), np.array([0.0, 1.0]))

    def register(self, name: str, **kwargs: Any) -> Any:
        model = {"payload": uuid.uuid4().hex}
        return self.registry.register(
            name, model, signature=self.signature, format="cloudpickle", actor="setup", **kwargs
        )

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.pool.run([{**command, "target": self.target} for command in commands])


@pytest.fixture(scope="module")
def pool(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pool]:
    """One pool of workers for the whole module (starting eight Python processes is the
    slow part), each holding a registry on SQLite and, when wanted and reachable, on a
    PostgreSQL schema of its own."""
    tmp = tmp_path_factory.mktemp("concurrency")
    targets: list[tuple[str, str | None]] = [(f"sqlite:///{tmp}/meta.db", None)]
    selected = {
        item.callspec.params.get("setup")
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.path == request.path
        and hasattr(item, "callspec")
    }
    if "postgresql" in selected:
        try:
            url = pg_url_or_skip()
        except pytest.skip.Exception:
            pass  # the PostgreSQL tests skip themselves
        else:
            targets.append((url, f"prodml_test_{uuid.uuid4().hex[:12]}"))
    for url, schema in targets:  # migrate before the workers start
        MetadataDB.open(url, schema_name=schema).close()
    made = Pool(targets, tmp / "artifacts")
    try:
        yield made
    finally:
        made.close()
        for url, schema in targets[1:]:
            import psycopg

            with psycopg.connect(libpq(url), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def setup(request: pytest.FixtureRequest, pool: Pool) -> Iterator[Setup]:
    """The pool's SQLite database, or its PostgreSQL schema."""
    if request.param == "sqlite":
        target = 0
    else:
        pg_url_or_skip()
        if len(pool.targets) < 2:
            pytest.skip("PostgreSQL was not reachable when the worker pool started")
        target = 1
    url, schema = pool.targets[target]
    db = MetadataDB.open(url, schema_name=schema)
    clock = SimulatedClock(datetime(2024, 3, 1, tzinfo=UTC))
    artifacts = ArtifactStore(LocalBlobStore(pool.artifacts))
    try:
        yield Setup(ModelRegistry(db, artifacts, clock), pool, target)
    finally:
        db.close()


def test_one_of_many_simultaneous_approvals_wins(setup: Setup) -> None:
    reg = setup.registry
    for round_ in range(3):
        ref = setup.register("race").ref
        results = setup.run([{"op": "race", "ref": ref}] * WORKERS)
        winners = [i for i, r in enumerate(results) if r["won"]]
        assert len(winners) == 1, results
        winner = f"w{winners[0]}"
        status = "approved" if winners[0] % 2 == 0 else "rejected"
        assert results[winners[0]]["status"] == status
        for i, result in enumerate(results):
            if i != winners[0]:
                assert result["error"] == "StateError"
                assert f"{ref} is already {status} (by {winner} at" in result["message"]
        version = reg.get(ref)
        assert (version.status, version.status_actor) == (status, winner)
        entries = [e for e in reg.audit_log(ref) if e.action != "register"]
        action = {"approved": "approve", "rejected": "reject"}[status]
        assert [(e.action, e.actor) for e in entries] == [(action, winner)]
        assert round_ + 1 == version.version


def _check_chain(reg: ModelRegistry, name: str, alias: str) -> list[Any]:
    history = reg.alias_history(name, alias)
    previous = None
    for event in history:
        assert event.previous_version == previous, (alias, event, history)
        previous = event.version
    assert reg.aliases(name).get(alias) == previous
    return history


def test_concurrent_alias_moves_and_registrations_lose_nothing(setup: Setup) -> None:
    reg = setup.registry
    name = "m"
    initial = [setup.register(name, gate=BLESSED) for _ in range(4)]
    for version in initial:
        reg.approve(version.ref, actor="setup")
    reg.set_alias(name, "champion", 1, actor="setup", reason="start")
    known = [v.version for v in initial]
    commands = [
        {"op": "churn", "name": name, "seed": 1000 + i, "known": known, "moves": MOVES}
        for i in range(WORKERS)
    ]
    results = setup.run(commands)

    # Versions: dense 1..K, each one a worker reported, with its artifact intact.
    registered = [(d[1], d[2]) for r in results for d in r["done"] if d[0] == "register"]
    assert len(registered) == WORKERS * (MOVES // 5)
    versions = reg.versions(name)
    assert [v.version for v in versions] == list(range(1, len(initial) + len(registered) + 1))
    by_ref = {v.ref: v for v in versions}
    assert sorted(ref for ref, _ in registered) == sorted(set(by_ref) - {v.ref for v in initial})
    for ref, digest in registered:
        assert by_ref[ref].artifact_digest == digest
        assert reg.artifact_bytes(ref)  # verified
    decided = {d[1]: d[0] for r in results for d in r["done"] if d[0] in {"approve", "reject"}}
    for ref, _ in registered:
        assert by_ref[ref].status == {"approve": "approved", "reject": "rejected"}[decided[ref]]
        if decided[ref] == "reject":
            assert by_ref[ref].aliases == ()

    # Alias history: one unbroken chain per alias, ending where the alias points now.
    events = [tuple(e) for r in results for e in r["alias_events"]]
    setup_event = ("champion", None, 1, "setup", "start")
    history = {alias: _check_chain(reg, name, alias) for alias in ("champion", "challenger")}
    recorded = [
        (e.alias, e.previous_version, e.version, e.actor, e.reason)
        for alias in history
        for e in history[alias]
    ]
    assert Counter(recorded) == Counter([setup_event, *events])

    # Audit log: exactly one entry per change, matching the alias history one to one.
    audit = [e for e in reg.audit_log() if e.object_id.startswith((f"{name}:", f"{name}@"))]
    expected = Counter(
        [("register", v.ref, "setup") for v in initial]
        + [("approve", v.ref, "setup") for v in initial]
        + [("set_alias", f"{name}@champion", "setup")]
        + [(d[0], d[1], f"w{i}") for i, r in enumerate(results) for d in r["done"]]
        + [
            ("set_alias" if e[2] is not None else "delete_alias", f"{name}@{e[0]}", e[3])
            for e in events
        ]
    )
    assert Counter((e.action, e.object_id, e.actor) for e in audit) == expected
    alias_audit = [
        (e.object_id, (e.before or {}).get("version"), (e.after or {}).get("version"), e.actor)
        for e in audit
        if e.object_type == "alias"
    ]  # in commit order, as is the history: the same transactions wrote both
    assert alias_audit == [
        (f"{name}@{e.alias}", e.previous_version, e.version, e.actor)
        for e in reg.alias_history(name)
    ]


def _wait_until_blocked(db: MetadataDB) -> None:
    """Until some session waits for the model row lock (PostgreSQL), or a moment (SQLite,
    where the waiting writer is stuck in BEGIN IMMEDIATE and cannot be seen)."""
    if db.dialect == "sqlite":
        time.sleep(0.3)
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with db.session() as session:
            waiting = session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%registered_models%FOR UPDATE%'"
                )
            ).scalar()
        if waiting:
            return
        time.sleep(0.02)
    pytest.fail("the second writer never waited for the model lock")


def test_delete_alias_reads_the_alias_under_the_lock(
    env_any: Any, registrar: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete that starts while another transaction moves the alias must record the
    version it actually removed, or the history chain breaks."""
    reg: ModelRegistry = env_any.registry
    register = registrar(reg)
    register("m")
    register("m")
    reg.set_alias("m", "staging", 1)
    url, schema = env_any.target
    other_db = MetadataDB.open(url, schema_name=schema)
    other = ModelRegistry(other_db, env_any.store, env_any.clock)
    moved, release = threading.Event(), threading.Event()
    original = registry_module.move_alias

    def paused_move(*args: Any, **kwargs: Any) -> Any:
        event = original(*args, **kwargs)
        if threading.current_thread().name == "mover":
            moved.set()
            release.wait(60)  # hold the lock, the move not yet committed
        return event

    monkeypatch.setattr(registry_module, "move_alias", paused_move)
    errors: list[BaseException] = []

    def call(fn: Any) -> None:
        try:
            fn()
        except BaseException as exc:  # reported below
            errors.append(exc)

    mover = threading.Thread(
        name="mover", target=call, args=(lambda: other.set_alias("m", "staging", 2, actor="mover"),)
    )
    deleter = threading.Thread(
        target=call, args=(lambda: reg.delete_alias("m", "staging", actor="deleter"),)
    )
    try:
        mover.start()
        assert moved.wait(60)
        deleter.start()
        _wait_until_blocked(env_any.db)
    finally:
        release.set()
        mover.join(60)
        deleter.join(60)
        other_db.close()
    assert errors == []
    assert [(e.previous_version, e.version, e.actor) for e in reg.alias_history("m")] == [
        (None, 1, "tester"),
        (1, 2, "mover"),
        (2, None, "deleter"),
    ]
    assert [(e.action, e.before, e.after) for e in reg.audit_log("m@staging")][1:] == [
        ("set_alias", {"version": 1}, {"version": 2, "reason": None}),
        ("delete_alias", {"version": 2}, None),
    ]
    assert reg.aliases("m") == {}
