"""``prodml serve`` as real processes on loopback: replicas agree on sticky routing,
pick up a deployment change under load without a failed request, and keep the
prediction log readable and complete through ``kill -9`` and a graceful SIGTERM."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pyarrow.parquet as pq
import pytest
from scipy import stats

from prodml import Project
from prodml.registry import Arm, DeploymentSpec
from prodml.storage import read_log
from servingkit import FEATURES, PATIENT_MS, ServerProcess, lr_model, register, row, serving_project

pytestmark = pytest.mark.slow

ALPHA = 0.001
DEADLINE_S = 60.0  # the longest any wait on the servers may take, however busy the machine
ROLES = {"routing": 2, "kill": 1, "term": 1}  # servers per project
WEIGHTS = (0.6, 0.4)  # the A/B endpoint's arms
BODY = {
    "inputs": [
        {"name": name, "shape": [1], "datatype": "FP64", "data": [row(0)[name]]}
        for name in FEATURES
    ]
}


@dataclass
class Cluster:
    """Servers started once for the module, all at once (startup is mostly imports):
    ``routing`` (two replicas of one project with an A/B endpoint ``ab`` and a canary
    endpoint ``canary``), and one server of its own project each for ``kill`` and
    ``term``, which the tests end."""

    projects: dict[str, Project]
    servers: dict[str, list[ServerProcess]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    config = "[serving]\nwatch_interval_s = 0.2\nlog_flush_interval_s = 0.2\n"
    root = tmp_path_factory.mktemp("serving")
    projects = {name: serving_project(root / name, config=config)[0] for name in ROLES}
    routing = projects["routing"]
    model, X = lr_model(C=0.1, seed=1)
    register(routing, model, X)
    arms = (Arm("champion", "lr:1", "champion", WEIGHTS[0]), Arm("b", "lr:2", "arm", WEIGHTS[1]))
    routing.deployments.deploy(
        "ab", DeploymentSpec("ab", arms, timeout_ms=PATIENT_MS), actor="test"
    )
    routing.deployments.deploy(
        "canary",
        DeploymentSpec.canary("lr:1", "lr:2", weight=0.0, timeout_ms=PATIENT_MS),
        actor="test",
    )
    servers = {
        name: [ServerProcess(p.root) for _ in range(ROLES[name])] for name, p in projects.items()
    }
    try:
        for group in servers.values():
            for server in group:
                server.wait_ready()
        yield Cluster(projects, servers)
    finally:
        for group in servers.values():
            for server in group:
                if server.process.poll() is None:
                    server.stop(signal.SIGKILL)
                server._reader.join(timeout=10)  # the output pipe ends with the process
                assert server.process.stdout is not None
                server.process.stdout.close()
        for project in projects.values():
            project.close()


@dataclass(frozen=True)
class Outcome:
    started: float
    finished: float
    status: int | None  # None: no HTTP answer (connection refused or reset)
    version: str | None
    request_id: str | None


class Load:
    """``threads`` clients sending V2 requests to ``endpoint`` (one fresh unit each)
    until stopped."""

    def __init__(self, url: str, endpoint: str = "lr", threads: int = 4) -> None:
        self.url = f"{url}/v2/models/{endpoint}/infer"
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=10.0) as client:
            sent = 0
            while not self._stop.is_set():
                headers = {"X-Prodml-Unit": f"load-{index}-{sent}"}
                sent += 1
                started = time.monotonic()
                try:
                    response = client.post(self.url, json=BODY, headers=headers)
                except httpx.TransportError:
                    outcome = Outcome(started, time.monotonic(), None, None, None)
                    time.sleep(0.01)
                else:
                    ok = response.status_code == 200
                    outcome = Outcome(
                        started,
                        time.monotonic(),
                        response.status_code,
                        response.json()["model_version"] if ok else None,
                        response.headers.get("x-request-id"),
                    )
                with self._lock:
                    self.outcomes.append(outcome)

    def answered(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.status == 200]

    def wait_until(
        self, condition: Callable[[list[Outcome]], bool], what: str, timeout_s: float = DEADLINE_S
    ) -> None:
        """Poll the answers so far until ``condition`` holds; fail after ``timeout_s``
        (far above what a quiet machine needs: the load is not timed)."""
        deadline = time.monotonic() + timeout_s
        while not condition(self.answered()):
            if time.monotonic() > deadline:
                pytest.fail(f"waited {timeout_s} s for {what}; {len(self.outcomes)} outcomes")
            time.sleep(0.05)


def logged_request_ids(project: Project) -> set[str]:
    table = read_log(project.state_dir / "logs" / "predictions", columns=["request_id"])
    return set(table.column("request_id").to_pylist())


def test_replicas_agree_on_sticky_ab_assignment(cluster: Cluster) -> None:
    first, second = cluster.servers["routing"]
    units = [f"account-{i}" for i in range(500)]

    def arm_of(job: tuple[ServerProcess, str]) -> str:
        server, unit = job
        response = client.post(
            server.url + "/v2/models/ab/infer", json=BODY, headers={"X-Prodml-Unit": unit}
        )
        assert response.status_code == 200, response.text
        version: str = response.json()["model_version"]
        return version

    jobs = [(server, unit) for unit in units for server in (first, second)]
    with httpx.Client(timeout=10.0) as client, ThreadPoolExecutor(8) as pool:
        arms = list(pool.map(arm_of, jobs))
    on_first, on_second = arms[0::2], arms[1::2]
    assert on_first == on_second
    counts = Counter(on_first)
    observed = [counts["1"], counts["2"]]
    assert sum(observed) == len(units)
    assert stats.chisquare(observed, [w * len(units) for w in WEIGHTS]).pvalue > ALPHA


def test_deployment_change_under_load_is_followed_without_errors(cluster: Cluster) -> None:
    """The server picks up a weight change while answering, with no failed request, and
    once it answers from the new arm it never answers from the old one again (the
    routing table is swapped in one assignment)."""
    server = cluster.servers["routing"][0]
    deployments = cluster.projects["routing"].deployments
    with Load(server.url, "canary") as load:
        load.wait_until(lambda answers: len(answers) >= 10, "10 answers before the change")
        changing = time.monotonic()
        deployments.set_weights("canary", {"challenger": 1.0}, actor="test")
        changed = time.monotonic()

        def followed(answers: list[Outcome]) -> bool:
            first = min((o.finished for o in answers if o.version == "2"), default=None)
            return first is not None and sum(o.started > first for o in answers) >= 10

        load.wait_until(followed, "10 answers after the first from the new arm")
    outcomes = load.outcomes
    assert all(o.status == 200 for o in outcomes), Counter(o.status for o in outcomes)
    before = [o.version for o in outcomes if o.finished < changing]
    assert len(before) >= 10
    assert set(before) == {"1"}
    switched = min(o.finished for o in outcomes if o.version == "2")
    assert switched > changed  # nothing served by the challenger before the change
    after = [o.version for o in outcomes if o.started > switched]
    assert len(after) >= 10
    assert set(after) == {"2"}
    assert server.process.poll() is None


def test_kill_9_leaves_a_readable_log_of_what_was_answered(cluster: Cluster) -> None:
    [server] = cluster.servers["kill"]
    project = cluster.projects["kill"]
    # Records are written within the flush interval (0.2 s); answers older than that by
    # a margin far above what the writer needs must be on disk when the server dies.
    flush_s, margin_s = 0.2, 3.0
    with Load(server.url, threads=2) as load:

        def settled_count(answers: list[Outcome]) -> bool:
            cutoff = time.monotonic() - flush_s - margin_s
            return sum(o.finished < cutoff for o in answers) >= 20

        load.wait_until(settled_count, f"20 answers older than {flush_s + margin_s} s")
        killed = time.monotonic()
        server.process.send_signal(signal.SIGKILL)
        assert server.process.wait(timeout=DEADLINE_S) == -signal.SIGKILL
    answered = load.answered()
    settled = {o.request_id for o in answered if o.finished < killed - flush_s - margin_s}
    assert len(settled) >= 20

    root = project.state_dir / "logs" / "predictions"
    files = sorted(root.rglob("*.parquet"))
    assert files
    rows = 0
    for path in files:
        assert not path.name.startswith("."), f"temp file left as Parquet: {path}"
        rows += pq.read_table(path).num_rows
    logged = logged_request_ids(project)
    assert rows == len(logged)  # one row per request, none written twice
    assert settled <= logged
    unanswered = logged - {o.request_id for o in answered}
    assert len(unanswered) <= 2  # at most the requests in flight when the server died


def test_sigterm_drains_and_logs_every_answered_request(cluster: Cluster) -> None:
    [server] = cluster.servers["term"]
    project = cluster.projects["term"]
    with Load(server.url, threads=4) as load:
        load.wait_until(lambda answers: len(answers) >= 20, "20 answers before SIGTERM")
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=DEADLINE_S)
    assert code == 0, b"".join(server.output).decode(errors="replace")
    answered = load.answered()
    assert len(answered) >= 20
    assert {o.status for o in load.outcomes} <= {200, None}
    assert {o.request_id for o in answered} <= logged_request_ids(project)
    leftovers = [p for p in (project.state_dir / "logs").rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers
