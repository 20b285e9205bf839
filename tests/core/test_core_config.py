from __future__ import annotations

from pathlib import Path

import pytest

from prodml.core import ConfigError, load_config, load_config_text


def test_defaults_without_file(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, environ={})
    assert cfg.metadata.type == "sqlite"
    assert cfg.online_store.type == "sqlite"
    assert cfg.features.created_time_guard is True


def test_file_values_and_env_override() -> None:
    text = '[online_store]\ntype = "sqlite"\npath = "x.db"\n[features]\non_violation = "warn"\n'
    cfg = load_config_text(text, environ={"PRODML__FEATURES__ON_VIOLATION": "ignore"})
    assert cfg.features.on_violation == "ignore"
    assert cfg.online_store.type == "sqlite"
    assert cfg.online_store.path == "x.db"


def test_env_switches_backend_type_from_its_defaults() -> None:
    text = '[online_store]\ntype = "sqlite"\npath = "x.db"\n'
    cfg = load_config_text(
        text,
        environ={
            "PRODML__ONLINE_STORE__TYPE": "redis",
            "PRODML__ONLINE_STORE__URL": "redis://h:1/2",
        },
    )
    assert cfg.online_store.type == "redis"
    assert cfg.online_store.url == "redis://h:1/2"


def test_postgres_metadata_section() -> None:
    cfg = load_config_text(
        '[metadata]\ntype = "postgresql"\nurl = "postgresql+psycopg://u@h/db"\n', environ={}
    )
    assert cfg.metadata.type == "postgresql"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[features]\nunknown_key = 1\n", "features.unknown_key"),
        ("[nonsense]\na = 1\n", "nonsense"),
        ('[online_store]\ntype = "cassandra"\n', "online_store"),
        ('[features]\non_violation = "explode"\n', "features.on_violation"),
        ("[features\n", "not valid TOML"),
    ],
)
def test_invalid_config_names_the_key(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config_text(text, environ={})


def test_environment_is_restored_after_explicit_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODML__FEATURES__ON_VIOLATION", "warn")
    cfg = load_config_text("", environ={})
    assert cfg.features.on_violation == "error"
    assert load_config_text("").features.on_violation == "warn"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[monitoring]\nwindow = "2m"\n',
            "monitoring.window: expected a window length such as '1d', '6h', '2w', '1mo' or "
            "'500rows' (<n>h, <n>d, <n>w, <n>mo for calendar months, <n>rows); got '2m'",
        ),
        (
            '[monitoring]\ngrace = "5 minutes"\n',
            "monitoring.grace: expected a duration such as '30s', '5m', '6h', '1d' or '1w'; "
            "got '5 minutes'",
        ),
        (
            '[online_store]\ntype = "redis"\nurl = 3\n',
            "online_store.url: Input should be a valid string; got 3",
        ),
        (
            '[[gate.change]]\nmetric = "roc_auc"\nmax_degradation = -1\n',
            "gate.change[0].max_degradation: Input should be greater than or equal to 0; got -1",
        ),
    ],
)
def test_config_errors_name_the_dotted_key_the_expected_and_the_value(
    text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, environ={})
    assert expected in str(info.value)


def test_unknown_config_key_lists_the_section_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text('[monitoring]\nwindw = "1d"\n', environ={})
    message = str(info.value)
    assert "monitoring.windw: unknown key" in message
    for key in ("window", "grace", "label_horizon"):
        assert key in message


def test_config_error_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("", environ={"PRODML__MONITORING__WINDOW": "2m"})
    assert "monitoring.window" in str(info.value)
    assert "PRODML__MONITORING__WINDOW" in str(info.value)
