"""The dashboard in a real browser (headless Debian Chromium driven by Playwright),
against ``prodml serve`` over a copy of the built flights demo: every page renders with
no script error and loads nothing from another origin, links lead where they say, an
operator's buttons change the registry and the deployment (with the reason in the audit
log), and a viewer gets no button and a 403 from the admin API.

Before the server starts, the copy's deployment is given a fresh promote to undo: the
champion serves with the other version as a shadow arm, and that version is promoted
(so the endpoint page's Rollback brings the old champion back)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="the browser tests need Playwright")

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright

from prodml import Project
from prodml.registry import Signature
from servingkit import ServerProcess, running_server

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"the browser tests need {CHROMIUM}"),
]

ENDPOINT = "flight_delay"
MODEL = "flight_delay"
OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789"
TOKENS = f"""
[[serving.tokens]]
name = "alice"
role = "operator"
token = "{OPERATOR}"

[[serving.tokens]]
name = "victor"
role = "viewer"
token = "{VIEWER}"
"""
WAIT_MS = 60_000  # the longest any wait on the page may take, however busy the machine
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _version(ref: str) -> int:
    return int(ref.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def project_root(
    demo: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A copy of the demo with the two tokens, whose latest deployment change is the
    promote of a non-champion version (undone by the rollback test), and a pending
    version (approved by the operator test)."""
    source, _ = demo
    root = tmp_path_factory.mktemp("ui-browser") / "flights"
    shutil.copytree(source, root)
    with (root / "prodml.toml").open("a") as f:
        f.write(TOKENS)
    with Project.open(root) as project:
        champion = project.deployments.get(ENDPOINT).spec.champion
        assert champion is not None
        other = max(
            v.version
            for v in project.registry.versions(MODEL)
            if v.ref != champion.model and v.status == "approved"
        )
        spec = project.deployments.get(ENDPOINT).to_dict()["spec"]
        spec.update(
            policy="shadow",
            shadow_fraction=0.0,
            arms=[
                {"name": "champion", "model": champion.model, "role": "champion", "weight": 1.0},
                {"name": "candidate", "model": f"{MODEL}:{other}", "role": "shadow",
                 "weight": 0.0},
            ],
        )  # fmt: skip
        project.deployments.deploy(ENDPOINT, spec, actor="test", reason="test: shadow")
        project.deployments.promote(ENDPOINT, "candidate", actor="test", reason="test: promote")
        if all(v.status == "approved" for v in project.registry.versions(MODEL)):
            # a pending version to approve: the champion's artifact registered again (the
            # registry refuses to reject an approved version, so one cannot be made pending)
            source_version = project.registry.get(champion.model)
            project.registry.register(
                MODEL, None, signature=Signature.from_dict(source_version.signature), format=source_version.format,
                artifact=project.registry.artifact_bytes(champion.model),
                profile=source_version.profile, metrics=source_version.metrics,
                gate=source_version.gate, run_id=source_version.run_id, actor="test",
                description="ui browser test: pending copy",
            )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def server(project_root: Path) -> Iterator[ServerProcess]:
    with running_server(project_root) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A signed-in page with what it logged: console errors, page errors, requests."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("request", self._request)
        page.set_default_timeout(WAIT_MS)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} at {message.location}")

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)


