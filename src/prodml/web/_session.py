"""Who is looking at a page: the dashboard signs in with an admin API token, kept in an
``HttpOnly``, ``SameSite=Strict`` cookie; each page carries the session's CSRF token for
the calls it makes (see :mod:`prodml.serving._auth`)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from prodml.serving import SESSION_COOKIE, Tokens, csrf_token

__all__ = ["ROLE_ACTIONS", "Session", "session_of"]

#: What each role may do from the dashboard (the admin API checks it again).
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset(),
    "operator": frozenset({"operator"}),
    "admin": frozenset({"operator", "admin"}),
}


@dataclass(frozen=True)
class Session:
    """A signed-in ``name`` (the token's) with its ``role`` and the page's ``csrf``
    token; ``open``: no token is configured, so every page is read-only."""

    name: str
    role: str
    csrf: str = ""
    open: bool = False

    def may(self, role: str) -> bool:
        """Whether the session's role may act where ``role`` is needed."""
        return role in ROLE_ACTIONS.get(self.role, frozenset())


def session_of(request: Request, tokens: Tokens) -> Session | None:
    """The request's session (None: not signed in)."""
    if not tokens.configured:
        return Session(name="anonymous", role="viewer", open=True)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    identity = tokens.identity(f"Bearer {token}")
    if identity is None:
        return None
    name, role = identity
    if role not in ROLE_ACTIONS:  # a labeler's token posts feedback, it reads no page
        return None
    return Session(name=name, role=role, csrf=csrf_token(token))
