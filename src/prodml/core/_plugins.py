"""Plugins: one registry per backend family, name → ``"package.module:Class"``, each
class imported only when a project uses it (the Metaflow pattern), so an optional
library (Redis, MLflow…) is needed only by the projects that configure it.

A :class:`Plugins` is a ``dict`` of import paths (tests and users may add entries) with
:meth:`~Plugins.load`, which imports the class, checks it subclasses the family's base
and names what to install when the import fails, and :meth:`~Plugins.register`, which
refuses to rebind a taken name.

>>> from collections.abc import Mapping
>>> kinds = Plugins("mapping kind", Mapping, {"dict": "builtins:dict"}, extras={})
>>> kinds.load("dict").__name__
'dict'
>>> kinds.load("tree")
Traceback (most recent call last):
...
prodml.core.errors.ConfigError: mapping kind 'tree' is unknown: expected one of 'dict'
>>> kinds.register("list", "builtins:list")
>>> kinds.load("list")
Traceback (most recent call last):
...
prodml.core.errors.ConfigError: mapping kind 'list': builtins:list is not a subclass of Mapping
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Generic, TypeVar, cast

from prodml.core.errors import ConfigError, ConflictError

__all__ = ["Plugins"]

T = TypeVar("T")


class Plugins(dict[str, str], Generic[T]):
    """The registered implementations of one family (``what``: how errors name it, e.g.
    ``"artifacts backend"``), each a subclass of ``base`` (the ``T`` of the annotation);
    ``extras`` maps a name to the ``prodml[...]`` extra that installs its library."""

    def __init__(
        self,
        what: str,
        base: type,  # abstract classes too (mypy refuses those for type[T])
        entries: Mapping[str, str],
        *,
        extras: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(entries)
        self.what = what
        self.base = base
        self.extras = dict(extras or {})

    def known(self) -> str:
        """The registered names, quoted, in order."""
        return ", ".join(repr(name) for name in sorted(self))

    def load(self, name: str) -> type[T]:
        """Import and return the class registered under ``name``."""
        try:
            target = self[name]
        except KeyError:
            raise ConfigError(
                f"{self.what} {name!r} is unknown: expected one of {self.known()}"
            ) from None
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            extra = self.extras.get(name)
            hint = (
                f"install it with pip install 'prodml[{extra}]'"
                if extra
                else f"install the package that provides {exc.name or module_name!r}"
            )
            raise ConfigError(
                f"{self.what} {name!r}: cannot import {target} ({exc}); {hint}"
            ) from exc
        cls = getattr(module, attr, None)
        if cls is None:
            raise ConfigError(f"{self.what} {name!r}: {target} does not exist")
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise ConfigError(
                f"{self.what} {name!r}: {target} is not a subclass of {self.base.__name__}"
            )
        return cast("type[T]", cls)

    def register(self, name: str, target: str) -> None:
        """Register the class at ``target`` (``"package.module:Class"``) under ``name``;
        registering the same path again does nothing, another path under a taken name
        raises :class:`ConflictError`. The class is imported by :meth:`load`."""
        module_name, sep, attr = target.partition(":")
        if not (sep and module_name and attr.isidentifier()):
            raise ConfigError(
                f"{self.what} {name!r}: import path {target!r} is invalid: "
                "expected 'package.module:ClassName'"
            )
        current = self.get(name)
        if current is not None and current != target:
            raise ConflictError(
                f"{self.what} {name!r} is already registered as {current!r}: "
                f"choose another name for {target!r}"
            )
        self[name] = target
