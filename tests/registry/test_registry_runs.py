"""Tracked runs: params, metric history, tags, seed, environment, code, datasets,
artifacts, failure and end states, and metric search checked against a brute-force
filter over the recorded runs."""

from __future__ import annotations

import hashlib
import math
import operator
import platform
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml.core import (
    ConflictError,
    DefinitionError,
    IntegrityError,
    RunNotFoundError,
    SimulatedClock,
    StateError,
)
from prodml.registry import ModelRegistry, RunInfo
from prodml.storage import ArtifactStore, LocalBlobStore, MetadataDB
from servicekit import libpq, pg_url_or_skip

# --- params, tags, seed ------------------------------------------------------------


def test_params_tags_and_seed_are_recorded(env: Any) -> None:
    reg: ModelRegistry = env.registry
    with reg.start_run(
        "m", params={"lr": 0.1, "depth": np.int64(4)}, tags={"team": "ml"}, seed=7
    ) as run:
        run.log_param("layers", [64, np.float32(0.5)])
        run.log_params({"lr": 0.1, "opts": {"a": None, "b": True}})  # same value: fine
        run.set_tag("stage", "dev")
        run_id = run.id
    info = reg.get_run(run_id)
    assert info.params == {
        "lr": 0.1,
        "depth": 4,
        "layers": [64, 0.5],
        "opts": {"a": None, "b": True},
    }
    assert type(info.params["depth"]) is int
    assert info.tags == {"team": "ml", "stage": "dev"}
    assert (info.seed, info.model_name, info.status, info.error) == (7, "m", "finished", None)
    assert info.start_time == info.end_time == env.clock.now()


def test_a_param_cannot_change_and_a_failed_call_records_nothing(env: Any) -> None:
    reg: ModelRegistry = env.registry
    run = reg.start_run("m", params={"lr": 0.1})
    with pytest.raises(
        ConflictError, match=r"param 'lr' is already 0\.1; cannot change it to 0\.2"
    ):
        run.log_params({"extra": 1, "lr": 0.2})
    with pytest.raises(DefinitionError, match=r"param 'obj': expected a JSON value"):
        run.log_params({"also": 2, "obj": object()})
    info = run.end()
    assert info.params == {"lr": 0.1}
    assert reg.get_run(run.id).params == {"lr": 0.1}


def test_times_come_from_the_clock(env: Any) -> None:
    reg: ModelRegistry = env.registry
    clock: SimulatedClock = env.clock
    start = clock.now()
    run = reg.start_run("m")
    clock.advance(timedelta(minutes=5))
    info = run.end()
    assert (info.start_time, info.end_time) == (start, start + timedelta(minutes=5))


# --- metrics -------------------------------------------------------------------------


def test_metric_history_steps_default_to_one_past_the_last(env: Any) -> None:
    reg: ModelRegistry = env.registry
    run = reg.start_run("m")
    for value in (0.9, 0.7, 0.6):
        run.log_metric("loss", value)
    run.log_metric("loss", 0.5, step=10)
    run.log_metric("loss", 0.4)  # step 11
    run.flush()
    assert reg.get_run(run.id).metrics == {"loss": 0.4}
    run.log_metric("loss", 0.95, step=3)  # back-filled: history only, not the latest
    run.log_metrics({"loss": 0.3, "auc": 0.8})  # loss step 12, auc step 0
    info = run.end()
    assert reg.metric_history(run.id, "loss") == [
        (0, 0.9),
        (1, 0.7),
        (2, 0.6),
        (3, 0.95),
        (10, 0.5),
        (11, 0.4),
        (12, 0.3),
    ]
    assert reg.metric_history(run.id, "auc") == [(0, 0.8)]
    assert info.metrics == {"loss": 0.3, "auc": 0.8}
    assert reg.metric_history(run.id, "never") == []


def test_the_latest_step_wins_within_one_flush(env: Any) -> None:
    reg: ModelRegistry = env.registry
    run = reg.start_run("m")
    run.log_metric("auc", 0.9, step=5)
    run.log_metric("auc", 0.1, step=2)
    info = run.end()
    assert info.metrics == {"auc": 0.9}
    assert [r.id for r in reg.search_runs(where="auc > 0.5")] == [run.id]
    assert reg.search_runs(where="auc < 0.5") == []


