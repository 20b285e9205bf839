"""Hostile and degenerate input to the experiment statistics, the analysis over the logs,
rollout plans and the ``prodml rollout``/``prodml ab`` commands: each is refused with the
narrowest prodml error naming the field (never a raw ValueError, KeyError or
OverflowError, never a number computed from NaN or infinity), and the CLI exits with a
usage error instead of a traceback."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli import app
from prodml.core import SimulatedClock
from prodml.core.errors import (
    ConfigError,
    DefinitionError,
    SchemaError,
    StateError,
    StorageError,
)
from prodml.registry import DeploymentSpec
from prodml.rollout import Guardrail, RolloutPlan
from prodml.rollout._analysis import analyze_experiment
from prodml.stats import (
    adjust_family,
    beta_binomial,
    mean_sample_size,
    msprt_means,
    msprt_proportions,
    noninferiority_proportions,
    normal_means,
    normal_test,
    paired_bootstrap,
    proportion_sample_size,
    relative_lift_from_stats,
    two_proportion_ztest,
    welch_ttest_from_stats,
)
from prodml.storage import LogStores, QuarantinedFile, open_log_stores
from servingkit import lr_model, register

runner = CliRunner(env={"COLUMNS": "400"})
NAN, INF = math.nan, math.inf


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, result.stdout + result.stderr


# -- stats: counts, means and standard deviations ---------------------------------------------


@pytest.mark.parametrize("bad", [NAN, INF, "a", None])
def test_a_count_that_is_no_whole_number_is_a_schema_error(bad: Any) -> None:
    with pytest.raises(SchemaError, match="successes_control: expected an integer >= 0"):
        two_proportion_ztest(bad, 10, 5, 10)
    with pytest.raises(SchemaError, match="n_control: expected an integer >= 2"):
        welch_ttest_from_stats(
            mean_control=0, sd_control=1, n_control=bad,
            mean_treatment=1, sd_treatment=1, n_treatment=10,
        )  # fmt: skip
    with pytest.raises(SchemaError, match="n_control: expected an integer >= 1"):
        relative_lift_from_stats(
            mean_control=1, sd_control=1, n_control=bad,
            mean_treatment=1, sd_treatment=1, n_treatment=10,
        )  # fmt: skip
    with pytest.raises(SchemaError, match="successes_control"):
        noninferiority_proportions(bad, 100, 10, 100, margin=0.01)


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_a_mean_that_is_not_finite_is_refused_not_tested(bad: float) -> None:
    stats = {"sd_control": 1.0, "n_control": 10, "sd_treatment": 1.0, "n_treatment": 10}
    with pytest.raises(SchemaError, match="mean_control: expected a finite number"):
        welch_ttest_from_stats(mean_control=bad, mean_treatment=1.0, **stats)
    with pytest.raises(SchemaError, match="mean_treatment: expected a finite number"):
        relative_lift_from_stats(mean_control=1.0, mean_treatment=bad, **stats)


def test_an_infinite_estimate_has_no_p_value_of_zero() -> None:
    with pytest.raises(SchemaError, match="estimate: expected a finite number"):
        normal_test(INF, 1.0)
    assert math.isnan(normal_test(NAN, 1.0).pvalue)  # an undefined metric: no information


def test_huge_standard_deviations_are_a_schema_error_not_an_overflow() -> None:
    with pytest.raises(SchemaError, match="sd_control, sd_treatment"):
        welch_ttest_from_stats(
            mean_control=11, sd_control=1e200, n_control=60,
            mean_treatment=10, sd_treatment=2, n_treatment=50,
        )  # fmt: skip


def test_a_tiny_control_mean_gives_a_finite_lift_not_a_zero_division() -> None:
    lift = relative_lift_from_stats(
        mean_control=1e-100, sd_control=1e-100, n_control=100,
        mean_treatment=1.1e-100, sd_treatment=1e-100, n_treatment=100,
    )  # fmt: skip
    assert lift.estimate == pytest.approx(0.1)
    assert lift.std_error == pytest.approx(math.sqrt(0.01 + 1.21 * 0.01))


# -- stats: sample size -----------------------------------------------------------------------


def test_a_sample_size_beyond_two_to_the_53_units_is_refused() -> None:
    with pytest.raises(ConfigError, match="p_treatment: the experiment would need"):
        proportion_sample_size(0.1, 0.1 + 1e-15)
    with pytest.raises(ConfigError, match="delta: the experiment would need"):
        mean_sample_size(1e-200, 1.0)
    with pytest.raises(ConfigError, match="delta: the experiment would need"):
        mean_sample_size(1e-200, 1e200)
    with pytest.raises(ConfigError, match="ratio: the experiment would need"):
        proportion_sample_size(0.1, 0.11, ratio=1e300)


def test_sample_size_arguments_that_are_not_numbers_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="p_control: expected a number, got 'x'"):
        proportion_sample_size("x", 0.11)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="delta: expected a number, got '1'"):
        mean_sample_size("1", 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [
        ["--baseline", "0.1", "--mde", "1e-17"],
        ["--sd", "1", "--mde", "1e-200"],
        ["--sd", "1e200", "--mde", "1e-200"],
    ],
)
def test_ab_size_of_an_undetectable_effect_is_a_usage_error(args: list[str]) -> None:
    code, out = _cli("ab", "size", *args)
    assert code == 2, out
    assert "Traceback" not in out
    assert "--mde" in out


# -- stats: families, priors, sequential looks, the bootstrap ---------------------------------


def test_a_bh_family_with_bad_input_is_refused_like_a_holm_one() -> None:
    for method in ("holm", "bh"):
        with pytest.raises(SchemaError, match=r"pvalues: expected values in \[0, 1\]"):
            adjust_family([0.01, 1.5], method=method)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="alpha: expected a level in"):
            adjust_family([0.01], method=method, alpha=2.0)  # type: ignore[arg-type]


def test_a_prior_that_is_not_a_pair_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="prior: expected a pair of numbers"):
        beta_binomial(1, 2, 1, 2, prior=(1.0,))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="prior: expected a pair of numbers"):
        normal_means(0.0, 1.0, 10, 1.0, 1.0, 10, prior=(0.0,))  # type: ignore[arg-type]


def test_looks_of_different_lengths_are_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="expected one value per look"):
        msprt_proportions([10, 20], [1], [10, 20, 30], [2], planned_n=100)
    with pytest.raises(SchemaError, match="expected one value per look"):
        msprt_means([10, 20], [1.0, 1.0], [1.0], [10, 20], [2.0, 2.0, 2.0], [1.0], planned_n=100)


def test_a_bootstrap_of_one_row_claims_no_significance() -> None:
    one = paired_bootstrap([1], [0.5], [0.4], "log_loss")
    assert one.difference == pytest.approx(math.log(0.5) - math.log(0.4))
    assert math.isnan(one.p_value)
    assert math.isnan(one.se)
    assert one.resamples == 0


# -- the analysis over the logs ---------------------------------------------------------------


E = "delay"
T0 = datetime(2013, 3, 1, tzinfo=UTC)


def _records(n: int = 200, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n`` one-row requests over 72 hours, split between a champion and a canary by
    unit, each labelled an hour later."""
    rng = np.random.default_rng(seed)
    records, labels = [], []
    for i in range(n):
        unit = int(rng.integers(0, n // 3))
        arm, role = ("champion", "champion") if unit % 2 else ("challenger", "canary")
        y = bool(rng.random() < 0.3)
        time = T0 + timedelta(seconds=3600 * 72 * i / n)
        score = float(np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2), 0.01, 0.99))
        records.append({
            "time": time, "request_id": f"r{i}", "endpoint": E, "arm": arm, "role": role,
            "model_version": f"m:{1 + (arm == 'challenger')}", "unit": f"u{unit}",
            "status": "ok", "shadow": False, "latency_ms": float(rng.gamma(2.0, 2.5)),
            "row": 0, "output": score, "feature.origin": ["EWR", "JFK", "LGA"][i % 3],
        })  # fmt: skip
        labels.append({"time": time + timedelta(hours=1), "endpoint": E, "request_id": f"r{i}",
                       "label": y, "source": "feedback"})  # fmt: skip
    return records, labels


