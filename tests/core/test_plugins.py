"""The one plugin registry every backend family uses (``prodml.core.Plugins``)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from prodml.core import ConfigError, ConflictError, Plugins
from prodml.features.online import ONLINE_BACKENDS
from prodml.registry import MODEL_FORMATS
from prodml.storage import ARTIFACT_BACKENDS


def kinds() -> Plugins[Mapping[str, object]]:
    return Plugins("mapping kind", Mapping, {"dict": "builtins:dict"}, extras={"fast": "fast"})


def test_every_backend_family_is_a_plugin_registry() -> None:
    for family in (ARTIFACT_BACKENDS, ONLINE_BACKENDS, MODEL_FORMATS):
        assert isinstance(family, Plugins)
        for name in family:
            if name in family.extras or name == "mlflow_pyfunc":
                continue  # optional libraries: loaded by their own tests
            assert issubclass(family.load(name), family.base)


def test_load_names_what_failed_and_how_to_fix_it() -> None:
    plugins = kinds()
    with pytest.raises(ConfigError, match="mapping kind 'tree' is unknown: expected one of 'dict'"):
        plugins.load("tree")
    plugins["fast"] = "prodml_no_such_module:Map"
    with pytest.raises(ConfigError, match=r"cannot import .*pip install 'prodml\[fast\]'"):
        plugins.load("fast")
    plugins["slow"] = "prodml_no_such_module:Map"
    with pytest.raises(ConfigError, match="install the package that provides 'prodml_no_such_"):
        plugins.load("slow")
    plugins["gone"] = "builtins:NoSuchMapping"
    with pytest.raises(ConfigError, match="builtins:NoSuchMapping does not exist"):
        plugins.load("gone")


def test_register_refuses_to_rebind_a_taken_name() -> None:
    plugins = kinds()
    plugins.register("dict", "builtins:dict")  # the same path again: nothing happens
    with pytest.raises(ConflictError, match="'dict' is already registered as 'builtins:dict'"):
        plugins.register("dict", "collections:OrderedDict")
    with pytest.raises(ConfigError, match=r"expected 'package\.module:ClassName'"):
        plugins.register("ordered", "collections.OrderedDict")
    plugins.register("ordered", "collections:OrderedDict")
    assert plugins.load("ordered").__name__ == "OrderedDict"
