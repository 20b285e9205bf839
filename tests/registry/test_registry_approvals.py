"""Approvals and aliases: the state machine, the gate and approval rules, alias
history and audit entries written exactly once per change, and refused actions that
change nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from prodml.core import DefinitionError, ModelNotFoundError, RegistryConfig, StateError
from prodml.registry import AliasEvent, ModelRegistry, ModelVersion, RunInfo

RegisterFn = Callable[..., ModelVersion]
HOUR = timedelta(hours=1)


def _state(reg: ModelRegistry, name: str = "m") -> tuple[Any, ...]:
    """Everything an action could change, to compare before and after."""
    return (
        reg.versions(name),
        reg.aliases(name),
        reg.alias_history(name),
        reg.audit_log(),
    )


def _audit(reg: ModelRegistry) -> list[tuple[Any, ...]]:
    return [
        (e.time, e.actor, e.action, e.object_type, e.object_id, e.before, e.after)
        for e in reg.audit_log()
    ]


def _history(reg: ModelRegistry, alias: str | None = None) -> list[tuple[Any, ...]]:
    return [
        (e.alias, e.previous_version, e.version, e.actor, e.reason, e.time)
        for e in reg.alias_history("m", alias)
    ]


class Recorder:
    """A registry listener that keeps what it heard."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, Any]] = []

    def run_ended(self, run: RunInfo) -> None:
        self.heard.append(("run", run.id))

    def version_registered(self, version: ModelVersion) -> None:
        self.heard.append(("registered", version.ref))

    def alias_changed(self, event: AliasEvent) -> None:
        self.heard.append(("alias", (event.alias, event.previous_version, event.version)))

    def status_changed(self, version: ModelVersion) -> None:
        self.heard.append(("status", (version.ref, version.status)))


def test_approve_and_reject_a_pending_version(env: Any, register: RegisterFn) -> None:
    reg: ModelRegistry = env.registry
    register("m")
    register("m")
    env.clock.advance(HOUR)
    approved = reg.approve("m:1", actor="bob", reason="offline eval ok")
    assert (approved.status, approved.status_actor, approved.status_reason) == (
        "approved",
        "bob",
        "offline eval ok",
    )
    assert approved.status_time == env.clock.now()
    assert reg.get("m:1") == approved
    rejected = reg.reject("m:2")  # the default actor
    assert (rejected.status, rejected.status_actor, rejected.status_reason) == (
        "rejected",
        "tester",
        None,
    )
    assert [(e.action, e.object_id, e.before, e.after) for e in reg.audit_log()[2:]] == [
        (
            "approve",
            "m:1",
            {"status": "pending"},
            {"status": "approved", "reason": "offline eval ok"},
        ),
        ("reject", "m:2", {"status": "pending"}, {"status": "rejected", "reason": None}),
    ]


def test_a_version_is_approved_or_rejected_once(env: Any, register: RegisterFn) -> None:
    reg: ModelRegistry = env.registry
    register("m")
    register("m")
    reg.approve("m:1", actor="bob")
    reg.reject("m:2", actor="carol", reason="leaks the label")
    before = _state(reg)
    with pytest.raises(
        StateError,
        match=r"model version m:1 is already approved \(by bob at 2024-03-01 09:00:00\); "
        r"only a pending version can be approved",
    ):
        reg.approve("m:1", actor="dave")
    with pytest.raises(StateError, match=r"m:1 is already approved \(by bob"):
        reg.reject("m:1", actor="dave")
    with pytest.raises(StateError, match=r"m:2 is already rejected \(by carol"):
        reg.approve("m:2", actor="dave")
    with pytest.raises(StateError, match=r"m:2 is already rejected \(by carol"):
        reg.reject("m:2", actor="dave")
    assert _state(reg) == before


def test_a_rejected_version_cannot_hold_an_alias(env: Any, register: RegisterFn) -> None:
    reg: ModelRegistry = env.registry
    register("m", gate={"status": "BLESSED"})
    reg.reject("m:1", actor="carol", reason="leaks the label")
    before = _state(reg)
    for alias in ("staging", "challenger", "champion"):
        with pytest.raises(
            StateError, match=r"m:1 was rejected by carol \(leaks the label\); a rejected version"
        ):
            reg.set_alias("m", alias, 1)
    assert _state(reg) == before


def test_challenger_needs_a_blessed_version(
    env: Any, register: RegisterFn, blessed: dict[str, Any], blocked: dict[str, Any]
) -> None:
    reg: ModelRegistry = env.registry
    register("m", gate=blocked)
    register("m")
    register("m", gate=blessed)
    before = _state(reg)
    with pytest.raises(
        StateError,
        match=r"m:1 is BLOCKED, expected BLESSED: only blessed versions can become "
        r"'challenger' \(auc 0\.61 < champion 0\.70\)",
    ):
        reg.set_alias("m", "challenger", 1)
    with pytest.raises(StateError, match=r"m:2 is not evaluated.*\(no gate result recorded\)"):
        reg.set_alias("m", "challenger", 2)
    assert _state(reg) == before
    assert reg.set_alias("m", "challenger", 3).aliases == ("challenger",)  # pending is fine
    assert reg.set_alias("m", "staging", 1).aliases == ("staging",)  # other aliases: no gate


