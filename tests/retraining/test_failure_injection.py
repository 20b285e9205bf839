"""Failure injection with a live server in front of the project (the issue's must-show):
a training function that raises, a candidate the gate rejects, invalid data in the new
window, and a canary that breaks a guardrail. In each case every client request is
answered (200) by the champion — before, while and after the controllers act — the job
is recorded with its reason, and the failure raises one alert per job: a second pass
with nothing new adds none.

The app runs in-process (``TestClient`` over ``prodml.project.serving_app``) on the
retraining controller tests' project (:mod:`retraining.test_retraining_controller`):
``flight_delay:1`` trained on the first six days serves ``flight_delay`` alone, a
performance policy fires on three bad monitoring windows. The canary's fault is injected
into the challenger's loaded model inside the running server only, so the registry's
artifact and the champion are untouched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

import retraining.test_retraining_controller as controller
from prodml import Project
from prodml.core import SimulatedClock
from prodml.project import serving_app
from prodml.registry import DeploymentSpec, Guardrails
from prodml.retraining import FAILED_RULE, REJECTED_RULE
from prodml.rollout import ROLLED_BACK_RULE
from prodml.serving import ServingRuntime
from prodml.storage import read_log
from retraining.test_retraining_controller import BROKEN_TRAIN, NOW, E, opened, window
from rolloutkit import wait_until

root = controller.root  # champion flight_delay:1 serving E alone, a performance policy

CHAMPION = "flight_delay:1"
RULES = (FAILED_RULE, REJECTED_RULE, ROLLED_BACK_RULE)
ROUTES = [("EWR", "N1"), ("JFK", "N2"), ("LGA", "N3")]
#: The server follows deployment revisions this often (the default is 1 s).
SERVING = "\n[serving]\nwatch_interval_s = 0.1\n"


# -- the project and its server ----------------------------------------------------------
@pytest.fixture
def served(root: Path) -> Path:
    """The controller tests' project with its online store materialized (native
    requests fetch their features) and a server that follows deployments quickly."""
    with (root / "prodml.toml").open("a") as f:
        f.write(SERVING)
    with opened(root, NOW) as project:
        project.features.materialize(end=NOW)
    return root


@contextmanager
def serving(project: Project) -> Iterator[TestClient]:
    with TestClient(serving_app(project)) as client:
        yield client


def runtime(client: TestClient) -> ServingRuntime:
    app: Any = client.app
    found: ServingRuntime = app.state.server.runtime
    return found


def ask(client: TestClient, count: int, tag: str) -> list[dict[str, Any]]:
    """``count`` native predictions (request ids ``tag-i``), each answered 200."""
    answers = []
    for i in range(count):
        origin, tailnum = ROUTES[i % len(ROUTES)]
        body = {
            "entities": {"origin": origin, "tailnum": tailnum},
            "request_data": {"sched_dep_time": 600 + (i * 97) % 1700},
            "id": f"{tag}-{i}",
        }
        response = client.post(f"/v1/endpoints/{E}/predict", json=body)
        assert response.status_code == 200, f"{tag}-{i}: {response.status_code} {response.text}"
        answers.append(response.json())
    return answers


class Traffic:
    """Requests sent from another thread until stopped: the load while a pass runs."""

    def __init__(self, client: TestClient, tag: str) -> None:
        self.answers: list[dict[str, Any]] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(client, tag), daemon=True)

    def _run(self, client: TestClient, tag: str) -> None:
        batch = 0
        while not self._stop.is_set():
            try:
                self.answers += ask(client, 5, f"{tag}{batch}")
            except BaseException as exc:  # reported by stop(), in the test's thread
                self.failures.append(exc)
                return
            batch += 1

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if kind is not None:  # the pass's own failure is the one to report
            return
        assert not self._thread.is_alive(), "the traffic thread did not stop within 60 s"
        assert not self.failures, self.failures
        assert self.answers, "no request was answered while the pass ran"


def by_champion(answers: list[dict[str, Any]], *, status: str = "ok") -> None:
    assert answers
    seen = {(a["model_version"], a["arm"], a["status"]) for a in answers}
    assert seen == {(CHAMPION, "champion", status)}


def revision_served(client: TestClient, revision: int) -> dict[str, Any]:
    """The server's view of ``E`` once it serves ``revision`` (or a later one)."""

    def view() -> dict[str, Any] | None:
        data: dict[str, Any] = client.get(f"/v1/endpoints/{E}").json()
        return data if data["revision"] >= revision else None

    found: dict[str, Any] = wait_until(view, timeout=30.0, what=f"{E!r} at revision {revision}")
    return found


def events(project: Project) -> dict[str, list[dict[str, Any]]]:
    """The alert events of each of the controllers' rules."""
    return {rule: project.monitor.store.events(rule) for rule in RULES}