def sign_in(browser: Browser, server: ServerProcess, token: str) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        watched = Watched(context.new_page())
        page = watched.page
        page.goto(server.url + "/ui/login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(server.url + "/ui")
        expect(page.locator("h1")).to_have_text("Overview")
        yield watched
    finally:
        context.close()


@pytest.fixture
def operator(browser: Browser, server: ServerProcess) -> Iterator[Watched]:
    yield from sign_in(browser, server, OPERATOR)


@pytest.fixture
def viewer(browser: Browser, server: ServerProcess) -> Iterator[Watched]:
    yield from sign_in(browser, server, VIEWER)


def champion_version(root: Path) -> int:
    with Project.open(root) as project:
        return project.registry.aliases(MODEL)["champion"]


def assert_not_blank(png: bytes) -> None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is in the dev environment
        assert len(png) > 10_000
        return
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (1280, 900)
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is not None
    assert len(colors) > 20, "the screenshot is (nearly) one colour"
    # the page is not all background: the most common colour covers less than 98 %
    assert max(count for count, _ in colors) < 0.98 * image.size[0] * image.size[1]


def infer_version(server: ServerProcess) -> str:
    """The model version the server answers one V2 request with (every input null)."""
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        inputs = client.get(f"/v2/models/{ENDPOINT}").json()["inputs"]
        body = {
            "inputs": [
                {"name": i["name"], "shape": [1], "datatype": i["datatype"], "data": [None]}
                for i in inputs
            ]
        }
        answer = client.post(f"/v2/models/{ENDPOINT}/infer", json=body)
        assert answer.status_code == 200, answer.text
        version: str = answer.json()["model_version"]
        return version


def test_every_page_renders_with_no_error_and_only_same_origin_requests(
    operator: Watched, server: ServerProcess, project_root: Path, tmp_path: Path
) -> None:
    champion = champion_version(project_root)
    pages = {
        "/ui": "Overview",
        f"/ui/endpoints/{ENDPOINT}": f"Endpoint {ENDPOINT}",
        f"/ui/models/{MODEL}": f"Model {MODEL}",
        f"/ui/models/{MODEL}/{champion}/lineage": f"Lineage of {MODEL}:{champion}",
        f"/ui/monitoring/{ENDPOINT}": f"Monitoring {ENDPOINT}",
        "/ui/features": "Features",
        "/ui/retraining": "Retraining",
    }
    page = operator.page
    origin = urlsplit(server.url)
    for path, heading in pages.items():
        answer = page.goto(server.url + path, wait_until="load")
        assert answer is not None, path
        assert answer.status == 200, path
        expect(page.locator("h1")).to_contain_text(heading)
        assert page.locator("h1").inner_text().startswith(heading), path
        shot = tmp_path / (path.strip("/").replace("/", "_") + ".png")
        assert_not_blank(page.screenshot(path=str(shot)))
    assert operator.errors == []
    network = [u for u in operator.requests if not u.startswith("data:")]
    assert network, "no request recorded"
    foreign = [u for u in network if urlsplit(u)[:2] != origin[:2]]
    assert foreign == [], foreign


def test_click_through_overview_endpoint_model_lineage(operator: Watched) -> None:
    page = operator.page
    page.click(f'section.endpoint h2 a:text-is("{ENDPOINT}")')
    expect(page.locator("h1")).to_contain_text(f"Endpoint {ENDPOINT}")
    deployment = page.locator("section.card", has=page.locator('h2:text-is("Deployment")'))
    deployment.locator("table a").first.click()
    expect(page.locator("h1")).to_have_text(f"Model {MODEL}")
    page.locator('a:text-is("lineage")').first.click()
    expect(page.locator("h1")).to_contain_text(f"Lineage of {MODEL}:")
    page.click(f'a:text-is("all versions of {MODEL}")')
    expect(page.locator("h1")).to_have_text(f"Model {MODEL}")
    assert operator.errors == []


def act(page: Page, button: str, reason: str) -> None:
    """Click ``button`` (a ``button.act``), give ``reason`` and confirm."""
    page.click(button)
    dialog = page.locator("dialog#act")
    expect(dialog).to_be_visible()
    page.fill("#act-reason", reason)
    page.click("#act-submit")
    expect(page.locator("#act-error")).to_have_text("")
    expect(dialog).to_be_hidden()


def test_operator_approves_a_version_and_rolls_the_deployment_back(
    operator: Watched, server: ServerProcess, project_root: Path
) -> None:
    page = operator.page
    with Project.open(project_root) as project:
        versions = project.registry.versions(MODEL)
        champion = project.registry.aliases(MODEL)["champion"]
        target = min(v.version for v in versions if v.status == "pending")
        before = project.deployments.get(ENDPOINT)
    page.goto(f"{server.url}/ui/models/{MODEL}")
    row = page.locator(f'tr[data-version="{target}"]')
    expect(row.locator(".badge", has_text="pending")).to_be_visible()
    reason = "ui test: looks good on the canary"
    act(page, f'tr[data-version="{target}"] button.act[data-label="Approve"]', reason)
    expect(row.locator(".badge", has_text="approved")).to_be_visible()
    expect(row).to_contain_text("token:alice")
    with Project.open(project_root) as project:
        version = project.registry.get(f"{MODEL}:{target}")
        assert version.status == "approved"
        assert version.status_actor == "token:alice"
        assert version.status_reason == reason
        entries = list(project.registry.audit_log(f"{MODEL}:{target}"))
        last = entries[-1]
        assert last.actor == "token:alice"
        assert reason in repr(last)

    # the copy's latest change is the promote of the shadow arm: rollback undoes it
    served_before = infer_version(server)
    assert served_before == str(champion)
    page.goto(f"{server.url}/ui/endpoints/{ENDPOINT}")
    rollback = f'button.act[data-url="/v1/admin/deployments/{ENDPOINT}/rollback"]'
    act(page, rollback, "ui test: roll the promote back")
    expect(page.locator("p.meta").first).to_contain_text(f"revision {before.revision + 1}")
    with Project.open(project_root) as project:
        after = project.deployments.get(ENDPOINT)
        assert after.revision == before.revision + 1
        assert after.updated_by == "token:alice"
        previous = after.spec.champion
        assert previous is not None
        assert previous.model != f"{MODEL}:{champion}"
        assert project.registry.aliases(MODEL)["champion"] == _version(previous.model)
    assert infer_version(server) == str(_version(previous.model))
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        listed = client.get(
            "/v1/admin/deployments", headers={"Authorization": f"Bearer {OPERATOR}"}
        ).json()
    assert [d["revision"] for d in listed if d["endpoint"] == ENDPOINT] == [after.revision]
    assert operator.errors == []


def test_viewer_sees_no_action_and_the_admin_api_refuses_its_session(
    viewer: Watched, server: ServerProcess, project_root: Path
) -> None:
    page = viewer.page
    for path in (f"/ui/endpoints/{ENDPOINT}", f"/ui/models/{MODEL}"):
        page.goto(server.url + path)
        expect(page.locator("h1")).to_be_visible()
        assert page.locator("button.act").count() == 0, path
    with Project.open(project_root) as project:
        revision = project.deployments.get(ENDPOINT).revision
    status = page.evaluate(
        """async (url) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const answer = await fetch(url, {
                method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
                body: JSON.stringify({reason: "viewer tries"}),
            });
            return answer.status;
        }""",
        f"/v1/admin/deployments/{ENDPOINT}/rollback",
    )
    assert status == 403
    with Project.open(project_root) as project:
        assert project.deployments.get(ENDPOINT).revision == revision
    # the browser logs the refused call itself as a failed resource; nothing else
    refused = f"status of 403 (Forbidden) at {{'url': '{server.url}/v1/admin/deployments/"
    assert [e for e in viewer.errors if refused not in e] == []
