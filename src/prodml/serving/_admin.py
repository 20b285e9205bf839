"""The admin API ``/v1/admin/...``: read and change deployments, behind bearer tokens.

``viewer`` lists deployments and their history; ``operator`` sets weights, pauses,
resumes, rolls back and restores the previous champion; ``admin`` deploys and promotes.
Every change goes through the deployment store (history and audit entry, actor = the
token's name) and is applied by this server at once; other replicas pick it up within
their watch interval. A promote,
and the rollback of one, also move the registry's ``<model>@champion`` alias in the same
transaction (a refusal on either side — an unapproved version, an alias moved since —
is a 409 and changes nothing).

A change may say which revision it was made against (``"expected_revision": n``, 0 for
"the endpoint has no deployment yet"): when the deployment has moved on since, the change
is a 409 and nothing is written, so of two people changing an endpoint at once the one
who read it first loses, and does not overwrite the other unseen. A body field these
routes do not know is a 422 (a misspelt guard must not be ignored).

Layers above serving add their own admin commands as :class:`AdminAction` s (the rollout
controller's ``/v1/admin/rollouts/{endpoint}/...``): the same tokens, roles and error
mapping, without serving importing them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Request, Security
from fastapi.responses import Response

from prodml.core.errors import ConflictError
from prodml.registry import Deployment, DeploymentSpec
from prodml.serving import _openapi as api
from prodml.serving._auth import credentials
from prodml.serving._responses import json_response
from prodml.serving._wire import FieldProblem, RequestInvalid

if TYPE_CHECKING:
    from prodml.serving._http import RouteContext

__all__ = ["AdminAction", "add_admin_routes"]

Endpoint = Annotated[str, api.ENDPOINT_PATH]
SECURED = [Security(api.BEARER)]  # declares the bearer scheme; handlers check the role


def _credentials(request: Request) -> str | None:
    """The bearer token's header, or the dashboard session's (see ``_auth``)."""
    return credentials(request.headers, request.cookies, request.method)


def _mapping(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise RequestInvalid(f"{what}: request body must be a JSON object", status=400)
    return body


#: The body fields of each deployment change (beyond ``reason`` and ``expected_revision``).
_FIELDS: Mapping[str, tuple[str, ...]] = {
    "deploy": ("spec",),
    "weights": ("weights",),
    "promote": ("arm",),
}


def _check_fields(body: Mapping[str, Any], action: str) -> None:
    """Refuse a body field the ``action``'s route does not take (422, naming it)."""
    known = (*_FIELDS.get(action, ()), "reason", "expected_revision")
    unknown = sorted(str(k) for k in body if k not in known)
    if unknown:
        raise RequestInvalid(
            f"{action}: unknown field(s) {unknown}; expected only {list(known)}",
            status=422,
            details=[FieldProblem(k, "unknown_field", f"one of {list(known)}") for k in unknown],
        )


def _expected_revision(body: Mapping[str, Any]) -> int | None:
    """The body's ``expected_revision``: None (any revision), or an integer >= 0."""
    value = body.get("expected_revision")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestInvalid(
            f"field 'expected_revision' must be an integer >= 0, got {value!r}",
            status=422,
            details=[FieldProblem("expected_revision", "wrong_type", "integer >= 0 (a revision)")],
        )
    return value


def _at_revision(endpoint: str, expected: int | None) -> Callable[[Any, Deployment], None] | None:
    """A ``within`` hook refusing the change (409, nothing written) unless it was made
    against revision ``expected``: the change writes ``expected + 1`` then."""
    if expected is None:
        return None

    def check(session: Any, deployment: Deployment) -> None:
        actual = deployment.revision - 1
        if actual != expected:
            raise ConflictError(
                f"deployment {endpoint!r} is at revision {actual}, expected revision "
                f"{expected}; re-read it and retry"
            )

    return check


