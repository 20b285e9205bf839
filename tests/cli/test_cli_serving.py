"""`prodml deploy`, `prodml deployments …`, `prodml labels import` and `prodml serve`
end to end through the CLI."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli import app
from prodml.registry import Signature
from prodml.storage import read_log
from servingkit import FEATURES, lr_model, register, row, running_server

runner = CliRunner()


def run(*args: str) -> tuple[int, Any]:
    result = runner.invoke(app, [*args, "--json"])
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def root(tmp_path: Path) -> str:
    project = Project.init(tmp_path / "p", name="cli-serving")
    for C in (1.0, 0.1):
        model, X = lr_model(C=C)
        register(project, model, X)
    project.registry.set_alias("lr", "champion", "lr:1", actor="test")
    project.close()
    return str(tmp_path / "p")


def test_deploy_resolves_aliases_and_every_change_is_in_the_history(root: str) -> None:
    code, out = run("deploy", "lr", "--model", "lr@champion", "-p", root)
    assert code == 0, out
    assert out["revision"] == 1
    assert out["spec"]["arms"][0]["model"] == "lr:1"

    code, out = run(
        "deploy", "lr", "--policy", "canary", "--arm", "champion=lr:1",
        "--arm", "challenger=lr:2", "--weight", "challenger=0.2", "--max-error-rate", "0.1",
        "--reason", "ramp", "-p", root,
    )  # fmt: skip
    assert code == 0, out
    weights = {a["name"]: a["weight"] for a in out["spec"]["arms"]}
    assert weights == {"champion": pytest.approx(0.8), "challenger": pytest.approx(0.2)}

    code, out = run("deployments", "weights", "lr", "challenger=0.5", "-p", root)
    assert code == 0, out
    assert out["revision"] == 3
    for action in ("pause", "resume", "rollback"):
        code, out = run("deployments", action, "lr", "--reason", action, "-p", root)
        assert code == 0, (action, out)
    assert out["spec"]["policy"] == "single"

    code, out = run("deployments", "history", "lr", "-p", root)
    assert code == 0, out
    assert [h["action"] for h in out["history"]] == [
        "deploy", "deploy", "set_weights", "pause", "resume", "rollback",
    ]  # fmt: skip
    code, out = run("deployments", "list", "-p", root)
    assert [d["endpoint"] for d in out["deployments"]] == ["lr"]


def test_deploy_sets_the_missing_entity_policy(root: str) -> None:
    code, out = run("deploy", "lr", "--model", "lr:1", "--on-missing-entity", "refuse", "-p", root)
    assert code == 0, out
    assert out["spec"]["on_missing_entity"] == "refuse"
    code, out = run("deploy", "lr", "--model", "lr:1", "-p", root)
    assert out["spec"]["on_missing_entity"] is None  # the server's [serving] default


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("deploy", "lr", "--model", "lr:9"), 4, "lr"),
        (("deploy", "lr", "--policy", "canary", "--arm", "champion=lr:1"), 6, "challenger"),
        (("deploy", "lr", "--arm", "champion"), 5, "NAME=VALUE"),
        (("deploy", "lr", "--model", "lr:1", "--default-response", "{oops"), 5, "not JSON"),
        (
            (
                "deploy",
                "lr",
                "--policy",
                "ab",
                "--arm",
                "a=lr:1",
                "--arm",
                "b=lr:2",
                "--weight",
                "a=half",
            ),
            5,
            "expected a number",
        ),
        (("deploy", "lr", "--model", "lr:1", "--on-missing-entity", "ignore"), 6, "refuse"),
        (("deployments", "show", "nope"), 4, "nope"),
        (("deployments", "weights", "nope", "a=1"), 4, "nope"),
    ],
)
def test_bad_deployments_are_refused_with_an_exit_code(
    root: str, args: tuple[str, ...], code: int, message: str
) -> None:
    exit_code, out = run(*args, "-p", root)
    assert exit_code == code, out
    assert message in out["error"]


def test_labels_import_writes_the_label_log_and_refuses_bad_files(
    root: str, tmp_path: Path
) -> None:
    good = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"request_id": ["a", "b", "c"], "label": [1, 0, 1]}), good)
    code, out = run("labels", "import", str(good), "--endpoint", "lr", "-p", root)
    assert code == 0, out
    assert out["rows"] == 3
    labels = read_log(Path(root) / ".prodml" / "logs" / "labels", partition="lr")
    assert sorted(labels["request_id"].to_pylist()) == ["a", "b", "c"]

    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,score\na,1\n")
    code, out = run("labels", "import", str(bad), "--endpoint", "lr", "-p", root)
    assert code == 7, out
    assert "label" in out["error"]
    code, out = run(
        "labels", "import", str(tmp_path / "missing.parquet"), "--endpoint", "lr", "-p", root
    )
    assert code == 9, out


def test_promote_and_rollback_move_the_champion_alias_with_the_deployment(root: str) -> None:
    canary = ("--policy", "canary", "--arm", "champion=lr:1", "--arm", "challenger=lr:2")
    assert run("deploy", "lr", *canary, "--weight", "challenger=0.1", "-p", root)[0] == 0
    code, out = run("deployments", "promote", "lr", "--reason", "won", "--actor", "ann", "-p", root)
    assert code == 0, out
    assert [a["model"] for a in out["spec"]["arms"]] == ["lr:2"]
    with Project.open(root) as project:
        assert project.registry.aliases("lr") == {"champion": 2, "previous": 1}
        moved = project.registry.audit_log("lr@champion")[-1]
        assert (moved.actor, moved.after and moved.after["reason"]) == ("ann", "won")

    code, out = run("deployments", "rollback", "lr", "--actor", "bob", "-p", root)
    assert code == 0, out
    assert (out["spec"]["policy"], out["revision"]) == ("canary", 3)
    with Project.open(root) as project:
        assert project.registry.aliases("lr") == {"champion": 1}

    # The alias moved by hand after a promote: rollback refuses (exit 10), changes nothing.
    assert run("deployments", "promote", "lr", "-p", root)[0] == 0
    assert run("models", "alias", "lr:1", "champion", "-p", root)[0] == 0
    code, out = run("deployments", "rollback", "lr", "-p", root)
    assert code == 10, out
    assert "lr@champion" in out["error"]
    assert "prodml models alias lr:2 champion" in out["error"]
    assert run("deployments", "show", "lr", "-p", root)[1]["revision"] == 4

    # A version that is not approved cannot become champion (exit 13), nothing changes.
    with Project.open(root) as project:
        model, _ = lr_model(C=0.5, seed=4)
        signature = Signature.from_dict(project.registry.get("lr:1").signature)
        project.registry.register("lr", model, signature=signature, actor="test")
    pending = ("--policy", "canary", "--arm", "champion=lr:1", "--arm", "challenger=lr:3")
    assert run("deploy", "lr", *pending, "--weight", "challenger=0.1", "-p", root)[0] == 0
    code, out = run("deployments", "promote", "lr", "-p", root)
    assert code == 13, out
    assert "prodml models approve lr:3" in out["error"]
    assert run("deployments", "show", "lr", "-p", root)[1]["spec"]["policy"] == "canary"


@pytest.mark.slow
def test_serve_answers_every_protocol_and_shuts_down_cleanly(root: str) -> None:
    assert run("deploy", "lr", "--model", "lr@champion", "-p", root)[0] == 0
    values = row(3)
    with running_server(Path(root)) as server:
        ready = httpx.get(server.url + "/readyz").json()
        assert ready["endpoints"] == {"lr": 1}
        mlflow = httpx.post(
            server.url + "/invocations",
            json={
                "dataframe_split": {"columns": FEATURES, "data": [[values[f] for f in FEATURES]]}
            },
        )
        assert mlflow.status_code == 200, mlflow.text
        v2 = httpx.post(
            server.url + "/v2/models/lr/infer",
            json={
                "inputs": [
                    {"name": f, "shape": [1], "datatype": "FP64", "data": [values[f]]}
                    for f in FEATURES
                ]
            },
        )
        assert v2.status_code == 200, v2.text
        assert httpx.get(server.url + "/metrics").text.count("prodml_requests_total{") >= 1
        assert server.stop() in (0, -signal.SIGTERM), b"".join(server.output).decode()
    logged = read_log(Path(root) / ".prodml" / "logs" / "predictions", partition="lr")
    assert sorted(logged["protocol"].to_pylist()) == ["mlflow", "v2"]
