"""A backup taken while ``prodml serve`` answers a steady stream of predictions (its
prediction log growing) and a writer records runs and model versions (as a controller
does): every snapshot restores into a project that passes ``prodml verify``, holds the
logged predictions of the snapshot's time, and serves."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from prodml import Project
from prodml.ops import backup_project, restore_snapshot
from prodml.project import serving_app
from prodml.project._verify import verify_project
from servingkit import lr_model, register, row, running_server, serving_project, v2_body

pytestmark = pytest.mark.slow
DEADLINE_S = 120.0


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    config = "[serving]\nlog_flush_interval_s = 0.2\nwatch_interval_s = 0.5\n"
    project, _ = serving_project(tmp_path / "project", config=config)
    yield project
    project.close()


class Load(threading.Thread):
    """Predictions against the server until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.answered = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=30.0) as client:
                while not self.stop.is_set():
                    answer = client.post(
                        f"{self.url}/v2/models/lr/infer", json=v2_body(row(self.answered))
                    )
                    answer.raise_for_status()
                    self.answered += 1
        except BaseException as exc:
            self.error = exc


class Writer(threading.Thread):
    """Runs and, every third one, a new model version, until stopped."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.versions = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Project.open(self.root) as project:
                runs = 0
                while not self.stop.is_set():
                    with project.registry.start_run("lr", environment=False) as run:
                        run.log_metric("step", runs)
                    runs += 1
                    if runs % 3 == 0:
                        model, rows = lr_model(C=1.0 + runs / 100)
                        register(project, model, rows)
                        self.versions += 1
        except BaseException as exc:
            self.error = exc


def logged(root: Path) -> int:
    with Project.open(root) as project:
        return project.logs.predictions.read(endpoint="lr", columns=["time"]).num_rows


def test_snapshots_taken_under_load_restore_verified_and_serve(
    project: Project, tmp_path: Path
) -> None:
    dest = tmp_path / "backups"
    with running_server(project.root) as server:
        load, writer = Load(server.url), Writer(project.root)
        load.start()
        writer.start()
        try:
            snapshots = []
            deadline = time.monotonic() + DEADLINE_S
            while len(snapshots) < 3:
                if load.answered > 20 * (len(snapshots) + 1) and writer.versions > len(snapshots):
                    snapshots.append(backup_project(project.root, dest, record=False).path)
                assert time.monotonic() < deadline, "no load or writes"
                assert load.error is None
                assert writer.error is None
        finally:
            load.stop.set()
            writer.stop.set()
            load.join(DEADLINE_S)
            writer.join(DEADLINE_S)
    assert load.error is None, load.error
    assert writer.error is None, writer.error
    counts = []
    for i, snapshot in enumerate(snapshots):
        target = tmp_path / f"restored-{i}"
        restore_snapshot(snapshot, target)
        report = verify_project(target)
        assert report.worst() is None, report.to_dict()
        counts.append(logged(target))
        with Project.open(target) as restored, TestClient(serving_app(restored)) as client:
            answer = client.post("/v2/models/lr/infer", json=v2_body(row(0)))
            assert answer.status_code == 200, answer.text
    assert counts == sorted(counts)  # later snapshots hold at least the earlier ones' logs
    assert counts[-1] > 0
