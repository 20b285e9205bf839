"""The rollout store: plans created, replaced and updated with a version that grows by
one per write (a stale update is a conflict), decisions appended and read newest last,
writes in a caller's transaction or in their own — on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from prodml.core import ConflictError, DefinitionError, NotFoundError, SimulatedClock
from prodml.rollout._store import PlanRecord, RolloutStore
from prodml.storage import MetadataDB

T0 = datetime(2013, 7, 1, 12, 0, tzinfo=UTC)
PLAN = {"kind": "canary", "steps": [{"weight": 0.05, "bake_s": 3600}], "alpha": 0.05}
Target = tuple[str, str | None]


@pytest.fixture
def db(db_target: Target) -> Iterator[MetadataDB]:
    url, schema = db_target
    with MetadataDB.open(url, schema_name=schema) as opened:
        yield opened


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


@pytest.fixture
def store(db: MetadataDB, clock: SimulatedClock) -> RolloutStore:
    return RolloutStore(db, clock)


def _decide(store: RolloutStore, decision: str, step: int | None = None) -> int:
    return store.add_decision(
        None,
        "ep",
        decision,
        step=step,
        revision=None,
        actor="ctl",
        reason=f"{decision} reason",
        evidence={"decision": decision},
    )


def test_save_creates_then_replaces_with_a_growing_version(
    store: RolloutStore, clock: SimulatedClock
) -> None:
    assert store.get("ep") is None
    created = store.save(None, "ep", PLAN, {"step": 0}, "active", "ana")
    assert created == PlanRecord("ep", PLAN, {"step": 0}, "active", 1, T0, "ana", T0)
    assert store.get("ep") == created
    clock.advance(timedelta(hours=1))
    plan = {**PLAN, "alpha": 0.01}
    replaced = store.save(None, "ep", plan, {"step": 0}, "active", "bob")
    assert replaced == PlanRecord(
        "ep", plan, {"step": 0}, "active", 2, clock.now(), "bob", clock.now()
    )
    store.save(None, "another", PLAN, {}, "paused", "ana")
    assert [(r.endpoint, r.version) for r in store.list()] == [("another", 1), ("ep", 2)]


def test_update_changes_state_and_status_at_the_expected_version(
    store: RolloutStore, clock: SimulatedClock
) -> None:
    store.save(None, "ep", PLAN, {"step": 0}, "active", "ana")
    clock.advance(timedelta(minutes=5))
    updated = store.update(None, "ep", {"step": 1}, "awaiting_approval", expected_version=1)
    assert updated == PlanRecord(
        "ep", PLAN, {"step": 1}, "awaiting_approval", 2, T0, "ana", clock.now()
    )
    assert store.get("ep") == updated


def test_a_stale_update_is_a_conflict_and_changes_nothing(store: RolloutStore) -> None:
    store.save(None, "ep", PLAN, {"step": 0}, "active", "ana")
    store.update(None, "ep", {"step": 1}, "active", expected_version=1)
    current = store.get("ep")
    with pytest.raises(ConflictError, match=r"rollout plan of 'ep': version is 2, expected 1"):
        store.update(None, "ep", {"step": 9}, "active", expected_version=1)
    assert store.get("ep") == current


def test_update_of_a_missing_plan_names_the_known_ones(store: RolloutStore) -> None:
    store.save(None, "ep", PLAN, {}, "active", "ana")
    with pytest.raises(NotFoundError, match=r"'nope' has no rollout plan; .*\['ep'\]"):
        store.update(None, "nope", {}, "active", expected_version=1)


def _write_then_fail(store: RolloutStore, db: MetadataDB) -> None:
    with db.write() as session:
        store.save(session, "ep", PLAN, {"step": 0}, "active", "ana")
        store.add_decision(
            session, "ep", "start", step=0, revision=1, actor="ana", reason=None, evidence={}
        )
        raise RuntimeError("boom")


def test_writes_in_a_callers_transaction_commit_or_roll_back_with_it(
    store: RolloutStore, db: MetadataDB
) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        _write_then_fail(store, db)
    assert store.get("ep") is None
    assert store.decisions("ep") == []
    with db.write() as session:
        saved = store.save(session, "ep", PLAN, {"step": 0}, "active", "ana")
        updated = store.update(session, "ep", {"step": 1}, "active", expected_version=1)
        again = store.save(session, "ep", PLAN, {"step": 0}, "active", "ana")
    assert (saved.version, updated.version, again.version) == (1, 2, 3)
    assert store.get("ep") == again


def test_decisions_come_back_in_order_newest_last(
    store: RolloutStore, clock: SimulatedClock
) -> None:
    assert store.decisions("ep") == []
    assert store.last_decision("ep") is None
    first = _decide(store, "start", 0)
    clock.advance(timedelta(hours=1))
    _decide(store, "hold", 0)
    clock.advance(timedelta(hours=1))
    store.add_decision(
        None,
        "ep",
        "advance",
        step=1,
        revision=7,
        actor="ctl",
        reason=None,
        evidence={"p": 0.2, "ci": [-0.01, 0.03]},
        time=T0 + timedelta(days=1),
    )
    store.add_decision(
        None, "other", "start", step=0, revision=1, actor="ctl", reason=None, evidence={}
    )
    decisions = store.decisions("ep")
    assert [d["decision"] for d in decisions] == ["start", "hold", "advance"]
    assert decisions[0] == {
        "id": first,
        "endpoint": "ep",
        "time": T0,
        "decision": "start",
        "step": 0,
        "revision": None,
        "actor": "ctl",
        "reason": "start reason",
        "evidence": {"decision": "start"},
    }
    assert decisions[1]["time"] == T0 + timedelta(hours=1)
    assert [d["decision"] for d in store.decisions("ep", limit=2)] == ["hold", "advance"]
    assert store.decisions("ep", limit=0) == []
    last = store.last_decision("ep")
    assert last is not None
    assert (last["decision"], last["revision"], last["time"]) == (
        "advance",
        7,
        T0 + timedelta(days=1),
    )
    assert last["evidence"] == {"p": 0.2, "ci": [-0.01, 0.03]}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda s: s.save(None, "ep", {"alpha": float("nan")}, {}, "active", "a"),
            r"rollout plan of 'ep': plan must be JSON data",
        ),
        (
            lambda s: s.save(None, "ep", PLAN, [1], "active", "a"),
            r"state must be a mapping of JSON data, got list",
        ),
        (
            lambda s: s.save(None, "ep", PLAN, {}, "x" * 25, "a"),
            r"status must be a string of 1 to 24 characters",
        ),
        (lambda s: s.save(None, "ep", PLAN, {}, "active", ""), r"actor must be a string"),
        (lambda s: s.save(None, "bad name", PLAN, {}, "active", "a"), r"endpoint name is invalid"),
        (
            lambda s: s.add_decision(
                None,
                "ep",
                "much_too_long_decision",
                step=None,
                revision=None,
                actor="a",
                reason=None,
                evidence={},
            ),
            r"decision must be a string of 1 to 16 characters",
        ),
        (
            lambda s: s.add_decision(
                None, "ep", "hold", step=1.5, revision=None, actor="a", reason=None, evidence={}
            ),
            r"step must be an integer or None, got 1.5",
        ),
        (
            lambda s: s.add_decision(
                None,
                "ep",
                "hold",
                step=None,
                revision=None,
                actor="a",
                reason=None,
                evidence={"x": object()},
            ),
            r"evidence must be JSON data",
        ),
        (lambda s: s.decisions("ep", limit=-1), r"limit must be an integer >= 0, got -1"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    store: RolloutStore, call: object, message: str
) -> None:
    assert callable(call)
    with pytest.raises(DefinitionError, match=message):
        call(store)
    assert store.list() == []
    assert store.decisions("ep") == []
