"""Fixtures of the monitoring tests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from featurekit import T0
from trainkit import make_training_project


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, pa.Table]:
    """A project trained on its first 10 days (once per test module): its root, the
    model version's ref and the training set."""
    root = tmp_path_factory.mktemp("monitor") / "p"
    project = make_training_project(root)
    result = project.training.train(T0, T0 + timedelta(days=10))
    assert result.version is not None
    table = project.features.get_training_set(result.training_set).table
    project.close()
    return root, result.version.ref, table
