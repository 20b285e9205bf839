"""Alert rules name metrics that the checks emit: an unknown metric, or a ``column`` that
a metric can never match, is a config error as soon as the config loads — through the
Python API and through ``prodml monitor run`` (exit code 5) — naming the rule, the key,
the bad value and the valid names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli import app
from prodml.core import ConfigError, SchemaError, load_config_text
from prodml.monitoring import MONITOR_METRICS, DriftMethod
from prodml.monitoring._checks import emit

RULES = """
[[monitoring.alerts.rules]]
name = "input_drift"
metric = "drift.share"
threshold = 0.5

[[monitoring.alerts.rules]]
name = "nulls"
metric = "{metric}"
{column}threshold = 0.2
"""


def _rules(metric: str, column: str | None = "*") -> str:
    return RULES.format(metric=metric, column="" if column is None else f'column = "{column}"\n')


def _key(message: str, field: str) -> bool:
    """Whether ``message`` names the second rule's ``field`` as a config key."""
    return re.search(rf"monitoring\.alerts\.rules(\.1|\[1\])\.{field}", message) is not None


def test_an_unknown_metric_names_the_rule_the_key_the_closest_and_every_valid_name() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(_rules("quality.missing_rat"), environ={})
    message = str(info.value)
    assert _key(message, "metric"), message
    assert "alert rule 'nulls'" in message
    assert "'quality.missing_rat'" in message
    assert "did you mean 'quality.missing_rate'?" in message
    for name in MONITOR_METRICS:
        check, _, metric = name.partition(".")
        group = re.search(rf"{check}\.\{{([^}}]*)\}}", message)
        assert group is not None, name
        assert metric in group.group(1).split(", "), name


@pytest.mark.parametrize(
    ("metric", "column", "needle"),
    [
        ("drift.share", "temp", "one value per window: omit `column`"),
        ("quality.missing_rate", None, 'set `column` to a column name or "*"'),
        ("drift.value", None, 'set `column` to a column name or "*"'),
    ],
)
def test_a_column_the_metric_can_never_match_is_a_config_error(
    metric: str, column: str | None, needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(_rules(metric, column), environ={})
    message = str(info.value)
    assert "alert rule 'nulls'" in message
    assert needle in message
    assert re.search(r"monitoring\.alerts\.rules(\.1|\[1\])", message), message


def test_every_catalogue_metric_with_its_scope_loads() -> None:
    for name, spec in MONITOR_METRICS.items():
        config = load_config_text(_rules(name, "*" if spec.scope == "column" else None), environ={})
        assert config.monitoring.alerts.rules[1].metric == name


def test_project_open_refuses_a_rule_on_an_unknown_metric(tmp_path: Path) -> None:
    (tmp_path / "prodml.toml").write_text(_rules("quality.missing_rat"))
    with pytest.raises(ConfigError, match=r"did you mean 'quality\.missing_rate'"):
        Project.open(tmp_path)


def test_monitor_run_exits_5_before_any_pass_on_an_unknown_metric(tmp_path: Path) -> None:
    (tmp_path / "prodml.toml").write_text(_rules("quality.missing_rat"))
    runner = CliRunner()
    result = runner.invoke(app, ["monitor", "run", "-p", str(tmp_path), "--json"])
    assert result.exit_code == 5, result.output
    error = json.loads(result.output)
    assert "alert rule 'nulls'" in json.dumps(error)
    human = runner.invoke(app, ["monitor", "run", "-p", str(tmp_path)])
    assert human.exit_code == 5
    assert "quality.missing_rat" in human.output
    assert not (tmp_path / ".prodml" / "meta.db").exists()  # no pass ran


def test_rule_metrics_command_lists_the_catalogue() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["monitor", "rule-metrics", "--json"])
    assert listed.exit_code == 0, listed.output
    names = {m["name"]: m for m in json.loads(listed.output)}
    assert set(names) == set(MONITOR_METRICS)
    assert names["quality.missing_rate"]["scope"] == "column"
    assert names["performance.roc_auc"]["waits_for_labels"] is True
    assert names["drift.share"]["waits_for_labels"] is False
    human = runner.invoke(app, ["monitor", "rule-metrics"])
    assert human.exit_code == 0
    assert "quality.missing_rate" in human.output


def test_a_check_cannot_emit_a_metric_outside_the_catalogue() -> None:
    assert emit("quality", "missing_rate", 0.5, "x").metric == "missing_rate"
    with pytest.raises(SchemaError, match=r"'quality\.missing_rat'"):
        emit("quality", "missing_rat", 0.5, "x")


def test_every_drift_statistic_of_the_catalogue_is_one_the_drift_scorer_knows() -> None:
    drift = [
        m.metric for m in MONITOR_METRICS.values() if m.check == "drift" and m.scope == "column"
    ]
    for statistic in drift:
        if statistic != "value":
            assert DriftMethod(statistic).limit > 0  # an unknown one raises
