"""Declaring and finding the training function; the time split; seeds."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prodml.core import ConfigError, DefinitionError, TrainingConfig, TrainingError
from prodml.training import load_trainer, set_seeds, time_split, trainer

ONE = """
import prodml

@prodml.trainer(service="s", label="y", params={"a": 1})
def fit(data):
    return None
"""


def test_the_decorated_function_is_found_and_named_by_its_file(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(ONE)
    spec = load_trainer(tmp_path, TrainingConfig())
    assert spec.qualname == "train.py:fit"
    assert spec.name == "s"
    assert spec.params == {"a": 1}
    assert spec.task == "classification"
    assert spec.source_sha256() is not None


def test_several_trainers_need_a_name_in_the_config(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(
        ONE + ONE.replace("def fit", "def other").replace("import prodml", "")
    )
    with pytest.raises(
        ConfigError, match=r"defines 2 @prodml.trainer functions \(\['fit', 'other'\]\)"
    ):
        load_trainer(tmp_path, TrainingConfig())
    assert load_trainer(tmp_path, TrainingConfig(trainer="other")).qualname == "train.py:other"
    with pytest.raises(ConfigError, match=r"no @prodml\.trainer function of that name"):
        load_trainer(tmp_path, TrainingConfig(trainer="missing"))


def test_missing_or_broken_modules_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[training\] module 'train.py': no such file"):
        load_trainer(tmp_path, TrainingConfig())
    (tmp_path / "train.py").write_text("import no_such_module_anywhere\n")
    with pytest.raises(DefinitionError, match="failed to import: ModuleNotFoundError"):
        load_trainer(tmp_path, TrainingConfig())


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(DefinitionError, match="task 'ranking'"):
        trainer(service="s", label="y", task="ranking")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="recency_half_life_days -1"):
        trainer(service="s", label="y", recency_half_life_days=-1)
    with pytest.raises(DefinitionError, match="feature service name"):
        trainer(service="no spaces", label="y")


@given(
    st.lists(st.integers(0, 50), min_size=10, max_size=200).filter(lambda m: len(set(m)) >= 10),
    st.floats(0.0, 0.4),
    st.floats(0.05, 0.4),
)
def test_time_split_never_puts_a_later_row_before_an_earlier_one(
    minutes: list[int], valid: float, test: float
) -> None:
    ts = pd.Series(pd.Timestamp("2013-01-01", tz="UTC") + pd.to_timedelta(minutes, unit="min"))
    ordered = ts.sort_values().reset_index(drop=True)
    boundary = min(len(ts) - 1, max(int(len(ts) * (1 - test - valid)), 0))
    if ordered[boundary] == ordered[0]:  # no row earlier than the training boundary
        with pytest.raises(TrainingError, match="left an empty set"):
            time_split(ts, validation_fraction=valid, test_fraction=test)
        return
    split = time_split(ts, validation_fraction=valid, test_fraction=test)
    masks = (split.train, split.validation, split.test)
    assert sum(int(m.sum()) for m in masks) == len(ts)
    assert not (split.train & split.test).any()
    if split.validation.any():
        assert ts[split.train].max() < ts[split.validation].min()
        assert ts[split.validation].max() < ts[split.test].min()
    assert ts[split.train].max() < ts[split.test].min()
    # rows sharing a timestamp stay on one side
    for _, group in pd.DataFrame({"t": ts, "test": split.test}).groupby("t"):
        assert group["test"].nunique() == 1


def test_a_window_with_one_timestamp_cannot_be_split() -> None:
    ts = pd.Series([pd.Timestamp("2013-01-01", tz="UTC")] * 50)
    with pytest.raises(TrainingError, match="left an empty set"):
        time_split(ts, validation_fraction=0.1, test_fraction=0.2)
    with pytest.raises(TrainingError, match="empty training set"):
        time_split(ts[:0], validation_fraction=0.1, test_fraction=0.2)


def test_seeds_make_python_and_numpy_draws_repeat() -> None:
    set_seeds(5)
    first = (random.random(), np.random.rand())
    set_seeds(5)
    assert (random.random(), np.random.rand()) == first
