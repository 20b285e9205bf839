"""The deployment store: create/replace with dense revisions, refs resolved and checked
at deploy time, optimistic concurrency, weight/pause/promote/rollback/delete changes
each with one history row and one audit entry, an append-only history the database
enforces, shared bandit state and decisions — on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from prodml.core import (
    ConflictError,
    DefinitionError,
    DeploymentNotFoundError,
    ModelNotFoundError,
    SchemaError,
    StateError,
    StorageError,
)
from prodml.registry import (
    Arm,
    BanditSpec,
    DeploymentSpec,
    DeploymentStore,
    Guardrails,
    ModelRegistry,
    ModelVersion,
)
from prodml.stats import BanditState

RegisterFn = Callable[..., ModelVersion]
REFUSED = r"deployment history is append-only"


@dataclass
class Deps:
    env: Any  # the registry tests' Env (conftest.py)
    store: DeploymentStore
    registry: ModelRegistry


@pytest.fixture
def deps(env_any: Any, registrar: Callable[[ModelRegistry], RegisterFn]) -> Deps:
    """A store on a fresh database of each dialect, with models m:1, m:2 and other:1."""
    register = registrar(env_any.registry)
    register("m")
    register("m")
    register("other")
    return Deps(env_any, DeploymentStore(env_any.db, env_any.clock), env_any.registry)


def _raw(deps: Deps, sql: str) -> None:
    with deps.env.db.session() as session:
        session.execute(text(sql))


def _history(deps: Deps, endpoint: str = "ep") -> list[tuple[Any, ...]]:
    return [(h["revision"], h["action"], h["actor"]) for h in deps.store.history(endpoint)]


# --- create, replace, read ------------------------------------------------------------
def test_deploy_creates_then_replaces_with_dense_revisions(deps: Deps) -> None:
    store, clock = deps.store, deps.env.clock
    first = store.deploy("ep", DeploymentSpec.single("m:1"), actor="ann", reason="launch")
    assert (first.endpoint, first.revision, first.updated_by, first.reason) == (
        "ep",
        1,
        "ann",
        "launch",
    )
    assert first.updated_at == clock.now()
    clock.advance(timedelta(minutes=5))
    canary = DeploymentSpec.canary("m:1", "m:2", weight=0.1)
    second = store.deploy("ep", canary, actor="bob")
    assert (second.revision, second.spec, second.updated_by, second.reason) == (
        2,
        canary,
        "bob",
        None,
    )
    assert store.get("ep") == second
    store.deploy("another", DeploymentSpec.single("other:1"), actor="ann")
    assert [d.endpoint for d in store.list()] == ["another", "ep"]
    assert store.revisions() == {"another": 1, "ep": 2}
    history = store.history("ep")
    assert [(h["revision"], h["action"], h["actor"], h["reason"]) for h in history] == [
        (1, "deploy", "ann", "launch"),
        (2, "deploy", "bob", None),
    ]
    assert DeploymentSpec.from_dict(history[1]["spec"]) == canary
    assert history[1]["time"] == clock.now()


@pytest.mark.parametrize("stored", ["'[]'", """'{"policy": "single", "arms": "m:1"}'"""])
def test_a_stored_spec_that_is_no_spec_is_a_storage_error_and_a_deploy_replaces_it(
    deps: Deps, stored: str
) -> None:
    """A damaged record is the store's fault, not the reader's request (it was a
    DefinitionError, which the admin API answered as the client's 422)."""
    deps.store.deploy("ep", DeploymentSpec.single("m:1"), actor="ann")
    _raw(deps, f"UPDATE deployments SET spec = {stored} WHERE endpoint = 'ep'")
    with pytest.raises(StorageError, match=r"endpoint 'ep' \(revision 1\): its stored spec"):
        deps.store.get("ep")
    again = deps.store.deploy("ep", DeploymentSpec.single("m:2"), actor="ann")
    assert deps.store.get("ep") == again


def test_an_endpoint_name_is_checked(deps: Deps) -> None:
    with pytest.raises(DefinitionError, match=r"endpoint name is invalid"):
        deps.store.deploy("bad name", DeploymentSpec.single("m:1"), actor="ann")
    assert deps.store.revisions() == {}


def test_get_of_an_unknown_endpoint_lists_the_known_ones(deps: Deps) -> None:
    deps.store.deploy("ep", DeploymentSpec.single("m:1"), actor="ann")
    with pytest.raises(DeploymentNotFoundError, match=r"endpoint 'nope' .*\['ep'\]"):
        deps.store.get("nope")
    with pytest.raises(DeploymentNotFoundError, match=r"'nope'"):
        deps.store.history("nope")
    with pytest.raises(DeploymentNotFoundError, match=r"'nope'"):
        deps.store.set_weights("nope", {"champion": 1.0}, actor="ann")


def test_aliases_are_resolved_at_deploy_time_and_stored_as_versions(deps: Deps) -> None:
    reg = deps.registry
    reg.approve("m:1")
    reg.approve("m:2")
    reg.set_alias("m", "champion", 1)
    spec = {
        "policy": "canary",
        "arms": [
            {"name": "champion", "model": "m@champion", "role": "champion", "weight": 0.8},
            {"name": "challenger", "model": "m:latest", "role": "challenger", "weight": 0.2},
        ],
    }
    deployed = deps.store.deploy("ep", spec, actor="ann")
    assert [arm.model for arm in deployed.spec.arms] == ["m:1", "m:2"]
    reg.set_alias("m", "champion", 2)  # moving the alias later changes nothing deployed
    assert [arm.model for arm in deps.store.get("ep").spec.arms] == ["m:1", "m:2"]
    stored = deps.store.history("ep")[0]["spec"]
    assert [arm["model"] for arm in stored["arms"]] == ["m:1", "m:2"]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("ghost:1", r"model 'ghost' is not registered"),
        ("m:9", r"model 'm' has no version 9"),
        ("m@nowhere", r"model 'm' has no alias 'nowhere'"),
    ],
)
def test_an_unknown_model_is_refused(deps: Deps, ref: str, message: str) -> None:
    spec = {"policy": "single", "arms": [{"name": "champion", "model": ref, "role": "champion"}]}
    with pytest.raises(ModelNotFoundError, match=message):
        deps.store.deploy("ep", spec, actor="ann")
    assert deps.store.revisions() == {}
    assert deps.registry.audit_log("ep") == []


