"""Object names match their pattern as a whole (``fullmatch``): a trailing newline, a
'/', '..', a NUL or 300 characters are refused through the Python API and the admin
API, with a message naming the field and the expected pattern, never the name."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from prodml import Project
from prodml.core import NAME_PATTERN, DefinitionError, check_name
from prodml.features import Entity, FeatureView, Field, ParquetSource
from prodml.project import serving_app
from prodml.registry import DeploymentSpec
from servingkit import TOKEN, lr_model, register, serving_project, tokens_toml

ADMIN = TOKEN["admin"]
TOKENS = """
[serving]
watch_interval_s = 3600
""" + tokens_toml("admin")
BAD = ["evil\n", "evil\r\n", "a/b", "..", "a\x00b", "n" * 300, "", "1abc", "a b"]
PATTERN_WORDS = "a letter or underscore followed by up to 127 letters, digits, '_' or '-'"


@pytest.mark.parametrize("name", BAD)
def test_the_name_pattern_matches_whole_names_only(name: str) -> None:
    assert NAME_PATTERN.fullmatch(name) is None
    with pytest.raises(DefinitionError) as info:
        check_name(name, kind="endpoint")
    message = str(info.value)
    assert message.startswith("endpoint name is invalid: expected ")
    assert PATTERN_WORDS in message
    if name.strip():
        assert name not in message


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project, _ = serving_project(tmp_path_factory.mktemp("names") / "p", config=TOKENS)
    yield project
    project.close()


@pytest.mark.parametrize("name", [n for n in BAD if n])
def test_the_python_api_refuses_bad_names(project: Project, name: str) -> None:
    model, X = lr_model()
    with pytest.raises(DefinitionError, match=r"^model name is invalid: expected "):
        register(project, model, X, name=name)
    with pytest.raises(DefinitionError, match=r"^endpoint name is invalid: expected "):
        project.deployments.deploy(name, DeploymentSpec.single("lr:1"), actor="test")
    with pytest.raises(DefinitionError, match=r"^feature view name is invalid: expected "):
        FeatureView(
            name,
            entities=[Entity("e", join_keys=["k"])],
            source=ParquetSource("data/x.parquet"),
            event_time="t",
            features=[Field("v", "float64")],
        )
    assert set(project.deployments.revisions()) == {"lr"}


@pytest.mark.parametrize("name", [n for n in BAD if n and n != ".."])
def test_the_admin_api_refuses_bad_endpoint_names(project: Project, name: str) -> None:
    body = {"spec": DeploymentSpec.single("lr:1").to_dict(), "reason": "probe"}
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(serving_app(project)) as client:
        response = client.put(
            "/v1/admin/deployments/" + quote(name, safe=""), json=body, headers=headers
        )
        # '/' (even as %2F) splits the path: no route has two segments there
        assert response.status_code in ((404,) if "/" in name else (422,)), response.text
        if response.status_code == 422:
            error = response.json()["error"]
            assert error.startswith("endpoint name is invalid: expected ")
            assert PATTERN_WORDS in error
        assert name.strip() not in response.text.replace("invalid", "")
        listed = client.get("/v1/admin/deployments", headers=headers).json()
        assert [d["endpoint"] for d in listed] == ["lr"]
    assert set(project.deployments.revisions()) == {"lr"}


def test_the_openapi_name_pattern_is_anchored(project: Project) -> None:
    """The schema's pattern is ECMA 262 (where ``$`` is the end of the text)."""
    with TestClient(serving_app(project)) as client:
        schema = client.get("/openapi.json").json()
    patterns = {
        p["schema"].get("pattern")
        for path in schema["paths"].values()
        for operation in path.values()
        for p in operation.get("parameters", [])
        if p["name"] in ("name", "model_name", "endpoint")
    }
    assert patterns == {NAME_PATTERN.pattern}
    assert re.fullmatch(r"\^.*\$", NAME_PATTERN.pattern)
