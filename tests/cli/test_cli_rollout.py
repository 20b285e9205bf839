"""`prodml rollout …` and `prodml ab …` end to end through the CLI: a plan's life
(start, status, pause, resume, rollback, promote), controller passes once and in a watch
loop (with the lease held elsewhere too), bad flags and bad plans, the sample-size
goldens and an experiment analysis over logged predictions and labels."""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli import app
from prodml.registry import DeploymentSpec
from prodml.storage import Lease
from servingkit import lr_model, register

runner = CliRunner(env={"COLUMNS": "400"})  # usage errors print on one line
T0 = datetime(2013, 6, 1, tzinfo=UTC)


def run(*args: str) -> tuple[int, Any]:
    """``prodml ARGS --json``: the exit code and the parsed output (else the raw text)."""
    result = runner.invoke(app, [*args, "--json"])
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def root(tmp_path: Path) -> str:
    """``lr:1`` (champion) and ``lr:2``, both approved; ``lr:1`` serves endpoint ``lr``."""
    project = Project.init(tmp_path / "p", name="cli-rollout")
    for C in (1.0, 0.1):
        model, X = lr_model(C=C)
        register(project, model, X)
    project.registry.set_alias("lr", "champion", "lr:1", actor="test")
    project.deployments.deploy("lr", DeploymentSpec.single("lr:1"), actor="test")
    project.close()
    return str(tmp_path / "p")


def weights(out: dict[str, Any]) -> dict[str, tuple[str, float]]:
    return {a["name"]: (a["model"], a["weight"]) for a in out["spec"]["arms"]}


def test_a_plan_deploys_its_first_step_and_is_paused_resumed_and_rolled_back(root: str) -> None:
    code, out = run(
        "rollout", "plan", "lr", "--challenger", "lr:2", "--steps", "0.05,50%", "--bake", "30m",
        "--min-samples", "10", "--guardrail", "error_rate=0.02",
        "--guardrail", "p99_latency_ms=50%", "--reason", "try lr:2", "--actor", "ann", "-p", root,
    )  # fmt: skip
    assert code == 0, out
    assert (out["action"], out["status"], out["revision"]) == ("start", "active", 2)
    code, out = run("deployments", "show", "lr", "-p", root)
    assert out["spec"]["policy"] == "canary"
    assert weights(out) == {
        "champion": ("lr:1", pytest.approx(0.95)),
        "challenger": ("lr:2", pytest.approx(0.05)),
    }

    code, out = run("rollout", "status", "lr", "-p", root)
    assert code == 0, out
    assert out["status"] == "active"
    plan = out["plan"]
    assert [(s["weight"], s["bake_s"], s["min_samples"]) for s in plan["steps"]] == [
        (0.05, 1800.0, 10),
        (0.5, 1800.0, 10),
    ]
    assert plan["guardrails"] == [
        {"metric": "error_rate", "margin": 0.02, "relative": False},
        {"metric": "fallback_rate", "margin": 0.01, "relative": False},  # a default kept
        {"metric": "p99_latency_ms", "margin": 0.5, "relative": True},
        {"metric": "prediction_shift", "margin": 0.25, "relative": False},  # a default kept
    ]
    assert out["state"]["step"] == 0
    assert [d["decision"] for d in out["decisions"]] == ["start"]

    for action, status in (("pause", "paused"), ("resume", "active")):
        code, out = run("rollout", action, "lr", "--reason", action, "-p", root)
        assert code == 0, out
        assert (out["action"], out["status"]) == (action, status)

    human = runner.invoke(app, ["rollout", "status", "lr", "-p", root], env={"COLUMNS": "200"})
    assert human.exit_code == 0, human.output
    assert "◀ current" in human.output
    assert "p99_latency_ms" in human.output

    code, out = run("rollout", "rollback", "lr", "--reason", "changed my mind", "-p", root)
    assert code == 0, out
    assert (out["action"], out["status"], out["reason"]) == (
        "rollback",
        "rolled_back",
        "changed my mind",
    )
    code, out = run("deployments", "show", "lr", "-p", root)
    assert out["spec"]["policy"] == "single"
    assert weights(out) == {"champion": ("lr:1", 1.0)}
    code, out = run("deployments", "history", "lr", "-p", root)
    assert [h["action"] for h in out["history"]] == ["deploy", "deploy", "rollback"]
    code, out = run("rollout", "status", "lr", "-p", root)
    assert out["status"] == "rolled_back"
    assert {"start", "pause", "resume", "rollback"} <= {d["decision"] for d in out["decisions"]}


