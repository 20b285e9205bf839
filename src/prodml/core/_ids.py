"""Stable string ids.

Model versions are ``name:version`` and aliases ``name@alias``; other objects get a
sortable random id.

>>> parse_ref("flight_delay:7")
ModelRef(name='flight_delay', version=7, alias=None)
>>> parse_ref("flight_delay@champion")
ModelRef(name='flight_delay', version=None, alias='champion')
>>> str(parse_ref("flight_delay@champion"))
'flight_delay@champion'
>>> len(new_id("run"))
27
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from prodml.core.errors import DefinitionError

__all__ = ["NAME_PATTERN", "ModelRef", "check_name", "new_id", "parse_ref"]

#: Valid object names; use with ``fullmatch`` (``$`` alone also matches before a final
#: newline). Its text is also the OpenAPI ``pattern`` of endpoint names.
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,127}$")


def check_name(name: str, *, kind: str) -> str:
    """Return ``name`` if it is a valid object name, else raise naming the kind.

    >>> check_name("weather", kind="feature view")
    'weather'
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        # the name is not repeated: it may be client input (an endpoint in a URL path)
        raise DefinitionError(
            f"{kind} name is invalid: expected a letter or underscore followed by up to 127 "
            "letters, digits, '_' or '-' (the whole name; no newline, '/', '.' or NUL)"
        )
    return name


def new_id(prefix: str) -> str:
    """A time-ordered random id: ``prefix-`` then 13 hex digits of ms time and 10 random."""
    millis = int(time.time() * 1000)
    return f"{prefix}-{millis:013x}{os.urandom(5).hex()}"


@dataclass(frozen=True)
class ModelRef:
    """A reference to a model version (``name:7``) or an alias (``name@champion``)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return f"{self.name}:{self.version}"


def parse_ref(ref: str) -> ModelRef:
    """Parse ``name:version`` or ``name@alias``."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return ModelRef(check_name(name, kind="model"), alias=check_name(alias, kind="alias"))
    if ":" in ref:
        name, version = ref.split(":", 1)
        if not (version.isascii() and version.isdigit()):
            raise DefinitionError(
                f"model reference {ref!r}: version must be a positive integer, got {version!r}"
            )
        return ModelRef(check_name(name, kind="model"), version=int(version))
    raise DefinitionError(f"model reference {ref!r}: expected 'name:version' or 'name@alias'")
