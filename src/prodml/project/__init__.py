"""The ``prodml.Project`` facade: opens the config and the stores of one project and
hands out the layers' objects. It holds no logic of its own."""

from __future__ import annotations

from prodml.project._progress import progress_bar
from prodml.project._project import Project
from prodml.project._scaffold import init_project

__all__ = ["Project", "init_project", "progress_bar"]