def test_a_promote_moves_the_champion_alias_and_a_rollback_restores_it(root: str) -> None:
    code, out = run(
        "rollout", "plan", "lr", "--challenger", "lr:2", "--no-require-blessed", "-p", root
    )
    assert code == 0, out
    code, out = run("rollout", "promote", "lr", "--reason", "won", "-p", root)
    assert code == 0, out
    assert (out["action"], out["status"]) == ("promote", "promoted")
    code, out = run("models", "show", "lr@champion", "-p", root)
    assert out["ref"] == "lr:2", out
    code, out = run("rollout", "rollback", "lr", "-p", root)
    assert code == 0, out
    code, out = run("models", "show", "lr@champion", "-p", root)
    assert out["ref"] == "lr:1", out


def test_a_plan_file_is_read_and_the_flags_given_override_it(root: str, tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(
        'challenger = "lr:2"\nmetric = "brier"\nmax_duration = "7d"\n'
        '[[steps]]\nweight = 0.1\nbake = "2h"\nmin_samples = 5\n'
        "[[steps]]\nweight = 0.3\n"
        '[[guardrails]]\nmetric = "error_rate"\nmargin = 0.05\n'
    )
    code, out = run(
        "rollout", "plan", "lr", "--file", str(path), "--min-samples", "50",
        "--guardrail", "fallback_rate=0.01", "--require-approval", "-p", root,
    )  # fmt: skip
    assert code == 0, out
    code, out = run("rollout", "status", "lr", "-p", root)
    plan = out["plan"]
    assert [(s["weight"], s["bake_s"], s["min_samples"]) for s in plan["steps"]] == [
        (0.1, 7200.0, 50),
        (0.3, 3600.0, 50),
    ]
    assert (plan["metric"], plan["max_duration_s"], plan["require_approval"]) == (
        "brier",
        7 * 86400.0,
        True,
    )
    assert [g["metric"] for g in plan["guardrails"]] == ["error_rate", "fallback_rate"]


def test_an_ab_plan_sets_the_weights_of_an_ab_deployment(root: str) -> None:
    code, out = run(
        "deploy", "lr", "--policy", "ab", "--arm", "champion=lr:1", "--arm", "b=lr:2", "-p", root
    )
    assert code == 0, out
    code, out = run(
        "rollout", "plan", "lr", "--kind", "ab", "--weight", "champion=0.7", "--weight", "b=30%",
        "--max-duration", "7d", "-p", root,
    )  # fmt: skip
    assert code == 0, out
    code, out = run("deployments", "show", "lr", "-p", root)
    assert weights(out) == {"champion": ("lr:1", 0.7), "b": ("lr:2", 0.3)}
    code, out = run("rollout", "status", "lr", "-p", root)
    assert (out["plan"]["kind"], out["plan"]["weights"]) == ("ab", {"champion": 0.7, "b": 0.3})


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("--steps", "0.1,x"), "--steps"),
        (("--guardrail", "error_rate"), "--guardrail"),
        (("--guardrail", "error_rate=lots"), "--guardrail"),
        (("--kind", "ab", "--weight", "champion=half"), "--weight"),
        (("--bake", "soon"), "--bake"),
        (("--max-duration", "-5"), "--max-duration"),
        (("--kind", "blue"), "--kind"),
        (("--file", "missing.toml"), "--file"),
        (("--file", "plan.yaml"), "--file"),
    ],
)
def test_flags_that_cannot_be_read_are_usage_errors_naming_the_flag(
    root: str, args: tuple[str, ...], flag: str
) -> None:
    result = runner.invoke(
        app, ["rollout", "plan", "lr", "--challenger", "lr:2", *args, "-p", root]
    )
    assert result.exit_code == 2, result.output
    assert flag in result.output
    code, out = run("rollout", "status", "lr", "-p", root)
    assert code == 13
    assert "no rollout plan" in out["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--challenger", "lr:2", "--steps", "0.5,0.1"), "increase"),
        (("--challenger", "lr:2", "--metric", "auc"), "'auc' is unknown"),
        (("--challenger", "lr:2", "--guardrail", "latency=1"), "'latency' is unknown"),
        (("--kind", "ab", "--weight", "a=0.5", "--weight", "b=0.4"), "sum to 1"),
        ((), "challenger"),
    ],
)
def test_a_plan_that_does_not_hold_together_is_a_definition_error(
    root: str, args: tuple[str, ...], message: str
) -> None:
    code, out = run("rollout", "plan", "lr", *args, "-p", root)
    assert code == 6, out
    assert out["type"] == "DefinitionError"
    assert message in out["error"]
    code, out = run("deployments", "show", "lr", "-p", root)
    assert out["revision"] == 1  # no half-applied change


