"""The monitoring report's retraining section, on the retraining controller's test project
(a champion serving ``flight_delay`` and a performance-triggered policy): real jobs —
rolled back, promoted, rejected by the gate, failed — read from the records by
``prodml.project``'s builder and rendered by ``render_report``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import escape
from pathlib import Path

import retraining.test_retraining_controller as controller
from featurekit import T0
from monitoring.test_report import _Tags
from prodml import Project
from prodml.monitoring import render_report
from prodml.project._retrain_report import retrain_records
from retraining.test_retraining_controller import NOW, E, configure, opened, window
from trainkit import TRAIN_PY, make_training_project

root = controller.root  # the controller tests' project: champion flight_delay:1 on E

HOUR = timedelta(hours=1)
SCRIPT = "<script>alert(1)</script>"


def _with_rollout(root: Path) -> None:
    """The policy hands a blessed candidate to a one-step canary on its endpoint."""
    text = (root / "prodml.toml").read_text()
    (root / "prodml.toml").write_text(text.replace(
        "[[retraining.policies.triggers]]",
        "[retraining.policies.rollout]\nsteps = [{weight = 0.1}]\n\n[[retraining.policies.triggers]]",
        1,
    ))  # fmt: skip


def _page(project: Project) -> str:
    stored = project.monitor.stored()
    records = retrain_records(project.retraining, project.registry, project.rollout.store)
    return render_report(
        [r.window for r in stored], {r.window.id: r.results for r in stored},
        title="report", generated_at=project.clock.now(), retraining=records,
    )  # fmt: skip


def _section(page: str) -> str:
    start = page.index('<section class="endpoint" id="retraining">')
    return page[start : page.index("</main>")]


def _jobs(page: str) -> list[str]:
    """Each job's part of the retraining section, in page order."""
    parts = re.split(r'(?=<section class="arm" id="retraining-job-\d+">)', _section(page))
    return parts[1:]


def _utc(moment: datetime | str) -> str:
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return f"{value:%Y-%m-%d %H:%M}"


def test_each_job_shows_trigger_windows_split_gate_candidate_and_outcome(root: Path) -> None:
    _with_rollout(root)
    with opened(root, NOW) as project:
        for day in range(3):
            window(project, day, 0.5)
        (first,) = project.retraining.run_once()  # the trigger fires: flight_delay:2
        rolled_back = project.rollout.rollback(E, actor="carol", reason="canary <errors> up")
    with opened(root, NOW + HOUR) as project:
        (second,) = project.retraining.run_once(force=True)  # flight_delay:3
        promoted = project.rollout.promote(E, actor="dave", reason="canary held & better")
    text = (root / "train.py").read_text().replace('params={"C": 1.0}', 'params={"C": 1e-6}')
    (root / "train.py").write_text(text)
    with opened(root, NOW + 2 * HOUR) as project:
        (third,) = project.retraining.run_once(force=True)  # the gate rejects flight_delay:4
        assert [j.status for j in (first, second, third)] == ["succeeded", "succeeded", "rejected"]
        versions = {j.id: project.registry.get(j.candidate or "") for j in (first, second, third)}
        page = _page(project)

    parser = _Tags()
    parser.feed(page)
    parser.close()
    assert (parser.errors, parser.stack) == ([], [])
    assert '<a href="#retraining">Retraining</a>' in page
    newest, middle, oldest = _jobs(page)
    for part, job in ((newest, third), (middle, second), (oldest, first)):
        assert f"Job <code>{job.id}</code>" in part
        assert f"<b>{job.trigger}</b>: {escape(job.reason)}" in part
        assert job.window_start is not None
        assert job.window_end is not None
        assert f"{_utc(job.window_start)} → {_utc(job.window_end)} UTC" in part
        split = (versions[job.id].evaluation or {})["split"]
        assert f"test rows from {_utc(split['test_start'])} UTC" in part
        assert f"basis <b>{split['basis']}</b>" in part
        assert f"Candidate</dt><dd><code>{job.candidate}</code>" in part
        for step in job.steps:
            assert re.search(
                rf"<tr><td>{step['name']}</td><td>{step['status']}</td><td>[^<]+</td>"
                rf"<td>\d+\.\d\d s</td>", part
            ), step["name"]  # fmt: skip
    assert first.trigger == "performance"
    assert "performance.roc_auc" in oldest  # the trigger's evidence
    assert "<b>BLESSED</b> against <code>flight_delay:1</code>" in oldest
    assert "Failed gate checks" not in oldest
    assert (f'<b class="outcome">Rolled back</b> {_utc(rolled_back.time)} UTC by carol on '
            f"<code>{E}</code>") in oldest  # fmt: skip
    assert "canary &lt;errors&gt; up" in oldest
    assert f'<b class="outcome">Promoted</b> {_utc(promoted.time)} UTC by dave' in middle
    assert "canary held &amp; better" in middle
    # The rejected candidate: the gate's verdict and each failed check's detail, as stored.
    gate = versions[third.id].gate or {}
    failed = [c for c in gate["checks"] if not c["passed"]]
    assert failed
    assert '<b class="bad">NOT_BLESSED</b> against <code>flight_delay:3</code>' in newest
    assert f"{len(failed)} of {len(gate['checks'])} checks failed" in newest
    for check in failed:
        assert f'<td>{escape(check["name"])}</td><td class="details">{escape(check["detail"])}</td>' in newest  # fmt: skip
    assert "the candidate was not handed to a rollout" in newest
    summary = _section(page).split('<section class="arm"')[0]
    assert summary.index(third.id) < summary.index(second.id) < summary.index(first.id)
    assert "rolled back " + _utc(rolled_back.time) in summary
    assert '<span class="badge failed">rejected</span>' in summary


