"""Fixtures of the serving tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prodml import Project
from prodml.registry import ModelVersion
from servingkit import ProjectFactory, serving_project


@pytest.fixture
def make_project(tmp_path: Path) -> Iterator[ProjectFactory]:
    """``serving_project`` in a fresh directory per call, closed after the test."""
    opened: list[Project] = []

    def make(config: str = "") -> tuple[Project, ModelVersion]:
        project, version = serving_project(tmp_path / f"project{len(opened)}", config=config)
        opened.append(project)
        return project, version

    yield make
    for project in opened:
        project.close()