def test_a_bad_plan_file_is_a_usage_error(root: str, tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text("challenger = \n")
    result = runner.invoke(app, ["rollout", "plan", "lr", "--file", str(path), "-p", root])
    assert result.exit_code == 2
    assert "not valid TOML" in result.output


def test_commands_on_an_endpoint_without_a_plan_name_it(root: str) -> None:
    for action in ("status", "pause", "advance", "rollback"):
        code, out = run("rollout", action, "lr", "-p", root)
        assert code == 13, (action, out)
        assert "'lr' has no rollout plan" in out["error"]


# -- passes -----------------------------------------------------------------------------


def test_a_pass_holds_a_baking_step_and_releases_the_lease(root: str) -> None:
    code, out = run("rollout", "plan", "lr", "--challenger", "lr:2", "-p", root)
    assert code == 0, out
    code, out = run("rollout", "run", "-p", root)
    assert code == 0, out
    [decision] = out["decisions"]
    assert (decision["endpoint"], decision["action"], decision["status"]) == (
        "lr",
        "hold",
        "active",
    )
    assert decision["evidence"]["rule"] == "baking"
    code, out = run("rollout", "run", "other", "-p", root)
    assert (code, out) == (0, {"decisions": []})
    with Project.open(root) as project:
        assert Lease(project.db, "rollout", "x", ttl_s=60, clock=project.clock).current() is None


def test_a_pass_while_another_controller_holds_the_lease_is_refused(root: str) -> None:
    with Project.open(root) as project:
        other = Lease(project.db, "rollout", "elsewhere:1", ttl_s=600, clock=project.clock)
        assert other.acquire()
        code, out = run("rollout", "run", "-p", root)
        assert code == 10, out
        assert out["type"] == "ConflictError"
        assert "elsewhere:1" in out["error"]
        # a watch stands by, says so once, and exits cleanly after its passes
        result = runner.invoke(
            app, ["rollout", "watch", "--passes", "3", "--interval", "0.01", "--json", "-p", root]
        )
        assert result.exit_code == 0, result.output
        events = [json.loads(line) for line in result.stdout.splitlines()]
        assert [e["event"] for e in events] == ["standby"]
        assert "elsewhere:1" in events[0]["message"]
        info = other.current()
        assert info is not None
        assert info.holder == "elsewhere:1"


def test_watch_runs_its_passes_and_prints_a_repeated_hold_once(root: str) -> None:
    code, out = run("rollout", "plan", "lr", "--challenger", "lr:2", "-p", root)
    assert code == 0, out
    result = runner.invoke(app, ["rollout", "watch", "--passes", "1", "-p", root])
    assert result.exit_code == 0, result.output
    assert "hold" in result.output
    result = runner.invoke(
        app, ["rollout", "watch", "lr", "--passes", "3", "--interval", "0.01", "--json", "-p", root]
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["event"], e["action"]) for e in events] == [("decision", "hold")]
    code, out = run("rollout", "status", "lr", "-p", root)
    assert out["state"]["passes"] == 4