def test_a_rejected_version_cannot_be_deployed(deps: Deps) -> None:
    deps.registry.reject("m:2", reason="worse on holdout")
    with pytest.raises(StateError, match=r"arm 'challenger': model version m:2 was rejected"):
        deps.store.deploy("ep", DeploymentSpec.canary("m:1", "m:2", weight=0.1), actor="ann")
    assert deps.store.revisions() == {}


def test_expected_revision_guards_against_lost_updates(deps: Deps) -> None:
    store = deps.store
    store.deploy("ep", DeploymentSpec.canary("m:1", "m:2", weight=0.1), actor="ann")
    with pytest.raises(ConflictError, match=r"at revision 1 .*expected revision 0"):
        store.deploy("ep", DeploymentSpec.single("m:2"), actor="bob", expected_revision=0)
    assert store.set_weights("ep", {"challenger": 0.2}, actor="bob", expected_revision=1).revision
    with pytest.raises(ConflictError, match=r"at revision 2 \(last changed by bob\).*revision 1"):
        store.set_weights("ep", {"challenger": 0.3}, actor="cy", expected_revision=1)
    assert store.get("ep").spec.arm("challenger").weight == 0.2
    created = store.deploy("new", DeploymentSpec.single("m:1"), actor="ann", expected_revision=0)
    assert created.revision == 1
    assert _history(deps) == [(1, "deploy", "ann"), (2, "set_weights", "bob")]


