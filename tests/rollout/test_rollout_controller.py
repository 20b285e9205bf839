"""The controller on a real project (metadata DB, log store, registry), a simulated
clock and synthetic traffic: each pass decides from the logs, each decision is one
transaction with its evidence in the deployment history, the registry's champion alias
follows the deployment, and two controllers never act at once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from prodml import Project
from prodml.core import ConflictError, SimulatedClock, StateError
from prodml.registry import DeploymentSpec
from prodml.rollout import Rollouts
from servingkit import lr_model, register

T0 = datetime(2013, 6, 1, tzinfo=UTC)
ENDPOINT = "delay"
PLAN = {
    "steps": [0.1, 0.5],
    "bake": "1h",
    "min_samples": 200,
    "guardrails": [{"metric": "error_rate", "margin": 0.02}],
    "decommission_delay": "2h",
}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    clock = SimulatedClock(T0)
    with Project.init(tmp_path / "p", clock=clock) as project:
        model, X = lr_model()
        register(project, model, X, name="m")
        register(project, model, X, name="m")  # no gate: not BLESSED
        project.registry.set_alias("m", "champion", "m:1", actor="test")
        project.deployments.deploy(ENDPOINT, DeploymentSpec.single("m:1"), actor="test")
        yield project


def traffic(
    project: Project,
    start: datetime,
    hours: int,
    *,
    quality: dict[str, float],
    errors: dict[str, float] | None = None,
    per_hour: int = 400,
    seed: int = 0,
) -> None:
    """``per_hour`` requests an hour split by the deployment's current weights; each arm
    scores with AUC-ish ``quality`` (0.5 = noise), labels arrive at once."""
    rng = np.random.default_rng(seed)
    spec = project.deployments.get(ENDPOINT).spec
    weights = spec.serving_weights()
    arms, shares = list(weights), np.array(list(weights.values()))
    clock = SimulatedClock(start)
    predictions: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    n = per_hour * hours
    chosen = rng.choice(len(arms), size=n, p=shares / shares.sum())
    y = rng.random(n) < 0.3
    noise = rng.random(n)
    for i in range(n):
        arm = arms[chosen[i]]
        time = start + timedelta(seconds=3600 * hours * i / n)
        q = quality[arm]
        score = float(np.clip(q * y[i] + (1 - q) * noise[i] * 0.8 + 0.1, 0.01, 0.99))
        failed = errors is not None and rng.random() < errors.get(arm, 0.0)
        request_id = f"r{start.timestamp():.0f}-{i}"
        predictions.append(
            {
                "time": time, "request_id": request_id, "endpoint": ENDPOINT, "arm": arm,
                "role": spec.arm(arm).role, "model_version": spec.arm(arm).model,
                "unit": request_id, "status": "error" if failed else "ok", "shadow": False,
                "latency_ms": 2.0, "row": 0, "output": None if failed else score,
            }
        )  # fmt: skip
        labels.append(
            {"time": time + timedelta(minutes=1), "endpoint": ENDPOINT,
             "request_id": request_id, "row": 0, "label": bool(y[i])}
        )  # fmt: skip
    for log, records in ((project.logs.predictions, predictions), (project.logs.labels, labels)):
        with log.open_writer(clock=clock) as writer:
            for record in records:
                writer.append(record)


def advance_clock(project: Project, to: datetime) -> None:
    assert isinstance(project.clock, SimulatedClock)
    project.clock.set(to)


def test_starting_a_plan_deploys_the_first_step_with_its_evidence(project: Project) -> None:
    decision = project.rollout.start(
        ENDPOINT, {**PLAN, "challenger": "m:2", "require_blessed": False}, actor="ana"
    )
    deployment = project.deployments.get(ENDPOINT)
    assert decision.revision == deployment.revision
    assert deployment.spec.policy == "canary"
    assert deployment.spec.serving_weights() == {"champion": 0.9, "challenger": 0.1}
    last = project.deployments.history(ENDPOINT)[-1]
    assert last["evidence"]["rule"] == "start"
    with pytest.raises(ConflictError, match="already has a rollout plan"):
        project.rollout.start(ENDPOINT, {**PLAN, "challenger": "m:2"}, actor="ana")


def test_a_better_challenger_advances_step_by_step_and_is_promoted(project: Project) -> None:
    project.rollout.start(
        ENDPOINT, {**PLAN, "challenger": "m:2", "require_blessed": False}, actor="ana"
    )
    quality = {"champion": 0.3, "challenger": 0.7}
    t = T0
    actions = []
    for hour in range(12):
        traffic(project, t, 1, quality=quality, seed=hour)
        t += timedelta(hours=1)
        advance_clock(project, t)
        actions += [d.action for d in project.rollout.run_once()]
        if "promote" in actions:
            break
    assert actions[0] == "hold", actions  # the first step bakes
    assert "advance" in actions, actions
    assert actions[-1] == "promote", actions
    deployment = project.deployments.get(ENDPOINT)
    assert deployment.spec.champion is not None
    assert deployment.spec.champion.model == "m:2"
    assert project.registry.aliases("m")["champion"] == 2
    assert project.registry.aliases("m")["previous"] == 1
    history = project.deployments.history(ENDPOINT)
    promote = history[-1]
    assert promote["action"] == "promote"
    assert promote["evidence"]["rule"] == "promote"
    assert promote["evidence"]["comparison"]["verdict"] == "better"
    # the old champion stays loaded (standby) until the decommission delay has passed
    advance_clock(project, t + timedelta(hours=1))
    assert [d.action for d in project.rollout.run_once()] == ["hold"]
    advance_clock(project, t + timedelta(hours=3))
    assert [d.action for d in project.rollout.run_once()] == ["decommission"]
    assert project.deployments.get(ENDPOINT).spec.policy == "single"
    assert project.rollout.status(ENDPOINT)["status"] == "completed"


def test_a_worse_challenger_is_rolled_back_at_once(project: Project) -> None:
    project.rollout.start(
        ENDPOINT, {**PLAN, "challenger": "m:2", "require_blessed": False}, actor="ana"
    )
    traffic(project, T0, 3, quality={"champion": 0.7, "challenger": 0.0}, per_hour=1500)
    advance_clock(project, T0 + timedelta(minutes=30))  # still baking: rollback does not wait
    (decision,) = project.rollout.run_once()
    assert decision.action == "rollback", decision.reason
    deployment = project.deployments.get(ENDPOINT)
    assert deployment.spec.policy == "single"
    assert deployment.spec.champion.model == "m:1"
    assert project.registry.aliases("m")["champion"] == 1
    assert project.deployments.history(ENDPOINT)[-1]["evidence"]["rule"] == "worse"
    assert project.rollout.run_once() == []  # the plan is over


def test_a_guardrail_breach_rolls_back_a_better_challenger(project: Project) -> None:
    project.rollout.start(
        ENDPOINT, {**PLAN, "challenger": "m:2", "require_blessed": False}, actor="ana"
    )
    traffic(
        project, T0, 3, quality={"champion": 0.3, "challenger": 0.7},
        errors={"challenger": 0.3}, per_hour=1500,
    )  # fmt: skip
    advance_clock(project, T0 + timedelta(hours=3))
    (decision,) = project.rollout.run_once()
    assert (decision.action, decision.evidence["rule"]) == ("rollback", "guardrail")
    assert "error_rate" in decision.reason


def test_promotion_refuses_a_version_that_is_not_blessed(project: Project) -> None:
    project.rollout.start(ENDPOINT, {**PLAN, "challenger": "m:2"}, actor="ana")
    before = project.deployments.get(ENDPOINT)
    with pytest.raises(StateError, match="BLESSED"):
        project.rollout.promote(ENDPOINT, actor="ana")
    assert project.deployments.get(ENDPOINT) == before
    assert project.registry.aliases("m")["champion"] == 1


def test_rollback_after_promotion_restores_the_previous_champion(project: Project) -> None:
    project.rollout.start(
        ENDPOINT, {**PLAN, "challenger": "m:2", "require_blessed": False}, actor="ana"
    )
    project.rollout.promote(ENDPOINT, actor="ana")
    assert project.registry.aliases("m")["champion"] == 2
    project.rollout.rollback(ENDPOINT, actor="ana", reason="regret")
    deployment = project.deployments.get(ENDPOINT)
    assert deployment.spec.champion is not None
    assert deployment.spec.champion.model == "m:1"
    assert project.registry.aliases("m")["champion"] == 1


def test_two_controllers_never_act_at_once(project: Project) -> None:
    project.rollout.start(
        ENDPOINT, {**PLAN, "challenger": "m:2", "require_blessed": False}, actor="ana"
    )
    other = Rollouts(project.db, project.deployments, project.logs, project.clock)
    assert project.rollout.run_once() != []
    with pytest.raises(ConflictError, match="holds the project's lease"):
        other.run_once()
    project.rollout.release()
    assert other.run_once() != []


def test_a_corrupt_log_file_is_set_aside_and_the_pass_still_decides(project: Project) -> None:
    project.rollout.start(
        ENDPOINT, {**PLAN, "challenger": "m:2", "require_blessed": False}, actor="ana"
    )
    traffic(project, T0, 2, quality={"champion": 0.7, "challenger": 0.0}, per_hour=1500)
    partitions = sorted((project.state_dir / "logs" / "predictions").rglob("hour=*"))
    bad = partitions[0] / "zz-corrupt.parquet"
    bad.write_bytes(b"not parquet at all")
    advance_clock(project, T0 + timedelta(hours=2))
    (decision,) = project.rollout.run_once()
    assert decision.action == "rollback", decision.reason  # decided on the readable files
    assert not bad.exists()
    assert list((project.state_dir / "logs" / "quarantine").rglob("zz-corrupt.parquet"))