def test_watch_stops_on_sigterm_and_releases_the_lease(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prodml.rollout import Rollouts

    run_once = Rollouts.run_once
    passes: list[int] = []

    def counting(self: Rollouts, *args: Any, **kwargs: Any) -> Any:
        passes.append(1)
        if len(passes) == 2:  # the handler is installed by now: SIGTERM ends the loop
            os.kill(os.getpid(), signal.SIGTERM)
        return run_once(self, *args, **kwargs)

    monkeypatch.setattr(Rollouts, "run_once", counting)
    before = signal.getsignal(signal.SIGTERM)
    result = runner.invoke(app, ["rollout", "watch", "--interval", "0.01", "-p", root])
    assert result.exit_code == 0, result.output
    assert len(passes) == 2
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    with Project.open(root) as project:
        assert Lease(project.db, "rollout", "x", ttl_s=60, clock=project.clock).current() is None


def test_watch_refuses_a_non_positive_interval(root: str) -> None:
    result = runner.invoke(app, ["rollout", "watch", "--interval", "0", "-p", root])
    assert result.exit_code == 2
    assert "--interval" in result.output


# -- ab ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "n", "exact"),
    [("unpooled", 14_749, 14_748.05), ("pooled", 14_751, 14_750.79), ("cohen", 14_745, 14_744.14)],
)
def test_ab_size_gives_the_golden_sample_sizes(method: str, n: int, exact: float) -> None:
    code, out = run("ab", "size", "--baseline", "0.10", "--target", "0.11", "--method", method)
    assert code == 0, out
    assert (out["n_control"], out["n_treatment"], out["total"]) == (n, n, 2 * n)
    assert out["n_control_exact"] == pytest.approx(exact, abs=0.005)
    assert (out["alpha"], out["power"], out["alternative"]) == (0.05, 0.8, "two-sided")


def test_ab_size_reads_an_effect_as_a_difference_a_lift_or_of_means() -> None:
    golden = run("ab", "size", "--baseline", "0.1", "--target", "0.11")[1]["n_control"]
    assert run("ab", "size", "--baseline", "0.1", "--mde", "0.01")[1]["n_control"] == golden
    lift = run("ab", "size", "--baseline", "0.1", "--mde", "0.1", "--relative")[1]
    assert (lift["target"], lift["n_control"]) == (pytest.approx(0.11), golden)
    code, out = run("ab", "size", "--sd", "2", "--mde", "0.5")
    assert (code, out["metric"], out["n_control"]) == (0, "mean", 252)
    code, out = run(
        "ab", "size", "--sd", "2", "--sd-treatment", "3", "--mde", "0.5", "--ratio", "2"
    )
    assert out["n_treatment"] == pytest.approx(2 * out["n_control"], abs=1)
    one = run("ab", "size", "--baseline", "0.1", "--target", "0.11", "--one-sided")[1]
    assert one["n_control"] < golden
    human = runner.invoke(app, ["ab", "size", "--baseline", "0.1", "--target", "0.11"])
    assert human.exit_code == 0
    assert "14,749" in human.output
    assert "14,748.05" in human.output


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        ((), "--baseline"),
        (("--baseline", "0.1", "--sd", "2", "--mde", "1"), "--sd"),
        (("--baseline", "0.1"), "--target"),
        (("--baseline", "0.1", "--target", "0.2", "--mde", "0.1"), "--mde"),
        (("--baseline", "1.5", "--target", "0.2"), "--baseline"),
        (("--baseline", "0.1", "--mde", "0"), "--mde"),
        (("--baseline", "0.1", "--target", "0.2", "--method", "exact"), "--method"),
        (("--baseline", "0.1", "--target", "0.2", "--power", "0.01"), "--power"),
        (("--sd", "2"), "--mde"),
        (("--sd", "2", "--mde", "1", "--method", "pooled"), "--method"),
    ],
)
def test_ab_size_refuses_inputs_it_cannot_use_naming_the_flag(
    args: tuple[str, ...], flag: str
) -> None:
    result = runner.invoke(app, ["ab", "size", *args])
    assert result.exit_code == 2, result.output
    assert flag in result.output