def test_nan_metric_round_trips_and_matches_no_condition(env: Any) -> None:
    reg: ModelRegistry = env.registry
    with reg.start_run("m") as nan_run:
        nan_run.log_metric("auc", float("nan"))
        nan_run.log_metric("loss", np.float32(np.nan), step=4)
    with reg.start_run("m") as number_run:
        number_run.log_metric("auc", 0.5)
    info = reg.get_run(nan_run.id)
    assert math.isnan(info.metrics["auc"])
    assert math.isnan(info.metrics["loss"])
    [(step, value)] = reg.metric_history(nan_run.id, "loss")
    assert step == 4
    assert math.isnan(value)
    assert info.to_dict()["metrics"] == {"auc": None, "loss": None}
    assert [r.id for r in reg.search_runs(where="auc != 0.1")] == [number_run.id]
    for order in ("auc", "auc desc"):
        assert [r.id for r in reg.search_runs(order_by=order)] == [number_run.id, nan_run.id]


@pytest.mark.parametrize("value", ["0.5", True, None, [1.0]])
def test_a_metric_must_be_a_number(env: Any, value: Any) -> None:
    run = env.registry.start_run("m")
    with pytest.raises(DefinitionError, match=r"metric 'bad': expected a number"):
        run.log_metrics({"ok": 1.0, "bad": value})
    assert run.end().metrics == {}  # the whole call was refused
    assert env.registry.metric_history(run.id, "ok") == []


# --- environment and code ------------------------------------------------------------


def test_environment_is_captured(env: Any) -> None:
    reg: ModelRegistry = env.registry
    info = reg.start_run("m").end()
    assert info.environment["python"] == platform.python_version()
    packages = info.environment["packages"]
    assert packages["numpy"] == np.__version__
    assert len(packages) > 20
    assert reg.start_run("m", environment=False).end().environment == {}
    assert info.to_dict()["environment"]["packages"] == len(packages)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "code"
    repo.mkdir()
    subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "init", "-q", str(repo)],
        check=True,
        capture_output=True,
    )
    _git(repo, "config", "user.name", "Test User")
    _git(repo, "config", "user.email", "test@example.com")
    _git(repo, "config", "commit.gpgsign", "false")
    (repo / "train.py").write_text("lr = 0.1\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "init")
    return repo


def test_code_state_is_captured(env: Any, git_repo: Path, tmp_path: Path) -> None:
    reg: ModelRegistry = env.registry

    def code() -> dict[str, Any]:
        return reg.start_run("m", code_dir=git_repo, environment=False).end().code

    head = _git(git_repo, "rev-parse", "HEAD")
    clean = code()
    assert clean == {"commit": head, "dirty": False, "diff_sha256": None, "branch": "main"}

    (git_repo / "train.py").write_text("lr = 0.2\n")
    first = code()
    assert (first["commit"], first["dirty"]) == (head, True)
    assert len(first["diff_sha256"]) == 64
    assert first["diff_sha256"] == code()["diff_sha256"]  # same diff, same hash

    (git_repo / "train.py").write_text("lr = 0.3\n")
    second = code()
    assert second["dirty"] is True
    assert second["diff_sha256"] != first["diff_sha256"]

    (git_repo / "notes.txt").write_text("untracked\n")
    third = code()
    assert third["dirty"] is True
    assert third["diff_sha256"] not in {first["diff_sha256"], second["diff_sha256"]}

    _git(git_repo, "add", "-A")
    _git(git_repo, "commit", "-q", "-m", "second")
    committed = code()
    assert committed["commit"] == _git(git_repo, "rev-parse", "HEAD") != head
    assert (committed["dirty"], committed["diff_sha256"]) == (False, None)

    outside = tmp_path / "not_a_repo"
    outside.mkdir()
    assert reg.start_run("m", code_dir=outside).end().code["commit"] is None


# --- datasets and artifacts ----------------------------------------------------------


def test_datasets_are_recorded_with_their_roles(env: Any) -> None:
    reg: ModelRegistry = env.registry
    train, valid = "a" * 64, "b" * 64
    run = reg.start_run("m")
    run.log_dataset(train)
    run.log_dataset(valid, role="validation")
    run.log_dataset(train, role="source")
    run.flush()
    run.log_dataset(train)  # again: recorded once
    with pytest.raises(DefinitionError, match=r"role 'holdout': expected one of"):
        run.log_dataset(valid, role="holdout")
    info = run.end()
    assert info.datasets == ((train, "source"), (train, "train"), (valid, "validation"))
    assert reg.get_run(run.id).datasets == info.datasets


def test_artifacts_are_stored_content_addressed_and_verified(env: Any, tmp_path: Path) -> None:
    reg: ModelRegistry = env.registry
    store: ArtifactStore = env.store
    data = bytes(range(256)) * 4
    source = tmp_path / "report.html"
    source.write_bytes(b"<h1>report</h1>")
    with reg.start_run("m") as run:
        raw = run.log_artifact("weights.bin", data)
        from_file = run.log_artifact("report.html", source)
        text = run.log_text("notes.md", "# notes\nhéllo\n")
    assert raw == hashlib.sha256(data).hexdigest()
    assert from_file == hashlib.sha256(b"<h1>report</h1>").hexdigest()
    assert text == hashlib.sha256("# notes\nhéllo\n".encode()).hexdigest()
    info = reg.get_run(run.id)
    assert info.artifacts == {
        "weights.bin": {"digest": raw, "size": len(data)},
        "report.html": {"digest": from_file, "size": 15},
        "notes.md": {"digest": text, "size": len("# notes\nhéllo\n".encode())},
    }
    assert store.get_bytes(info.artifacts["weights.bin"]["digest"]) == data
    assert store.get_bytes(text).decode() == "# notes\nhéllo\n"

    blob = env.artifacts_dir / "sha256" / raw[:2] / raw[2:]
    blob.write_bytes(data[:-1] + b"\x00")
    with pytest.raises(IntegrityError, match=raw):
        store.get_bytes(raw)


# --- end states ----------------------------------------------------------------------


def test_an_exception_inside_with_marks_the_run_failed(env: Any) -> None:
    reg: ModelRegistry = env.registry
    started: list[str] = []

    def train() -> None:
        with reg.start_run("m") as run:
            started.append(run.id)
            run.log_metric("loss", 0.5)
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        train()
    info = reg.get_run(started[0])
    assert (info.status, info.error) == ("failed", "ValueError: boom")
    assert info.end_time == env.clock.now()
    assert info.metrics == {"loss": 0.5}


def test_a_run_is_running_until_it_ends(env: Any) -> None:
    reg: ModelRegistry = env.registry
    run = reg.start_run("m", params={"a": 1})
    assert reg.get_run(run.id).status == "running"
    assert reg.get_run(run.id).end_time is None
    with pytest.raises(DefinitionError, match=r"end status 'done'"):
        run.end("done")
    assert run.end("failed", error="oom").status == "failed"
    assert reg.get_run(run.id).error == "oom"


def test_logging_after_the_end_is_a_state_error(env: Any, tmp_path: Path) -> None:
    reg: ModelRegistry = env.registry
    with reg.start_run("m") as run:
        run.log_metric("auc", 0.7)
    before = reg.get_run(run.id)
    calls: list[Callable[[], object]] = [
        lambda: run.log_param("a", 1),
        lambda: run.log_metric("auc", 0.9),
        lambda: run.set_tag("t", "v"),
        lambda: run.set_job(trainer="x"),
        lambda: run.log_dataset("c" * 64),
        lambda: run.log_artifact("x", b"x"),
        lambda: run.log_text("x", "x"),
        lambda: run.end(),
    ]
    for call in calls:
        with pytest.raises(StateError, match=rf"run {run.id} has ended"):
            call()
    assert reg.get_run(run.id) == before


def test_unknown_runs_are_not_found(env: Any) -> None:
    with pytest.raises(RunNotFoundError, match="run-nope"):
        env.registry.get_run("run-nope")
    with pytest.raises(RunNotFoundError, match="run-nope"):
        env.registry.metric_history("run-nope", "auc")


# --- search ------------------------------------------------------------------------------

VALUES = (-1.5, 0.0, 0.25, 0.5, 0.75, 1.0)
KEYS = ("auc", "loss", "absent")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
}