# --- changes --------------------------------------------------------------------------
def test_set_weights_changes_the_weights_and_records_guardrail_trips(deps: Deps) -> None:
    store = deps.store
    store.deploy("ep", DeploymentSpec.canary("m:1", "m:2", weight=0.1), actor="ann")
    changed = store.set_weights("ep", {"challenger": 0.5}, actor="bob", reason="ramp")
    assert changed.spec.serving_weights() == {"champion": 0.5, "challenger": 0.5}
    tripped = store.set_weights(
        "ep", {"challenger": 0.0}, actor="server-1", reason="p99 > 50 ms", action="guardrail"
    )
    assert tripped.spec.serving_weights() == {"champion": 1.0, "challenger": 0.0}
    with pytest.raises(DefinitionError, match=r"no arm 'ghost'"):
        store.set_weights("ep", {"ghost": 0.5}, actor="bob")
    with pytest.raises(DefinitionError, match=r"action must be .* got 'deploy'"):
        store.set_weights("ep", {"challenger": 0.5}, actor="bob", action="deploy")
    assert store.get("ep") == tripped
    assert _history(deps) == [
        (1, "deploy", "ann"),
        (2, "set_weights", "bob"),
        (3, "guardrail", "server-1"),
    ]


def test_pause_and_resume(deps: Deps) -> None:
    store = deps.store
    store.deploy("ep", DeploymentSpec.canary("m:1", "m:2", weight=0.3), actor="ann")
    paused = store.pause("ep", actor="ops", reason="incident")
    assert paused.spec.paused
    assert paused.spec.serving_weights() == {"champion": 1.0}
    with pytest.raises(StateError, match=r"'ep' is already paused"):
        store.pause("ep", actor="ops")
    resumed = store.resume("ep", actor="ops")
    assert not resumed.spec.paused
    assert resumed.spec.serving_weights() == {"champion": 0.7, "challenger": 0.3}
    with pytest.raises(StateError, match=r"'ep' is already not paused"):
        store.resume("ep", actor="ops")
    assert _history(deps) == [(1, "deploy", "ann"), (2, "pause", "ops"), (3, "resume", "ops")]


def test_promote_makes_an_arm_the_single_champion_keeping_the_options(deps: Deps) -> None:
    store = deps.store
    options: dict[str, Any] = {
        "unit": "user_id",
        "stratify_by": "origin",
        "timeout_ms": 250.0,
        "default_response": 0.0,
        "guardrails": Guardrails(max_error_rate=0.1, max_p99_ms=50.0),
    }
    store.deploy("ep", DeploymentSpec.canary("m:1", "m:2", weight=0.1, **options), actor="ann")
    deps.registry.approve("m:2")  # a champion needs an approved version
    with pytest.raises(DefinitionError, match=r"no arm 'ghost'"):
        store.promote("ep", "ghost", actor="ann")
    promoted = store.promote("ep", "challenger", actor="bob", reason="won the canary")
    assert promoted.spec == DeploymentSpec.single("m:2", **options)
    assert promoted.revision == 2
    with pytest.raises(StateError, match=r"already serves only m:2"):
        store.promote("ep", "champion", actor="bob")


def test_promote_refuses_a_version_rejected_since_deployment(deps: Deps) -> None:
    deps.store.deploy("ep", DeploymentSpec.canary("m:1", "m:2", weight=0.1), actor="ann")
    deps.registry.reject("m:2")
    with pytest.raises(StateError, match=r"m:2 was rejected"):
        deps.store.promote("ep", "challenger", actor="bob")
    assert deps.store.get("ep").revision == 1


def test_rollback_serves_only_the_champion(deps: Deps) -> None:
    store = deps.store
    store.deploy(
        "ep", DeploymentSpec.canary("m:1", "m:2", weight=0.4, timeout_ms=300.0), actor="ann"
    )
    store.pause("ep", actor="ann")
    rolled = store.rollback("ep", actor="ops", reason="errors")
    assert rolled.spec == DeploymentSpec.single("m:1", timeout_ms=300.0)
    with pytest.raises(StateError, match=r"policy 'single'.*latest change.*not a promote"):
        store.rollback("ep", actor="ops")
    ab = DeploymentSpec("ab", (Arm("a", "m:1"), Arm("b", "m:2")))
    store.deploy("ab", ab, actor="ann")
    with pytest.raises(StateError, match=r"policy 'ab' and no champion arm"):
        store.rollback("ab", actor="ops")
    assert _history(deps) == [(1, "deploy", "ann"), (2, "pause", "ann"), (3, "rollback", "ops")]


