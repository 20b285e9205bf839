"""``prodml controller run | status | history | watch`` on a project whose champion's
realized ROC-AUC fell: one pass starts one recorded retrain job; ``--json`` everywhere."""

from __future__ import annotations

import json
from pathlib import Path

from tests.retraining.test_retraining_controller import NOW, opened, root, window
from typer.testing import CliRunner

from prodml.cli import app
from trainkit import cli_json

__all__ = ["root"]  # the fixture, shared with the controller's tests


def _bad_windows(root: Path) -> None:
    with opened(root, NOW) as project:
        for day in range(3):
            window(project, day, 0.5)


def test_run_history_and_status(root: Path) -> None:
    _bad_windows(root)
    code, ran = cli_json("controller", "run", "-p", str(root))
    assert code == 0, ran
    (job,) = ran["jobs"]
    assert (job["policy"], job["trigger"], job["status"]) == ("perf", "performance", "succeeded")
    assert job["candidate"] == "flight_delay:2"
    code, listed = cli_json("controller", "history", "-p", str(root))
    assert code == 0
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    assert [s["name"] for s in listed["jobs"][0]["steps"]][:3] == [
        "window",
        "validate",
        "training_set",
    ]
    code, status = cli_json("controller", "status", "-p", str(root))
    assert code == 0
    assert status["policies"][0]["last_job"]["id"] == job["id"]
    assert status["lease"] is None  # the pass released it
    result = CliRunner().invoke(app, ["controller", "history", "-p", str(root)])
    assert result.exit_code == 0
    assert job["id"] in result.stdout


def test_an_unknown_policy_is_a_clear_error(root: Path) -> None:
    code, out = cli_json("controller", "run", "--policy", "nope", "-p", str(root))
    assert code != 0
    assert "retraining policy 'nope' is not configured" in out["error"]
    assert "perf" in out["error"]


def test_watch_runs_passes_and_prints_json_lines(root: Path) -> None:
    _bad_windows(root)
    result = CliRunner().invoke(
        app,
        ["controller", "watch", "--passes", "2", "--interval", "0.01", "-p", str(root), "--json"],
    )
    assert result.exit_code == 0, result.stdout
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [(e["event"], e["status"]) for e in events] == [("job", "succeeded")]