def test_champion_needs_an_approved_version(
    env: Any, register: RegisterFn, open_env: Callable[..., Any]
) -> None:
    reg: ModelRegistry = env.registry
    register("m")
    before = _state(reg)
    with pytest.raises(
        StateError, match=r"m:1 is pending, expected approved: alias 'champion' takes production"
    ):
        reg.set_alias("m", "champion", 1)
    assert _state(reg) == before
    reg.approve("m:1")
    assert reg.set_alias("m", "champion", 1).aliases == ("champion",)

    lax = open_env(env.target, RegistryConfig(require_approval=False)).registry
    register("m")
    assert lax.set_alias("m", "champion", 2).aliases == ("champion",)
    strict = open_env(env.target, RegistryConfig(production_aliases=("champion", "prod"))).registry
    with pytest.raises(StateError, match=r"m:2 is pending, expected approved: alias 'prod'"):
        strict.set_alias("m", "prod", 2)


def test_rejecting_a_version_removes_its_aliases(
    env: Any, register: RegisterFn, blessed: dict[str, Any]
) -> None:
    reg: ModelRegistry = env.registry
    recorder = Recorder()
    reg.listeners.append(recorder)
    register("m", gate=blessed)
    register("m", gate=blessed)
    reg.set_alias("m", "challenger", 2, actor="carol")
    reg.set_alias("m", "staging", 2, actor="carol")
    reg.set_alias("m", "qa", 1, actor="carol")
    env.clock.advance(HOUR)
    recorder.heard.clear()
    rejected = reg.reject("m:2", actor="dave", reason="bias")
    assert rejected.aliases == ()
    assert reg.aliases("m") == {"qa": 1}
    t1 = env.clock.now()
    removed = {
        ("challenger", 2, None, "dave", "m:2 rejected", t1),
        ("staging", 2, None, "dave", "m:2 rejected", t1),
    }
    assert set(_history(reg)[-2:]) == removed
    audit = _audit(reg)
    assert audit[-3] == (
        t1,
        "dave",
        "reject",
        "model_version",
        "m:2",
        {"status": "pending"},
        {"status": "rejected", "reason": "bias"},
    )
    assert sorted(audit[-2:], key=lambda a: a[4]) == [
        (t1, "dave", "delete_alias", "alias", "m@challenger", {"version": 2}, None),
        (t1, "dave", "delete_alias", "alias", "m@staging", {"version": 2}, None),
    ]
    assert recorder.heard[0] == ("status", ("m:2", "rejected"))
    assert sorted(recorder.heard[1:]) == [
        ("alias", ("challenger", 2, None)),
        ("alias", ("staging", 2, None)),
    ]


def test_alias_history_and_audit_log_are_exact(
    env: Any, register: RegisterFn, blessed: dict[str, Any]
) -> None:
    reg: ModelRegistry = env.registry
    clock = env.clock
    t: list[datetime] = []

    def tick() -> None:
        clock.advance(HOUR)
        t.append(clock.now())

    tick()
    one = register("m", gate=blessed, actor="alice")
    two = register("m", gate=blessed, actor="alice")
    tick()
    reg.approve("m:1", actor="bob", reason="ok")
    tick()
    reg.set_alias("m", "champion", 1, actor="bob", reason="launch")
    tick()
    reg.set_alias("m", "challenger", "m:2", actor="carol")
    tick()
    reg.set_alias("m", "challenger", 2, actor="erin", reason="again")  # no-op
    tick()
    reg.approve("m:2", actor="bob")
    tick()
    reg.set_alias("m", "champion", "m@challenger", actor="bob", reason="promote")
    tick()
    reg.delete_alias("m", "challenger", actor="carol", reason="done")
    tick()
    reg.set_alias("m", "champion", 1, actor="bob", reason="rollback")

    assert _history(reg) == [
        ("champion", None, 1, "bob", "launch", t[2]),
        ("challenger", None, 2, "carol", None, t[3]),
        ("champion", 1, 2, "bob", "promote", t[6]),
        ("challenger", 2, None, "carol", "done", t[7]),
        ("champion", 2, 1, "bob", "rollback", t[8]),
    ]
    assert _history(reg, "challenger") == [h for h in _history(reg) if h[0] == "challenger"]
    assert _audit(reg) == [
        (t[0], "alice", "register", "model_version", "m:1", None,
         {"artifact": one.artifact_digest, "format": "cloudpickle", "gate": "BLESSED"}),
        (t[0], "alice", "register", "model_version", "m:2", None,
         {"artifact": two.artifact_digest, "format": "cloudpickle", "gate": "BLESSED"}),
        (t[1], "bob", "approve", "model_version", "m:1", {"status": "pending"},
         {"status": "approved", "reason": "ok"}),
        (t[2], "bob", "set_alias", "alias", "m@champion", None,
         {"version": 1, "reason": "launch"}),
        (t[3], "carol", "set_alias", "alias", "m@challenger", None,
         {"version": 2, "reason": None}),
        (t[5], "bob", "approve", "model_version", "m:2", {"status": "pending"},
         {"status": "approved", "reason": None}),
        (t[6], "bob", "set_alias", "alias", "m@champion", {"version": 1},
         {"version": 2, "reason": "promote"}),
        (t[7], "carol", "delete_alias", "alias", "m@challenger", {"version": 2}, None),
        (t[8], "bob", "set_alias", "alias", "m@champion", {"version": 2},
         {"version": 1, "reason": "rollback"}),
    ]  # fmt: skip
    assert [e.object_id for e in reg.audit_log("m@champion")] == ["m@champion"] * 3
    assert [e.action for e in reg.audit_log(limit=2)] == ["register", "register"]
    assert reg.aliases("m") == {"champion": 1}
    assert reg.get("m@champion").aliases == ("champion",)