class SearchWorld:
    """Runs with known latest metrics, and their records read back with ``get_run``."""

    def __init__(self, registry: ModelRegistry, expected: dict[str, dict[str, float]]) -> None:
        self.registry = registry
        self.expected = expected
        self.infos = [registry.get_run(run_id) for run_id in expected]


def _build_world(registry: ModelRegistry, clock: SimulatedClock) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(7)
    expected: dict[str, dict[str, float]] = {}
    for i in range(24):
        run = registry.start_run("ab"[i % 2], environment=False)
        latest: dict[str, float] = {}
        for key in ("auc", "loss"):
            kind = rng.integers(0, 5)
            if kind == 0:
                continue  # never logged
            final = math.nan if kind == 1 else float(rng.choice(VALUES))
            for _ in range(int(rng.integers(0, 3))):  # earlier history, other values
                run.log_metric(key, float(rng.choice(VALUES)) + 10.0)
            if kind == 4:  # the latest step logged first, then an older one
                run.log_metric(key, final, step=100)
                run.log_metric(key, -10.0, step=50)
            else:
                run.log_metric(key, final)
            latest[key] = final
        expected[run.id] = latest
        status = ("finished", "failed", "running")[int(rng.integers(0, 3))]
        if status == "running":
            run.flush()
        else:
            run.end(status)
        if rng.random() < 0.5:  # leave ties in start time for the default order
            clock.advance(timedelta(seconds=1))
    return expected


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SearchWorld]:
    tmp = tmp_path_factory.mktemp("search")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp}/meta.db"
    else:
        import psycopg

        url = pg_url_or_skip()
        schema = f"prodml_test_{uuid.uuid4().hex[:12]}"  # created by MetadataDB.open
    db = MetadataDB.open(url, schema_name=schema)
    clock = SimulatedClock(datetime(2024, 3, 1, tzinfo=UTC))
    registry = ModelRegistry(db, ArtifactStore(LocalBlobStore(tmp / "artifacts")), clock)
    try:
        yield SearchWorld(registry, _build_world(registry, clock))
    finally:
        db.close()
        if schema is not None:
            with psycopg.connect(libpq(url), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _brute_force(
    infos: list[RunInfo],
    *,
    model_name: str | None,
    status: str | None,
    conditions: list[tuple[str, str, float]],
    order: tuple[str, bool] | None,
    limit: int,
) -> list[str]:
    """The runs ``search_runs`` should return, computed from the records in Python: a
    missing or NaN metric satisfies no condition and sorts last."""

    def known(info: RunInfo, key: str) -> float | None:
        value = info.metrics.get(key)
        return None if value is None or math.isnan(value) else value

    def matches(info: RunInfo) -> bool:
        for key, op, threshold in conditions:
            value = known(info, key)
            if value is None or not OPS[op](value, threshold):
                return False
        return True

    rows = [
        info
        for info in infos
        if (model_name is None or info.model_name == model_name)
        and (status is None or info.status == status)
        and matches(info)
    ]
    if order is None:
        rows.sort(key=lambda info: (info.start_time, info.id), reverse=True)
    else:
        key, ascending = order

        def sort_key(info: RunInfo) -> tuple[bool, float, str]:
            value = known(info, key)
            if value is None:
                return (True, 0.0, info.id)
            return (False, value if ascending else -value, info.id)

        rows.sort(key=sort_key)
    return [info.id for info in rows[:limit]]


def test_the_world_records_the_latest_metric_values(world: SearchWorld) -> None:
    for info in world.infos:
        want = world.expected[info.id]
        assert set(info.metrics) == set(want)
        for key, value in want.items():
            got = info.metrics[key]
            assert (math.isnan(got) and math.isnan(value)) or got == value


conditions_st = st.lists(
    st.tuples(st.sampled_from(KEYS), st.sampled_from(sorted(OPS)), st.sampled_from(VALUES)),
    max_size=3,
)
order_st = st.one_of(st.none(), st.tuples(st.sampled_from(KEYS), st.booleans(), st.booleans()))


@settings(max_examples=60, deadline=None)
@given(
    model_name=st.sampled_from([None, "a", "b"]),
    status=st.sampled_from([None, "finished", "failed", "running"]),
    conditions=conditions_st,
    order=order_st,
    joiner=st.sampled_from([" and ", " AND ", "   and   "]),
    spaced=st.booleans(),
    limit=st.integers(1, 30),
)
def test_search_runs_matches_a_brute_force_filter(
    world: SearchWorld,
    model_name: str | None,
    status: str | None,
    conditions: list[tuple[str, str, float]],
    order: tuple[str, bool, bool] | None,
    joiner: str,
    spaced: bool,
    limit: int,
) -> None:
    sep = " " if spaced else ""
    where = joiner.join(f"{k}{sep}{op}{sep}{v!r}" for k, op, v in conditions) or None
    order_by = None
    if order is not None:
        key, ascending, explicit = order
        direction = "" if ascending and not explicit else ("  asc" if ascending else " DESC")
        order_by = key + direction
    got = world.registry.search_runs(
        model_name, where=where, order_by=order_by, status=status, limit=limit
    )
    want = _brute_force(
        world.infos,
        model_name=model_name,
        status=status,
        conditions=conditions,
        order=None if order is None else order[:2],
        limit=limit,
    )
    assert [r.id for r in got] == want
    by_id = {info.id: info for info in world.infos}
    for record in got:  # search returns the same records as get_run
        assert record.to_dict() == by_id[record.id].to_dict()


@pytest.mark.parametrize(
    ("where", "order_by"),
    [
        ("auc >> 0.5", None),
        ("auc > 1.2.3", None),
        ("auc > .", None),
        ("auc", None),
        ("auc > 0.5 or loss < 1", None),
        ("auc > 0.5 and", None),
        ("0.5 < auc", None),
        ("auc > abc", None),
        (None, "auc sideways"),
        (None, "auc desc desc"),
        (None, "   "),
    ],
)
def test_bad_search_syntax_is_a_definition_error(
    env: Any, where: str | None, order_by: str | None
) -> None:
    with pytest.raises(DefinitionError, match=r"run search (condition|order)"):
        env.registry.search_runs(where=where, order_by=order_by)
