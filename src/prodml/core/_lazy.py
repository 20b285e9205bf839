"""Public names of a package imported from their module on first use (PEP 562).

A package ``__init__`` re-exports its public names; those whose module loads a heavy
library (NumPy, Arrow, pandas, SciPy, scikit-learn, FastAPI) are resolved by a module
``__getattr__`` instead, so importing the package stays cheap for code that never
touches them (``prodml models list``, ``prodml --help``). Type checkers read the same
names as ordinary imports under ``TYPE_CHECKING``.

>>> import sys, types
>>> package = types.ModuleType("example")
>>> sys.modules["example"] = package
>>> package.__getattr__ = lazy_attributes("example", {"json": ["dumps"]})
>>> "dumps" in vars(package)
False
>>> package.dumps([1])
'[1]'
>>> "dumps" in vars(package)
True
>>> package.loads
Traceback (most recent call last):
...
AttributeError: module 'example' has no attribute 'loads'
>>> del sys.modules["example"]
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, modules: Mapping[str, Iterable[str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each name listed in
    ``modules`` (module path → names) from its module when first asked for, and keeps
    it in the package so the next access is an ordinary attribute."""
    origin = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = origin.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
