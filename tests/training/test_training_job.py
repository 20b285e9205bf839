"""The training job end to end on a small project: run recorded, time split, model
evaluated from its stored bytes, gate, registration, champion comparison, and the
failure paths leaving no partial registry state."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from featurekit import T0
from prodml import Project
from prodml.core import DataValidationError, ModelNotFoundError, TrainingError
from prodml.storage._models import ModelVersionRow, RegisteredModelRow, RunRow
from prodml.training import predictions_sha256
from trainkit import TRAIN_PY, make_training_project

END = T0 + timedelta(days=10)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    proj = make_training_project(tmp_path / "p")
    yield proj
    proj.close()


def _count(project: Project, model: type) -> int:
    with project.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_train_records_the_run_and_registers_a_pending_candidate(project: Project) -> None:
    result = project.training.train(T0, END, actor="alice")
    version = result.version
    assert version is not None
    assert version.ref == "flight_delay:1"
    assert version.status == "pending"
    assert version.created_by == "alice"
    assert version.gate_status == "BLESSED"
    assert result.gate.blessed
    run = project.registry.get_run(version.run_id or "")
    assert run.status == "finished"
    assert run.seed == 7
    assert run.params == {"C": 1.0}
    assert run.datasets == ((result.training_set, "train"),)
    assert run.service_name == "flight_delay"
    assert run.service_version
    assert "numpy" in run.environment["packages"]
    assert run.job["trainer"] == "train.py:train"
    assert run.job["trainer_sha256"]
    assert run.job["predictions_sha256"] == result.predictions_sha256
    assert run.metrics["roc_auc"] == pytest.approx(result.report.metrics["roc_auc"])
    # The version carries its signature, training profile, evaluation and gate.
    columns = [c["name"] for c in version.signature["inputs"]]
    assert columns[:2] == ["temp", "wind_speed"]
    assert "dep_hour" in columns
    assert version.profile is not None
    assert version.profile["row_count"] == 3000
    assert version.evaluation is not None
    assert version.evaluation["training_set"] == result.training_set
    assert set(version.evaluation["test"]["slices"]["origin"]) == {"EWR", "JFK", "LGA"}
    assert version.metrics["roc_auc"] > 0.8


def test_the_split_is_by_time_and_the_model_is_scored_from_its_stored_bytes(
    project: Project,
) -> None:
    result = project.training.train(T0, END)
    training_set = project.features.get_training_set(result.training_set)
    frame = training_set.to_pandas()
    test_start = pd.Timestamp(result.split["test_start"])
    valid_start = pd.Timestamp(result.split["validation_start"])
    times = frame["sched_dep"]
    assert result.split["test"] == int((times >= test_start).sum())
    assert result.split["validation"] == int(((times >= valid_start) & (times < test_start)).sum())
    assert result.split["train"] == int((times < valid_start).sum())
    # Score the registered (verified) artifact on the test rows: same checksum.
    assert result.version is not None
    loaded = project.registry.load(result.version.ref)
    scores = loaded.predict(frame[times >= test_start])
    assert predictions_sha256(scores) == result.predictions_sha256


def test_same_seed_and_data_give_identical_predictions(project: Project) -> None:
    first = project.training.train(T0, END, register=False)
    second = project.training.train(T0, END, register=False)
    assert first.predictions_sha256 == second.predictions_sha256
    assert first.training_set == second.training_set
    assert _count(project, ModelVersionRow) == 0


def test_second_model_is_gated_against_the_champion_on_the_same_rows(project: Project) -> None:
    first = project.training.train(T0, END)
    assert first.version is not None
    project.registry.approve(first.version.ref, actor="alice")
    project.registry.set_alias("flight_delay", "champion", 1, actor="alice")
    second = project.training.train(T0, END, params={"C": 0.0001})
    assert second.champion == "flight_delay:1"
    assert second.champion_report is not None
    assert second.champion_report.rows == second.report.rows
    assert second.champion_report.metrics["roc_auc"] == pytest.approx(
        first.report.metrics["roc_auc"]
    )
    names = [check.name for check in second.gate.checks]
    assert "roc_auc vs champion" in names
    assert any(name.startswith("roc_auc vs champion [origin=") for name in names)
    evaluation = second.version.evaluation if second.version else None
    assert evaluation is not None
    assert evaluation["champion"]["version"] == "flight_delay:1"
    assert set(evaluation["champion"]["report"]["slices"]["origin"]) == {"EWR", "JFK", "LGA"}


def test_heavily_regularised_model_is_not_blessed_and_cannot_be_challenger(
    project: Project,
) -> None:
    first = project.training.train(T0, END)
    assert first.version is not None
    project.registry.approve(first.version.ref)
    project.registry.set_alias("flight_delay", "champion", 1)
    # C tiny: the model predicts the base rate, ROC-AUC collapses against the champion.
    worse = project.training.train(T0, END, params={"C": 1e-8})
    assert not worse.gate.blessed
    assert any("vs champion" in reason for reason in worse.gate.reasons)
    from prodml.core import StateError

    with pytest.raises(StateError, match="only blessed versions can become 'challenger'"):
        project.registry.set_alias("flight_delay", "challenger", 2)


def test_a_trainer_that_raises_fails_its_run_and_registers_nothing(tmp_path: Path) -> None:
    broken = TRAIN_PY.replace(
        "    model = make_pipeline", "    raise ValueError('boom')\n    model = make_pipeline"
    )
    project = make_training_project(tmp_path / "p", train_py=broken)
    with project, pytest.raises(TrainingError, match=r"train.py:train raised ValueError: boom"):
        project.training.train(T0, END)
    with project.db.session() as session:
        runs = session.scalars(select(RunRow)).all()
        assert [(r.status, r.error) for r in runs] == [
            ("failed", "TrainingError: training function train.py:train raised ValueError: boom")
        ]
        assert session.scalar(select(func.count()).select_from(ModelVersionRow)) == 0
        assert session.scalar(select(func.count()).select_from(RegisteredModelRow)) == 0


def test_a_trainer_returning_none_is_a_training_error(tmp_path: Path) -> None:
    lazy = TRAIN_PY.replace(
        '    return model.fit(data.X_train.astype("float64"), data.y_train)', "    return None"
    )
    project = make_training_project(tmp_path / "p", train_py=lazy)
    with project, pytest.raises(TrainingError, match="returned None; expected a model"):
        project.training.train(T0, END)


def test_a_training_set_failing_validation_starts_no_run(tmp_path: Path) -> None:
    from prodml.validation import infer_expectations, profile

    project = make_training_project(tmp_path / "p")
    project.close()
    root = tmp_path / "p"
    weather = pq.read_table(root / "data" / "weather.parquet").select(["temp", "wind_speed"])
    expectations = infer_expectations(profile(weather), range_tolerance=0.0)
    temp = expectations.columns["temp"]
    assert temp.range is not None
    tight = temp.model_copy(
        update={"range": temp.range.model_copy(update={"max": 30.0, "severity": "error"})}
    )
    expectations = expectations.model_copy(
        update={"columns": {**expectations.columns, "temp": tight}}
    )
    expectations.save(root / "weather.json")
    features = (root / "features.py").read_text()
    (root / "features.py").write_text(
        features.replace(
            "ttl=timedelta(hours=3),", 'ttl=timedelta(hours=3), expectations="weather.json",'
        )
    )
    with Project.open(root) as project:
        project.features.apply()
        with pytest.raises(DataValidationError, match="feature view 'weather'"):
            project.training.train(T0, END)
        assert _count(project, RunRow) == 0
        assert _count(project, ModelVersionRow) == 0


def test_recency_weights_and_warm_start_reach_the_training_function(tmp_path: Path) -> None:
    spy = TRAIN_PY.replace(
        'params={"C": 1.0}, seed=7, segments=["origin"])',
        'params={"C": 1.0}, seed=7, segments=["origin"], recency_half_life_days=2.0)',
    ).replace(
        "    model = make_pipeline",
        "    data.run.log_metrics({'w_min': data.w_train.min(), 'w_max': data.w_train.max()})\n"
        "    data.run.set_tag('parent', type(data.parent).__name__)\n"
        "    print('fitting with', len(data.X_train), 'rows')\n    model = make_pipeline",
    )
    project = make_training_project(tmp_path / "p", train_py=spy)
    with project:
        first = project.training.train(T0, END)
        assert first.version is not None
        second = project.training.train(T0, END, parent=first.version.ref)
        assert project.registry.get_run(second.run.id).parent_version == "flight_delay:1"
        first_run = project.registry.get_run(first.run.id)
        second_run = project.registry.get_run(second.run.id)
        assert first_run.tags["parent"] == "NoneType"
        log = project.artifacts.get_bytes(first_run.artifacts["train.log"]["digest"])
        assert log.decode() == f"fitting with {first.split['train']} rows\n"
        assert second_run.tags["parent"] == "Pipeline"  # the loaded flight_delay:1
        # Recency weights: 1 for the latest training row, halving every 2 days before it.
        span = pd.Timestamp(second.split["validation_start"]) - pd.Timestamp(T0)
        assert second_run.metrics["w_max"] == pytest.approx(1.0)
        assert second_run.metrics["w_min"] == pytest.approx(
            0.5 ** (span / pd.Timedelta(days=2)), rel=0.05
        )


def test_unknown_parent_is_refused_before_any_run(project: Project) -> None:
    with pytest.raises(ModelNotFoundError, match="'nope' is not registered"):
        project.training.train(T0, END, parent="nope:1")
    assert _count(project, RunRow) == 0


def test_empty_window_is_a_clear_error(project: Project) -> None:
    start, end = END + timedelta(days=30), END + timedelta(days=31)
    with pytest.raises(TrainingError, match="no labelled rows") as info:
        project.training.train(start, end)
    message = str(info.value)
    assert f"[{start.isoformat()}, {end.isoformat()})" in message
    assert "'data/rows.parquet'" in message
    assert "3,000 rows" in message
    assert "from 2013-01-01" in message  # the rows' own time range
    assert "to 2013-01-10" in message
    assert _count(project, RunRow) == 0


@pytest.mark.parametrize("days", [0, -1])
def test_start_not_before_end_is_refused_before_any_run(project: Project, days: int) -> None:
    end = T0 + timedelta(days=days)
    with pytest.raises(TrainingError, match=r"start .* is not before end") as info:
        project.training.train(T0, end)
    assert T0.isoformat() in str(info.value)
    assert _count(project, RunRow) == 0


@pytest.mark.parametrize(
    ("content", "message"), [(b"", r"is empty \(0 bytes\)"), (b"not parquet", "not a Parquet")]
)
def test_unreadable_entity_rows_file_is_named(
    project: Project, content: bytes, message: str
) -> None:
    from prodml.core import SourceError

    path = project.root / "data" / "rows.parquet"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message) as info:
        project.training.train(T0, END)
    assert str(path) in str(info.value)
    assert _count(project, RunRow) == 0


_DEP_HOUR_ONLY = TRAIN_PY.replace(
    'model = make_pipeline(SimpleImputer(), LogisticRegression(C=data.params["C"], max_iter=500))',
    "from sklearn.compose import make_column_transformer\n"
    '    model = make_pipeline(make_column_transformer((SimpleImputer(), ["dep_hour"])),'
    ' LogisticRegression(C=data.params["C"], max_iter=500))',
).replace('data.X_train.astype("float64")', "data.X_train")


def test_a_view_matching_no_row_is_a_warning_or_an_error(tmp_path: Path) -> None:
    import pyarrow as pa

    from prodml.core import DataValidationError

    assert _DEP_HOUR_ONLY != TRAIN_PY
    project = make_training_project(tmp_path / "p", train_py=_DEP_HOUR_ONLY)
    path = tmp_path / "p" / "data" / "rows.parquet"
    table = pq.read_table(path)
    index = table.schema.get_field_index("origin")
    pq.write_table(table.set_column(index, "origin", pa.array(["XXX"] * table.num_rows)), path)
    with project:
        with pytest.raises(DataValidationError, match=r"feature view 'weather'.*0 of 3,000"):
            project.training.train(T0, END, on_unmatched_view="error")
        assert _count(project, RunRow) == 0
        result = project.training.train(T0, END, register=False)
        (warning,) = result.training_set_warnings
        assert "feature view 'weather': 0 of 3,000 entity rows" in warning
        assert result.to_dict()["training_set_warnings"] == [warning]


def test_rows_without_labels_are_refused(tmp_path: Path) -> None:
    import pyarrow as pa

    from prodml.core import SchemaError

    project = make_training_project(tmp_path / "p")
    path = tmp_path / "p" / "data" / "rows.parquet"
    table = pq.read_table(path)
    late = table["late"].to_pylist()
    late[5] = None
    pq.write_table(
        table.set_column(table.schema.get_field_index("late"), "late", pa.array(late)), path
    )
    with (
        project,
        pytest.raises(SchemaError, match=r"'late' \(the label\): 1 of 3000 rows are null"),
    ):
        project.training.train(T0, END)