def test_a_no_op_alias_move_writes_nothing(
    env: Any, register: RegisterFn, blessed: dict[str, Any]
) -> None:
    reg: ModelRegistry = env.registry
    recorder = Recorder()
    reg.listeners.append(recorder)
    register("m", gate=blessed)
    reg.set_alias("m", "challenger", 1)
    before = _state(reg)
    heard = list(recorder.heard)
    env.clock.advance(HOUR)
    assert reg.set_alias("m", "challenger", 1, actor="zoe", reason="same").aliases == (
        "challenger",
    )
    assert reg.set_alias("m", "challenger", "m@challenger").version == 1
    assert _state(reg) == before
    assert recorder.heard == heard


def test_failed_actions_change_nothing(
    env: Any, register: RegisterFn, blessed: dict[str, Any]
) -> None:
    reg: ModelRegistry = env.registry
    register("m", gate=blessed)
    register("m")
    reg.approve("m:1")
    reg.set_alias("m", "champion", 1)
    register("other")
    before = _state(reg)
    failing: list[tuple[Callable[[], object], type[Exception]]] = [
        (lambda: reg.approve("m:1"), StateError),
        (lambda: reg.reject("m:1"), StateError),
        (lambda: reg.approve("m:9"), ModelNotFoundError),
        (lambda: reg.approve("m@ghost"), ModelNotFoundError),
        (lambda: reg.set_alias("m", "champion", 2), StateError),
        (lambda: reg.set_alias("m", "challenger", 2), StateError),
        (lambda: reg.set_alias("m", "champion", 9), ModelNotFoundError),
        (lambda: reg.set_alias("m", "champion", "m@ghost"), ModelNotFoundError),
        (lambda: reg.set_alias("m", "champion", "other:1"), DefinitionError),
        (lambda: reg.set_alias("m", "bad alias", 1), DefinitionError),
        (lambda: reg.set_alias("ghost", "champion", 1), ModelNotFoundError),
        (lambda: reg.delete_alias("m", "ghost"), ModelNotFoundError),
        (lambda: reg.delete_alias("ghost", "champion"), ModelNotFoundError),
    ]
    for call, error in failing:
        with pytest.raises(error):
            call()
        assert _state(reg) == before, call
    assert reg.aliases("other") == {}


def test_delete_alias(env: Any, register: RegisterFn) -> None:
    reg: ModelRegistry = env.registry
    register("m")
    reg.set_alias("m", "staging", 1)
    reg.delete_alias("m", "staging", actor="carol")
    assert reg.aliases("m") == {}
    assert reg.get("m:1").aliases == ()
    with pytest.raises(ModelNotFoundError, match=r"model 'm' has no alias 'staging'"):
        reg.get("m@staging")
    assert [(e.previous_version, e.version) for e in reg.alias_history("m")] == [
        (None, 1),
        (1, None),
    ]


def test_a_failing_listener_does_not_undo_the_change(
    env: Any, register: RegisterFn, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Recorder):
        def status_changed(self, version: ModelVersion) -> None:
            raise RuntimeError("mirror down")

    reg: ModelRegistry = env.registry
    reg.listeners.append(Broken())
    register("m")
    assert reg.approve("m:1").status == "approved"
    assert reg.get("m:1").status == "approved"
    assert "mirror down" in caplog.text
