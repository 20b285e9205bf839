"""Every backend family is a ``Plugins`` registry with a contract suite covering every
name it registers: adding a family or a backend without contract coverage fails here."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

import prodml
from contractkit import Contract, find_contracts
from prodml.core import Plugins

SRC = Path(prodml.__file__).resolve().parent
#: Families that must exist; a sanity check that the search below finds registries.
KNOWN = {
    "prodml.features.online._registry:ONLINE_BACKENDS",
    "prodml.monitoring._alerts:ALERT_STORES",
    "prodml.monitoring._sinks:ALERT_SINKS",
    "prodml.registry.formats._base:MODEL_FORMATS",
    "prodml.serving._idempotency:IDEMPOTENCY_STORES",
    "prodml.storage._backends:ARTIFACT_BACKENDS",
    "prodml.storage._log_store:LOG_STORES",
    "prodml.storage._metadata:METADATA_BACKENDS",
}


def family_registries() -> dict[str, Plugins[Any]]:
    """Every module-level ``Plugins`` of the modules under ``src/prodml`` that build one,
    as ``"module:NAME"``."""
    found: dict[str, Plugins[Any]] = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "_plugins.py" or "Plugins(" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        module_name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if isinstance(value, Plugins) and not any(value is v for v in found.values()):
                found[f"{module_name}:{name}"] = value
    return found


@pytest.fixture(scope="module")
def families() -> dict[str, Plugins[Any]]:
    return family_registries()


@pytest.fixture(scope="module")
def contracts() -> dict[str, list[Contract[Any]]]:
    return find_contracts()


def test_the_known_families_are_found(families: dict[str, Plugins[Any]]) -> None:
    assert set(families) >= KNOWN


def test_every_family_has_a_contract_suite_covering_all_its_names(
    families: dict[str, Plugins[Any]], contracts: dict[str, list[Contract[Any]]]
) -> None:
    uncovered = []
    for key, registry in sorted(families.items()):
        suites = [
            (path, contract)
            for path, found in contracts.items()
            for contract in found
            if contract.registry is registry
        ]
        if not suites:
            uncovered.append(key)
            continue
        for path, contract in suites:
            missing = sorted(set(registry) - contract.backends())
            assert not missing, f"{key}: the contract suite {path} has no case for {missing}"
    assert not uncovered, (
        f"backend families without a contract suite: {uncovered}; write one under "
        "tests/<package>/ declaring CONTRACT = contractkit.Contract(<registry>, <factories>)"
    )


def test_every_contract_runs_a_family_of_prodml(
    families: dict[str, Plugins[Any]], contracts: dict[str, list[Contract[Any]]]
) -> None:
    for path, found in contracts.items():
        for contract in found:
            assert any(contract.registry is registry for registry in families.values()), (
                f"{path}: its contract runs {contract.registry.what!r}, which is no "
                "registry of prodml"
            )
            unknown = sorted(contract.backends() - set(contract.registry))
            assert not unknown, f"{path}: runs {unknown}, which are not registered"
