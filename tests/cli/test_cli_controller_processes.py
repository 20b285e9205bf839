"""Two ``prodml controller watch`` processes on one project: exactly one acts; the
active one, killed with SIGKILL mid-training, leaves its job ``running`` and no
version; once its lease expires the other marks that job ``abandoned``, runs its own
to the end (one new version, whose artifact loads) and, on SIGTERM, exits cleanly and
releases the lease."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
from tests.retraining.test_retraining_controller import POLICY, root

from prodml import Project
from trainkit import TRAIN_PY, cli_json

__all__ = ["root"]  # the fixture: a project with champion flight_delay:1 and policy "perf"

pytestmark = pytest.mark.slow

DEADLINE_S = 120.0  # the longest any wait may take, however busy the machine
#: Long enough that no step before the training function outlasts it on a loaded
#: machine (the controller renews its lease only between steps), short enough to wait.
LEASE_S = 10
T = TypeVar("T")

#: train.py's training function, blocked mid-job: it says which process reached it
#: (``started-<pid>`` in the gate directory) and waits for the test's ``release``.
BLOCK = """
    gate = Path({gate!r})
    (gate / f"started-{{os.getpid()}}").touch()
    deadline = time.monotonic() + 300
    while not (gate / "release").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("train.py: the test never created " + str(gate / "release"))
        time.sleep(0.05)
