"""The state a scaled-out project keeps outside its directory, in a snapshot and back.

* **PostgreSQL metadata DB** (``[metadata] type = "postgresql"``): ``pg_dump`` of its
  schema in the custom format, one consistent snapshot of every table (a single
  repeatable-read transaction). Restored with ``pg_restore --single-transaction`` into a
  schema that holds no relation (created if absent): all of it or nothing.
* **Redis online store** (``[online_store] type = "redis"``): every key under its
  prefix, as Redis' own ``DUMP`` serialization with the key's remaining time to live,
  in one Parquet table. Restored with ``RESTORE`` into a Redis holding no key under the
  prefix; a failure deletes the keys it restored. (``DUMP`` payloads carry the RDB
  version: a Redis older than the one dumped refuses them, and the error says so.)
* **S3 artifact store** (``[artifacts] type = "s3"``): every object under the prefix.
  An artifact's key is its SHA-256 (``sha256/<2 hex>/<62 hex>``), so an object whose
  blob the destination holds is not downloaded again. Restored into a prefix holding
  no object; a failure deletes the objects it wrote.
* **S3 logs** (``[logs] type = "s3"``) and **training-set snapshots** (``[features]
  datasets_path = "s3://…"``): every object of both logs and their quarantine, every
  snapshot. These are never rewritten (a flush writes a new key; a snapshot is named by
  its fingerprint), so one the previous snapshot holds with the same size is not
  downloaded again. Restored like artifacts.

Each becomes blobs in the destination's blob store (see :mod:`~prodml.ops._backup`) and
:class:`~prodml.ops._manifest.ExternalEntry` rows of the manifest. A restore checks
that every such target is empty before it writes to any, then loads the artifacts, the
logs and training sets, the online store, and the metadata DB last (a row never names
an artifact not yet back).
Embedded backends (SQLite, local files) live in the project directory and are backed up
as its files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from prodml.core import (
    Config,
    ConfigError,
    ConflictError,
    IntegrityError,
    StorageError,
    fingerprint_bytes,
    fingerprint_file,
)
from prodml.ops._manifest import ExternalEntry
from prodml.storage._blob_s3 import S3BlobStore

__all__ = ["ExternalTargets", "dump_external", "external_revision"]

METADATA, ONLINE, ARTIFACTS = "metadata", "online", "artifacts"
LOGS, DATASETS = "logs", "datasets"
PG_DUMP = "postgresql.pgdump"
REDIS_DUMP = "redis.parquet"
_DIGEST_KEY = re.compile(r"^sha256/([0-9a-f]{2})/([0-9a-f]{62})$")
_REDIS_BATCH = 500
_TOOL_TIMEOUT_S = 3600.0

#: Puts a file into the blob store by moving it (its SHA-256 given) and says whether
#: the blob is new; reads a blob's bytes by SHA-256 (checked); says whether one exists.
StoreFile = Callable[[Path, str], bool]
ReadBlob = Callable[[str], bytes]
HasBlob = Callable[[str], "int | None"]


# -- PostgreSQL -------------------------------------------------------------------------


def _pg_schema(config: Config) -> str:
    return getattr(config.metadata, "schema_name", None) or "public"


def _pg_environ(url: str) -> dict[str, str]:
    """libpq's environment for the metadata URL (the password never on a command line)."""
    parsed = make_url(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    pairs = {"PGHOST": parsed.host, "PGPORT": parsed.port, "PGUSER": parsed.username,
             "PGPASSWORD": parsed.password, "PGDATABASE": parsed.database}  # fmt: skip
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        value = parsed.query.get(key)
        if value is not None:
            pairs["PG" + key.upper()] = str(value)
    env.update({k: str(v) for k, v in pairs.items() if v is not None})
    return env


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(
            f"[metadata] type = 'postgresql': backup and restore run {name!r}, which is not on "
            "PATH; install PostgreSQL's client programs (e.g. the postgresql-client package) "
            "at the server's major version or newer"
        )
    return found


def _run(command: Sequence[str], env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(list(command), env=env, capture_output=True, text=True,
                              timeout=_TOOL_TIMEOUT_S, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StorageError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise StorageError(f"{what} failed (exit {done.returncode}): {' '.join(detail[-3:])}")


def _dump_postgres(config: Config, work: Path) -> Path:
    schema = _pg_schema(config)
    out = work / PG_DUMP
    url = config.metadata.url  # type: ignore[union-attr]
    command = [_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
               f"--schema={_pattern(schema)}", f"--file={out}"]  # fmt: skip
    _run(command, _pg_environ(url), f"pg_dump of schema {schema!r} of {_pg_where(url)}")
    return out


def _pattern(name: str) -> str:
    """``name`` as a pg_dump pattern that matches it alone (quoted: exact and
    case-sensitive, ``*`` and ``?`` literal)."""
    return '"' + name.replace('"', '""') + '"'


def _pg_where(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _pg_engine(url: str) -> Iterator[Any]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def _pg_relations(url: str, schema: str) -> tuple[bool, int]:
    """Whether ``schema`` exists, and how many relations it holds."""
    try:
        return _pg_count(url, schema)
    except SQLAlchemyError as exc:
        raise StorageError(
            f"PostgreSQL at {_pg_where(url)}: cannot look into schema {schema!r}: "
            f"{str(exc).strip().splitlines()[0]}"
        ) from exc


def _pg_count(url: str, schema: str) -> tuple[bool, int]:
    with _pg_engine(url) as engine, engine.connect() as con:
        exists = con.execute(
            text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}
        ).scalar_one()
        count = con.execute(
            text("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE n.nspname = :s"), {"s": schema},
        ).scalar_one()  # fmt: skip
    return bool(exists), int(count)


def refuse_non_empty_schema(config: Config) -> None:
    """Refuse (:class:`ConflictError`) a PostgreSQL metadata schema holding anything."""
    url, schema = config.metadata.url, _pg_schema(config)  # type: ignore[union-attr]
    _, relations = _pg_relations(url, schema)
    if relations:
        raise ConflictError(
            f"restore target: schema {schema!r} of {_pg_where(url)} holds {relations} "
            "relations: restore into an empty or new schema ([metadata] schema_name)"
        )


def _restore_postgres(config: Config, dump: Path, work: Path) -> Callable[[], None]:
    """Load ``dump`` into the configured schema (checked empty); returns the undo."""
    url = config.metadata.url  # type: ignore[union-attr]
    schema = _pg_schema(config)
    env = _pg_environ(url)
    exists, _ = _pg_relations(url, schema)
    listing = subprocess.run([_pg_tool("pg_restore"), "--list", str(dump)], env=env,
                             capture_output=True, text=True, check=False)  # fmt: skip
    if listing.returncode != 0:
        raise IntegrityError(
            f"{PG_DUMP}: pg_restore cannot read the dump: {listing.stderr.strip()}"
        )
    # The schema itself is made here (public always exists), so every object in the dump
    # but the schema's own entries is restored, in one transaction.
    keep = [line for line in listing.stdout.splitlines()
            if not re.search(r"\b(SCHEMA|COMMENT) - ", line)]  # fmt: skip
    entries = work / "pg_restore.list"
    entries.write_text("\n".join(keep) + "\n")
    quoted = '"' + schema.replace('"', '""') + '"'
    if not exists:
        with _pg_engine(url) as engine, engine.begin() as con:
            con.execute(text(f"CREATE SCHEMA {quoted}"))

    def undo() -> None:
        if not exists:
            with _pg_engine(url) as engine, engine.begin() as con:
                con.execute(text(f"DROP SCHEMA IF EXISTS {quoted} CASCADE"))

    try:
        _run([_pg_tool("pg_restore"), f"--dbname={env.get('PGDATABASE', '')}", "--no-owner",
              "--no-privileges", "--exit-on-error", "--single-transaction",
              f"--use-list={entries}", str(dump)],
             env, f"pg_restore into schema {schema!r} of {_pg_where(url)}")  # fmt: skip
    except BaseException:
        undo()
        raise
    return undo


# -- Redis ------------------------------------------------------------------------------


def _redis(config: Config) -> Any:
    import redis

    return redis.Redis.from_url(config.online_store.url)  # type: ignore[union-attr]


def _redis_pattern(config: Config) -> str:
    prefix: str = config.online_store.key_prefix  # type: ignore[union-attr]
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", prefix)
    return f"{escaped}:*"


def _dump_redis(config: Config, work: Path) -> Path:
    client = _redis(config)
    keys: list[bytes] = []
    payloads: list[bytes | None] = []
    ttls: list[int] = []
    try:
        found = sorted(client.scan_iter(match=_redis_pattern(config), count=1000))
        for i in range(0, len(found), _REDIS_BATCH):
            batch = found[i : i + _REDIS_BATCH]
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.dump(key)
                pipe.pttl(key)
            replies = pipe.execute()
            for j, key in enumerate(batch):
                payload, ttl = replies[2 * j], replies[2 * j + 1]
                if payload is None:  # expired or deleted meanwhile
                    continue
                keys.append(key)
                payloads.append(payload)
                ttls.append(int(ttl))
    except Exception as exc:  # redis' errors: the backup cannot be complete
        raise StorageError(
            f"backup of the Redis online store at {_redis_where(config)}: {exc}"
        ) from exc
    finally:
        client.close()
    out = work / REDIS_DUMP
    table = pa.table({"key": pa.array(keys, pa.binary()), "payload": pa.array(payloads, pa.binary()),
                      "pttl_ms": pa.array(ttls, pa.int64())})  # fmt: skip
    pq.write_table(table, out)
    return out


def _redis_where(config: Config) -> str:
    url = config.online_store.url  # type: ignore[union-attr]
    prefix = config.online_store.key_prefix  # type: ignore[union-attr]
    return f"{make_url(url).render_as_string(hide_password=True)} (keys {prefix}:*)"


def _redis_keys(config: Config) -> int:
    import redis

    client = _redis(config)
    try:
        return sum(1 for _ in client.scan_iter(match=_redis_pattern(config), count=1000))
    except redis.RedisError as exc:
        raise StorageError(f"Redis {_redis_where(config)}: cannot list its keys: {exc}") from exc
    finally:
        client.close()


def _restore_redis(config: Config, data: bytes) -> Callable[[], None]:
    import redis

    table = pq.read_table(pa.BufferReader(data))
    keys = table["key"].to_pylist()
    payloads = table["payload"].to_pylist()
    ttls = table["pttl_ms"].to_pylist()
    client = _redis(config)
    written: list[bytes] = []

    def undo() -> None:
        cleanup = _redis(config)
        try:
            for i in range(0, len(written), _REDIS_BATCH):
                cleanup.delete(*written[i : i + _REDIS_BATCH])
        finally:
            cleanup.close()

    try:
        for i in range(0, len(keys), _REDIS_BATCH):
            pipe = client.pipeline(transaction=False)
            batch = range(i, min(i + _REDIS_BATCH, len(keys)))
            for j in batch:
                pipe.restore(keys[j], max(int(ttls[j]), 0), payloads[j])
            replies = pipe.execute(raise_on_error=False)
            failed = [
                (j, r) for j, r in zip(batch, replies, strict=True) if isinstance(r, Exception)
            ]
            written.extend(keys[j] for j, r in zip(batch, replies, strict=True)
                           if not isinstance(r, Exception))  # fmt: skip
            if failed:
                j, reply = failed[0]
                raise StorageError(
                    f"restore of the Redis online store at {_redis_where(config)}: key "
                    f"{keys[j]!r}: {reply} (a Redis older than the one backed up refuses "
                    "its DUMP payloads)"
                )
    except BaseException as exc:
        undo()
        if isinstance(exc, redis.RedisError):
            raise StorageError(
                f"restore of the Redis online store at {_redis_where(config)}: {exc}"
            ) from exc
        raise
    finally:
        client.close()
    return undo


# -- S3 artifacts -----------------------------------------------------------------------


def _artifact_blobs(config: Config, root: Path) -> Any:
    from prodml.storage._backends import blob_store_class

    return blob_store_class(config.artifacts.type).from_config(config.artifacts, root)


def _artifacts_where(config: Config) -> str:
    section = config.artifacts
    return f"s3://{section.bucket}/{section.prefix}"  # type: ignore[union-attr]


def _dump_artifacts(
    config: Config, root: Path, work: Path, store: StoreFile, has_blob: HasBlob
) -> list[ExternalEntry]:
    blobs = _artifact_blobs(config, root)
    entries = []
    try:
        for key in sorted(blobs.list("")):
            named = _DIGEST_KEY.match(key)
            if named is not None:  # content-addressed: its bytes are known by their name
                sha = named.group(1) + named.group(2)
                size = has_blob(sha)
                if size is not None:
                    entries.append(ExternalEntry(ARTIFACTS, key, sha, size))
                    continue
            data = blobs.load_bytes(key)
            sha = fingerprint_bytes(data)
            part = work / f"artifact-{len(entries)}"
            part.write_bytes(data)
            store(part, sha)
            entries.append(ExternalEntry(ARTIFACTS, key, sha, len(data)))
    except OSError as exc:
        raise StorageError(f"backup of the artifacts at {_artifacts_where(config)}: {exc}") from exc
    return entries


# -- S3 logs and training-set snapshots: objects written once ---------------------------


def _log_blobs(config: Config, root: Path) -> S3BlobStore:
    from prodml.storage._log_s3 import S3LogStore

    return S3LogStore.from_config(config.logs, root, "predictions").blobs


def _dataset_blobs(config: Config) -> S3BlobStore | None:
    path = config.features.datasets_path
    if not path.startswith("s3://"):
        return None
    return S3BlobStore.from_url(path, what="[features] datasets_path")


def _written_once(config: Config, root: Path, kind: str) -> tuple[S3BlobStore, str]:
    """The bucket prefix of the logs or the datasets, and the part of it they use."""
    if kind == LOGS:
        return _log_blobs(config, root), "logs"
    found = _dataset_blobs(config)
    assert found is not None
    return found, ""


def _objects(blobs: S3BlobStore, sub: str) -> dict[str, int]:
    """Every object under ``sub`` of the store's prefix, with its size."""
    head = f"{blobs.bucket}/{blobs.prefix}"
    start = f"{head}{sub}".rstrip("/")
    selector = pafs.FileSelector(start, recursive=True, allow_not_found=True)
    try:
        infos = blobs.fs.get_file_info(selector)
    except OSError as exc:
        raise StorageError(f"listing {blobs.url(sub)}: {exc}") from exc
    return {i.path[len(head) :]: int(i.size) for i in infos if i.type == pafs.FileType.File}


def _dump_objects(
    kind: str,
    blobs: S3BlobStore,
    sub: str,
    work: Path,
    store: StoreFile,
    previous: dict[str, tuple[str, int]],
) -> list[ExternalEntry]:
    """Every object under ``sub``; one the last snapshot holds with the same size is not
    read again (these objects are written once under a new name, never rewritten)."""
    entries = []
    for key, size in sorted(_objects(blobs, sub).items()):
        known = previous.get(key)
        if known is not None and known[1] == size:
            entries.append(ExternalEntry(kind, key, known[0], size))
            continue
        data = blobs._load_bytes(key)  # log keys hold '=', which checked keys refuse
        sha = fingerprint_bytes(data)
        part = work / f"{kind}-{len(entries)}"
        part.write_bytes(data)
        store(part, sha)
        entries.append(ExternalEntry(kind, key, sha, len(data)))
    return entries


def _restore_objects(
    blobs: S3BlobStore, entries: Sequence[ExternalEntry], read: ReadBlob
) -> Callable[[], None]:
    """Write each entry's bytes under its key; returns the undo (a failure undoes what
    was written before raising)."""
    written: list[str] = []

    def undo() -> None:
        for key in written:
            blobs._delete(key)

    try:
        for entry in entries:
            blobs._save_bytes(entry.key, read(entry.sha256))
            written.append(entry.key)
    except BaseException:
        undo()
        raise
    return undo


# -- the snapshot's side ----------------------------------------------------------------


def dump_external(
    config: Config,
    root: Path,
    work: Path,
    store: StoreFile,
    has_blob: HasBlob,
    previous: Callable[[], Sequence[ExternalEntry]] = tuple,
) -> list[ExternalEntry]:
    """Snapshot every store of ``config`` kept outside the project directory (metadata
    first, then the online store, the artifacts and the logs) into the blob store;
    ``previous``: the last snapshot's entries, asked for only when the logs or training
    sets are in S3 (objects it holds are not read again)."""
    entries: list[ExternalEntry] = []

    def keep(store_name: str, key: str, path: Path) -> None:
        sha, size = fingerprint_file(path), path.stat().st_size
        store(path, sha)
        entries.append(ExternalEntry(store_name, key, sha, size))

    if config.metadata.type == "postgresql":
        keep(METADATA, PG_DUMP, _dump_postgres(config, work))
    if config.online_store.type == "redis":
        keep(ONLINE, REDIS_DUMP, _dump_redis(config, work))
    if config.artifacts.type == "s3":
        entries.extend(_dump_artifacts(config, root, work, store, has_blob))
    last: Sequence[ExternalEntry] | None = None
    for kind, present in ((LOGS, config.logs.type == "s3"),
                          (DATASETS, _dataset_blobs(config) is not None)):  # fmt: skip
        if present:
            last = previous() if last is None else last
            known = {e.key: (e.sha256, e.size) for e in last
                     if e.store == kind and has_blob(e.sha256) == e.size}  # fmt: skip
            blobs, sub = _written_once(config, root, kind)
            entries.extend(_dump_objects(kind, blobs, sub, work, store, known))
    return entries


def external_revision(config: Config, root: Path) -> str | None:
    """The schema revision of a PostgreSQL metadata DB (None when it has none)."""
    from prodml.storage import open_metadata_db

    db = open_metadata_db(config.metadata, root, upgrade=False)
    try:
        return db.current_revision()
    finally:
        db.close()


class ExternalTargets:
    """Where a snapshot's external entries go: the stores of the restored project's
    ``config`` (its ``prodml.toml`` with the environment's overrides)."""

    def __init__(self, config: Config, root: Path, entries: Sequence[ExternalEntry]):
        self.config = config
        self.root = root
        self.entries = tuple(entries)
        self.stores = {e.store for e in self.entries}
        self._undo: list[Callable[[], None]] = []

    def check(self) -> None:
        """Refuse a configuration that cannot take the snapshot's entries, or a target
        that is not empty — before anything is written."""
        wanted = {METADATA: ("metadata", "postgresql"), ONLINE: ("online_store", "redis"),
                  ARTIFACTS: ("artifacts", "s3"), LOGS: ("logs", "s3")}  # fmt: skip
        if DATASETS in self.stores and _dataset_blobs(self.config) is None:
            raise ConfigError(
                f"[features] datasets_path = {self.config.features.datasets_path!r}: the "
                "snapshot holds training sets kept in S3; restore them with datasets_path = "
                "'s3://…' (prodml.toml or PRODML__FEATURES__DATASETS_PATH)"
            )
        for store in sorted(self.stores - {DATASETS}):
            section, kind = wanted[store]
            found = getattr(self.config, section).type
            if found != kind:
                raise ConfigError(
                    f"[{section}] type = {found!r}: the snapshot holds a {kind} {store} store; "
                    f"restore it with [{section}] type = {kind!r} (prodml.toml or PRODML__ "
                    "environment overrides)"
                )
        if METADATA in self.stores:
            refuse_non_empty_schema(self.config)
        if ONLINE in self.stores and (count := _redis_keys(self.config)):
            raise ConflictError(
                f"restore target: Redis {_redis_where(self.config)} holds {count} keys: "
                "restore under an empty key prefix ([online_store] key_prefix)"
            )
        if ARTIFACTS in self.stores:
            blobs = _artifact_blobs(self.config, self.root)
            if existing := blobs.list(""):
                raise ConflictError(
                    f"restore target: {_artifacts_where(self.config)} holds {len(existing)} "
                    "objects: restore into an empty bucket prefix ([artifacts] prefix)"
                )
        for kind, setting in ((LOGS, "[logs] prefix"), (DATASETS, "[features] datasets_path")):
            if kind in self.stores:
                blobs, sub = _written_once(self.config, self.root, kind)
                if objects := _objects(blobs, sub):
                    raise ConflictError(
                        f"restore target: {blobs.url(sub)} holds {len(objects)} objects: "
                        f"restore into an empty bucket prefix ({setting})"
                    )

    def load(self, read: ReadBlob, work: Path) -> None:
        """Write every entry to its store (artifacts, logs, online store, metadata DB);
        a failure undoes what was written."""
        try:
            artifacts = [e for e in self.entries if e.store == ARTIFACTS]
            if artifacts:
                blobs = _artifact_blobs(self.config, self.root)
                self._undo.append(_restore_objects(blobs, artifacts, read))
            for kind in (LOGS, DATASETS):
                written = [e for e in self.entries if e.store == kind]
                if written:
                    blobs, _ = _written_once(self.config, self.root, kind)
                    self._undo.append(_restore_objects(blobs, written, read))
            for entry in self.entries:
                if entry.store == ONLINE:
                    self._undo.append(_restore_redis(self.config, read(entry.sha256)))
            for entry in self.entries:
                if entry.store == METADATA:
                    dump = work / PG_DUMP
                    dump.write_bytes(read(entry.sha256))
                    try:
                        self._undo.append(_restore_postgres(self.config, dump, work))
                    finally:
                        dump.unlink(missing_ok=True)
        except BaseException:
            self.undo()
            raise

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()
