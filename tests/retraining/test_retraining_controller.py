"""The retraining controller on a small project: triggers debounced over monitoring
windows (a spike starts nothing, sustained degradation starts one job, cooldown holds
off the next), recorded jobs and their steps, failure injection (the trainer raises,
the gate rejects, invalid data, a refused hand-off) leaving the champion serving with
one alert, the lease, and a controller killed mid-job."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from featurekit import T0
from prodml import Project
from prodml.core import ConflictError, SimulatedClock
from prodml.core._config import load_config
from prodml.monitoring import Result
from prodml.registry import DeploymentSpec
from prodml.retraining import FAILED_RULE, Retraining
from prodml.storage._models import AlertEventRow, ModelVersionRow
from trainkit import TRAIN_PY, make_training_project

E = "flight_delay"
DAY = timedelta(days=1)
#: Labelled rows span [T0, T0 + 10 days); the champion learns the first six.
NOW = T0 + timedelta(days=10)

POLICY = """
[retraining]
lease_s = 60

[[retraining.policies]]
name = "perf"
model = "flight_delay"
endpoint = "flight_delay"
window = "expanding"
start = {start}
cooldown = "3d"
auto_approve = {auto_approve}
{rollout}

[[retraining.policies.triggers]]
kind = "performance"
metric = "performance.roc_auc"
threshold = 0.7
m_of_n = [2, 3]
"""


def configure(root: Path, *, auto_approve: bool = True, rollout: str = "") -> None:
    text = (root / "prodml.toml").read_text()
    policy = POLICY.format(
        start=T0.strftime("%Y-%m-%dT%H:%M:%SZ"), auto_approve=str(auto_approve).lower(),
        rollout=rollout,
    )  # fmt: skip
    (root / "prodml.toml").write_text(text + policy)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = make_training_project(tmp_path / "p")
    project.close()
    root = tmp_path / "p"
    configure(root)
    with opened(root, T0 + 6 * DAY) as project:
        first = project.training.train(T0, T0 + 6 * DAY, actor="alice")
        assert first.version is not None
        ref = first.version.ref
        project.registry.approve(ref, actor="alice")
        project.registry.set_alias(E, "champion", first.version.version, actor="alice")
        project.deployments.deploy(E, DeploymentSpec.single(ref), actor="alice")
    return root


def opened(root: Path, now: datetime) -> Project:
    return Project.open(root, clock=SimulatedClock(now))


def window(project: Project, day: int, auc: float | None, *, final: bool = True) -> None:
    """A closed daily monitoring window of the champion with a realized ROC-AUC."""
    start = T0 + day * DAY
    results = [Result("performance", "roc_auc", auc), Result("drift", "share", 0.1)]
    project.monitor.store.save_window(
        endpoint=E, arm="champion", model_version="flight_delay:1", shadow=False,
        start=start, end=start + DAY, rows=100, status="ok", results=results,
        label_rows=100, labels_final=final, now=start + DAY,
    )  # fmt: skip


def versions(project: Project) -> int:
    with project.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(ModelVersionRow)) or 0)


def alert_events(project: Project) -> list[Any]:
    with project.db.session() as session:
        return list(session.scalars(select(AlertEventRow).where(AlertEventRow.rule == FAILED_RULE)))


def test_a_one_window_spike_starts_nothing_sustained_degradation_starts_one_job(root: Path) -> None:  # fmt: skip
    with opened(root, NOW) as project:
        for day, auc in enumerate([0.8, 0.6, 0.8, 0.8]):  # one bad window: 1 of 3, no more
            window(project, day, auc)
        assert project.retraining.run_once() == []
        assert project.retraining.history() == []
        window(project, 4, 0.62)
        window(project, 5, 0.61)  # 2 of the last 3 below 0.7: fires
        jobs = project.retraining.run_once()
        assert [j.status for j in jobs] == ["succeeded"]
        job = jobs[0]
        assert job.trigger == "performance"
        assert "performance.roc_auc below 0.7 in 2 of the last 3 windows" in job.reason
        assert job.candidate == "flight_delay:2"
        assert (job.window_start, job.window_end) == (T0, NOW)
        names = [s["name"] for s in job.steps]
        assert names[:2] == ["window", "validate"]
        assert {"training_set", "train", "evaluate_and_gate", "register", "approve"} <= set(names)
        assert all(s["status"] == "ok" and s["seconds"] is not None for s in job.steps)
        assert project.registry.get("flight_delay:2").status == "approved"
        # The same windows again, and the next pass: no second job.
        assert project.retraining.run_once() == []
        stored = project.retraining.history()
        assert [j.id for j in stored] == [job.id]
        assert stored[0].to_dict() == job.to_dict()


def test_cooldown_holds_off_a_second_job(root: Path) -> None:
    with opened(root, NOW) as project:
        for day in range(3):
            window(project, day, 0.5)
        assert len(project.retraining.run_once()) == 1
    # New bad windows of the same served model, one day later: still in the cooldown.
    with opened(root, NOW + DAY) as project:
        for day in range(6, 9):
            window(project, day, 0.5)
        assert project.retraining.run_once() == []
    with opened(root, NOW + 4 * DAY) as project:
        for day in range(9, 12):
            window(project, day, 0.5)
        assert len(project.retraining.run_once()) == 1
        assert len(project.retraining.history()) == 2


def test_windows_whose_labels_are_not_final_do_not_count(root: Path) -> None:
    with opened(root, NOW) as project:
        for day in range(3):
            window(project, day, 0.5, final=False)
        assert project.retraining.run_once() == []


BROKEN_TRAIN = TRAIN_PY.replace(
    "    model = make_pipeline(", "    raise RuntimeError('disk full')\n    model = make_pipeline("
)


def _failing(root: Path, caplog: pytest.LogCaptureFixture, expected_step: str, words: str) -> None:
    with opened(root, NOW) as project:
        for day in range(3):
            window(project, day, 0.5)
        before = versions(project)
        with caplog.at_level(logging.WARNING, "prodml.alerts"):
            jobs = project.retraining.run_once()
        assert [j.status for j in jobs] == ["failed"]
        job = jobs[0]
        assert words in (job.error or "")
        failed = [s for s in job.steps if s["status"] == "failed"]
        assert [s["name"] for s in failed] == [expected_step]
        assert versions(project) == before  # nothing half-registered
        assert project.deployments.get(E).spec.arms[0].model == "flight_delay:1"
        assert len(alert_events(project)) == 1
        assert caplog.text.count(FAILED_RULE) == 1
        assert project.retraining.history()[0].to_dict() == job.to_dict()


def test_a_training_function_that_raises_fails_the_job_and_alerts_once(root: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    (root / "train.py").write_text(BROKEN_TRAIN)
    _failing(root, caplog, "train", "disk full")
    # retries = 1: the next pass retries once, then gives up.
    with opened(root, NOW + DAY) as project:
        retry = project.retraining.run_once()
        assert [(j.attempt, j.status) for j in retry] == [(2, "failed")]
        assert retry[0].evidence["retry_of"]
        assert project.retraining.run_once() == []
        assert len(alert_events(project)) == 2


def test_invalid_data_in_the_new_window_fails_at_validation(root: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    import pyarrow.parquet as pq

    rows = pq.read_table(root / "data" / "rows.parquet")
    pq.write_table(rows.drop_columns(["late"]), root / "data" / "rows.parquet")
    _failing(root, caplog, "validate", "late")


def test_a_candidate_the_gate_rejects_ends_rejected_and_the_champion_serves(root: Path) -> None:
    text = (root / "train.py").read_text().replace('params={"C": 1.0}', 'params={"C": 1e-6}')
    (root / "train.py").write_text(text)
    with opened(root, NOW) as project:
        for day in range(3):
            window(project, day, 0.5)
        jobs = project.retraining.run_once()
        assert [j.status for j in jobs] == ["rejected"]
        assert "roc_auc" in (jobs[0].error or "")
        assert project.registry.get(jobs[0].candidate or "").status == "pending"
        assert project.registry.aliases(E)["champion"] == 1
        assert project.deployments.get(E).revision == 1


def test_a_blessed_candidate_is_handed_to_the_rollout_controller(tmp_path: Path, root: Path) -> None:  # fmt: skip
    text = (
        (root / "prodml.toml")
        .read_text()
        .replace(
            "[[retraining.policies.triggers]]",
            "[retraining.policies.rollout]\nsteps = [{weight = 0.1}]\n\n[[retraining.policies.triggers]]",
            1,
        )
    )
    (root / "prodml.toml").write_text(text)
    assert load_config(root).retraining.policies[0].rollout == {"steps": [{"weight": 0.1}]}
    with opened(root, NOW) as project:
        for day in range(3):
            window(project, day, 0.5)
        jobs = project.retraining.run_once()
        assert [j.status for j in jobs] == ["succeeded"]
        hand_off = next(s for s in jobs[0].steps if s["name"] == "hand_off")
        assert hand_off["detail"]["action"] == "start"
        spec = project.deployments.get(E).spec
        arms = sorted((a.name, a.model, round(a.weight, 9)) for a in spec.arms)
        assert arms == [("challenger", "flight_delay:2", 0.1), ("champion", "flight_delay:1", 0.9)]
        # A second candidate while the rollout runs: the hand-off is refused, the job
        # fails with the reason, the running rollout is untouched.
        forced = project.retraining.run_once(force=True)
        assert [j.status for j in forced] == ["failed"]
        assert "already has a rollout plan" in (forced[0].error or "")
        assert project.deployments.get(E).spec == spec


def test_two_controllers_exactly_one_acts(root: Path) -> None:
    with opened(root, NOW) as a, opened(root, NOW) as b:
        for day in range(3):
            window(a, day, 0.5)
        assert len(a.retraining.run_once()) == 1
        with pytest.raises(ConflictError, match="another retraining controller holds"):
            b.retraining.run_once()
        a.retraining.release()
        assert b.retraining.run_once() == []  # b holds the lease now; nothing new fired


def test_a_job_left_running_by_a_killed_controller_is_abandoned_by_the_next(root: Path) -> None:
    with opened(root, NOW) as project:
        dying = project.retraining
        for day in range(3):
            window(project, day, 0.5)

        def killed(*args: Any, **kwargs: Any) -> Any:
            raise KeyboardInterrupt  # the process dies mid-step: nothing records it

        project.training.train = killed  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            dying.run_once()
        assert [j.status for j in dying.history()] == ["running"]
        before = versions(project)
    # The lease expires (60 s); another controller takes over.
    with opened(root, NOW + timedelta(seconds=61)) as project:
        other = project.retraining
        assert other.holder != dying.holder
        other.run_once(force=True)
        jobs = other.history()
        assert [j.status for j in jobs] == ["succeeded", "abandoned"]
        assert "stopped" in (jobs[1].error or "")
        assert versions(project) == before + 1


def test_status_lists_policies_their_last_job_and_trigger_states(root: Path) -> None:
    with opened(root, NOW) as project:
        for day in range(3):
            window(project, day, 0.5)
        project.retraining.run_once()
        status = project.retraining.status()
        (policy,) = status["policies"]
        assert policy["policy"] == "perf"
        assert policy["champion"] == "flight_delay:1"
        assert policy["last_job"]["status"] == "succeeded"
        assert policy["triggers"] == [
            {"kind": "performance", "metric": "performance.roc_auc", "state": "inactive"}
        ]
        assert status["lease"]["holder"] == project.retraining.holder


def test_a_schedule_fires_every_period_since_the_last_job(root: Path) -> None:
    text = (
        (root / "prodml.toml")
        .read_text()
        .replace(
            'kind = "performance"\nmetric = "performance.roc_auc"\nthreshold = 0.7\nm_of_n = [2, 3]',
            'kind = "schedule"\nevery = "5d"',
        )
    )
    (root / "prodml.toml").write_text(text)
    with opened(root, T0 + 6 * DAY + timedelta(hours=1)) as project:
        assert project.retraining.run_once() == []  # the champion is an hour old
    with opened(root, T0 + 11 * DAY + timedelta(hours=1)) as project:
        jobs = project.retraining.run_once()
        assert [j.trigger for j in jobs] == ["schedule"]
        assert project.retraining.run_once() == []


def test_retraining_is_built_by_the_project(root: Path) -> None:
    with opened(root, NOW) as project:
        assert isinstance(project.retraining, Retraining)


def test_a_monthly_schedule_fires_once_per_calendar_month(root: Path) -> None:
    text = (
        (root / "prodml.toml")
        .read_text()
        .replace(
            'kind = "performance"\nmetric = "performance.roc_auc"\nthreshold = 0.7\nm_of_n = [2, 3]',
            'kind = "schedule"\nevery = "1mo"',
        )
        .replace('cooldown = "3d"', 'cooldown = "0s"')
    )
    (root / "prodml.toml").write_text(text)
    february = T0.replace(month=2)
    for now, fired in [
        (T0 + 20 * DAY, False),  # the champion's month (January)
        (february, True),
        (february + 10 * DAY, False),
        (february.replace(month=3) + timedelta(hours=3), True),
    ]:
        with opened(root, now) as project:
            jobs = project.retraining.run_once()
            assert [j.trigger for j in jobs] == (["schedule"] if fired else []), now
            if fired:
                assert "every 1 calendar month(s)" in jobs[0].reason


# --- the challenger trigger: another arm beats the champion on live traffic ---------------

CHALLENGER_TRIGGER = """kind = "challenger"
metric = "performance.{metric}"
margin = 0.02
m_of_n = [2, 2]"""


def _challenger_policy(root: Path, metric: str = "roc_auc") -> None:
    text = (root / "prodml.toml").read_text()
    old = 'kind = "performance"\nmetric = "performance.roc_auc"\nthreshold = 0.7\nm_of_n = [2, 3]'
    assert old in text
    (root / "prodml.toml").write_text(text.replace(old, CHALLENGER_TRIGGER.format(metric=metric)))


def pair(project: Project, day: int, metric: str, champion: float, challenger: float) -> None:
    """A day's closed windows of the champion and of a shadow arm (flight_delay:9)."""
    start = T0 + day * DAY
    for arm, model, shadow, value in (
        ("champion", "flight_delay:1", False, champion),
        ("shadow", "flight_delay:9", True, challenger),
    ):
        project.monitor.store.save_window(
            endpoint=E, arm=arm, model_version=model, shadow=shadow, start=start,
            end=start + DAY, rows=100, status="ok", results=[Result("performance", metric, value)],
            label_rows=100, labels_final=True, now=start + DAY,
        )  # fmt: skip


