"""`prodml train`, `prodml models …` and `prodml reproduce` end to end through the CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from prodml.cli import app
from trainkit import cli_json, make_training_project

runner = CliRunner()
WINDOW = ("--start", "2013-01-01T00:00:00", "--end", "2013-01-11T00:00:00")


run = cli_json


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cli") / "p"
    make_training_project(path).close()
    return str(path)


def test_train_approve_alias_compare_lineage_and_audit(root: str) -> None:
    code, first = run("train", *WINDOW, "--actor", "alice", "-p", root)
    assert code == 0, first
    assert first["version"] == "flight_delay:1"
    assert first["gate"]["status"] == "BLESSED"

    code, out = run("models", "alias", "flight_delay:1", "champion", "-p", root)
    assert code == 13, out  # pending: not approved yet
    assert "expected approved" in out["error"]

    code, out = run(
        "models",
        "approve",
        "flight_delay:1",
        "--reason",
        "looks good",
        "--actor",
        "bob",
        "-p",
        root,
    )
    assert code == 0, out
    assert out["status"] == "approved"
    assert out["status_actor"] == "bob"
    code, out = run("models", "approve", "flight_delay:1", "-p", root)
    assert code == 13
    assert "already approved (by bob" in out["error"]

    code, out = run("models", "alias", "flight_delay:1", "champion", "-p", root)
    assert code == 0, out
    code, second = run("train", *WINDOW, "--param", "C=0.5", "-p", root)
    assert code == 0, second
    assert second["champion"] == "flight_delay:1"
    assert second["champion_metrics"]["roc_auc"] == pytest.approx(first["metrics"]["roc_auc"])

    code, out = run("models", "list", "-p", root)
    assert out["models"] == [
        {
            "name": "flight_delay",
            "latest": 2,
            "latest_status": "pending",
            "aliases": {"champion": 1},
        }
    ]
    code, out = run("models", "show", "flight_delay", "-p", root)
    assert [v["version"] for v in out["versions"]] == [1, 2]
    code, out = run("models", "show", "flight_delay@champion", "-p", root)
    assert out["ref"] == "flight_delay:1"
    assert out["aliases"] == ["champion"]

    code, out = run("models", "compare", "flight_delay:1", "flight_delay:2", "-p", root)
    assert code == 0
    assert out["metrics"]["roc_auc"]["a"] == pytest.approx(first["metrics"]["roc_auc"])
    assert "origin=EWR" in out["slices"]

    code, lineage = run("models", "lineage", "flight_delay:2", "-p", root)
    assert code == 0
    dataset = lineage["datasets"][0]
    assert dataset["fingerprint"] == second["training_set"]
    views = {v["name"]: v for v in dataset["feature_views"]}
    assert views["weather"]["source"] == {"path": "data/weather.parquet", "type": "parquet"}
    code, back = run("models", "lineage", "--dataset", second["training_set"][:12], "-p", root)
    assert back["versions"] == ["flight_delay:1", "flight_delay:2"]
    code, back = run(
        "models",
        "lineage",
        "--feature-view",
        f"weather:{views['weather']['version'][:10]}",
        "-p",
        root,
    )
    assert back["versions"] == ["flight_delay:1", "flight_delay:2"]

    code, out = run("models", "audit", "-p", root)
    actions = [(e["actor"], e["action"], e["object_id"]) for e in out["audit"]]
    assert actions[:3] == [
        ("alice", "register", "flight_delay:1"),
        ("bob", "approve", "flight_delay:1"),
        (actions[2][0], "set_alias", "flight_delay@champion"),
    ]


def test_reproduce_reports_a_match(root: str) -> None:
    code, out = run("reproduce", "flight_delay:1", "-p", root)
    assert code == 0, out
    assert out["match"] is True
    assert out["differences"]["predictions"] == []


def test_errors_have_their_exit_codes(root: str) -> None:
    code, out = run("models", "show", "nope:1", "-p", root)
    assert code == 4
    assert "'nope' is not registered" in out["error"]
    code, out = run("models", "show", "flight_delay:99", "-p", root)
    assert code == 4
    assert "has no version 99" in out["error"]
    code, out = run("models", "reject", "flight_delay:1", "-p", root)
    assert code == 13
    code, out = run("train", "--start", "2014-01-01", "--end", "2014-02-01", "-p", root)
    assert code == 14
    assert "no labelled rows" in out["error"]
    code, out = run("models", "import", "models:/x/1", "-p", root)
    assert code == 5
    assert "no MLflow tracking URI" in out["error"]


def test_human_output_renders(root: str) -> None:
    for args, title in (
        (("models", "list"), "Models"),
        (("models", "show", "flight_delay"), "Versions of flight_delay"),
        (("models", "show", "flight_delay:1"), "Signature"),
        (("models", "lineage", "flight_delay:1"), "feature_view weather"),
        (("models", "compare", "flight_delay:1", "flight_delay@champion"), "ROC-AUC per slice"),
        (("models", "audit"), "Audit log"),
    ):
        result = runner.invoke(app, [*args, "-p", root])
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        assert title in result.stdout


def test_no_command_can_change_a_registered_version() -> None:
    """The reviewed command set: a new command touching versions must be added here, and
    none of these take a version's artifact, metrics or signature as input."""
    from prodml.cli._models import models_app

    commands = {c.name for c in models_app.registered_commands}
    assert commands == {
        "list",
        "show",
        "lineage",
        "approve",
        "reject",
        "alias",
        "compare",
        "audit",
        "import",
    }
    for command in models_app.registered_commands:
        params = set(command.callback.__code__.co_varnames) if command.callback else set()
        assert not params & {"metrics", "signature", "artifact", "digest"}, command.name