def _reason(body: Mapping[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise RequestInvalid(
            "field 'reason' must be a string",
            status=422,
            details=[FieldProblem("reason", "wrong_type", "string")],
        )
    return reason


@dataclass(frozen=True)
class AdminAction:
    """An admin command of a layer above serving, at ``/v1/admin/{group}/{endpoint}``
    (``name`` None) or ``/v1/admin/{group}/{endpoint}/{name}``: ``call(endpoint, body,
    actor)`` runs in a worker thread with the JSON body (``{}`` for GET) and the token's
    actor, and returns the JSON answer. ``role`` is the least role allowed; ``changes``
    says the call may change deployments (the server then applies them at once)."""

    group: str
    name: str | None
    role: str
    call: Callable[[str, Mapping[str, Any], str], Any]
    method: str = "POST"
    changes: bool = True
    summary: str = ""


def add_admin_routes(
    app: FastAPI, context: RouteContext, actions: Sequence[AdminAction] = ()
) -> None:
    runtime = context.runtime
    store = runtime.deployments
    for extra in actions:
        _add_action(app, context, extra)

    async def run(role: str, request: Request, change: Callable[[str], Deployment]) -> Response:
        actor = context.tokens.require(_credentials(request), role)
        loop = asyncio.get_running_loop()
        deployment = await loop.run_in_executor(None, change, f"token:{actor}")
        await runtime.refresh()
        return json_response(deployment.to_dict())

    @app.get(
        "/v1/admin/deployments",
        responses=api.answers(api.DEPLOYMENTS_OK, *api.ADMIN),
        dependencies=SECURED,
    )
    async def deployments(request: Request) -> Response:
        context.tokens.require(_credentials(request), "viewer")
        items = await asyncio.get_running_loop().run_in_executor(None, store.list)
        return json_response([d.to_dict() for d in items])

    @app.get(
        "/v1/admin/deployments/{endpoint}/history",
        responses=api.answers(api.HISTORY_OK, *api.ADMIN),
        dependencies=SECURED,
    )
    async def history(endpoint: Endpoint, request: Request) -> Response:
        context.tokens.require(_credentials(request), "viewer")
        rows = await asyncio.get_running_loop().run_in_executor(None, store.history, endpoint)
        return json_response(rows)

    @app.put(
        "/v1/admin/deployments/{endpoint}",
        responses=api.answers(api.DEPLOYMENT_OK, *api.ADMIN_CHANGE),
        openapi_extra=api.operation(body=api.DEPLOY),
        dependencies=SECURED,
    )
    async def deploy(endpoint: Endpoint, request: Request) -> Response:
        context.tokens.require(_credentials(request), "admin")  # before the body
        body = _mapping(await context.json(request), "deploy")
        _check_fields(body, "deploy")
        spec_data = body.get("spec")
        if not isinstance(spec_data, Mapping):
            raise RequestInvalid(
                "field 'spec' must be a deployment spec object",
                status=422,
                details=[FieldProblem("spec", "missing_field", "deployment spec object")],
            )
        spec = DeploymentSpec.from_dict(spec_data)
        reason, expected = _reason(body), _expected_revision(body)
        change = partial(store.deploy, endpoint, spec, reason=reason, expected_revision=expected)
        return await run("admin", request, lambda actor: change(actor=actor))

    @app.post(
        "/v1/admin/deployments/{endpoint}/weights",
        responses=api.answers(api.DEPLOYMENT_OK, *api.ADMIN_CHANGE),
        openapi_extra=api.operation(body=api.WEIGHTS),
        dependencies=SECURED,
    )
    async def weights(endpoint: Endpoint, request: Request) -> Response:
        context.tokens.require(_credentials(request), "operator")
        body = _mapping(await context.json(request), "weights")
        _check_fields(body, "weights")
        values = body.get("weights")
        if (
            not isinstance(values, Mapping)
            or not values  # no arm named: nothing would change but the revision
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()
            )
        ):
            raise RequestInvalid(
                "field 'weights' must map one or more arm names to numbers",
                status=422,
                details=[FieldProblem("weights", "wrong_type", "object of arm name → number")],
            )
        reason, expected = _reason(body), _expected_revision(body)
        change = partial(
            store.set_weights, endpoint, dict(values), reason=reason, expected_revision=expected
        )
        return await run("operator", request, lambda actor: change(actor=actor))

    def simple(action: str, role: str) -> None:
        async def handler(endpoint: Endpoint, request: Request) -> Response:
            context.tokens.require(_credentials(request), role)
            body = _mapping(await context.json(request, empty={}), action)
            _check_fields(body, action)
            reason = _reason(body)
            method = partial(
                getattr(store, action), within=_at_revision(endpoint, _expected_revision(body))
            )
            if action == "promote":
                arm = body.get("arm", "challenger")
                if not isinstance(arm, str):
                    raise RequestInvalid(
                        "field 'arm' must be a string",
                        status=422,
                        details=[FieldProblem("arm", "wrong_type", "arm name")],
                    )
                return await run(
                    role, request, lambda actor: method(endpoint, arm, actor=actor, reason=reason)
                )
            return await run(
                role, request, lambda actor: method(endpoint, actor=actor, reason=reason)
            )

        handler.__name__ = f"admin_{action}"
        app.add_api_route(
            f"/v1/admin/deployments/{{endpoint}}/{action}",
            handler,
            methods=["POST"],
            responses=api.answers(api.DEPLOYMENT_OK, *api.ADMIN_CHANGE),
            openapi_extra=api.operation(body=api.PROMOTE if action == "promote" else api.ACTION),
            dependencies=SECURED,
        )

    for action, role in (
        ("pause", "operator"),
        ("resume", "operator"),
        ("rollback", "operator"),
        ("restore_previous", "operator"),
        ("promote", "admin"),
    ):
        simple(action, role)


def _add_action(app: FastAPI, context: RouteContext, action: AdminAction) -> None:
    async def handler(endpoint: Endpoint, request: Request) -> Response:
        actor = context.tokens.require(_credentials(request), action.role)
        body: Any = {}
        if action.method != "GET":
            body = _mapping(await context.json(request, empty={}), action.name or action.group)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, action.call, endpoint, body, f"token:{actor}")
        if action.changes:
            await context.runtime.refresh()
        return json_response(result)

    path = f"/v1/admin/{action.group}/{{endpoint}}"
    handler.__name__ = f"admin_{action.group}_{action.name or 'get'}"
    app.add_api_route(
        path if action.name is None else f"{path}/{action.name}",
        handler,
        methods=[action.method],
        summary=action.summary or None,
        responses=api.answers(
            api.ADMIN_ACTION_OK, *(api.ADMIN if action.method == "GET" else api.ADMIN_CHANGE)
        ),
        openapi_extra=None if action.method == "GET" else api.operation(body=api.ADMIN_BODY),
        dependencies=SECURED,
    )
