"""Bearer tokens with roles: ``viewer`` reads, ``operator`` changes weights, pauses and
rolls back, ``admin`` also deploys and promotes. Tokens come from ``[[serving.tokens]]``
(the token itself, or the environment variable holding it) and are compared by SHA-256
digest in constant time. With no token configured the admin API is closed.

>>> from prodml.core import ServingToken
>>> tokens = Tokens([ServingToken(name="ci", role="operator", token="x" * 16)])
>>> tokens.role_of("Bearer " + "x" * 16), tokens.role_of("Bearer nope"), tokens.role_of(None)
('operator', None, None)
>>> tokens.require("Bearer " + "x" * 16, "admin")
Traceback (most recent call last):
...
prodml.serving._auth.RoleError: token 'ci' has role 'operator'; this action needs 'admin'
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

from prodml.core import AuthError, ConfigError, ServingToken

__all__ = ["ROLE_RANK", "RoleError", "Tokens"]

ROLE_RANK: Mapping[str, int] = {"viewer": 0, "operator": 1, "admin": 2}


class RoleError(AuthError):
    """A valid token whose role may not do this (HTTP 403, where a bad token is 401)."""


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
        if not header or not header.startswith("Bearer "):
            return None
        digest = _digest(header[7:].strip())
        for known, identity in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return identity
        return None

    def role_of(self, header: str | None) -> str | None:
        identity = self._lookup(header)
        return None if identity is None else identity[1]

    def require(self, header: str | None, role: str) -> str:
        """The token's name if its role is at least ``role``, else :class:`AuthError`."""
        if not self.configured:
            raise AuthError(
                "no tokens are configured: add [[serving.tokens]] to prodml.toml to use this API"
            )
        identity = self._lookup(header)
        if identity is None:
            raise AuthError("a valid bearer token is required (Authorization: Bearer <token>)")
        name, has = identity
        if ROLE_RANK[has] < ROLE_RANK[role]:
            raise RoleError(f"token {name!r} has role {has!r}; this action needs {role!r}")
        return name