def test_a_challenger_that_leads_in_m_of_n_windows_starts_one_job(root: Path) -> None:
    _challenger_policy(root)
    assert load_config(root).retraining.policies[0].triggers[0].threshold == 0.02
    with opened(root, NOW) as project:
        pair(project, 0, "roc_auc", 0.70, 0.75)  # leads by 0.05
        pair(project, 1, "roc_auc", 0.70, 0.71)  # by 0.01: within the margin
        assert project.retraining.run_once() == []
        pair(project, 2, "roc_auc", 0.70, 0.76)
        assert project.retraining.run_once() == []  # one window of the last two
        pair(project, 3, "roc_auc", 0.70, 0.78)
        (job,) = project.retraining.run_once()
        assert job.trigger == "challenger"
        assert "lead over the champion on performance.roc_auc above 0.02" in job.reason
        assert job.evidence["challenger"] == "flight_delay:9"
        assert job.evidence["value"] == pytest.approx(0.08)
        assert job.evidence["window_end"] == (T0 + 4 * DAY).isoformat()


def test_a_challenger_lead_on_a_lower_is_better_metric_is_the_champions_excess(root: Path) -> None:
    _challenger_policy(root, "log_loss")
    with opened(root, NOW) as project:
        pair(project, 0, "log_loss", 0.50, 0.53)  # worse: a negative lead
        pair(project, 1, "log_loss", 0.50, 0.54)
        assert project.retraining.run_once() == []
        trigger = load_config(root).retraining.policies[0].triggers[0]
        leads = project.retraining.triggers.leads(trigger, E, "flight_delay:1", None)
        assert [round(o.value or 0, 6) for o in leads] == [-0.03, -0.04]
        pair(project, 2, "log_loss", 0.50, 0.45)
        pair(project, 3, "log_loss", 0.50, 0.47)
        (job,) = project.retraining.run_once()
        assert job.trigger == "challenger"
        assert job.evidence["value"] == pytest.approx(0.03)


