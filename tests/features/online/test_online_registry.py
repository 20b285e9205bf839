"""Opening online stores from config through the backend registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodml.core import ConfigError, MemoryOnlineConfig, RedisOnlineConfig, SqliteOnlineConfig
from prodml.features import online
from prodml.features.online import (
    ONLINE_BACKENDS,
    MemoryOnlineStore,
    SqliteOnlineStore,
    load_backend,
    open_online_store,
)


def test_online_registry_opens_each_backend(tmp_path: Path) -> None:
    with open_online_store(MemoryOnlineConfig(type="memory"), tmp_path) as memory:
        assert isinstance(memory, MemoryOnlineStore)
    with open_online_store(SqliteOnlineConfig(), tmp_path) as sqlite:
        assert isinstance(sqlite, SqliteOnlineStore)
        assert sqlite.path == tmp_path / ".prodml" / "online.db"
        assert sqlite.path.exists()
    absolute = tmp_path / "elsewhere" / "o.db"
    with open_online_store(SqliteOnlineConfig(path=str(absolute)), tmp_path / "x") as sqlite:
        assert isinstance(sqlite, SqliteOnlineStore)
        assert sqlite.path == absolute
    # Opening a Redis store does not connect yet.
    config = RedisOnlineConfig(type="redis", url="redis://127.0.0.1:1/0")
    with open_online_store(config, tmp_path) as redis_store:
        assert type(redis_store) is online.RedisOnlineStore


def test_online_registry_rejects_unknown_and_broken_backends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(
        ConfigError, match=r"'cassandra' is unknown: expected one of 'memory', 'redis'"
    ):
        load_backend("cassandra")
    monkeypatch.setitem(ONLINE_BACKENDS, "broken", "prodml.no_such_module:Store")
    with pytest.raises(ConfigError, match=r"cannot import prodml\.no_such_module"):
        load_backend("broken")
    monkeypatch.setitem(ONLINE_BACKENDS, "wrong", "prodml.core:Config")
    with pytest.raises(ConfigError, match="is not a subclass of OnlineStore"):
        load_backend("wrong")
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = online.Nope


def test_online_backend_rejects_another_backends_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected 'sqlite', got 'memory'"):
        SqliteOnlineStore.from_config(MemoryOnlineConfig(type="memory"), tmp_path)
    with pytest.raises(ConfigError, match="expected 'memory', got 'sqlite'"):
        MemoryOnlineStore.from_config(SqliteOnlineConfig(), tmp_path)
    with pytest.raises(ConfigError, match="expected 'redis', got 'sqlite'"):
        online.RedisOnlineStore.from_config(SqliteOnlineConfig(), tmp_path)
