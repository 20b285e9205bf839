"""Output for people (Rich) and scripts (``--json``), exit codes, progress bars.

What users type (names, references, reasons, paths) and error messages print as they
are: the consoles read no Rich markup or emoji codes, so ``train.py:train:`` or
``[bold]`` in a string print literally. Styled text is built with :func:`styled`, which
escapes the values it fills in.
"""

from __future__ import annotations

import string
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

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

__all__ = [
    "EXIT_CODES",
    "emit",
    "exit_code",
    "fail",
    "guarded",
    "stdout",
    "styled",
    "table",
    "warn",
]

stdout = Console(markup=False, emoji=False)
stderr = Console(stderr=True, markup=False, emoji=False)

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


class _Escaping(string.Formatter):
    """``str.format`` whose fields come out escaped for Rich markup."""

    def format_field(self, value: Any, format_spec: str) -> str:
        return escape(super().format_field(value, format_spec))


_ESCAPING = _Escaping()


def styled(template: str, /, **values: Any) -> Text:
    """Rich markup ``template`` with its ``{fields}`` (format specs allowed) filled by
    ``values``, which print literally.

    >>> styled("[bold]{ref}[/] by {actor} ({rows:,} rows)", ref="m:1", actor="[red]x[/red]",
    ...        rows=1200).plain
    'm:1 by [red]x[/red] (1,200 rows)'
    >>> styled("{qualname}: failed", qualname="train.py:train").plain
    'train.py:train: failed'
    """
    return Text.from_markup(_ESCAPING.vformat(template, (), values), emoji=False)


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
        stderr.print(
            styled("[bold red]error:[/] {error}", error=error), highlight=False, soft_wrap=True
        )
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


def warn(messages: Sequence[str]) -> None:
    """Print each message on stderr as a warning (stdout stays the command's output)."""
    for message in messages:
        stderr.print(
            styled("[bold yellow]warning:[/] {message}", message=message),
            highlight=False,
            soft_wrap=True,
        )