def _write(root: Path, records: list[dict[str, Any]], labels: list[dict[str, Any]]) -> LogStores:
    logs = open_log_stores(root)
    for log, rows in ((logs.predictions, records), (logs.labels, labels)):
        with log.open_writer(clock=SimulatedClock(T0)) as writer:
            assert writer.extend(rows) == len(rows)
    return logs


def _logged(tmp_path: Path, n: int = 200) -> LogStores:
    return _write(tmp_path, *_records(n))


@pytest.mark.parametrize("column", ["output", "latency_ms"])
def test_segments_by_a_fixed_numeric_column_are_reported(tmp_path: Path, column: str) -> None:
    logs = _logged(tmp_path)
    result = analyze_experiment(logs, E, segment_by=column)
    segments = result.to_dict()["segments"]["challenger"]["segments"]
    assert segments
    assert sum(s["n_a"] + s["n_b"] for s in segments) > 0
    json.dumps(result.to_dict(), allow_nan=False)


def test_a_log_file_with_naive_times_is_refused_by_name_or_quarantined(tmp_path: Path) -> None:
    """Read with the others, its times turned the whole log's time column into text."""
    logs = _logged(tmp_path)
    first = sorted(tmp_path.rglob("predictions/**/*.parquet"))[0]
    table = pq.read_table(first)
    naive = table["time"].cast(pa.timestamp("us"))
    pq.write_table(table.set_column(table.column_names.index("time"), "time", naive), first)
    with pytest.raises(StorageError, match=rf"{first.name} cannot be read: .*'time' is timestamp"):
        analyze_experiment(logs, E)
    quarantine: list[QuarantinedFile] = []
    result = analyze_experiment(logs, E, quarantine=quarantine)
    assert [q.source.name for q in quarantine] == [first.name]
    assert sum(arm.records for arm in result.arms) == 200 - table.num_rows


