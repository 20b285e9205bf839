"""The dashboard over HTTP: signing in (an ``HttpOnly``, ``SameSite=Strict`` session
cookie), every page for a signed-in viewer, the buttons each role gets, the admin API's
refusals of cookie-signed calls without the page's CSRF token (and of every credential
below the action's role), the audit trail of an approval made from a page, escaping of
what users typed, no open redirect after signing in, and signing out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from prodml import Project
from prodml.core import DefinitionError
from prodml.features import Entity, Field
from prodml.registry import infer_signature
from prodml.serving import SESSION_COOKIE, csrf_token
from prodml.web import ui_app
from servingkit import TOKEN, bearer, canary_project, lr_model, tokens_toml

VIEWER, OPERATOR, ADMIN = TOKEN["viewer"], TOKEN["operator"], TOKEN["admin"]
TOKENS = """
[serving]
watch_interval_s = 3600
""" + tokens_toml("viewer", "operator", "admin")
SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
#: Every page of the dashboard over the fixture project (endpoint ``lr``, model ``lr``).
PAGES = [
    "/ui",
    "/ui/endpoints/lr",
    "/ui/models/lr",
    "/ui/models/lr/1/lineage",
    "/ui/monitoring/lr",
    "/ui/features",
    "/ui/retraining",
]
ACT_BUTTON = re.compile(r'<button type="button" class="act"[^>]*>')


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """``lr:1`` and ``lr:2`` approved, endpoint ``lr`` a 10% canary of ``lr:2``
    (revision 2); ``lr:3`` registered and still pending."""
    project, _ = canary_project(tmp_path / "project", config=TOKENS)
    model, X = lr_model(C=0.1, seed=1)  # lr:2's model again, registered as lr:3
    sample = X.head(5)
    pending = project.registry.register(
        "lr", model, signature=infer_signature(sample, np.zeros(len(sample))), actor="test"
    )
    assert pending.version == 3
    assert pending.status == "pending"
    yield project
    project.close()


@pytest.fixture
def client(project: Project) -> Iterator[TestClient]:
    with TestClient(ui_app(project), follow_redirects=False) as client:
        yield client


def holder(project: Project, role: str) -> str:
    """The configured name of the token with ``role``."""
    [name] = [t.name for t in project.config.serving.tokens if t.role == role]
    return name


def token_role(token: str) -> str:
    [role] = [role for role, value in TOKEN.items() if value == token]
    return role


def sign_in(client: TestClient, token: str, next: str | None = None) -> Any:
    """Sign in through the login form (the client keeps the cookie); the response."""
    client.cookies.clear()
    form = {"token": token} if next is None else {"token": token, "next": next}
    response = client.post("/ui/login", data=form)
    assert response.status_code == 303, response.text
    assert client.cookies.get(SESSION_COOKIE) == token
    return response


def use_cookie(client: TestClient, token: str | None) -> None:
    """Present ``token`` as the session cookie (None: no cookie at all)."""
    client.cookies.clear()
    if token is not None:
        client.cookies.set(SESSION_COOKIE, token)


def csp_directives(response: Any) -> dict[str, list[str]]:
    policy = response.headers.get("content-security-policy", "")
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def registry_state(project: Project) -> tuple[Any, ...]:
    """What a refused call must leave as it was: the deployment's revision and spec,
    each version's status and the audit log's length."""
    deployment = project.deployments.get("lr")
    statuses = tuple(v.status for v in project.registry.versions("lr"))
    return (
        deployment.revision,
        deployment.spec.to_dict(),
        statuses,
        len(project.registry.audit_log()),
    )


# --- signing in -------------------------------------------------------------------------


def test_pages_redirect_to_the_login_until_signed_in(client: TestClient) -> None:
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/ui/login?next={path}"
    use_cookie(client, "not-a-known-token-at-all")  # a cookie holding no known token
    response = client.get("/ui")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=/ui"

    form = client.get("/ui/login?next=/ui")
    assert form.status_code == 200
    assert 'name="next" value="/ui"' in form.text


def test_login_refuses_a_bad_token_and_sets_a_strict_httponly_cookie(
    client: TestClient,
) -> None:
    for token in ("not-a-known-token-at-all", "", VIEWER + "x"):
        response = client.post("/ui/login", data={"token": token, "next": "/ui"})
        assert response.status_code == 401, token
        assert "not valid" in response.text
        assert "set-cookie" not in response.headers
        assert SESSION_COOKIE not in client.cookies

    response = client.post("/ui/login", data={"token": VIEWER, "next": "/ui"})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui"
    [cookie] = [
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "=")
    ]
    attributes = [a.strip().lower() for a in cookie.split(";")]
    assert attributes[0] == f"{SESSION_COOKIE}={VIEWER}".lower()
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/" in attributes
    assert client.get("/ui").status_code == 200


# --- pages ------------------------------------------------------------------------------


def test_every_page_answers_a_signed_in_viewer(client: TestClient) -> None:
    sign_in(client, VIEWER)
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, f"{path}: {response.text[-600:]}"
        assert response.headers["content-type"].startswith("text/html")
        assert "<html" in response.text, path
        assert '<main id="main"' in response.text, path
        assert f'<meta name="csrf-token" content="{csrf_token(VIEWER)}">' in response.text
        script_src = csp_directives(response).get("script-src")
        assert script_src == ["'self'"], (
            f"{path}: {response.headers.get('content-security-policy')}"
        )

        fragment = client.get(path, params={"fragment": "1"})
        assert fragment.status_code == 200, f"{path}?fragment=1: {fragment.text[-600:]}"
        assert "<html" not in fragment.text, path
        assert "<head" not in fragment.text, path
        assert "<h1>" in fragment.text, path
        assert csp_directives(fragment).get("script-src") == ["'self'"]


@pytest.mark.parametrize(
    ("path", "missing"),
    [
        ("/ui/endpoints/nope", "nope"),
        ("/ui/models/nope", "nope"),
        ("/ui/models/lr/99/lineage", "99"),
    ],
)
def test_an_unknown_object_is_a_404_page(client: TestClient, path: str, missing: str) -> None:
    sign_in(client, VIEWER)
    response = client.get(path)
    assert response.status_code == 404, response.text[-600:]
    assert "<html" in response.text
    assert "Not found" in response.text
    assert missing in response.text
    assert csp_directives(response).get("script-src") == ["'self'"]


def test_buttons_follow_the_role(client: TestClient) -> None:
    sign_in(client, VIEWER)
    for path in ("/ui/endpoints/lr", "/ui/models/lr"):
        page = client.get(path)
        assert page.status_code == 200, page.text[-600:]
        assert 'class="act"' not in page.text, path

    sign_in(client, OPERATOR)
    endpoint = client.get("/ui/endpoints/lr")
    assert endpoint.status_code == 200, endpoint.text[-600:]
    buttons = ACT_BUTTON.findall(endpoint.text)
    assert any(
        'data-url="/v1/admin/deployments/lr/rollback"' in b and 'data-label="Rollback"' in b
        for b in buttons
    ), buttons
    assert any('data-url="/v1/admin/deployments/lr/pause"' in b for b in buttons), buttons
    assert not any('data-label="Promote"' in b for b in buttons), buttons  # admin only
    assert f'<meta name="csrf-token" content="{csrf_token(OPERATOR)}">' in endpoint.text

    model = client.get("/ui/models/lr")
    assert model.status_code == 200
    buttons = ACT_BUTTON.findall(model.text)
    approve = [b for b in buttons if 'data-label="Approve"' in b]
    assert len(approve) == 1, buttons  # lr:3 only: lr:1 and lr:2 are approved
    assert 'data-url="/v1/admin/models/lr/approve"' in approve[0]
    assert 'data-what="approve lr:3"' in approve[0]
    assert "&#34;version&#34;: 3" in approve[0]

    sign_in(client, ADMIN)
    buttons = ACT_BUTTON.findall(client.get("/ui/endpoints/lr").text)
    assert any('data-url="/v1/admin/deployments/lr/promote"' in b for b in buttons), buttons


# --- the admin API behind the pages' buttons ---------------------------------------------

ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/admin/deployments/lr/rollback", {"reason": "x"}),
    ("/v1/admin/deployments/lr/pause", {"reason": "x"}),
    ("/v1/admin/deployments/lr/resume", {"reason": "x"}),
    ("/v1/admin/deployments/lr/promote", {"reason": "x"}),
    ("/v1/admin/models/lr/approve", {"version": 3, "reason": "x"}),
    ("/v1/admin/models/lr/reject", {"version": 3, "reason": "x"}),
    ("/v1/admin/models/lr/approve", {"version": 1, "reason": "x"}),
    ("/v1/admin/models/lr/reject", {"version": 1, "reason": "x"}),
]


@pytest.mark.parametrize(("path", "body"), ACTIONS)
def test_state_changing_calls_refuse_weak_credentials(
    project: Project, client: TestClient, path: str, body: dict[str, Any]
) -> None:
    before = registry_state(project)
    wrong_csrf = csrf_token(VIEWER)  # a real CSRF token, of another session
    cases: list[tuple[str, str | None, dict[str, str], int]] = [
        ("no credentials", None, {}, 401),
        ("an unknown bearer", None, bearer("not-a-known-token-at-all"), 401),
        ("a token without the Bearer scheme", None, {"Authorization": OPERATOR}, 401),
        ("a viewer's bearer", None, bearer(VIEWER), 403),
        ("the operator's cookie without CSRF", OPERATOR, {}, 403),
        ("the operator's cookie with an empty CSRF", OPERATOR, {"X-CSRF-Token": ""}, 403),
        ("the operator's cookie with another's CSRF", OPERATOR, {"X-CSRF-Token": wrong_csrf}, 403),
        ("the operator's cookie with a forged CSRF", OPERATOR, {"X-CSRF-Token": "0" * 64}, 403),
        ("the admin's cookie without CSRF", ADMIN, {}, 403),
        ("a viewer's cookie with its own CSRF", VIEWER, {"X-CSRF-Token": csrf_token(VIEWER)}, 403),
    ]
    for what, cookie, headers, status in cases:
        use_cookie(client, cookie)
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == status, f"{what}: {response.status_code} {response.text}"
        assert "error" in response.json(), what
        assert registry_state(project) == before, f"{what} changed something"


@pytest.mark.parametrize(
    ("token", "path", "body", "status"),
    [
        (OPERATOR, "/v1/admin/deployments/lr/rollback", {"reason": "ends it"}, 200),
        (OPERATOR, "/v1/admin/deployments/lr/pause", {"reason": "look"}, 200),
        (OPERATOR, "/v1/admin/deployments/lr/promote", {"reason": "x"}, 403),
        (ADMIN, "/v1/admin/deployments/lr/promote", {"reason": "wins"}, 200),
        (OPERATOR, "/v1/admin/models/lr/approve", {"version": 3, "reason": "good"}, 200),
        (OPERATOR, "/v1/admin/models/lr/reject", {"version": 3, "reason": "bad"}, 200),
    ],
)
def test_the_cookie_with_the_pages_csrf_token_acts_within_the_role(
    project: Project, client: TestClient, token: str, path: str, body: Any, status: int
) -> None:
    before = registry_state(project)
    sign_in(client, token)
    page = client.get("/ui/models/lr")
    [csrf] = re.findall(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
    response = client.post(path, json=body, headers={"X-CSRF-Token": csrf})
    assert response.status_code == status, response.text
    deployment = project.deployments.get("lr")
    if status != 200:
        assert "needs 'admin'" in response.json()["error"]
        assert registry_state(project) == before
    elif path.startswith("/v1/admin/deployments/"):
        assert deployment.revision == 3
        assert response.json()["revision"] == 3
        assert deployment.updated_by == f"token:{holder(project, token_role(token))}"
        assert deployment.reason == body["reason"]
    else:
        assert deployment.revision == 2
        version = project.registry.get("lr:3")
        assert version.status == ("approved" if path.endswith("/approve") else "rejected")
        assert version.status_actor == f"token:{holder(project, 'operator')}"
        assert version.status_reason == body["reason"]


def test_an_approval_from_the_page_lands_in_the_audit_log(
    project: Project, client: TestClient
) -> None:
    sign_in(client, OPERATOR)
    reason = "looked at the gates: fine"
    response = client.post(
        "/v1/admin/models/lr/approve",
        json={"version": 3, "reason": reason},
        headers={"X-CSRF-Token": csrf_token(OPERATOR)},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "approved"
    entries = [e for e in project.registry.audit_log("lr:3") if e.action == "approve"]
    assert len(entries) == 1
    [entry] = entries
    assert entry.actor == f"token:{holder(project, 'operator')}" == "token:olga"
    assert entry.object_type == "model_version"
    assert entry.after is not None
    assert entry.after["reason"] == reason
    assert entry.before == {"status": "pending"}
    page = client.get("/ui/models/lr")
    assert reason in page.text
    assert "token:olga" in page.text


# --- escaping and redirects --------------------------------------------------------------


def test_a_reason_with_a_script_is_shown_escaped(project: Project, client: TestClient) -> None:
    sign_in(client, OPERATOR)
    csrf = {"X-CSRF-Token": csrf_token(OPERATOR)}
    response = client.post(
        "/v1/admin/deployments/lr/rollback", json={"reason": SCRIPT}, headers=csrf
    )
    assert response.status_code == 200, response.text
    assert project.deployments.get("lr").reason == SCRIPT
    response = client.post(
        "/v1/admin/models/lr/reject", json={"version": 3, "reason": SCRIPT}, headers=csrf
    )
    assert response.status_code == 200, response.text

    for path in ("/ui/endpoints/lr", "/ui/models/lr", "/ui"):
        for params in ({}, {"fragment": "1"}):
            page = client.get(path, params=params)
            assert page.status_code == 200, f"{path}: {page.text[-600:]}"
            assert SCRIPT not in page.text, path
            if path != "/ui":
                assert ESCAPED in page.text, path


@pytest.mark.parametrize(
    "path",
    [
        "/ui/models/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/ui/endpoints/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/ui/monitoring/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/ui/models/%3Cscript%3Ealert(1)%3C%2Fscript%3E/1/lineage",
    ],
)
def test_a_script_in_the_url_is_a_404_that_does_not_reflect_it(
    client: TestClient, path: str
) -> None:
    sign_in(client, VIEWER)
    response = client.get(path)
    assert response.status_code == 404, response.text[-600:]
    assert SCRIPT not in response.text
    assert "<script>" not in response.text


@pytest.mark.parametrize("name", ["<img src=x onerror=alert(1)>", "a<b>c", "x\"'onmouseover=1"])
@pytest.mark.parametrize(
    ("page", "statuses"),
    [
        # an invalid name is the client's mistake: not found (or unprocessable), never a 500
        ("/ui/models/{}", (404, 422)),
        ("/ui/endpoints/{}", (404, 422)),
        ("/ui/monitoring/{}", (200, 404, 422)),  # the stored windows of any name (none)
    ],
)
def test_a_markup_name_in_the_url_is_not_reflected_raw(
    client: TestClient, name: str, page: str, statuses: tuple[int, ...]
) -> None:
    sign_in(client, VIEWER)
    response = client.get(page.format(name.replace(" ", "%20")))
    assert name not in response.text
    assert "<img" not in response.text
    assert "<b>" not in response.text
    assert response.status_code in statuses, response.text[-600:]


def test_the_registry_refuses_a_model_name_with_markup(project: Project) -> None:
    model, X = lr_model()
    sample = X.head(5)
    with pytest.raises(DefinitionError, match="model name is invalid"):
        project.registry.register(
            SCRIPT, model, signature=infer_signature(sample, np.zeros(len(sample))), actor="test"
        )
    assert [m["name"] for m in project.registry.models()] == ["lr"]


def test_feature_definitions_refuse_a_name_with_markup(client: TestClient) -> None:
    """No feature name can carry markup onto the features page: entities, views and their
    fields refuse it when they are defined (and the page escapes what it shows anyway)."""
    with pytest.raises(DefinitionError, match="entity name is invalid"):
        Entity(name=SCRIPT, join_keys=["id"])
    with pytest.raises(DefinitionError, match="join key"):
        Entity(name="flight", join_keys=[SCRIPT])
    with pytest.raises(DefinitionError, match="name is invalid"):
        Field(name=SCRIPT, dtype="float64")
    page = client.get("/ui/features")
    assert page.status_code in (200, 303)
    assert "<script>alert" not in page.text


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert(1)",
        "//evil.example",
        "//evil.example/ui",
        "https://evil.example/ui",
        "/\\evil.example",
        "ui",
        '/ui"><script>alert(1)</script>',
    ],
)
def test_login_never_redirects_off_the_dashboard(client: TestClient, target: str) -> None:
    form = client.get("/ui/login", params={"next": target})
    assert form.status_code == 200
    [kept] = re.findall(r'<input type="hidden" name="next" value="([^"]*)">', form.text)
    if not target.startswith("/ui"):
        assert kept == "/ui"
    assert "javascript:" not in form.text
    assert "evil.example" not in form.text
    assert "<script>alert" not in form.text

    refused = client.post("/ui/login", data={"token": "nope-nope-nope-nope", "next": target})
    assert refused.status_code == 401
    assert "javascript:" not in refused.text
    assert "evil.example" not in refused.text
    assert "<script>alert" not in refused.text

    response = sign_in(client, VIEWER, next=target)
    location = response.headers["location"]
    if target.startswith("/ui"):  # a dashboard path: kept, and never a markup injection
        assert location.startswith("/ui")
        assert not location.startswith("//")
    else:
        assert location == "/ui"


def test_login_keeps_a_dashboard_target(client: TestClient) -> None:
    response = sign_in(client, VIEWER, next="/ui/models/lr")
    assert response.headers["location"] == "/ui/models/lr"


# --- signing out ------------------------------------------------------------------------


def test_logout_needs_the_csrf_field_and_clears_the_cookie(client: TestClient) -> None:
    sign_in(client, OPERATOR)
    for form in ({}, {"csrf": ""}, {"csrf": csrf_token(VIEWER)}, {"csrf": "0" * 64}):
        response = client.post("/ui/logout", data=form)
        assert response.status_code == 403, form
        assert client.cookies.get(SESSION_COOKIE) == OPERATOR
        assert client.get("/ui").status_code == 200  # still signed in

    page = client.get("/ui")
    [csrf] = re.findall(r'name="csrf" value="([0-9a-f]+)"', page.text)
    response = client.post("/ui/logout", data={"csrf": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login"
    [cookie] = [
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "=")
    ]
    attributes = [a.strip().lower() for a in cookie.split(";")]
    assert attributes[0] in (f"{SESSION_COOKIE}=", f'{SESSION_COOKIE}=""')
    assert "max-age=0" in attributes
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/ui").status_code == 303


def _state_changing_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, path) of the app that may change state: the admin API's non-GET
    routes, path parameters filled with the fixture's names."""
    found = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        path = getattr(route, "path", "")
        if not path.startswith("/v1/admin"):
            continue
        for method in sorted(getattr(route, "methods", set()) - {"GET", "HEAD", "OPTIONS"}):
            found.append((method, re.sub(r"\{[^}]+\}", "lr", path)))
    return found


