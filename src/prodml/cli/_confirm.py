"""Confirmation before a command deletes state: asked on the terminal (standard error),
answered on standard input, and refused where no one can answer — a usage error, exit
2 — unless the command's ``--yes`` was given (CI runs with no standard input)."""

from __future__ import annotations

import sys

import orjson
import typer

__all__ = ["confirm"]


def confirm(question: str, *, refusal: str, as_json: bool) -> None:
    """Ask ``question`` (y/N). No standard input (closed, or at its end) exits 2 with
    ``refusal``; any answer but ``y``/``yes`` exits 1, nothing changed."""
    typer.echo(f"{question} [y/N]: ", err=True, nl=False)
    stream = sys.stdin
    answer = "" if stream is None or stream.closed else stream.readline()
    if not answer or not stream.isatty():  # the terminal echoes a typed answer's newline
        typer.echo(answer.strip(), err=True)
    if not answer:
        raise _stop(refusal, "UsageError", 2, as_json=as_json)
    if answer.strip().lower() not in ("y", "yes"):
        raise _stop("not confirmed; nothing was changed", "Aborted", 1, as_json=as_json)


def _stop(message: str, kind: str, code: int, *, as_json: bool) -> typer.Exit:
    if as_json:
        document = {"error": message, "type": kind, "exit_code": code}
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
    else:
        typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)
