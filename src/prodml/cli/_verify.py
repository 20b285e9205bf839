"""``prodml verify``: check the metadata DB and every referenced artifact, print each
problem with what to do, and exit non-zero when anything is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prodml.cli._options import JsonOption, ProjectOption
from prodml.cli._output import emit, exit_code, guarded, stdout, styled

__all__ = ["register_commands"]


def register_commands(app: typer.Typer) -> None:
    app.command("verify")(verify)


def verify(
    full: Annotated[
        bool,
        typer.Option(
            "--full/--quick",
            help="SQLite PRAGMA integrity_check (also cross-checks every index), or the "
            "faster quick_check.",
        ),
    ] = True,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Check the metadata DB and every artifact it references; exit non-zero naming each
    problem and how to restore it."""
    from prodml.project._verify import verify_project

    with guarded(as_json):
        report = verify_project(project, full=full)
    worst = report.worst()

    def human() -> None:
        for note in report.notes:
            stdout.print(note, highlight=False, soft_wrap=True)
        if worst is None:
            stdout.print(
                styled(
                    "[bold green]ok:[/] metadata DB {db} passes PRAGMA {check}, schema revision "
                    "{revision}; {n} artifacts match their SHA-256",
                    db=report.metadata, check=report.check, revision=report.revision or "-",
                    n=report.artifacts_checked,
                ),
                highlight=False, soft_wrap=True,
            )  # fmt: skip
            return
        stdout.print(
            styled("[bold red]{n} problem(s)[/] in {root}:", n=len(report.problems), root=report.root),
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        for problem in report.problems:
            stdout.print(
                styled("[bold]{object}[/]: {message}", object=problem.object, message=problem.message),
                highlight=False, soft_wrap=True,
            )  # fmt: skip

    emit(report.to_dict(), as_json=as_json, human=human)
    if worst is not None:
        raise typer.Exit(exit_code(worst.kind(worst.message)))
