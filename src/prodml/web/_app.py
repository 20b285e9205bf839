"""The dashboard's routes under ``/ui``, added to a serving app (``prodml serve``) or
served on their own with the admin API (``prodml ui``).

Every page answers ``?fragment=1`` with its ``<main>`` alone: the page script polls it
to refresh the numbers without a reload. Pages send a Content-Security-Policy that
allows scripts and styles from the server itself only.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from prodml.core.errors import DefinitionError, NotFoundError, ProdMLError
from prodml.monitoring import REPORT_CSS
from prodml.project import app_from_env as project_app_from_env
from prodml.project import serving_app
from prodml.serving import SESSION_COOKIE, Tokens
from prodml.web import _pages as pages
from prodml.web._cache import Memo
from prodml.web._format import FILTERS
from prodml.web._session import Session, session_of

if TYPE_CHECKING:
    from prodml.project import Project

__all__ = ["app_from_env", "mount_ui", "ui_app"]

_STATIC = {"ui.js": "text/javascript", "ui.css": "text/css"}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: How long an experiment's analysis and a monitoring page's windows are shown before
#: they are read again (seconds).
ANALYSIS_TTL_S = 30.0
#: How long a dashboard session lasts (seconds).
SESSION_MAX_AGE = 12 * 3600


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("prodml.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


def _static(name: str) -> bytes:
    data = resources.files("prodml.web").joinpath("static", name).read_bytes()
    if name == "ui.css":
        data = REPORT_CSS.encode() + data
    return data


def mount_ui(app: FastAPI, project: Project, *, tokens: Tokens | None = None) -> None:
    """Add the dashboard's routes to ``app`` (which serves the admin API the pages'
    buttons call)."""
    env = _environment()
    tokens = tokens if tokens is not None else Tokens(project.config.serving.tokens)
    static = {name: _static(name) for name in _STATIC}
    memo = Memo(ttl_s=ANALYSIS_TTL_S)

    def render(request: Request, template: str, session: Session, **context: Any) -> Response:
        fragment = request.query_params.get("fragment") == "1"
        status = context.pop("http_status", 200)
        page = env.get_template(template)
        html = page.render(session=session, fragment=fragment, project=project.name,
                           request_path=request.url.path, **context)  # fmt: skip
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    async def page(
        request: Request, template: str, load: Callable[[], dict[str, Any]], title: str
    ) -> Response:
        session = session_of(request, tokens)
        if session is None:
            target = quote(request.url.path, safe="/")
            return RedirectResponse(f"/ui/login?next={target}", status_code=303)
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, load)
        except (NotFoundError, DefinitionError) as exc:  # no such object, or a name none can have
            return render(request, "error.html", session, title="Not found", message=str(exc),
                          http_status=404)  # fmt: skip
        except ProdMLError as exc:
            return render(request, "error.html", session, title="Error", message=str(exc),
                          http_status=500)  # fmt: skip
        return render(request, template, session, title=title, **data)

    @app.get("/ui", include_in_schema=False)
    async def overview(request: Request) -> Response:
        return await page(request, "overview.html", lambda: pages.overview_page(project),
                          "Overview")  # fmt: skip

    @app.get("/ui/endpoints/{endpoint}", include_in_schema=False)
    async def endpoint(endpoint: str, request: Request) -> Response:
        def load() -> dict[str, Any]:
            data = pages.endpoint_page(project, endpoint, memo)
            if data["analysis"] is not None:  # escaped by the rollout report's renderer
                data["analysis"] = Markup(data["analysis"])
            return data

        return await page(request, "endpoint.html", load, f"Endpoint {endpoint}")

    @app.get("/ui/models/{name}", include_in_schema=False)
    async def model(name: str, request: Request) -> Response:
        compare = [
            int(v) for v in request.query_params.getlist("compare") if v.isascii() and v.isdigit()
        ][:2]
        return await page(request, "model.html",
                          lambda: pages.model_page(project, name, compare), f"Model {name}")  # fmt: skip

    @app.get("/ui/models/{name}/{version}/lineage", include_in_schema=False)
    async def lineage(name: str, version: int, request: Request) -> Response:
        return await page(request, "lineage.html",
                          lambda: pages.lineage_page(project, name, version),
                          f"Lineage of {name}:{version}")  # fmt: skip

    @app.get("/ui/monitoring/{endpoint}", include_in_schema=False)
    async def monitoring(endpoint: str, request: Request) -> Response:
        def load() -> dict[str, Any]:
            # windows close hourly at most: the rendered section is kept a while
            data = dict(memo.get(("monitoring", endpoint),
                                 lambda: pages.monitoring_page(project, endpoint)))  # fmt: skip
            data["section"] = Markup(data["section"])  # escaped by the report renderer
            return data

        return await page(request, "monitoring.html", load, f"Monitoring {endpoint}")

    @app.get("/ui/features", include_in_schema=False)
    async def features(request: Request) -> Response:
        return await page(request, "features.html", lambda: pages.features_page(project),
                          "Features")  # fmt: skip

    @app.get("/ui/retraining", include_in_schema=False)
    async def retraining(request: Request) -> Response:
        def load() -> dict[str, Any]:
            data = pages.retraining_page(project)
            data["section"] = Markup(data["section"])  # escaped by the report renderer
            return data

        return await page(request, "retraining.html", load, "Retraining")

    @app.get("/ui/static/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in static:
            return Response(status_code=404)
        return Response(static[name], media_type=_STATIC[name],
                        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"})  # fmt: skip

    @app.get("/ui/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        html = env.get_template("login.html").render(
            next=_next(request.query_params.get("next")), error=None, project=project.name,
            configured=tokens.configured,
        )  # fmt: skip
        return HTMLResponse(html, headers=_HEADERS)

    @app.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        target = _next((form.get("next") or [""])[0])
        identity = tokens.identity(f"Bearer {token}") if token else None
        if identity is None or identity[1] not in ("viewer", "operator", "admin"):
            html = env.get_template("login.html").render(
                next=target, error="That token is not valid for the dashboard.",
                project=project.name, configured=tokens.configured,
            )  # fmt: skip
            return HTMLResponse(html, status_code=401, headers=_HEADERS)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE, token, max_age=SESSION_MAX_AGE, path="/", httponly=True,
            samesite="strict", secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    @app.post("/ui/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        session = session_of(request, tokens)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        sent = (form.get("csrf") or [""])[0]
        if session is None or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            return Response("the sign-out needs the page's CSRF token", status_code=403)
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response


def _next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path only (no open redirect)."""
    if target and target.startswith("/ui") and not target.startswith("//"):
        return target
    return "/ui"


def ui_app(project: Project, **options: Any) -> FastAPI:
    """The serving app of ``project`` (admin API included; ``options`` as
    :func:`~prodml.project.serving_app` takes them) with the dashboard at ``/ui``: what
    ``prodml serve`` and ``prodml ui`` run."""
    app = serving_app(project, **options)
    mount_ui(app, project)
    return app


def app_from_env() -> FastAPI:
    """:func:`~prodml.project.app_from_env` with the dashboard (uvicorn ``--factory``,
    one per worker process)."""
    app = project_app_from_env()
    mount_ui(app, app.state.project)
    return app
