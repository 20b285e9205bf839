"""Options shared by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["ActorOption", "JsonOption", "ProjectOption", "ReasonOption"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
ProjectOption = Annotated[
    Path,
    typer.Option(
        "--project", "-p", envvar="PRODML_PROJECT", help="Project directory (or below it)."
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