def logged(project: Project) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = read_log(
        project.state_dir / "logs" / "predictions", partition=E
    ).to_pylist()
    return rows


# -- 1–3: the job fails or is rejected ---------------------------------------------------
def _raising_trainer(root: Path) -> None:
    (root / "train.py").write_text(BROKEN_TRAIN)


def _weak_candidate(root: Path) -> None:
    text = (root / "train.py").read_text().replace('params={"C": 1.0}', 'params={"C": 1e-6}')
    (root / "train.py").write_text(text)


def _no_label_in_the_window(root: Path) -> None:
    rows = pq.read_table(root / "data" / "rows.parquet")
    pq.write_table(rows.drop_columns(["late"]), root / "data" / "rows.parquet")


#: injection, the job's status, its alert, the failed step, words of its recorded reason,
#: how many jobs the passes run before they go quiet (a failed job is retried once)
JOB_FAILURES: dict[str, tuple[Callable[[Path], None], str, str, str | None, str, int]] = {
    "trainer_raises": (_raising_trainer, "failed", FAILED_RULE, "train", "disk full", 2),
    "gate_rejects": (_weak_candidate, "rejected", REJECTED_RULE, None, "roc_auc", 1),
    "invalid_window": (_no_label_in_the_window, "failed", FAILED_RULE, "validate", "late", 2),
}


