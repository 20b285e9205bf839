"""Output for people (Rich) and scripts (``--json``), exit codes, progress bars."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from prodml.core import (
    ConfigError,
    ConflictError,
    DataValidationError,
    DefinitionError,
    IntegrityError,
    NotFoundError,
    ProdMLError,
    ProjectNotFoundError,
    SchemaError,
    SourceError,
    StateError,
    StorageError,
    TrainingError,
)

__all__ = ["EXIT_CODES", "emit", "exit_code", "fail", "guarded", "stdout", "table"]

stdout = Console()
stderr = Console(stderr=True)

#: Exit codes by error class; the first matching class wins (most specific first).
EXIT_CODES: Sequence[tuple[type[ProdMLError], int]] = (
    (ProjectNotFoundError, 3),
    (NotFoundError, 4),
    (ConfigError, 5),
    (DefinitionError, 6),
    (SchemaError, 7),
    (DataValidationError, 8),
    (SourceError, 9),
    (ConflictError, 10),
    (IntegrityError, 11),
    (StorageError, 12),
    (StateError, 13),
    (TrainingError, 14),
    (ProdMLError, 1),
)


def exit_code(error: ProdMLError) -> int:
    """The documented exit code of an error (2 is reserved for usage errors)."""
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return 1


def fail(error: ProdMLError, *, as_json: bool) -> typer.Exit:
    """Report ``error`` on stderr (JSON on stdout with --json) and return the exit."""
    code = exit_code(error)
    if as_json:
        sys.stdout.write(
            orjson.dumps(
                {"error": str(error), "type": type(error).__name__, "exit_code": code}
            ).decode()
            + "\n"
        )
    else:
        stderr.print(f"[bold red]error:[/] {error}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def guarded(as_json: bool) -> Iterator[None]:
    """Turn a ProdMLError into its exit code and message; other errors propagate."""
    try:
        yield
    except ProdMLError as error:
        raise fail(error, as_json=as_json) from None


def emit(data: Any, *, as_json: bool, human: Callable[[], None]) -> None:
    """Print ``data`` as one JSON document, or call ``human`` to render it."""
    if as_json:
        sys.stdout.write(
            orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    else:
        human()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    view = Table(title=title, title_justify="left")
    for column in columns:
        view.add_column(column)
    for row in rows:
        view.add_row(*("" if v is None else str(v) for v in row))
    stdout.print(view)