def test_delete_keeps_the_history_and_a_redeploy_continues_the_revisions(deps: Deps) -> None:
    store = deps.store
    store.deploy("ep", DeploymentSpec.single("m:1"), actor="ann")
    store.deploy("keep", DeploymentSpec.single("m:1"), actor="ann")
    store.delete("ep", actor="bob", reason="retired")
    with pytest.raises(DeploymentNotFoundError, match=r"'ep' has no deployment.*\['keep'\]"):
        store.get("ep")
    assert store.revisions() == {"keep": 1}
    last = store.history("ep")[-1]
    assert (last["revision"], last["action"], last["spec"], last["reason"]) == (
        2,
        "delete",
        None,
        "retired",
    )
    with pytest.raises(DeploymentNotFoundError):
        store.delete("ep", actor="bob")
    assert store.deploy("ep", DeploymentSpec.single("m:2"), actor="ann").revision == 3
    assert _history(deps) == [(1, "deploy", "ann"), (2, "delete", "bob"), (3, "deploy", "ann")]


def test_every_change_writes_one_audit_entry(deps: Deps) -> None:
    store = deps.store
    deps.registry.approve("m:2")
    store.deploy("ep", DeploymentSpec.canary("m:1", "m:2", weight=0.1), actor="ann")
    store.set_weights("ep", {"challenger": 0.2}, actor="bob")
    store.pause("ep", actor="cy")
    store.resume("ep", actor="cy")
    store.promote("ep", "challenger", actor="dee")
    store.deploy("ep", DeploymentSpec.canary("m:2", "m:1", weight=0.1), actor="ann")
    store.rollback("ep", actor="ed")
    store.delete("ep", actor="fay")
    with pytest.raises(DeploymentNotFoundError):  # refused: nothing audited
        store.pause("ep", actor="x")
    entries = deps.registry.audit_log("ep")
    assert [(e.action, e.actor, e.object_type) for e in entries] == [
        ("deploy", "ann", "deployment"),
        ("set_weights", "bob", "deployment"),
        ("pause", "cy", "deployment"),
        ("resume", "cy", "deployment"),
        ("promote", "dee", "deployment"),
        ("deploy", "ann", "deployment"),
        ("rollback", "ed", "deployment"),
        ("delete", "fay", "deployment"),
    ]
    revisions = [
        (None if e.before is None else e.before["revision"], e.after and e.after["revision"])
        for e in entries
    ]
    assert revisions == [(None, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, None)]
    assert entries[1].before is not None
    assert entries[1].after is not None
    assert entries[1].before["spec"]["arms"][1]["weight"] == 0.1
    assert entries[1].after["spec"]["arms"][1]["weight"] == 0.2
    assert [h["revision"] for h in store.history("ep")] == list(range(1, 9))


def test_revisions_is_one_select_of_two_columns(deps: Deps) -> None:
    store = deps.store
    store.deploy("a", DeploymentSpec.single("m:1"), actor="ann")
    store.deploy("b", DeploymentSpec.canary("m:1", "m:2", weight=0.1), actor="ann")
    store.set_weights("b", {"challenger": 0.2}, actor="ann")
    statements: list[str] = []

    def capture(*args: Any) -> None:
        statements.append(args[2])

    engine = deps.env.db.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert store.revisions() == {"a": 1, "b": 2}
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 1, statements
    assert "deployments.endpoint, deployments.revision \nFROM deployments" in queries[0]


# --- the history is append-only -------------------------------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE deployment_history SET actor = 'mallory'",
        "UPDATE deployment_history SET spec = NULL WHERE revision = 1",
        "DELETE FROM deployment_history",
        "DELETE FROM deployment_history WHERE revision = 2",
    ],
)
def test_raw_sql_cannot_change_or_delete_history(deps: Deps, sql: str) -> None:
    deps.store.deploy("ep", DeploymentSpec.single("m:1"), actor="ann")
    deps.store.deploy("ep", DeploymentSpec.single("m:2"), actor="bob")
    before = deps.store.history("ep")
    with pytest.raises((StorageError, ConflictError), match=REFUSED):
        _raw(deps, sql)
    assert deps.store.history("ep") == before


