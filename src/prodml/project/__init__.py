"""The ``prodml.Project`` facade: opens the config and the stores of one project and
hands out the layers' objects. It holds no logic of its own. The serving wiring loads
on first use (it imports FastAPI and the serving runtime)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prodml.core import lazy_attributes
from prodml.project._progress import progress_bar
from prodml.project._project import Project
from prodml.project._scaffold import init_project

if TYPE_CHECKING:
    from prodml.project._retrain_report import retrain_records, write_project_report
    from prodml.project._serve import PROJECT_ENV, app_from_env, serving_app
else:
    __getattr__ = lazy_attributes(
        __name__,
        {
            "prodml.project._serve": ["PROJECT_ENV", "app_from_env", "serving_app"],
            "prodml.project._retrain_report": ["retrain_records", "write_project_report"],
        },
    )

__all__ = [
    "PROJECT_ENV",
    "Project",
    "app_from_env",
    "init_project",
    "progress_bar",
    "retrain_records",
    "serving_app",
    "write_project_report",
]