"""


def _replaced(text: str, old: str, new: str) -> str:
    assert old in text, f"expected {old!r} in the text to change"
    return text.replace(old, new)


def _configure(root: Path, gate: Path) -> None:
    """The ``perf`` policy fires at once (a schedule due since the champion), may start
    two jobs a day (the killed one and the survivor's), with a short lease; train.py
    blocks at the gate."""
    config = (root / "prodml.toml").read_text()
    for old, new in (
        ("lease_s = 60", f"lease_s = {LEASE_S}"),
        ('cooldown = "3d"', 'max_jobs = 2\nper = "1d"'),
        (POLICY[POLICY.index('kind = "performance"') :].strip(), 'kind = "schedule"\nevery = "1s"'),
    ):
        config = _replaced(config, old, new)
    (root / "prodml.toml").write_text(config)
    train = _replaced(TRAIN_PY, "import pyarrow", "import os\nimport time\n\nimport pyarrow")
    train = _replaced(train, "    model = make_pipeline(", BLOCK.format(gate=str(gate)) + "    model = make_pipeline(")  # fmt: skip
    (root / "train.py").write_text(train)


class Watcher:
    """``prodml controller watch --json`` in a child process, its output in files."""

    def __init__(self, root: Path, name: str, stack: ExitStack) -> None:
        self.name = name
        self.out_path = root.parent / f"{name}.out"
        self.err_path = root.parent / f"{name}.err"
        out: IO[bytes] = stack.enter_context(self.out_path.open("wb"))
        err: IO[bytes] = stack.enter_context(self.err_path.open("wb"))
        command = [sys.executable, "-m", "prodml.cli", "controller", "watch",
                   "--interval", "0.2", "--json", "-p", str(root)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=out, stderr=err, env=dict(os.environ))
        self.pid = self.process.pid

    def events(self) -> list[dict[str, Any]]:
        """The JSON event lines written so far (a line still being written is left out)."""
        text = self.out_path.read_text()
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def output(self) -> str:
        return (
            f"--- {self.name} (pid {self.pid}, exit {self.process.poll()}) stdout:\n"
            f"{self.out_path.read_text()}\n--- stderr:\n{self.err_path.read_text()[-4000:]}"
        )


def _wait_for(what: str, check: Callable[[], T | None], watchers: list[Watcher]) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``DEADLINE_S``, or
    at once when a watcher that should run has exited."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = check()
        if found:
            return found
        ended = [w for w in watchers if w.process.poll() is not None]
        if ended or time.monotonic() > deadline:
            why = "a controller exited" if ended else f"no result after {DEADLINE_S} s"
            raise AssertionError(
                f"waiting for {what}: {why}\n" + "\n".join(w.output() for w in watchers)
            )
        time.sleep(0.05)


def _markers(gate: Path) -> list[str]:
    return sorted(p.name for p in gate.glob("started-*"))


def _versions(root: Path) -> list[str]:
    code, shown = cli_json("models", "show", "flight_delay", "-p", str(root))
    assert code == 0, shown
    return [f"flight_delay:{v['version']}" for v in shown["versions"]]


def _jobs(root: Path) -> list[dict[str, Any]]:
    code, listed = cli_json("controller", "history", "-p", str(root))
    assert code == 0, listed
    jobs: list[dict[str, Any]] = listed["jobs"]
    return jobs


@pytest.fixture
def watchers(root: Path) -> Iterator[tuple[ExitStack, list[Watcher]]]:
    """Where the test's watchers go; any still running at the end are killed."""
    started: list[Watcher] = []
    with ExitStack() as stack:
        try:
            yield stack, started
        finally:
            for watcher in started:
                if watcher.process.poll() is None:
                    watcher.process.kill()
                watcher.process.wait(30)


def test_one_of_two_controllers_acts_and_the_other_takes_over_a_killed_job(
    root: Path, watchers: tuple[ExitStack, list[Watcher]]
) -> None:
    gate = root.parent / "gate"
    gate.mkdir()
    _configure(root, gate)
    before = _versions(root)
    assert before == ["flight_delay:1"]
    stack, started = watchers
    started.extend(Watcher(root, name, stack) for name in ("a", "b"))

    # Exactly one acts: one process reached the training function, and holds the lease.
    (marker,) = _wait_for("a job to reach training", lambda: _markers(gate), started)
    active = next(w for w in started if marker == f"started-{w.pid}")
    (survivor,) = (w for w in started if w is not active)
    code, status = cli_json("controller", "status", "-p", str(root))
    assert code == 0, status
    assert f":{active.pid}:" in status["lease"]["holder"], status["lease"]

    active.process.send_signal(signal.SIGKILL)
    assert active.process.wait(30) == -signal.SIGKILL
    assert _markers(gate) == [marker]
    assert active.events() == []  # it never finished a job
    (job,) = _jobs(root)
    assert job["status"] == "running"
    assert (job["steps"][-1]["name"], job["steps"][-1]["status"]) == ("train", "running")
    assert _versions(root) == before  # nothing half-registered
    # The survivor's first word: it stands by (the dead controller's lease still lasts).
    standby = _wait_for("the survivor to stand by", lambda: survivor.events(), [survivor])
    assert standby[0]["event"] == "standby", survivor.output()
    assert "another retraining controller holds the project's lease" in standby[0]["message"]

    # The lease expires; the survivor abandons the dead job and runs its own.
    (gate / "release").touch()

    def survivor_job() -> dict[str, Any] | None:
        return next((e for e in survivor.events() if e["event"] == "job"), None)

    ran = _wait_for("the survivor's job", survivor_job, [survivor])
    assert ran["status"] in ("succeeded", "rejected"), survivor.output()
    assert ran["candidate"] == "flight_delay:2"
    assert _markers(gate) == sorted([marker, f"started-{survivor.pid}"])
    newest, abandoned = _jobs(root)
    assert (newest["id"], newest["status"]) == (ran["id"], ran["status"])
    assert (abandoned["id"], abandoned["status"]) == (job["id"], "abandoned")
    assert "stopped (its lease expired) mid-job" in abandoned["error"]
    assert abandoned["steps"][-1]["status"] == "abandoned"

    # SIGTERM: the survivor ends its loop cleanly and gives the lease up.
    survivor.process.send_signal(signal.SIGTERM)
    assert survivor.process.wait(DEADLINE_S) == 0, survivor.output()
    assert [e["event"] for e in survivor.events()] == ["standby", "job", "acting"]
    code, status = cli_json("controller", "status", "-p", str(root))
    assert code == 0, status
    assert status["lease"] is None

    # One new version in all, each with its run and a loadable artifact; the killed
    # job's run registered nothing.
    assert _versions(root) == [*before, "flight_delay:2"]
    with Project.open(root) as project:
        for ref in _versions(root):
            loaded = project.registry.load(ref)
            assert loaded.version.run_id is not None
            assert project.registry.get_run(loaded.version.run_id).status == "finished"
        runs = project.registry.search_runs("flight_delay")
        by_job = {r.tags.get("retrain_job"): r.id for r in runs}
        assert project.registry.get("flight_delay:2").run_id == by_job[ran["id"]]
        # The killed job's run stays open (its tags were never flushed), with no version.
        (dead,) = (r for r in runs if r.status == "running")
        versions = project.registry.versions("flight_delay")
        assert dead.id not in {v.run_id for v in versions}
