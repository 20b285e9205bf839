"""Contract suites: one per backend family, run over every backend its registry names.

A suite is a test module that declares ``CONTRACT = Contract(REGISTRY, FACTORIES, ...)``.
``FACTORIES`` maps a *case* to whatever the suite needs to open one backend; a case is a
registered name, or ``name:variant`` when one backend runs in several setups (the SQL
alert store on each metadata dialect). The suite's fixture takes
``params=CONTRACT.cases()`` (cases needing a real service are marked ``integration``)
and its guard test calls :meth:`Contract.check`, which fails when a registered name has
no case or a case names no registered backend.

``tests/core/test_plugin_families.py`` finds every :class:`~prodml.core.Plugins` registry
under ``src/prodml`` and every suite (:func:`find_contracts`), and fails when a registry
has no suite or a suite misses one of its names.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from prodml.core import Plugins

__all__ = ["TESTS", "Contract", "backend_of", "find_contracts"]

F = TypeVar("F")
TESTS = Path(__file__).resolve().parent
#: A module-level ``NAME = Contract(`` (or ``NAME: Contract[...] = Contract(``).
_DECLARES = re.compile(r"^\w+(?:\s*:[^=\n]+)?\s*=\s*Contract\(", re.MULTILINE)


def backend_of(case: str) -> str:
    """The registered name a case runs: ``"sql:postgresql"`` runs ``"sql"``.

    >>> backend_of("sql:postgresql"), backend_of("memory")
    ('sql', 'memory')
    """
    return case.partition(":")[0]


@dataclass(frozen=True)
class Contract(Generic[F]):
    """The cases one suite runs over the backends of ``registry``.

    ``integration`` holds the cases, or whole backends, that need a real service
    (PostgreSQL, Redis): their tests are marked ``integration`` and the factories skip
    with the reason when the service is unreachable.
    """

    registry: Plugins[Any]
    factories: Mapping[str, F]
    integration: Collection[str] = ()

    def backends(self) -> set[str]:
        """The registered names the cases run."""
        return {backend_of(case) for case in self.factories}

    def cases(self) -> list[Any]:
        """One ``pytest.param`` per case, sorted, integration cases marked."""
        return [
            pytest.param(
                case,
                id=case,
                marks=[pytest.mark.integration] if self.needs_service(case) else [],
            )
            for case in sorted(self.factories)
        ]

    def needs_service(self, case: str) -> bool:
        """Whether ``case`` runs against a real service."""
        return case in self.integration or backend_of(case) in self.integration

    def factory(self, case: str) -> F:
        """What opens the backend of ``case``."""
        return self.factories[case]

    def check(self) -> None:
        """Fail unless the cases run every registered name and nothing else."""
        registered = set(self.registry)
        missing = sorted(registered - self.backends())
        unknown = sorted(self.backends() - registered)
        assert not missing, (
            f"{self.registry.what}: registered {missing} but the contract suite has no case "
            "for them: add a factory for each"
        )
        assert not unknown, (
            f"{self.registry.what}: the contract suite runs {unknown}, which are not "
            f"registered (registered: {sorted(registered)})"
        )


def find_contracts(root: Path = TESTS) -> dict[str, list[Contract[Any]]]:
    """The contracts declared at module level (``NAME = Contract(...)``) by the test
    modules under ``root``, by module path relative to ``root``; each such module is
    loaded afresh under a private name (its tests are not run)."""
    found: dict[str, list[Contract[Any]]] = {}
    for path in sorted(root.rglob("test_*.py")):
        if not _DECLARES.search(path.read_text(encoding="utf-8")):
            continue
        relative = path.relative_to(root).as_posix()
        name = "_contract_suite_" + relative.removesuffix(".py").replace("/", "_")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None, f"cannot load {relative}"
        assert spec.loader is not None, f"cannot load {relative}"
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
        contracts = [value for value in vars(module).values() if isinstance(value, Contract)]
        assert contracts, f"{relative} declares a Contract that is not a contractkit.Contract"
        found[relative] = contracts
    return found
