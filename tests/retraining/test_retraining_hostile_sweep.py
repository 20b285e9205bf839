"""Hostile inputs and faults against the retraining controller: policies that cannot be
honoured (a trigger metric monitoring never computes, a model the trainer does not
register, an empty data window), monitoring windows stamped after the pass's time, and
the CLI's ``--json`` on a pass where one policy fails, NaN labels, a forced job after a
failed one. Each costs that policy's pass — refused with a named error, recorded,
reported — never the other policies, and never a job run on the wrong model or on data
from the future."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

import retraining.test_retraining_controller as controller
from prodml.cli import app
from prodml.monitoring import Result
from retraining.test_retraining_controller import (
    BROKEN_TRAIN,
    DAY,
    NOW,
    T0,
    E,
    opened,
    versions,
    window,
)
from trainkit import TRAIN_PY

root = controller.root  # champion flight_delay:1 serving E alone, a performance policy

SCHEDULED = """
[[retraining.policies]]
name = "nightly"
model = "flight_delay"
endpoint = "flight_delay"
window = "expanding"
start = 2013-01-01T00:00:00Z

[[retraining.policies.triggers]]
kind = "schedule"
every = "1d"
"""


def _edit(root: Path, old: str, new: str) -> None:
    text = (root / "prodml.toml").read_text()
    assert old in text
    (root / "prodml.toml").write_text(text.replace(old, new, 1))


def _unknown_metric(root: Path) -> None:
    """The ``perf`` policy watches a metric monitoring never computes; ``nightly`` is
    a healthy schedule policy next to it."""
    _edit(root, 'metric = "performance.roc_auc"', 'metric = "performance.nonexistent"')
    with (root / "prodml.toml").open("a") as f:
        f.write(SCHEDULED)


def test_an_unknown_trigger_metric_costs_its_policy_only(root: Path) -> None:
    _unknown_metric(root)
    with opened(root, NOW) as project:
        for day in range(3):
            window(project, day, 0.5)
        jobs = project.retraining.run_once()  # no pydantic ValidationError escapes
        assert [(j.policy, j.trigger) for j in jobs] == [("nightly", "schedule")]
        (failure,) = project.retraining.failures
        assert failure.policy == "perf"
        assert "performance.nonexistent" in str(failure.error)
        assert type(failure.error).__name__ == "ConfigError"


def test_controller_run_json_reports_a_failed_policy_and_exits_non_zero(root: Path) -> None:
    _unknown_metric(root)
    result = CliRunner().invoke(
        app, ["controller", "run", "--policy", "perf", "--project", str(root), "--json"]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 5, result.output  # a ConfigError
    out = json.loads(result.stdout)
    assert out["jobs"] == []
    (failure,) = out["failures"]
    assert failure["policy"] == "perf"
    assert failure["type"] == "ConfigError"
    assert "performance.nonexistent" in failure["error"]


def test_a_policy_naming_another_model_than_the_trainers_trains_nothing(root: Path) -> None:
    _edit(root, 'model = "flight_delay"', 'model = "ghost"')
    with opened(root, NOW) as project:
        before = versions(project)
        (job,) = project.retraining.run_once(force=True)
        assert job.status == "failed"
        assert "model 'ghost'" in (job.error or "")
        assert "expected model = 'flight_delay'" in (job.error or "")
        assert [s["name"] for s in job.steps if s["status"] == "failed"] == ["validate"]
        assert job.candidate is None
        assert versions(project) == before  # no version registered under another name


def test_an_empty_data_window_fails_at_the_window_step(root: Path) -> None:
    _edit(root, "start = 2013-01-01T00:00:00Z", "start = 2030-01-01T00:00:00Z")
    with opened(root, NOW) as project:
        (job,) = project.retraining.run_once(force=True)
        assert job.status == "failed"
        assert "is empty" in (job.error or "")
        assert [(s["name"], s["status"]) for s in job.steps] == [("window", "failed")]


def test_windows_ending_after_the_pass_time_neither_fire_nor_hide_later_windows(root: Path) -> None:  # fmt: skip
    with opened(root, NOW) as project:
        for day in range(20, 23):  # stamped ten days after the pass's time (clock skew)
            window(project, day, 0.5)
        assert project.retraining.run_once() == []
    # Time reaches those windows: they count then, once.
    with opened(root, T0 + 23 * DAY) as project:
        (job,) = project.retraining.run_once()
        assert job.trigger == "performance"
        assert job.evidence["window_end"] == (T0 + 22 * DAY).isoformat()  # the second of three


def test_a_future_window_does_not_swallow_the_real_windows_after_it(root: Path) -> None:
    with opened(root, NOW) as project:
        window(project, 30, 0.9)  # a healthy window stamped twenty days ahead
        window(project, 0, 0.5)
        assert project.retraining.run_once() == []  # one bad window of three: no more
        window(project, 1, 0.5)
        (job,) = project.retraining.run_once()  # two of the last three below 0.7
        assert job.evidence["window_end"] == (T0 + 2 * DAY).isoformat()


def test_a_threshold_from_a_metric_the_champion_lacks_is_refused_not_skipped(root: Path) -> None:
    # No threshold: the champion's own test rmse — a classifier has none.
    _edit(root, 'metric = "performance.roc_auc"\nthreshold = 0.7', 'metric = "performance.rmse"')
    with opened(root, NOW) as project:
        for day in range(3):
            start = T0 + day * DAY
            project.monitor.store.save_window(
                endpoint=E, arm="champion", model_version="flight_delay:1", shadow=False,
                start=start, end=start + DAY, rows=100, status="ok",
                results=[Result("performance", "rmse", 5.0)], label_rows=100,
                labels_final=True, now=start + DAY,
            )  # fmt: skip
        assert project.retraining.run_once() == []
        (failure,) = project.retraining.failures  # not a silent "nothing fired"
        assert failure.policy == "perf"
        assert "flight_delay:1 has no finite test 'rmse'" in str(failure.error)


def test_a_forced_job_after_a_failure_records_the_reason_given(root: Path) -> None:
    (root / "train.py").write_text(BROKEN_TRAIN)
    with opened(root, NOW) as project:
        (failed,) = project.retraining.run_once(force=True, reason="first try")
        assert failed.status == "failed"
    (root / "train.py").write_text(TRAIN_PY)
    with opened(root, NOW + DAY) as project:
        (job,) = project.retraining.run_once(force=True, reason="the disk was cleaned")
        assert (job.trigger, job.reason) == ("manual", "started by hand: the disk was cleaned")
        assert job.status == "succeeded"
        assert project.retraining.run_once() == []  # the manual job superseded the retry


def test_a_sliding_window_longer_than_the_calendar_is_a_named_config_error(root: Path) -> None:
    _edit(root, 'window = "expanding"', 'window = "sliding"\nwindow_days = 99999999999')
    _edit(root, "start = 2013-01-01T00:00:00Z\n", "")
    with opened(root, NOW) as project:
        (job,) = project.retraining.run_once(force=True)
        assert job.status == "failed"
        assert (job.error or "").startswith("ConfigError: retraining policy 'perf': window_days")
        assert [(s["name"], s["status"]) for s in job.steps] == [("window", "failed")]


def _labels(root: Path, values: np.ndarray) -> None:
    rows = pq.read_table(root / "data" / "rows.parquet")
    late = rows.schema.get_field_index("late")
    pq.write_table(rows.set_column(late, "late", pa.array(values)), root / "data" / "rows.parquet")


def test_nan_labels_are_not_counted_as_labelled_rows(root: Path) -> None:
    _labels(root, np.full(3000, np.nan))
    with opened(root, NOW) as project:
        (job,) = project.retraining.run_once(force=True)
        assert job.status == "failed"
        (failed,) = [s for s in job.steps if s["status"] == "failed"]
        assert failed["name"] == "validate"  # not "ok" with 3000 labelled rows, mean nan
        assert "0 labelled rows of 3000" in (job.error or "")


def test_the_validate_step_records_the_labelled_rows_and_mean_without_nan(root: Path) -> None:
    values = np.where(np.arange(3000) % 2 == 0, np.nan, np.arange(3000) % 4 == 1)
    _labels(root, values.astype("float64"))
    with opened(root, NOW) as project:
        (job,) = project.retraining.run_once(force=True)
        (validate,) = [s for s in job.steps if s["name"] == "validate"]
        assert validate["status"] == "ok"
        assert validate["detail"]["labelled"] == 1500
        assert validate["detail"]["label_mean"] == 0.5
