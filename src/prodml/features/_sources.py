"""Where a feature view's rows come from: a Parquet file, a DuckDB SQL query, or a
Python function. Each source has a ``spec()`` that enters the view's version.

>>> ParquetSource("data/weather.parquet").spec()
{'type': 'parquet', 'path': 'data/weather.parquet'}
>>> SqlSource("SELECT 1 AS x").spec()["type"]
'sql'
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from functools import cached_property
from typing import Any, ClassVar, TypeAlias

from prodml.core import DefinitionError

__all__ = ["Definition", "ParquetSource", "PythonSource", "Source", "SqlSource", "function_source"]


class Definition:
    """What is derived from a definition's attributes — its version, a hash of its spec
    read on every online request; the names of its features — is computed once
    (``cached_property``) and computed again after any of its attributes is set. A
    definition nested in another (a view's source or entities) is part of the outer
    one's spec: to change it, set a new one on the outer definition."""

    _derived: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._derived = tuple(
            name
            for klass in cls.__mro__
            for name, value in vars(klass).items()
            if isinstance(value, cached_property)
        )

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        for derived in self._derived:
            self.__dict__.pop(derived, None)


def function_source(func: Callable[..., Any], *, owner: str) -> str:
    """The dedented source text of ``func``: what a definition's version hashes."""
    try:
        return textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        code = getattr(func, "__code__", None)
        if code is None:
            raise DefinitionError(
                f"{owner}: cannot read the source of {func!r}; expected a function defined in a file"
            ) from None
        return f"<bytecode {code.co_code.hex()} consts {code.co_consts!r}>"


class ParquetSource:
    """Feature rows stored in Parquet: one file, a directory, or a glob, relative to the
    project root unless absolute."""

    def __init__(self, path: str) -> None:
        if not isinstance(path, str) or not path:
            raise DefinitionError(f"ParquetSource.path must be a non-empty string, got {path!r}")
        self.path = path

    def spec(self) -> dict[str, Any]:
        return {"type": "parquet", "path": self.path}

    def __repr__(self) -> str:
        return f"ParquetSource({self.path!r})"


class SqlSource:
    """Feature rows computed by a DuckDB query; relative file paths in the query are
    resolved against the project root."""

    def __init__(self, query: str) -> None:
        if not isinstance(query, str) or not query.strip():
            raise DefinitionError(f"SqlSource.query must be a non-empty SQL string, got {query!r}")
        self.query = query.strip().rstrip(";")

    def spec(self) -> dict[str, Any]:
        return {"type": "sql", "query": self.query}

    def __repr__(self) -> str:
        return f"SqlSource({self.query[:40]!r}…)"


class PythonSource:
    """Feature rows returned by a function (no arguments, or one: the project root as a
    ``pathlib.Path``) as a pandas DataFrame or an Arrow table. Its version hashes the
    function's source text."""

    def __init__(self, func: Callable[..., Any]) -> None:
        if not callable(func):
            raise DefinitionError(f"PythonSource needs a function, got {func!r}")
        self.func = func
        self.source_text = function_source(func, owner="PythonSource")

    def spec(self) -> dict[str, Any]:
        return {
            "type": "python",
            "function": f"{self.func.__module__}.{self.func.__qualname__}",
            "source": self.source_text,
        }

    def __repr__(self) -> str:
        return f"PythonSource({self.func.__qualname__})"


Source: TypeAlias = ParquetSource | SqlSource | PythonSource
