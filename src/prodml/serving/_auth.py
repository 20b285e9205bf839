"""Bearer tokens with roles: ``viewer`` reads, ``operator`` changes weights, pauses and
rolls back, ``admin`` also deploys and promotes; ``labeler`` posts feedback and nothing
else (operators and admins may post it too, viewers may not). Tokens come from
``[[serving.tokens]]`` (the token itself, or the environment variable holding it) and
are compared by SHA-256 digest in constant time. With no token configured the admin API
is closed.

The dashboard (``/ui``) signs in with the same tokens: the token is kept in the
``prodml_session`` cookie (``HttpOnly``, ``SameSite=Strict``), which the admin API takes
in place of the ``Authorization`` header — for a call that changes state only with the
page's CSRF token in ``X-CSRF-Token`` (:func:`credentials`). The CSRF token is an HMAC
of a fixed message under the session's token: a page of the server's own origin can
read it, another site can neither read nor compute it.

>>> credentials({}, {SESSION_COOKIE: "t" * 16}, "GET")
'Bearer tttttttttttttttt'
>>> credentials({}, {SESSION_COOKIE: "t" * 16}, "POST")
Traceback (most recent call last):
...
prodml.serving._auth.CsrfError: this call changes state: it needs the dashboard's CSRF token in the X-CSRF-Token header (reload the page)

>>> from prodml.core import ServingToken
>>> tokens = Tokens([ServingToken(name="ci", role="operator", token="x" * 16)])
>>> tokens.role_of("Bearer " + "x" * 16), tokens.role_of("Bearer nope"), tokens.role_of(None)
('operator', None, None)
>>> tokens.require("Bearer " + "x" * 16, "admin")
Traceback (most recent call last):
...
prodml.serving._auth.RoleError: token 'ci' has role 'operator'; this action needs 'admin'
>>> tokens.require_feedback("Bearer " + "x" * 16)
'ci'
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

from prodml.core import AuthError, ConfigError, ServingToken

__all__ = [
    "CSRF_HEADER",
    "FEEDBACK_ROLES",
    "ROLE_RANK",
    "SESSION_COOKIE",
    "CsrfError",
    "RoleError",
    "Tokens",
    "credentials",
    "csrf_token",
]

#: The admin API's (and predictions') order of roles; a labeler is below every one of them.
ROLE_RANK: Mapping[str, int] = {"labeler": -1, "viewer": 0, "operator": 1, "admin": 2}
#: The roles that may post feedback (``[serving] feedback_requires_token``).
FEEDBACK_ROLES: tuple[str, ...] = ("labeler", "operator", "admin")


class RoleError(AuthError):
    """A valid token whose role may not do this (HTTP 403, where a bad token is 401)."""


class CsrfError(RoleError):
    """A cookie-signed call that changes state without the page's CSRF token (403)."""


#: The dashboard's session cookie (it holds the bearer token) and the CSRF header.
SESSION_COOKIE = "prodml_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(token: str) -> str:
    """The CSRF token of a dashboard session signed in with ``token``."""
    return hmac.new(token.encode(), b"prodml dashboard csrf", hashlib.sha256).hexdigest()


def credentials(headers: Mapping[str, str], cookies: Mapping[str, str], method: str) -> str | None:
    """The ``Authorization`` value a request presents: its header, else the dashboard
    session's token (:class:`CsrfError` when ``method`` changes state and the CSRF token
    is missing or wrong); None without either."""
    header = headers.get("authorization")
    if header:
        return header
    token = cookies.get(SESSION_COOKIE)
    if not token:
        return None
    if method.upper() not in _SAFE_METHODS:
        sent = headers.get(CSRF_HEADER.lower()) or headers.get(CSRF_HEADER) or ""
        if not hmac.compare_digest(sent.encode(), csrf_token(token).encode()):
            raise CsrfError(
                "this call changes state: it needs the dashboard's CSRF token in the "
                f"{CSRF_HEADER} header (reload the page)"
            )
    return f"Bearer {token}"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Tokens:
    """The configured tokens, by digest."""

    def __init__(
        self, tokens: Sequence[ServingToken], environ: Mapping[str, str] | None = None
    ) -> None:
        env = os.environ if environ is None else environ
        self._by_digest: dict[bytes, tuple[str, str]] = {}
        for entry in tokens:
            value = entry.token
            if value is None:
                if entry.env is None:
                    raise ConfigError(
                        f"[[serving.tokens]] {entry.name!r}: give 'token' or 'env' (the "
                        "environment variable holding the token)"
                    )
                value = env.get(entry.env)
                if not value:
                    raise ConfigError(
                        f"[[serving.tokens]] {entry.name!r}: environment variable "
                        f"{entry.env!r} is not set"
                    )
            if len(value) < 16:
                raise ConfigError(
                    f"[[serving.tokens]] {entry.name!r}: a token must have at least 16 characters"
                )
            self._by_digest[_digest(value)] = (entry.name, entry.role)

    @property
    def configured(self) -> bool:
        return bool(self._by_digest)

    def _lookup(self, header: str | None) -> tuple[str, str] | None:
        scheme, _, credentials = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():  # the scheme is any case
            return None
        digest = _digest(credentials.strip())
        for known, identity in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return identity
        return None

    def role_of(self, header: str | None) -> str | None:
        identity = self._lookup(header)
        return None if identity is None else identity[1]

    def identity(self, header: str | None) -> tuple[str, str] | None:
        """The token's ``(name, role)``, or None for no known token."""
        return self._lookup(header)

    def require(self, header: str | None, role: str) -> str:
        """The token's name if its role is at least ``role``, else :class:`AuthError`."""
        name, has = self._identify(header)
        if ROLE_RANK[has] < ROLE_RANK[role]:
            raise RoleError(f"token {name!r} has role {has!r}; this action needs {role!r}")
        return name

    def require_feedback(self, header: str | None, roles: Sequence[str] = FEEDBACK_ROLES) -> str:
        """The token's name if its role is one of ``roles`` (by default those that may
        post feedback), else :class:`AuthError`."""
        name, has = self._identify(header)
        if has not in roles:
            allowed = ", ".join(repr(r) for r in roles)
            raise RoleError(
                f"token {name!r} has role {has!r}; posting feedback needs one of {allowed}"
            )
        return name

    def _identify(self, header: str | None) -> tuple[str, str]:
        """The name and role of the header's token; :class:`AuthError` when none is
        configured or the header holds no known one."""
        if not self.configured:
            raise AuthError(
                "no tokens are configured: add [[serving.tokens]] to prodml.toml to use this API"
            )
        identity = self._lookup(header)
        if identity is None:
            raise AuthError("a valid bearer token is required (Authorization: Bearer <token>)")
        return identity
