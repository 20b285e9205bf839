"""Start-up of the command line: a command imports only what it needs.

``prodml --help`` lists every command without importing any of them, and
``prodml models list`` reaches the metadata DB without the data-science stack. The
tests run the real entry point in a fresh interpreter and look at ``sys.modules``:
they check what is imported, not how long it takes (that is benchmarks/cli_startup.py).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli import app
from servingkit import lr_model, register

HEAVY = ("duckdb", "fastapi", "pandas", "pyarrow", "scipy", "sklearn")
MARK = "imported-heavy:"

runner = CliRunner()

# Runs ``main()`` with the given argv, then prints which heavy libraries got imported.
PROBE = """
import json, sys
mark, heavy = sys.argv[3], set(json.loads(sys.argv[2]))
sys.argv = ["prodml", *json.loads(sys.argv[1])]
from prodml.cli import main
try:
    main()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
imported = sorted({name.split(".")[0] for name in sys.modules} & heavy)
print(mark + json.dumps({"code": code, "heavy": imported}))
"""


def probe(*args: str, heavy: tuple[str, ...] = HEAVY) -> tuple[int, list[str], str]:
    """Exit code, ``heavy`` libraries imported and output of ``prodml ARGS`` in a fresh
    process."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(heavy), MARK],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = proc.stdout.splitlines()
    assert lines, proc.stderr
    assert lines[-1].startswith(MARK), proc.stdout + proc.stderr
    result = json.loads(lines[-1].removeprefix(MARK))
    return result["code"], result["heavy"], "\n".join(lines[:-1]) + proc.stderr


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("startup") / "p"
    with Project.init(path, name="startup") as project:
        model, X = lr_model()
        register(project, model, X)
    return path


def test_help_lists_every_command_without_importing_heavy_libraries() -> None:
    code, heavy, output = probe("--help")
    assert code == 0, output
    assert heavy == []
    for name in ("init", "demo", "features", "train", "models", "deploy", "serve", "monitor"):
        assert f" {name} " in output


def test_models_list_reads_the_registry_without_the_data_science_stack(root: Path) -> None:
    """Nor Alembic: a metadata DB already at head is opened without the migration tool."""
    code, heavy, output = probe(
        "models", "list", "--json", "--project", str(root), heavy=(*HEAVY, "alembic")
    )
    assert code == 0, output
    assert heavy == []
    models = json.loads(output)["models"]
    assert [(m["name"], m["latest"], m["latest_status"]) for m in models] == [("lr", 1, "approved")]


def test_a_group_help_imports_only_its_commands_module() -> None:
    code, heavy, output = probe("models", "--help")
    assert code == 0, output
    assert "approve" in output
    assert heavy == []


def test_the_help_of_each_command_is_the_one_its_module_declares() -> None:
    """The one-line help ``prodml --help`` shows without importing a command is the
    command's own."""
    listed = runner.invoke(app, ["--help"], env={"COLUMNS": "400"}).output
    from prodml.cli._app import COMMANDS

    for name, command in COMMANDS.items():
        loaded = command.load(name)
        assert loaded.help is not None
        assert " ".join(loaded.help.split()) == " ".join(command.help.split()), name
        assert " ".join(command.help.split()) in " ".join(listed.replace("│", " ").split())


def test_a_mistyped_command_is_refused_with_a_suggestion() -> None:
    result = runner.invoke(app, ["model", "list"])
    assert result.exit_code == 2
    assert "No such command 'model'" in result.output
    assert "'models'" in result.output


@pytest.mark.parametrize(
    "package", ["prodml.core", "prodml.storage", "prodml.registry", "prodml.project"]
)
def test_every_public_name_of_a_lazily_loading_package_resolves(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        getattr(module, "nonexistent")  # noqa: B009 - the attribute is looked up at run time