def test_infinite_outputs_are_refused_like_outputs_outside_zero_one(tmp_path: Path) -> None:
    records, labels = _records()
    for record in records[::7]:
        record["output"] = math.inf
    logs = _write(tmp_path, records, labels)
    for metric in ("log_loss", "accuracy", "roc_auc"):
        with pytest.raises(SchemaError, match=f"metric '{metric}' needs finite model outputs"):
            analyze_experiment(logs, E, metric=metric)


# -- plans -------------------------------------------------------------------------------------


def test_a_bake_longer_than_a_timedelta_is_a_definition_error() -> None:
    with pytest.raises(
        DefinitionError, match="step bake: duration '99999999999999999999d' is too long"
    ):
        RolloutPlan.from_dict({"challenger": "m:2", "bake": "99999999999999999999d"})


def test_plan_fields_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(DefinitionError, match="extra must be a table, got 5"):
        RolloutPlan.from_dict({"challenger": "m:2", "extra": 5})
    with pytest.raises(DefinitionError, match="segment_by must be a column name, got 5"):
        RolloutPlan.from_dict({"challenger": "m:2", "segment_by": 5})


def test_a_guardrail_relative_flag_given_as_text_is_refused() -> None:
    with pytest.raises(DefinitionError, match="relative must be true or false, got 'false'"):
        Guardrail.from_dict({"metric": "error_rate", "margin": 0.1, "relative": "false"})


# -- the rollout commands ---------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> str:
    """``lr:1`` serves endpoint ``lr``; a canary plan rolls out ``lr:2``."""
    project = Project.init(tmp_path / "p", name="hostile")
    for C in (1.0, 0.1):
        model, X = lr_model(C=C)
        register(project, model, X)
    project.registry.set_alias("lr", "champion", "lr:1", actor="test")
    project.deployments.deploy("lr", DeploymentSpec.single("lr:1"), actor="test")
    project.rollout.start(
        "lr", {"challenger": "lr:2", "require_blessed": False}, actor="test", reason="sweep"
    )
    project.close()
    return str(tmp_path / "p")


def test_rollout_plan_with_an_overlong_bake_is_a_usage_error(root: str) -> None:
    code, out = _cli("rollout", "plan", "lr", "--challenger", "lr:2", "--bake", "9" * 20 + "d", "-p", root)  # fmt: skip
    assert code == 2, out
    assert "--bake" in out
    assert "too long" in out
    assert "Traceback" not in out


def test_rollout_report_to_an_unwritable_path_is_a_usage_error(root: str, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "report.html"
    code, out = _cli("rollout", "report", "lr", "-o", str(missing), "-p", root)
    assert code == 2, out
    assert "--output" in out
    assert "cannot write it" in out
    assert "Traceback" not in out
    assert not missing.parent.exists()
    folder = tmp_path / "reports"
    folder.mkdir()
    code, out = _cli("rollout", "report", "lr", "-o", str(folder), "-p", root)
    assert code == 2, out
    assert "is a directory" in out
    assert list(tmp_path.glob(".*.tmp")) == []
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("challenger", ["lr:1", "lr@champion"])
def test_a_canary_of_the_version_the_champion_serves_is_refused(
    tmp_path: Path, challenger: str
) -> None:
    project = Project.init(tmp_path / "p", name="same")
    model, X = lr_model()
    register(project, model, X)
    project.registry.set_alias("lr", "champion", "lr:1", actor="test")
    project.deployments.deploy("lr", DeploymentSpec.single("lr:1"), actor="test")
    with project:
        before = project.deployments.get("lr").revision
        with pytest.raises(StateError, match=r"challenger .* is lr:1, the version the champion"):
            project.rollout.start(
                "lr", {"challenger": challenger, "require_blessed": False}, actor="test"
            )
        assert project.deployments.get("lr").revision == before
        assert project.deployments.get("lr").spec.policy == "single"
        with pytest.raises(StateError, match="no rollout plan"):
            project.rollout.status("lr")