def _log_experiment(root: str, n: int = 400, *, start: datetime = T0, deploy: bool = True) -> None:
    """``n`` labelled predictions per arm of a 50/50 canary of ``lr:2`` on ``lr`` (deployed
    unless ``deploy`` is false), over the hours after ``start``; the challenger's scores
    are better."""
    rng = np.random.default_rng(0)
    with Project.open(root) as project:
        if deploy:
            project.deployments.deploy(
                "lr", DeploymentSpec.canary("lr:1", "lr:2", weight=0.5), actor="test"
            )
        labels = rng.random(2 * n) < 0.3
        with (
            project.logs.predictions.open_writer(clock=project.clock) as predictions,
            project.logs.labels.open_writer(clock=project.clock) as feedback,
        ):
            for i in range(2 * n):
                arm = "champion" if i % 2 == 0 else "challenger"
                noise = 0.35 if arm == "champion" else 0.15
                score = float(np.clip(labels[i] * 0.6 + 0.2 + rng.normal(0, noise), 0.01, 0.99))
                at = start + timedelta(seconds=20 * i)
                predictions.append(
                    {"time": at, "endpoint": "lr", "request_id": f"r{i}", "row": 0, "arm": arm,
                     "role": arm, "model_version": "lr:1" if arm == "champion" else "lr:2",
                     "unit": f"u{i}", "shadow": False, "status": "ok", "latency_ms": 5.0,
                     "output": score}
                )  # fmt: skip
                feedback.append(
                    {"time": at + timedelta(minutes=5), "endpoint": "lr", "request_id": f"r{i}",
                     "row": 0, "label": bool(labels[i]), "source": "test"}
                )  # fmt: skip


def test_ab_analyze_compares_the_arms_over_the_logs(root: str) -> None:
    _log_experiment(root)
    window = ("--start", "2013-06-01T00:00:00", "--end", "2013-06-02T00:00:00")
    code, out = run("ab", "analyze", "lr", *window, "--metric", "log_loss", "-p", root)
    assert code == 0, out
    assert {a["arm"] for a in out["arms"]} == {"champion", "challenger"}
    [comparison] = out["comparisons"]
    assert comparison["arm"] == "challenger"
    assert (comparison["n_champion"], comparison["n_arm"]) == (400, 400)
    assert comparison["improvement"] > 0  # lower log loss is better
    # no plan: the default guardrails, and the split checked against the deployment's
    assert [g["metric"] for g in comparison["guardrails"]] == [
        "error_rate", "fallback_rate", "p99_latency_ms", "prediction_shift",
    ]  # fmt: skip
    # the records predate the deployment's last change: no split of its to check yet
    assert out["srm"] is None

    code, out = run(
        "ab", "analyze", "lr", *window, "--guardrail", "error_rate=0.5", "--bucket", "hour",
        "-p", root,
    )  # fmt: skip
    assert code == 0, out
    [comparison] = out["comparisons"]
    assert [g["metric"] for g in comparison["guardrails"]] == ["error_rate"]

    human = runner.invoke(app, ["ab", "analyze", "lr", *window, "-p", root])
    assert human.exit_code == 0, human.output
    assert "challenger" in human.output
    assert "SRM" in human.output


def test_rollout_report_draws_the_experiment_and_its_decisions(root: str, tmp_path: Path) -> None:
    code, out = run("rollout", "plan", "lr", "--challenger", "lr:2", "--steps", "0.5", "-p", root)
    assert code == 0, out
    _log_experiment(root, start=datetime.now(UTC), deploy=False)  # traffic after the start
    page = tmp_path / "rollout.html"
    code, out = run("rollout", "report", "lr", "-o", str(page), "-p", root)
    assert code == 0, out
    html = page.read_text(encoding="utf-8")
    assert "<h1>Rollout of lr</h1>" in html
    assert "challenger against the champion" in html
    assert "<svg" in html
    assert "Decisions" in html
    assert "start" in html
    assert "http://" not in html.replace("http://www.w3.org", "")  # nothing fetched


def test_ab_analyze_refuses_a_bad_window_or_bucket(root: str) -> None:
    late_first = ("--start", "2013-06-02T00:00:00", "--end", "2013-06-01T00:00:00")
    result = runner.invoke(app, ["ab", "analyze", "lr", *late_first, "-p", root])
    assert result.exit_code == 2
    result = runner.invoke(app, ["ab", "analyze", "lr", "--bucket", "week", "-p", root])
    assert result.exit_code == 2
    assert "--bucket" in result.output
    code, out = run("ab", "analyze", "lr", "--guardrail", "latency=1", "-p", root)
    assert code == 6, out
