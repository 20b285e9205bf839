"""Full refit after the gate, probability calibration on the validation split, and warm
start: what is registered, what the evaluation says about it, and the failure paths."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from featurekit import T0
from prodml import Project
from prodml.core import ConfigError, TrainingError
from prodml.registry.formats import get_format
from prodml.storage._models import ModelVersionRow, RunRow
from prodml.training import TrainingData, expected_calibration_error, predictions_sha256
from trainkit import CONFIG, END, TRAIN_PY, cli_json, make_training_project

# The trainkit trainer, printing what it is given (kept in the run's train.log/refit.log).
SPY = TRAIN_PY.replace(
    'segments=["origin"])',
    'segments=["origin"], recency_half_life_days=2.0)',
).replace(
    "    model = make_pipeline",
    "    print(len(data.X_train), data.X_valid is None, len(data.w_train), data.w_train.max())\n"
    "    model = make_pipeline",
)

# Deliberately miscalibrated: a fully grown tree scores (almost) only 0 and 1.
TREE = TRAIN_PY.replace(
    "from sklearn.linear_model import LogisticRegression",
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.tree import DecisionTreeClassifier",
).replace(
    'LogisticRegression(C=data.params["C"], max_iter=500)',
    "DecisionTreeClassifier(min_samples_leaf=2, random_state=data.seed)",
)

REGRESSION = (
    TRAIN_PY.replace('LogisticRegression(C=data.params["C"], max_iter=500)', "LinearRegression()")
    .replace(
        "from sklearn.linear_model import LogisticRegression",
        "from sklearn.linear_model import LinearRegression",
    )
    .replace('segments=["origin"])', 'segments=["origin"], task="regression")')
)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    proj = make_training_project(tmp_path / "p", train_py=SPY)
    yield proj
    proj.close()


def _count(project: Project, model: type) -> int:
    with project.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _log(project: Project, run_id: str, name: str) -> str:
    run = project.registry.get_run(run_id)
    return project.artifacts.get_bytes(run.artifacts[name]["digest"]).decode()


def _test_rows(project: Project, result: object) -> pd.DataFrame:
    frame = project.features.get_training_set(result.training_set).to_pandas()  # type: ignore[attr-defined]
    return frame[frame["sched_dep"] >= pd.Timestamp(result.split["test_start"])]  # type: ignore[attr-defined]


def test_full_refit_registers_a_model_fitted_on_every_row_and_keeps_the_evaluation(
    project: Project,
) -> None:
    plain = project.training.train(T0, END, register=False)
    result = project.training.train(T0, END, refit="full")
    version = result.version
    assert version is not None
    assert version.evaluation is not None
    assert result.refit is not None
    split = result.split
    total = split["train"] + split["validation"] + split["test"]
    # The evaluated model is the one a plain job fits: same predictions, metrics, gate.
    assert result.predictions_sha256 == plain.predictions_sha256
    assert result.report.metrics == plain.report.metrics
    assert version.metrics["roc_auc"] == pytest.approx(plain.report.metrics["roc_auc"])
    assert version.gate == result.gate.to_dict()
    assert version.gate_status == plain.gate.status
    # The registered artifact is the refit's; both SHA-256 are recorded.
    refit = version.evaluation["refit"]
    assert refit == result.refit.to_dict()
    assert refit["mode"] == "full"
    assert refit["rows"] == total
    assert refit["seconds"] >= 0
    assert version.artifact_digest == refit["sha256"] == result.artifact_sha256
    assert refit["evaluated_sha256"] != refit["sha256"]
    run = project.registry.get_run(result.run.id)
    assert run.job["evaluated_sha256"] == refit["evaluated_sha256"]
    assert run.job["artifact_sha256"] == refit["sha256"]
    assert run.job["refit"] == refit
    assert run.artifacts["evaluated_model"]["digest"] == refit["evaluated_sha256"]
    assert run.metrics["refit_rows"] == total

    # The refit saw every row, no validation split, recency weights over all rows.
    def given(log: str) -> tuple[int, str, int, float]:
        rows, no_valid, weights, latest = _log(project, run.id, log).split()
        return int(rows), no_valid, int(weights), float(latest)

    assert given("train.log") == (split["train"], "False", split["train"], 1.0)
    assert given("refit.log") == (total, "True", total, 1.0)
    # The evaluated bytes still score the test rows as reported; the served model differs.
    test = _test_rows(project, result)[[c["name"] for c in version.signature["inputs"]]]
    evaluated = get_format(version.format).load(
        project.artifacts.get_bytes(refit["evaluated_sha256"])
    )
    assert predictions_sha256(get_format(version.format).predict(evaluated, test)) == (
        result.predictions_sha256
    )
    served = project.registry.load(version.ref).predict(test)
    assert predictions_sha256(served) != result.predictions_sha256
    assert version.evaluation["training"] == {"mode": "stateless", "parent": None}
    assert version.evaluation["calibration"] is None


def test_refit_comes_from_the_config_and_the_keyword_overrides_it(tmp_path: Path) -> None:
    config = CONFIG.replace("[training]\n", '[training]\nrefit = "full"\n')
    with make_training_project(tmp_path / "p", train_py=SPY, config=config) as project:
        assert project.training.train(T0, END, register=False).refit is not None
        plain = project.training.train(T0, END, refit="none")
        assert plain.refit is None
        assert plain.version is not None
        assert plain.version.evaluation is not None
        assert plain.version.evaluation["refit"] is None
        assert plain.version.artifact_digest == plain.artifact_sha256
        with pytest.raises(ConfigError, match=r"train\(refit=\.\.\.\) 'partial': expected one of"):
            project.training.train(T0, END, refit="partial")  # type: ignore[arg-type]


def test_a_not_blessed_candidate_is_still_refitted_and_registered(tmp_path: Path) -> None:
    config = CONFIG.replace('"roc_auc >= 0.6"', '"roc_auc >= 0.99"')
    with make_training_project(tmp_path / "p", config=config) as project:
        result = project.training.train(T0, END, refit="full")
        assert result.gate.status == "NOT_BLESSED"
        assert result.version is not None
        assert result.version.gate_status == "NOT_BLESSED"
        assert result.version.artifact_digest == result.artifact_sha256
        assert result.refit is not None
        assert result.refit.evaluated_sha256 != result.artifact_sha256


def test_a_refit_that_raises_fails_the_run_and_registers_nothing(tmp_path: Path) -> None:
    broken = TRAIN_PY.replace(
        "    model = make_pipeline",
        "    if data.X_valid is None:\n        raise ValueError('no refit')\n    model = make_pipeline",
    )
    with make_training_project(tmp_path / "p", train_py=broken) as project:
        assert project.training.train(T0, END, register=False).refit is None
        with pytest.raises(
            TrainingError,
            match=r"refit on 3,000 rows: training function train.py:train raised ValueError",
        ):
            project.training.train(T0, END, refit="full")
        assert _count(project, ModelVersionRow) == 0
        with project.db.session() as session:
            (error,) = session.scalars(select(RunRow.error).where(RunRow.status == "failed"))
        assert error is not None
        assert "refit on 3,000 rows" in error


def test_a_refit_that_cannot_score_the_test_rows_is_a_training_error(tmp_path: Path) -> None:
    # The refit (no validation split) learns on one column only: the test rows have more.
    narrow = TRAIN_PY.replace(
        '    return model.fit(data.X_train.astype("float64"), data.y_train)',
        '    X = data.X_train.astype("float64")\n'
        "    if data.X_valid is None:\n"
        '        X = X[["dep_hour"]]\n'
        "    return model.fit(X, data.y_train)",
    )
    with make_training_project(tmp_path / "p", train_py=narrow) as project:
        with pytest.raises(
            TrainingError, match=r"the refit of train\.py:train on 3,000 rows failed"
        ):
            project.training.train(T0, END, refit="full")
        assert _count(project, ModelVersionRow) == 0


def _ece(project: Project, result: object, scores: np.ndarray) -> float:
    return expected_calibration_error(_test_rows(project, result)["late"].to_numpy(), scores)


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_lowers_the_ece_of_a_miscalibrated_model(tmp_path: Path, method: str) -> None:
    with make_training_project(tmp_path / "p", train_py=TREE) as project:
        raw = project.training.train(T0, END, register=False)
        result = project.training.train(T0, END, calibration=method)  # type: ignore[arg-type]
        version = result.version
        assert version is not None
        assert version.evaluation is not None
        before, after = raw.report.metrics["ece"], result.report.metrics["ece"]
        assert after < before / 2, (before, after)
        assert version.metrics["ece"] == pytest.approx(after)
        assert version.evaluation["calibration"] == {
            "method": method,
            "rows": result.split["validation"],
        }
        assert project.registry.get_run(result.run.id).job["calibration"] == result.calibration
        # The registered model is a safe sklearn object predicting calibrated probabilities.
        loaded = project.registry.load(version.ref)
        assert version.format == "skops"
        assert type(loaded.model).__name__ == "CalibratedClassifierCV"
        scores = loaded.predict(_test_rows(project, result))
        assert predictions_sha256(scores) == result.predictions_sha256
        assert _ece(project, result, scores) == pytest.approx(after)
        assert len(np.unique(scores)) > 2  # no longer (almost) only 0 and 1


def test_calibration_with_refit_reuses_the_mapping_on_the_refitted_model(
    tmp_path: Path,
) -> None:
    with make_training_project(tmp_path / "p", train_py=SPY) as project:
        result = project.training.train(T0, END, refit="full", calibration="sigmoid")
        version = result.version
        assert version is not None
        assert version.evaluation is not None
        assert version.evaluation["calibration"] == {
            "method": "sigmoid",
            "rows": result.split["validation"],
        }
        refit = version.evaluation["refit"]
        served = project.registry.load(version.ref).model
        evaluated = get_format("skops").load(project.artifacts.get_bytes(refit["evaluated_sha256"]))
        (served_pair,), (evaluated_pair,) = (
            served.calibrated_classifiers_,
            evaluated.calibrated_classifiers_,
        )
        # Same calibration mapping …
        assert served_pair.calibrators[0].a_ == evaluated_pair.calibrators[0].a_
        assert served_pair.calibrators[0].b_ == evaluated_pair.calibrators[0].b_
        # … over a different base model: the one refitted on every row.
        served_base = served.estimator.estimator[-1]
        evaluated_base = evaluated.estimator.estimator[-1]
        assert not np.array_equal(served_base.coef_, evaluated_base.coef_)
        assert served_pair.estimator is served.estimator
        rows = int(_log(project, result.run.id, "refit.log").split()[0])
        assert (
            rows == refit["rows"] == sum(result.split[k] for k in ("train", "validation", "test"))
        )
        stored = project.artifacts.get_bytes(version.artifact_digest)
        assert hashlib.sha256(stored).hexdigest() == version.artifact_digest == refit["sha256"]


def test_calibrating_a_regression_model_is_a_config_error(tmp_path: Path) -> None:
    with make_training_project(tmp_path / "p", train_py=REGRESSION) as project:
        assert project.training.train(T0, END, register=False).calibration is None
        with pytest.raises(
            ConfigError,
            match=r"train\(calibration=\.\.\.\) 'isotonic': calibration applies to classifiers "
            r"only, and train.py:train trains a regression model; expected 'none'",
        ):
            project.training.train(T0, END, calibration="isotonic")
        runs = _count(project, RunRow)
    config = CONFIG.replace("[training]\n", '[training]\ncalibration = "sigmoid"\n')
    with make_training_project(tmp_path / "q", train_py=REGRESSION, config=config) as project:
        with pytest.raises(ConfigError, match=r"\[training\] calibration 'sigmoid'"):
            project.training.train(T0, END)
        assert _count(project, RunRow) == 0
    assert runs == 1


def test_calibration_without_validation_rows_is_refused_before_any_run(tmp_path: Path) -> None:
    config = CONFIG.replace("[training]\n", "[training]\nvalidation_fraction = 0.0\n")
    with make_training_project(tmp_path / "p", config=config) as project:
        with pytest.raises(TrainingError, match=r"expected validation_fraction > 0"):
            project.training.train(T0, END, calibration="isotonic")
        assert _count(project, RunRow) == 0


def test_the_version_records_stateless_or_warm_start_training(project: Project) -> None:
    first = project.training.train(T0, END)
    assert first.version is not None
    second = project.training.train(T0, END, parent=first.version.ref, refit="full")
    assert second.version is not None
    assert second.version.evaluation is not None
    expected = {"mode": "warm_start", "parent": "flight_delay:1"}
    assert second.version.evaluation["training"] == expected == second.training
    assert project.registry.get_run(second.run.id).job["training"] == expected
    assert second.to_dict()["training"] == expected


# --- the flights demo trainer's warm start --------------------------------------------


def _flights(n: int, seed: int, origins: list[str]) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    hour = rng.integers(5, 24, n)
    frame = pd.DataFrame(
        {
            "origin": rng.choice(origins, n),
            "carrier": rng.choice(["AA", "UA", "DL"], n),
            "temp": rng.normal(50, 10, n),
            "dep_hour": hour.astype("float64"),
        }
    )
    late = pd.Series(rng.random(n) < 1 / (1 + np.exp(-(hour - 15) / 2.0)))
    return frame, late


def _flights_data(seed: int, origins: list[str], params: dict, parent: object) -> TrainingData:
    X, y = _flights(600, seed, origins)
    return TrainingData(
        X_train=X,
        y_train=y,
        w_train=None,
        X_valid=None,
        y_valid=None,
        params=params,
        seed=13,
        features=list(X.columns),
        parent=parent,
    )


PARAMS = {"max_iter": 20, "learning_rate": 0.1, "max_leaf_nodes": 15}


def test_the_flights_trainer_warm_starts_from_a_parent_pipeline() -> None:
    from prodml.demo.flights_train import train

    parent = train(_flights_data(1, ["EWR", "JFK"], PARAMS, None))
    assert parent.named_steps["trees"].n_iter_ == 20
    categories = [list(c) for c in parent.named_steps["encode"].named_transformers_[
        "categories"
    ].categories_]  # fmt: skip
    # New rows with an airport the parent never saw: 15 more trees, same encoding.
    data = _flights_data(2, ["EWR", "JFK", "LGA"], {**PARAMS, "warm_start_iter": 15}, parent)
    child = train(data)
    trees = child.named_steps["trees"]
    assert trees.n_iter_ == 35
    assert trees.warm_start
    encode = child.named_steps["encode"].named_transformers_["categories"]
    assert [list(c) for c in encode.categories_] == categories
    assert parent.named_steps["trees"].n_iter_ == 20  # the parent is left as it was
    proba = child.predict_proba(data.X_train)[:, 1]
    assert proba.shape == (600,)
    assert np.all((proba > 0) & (proba < 1))
    # The first 20 trees are the parent's: the first stage predicts identically.
    first_child = next(trees.staged_decision_function(encode_rows(child, data.X_train)))
    first_parent = next(
        parent.named_steps["trees"].staged_decision_function(encode_rows(parent, data.X_train))
    )
    np.testing.assert_array_equal(first_child, first_parent)


def encode_rows(model: object, X: pd.DataFrame) -> np.ndarray:
    return model.named_steps["encode"].transform(X)  # type: ignore[attr-defined]


def test_the_flights_trainer_trains_afresh_from_a_parent_of_another_shape() -> None:
    from sklearn.linear_model import LogisticRegression

    from prodml.demo.flights_train import train

    other = LogisticRegression()
    fresh = train(_flights_data(1, ["EWR"], {**PARAMS, "warm_start_iter": 5}, other))
    assert fresh.named_steps["trees"].n_iter_ == 20
    narrower = train(_flights_data(1, ["EWR"], PARAMS, None))
    data = _flights_data(2, ["EWR"], PARAMS, narrower)
    data.X_train = data.X_train.drop(columns="temp")
    data.features = list(data.X_train.columns)
    assert train(data).named_steps["trees"].n_iter_ == 20


# --- the command line ------------------------------------------------------------------


def test_prodml_train_takes_refit_and_calibration(tmp_path: Path) -> None:
    make_training_project(tmp_path / "p").close()
    window = (
        "--start",
        T0.strftime("%Y-%m-%dT%H:%M:%S"),
        "--end",
        END.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    root = str(tmp_path / "p")
    code, out = cli_json(
        "train", *window, "--refit", "full", "--calibration", "sigmoid", "-p", root
    )
    assert code == 0, out
    assert out["version"] == "flight_delay:1"
    assert out["refit"]["mode"] == "full"
    assert out["refit"]["sha256"] == out["artifact_sha256"]
    assert out["calibration"] == {"method": "sigmoid", "rows": out["split"]["validation"]}
    assert out["training"] == {"mode": "stateless", "parent": None}
    code, out = cli_json("train", *window, "--refit", "sometimes", "-p", root)
    assert code == 2, out


# --- test_split = "champion": the candidate as evaluated learns up to the champion's end ---

CHAMPION_SPLIT = CONFIG.replace(
    "[training]\n",
    '[training]\nrefit = "full"\ntest_split = "champion"\nvalidation_fraction = 0.0\n',
)
MID = T0 + pd.Timedelta(days=6)


def _champion(project: Project, start: object, end: object, **kwargs: object) -> object:
    result = project.training.train(start, end, **kwargs)  # type: ignore[arg-type]
    assert result.version is not None
    project.registry.approve(result.version.ref, actor="alice")
    project.registry.set_alias("flight_delay", "champion", result.version.version, actor="alice")
    return result


def test_the_champion_split_tests_on_the_rows_after_the_champions_data(tmp_path: Path) -> None:
    with make_training_project(tmp_path / "p", config=CHAMPION_SPLIT) as project:
        first = project.training.train(T0, MID)
        assert first.split["basis"] == "fraction"
        assert "no champion" in first.split["note"]
        assert first.version is not None
        project.registry.approve(first.version.ref, actor="alice")
        project.registry.set_alias("flight_delay", "champion", 1, actor="alice")
        second = project.training.train(T0, END)
        split = second.split
        assert (split["basis"], split["validation"]) == ("champion", 0)
        assert "note" not in split
        frame = project.features.get_training_set(second.training_set).to_pandas()
        times = frame["sched_dep"]
        assert pd.Timestamp(split["test_start"]) == times[times >= MID].min()
        assert split["test"] == int((times >= MID).sum())
        assert split["train"] == int((times < MID).sum())
        # The evaluated candidate learned from exactly the champion's (refitted) rows with
        # the same recipe and seed: on rows neither saw, both score alike.
        assert second.champion == "flight_delay:1"
        assert second.champion_report is not None
        assert second.report.metrics["roc_auc"] == pytest.approx(
            second.champion_report.metrics["roc_auc"]
        )
        assert second.gate.blessed, second.gate.reasons
        # The refit, registered and served, learned from every row of the window.
        assert second.refit is not None
        assert second.refit.rows == len(frame)


def test_a_champion_without_refit_is_cut_at_its_own_test_split(tmp_path: Path) -> None:
    with make_training_project(tmp_path / "p", config=CHAMPION_SPLIT) as project:
        first = _champion(project, T0, MID, refit="none")
        second = project.training.train(T0, END)
        assert second.split["basis"] == "champion"
        assert second.split["test_start"] == first.split["test_start"]  # type: ignore[attr-defined]


def test_a_champion_cut_outside_the_window_falls_back_with_a_note(tmp_path: Path) -> None:
    with make_training_project(tmp_path / "p", config=CHAMPION_SPLIT) as project:
        _champion(project, T0, MID)
        later = project.training.train(MID, END)  # the champion's data ends at its start
        assert later.split["basis"] == "fraction"
        assert "outside this window" in later.split["note"]
        assert "flight_delay:1" in later.split["note"]
