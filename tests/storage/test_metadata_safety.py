"""The metadata DB is never silently re-created, and corruption is caught: a deleted,
truncated or page-corrupted ``meta.db`` is refused by every command, by ``prodml
verify``, by ``prodml serve`` and by ``/readyz``, each time naming the file and how to
restore it; a project with no state at all still opens (and gets a new empty DB)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from prodml import Project
from prodml.cli import app
from prodml.core import IntegrityError, StorageError
from prodml.project import serving_app
from prodml.storage import MetadataDB, digest_key
from servingkit import TESTS_DIR, free_port, lr_model, register, serving_project
from trainkit import cli_json

runner = CliRunner()


cli = cli_json


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A served project whose metadata DB spans many pages: versions, approvals, an
    alias and a deployment."""
    root = tmp_path_factory.mktemp("safety") / "p"
    project, _ = serving_project(root)
    try:
        for seed in range(1, 6):
            model, X = lr_model(C=0.5 + seed, seed=seed)
            register(project, model, X)
        project.registry.set_alias("lr", "champion", 2, actor="test", reason="test")
    finally:
        project.close()
    return root


@pytest.fixture
def root(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "p"
    shutil.copytree(template, copy)
    return copy


def meta_db(root: Path) -> Path:
    return root / ".prodml" / "meta.db"


def delete_db(root: Path) -> None:
    meta_db(root).unlink()


def truncate_db(root: Path) -> None:
    meta_db(root).write_bytes(b"")


def corrupt_page(root: Path) -> None:
    """Write garbage over a page in the middle of the file: one of the registry's
    ``model_versions`` leaves (which ordinary reads through its index never touch)."""
    path = meta_db(root)
    with sqlite3.connect(path) as con:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        page_count = con.execute("PRAGMA page_count").fetchone()[0]
        leaves = [
            r[0]
            for r in con.execute(
                "SELECT pageno FROM dbstat WHERE name = 'model_versions' AND pagetype = 'leaf' "
                "ORDER BY pageno"
            )
        ]
    con.close()
    assert page_count >= 8, page_count
    assert len(leaves) >= 3, leaves
    page = leaves[len(leaves) // 2]
    assert 1 < page < page_count
    with path.open("r+b") as handle:
        handle.seek((page - 1) * page_size)
        handle.write(b"\xa5" * page_size)
    assert integrity(path) != "ok"


def integrity(path: Path) -> str:
    """What ``PRAGMA integrity_check`` says, read with the plain ``sqlite3`` module."""
    con = sqlite3.connect(path)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        con.close()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "deleted": delete_db,
    "truncated": truncate_db,
    "corrupt-page": corrupt_page,
}


def assert_names_file_and_restore(message: str, root: Path) -> None:
    flat = " ".join(message.split())
    assert str(meta_db(root)) in flat, message
    assert "backup" in flat, message


# -- missing or empty: every command refuses, nothing is re-created -----------------------
@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_models_audit_refuses_a_missing_or_empty_db(root: Path, damage: str) -> None:
    code, out = cli("models", "audit", "-p", str(root))
    assert code == 0, out
    assert out["audit"], out  # the intact project has an audit trail

    DAMAGE[damage](root)
    code, out = cli("models", "audit", "-p", str(root))
    assert code == 12, out
    assert out["type"] == "StorageError"
    assert_names_file_and_restore(out["error"], root)
    assert "prodml init" in out["error"]
    if damage == "deleted":
        assert not meta_db(root).exists()  # not re-created
    else:
        assert meta_db(root).stat().st_size == 0


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_project_open_refuses_a_missing_or_empty_db(root: Path, damage: str) -> None:
    DAMAGE[damage](root)
    with pytest.raises(StorageError, match="backup") as info:
        Project.open(root)
    assert str(meta_db(root)) in str(info.value)
    assert "artifacts" in str(info.value)  # says which state shows the DB should exist


def test_a_db_with_no_prodml_tables_is_refused_when_the_project_has_state(root: Path) -> None:
    meta_db(root).unlink()
    with sqlite3.connect(meta_db(root)) as con:
        con.execute("CREATE TABLE unrelated (x INTEGER)")
    con.close()
    with pytest.raises(StorageError, match="no prodml tables"):
        Project.open(root)


def test_a_garbage_header_is_reported_as_corrupt(root: Path) -> None:
    with meta_db(root).open("r+b") as handle:
        handle.write(b"\x00garbage" * 16)
    code, out = cli("models", "list", "-p", str(root))
    assert code == 11, out
    assert_names_file_and_restore(out["error"], root)


# -- prodml verify --------------------------------------------------------------------------
def test_verify_passes_on_an_intact_project(root: Path) -> None:
    code, out = cli("verify", "-p", str(root))
    assert code == 0, out
    assert out["ok"] is True
    assert out["problems"] == []
    assert out["artifacts_checked"] >= 6


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("mode", ["--full", "--quick"])
def test_verify_reports_a_damaged_db(root: Path, damage: str, mode: str) -> None:
    DAMAGE[damage](root)
    code, out = cli("verify", mode, "-p", str(root))
    assert code == (11 if damage == "corrupt-page" else 12), out
    assert out["ok"] is False
    problem = out["problems"][0]
    assert problem["object"] == str(meta_db(root))
    assert_names_file_and_restore(problem["message"], root)
    if damage == "deleted":
        assert not meta_db(root).exists()


def test_verify_human_output_names_the_file(root: Path) -> None:
    corrupt_page(root)
    result = runner.invoke(app, ["verify", "-p", str(root)])
    assert result.exit_code == 11
    assert_names_file_and_restore(result.stdout + result.stderr, root)


def test_verify_checks_every_referenced_artifact(root: Path) -> None:
    with Project.open(root) as project:
        digests = {v.ref: v.artifact_digest for v in project.registry.versions("lr")}
    blob = root / ".prodml" / "artifacts" / digest_key(digests["lr:3"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    (root / ".prodml" / "artifacts" / digest_key(digests["lr:4"])).unlink()

    code, out = cli("verify", "-p", str(root))
    assert code == 11, out
    found = {p["object"]: p for p in out["problems"]}
    assert set(found) == {f"artifact {digests['lr:3']}", f"artifact {digests['lr:4']}"}, found
    assert "lr:3" in found[f"artifact {digests['lr:3']}"]["message"]
    assert "corrupt" in found[f"artifact {digests['lr:3']}"]["message"]
    assert "missing" in found[f"artifact {digests['lr:4']}"]["message"]
    assert all("backup" in p["message"] for p in out["problems"])


def test_verify_reads_every_log_file_and_moves_none(root: Path) -> None:
    hour = root / ".prodml" / "logs" / "predictions" / "endpoint=lr" / "date=2013-01-01" / "hour=05"
    hour.mkdir(parents=True)
    bad = hour / "20130101T050000Z-0.parquet"
    bad.write_bytes(b"not parquet, and long enough to be one")
    truncated = hour / "20130101T051000Z-0.parquet"
    with (
        Project.open(root) as project,
        project.logs.predictions.open_writer(clock=project.clock) as writer,
    ):
        writer.append({"time": datetime(2013, 1, 1, 5, 30, tzinfo=UTC), "endpoint": "lr"})
    (whole,) = [p for p in hour.glob("*.parquet") if p not in (bad,)]
    truncated.write_bytes(whole.read_bytes()[:-5])
    code, out = cli("verify", "-p", str(root))
    assert code != 0, out
    found = {Path(p["object"]).name: p["message"] for p in out["problems"]}
    assert set(found) == {bad.name, truncated.name}, out["problems"]
    assert "magic bytes" in found[bad.name]
    assert "backup" in found[truncated.name]
    assert bad.read_bytes() == b"not parquet, and long enough to be one"  # verify moves nothing
    code, out = cli("verify", "--quick", "-p", str(root))
    assert code == 0, out  # the logs are read by the full check only


# -- serving: refuse to start, /readyz says not ok -----------------------------------------
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_prodml_serve_refuses_to_start(root: Path, damage: str) -> None:
    DAMAGE[damage](root)
    command = [
        sys.executable, "-m", "prodml.cli", "serve", "-p", str(root),
        "--port", str(free_port()), "--log-level", "warning",
    ]  # fmt: skip
    env = {"PYTHONPATH": str(TESTS_DIR)}
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == (11 if damage == "corrupt-page" else 12), output
    assert_names_file_and_restore(output.decode(errors="replace"), root)


def test_serving_app_refuses_a_corrupt_db(root: Path) -> None:
    corrupt_page(root)
    with Project.open(root) as project, pytest.raises(IntegrityError, match="quick_check") as info:
        serving_app(project)
    assert_names_file_and_restore(str(info.value), root)


@pytest.fixture
def served(root: Path) -> Iterator[tuple[Project, TestClient]]:
    project = Project.open(root)
    try:
        with TestClient(serving_app(project)) as client:
            yield project, client
    finally:
        project.close()


def test_readyz_reports_a_corrupt_db(root: Path, served: tuple[Project, TestClient]) -> None:
    project, client = served
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["stores"]["metadata"] == "ok"

    corrupt_page(root)
    project.db.engine.dispose()  # new connections read the damaged file
    deadline = time.monotonic() + 60
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        body = response.json()
        if body["stores"]["metadata"] != "ok":
            break
        time.sleep(0.2)
    assert response.status_code == 503, body
    assert body["ready"] is False
    assert_names_file_and_restore(body["stores"]["metadata"], root)


def test_monitor_watch_refuses_a_corrupt_db(root: Path) -> None:
    corrupt_page(root)
    code, out = cli("monitor", "watch", "--passes", "1", "--interval", "0.01", "-p", str(root))
    assert code == 11, out
    assert_names_file_and_restore(out["error"], root)


# -- projects with no state still open --------------------------------------------------
def test_a_hand_written_project_with_no_state_opens(tmp_path: Path) -> None:
    (tmp_path / "prodml.toml").write_text('[project]\nname = "hand"\n', encoding="utf-8")
    with Project.open(tmp_path) as project:
        assert project.registry.models() == []
    assert meta_db(tmp_path).stat().st_size > 0
    code, out = cli("models", "audit", "-p", str(tmp_path))
    assert code == 0, out
    assert out == {"audit": []}


def test_a_project_with_only_an_empty_db_file_opens(tmp_path: Path) -> None:
    (tmp_path / "prodml.toml").write_text('[project]\nname = "hand"\n', encoding="utf-8")
    meta_db(tmp_path).parent.mkdir()
    meta_db(tmp_path).write_bytes(b"")
    (tmp_path / ".prodml" / "artifacts").mkdir()  # an empty directory is not state
    with Project.open(tmp_path) as project:
        assert project.db.current_revision() is not None
    code, out = cli("verify", "-p", str(tmp_path))
    assert code == 0, out


def test_the_integrity_check_of_an_intact_db(root: Path) -> None:
    with Project.open(root) as project:
        assert project.db.check() == []
        assert project.db.check(full=True) == []
    with MetadataDB.open("sqlite://") as db:
        assert db.check(full=True) == []


# -- PostgreSQL: the same rule for an empty schema --------------------------------------
def _pg_project(root: Path, url: str, schema: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "prodml.toml").write_text(
        f'[project]\nname = "pg"\n\n[metadata]\ntype = "postgresql"\nurl = "{url}"\n'
        f'schema_name = "{schema}"\n',
        encoding="utf-8",
    )


@pytest.mark.integration
def test_postgres_empty_schema_is_refused_when_the_project_has_state(
    tmp_path: Path, pg_url: str, pg_schema_factory: Callable[..., str]
) -> None:
    schema = pg_schema_factory()
    _pg_project(tmp_path, pg_url, schema)
    state = tmp_path / ".prodml" / "logs" / "predictions"
    state.mkdir(parents=True)
    (state / "part-0.parquet").write_bytes(b"PAR1")
    with pytest.raises(StorageError, match="backup") as info:
        Project.open(tmp_path)
    assert schema in str(info.value)
    assert "no prodml tables" in str(info.value)
    assert "logs" in str(info.value)


@pytest.mark.integration
def test_postgres_project_with_no_state_gets_its_schema(
    tmp_path: Path, pg_url: str, pg_schema_factory: Callable[..., str]
) -> None:
    schema = pg_schema_factory()
    _pg_project(tmp_path, pg_url, schema)
    with Project.open(tmp_path) as project:
        assert project.db.check(full=True) == []
        assert project.registry.models() == []
