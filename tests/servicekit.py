"""Real services for integration tests: find them, or skip with the reason."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

PG_ENV = "PRODML_TEST_POSTGRES_URL"
PG_CANDIDATES = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
)
REDIS = ("127.0.0.1", 6379)


def libpq(url: str) -> str:
    """The libpq form of a SQLAlchemy psycopg URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def pg_url_or_skip() -> str:
    """The SQLAlchemy URL of the test PostgreSQL; skips the test when it is unreachable."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("PostgreSQL tests need psycopg (pip install 'prodml[postgres]')")
    candidates = [os.environ[PG_ENV]] if os.environ.get(PG_ENV) else list(PG_CANDIDATES)
    errors = []
    for url in candidates:
        try:
            with psycopg.connect(libpq(url), connect_timeout=3):
                return url
        except psycopg.Error as exc:
            errors.append(f"{url}: {str(exc).strip().splitlines()[0] if str(exc) else exc!r}")
    pytest.skip("PostgreSQL not reachable (set " + PG_ENV + " to override): " + "; ".join(errors))


def redis_url_or_skip() -> str:
    """The URL of the test Redis; skips the test when nothing listens at 127.0.0.1:6379."""
    try:
        with socket.create_connection(REDIS, timeout=1):
            return f"redis://{REDIS[0]}:{REDIS[1]}/0"
    except OSError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS[0]}:{REDIS[1]}: {exc}")


def s3_store(endpoint: str) -> Any:
    """An S3 blob store in a new bucket of the test S3 server (``s3_endpoint``), under
    a prefix."""
    import uuid

    from pyarrow import fs as pafs

    from prodml.storage._blob_s3 import S3BlobStore

    bucket = f"prodml-{uuid.uuid4().hex[:12]}"
    admin = pafs.S3FileSystem(endpoint_override=endpoint.split("://")[1], scheme="http",
                              region="us-east-1", allow_bucket_creation=True)  # fmt: skip
    admin.create_dir(bucket)
    return S3BlobStore(bucket, "artifacts/", endpoint_url=endpoint, region="us-east-1")
