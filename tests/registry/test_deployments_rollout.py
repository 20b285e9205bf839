"""What the rollout controller needs from the deployment store: evidence kept with each
change, a hook that writes in the change's transaction, the ``advance`` action, promote
gates, the ``previous`` alias and a standby arm, decommissioning an arm, and restoring
the previous champion — on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from prodml.core import DefinitionError, RegistryConfig, StateError
from prodml.registry import (
    AliasEvent,
    Arm,
    Deployment,
    DeploymentSpec,
    DeploymentStore,
    ModelRegistry,
    ModelVersion,
)
from prodml.rollout._store import RolloutStore

RegisterFn = Callable[..., ModelVersion]
EVIDENCE = {"test": "msprt", "p_value": 0.003, "ci": [0.01, 0.04], "n": {"a": 900, "b": 100}}


@dataclass
class Deps:
    env: Any  # the registry tests' Env (conftest.py)
    store: DeploymentStore
    registry: ModelRegistry
    register: RegisterFn


@pytest.fixture
def deps(
    env_any: Any, registrar: Callable[[ModelRegistry], RegisterFn], blessed: dict[str, Any]
) -> Deps:
    """Approved m:1 (``m@champion``) and m:2 (blessed), a canary of m:2 on ``ep``."""
    register = registrar(env_any.registry)
    registry: ModelRegistry = env_any.registry
    registry.approve(register("m").ref, actor="qa")
    registry.approve(register("m", gate=blessed).ref, actor="qa")
    registry.set_alias("m", "champion", 1, actor="qa")
    store = DeploymentStore(env_any.db, env_any.clock, registry.config, registry.listeners)
    store.deploy("ep", DeploymentSpec.canary("m:1", "m:2", weight=0.1), actor="ann")
    return Deps(env_any, store, registry, register)


class Recorder:
    """A registry listener that keeps the alias moves it hears about."""

    def __init__(self) -> None:
        self.events: list[AliasEvent] = []

    def alias_changed(self, event: AliasEvent) -> None:
        self.events.append(event)


def _state(deps: Deps, endpoint: str = "ep") -> tuple[Any, ...]:
    """Everything a change may write."""
    return (
        deps.store.get(endpoint),
        deps.store.history(endpoint),
        deps.registry.aliases("m"),
        deps.registry.alias_history("m"),
        deps.registry.audit_log(),
    )


def _actions(deps: Deps, endpoint: str = "ep") -> list[str]:
    return [h["action"] for h in deps.store.history(endpoint)]


# --- evidence -------------------------------------------------------------------------
def test_evidence_is_kept_in_the_history_and_the_audit_entry(deps: Deps) -> None:
    changed = deps.store.set_weights(
        "ep", {"challenger": 0.25}, actor="ctl", action="advance", evidence=EVIDENCE
    )
    assert changed.spec.serving_weights() == {"champion": 0.75, "challenger": 0.25}
    history = deps.store.history("ep")
    assert [(h["action"], h["evidence"]) for h in history] == [
        ("deploy", None),
        ("advance", EVIDENCE),
    ]
    audit = deps.registry.audit_log("ep")[-1]
    assert audit.action == "advance"
    assert audit.after is not None
    assert audit.after["evidence"] == EVIDENCE
    assert "evidence" not in (deps.registry.audit_log("ep")[0].after or {})


@pytest.mark.parametrize(
    "change",
    [
        lambda s, e: s.deploy("ep", DeploymentSpec.single("m:1"), actor="a", evidence=e),
        lambda s, e: s.pause("ep", actor="a", evidence=e),
        lambda s, e: s.promote("ep", "challenger", actor="a", evidence=e),
        lambda s, e: s.rollback("ep", actor="a", evidence=e),
        lambda s, e: s.decommission("ep", "challenger", actor="a", evidence=e),
    ],
    ids=["deploy", "pause", "promote", "rollback", "decommission"],
)
def test_every_change_stores_its_evidence(
    deps: Deps, change: Callable[[DeploymentStore, dict[str, Any]], Deployment]
) -> None:
    deps.store.set_weights("ep", {"challenger": 0.0}, actor="ann")  # decommission needs 0
    change(deps.store, {"rule": "guardrail", "value": 0.2})
    assert deps.store.history("ep")[-1]["evidence"] == {"rule": "guardrail", "value": 0.2}


@pytest.mark.parametrize(
    ("evidence", "message"),
    [
        ({"p_value": float("nan")}, r"evidence must be JSON data .*Out of range float"),
        ({"when": object()}, r"evidence must be JSON data .*not JSON serializable"),
        (["not", "a", "mapping"], r"evidence must be a mapping of JSON data, got list"),
    ],
)
def test_evidence_that_is_not_json_is_refused_before_anything_is_written(
    deps: Deps, evidence: Any, message: str
) -> None:
    before = _state(deps)
    with pytest.raises(DefinitionError, match=rf"deployment 'ep': {message}"):
        deps.store.set_weights("ep", {"challenger": 0.2}, actor="ctl", evidence=evidence)
    assert _state(deps) == before


def test_set_weights_records_advance_and_refuses_other_actions(deps: Deps) -> None:
    deps.store.set_weights("ep", {"challenger": 0.5}, actor="ctl", action="advance")
    assert _actions(deps) == ["deploy", "advance"]
    with pytest.raises(DefinitionError, match=r"must be one of .*'advance'\], got 'promote'"):
        deps.store.set_weights("ep", {"challenger": 0.5}, actor="ctl", action="promote")


# --- the within hook ------------------------------------------------------------------
def test_within_writes_in_the_same_transaction_as_the_change(deps: Deps) -> None:
    rollout = RolloutStore(deps.env.db, deps.env.clock)
    seen: list[tuple[int, str]] = []

    def within(session: Session, deployment: Deployment) -> None:
        seen.append((deployment.revision, deployment.spec.policy))
        rollout.save(session, "ep", {"steps": [0.1, 0.5]}, {"step": 1}, "active", "ctl")
        rollout.add_decision(
            session,
            "ep",
            "advance",
            step=1,
            revision=deployment.revision,
            actor="ctl",
            reason="baked",
            evidence={"n": 10},
        )

    deps.store.set_weights("ep", {"challenger": 0.5}, actor="ctl", action="advance", within=within)
    assert seen == [(2, "canary")]
    record = rollout.get("ep")
    assert record is not None
    assert (record.state, record.version) == ({"step": 1}, 1)
    last = rollout.last_decision("ep")
    assert last is not None
    assert (last["decision"], last["revision"]) == ("advance", 2)


@pytest.mark.parametrize(
    "change",
    [
        lambda s, w: s.deploy("ep", DeploymentSpec.single("m:1"), actor="a", within=w),
        lambda s, w: s.set_weights("ep", {"challenger": 0.3}, actor="a", within=w),
        lambda s, w: s.promote("ep", "challenger", actor="a", keep_previous=True, within=w),
        lambda s, w: s.rollback("ep", actor="a", within=w),
        lambda s, w: s.resume("ep", actor="a", within=w),
    ],
    ids=["deploy", "set_weights", "promote", "rollback", "resume"],
)
def test_a_failing_within_hook_rolls_everything_back(
    deps: Deps, change: Callable[[DeploymentStore, Any], Deployment]
) -> None:
    deps.store.pause("ep", actor="ann")  # so that resume is a valid change
    rollout = RolloutStore(deps.env.db, deps.env.clock)
    before = _state(deps)
    heard = Recorder()
    deps.registry.listeners.append(heard)

    def within(session: Session, deployment: Deployment) -> None:
        rollout.add_decision(
            session, "ep", "x", step=None, revision=None, actor="a", reason=None, evidence={}
        )
        session.execute(text("SELECT 1"))
        raise RuntimeError("the plan could not be written")

    with pytest.raises(RuntimeError, match="the plan could not be written"):
        change(deps.store, within)
    assert _state(deps) == before
    assert rollout.decisions("ep") == []
    assert heard.events == []  # no listener hears about a move that never happened


# --- promote gates ----------------------------------------------------------------------
def test_promote_requiring_a_blessed_version_refuses_one_that_is_not(deps: Deps) -> None:
    deps.registry.approve(deps.register("m").ref, actor="qa")  # m:3: approved, no gate
    deps.store.deploy("ep", DeploymentSpec.canary("m:1", "m:3", weight=0.1), actor="ann")
    before = _state(deps)
    with pytest.raises(StateError) as refused:
        deps.store.promote("ep", "challenger", actor="ctl", require_blessed=True)
    assert "model version m:3: gate_status is not evaluated, expected BLESSED" in str(refused.value)
    assert _state(deps) == before


def test_promote_requiring_approval_refuses_a_pending_version(
    deps: Deps, blessed: dict[str, Any]
) -> None:
    pending = deps.register("m", gate=blessed)  # m:3: blessed, pending
    store = DeploymentStore(deps.env.db, deps.env.clock, RegistryConfig(require_approval=False))
    store.deploy("ep", DeploymentSpec.canary("m:1", pending.ref, weight=0.1), actor="ann")
    before = _state(deps)
    with pytest.raises(StateError) as refused:
        store.promote("ep", "challenger", actor="ctl", require_blessed=True, require_approved=True)
    message = str(refused.value)
    assert "model version m:3: status is pending, expected approved" in message
    assert "prodml models approve m:3" in message
    assert _state(deps) == before
    # Without the requirement (and with require_approval off) the same promote goes through.
    store.promote("ep", "challenger", actor="ctl", require_blessed=True)
    assert deps.registry.aliases("m") == {"champion": 3, "previous": 1}


def test_promote_passing_both_gates(deps: Deps) -> None:
    promoted = deps.store.promote(
        "ep", "challenger", actor="ctl", require_blessed=True, require_approved=True
    )
    assert promoted.spec == DeploymentSpec.single("m:2")


# --- previous alias and standby arm -----------------------------------------------------
def test_promote_keeping_the_previous_champion_as_a_standby_arm(deps: Deps) -> None:
    promoted = deps.store.promote("ep", "challenger", actor="ctl", keep_previous=True)
    spec = promoted.spec
    assert spec.policy == "shadow"
    assert spec.shadow_fraction == 0.0
    assert spec.arms == (
        Arm("champion", "m:2", "champion", 1.0),
        Arm("previous", "m:1", "shadow", 0.0),
    )
    assert spec.serving_weights() == {"champion": 1.0}
    assert deps.registry.aliases("m") == {"champion": 2, "previous": 1}
    # A rollback right after undoes the promote: the canary, and both aliases, are back.
    rolled = deps.store.rollback("ep", actor="ops")
    assert rolled.spec == DeploymentSpec.canary("m:1", "m:2", weight=0.1)
    assert deps.registry.aliases("m") == {"champion": 1}
    assert _actions(deps) == ["deploy", "promote", "rollback"]


def test_a_rejected_old_champion_gets_no_previous_alias(deps: Deps) -> None:
    registry = deps.registry
    pending = deps.register("m")  # m:3, will be the old champion, then rejected
    store = DeploymentStore(deps.env.db, deps.env.clock, RegistryConfig(require_approval=False))
    registry.set_alias("m", "previous", 1, actor="qa")
    store.deploy("ep", DeploymentSpec.canary(pending.ref, "m:2", weight=0.1), actor="ann")
    registry.reject(pending.ref, actor="qa", reason="leaks the label")
    store.promote("ep", "challenger", actor="ctl")
    assert registry.aliases("m") == {"champion": 2}


# --- decommission -----------------------------------------------------------------------
def test_decommission_of_the_standby_arm_leaves_the_champion_alone(deps: Deps) -> None:
    deps.store.promote("ep", "challenger", actor="ctl", keep_previous=True)
    done = deps.store.decommission("ep", "previous", actor="ctl", reason="promoted 1 day ago")
    assert done.spec == DeploymentSpec.single("m:2")
    assert _actions(deps) == ["deploy", "promote", "decommission"]
    assert deps.registry.aliases("m") == {"champion": 2, "previous": 1}
    assert deps.registry.audit_log("ep")[-1].action == "decommission"


def test_decommission_of_a_zero_weight_challenger(deps: Deps) -> None:
    deps.store.set_weights("ep", {"challenger": 0.0}, actor="ctl")
    done = deps.store.decommission("ep", "challenger", actor="ctl")
    assert done.spec == DeploymentSpec.single("m:1")


def test_decommission_keeps_an_experiment_that_still_has_arms(deps: Deps) -> None:
    arms = (
        Arm("champion", "m:1", "champion", 0.5),
        Arm("b", "m:2", "arm", 0.5),
        Arm("c", "m:2", "arm", 0.0),
        Arm("s", "m:2", "shadow", 0.0),
    )
    deps.store.deploy("ab", DeploymentSpec("ab", arms, shadow_fraction=0.2), actor="ann")
    spec = deps.store.decommission("ab", "c", actor="ctl").spec
    assert (spec.policy, [a.name for a in spec.arms]) == ("ab", ["champion", "b", "s"])
    spec = deps.store.decommission("ab", "s", actor="ctl").spec
    assert (spec.policy, [a.name for a in spec.arms]) == ("ab", ["champion", "b"])


def test_decommission_of_a_zero_weight_canary_with_a_shadow_keeps_the_shadow(deps: Deps) -> None:
    arms = (
        Arm("champion", "m:1", "champion", 1.0),
        Arm("challenger", "m:2", "challenger", 0.0),
        Arm("s", "m:2", "shadow", 0.0),
    )
    deps.store.deploy("mix", DeploymentSpec("canary", arms, shadow_fraction=0.3), actor="ann")
    spec = deps.store.decommission("mix", "challenger", actor="ctl").spec
    assert (spec.policy, spec.shadow_fraction, [a.name for a in spec.arms]) == (
        "shadow",
        0.3,
        ["champion", "s"],
    )


@pytest.mark.parametrize(
    ("arm", "message"),
    [
        ("champion", r"arm 'champion' is the champion; expected a non-champion arm"),
        ("challenger", r"arm 'challenger' takes live traffic \(weight 0.1\); expected a shadow"),
    ],
)
def test_decommission_refuses_the_champion_and_live_arms(
    deps: Deps, arm: str, message: str
) -> None:
    before = _state(deps)
    with pytest.raises(StateError, match=rf"deployment 'ep': {message}"):
        deps.store.decommission("ep", arm, actor="ctl")
    with pytest.raises(DefinitionError, match=r"no arm 'ghost'"):
        deps.store.decommission("ep", "ghost", actor="ctl")
    assert _state(deps) == before


def test_decommission_refuses_a_bandit_arm_whatever_its_weight(deps: Deps) -> None:
    arms = (Arm("a", "m:1", "arm", 1.0), Arm("b", "m:2", "arm", 0.0), Arm("c", "m:2", "arm"))
    deps.store.deploy("bandit", DeploymentSpec("bandit", arms), actor="ann")
    with pytest.raises(StateError, match=r"arm 'b' takes live traffic \(a bandit share\)"):
        deps.store.decommission("bandit", "b", actor="ctl")


# --- restore_previous -------------------------------------------------------------------
def test_restore_previous_serves_the_old_champion_and_swaps_the_aliases(deps: Deps) -> None:
    deps.store.promote("ep", "challenger", actor="ctl", keep_previous=True)
    deps.store.decommission("ep", "previous", actor="ctl")
    with pytest.raises(StateError, match=r"latest change \(revision 3\) is 'decommission'"):
        deps.store.rollback("ep", actor="ops")
    audited = len(deps.registry.audit_log())
    restored = deps.store.restore_previous(
        "ep", actor="ops", reason="late labels show a regression", evidence={"auc": 0.61}
    )
    assert restored.spec == DeploymentSpec.single("m:1")
    assert deps.registry.aliases("m") == {"champion": 1, "previous": 2}
    history = deps.store.history("ep")[-1]
    assert (history["action"], history["evidence"]) == ("rollback", {"auc": 0.61})
    new = deps.registry.audit_log()[audited:]
    assert [(e.action, e.object_id) for e in new] == [
        ("rollback", "ep"),
        ("set_alias", "m@champion"),
        ("set_alias", "m@previous"),
    ]
    assert new[0].after is not None
    assert new[0].after["champion_alias"] == {"alias": "m@champion", "before": 2, "after": 1}
    assert new[0].after["previous_alias"] == {"alias": "m@previous", "before": 1, "after": 2}


def test_restore_previous_works_from_the_standby_deployment(deps: Deps) -> None:
    deps.store.promote("ep", "challenger", actor="ctl", keep_previous=True)
    restored = deps.store.restore_previous("ep", actor="ops")
    assert restored.spec == DeploymentSpec.single("m:1")
    assert deps.registry.aliases("m") == {"champion": 1, "previous": 2}


def test_restore_previous_refuses_without_a_previous_alias_or_during_an_experiment(
    deps: Deps,
) -> None:
    before = _state(deps)
    with pytest.raises(StateError, match=r"deployment 'ep' has policy 'canary'"):
        deps.store.restore_previous("ep", actor="ops")
    assert _state(deps) == before
    deps.store.deploy("solo", DeploymentSpec.single("m:1"), actor="ann")
    before = _state(deps, "solo")
    with pytest.raises(StateError, match=r"m@previous is none, expected the version m:1 replaced"):
        deps.store.restore_previous("solo", actor="ops")
    assert _state(deps, "solo") == before
