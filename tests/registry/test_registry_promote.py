"""Promote and rollback keep the deployment and the registry's ``champion`` alias in
step: both change in one transaction with an audit entry each, a refusal on either side
changes neither, and a rollback after a promote restores both — on SQLite and
PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from prodml.core import ConflictError, RegistryConfig, StateError
from prodml.registry import (
    AliasEvent,
    DeploymentSpec,
    DeploymentStore,
    ModelRegistry,
    ModelVersion,
)

RegisterFn = Callable[..., ModelVersion]


@dataclass
class Deps:
    env: Any  # the registry tests' Env (conftest.py)
    store: DeploymentStore
    registry: ModelRegistry
    register: RegisterFn


class Recorder:
    """A registry listener that keeps the alias moves it hears about."""

    def __init__(self) -> None:
        self.events: list[AliasEvent] = []

    def alias_changed(self, event: AliasEvent) -> None:
        self.events.append(event)


@pytest.fixture
def deps(env_any: Any, registrar: Callable[[ModelRegistry], RegisterFn]) -> Deps:
    """Approved m:1 (``m@champion``) and m:2, a canary of m:2 on endpoint ``ep``."""
    register = registrar(env_any.registry)
    registry: ModelRegistry = env_any.registry
    for _ in range(2):
        registry.approve(register("m").ref, actor="qa")
    registry.set_alias("m", "champion", 1, actor="qa")
    store = DeploymentStore(env_any.db, env_any.clock, registry.config, registry.listeners)
    store.deploy("ep", DeploymentSpec.canary("m:1", "m:2", weight=0.1), actor="ann")
    return Deps(env_any, store, registry, register)


def _state(deps: Deps, endpoint: str = "ep") -> tuple[Any, ...]:
    """Everything a promote or rollback may change."""
    return (
        deps.store.get(endpoint),
        deps.store.history(endpoint),
        deps.registry.aliases("m"),
        deps.registry.alias_history("m"),
        deps.registry.audit_log(),
    )


def test_promote_moves_the_champion_alias_with_an_audit_entry_each(deps: Deps) -> None:
    recorder = Recorder()
    deps.registry.listeners.append(recorder)
    audited = len(deps.registry.audit_log())
    promoted = deps.store.promote("ep", "challenger", actor="bob", reason="won the canary")
    assert promoted.spec == DeploymentSpec.single("m:2")
    assert deps.registry.aliases("m") == {"champion": 2, "previous": 1}
    assert deps.registry.get("m@champion").ref == "m:2"
    new = deps.registry.audit_log()[audited:]
    assert [(e.action, e.object_type, e.object_id, e.actor) for e in new] == [
        ("promote", "deployment", "ep", "bob"),
        ("set_alias", "alias", "m@champion", "bob"),
        ("set_alias", "alias", "m@previous", "bob"),
    ]
    deployment, alias, _previous = new
    assert deployment.after is not None
    assert deployment.after["reason"] == "won the canary"
    assert deployment.after["champion_alias"] == {"alias": "m@champion", "before": 1, "after": 2}
    assert deployment.after["previous_alias"] == {"alias": "m@previous", "before": None, "after": 1}
    assert alias.before == {"version": 1}
    assert alias.after is not None
    assert alias.after["version"] == 2
    assert alias.after["reason"] == "won the canary"
    assert alias.after["deployment"] == {"endpoint": "ep", "revision": 2}
    last = deps.registry.alias_history("m", "champion")[-1]
    assert (last.previous_version, last.version, last.actor, last.reason) == (
        1,
        2,
        "bob",
        "won the canary",
    )
    assert [(e.alias, e.previous_version, e.version) for e in recorder.events] == [
        ("champion", 1, 2),
        ("previous", None, 1),
    ]


def test_promote_of_an_unapproved_version_changes_nothing(deps: Deps) -> None:
    pending = deps.register("m")  # m:3, not approved
    deps.store.deploy("ep", DeploymentSpec.canary("m:1", pending.ref, weight=0.1), actor="ann")
    before = _state(deps)
    with pytest.raises(StateError) as refused:
        deps.store.promote("ep", "challenger", actor="bob")
    message = str(refused.value)
    assert "m:3 is pending, expected approved" in message
    assert "prodml models approve m:3" in message
    assert _state(deps) == before


def test_promote_without_required_approval_moves_the_alias_to_a_pending_version(
    deps: Deps,
) -> None:
    pending = deps.register("m")
    config = RegistryConfig(require_approval=False)
    store = DeploymentStore(deps.env.db, deps.env.clock, config)
    store.deploy("ep", DeploymentSpec.canary("m:1", pending.ref, weight=0.1), actor="ann")
    store.promote("ep", "challenger", actor="bob")
    assert deps.registry.aliases("m") == {"champion": 3, "previous": 1}


def test_rollback_after_a_promote_restores_the_revision_and_the_alias(deps: Deps) -> None:
    canary = deps.store.get("ep").spec
    deps.store.promote("ep", "challenger", actor="bob", reason="won")
    audited = len(deps.registry.audit_log())
    rolled = deps.store.rollback("ep", actor="ops", reason="p99 regressed")
    assert (rolled.revision, rolled.spec) == (3, canary)
    assert deps.registry.aliases("m") == {"champion": 1}
    new = deps.registry.audit_log()[audited:]
    assert [(e.action, e.object_id, e.actor) for e in new] == [
        ("rollback", "ep", "ops"),
        ("set_alias", "m@champion", "ops"),
        ("delete_alias", "m@previous", "ops"),
    ]
    assert new[0].after is not None
    assert new[0].after["champion_alias"] == {"alias": "m@champion", "before": 2, "after": 1}
    assert new[0].after["previous_alias"] == {"alias": "m@previous", "before": 1, "after": None}
    assert new[1].after is not None
    assert new[1].after["reason"] == "p99 regressed"
    assert [(h["revision"], h["action"]) for h in deps.store.history("ep")] == [
        (1, "deploy"),
        (2, "promote"),
        (3, "rollback"),
    ]
    # The canary runs again; rolling back once more ends it as before (champion alone).
    again = deps.store.rollback("ep", actor="ops")
    assert again.spec == DeploymentSpec.single("m:1")
    assert deps.registry.aliases("m") == {"champion": 1}
    with pytest.raises(StateError, match=r"latest change \(revision 4\) is 'rollback'"):
        deps.store.rollback("ep", actor="ops")


def test_rollback_removes_an_alias_the_promote_created(deps: Deps) -> None:
    deps.registry.delete_alias("m", "champion", actor="qa")
    deps.store.promote("ep", "challenger", actor="bob")
    assert deps.registry.aliases("m") == {"champion": 2, "previous": 1}
    deps.store.rollback("ep", actor="ops")
    assert deps.registry.aliases("m") == {}
    assert deps.registry.audit_log("m@champion")[-1].action == "delete_alias"


def test_rollback_refuses_when_the_alias_moved_since_the_promote(deps: Deps) -> None:
    deps.registry.approve(deps.register("m").ref, actor="qa")  # m:3
    deps.store.promote("ep", "challenger", actor="bob")
    deps.registry.set_alias("m", "champion", 3, actor="carol")
    before = _state(deps)
    with pytest.raises(ConflictError) as refused:
        deps.store.rollback("ep", actor="ops")
    message = str(refused.value)
    assert "m@champion" in message
    assert "m:2" in message
    assert "m:3" in message
    assert "prodml models alias m:2 champion" in message
    assert _state(deps) == before
    # Once the alias is back where the promote left it, the rollback goes through.
    deps.registry.set_alias("m", "champion", 2, actor="carol")
    deps.store.rollback("ep", actor="ops")
    assert deps.registry.aliases("m") == {"champion": 1}


def test_rollback_refuses_a_version_rejected_since_the_promote(deps: Deps) -> None:
    pending = deps.register("m")  # m:3, pending: it can still be rejected
    config = RegistryConfig(require_approval=False)
    store = DeploymentStore(deps.env.db, deps.env.clock, config)
    store.deploy("ep", DeploymentSpec.canary(pending.ref, "m:2", weight=0.1), actor="ann")
    store.promote("ep", "challenger", actor="bob")
    deps.registry.reject(pending.ref, actor="qa", reason="leaks the label")
    before = _state(deps)
    with pytest.raises(StateError, match=r"m:3 was rejected by qa \(leaks the label\)"):
        store.rollback("ep", actor="ops")
    assert _state(deps) == before


def test_arms_of_different_models_move_only_the_promoted_models_alias(deps: Deps) -> None:
    other = deps.register("other")
    deps.registry.approve(other.ref, actor="qa")
    deps.registry.set_alias("other", "champion", 1, actor="qa")
    deps.store.deploy("mixed", DeploymentSpec.canary("other:1", "m:2", weight=0.5), actor="ann")
    deps.store.promote("mixed", "challenger", actor="bob")
    assert deps.registry.aliases("m") == {"champion": 2}
    assert deps.registry.aliases("other") == {"champion": 1, "previous": 1}
    deps.store.rollback("mixed", actor="ops")
    assert deps.registry.aliases("m") == {"champion": 1}
    assert deps.registry.aliases("other") == {"champion": 1}
    assert deps.store.get("mixed").spec.arm("champion").model == "other:1"


def test_rollback_of_a_single_deployment_that_was_not_promoted_is_refused(deps: Deps) -> None:
    deps.store.deploy("solo", DeploymentSpec.single("m:1"), actor="ann")
    before = _state(deps, "solo")
    with pytest.raises(StateError) as refused:
        deps.store.rollback("solo", actor="ops")
    message = str(refused.value)
    assert "deployment 'solo' serves only m:1" in message
    assert "latest change (revision 1) is 'deploy'" in message
    assert _state(deps, "solo") == before