def test_a_challenger_trigger_takes_a_performance_metric_only() -> None:
    from prodml.core._retraining_config import TriggerConfig

    with pytest.raises(ValueError, match=r"performance\.<metric>"):
        TriggerConfig.model_validate({"kind": "challenger", "metric": "drift.share"})
    assert TriggerConfig.model_validate({"kind": "challenger"}).direction == "above"


def test_the_heartbeat_keeps_the_lease_through_a_step_longer_than_it(tmp_path: Path) -> None:
    from prodml.retraining import Heartbeat
    from prodml.storage import Lease, MetadataDB
    from rolloutkit import wait_until

    clock = SimulatedClock(NOW)
    db = MetadataDB.open(f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        ours = Lease(db, "retraining", "a", ttl_s=60, clock=clock)
        theirs = Lease(db, "retraining", "b", ttl_s=60, clock=clock)
        assert ours.acquire()

        def renewed_after(moment: datetime) -> bool:
            held = ours.current()
            return held is not None and held.expires_at > moment + timedelta(seconds=59)

        with Heartbeat(ours, interval_s=0.01) as beat:
            for _ in range(3):  # 150 s of a 60 s lease, in a "step" that never ends
                clock.advance(timedelta(seconds=50))
                wait_until(lambda: renewed_after(clock.now()), what="the lease renewed")
                assert not theirs.acquire()
        assert beat.renewals >= 3
        clock.advance(timedelta(seconds=61))  # stopped with the block: it expires
        assert theirs.acquire()
    finally:
        db.close()
