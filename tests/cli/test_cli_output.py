"""What users type comes back as typed: names, references, reasons and error messages
are printed literally, never read as Rich markup or emoji codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli import app
from servingkit import lr_model
from trainkit import make_training_project

runner = CliRunner()
MARKUP = "[bold]fine[/bold] :train: [red]x[/]"
ACTOR = "[red]ops[/red]"


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("output") / "p"
    with Project.init(path, name="output") as project:
        from prodml.registry import infer_signature

        model, X = lr_model()
        project.registry.register(
            "lr", model, signature=infer_signature(X.head(5), model.predict_proba(X.head(5)))
        )
    return str(path)


def test_a_reason_and_an_actor_print_literally(root: str) -> None:
    code, out, err = invoke(
        "models", "approve", "lr:1", "--reason", MARKUP, "--actor", ACTOR, "-p", root
    )
    assert code == 0, err
    code, out, err = invoke("models", "show", "lr:1", "-p", root)
    assert code == 0, err
    assert f"approved by {ACTOR} ({MARKUP})" in out
    code, out, err = invoke("models", "audit", "lr:1", "-p", root)
    assert code == 0, err
    assert ACTOR in out


def test_an_error_message_prints_literally(root: str) -> None:
    code, _out, err = invoke("models", "show", "lr:no[bold]such[/bold]", "-p", root)
    assert code != 0
    assert "no[bold]such[/bold]" in err
    assert err.startswith("error: ")


def test_a_trainer_reference_is_not_an_emoji_code(tmp_path: Path) -> None:
    make_training_project(tmp_path / "p").close()
    code, _out, err = invoke(
        "train", "--start", "2030-01-01T00:00:00", "--end", "2030-01-02T00:00:00",
        "-p", str(tmp_path / "p"),
    )  # fmt: skip
    assert code == 14, err
    assert "trainer train.py:train: no labelled rows" in " ".join(err.split())