def test_raw_sql_cannot_replace_or_truncate_history(deps: Deps) -> None:
    deps.store.deploy("ep", DeploymentSpec.single("m:1"), actor="ann")
    before = deps.store.history("ep")
    columns = "id, endpoint, revision, action, spec, actor, reason, time"
    copy = columns.replace("actor", "'mallory'")
    if deps.env.db.dialect == "sqlite":
        sql = f"INSERT OR REPLACE INTO deployment_history ({columns}) SELECT {copy} FROM deployment_history"
        with pytest.raises((StorageError, ConflictError), match=REFUSED):
            _raw(deps, sql)
    else:
        with pytest.raises((StorageError, ConflictError), match=REFUSED):
            _raw(deps, "TRUNCATE deployment_history")
        sql = (
            f"INSERT INTO deployment_history ({columns}) SELECT {copy} FROM deployment_history "
            "ON CONFLICT (id) DO UPDATE SET actor = EXCLUDED.actor"
        )
        with pytest.raises((StorageError, ConflictError), match=REFUSED):
            _raw(deps, sql)
    assert deps.store.history("ep") == before


# --- bandits --------------------------------------------------------------------------
def test_bandit_deltas_from_two_replicas_add_up(deps: Deps) -> None:
    store, arms = deps.store, ["a", "b"]
    assert store.bandit_state("ep") is None
    zero = BanditState.new("bernoulli", arms).empty()
    replica_a = zero.update("a", 1).update("a", 1).update("a", 1)
    replica_b = zero.update("b", 0).update("b", 0)
    store.merge_bandit("ep", replica_a.to_dict(), kind="bernoulli", arms=arms)
    merged = store.merge_bandit("ep", replica_b.to_dict(), kind="bernoulli", arms=arms)
    expected = {
        "kind": "bernoulli",
        "arms": {
            "a": {"alpha": 4.0, "beta": 1.0, "pulls": 3},
            "b": {"alpha": 1.0, "beta": 3.0, "pulls": 2},
        },
    }
    assert merged == expected
    assert store.bandit_state("ep") == expected
    # Another arm set (the deployment changed): the old evidence is dropped.
    other = BanditState.new("bernoulli", ["a", "c"]).empty().update("c", 1)
    fresh = store.merge_bandit("ep", other.to_dict(), kind="bernoulli", arms=["c", "a"])
    assert fresh == {
        "kind": "bernoulli",
        "arms": {
            "a": {"alpha": 1.0, "beta": 1.0, "pulls": 0},
            "c": {"alpha": 2.0, "beta": 1.0, "pulls": 1},
        },
    }
    gaussian = BanditState.new("gaussian", ["a", "c"]).empty().update("a", 2.5)
    with pytest.raises(SchemaError, match=r"cannot merge a gaussian bandit state"):
        store.merge_bandit("ep", gaussian.to_dict(), kind="bernoulli", arms=["a", "c"])
    with pytest.raises(SchemaError, match=r"exactly the keys"):
        store.merge_bandit("ep", {"arms": {}}, kind="bernoulli", arms=["a", "c"])
    assert store.bandit_state("ep") == fresh


def test_gaussian_bandit_state_round_trips(deps: Deps) -> None:
    arms = ["x", "y"]
    zero = BanditState.new("gaussian", arms).empty()
    deps.store.merge_bandit("ep", zero.update("x", 2.0).to_dict(), kind="gaussian", arms=arms)
    merged = deps.store.merge_bandit(
        "ep", zero.update("x", 4.0).to_dict(), kind="gaussian", arms=arms
    )
    assert merged["arms"]["x"] == {"n": 2, "mean": 3.0, "m2": 2.0}
    assert BanditState.from_dict(merged) == BanditState.new("gaussian", arms).update(
        "x", 2.0
    ).update("x", 4.0)


def test_deleting_a_deployment_drops_its_bandit_state(deps: Deps) -> None:
    spec = DeploymentSpec("bandit", (Arm("a", "m:1"), Arm("b", "m:2")), bandit=BanditSpec())
    deps.store.deploy("ep", spec, actor="ann")
    delta = BanditState.new("bernoulli", ["a", "b"]).empty().update("a", 1)
    deps.store.merge_bandit("ep", delta.to_dict(), kind="bernoulli", arms=["a", "b"])
    deps.store.delete("ep", actor="ann")
    assert deps.store.bandit_state("ep") is None


