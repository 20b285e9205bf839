"""A command group that imports a command's module only when that command runs.

``prodml --help`` must not pay for pandas, scikit-learn or FastAPI. A :class:`LazyGroup`
knows each of its commands by name, import path and help text: it lists them from that
table and imports a command's module when the command is invoked (click's lazy-loading
group, drawn with typer's help panels).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

__all__ = ["LazyCommand", "LazyGroup"]


@dataclass(frozen=True)
class LazyCommand:
    """A command known by the help text its listing shows and by ``target``, the import
    path ``module:attribute`` of either its Typer group (registered under the command's
    name) or a function ``register(app)`` that adds it, with its siblings, to an app."""

    target: str
    help: str

    def load(self, name: str) -> TyperCommand | TyperGroup:
        """Import the target and return its command ``name``."""
        built, is_group = _build(self.target)
        command = built if is_group else built.commands.get(name)
        if not isinstance(command, TyperCommand | TyperGroup):
            raise LookupError(f"{self.target} adds no command {name!r}")
        return command


@functools.cache
def _build(target: str) -> tuple[TyperGroup, bool]:
    """The group of a target and whether it is the command itself (else the command is
    one of its commands); built once per process, since a ``register`` function adds
    commands to module-level groups."""
    module, _, attribute = target.partition(":")
    found = getattr(importlib.import_module(module), attribute)
    if isinstance(found, typer.Typer):
        return typer.main.get_group(found), True
    app = typer.Typer()
    found(app)
    return typer.main.get_group(app), False


class LazyGroup(TyperGroup):
    """A group whose commands (``lazy``: name → :class:`LazyCommand`) are listed from
    their declared help and imported when invoked."""

    lazy: ClassVar[Mapping[str, LazyCommand]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False
        for name, command in self.lazy.items():
            # A placeholder carrying the name and help: enough to list it and to suggest
            # the right name for a mistyped one.
            self.commands.setdefault(name, TyperCommand(name, help=command.help))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The command, imported now (its placeholder while this group draws its help)."""
        command = self.lazy.get(cmd_name)
        if command is None or self._listing:
            return super().get_command(ctx, cmd_name)
        return command.load(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The group's help, listing each command from its placeholder."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
