"""Options shared by every command."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["ActorOption", "JsonOption", "ProjectOption", "ReasonOption", "check_window"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
ProjectOption = Annotated[
    Path,
    typer.Option(
        "--project",
        "-p",
        envvar="PRODML_PROJECT",
        help="Project directory (or below it).",
        show_default="current directory",
    ),
]
ActorOption = Annotated[
    str | None,
    typer.Option(
        "--actor",
        envvar="PRODML_ACTOR",
        help="Who is acting, for the audit log (default: OS user).",
    ),
]
ReasonOption = Annotated[
    str | None, typer.Option(help="Why, for the audit log (and a deployment's history).")
]


def check_window(start: datetime | None, end: datetime | None) -> None:
    """Refuse ``--start`` at or after ``--end`` as a usage error (exit 2), before any work.

    Both are read as UTC: typer parses them without a time zone."""
    if start is not None and end is not None and start >= end:
        raise typer.BadParameter(
            f"--start {start.isoformat()} is not before --end {end.isoformat()}; "
            "expected --start earlier than --end",
            param_hint="'--start' / '--end'",
        )