def test_a_job_error_is_escaped(root: Path) -> None:
    broken = TRAIN_PY.replace(
        "    model = make_pipeline(",
        f"    raise RuntimeError({SCRIPT!r})\n    model = make_pipeline(",
    )
    (root / "train.py").write_text(broken)
    with opened(root, NOW) as project:
        for day in range(3):
            window(project, day, 0.5)
        (job,) = project.retraining.run_once()
        assert job.status == "failed"
        assert SCRIPT in (job.error or "")
        page = _page(project)
    assert "<script" not in page.lower()
    (part,) = _jobs(page)
    assert f'<span class="bad job-error">{escape(job.error or "")}</span>' in part
    assert '<td>train</td><td class="bad">failed</td>' in part
    assert escape(SCRIPT) in part.split("<td>train</td>")[1]  # the failed step's error
    assert "Candidate</dt><dd>— (no version registered)" in part
    assert "Gate</dt><dd>— (not evaluated)" in part


def test_no_job_shows_a_note_not_an_empty_table(tmp_path: Path) -> None:
    make_training_project(tmp_path / "p").close()
    configure(tmp_path / "p")
    with opened(tmp_path / "p", T0) as project:
        assert project.retraining.history() == []
        page = _page(project)
        without = render_report([], {}, title="report", generated_at=project.clock.now())
    section = _section(page)
    assert "No retrain job has run" in section
    assert "<table" not in section
    assert 'id="retraining"' not in without  # a caller that hands no records: no section


def test_prodml_monitor_report_writes_the_page_with_its_jobs_readable_by_all(root: Path) -> None:
    from trainkit import cli_json

    with opened(root, NOW) as project:
        for day in range(3):
            window(project, day, 0.5)
        (job,) = project.retraining.run_once()
    page = root / "out" / "report.html"
    code, out = cli_json("monitor", "report", "-o", str(page), "-p", str(root))
    assert code == 0, out
    assert out == {
        "path": str(page), "windows": 3, "retrain_jobs": 1, "bytes": page.stat().st_size,
    }  # fmt: skip
    assert page.stat().st_mode & 0o777 == 0o644  # a page to open and share, not a secret
    html = page.read_text(encoding="utf-8")
    assert 'id="retraining"' in html
    assert job.id in html
    assert [p.name for p in page.parent.iterdir()] == ["report.html"]  # no temp file left