@pytest.mark.parametrize("case", list(JOB_FAILURES))
def test_a_failed_retrain_leaves_the_champion_serving_and_alerts_once_per_job(
    served: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    inject, status, rule, step, words, runs = JOB_FAILURES[case]
    inject(served)
    with opened(served, NOW) as project, serving(project) as client:
        deployment = project.deployments.get(E)
        by_champion(ask(client, 20, "before"))
        for day in range(3):
            window(project, day, 0.5)  # the trigger fires on the next pass
        with Traffic(client, "during") as during, caplog.at_level(logging.WARNING, "prodml.alerts"):
            jobs = project.retraining.run_once()
            assert [j.status for j in jobs] == [status]
            job = jobs[0]
            assert job.trigger == "performance"
            assert words in (job.error or ""), job.error
            failed = [s["name"] for s in job.steps if s["status"] == "failed"]
            assert failed == ([] if step is None else [step])
            if status == "rejected":  # registered for the record, never approved
                assert project.registry.get(job.candidate or "").status == "pending"
            assert project.retraining.history()[0].to_dict() == job.to_dict()
            raised = events(project)
            assert [e["payload"]["job"] for e in raised[rule]] == [job.id]
            assert {r: len(v) for r, v in raised.items()} == {r: int(r == rule) for r in RULES}
            assert caplog.text.count(rule) == 1
            # Later passes: a failed job's retry is a job of its own, with its own alert;
            # once the passes go quiet, no alert is repeated.
            for _ in range(runs - 1):
                (retry,) = project.retraining.run_once()
                assert (retry.attempt, retry.status) == (2, status)
                assert retry.evidence["retry_of"] == job.id
                jobs.append(retry)
            assert project.retraining.run_once() == []
        by_champion(during.answers)
        ids = [e["payload"]["job"] for e in project.monitor.store.events(rule)]
        assert ids == [j.id for j in jobs]
        assert caplog.text.count(rule) == runs
        assert project.deployments.get(E).revision == deployment.revision
        assert project.deployments.get(E).spec.models() == [CHAMPION]
        assert project.registry.aliases("flight_delay")["champion"] == 1
        by_champion(ask(client, 20, "after"))
        sent = 40 + len(during.answers)
    records = logged(project)
    assert len(records) == sent
    assert {(r["model_version"], r["arm"], r["status"]) for r in records} == {
        (CHAMPION, "champion", "ok")
    }


# -- 4: the canary breaks a guardrail ----------------------------------------------------
#: A blessed candidate goes to half the traffic; the plan rolls it back when it falls
#: back to the champion (or errs) more than 1 point more often, once 20 units saw it.
ROLLOUT = """
[retraining.policies.rollout]
steps = [{weight = 0.5}]
bake = "10m"
min_samples = 20
guardrails = [{metric = "error_rate", margin = 0.01}, {metric = "fallback_rate", margin = 0.01}]

"""
TRIGGERS = "[[retraining.policies.triggers]]"


def _broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("the challenger's model fails at serving time")


def _canary_policy(root: Path, guard: str) -> None:
    """The policy hands its candidate to a canary plan. ``plan``: the deployment has no
    server guardrail on errors, so the plan's fallback_rate guardrail decides;
    ``server``: the server's default guardrail (5% errors over 20 requests) takes the
    arm out of traffic first and the rollout controller follows it."""
    text = (root / "prodml.toml").read_text().replace(TRIGGERS, ROLLOUT + TRIGGERS, 1)
    (root / "prodml.toml").write_text(text)
    if guard == "plan":
        with opened(root, NOW) as project:
            spec = DeploymentSpec.single(CHAMPION, guardrails=Guardrails(max_error_rate=None))
            project.deployments.deploy(E, spec, actor="alice")


@pytest.mark.parametrize("guard", ["plan", "server"])
def test_a_canary_that_breaks_a_guardrail_is_rolled_back_while_the_champion_answers(
    served: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, guard: str
) -> None:
    _canary_policy(served, guard)
    server_guard = guard == "server"
    with (
        opened(served, NOW) as project,
        serving(project) as client,
        caplog.at_level(logging.WARNING, "prodml.alerts"),
    ):
        clock = project.clock
        assert isinstance(clock, SimulatedClock)
        by_champion(ask(client, 20, "before"))
        clock.advance(timedelta(minutes=1))  # the canary's records start after these
        for day in range(3):
            window(project, day, 0.5)
        (job,) = project.retraining.run_once()
        assert (job.status, job.candidate) == ("succeeded", "flight_delay:2")
        hand_off = next(s for s in job.steps if s["name"] == "hand_off")
        assert hand_off["detail"]["action"] == "start"
        canary = project.deployments.get(E)
        view = revision_served(client, canary.revision)
        assert view["weights"] == {"champion": 0.5, "challenger": 0.5}

        # The fault: the challenger's model, as loaded in this server, raises.
        arms = runtime(client).tables[E].arms
        model = arms["challenger"].model.loaded.model
        assert model is not arms["champion"].model.loaded.model
        monkeypatch.setattr(model, "predict_proba", _broken)
        during = ask(client, 120, "canary")
        assert {(a["model_version"], a["arm"]) for a in during} == {(CHAMPION, "champion")}
        assert {a["status"] for a in during} == {"ok", "fallback"}
        fallbacks = sum(a["status"] == "fallback" for a in during)
        assert fallbacks >= 20  # the challenger's share, answered by the champion
        runtime(client).log.predictions.flush()  # what the rollout controller reads
        if server_guard:  # the server took the arm out and recorded it
            wait_until(
                lambda: project.deployments.history(E)[-1]["action"] == "guardrail",
                timeout=30.0,
                what="the server's guardrail trip recorded",
            )

        clock.advance(timedelta(minutes=11))  # past the step's bake
        (decision,) = project.rollout.run_once()
        assert decision.action == "rollback", decision.reason
        if server_guard:
            assert decision.evidence["rule"] == "server_guardrail"
            assert "error rate" in decision.reason
        else:
            assert decision.evidence["rule"] == "guardrail"
            assert "guardrail fallback_rate breached" in decision.reason
        back = project.deployments.get(E)
        assert (back.revision, back.spec.policy) == (decision.revision, "single")
        assert back.spec.models() == [CHAMPION]
        assert project.registry.aliases("flight_delay")["champion"] == 1
        raised = events(project)
        assert {r: len(v) for r, v in raised.items()} == {
            FAILED_RULE: 0, REJECTED_RULE: 0, ROLLED_BACK_RULE: 1
        }  # fmt: skip
        (alert,) = raised[ROLLED_BACK_RULE]
        assert alert["scope"] == f"endpoint={E}"
        assert alert["payload"]["challenger"] == "flight_delay:2"
        assert caplog.text.count(ROLLED_BACK_RULE) == 1

        # Nothing new: neither controller acts again, no alert is repeated.
        assert project.rollout.run_once() == []
        assert project.retraining.run_once() == []
        assert len(project.monitor.store.events(ROLLED_BACK_RULE)) == 1
        assert caplog.text.count(ROLLED_BACK_RULE) == 1

        # The record: the job and its candidate, the plan's decisions with the reason.
        (stored,) = project.retraining.history()
        assert (stored.status, stored.candidate) == ("succeeded", "flight_delay:2")
        status = project.rollout.status(E)
        assert status["status"] == "rolled_back"
        trail = [(d["decision"], d["actor"], d["revision"]) for d in status["decisions"]]
        assert trail == [
            ("start", "retraining-controller", canary.revision),
            ("rollback", "rollout-controller", decision.revision),
        ]
        assert status["decisions"][-1]["reason"] == decision.reason

        assert decision.revision is not None
        revision_served(client, decision.revision)
        by_champion(ask(client, 20, "after"))
    records = logged(project)
    assert len(records) == 20 + 120 + 20
    assert {(r["model_version"], r["arm"]) for r in records} == {(CHAMPION, "champion")}
    fell_back = [r for r in records if r["status"] == "fallback"]
    assert len(fell_back) == fallbacks
    assert {r["fallback_from"] for r in fell_back} == {"challenger"}
    assert {r["status"] for r in records} == {"ok", "fallback"}
