"""A snapshot's embedded metadata DB restored onto PostgreSQL: the laptop project moved
to the scale-out backend in one ``prodml restore``.

When the restored project is configured for PostgreSQL (``[metadata] type =
"postgresql"``, usually through ``PRODML__METADATA__…`` overrides) and the snapshot
holds its SQLite metadata DB rather than a ``pg_dump``, :func:`copy_metadata` upgrades
the restored SQLite copy to the current schema, creates the same schema in the
PostgreSQL target (which must hold no relation), and copies every row of every table
in dependency order in one transaction, then moves each id sequence past the copied
ids. The SQLite file is then removed from the restored directory, so a later command
without the overrides fails loudly instead of reading a stale copy.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Integer, select, text

from prodml.core import Config, StorageError
from prodml.storage import Base, MetadataDB, open_metadata_db

__all__ = ["copy_metadata", "drop_copied", "embedded_metadata_file"]

_BATCH = 5000


def embedded_metadata_file(root: Path, file_config: Config, config: Config) -> Path | None:
    """The SQLite metadata DB restored under ``root`` that must go to PostgreSQL: its
    ``prodml.toml`` names one (``file_config``, without overrides) and the configuration
    in force (``config``) is PostgreSQL. None otherwise."""
    if config.metadata.type != "postgresql" or file_config.metadata.type != "sqlite":
        return None
    found = (root / file_config.metadata.path).resolve()
    return found if found.is_file() and found.is_relative_to(root.resolve()) else None


def copy_metadata(source: Path, config: Config, root: Path) -> int:
    """Copy the SQLite metadata DB ``source`` into the PostgreSQL DB of ``config``
    (see the module docstring); the number of rows copied. On failure the target
    schema's tables are dropped again."""
    src = MetadataDB.open(f"sqlite:///{source}")
    try:
        dst = open_metadata_db(config.metadata, root)  # the schema, at head
        try:
            copied = 0
            try:
                with src.engine.connect() as reader, dst.engine.begin() as writer:
                    for table in Base.metadata.sorted_tables:
                        result = reader.execute(select(table)).mappings()
                        while batch := result.fetchmany(_BATCH):
                            writer.execute(table.insert(), [dict(row) for row in batch])
                            copied += len(batch)
                    for table in Base.metadata.sorted_tables:
                        column = table.c.get("id")
                        if column is None or not isinstance(column.type, Integer):
                            continue
                        if not column.primary_key or column.autoincrement is False:
                            continue
                        writer.execute(text(
                            f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "
                            f'COALESCE(MAX(id), 0) + 1, false) FROM "{table.name}"'
                        ))  # fmt: skip
            except Exception as exc:
                _drop_tables(dst)
                raise StorageError(
                    f"copying the metadata DB {source.name} into {dst.location} failed and was "
                    f"undone: {exc}"
                ) from exc
            return copied
        finally:
            dst.close()
    finally:
        src.close()


def drop_copied(config: Config, root: Path) -> None:
    """Undo :func:`copy_metadata` after it succeeded (a later step of the restore
    failed)."""
    db = open_metadata_db(config.metadata, root, upgrade=False)
    try:
        _drop_tables(db)
    finally:
        db.close()


def _drop_tables(db: MetadataDB) -> None:
    """Remove what :func:`copy_metadata` created in the target (an empty schema stays)."""
    from prodml.storage._revision import VERSION_TABLE

    with db.engine.begin() as con:
        for table in reversed(Base.metadata.sorted_tables):
            con.execute(text(f'DROP TABLE IF EXISTS "{table.name}" CASCADE'))
        con.execute(text(f'DROP TABLE IF EXISTS "{VERSION_TABLE}" CASCADE'))
