"""Whether a metadata DB's schema is already at head, decided without importing Alembic.

Every command opens the metadata DB, and nearly always its schema is already at head:
that check reads the version table and the migration scripts' ``revision`` and
``down_revision`` literals (parsed, not imported), so opening costs no Alembic import
(about 0.1 s). Whatever this reading cannot settle — no version table, a computed
revision, several heads — answers "not at head" and
:func:`prodml.storage._migrate.upgrade_to_head` decides with Alembic.

>>> from prodml.storage._migrate import head_revision
>>> declared_head() == head_revision()
True
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from prodml.core import StorageError
from prodml.storage._engine import describe_error
from prodml.storage._urls import redact_url

__all__ = ["VERSIONS_DIR", "VERSION_TABLE", "at_head", "declared_head", "stored_revision"]

VERSIONS_DIR = Path(__file__).resolve().with_name("migrations") / "versions"
VERSION_TABLE = "prodml_alembic_version"


@functools.cache
def declared_head(versions: Path = VERSIONS_DIR) -> str | None:
    """The one revision no script revises, from the scripts' literals; ``None`` when a
    script's revisions are not plain literals or there is not exactly one head."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in sorted(versions.glob("*.py")):
        found = _literals(script)
        if found is None:
            return None
        revision, down = found
        revisions.add(revision)
        revised.update(down)
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def _literals(script: Path) -> tuple[str, tuple[str, ...]] | None:
    """``(revision, down_revisions)`` assigned as literals at a script's top level."""
    values: dict[str, object] = {}
    for node in ast.parse(script.read_bytes(), filename=str(script)).body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else node.targets[0]
            if isinstance(node, ast.Assign) and len(node.targets) == 1
            else None
        )
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            try:
                values[target.id] = ast.literal_eval(value) if value is not None else None
            except ValueError:
                return None
    revision, down = values.get("revision"), values.get("down_revision", ...)
    if not isinstance(revision, str) or down is ...:
        return None
    if down is None:
        return revision, ()
    if isinstance(down, str):
        return revision, (down,)
    if isinstance(down, tuple | list) and all(isinstance(d, str) for d in down):
        return revision, tuple(down)
    return None


def stored_revision(connection: Connection) -> str | None:
    """The revision recorded in the version table (``None``: no table, or not one row)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    return str(rows[0][0]) if len(rows) == 1 else None


def at_head(engine: Engine) -> bool:
    """Whether the schema behind ``engine`` is at the head this prodml ships (``False``
    when that is not certain); :class:`StorageError` when the database is unreachable."""
    head = declared_head()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            return stored_revision(conn) == head
    except SQLAlchemyError as exc:
        raise StorageError(
            f"metadata DB {redact_url(engine.url)}: cannot connect: {describe_error(exc)}"
        ) from exc