def test_every_state_changing_admin_route_refuses_without_the_right_credentials(
    project: Project, client: TestClient
) -> None:
    routes = _state_changing_routes(client)
    assert len(routes) >= 15  # deployments, rollouts, retraining, models
    assert ("POST", "/v1/admin/models/lr/approve") in routes
    before = project.deployments.get("lr")
    audit = len(project.registry.audit_log())
    body = {"version": 3, "reason": "x", "weights": {"challenger": 0.5}, "arm": "challenger"}
    for method, path in routes:
        for headers, expected in (
            ({}, 401),
            (bearer("not-a-known-token-at-all"), 401),
            (bearer(VIEWER), 403),
        ):
            client.cookies.clear()
            answer = client.request(method, path, json=body, headers=headers)
            assert answer.status_code == expected, (method, path, headers, answer.text)
        for token in (OPERATOR, ADMIN):  # a session cookie without the page's CSRF token
            client.cookies.clear()
            client.cookies.set(SESSION_COOKIE, token)
            answer = client.request(method, path, json=body)
            assert answer.status_code == 403, (method, path, answer.text)
            assert "CSRF" in answer.text
            wrong = client.request(method, path, json=body,
                                   headers={"X-CSRF-Token": csrf_token(VIEWER)})  # fmt: skip
            assert wrong.status_code == 403, (method, path, wrong.text)
    client.cookies.clear()
    after = project.deployments.get("lr")
    assert (after.revision, after.spec) == (before.revision, before.spec)
    assert len(project.registry.audit_log()) == audit
    assert project.registry.get("lr:3").status == "pending"
