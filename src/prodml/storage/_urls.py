"""Metadata DB URLs: build them from the config, and print them without passwords.

>>> from pathlib import Path
>>> from prodml.core import PostgresMetadataConfig, SqliteMetadataConfig
>>> metadata_url(SqliteMetadataConfig(path=".prodml/meta.db"), Path("/srv/proj"))
'sqlite:////srv/proj/.prodml/meta.db'
>>> metadata_url(PostgresMetadataConfig(type="postgresql", url="postgresql+psycopg://u@db/x"), Path("."))
'postgresql+psycopg://u@db/x'
>>> redact_url("postgresql+psycopg://user:s3cret@db:5432/prod")
'postgresql+psycopg://user:***@db:5432/prod'
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from prodml.core import ConfigError, PostgresMetadataConfig, SqliteMetadataConfig

__all__ = ["metadata_url", "parse_url", "redact_url"]

_USERINFO_PASSWORD = re.compile(r"(://[^/:@]*:)[^/@]*@")


def metadata_url(config: SqliteMetadataConfig | PostgresMetadataConfig, root: str | Path) -> str:
    """The SQLAlchemy URL of the metadata DB; a relative SQLite path is under ``root``."""
    if isinstance(config, SqliteMetadataConfig):
        path = Path(config.path)
        if not path.is_absolute():
            path = Path(root).absolute() / path
        return URL.create("sqlite", database=str(path)).render_as_string()
    if isinstance(config, PostgresMetadataConfig):
        return config.url
    raise TypeError(
        f"metadata_url: expected SqliteMetadataConfig or PostgresMetadataConfig, "
        f"got {type(config).__name__}"
    )


def redact_url(url: str | URL) -> str:
    """``url`` with its password replaced by ``***``, safe for messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _USERINFO_PASSWORD.sub(r"\1***@", str(url))


def parse_url(url: str) -> URL:
    """Parse a SQLAlchemy URL, raising :class:`ConfigError` that names it (redacted)."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"metadata DB URL {redact_url(url)!r} is invalid: expected a SQLAlchemy URL such "
            f"as 'sqlite:///path/meta.db' or 'postgresql+psycopg://user@host/db'"
        ) from None
