"""Every command's ``--help`` prints the help its options declare, in full."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from prodml.cli import app

runner = CliRunner()


def commands() -> Iterator[tuple[list[str], Any]]:
    """``(path, command)`` of every command, groups included."""

    def walk(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        yield path, command
        if isinstance(command, TyperGroup):
            context = typer.Context(command)
            for name in command.list_commands(context):
                yield from walk(command.get_command(context, name), [*path, name])

    yield from walk(typer.main.get_command(app), [])


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def help_of(path: list[str]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return flat(result.output)


def test_serve_help_names_the_config_keys_of_its_defaults() -> None:
    shown = help_of(["serve"])
    assert "[serving] host" in shown
    assert "[serving] port" in shown
    assert "[serving] workers" in shown
    assert "Default: host" not in shown
    assert "default ." not in shown


@pytest.mark.parametrize(
    ("path", "command"),
    [pytest.param(path, command, id=" ".join(["prodml", *path])) for path, command in commands()],
)
def test_every_help_text_is_printed_as_written(path: list[str], command: Any) -> None:
    shown = help_of(path)
    if command.help:
        assert flat(command.help.replace("\\[", "[")) in shown, path
    for param in command.params:
        declared = getattr(param, "help", None)
        if declared:
            # A help text escapes a literal "[" for Rich markup as "\[".
            assert flat(declared.replace("\\[", "[")) in shown, (path, param.name)
    assert "default ." not in shown
    assert "default: )" not in shown
    assert "Default: ." not in shown
    assert "[default: .]" not in shown
