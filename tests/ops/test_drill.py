"""``prodml dr drill`` on a copy of the built flights demo: the restored project serves
the logged requests of its serving versions bit for bit, the drill is recorded (and
``prodml verify`` and the dashboard say so), and a logged output that no longer matches
what the model computes fails the drill, naming the request."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prodml.cli._app import app
from prodml.core import load_config
from prodml.ops import OpsEvents, run_drill
from prodml.project._verify import verify_project
from prodml.storage import open_log_stores, open_metadata_db

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture
def project(demo: tuple[Path, dict[str, Any]], tmp_path: Path) -> Path:
    root = tmp_path / "flights"
    shutil.copytree(demo[0], root)
    return root


def _events(root: Path) -> OpsEvents:
    return OpsEvents(open_metadata_db(load_config(root).metadata, root))


def test_a_drill_replays_logged_requests_bit_for_bit_and_is_recorded(
    project: Path, tmp_path: Path
) -> None:
    result = run_drill(project, tmp_path / "backups", sample=600)
    assert result.problem is None
    assert result.passed
    assert result.replayed == 600
    assert result.mismatches == 0
    assert result.rto_s > 0
    assert result.rpo_s >= 0
    drill = _events(project).last("drill", status="passed")
    assert drill is not None
    assert drill.snapshot == result.snapshot
    assert drill.detail["replayed"] == 600
    notes = " ".join(verify_project(project).notes)
    assert "last good drill" in notes
    assert result.snapshot in notes


def test_a_drill_fails_when_a_logged_output_differs_from_the_served_one(
    project: Path, tmp_path: Path
) -> None:
    config = load_config(project)
    logs = open_log_stores(project / config.project.state_dir, config.logs.type)
    newest = logs.predictions.files(endpoint="flight_delay")
    assert newest is not None
    assert newest.paths
    path = newest.paths[-1]
    table = pq.read_table(path)
    outputs = table["output"].to_pylist()
    changed = next(i for i, row in enumerate(table.select(["status", "shadow"]).to_pylist())
                   if row["status"] == "ok" and not row["shadow"])  # fmt: skip
    outputs[changed] = outputs[changed] + 1e-12  # one ulp-scale change is a mismatch
    index = table.schema.get_field_index("output")
    pq.write_table(table.set_column(index, "output", pa.array(outputs, pa.float64())), path)
    request_id = table["request_id"][changed].as_py()

    answer = runner.invoke(app, ["dr", "drill", "-p", str(project), "--to",
                                 str(tmp_path / "backups"), "--sample", "200", "--json"])  # fmt: skip
    assert answer.exit_code == 1, answer.output
    found = json.loads(answer.output)
    assert found["passed"] is False
    assert found["mismatches"] == 1
    assert found["examples"][0]["request_id"] == request_id
    last = _events(project).last("drill")
    assert last is not None
    assert last.status == "failed"