def test_decisions_round_trip_and_prune(deps: Deps) -> None:
    store, t0 = deps.store, deps.env.clock.now()
    rows = [(f"r{i}", "ep", "a" if i % 2 else "b", t0 + timedelta(seconds=i)) for i in range(1200)]
    store.record_decisions(rows[:700])
    store.record_decisions([("r1", "ep", "b", t0), *rows[700:]])  # r1 keeps its first arm
    store.record_decisions([])
    found = store.find_decisions(["r0", "r1", "r1199", "unknown"])
    assert found == {"r0": ("ep", "b"), "r1": ("ep", "a"), "r1199": ("ep", "a")}
    assert len(store.find_decisions(f"r{i}" for i in range(1200))) == 1200
    assert store.find_decisions([]) == {}
    assert store.prune_decisions(t0 + timedelta(seconds=1000)) == 1000
    assert store.prune_decisions(t0 + timedelta(seconds=1000)) == 0
    assert sorted(store.find_decisions(["r999", "r1000", "r1199"])) == ["r1000", "r1199"]
    with pytest.raises(DefinitionError, match=r"request_id must be a string of 1 to 128"):
        store.record_decisions([("x" * 129, "ep", "a", t0)])


# --- concurrency ----------------------------------------------------------------------
WORKERS, CHANGES = 4, 10

# One worker: its own MetadataDB and store; on "go", CHANGES weight changes without an
# expected revision and as many one-success bandit merges, then "done".
_WORKER = r"""
import sys
from datetime import UTC, datetime

from prodml.core import SimulatedClock
from prodml.registry import DeploymentStore
from prodml.stats import BanditState
from prodml.storage import MetadataDB

url, schema, worker, changes = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4])
db = MetadataDB.open(url, schema_name=schema)
store = DeploymentStore(db, SimulatedClock(datetime(2024, 3, 1, tzinfo=UTC)))
delta = BanditState.new("bernoulli", ["a", "b"]).empty().update("a", 1).to_dict()
print("ready", flush=True)
sys.stdin.readline()
for i in range(changes):
    store.set_weights("ep", {"challenger": (i + 1) / 100}, actor=worker, reason=str(i))
    store.merge_bandit("bandit", delta, kind="bernoulli", arms=["a", "b"])
db.close()
print("done", flush=True)
"""


@pytest.fixture
def workers(deps: Deps) -> Iterator[list[subprocess.Popen[str]]]:
    url, schema = deps.env.target
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, schema or "", f"w{i}", str(CHANGES)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_concurrent_changes_lose_nothing(deps: Deps, workers: list[subprocess.Popen[str]]) -> None:
    deps.store.deploy("ep", DeploymentSpec.canary("m:1", "m:2", weight=0.1), actor="setup")
    for proc in workers:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "ready", proc.communicate(timeout=30)[1]
    for proc in workers:  # release them together
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in workers:
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, out.strip()) == (0, "done"), err
    total = WORKERS * CHANGES
    assert deps.store.get("ep").revision == 1 + total
    history = deps.store.history("ep")
    assert [h["revision"] for h in history] == list(range(1, total + 2))
    assert Counter(h["actor"] for h in history) == Counter(
        {"setup": 1, **{f"w{i}": CHANGES for i in range(WORKERS)}}
    )
    for i in range(WORKERS):  # each worker's changes are in its own order
        mine = [h["reason"] for h in history if h["actor"] == f"w{i}"]
        assert mine == [str(n) for n in range(CHANGES)]
    audit = deps.registry.audit_log("ep")
    assert [(e.before or {}).get("revision") for e in audit] == [None, *range(1, total + 1)]
    assert [(e.after or {}).get("revision") for e in audit] == list(range(1, total + 2))
    state = deps.store.bandit_state("bandit")
    assert state is not None
    assert state["arms"]["a"] == {"alpha": 1.0 + total, "beta": 1.0, "pulls": total}
    assert json.loads(json.dumps(state)) == state
