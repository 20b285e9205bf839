"""``features apply`` checks every view against its source's schema when the source can
be read: a declared field the source lacks, or holds with another type, is refused
before anything is stored, naming the view, the field and the source's columns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featurekit import FEATURES_PY, make_project
from prodml import Project
from prodml.cli import app
from prodml.core import FeatureNotFoundError, SchemaError

MISSING_FIELD = FEATURES_PY.replace(
    'Field("wind_speed", "float64")]',
    'Field("wind_speed", "float64"), Field("humidity", "float64")]',
)
WRONG_TYPE = FEATURES_PY.replace('Field("temp", "float64")', 'Field("temp", "string")')


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "p")


def test_a_field_the_source_lacks_is_refused_naming_view_field_and_columns(
    project: Project,
) -> None:
    assert MISSING_FIELD != FEATURES_PY
    (project.root / "features.py").write_text(MISSING_FIELD)
    with pytest.raises(SchemaError) as caught:
        project.features.apply()
    message = str(caught.value)
    assert "feature view 'weather'" in message
    assert "'humidity'" in message
    assert "'wind_speed'" in message  # the source's columns are listed
    with pytest.raises(FeatureNotFoundError):  # nothing became current
        project.features.registry.get("feature_view", "weather")


def test_a_field_of_another_type_than_the_source_is_refused(project: Project) -> None:
    (project.root / "features.py").write_text(WRONG_TYPE)
    with pytest.raises(
        SchemaError, match=r"feature view 'weather': column 'temp' has type float64"
    ):
        project.features.apply()


def test_a_bad_field_does_not_replace_the_current_version(project: Project) -> None:
    project.features.apply()
    before = project.features.registry.get("feature_view", "weather").version
    (project.root / "features.py").write_text(MISSING_FIELD)
    with pytest.raises(SchemaError):
        project.features.apply()
    assert project.features.registry.get("feature_view", "weather").version == before


def test_an_unreadable_source_is_applied_and_checked_at_the_next_build(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    (project.root / "data" / "weather.parquet").unlink()
    (project.root / "features.py").write_text(MISSING_FIELD)
    with caplog.at_level("WARNING", logger="prodml.features"):
        applied = project.features.apply()
    assert ("feature_view", "weather") in {(d.kind, d.name) for d in applied}
    assert any(
        "weather" in r.getMessage() and "not checked" in r.getMessage() for r in caplog.records
    )


def test_the_cli_exits_with_the_schema_code(project: Project) -> None:
    (project.root / "features.py").write_text(MISSING_FIELD)
    result = CliRunner().invoke(app, ["features", "apply", "-p", str(project.root)])
    assert result.exit_code == 7, result.output
    assert re.search(r"humidity", result.output)
