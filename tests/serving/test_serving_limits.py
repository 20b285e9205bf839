"""Hostile request shapes: bodies streamed past ``max_request_bytes`` (stopped while
streaming), more rows than ``max_batch_rows`` on every protocol (refused before the rows
are decoded), an idempotency cache bounded by bytes that keys on the
``Idempotency-Key`` header only, and JSON routes that refuse other content types (415).
In-process, through the ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from prodml import Project
from prodml.project import serving_app
from prodml.serving import _mlflow_wire, _v2
from prodml.serving._idempotency import MemoryIdempotencyStore
from prodml.storage import read_log
from servingkit import FEATURES, TOKEN, ProjectFactory, row, tokens_toml, v2_body

Factory = ProjectFactory
CHUNK = 16 * 1024
LIMIT = 64 * 1024


def logged(project: Project) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = read_log(project.state_dir / "logs" / "predictions").to_pylist()
    return rows


# -- 4. a streamed body is cut off at the limit ----------------------------------------


def _stream(
    client: TestClient, path: str, headers: dict[str, str], chunks: int
) -> tuple[httpx.Response, int]:
    """POST ``chunks`` chunks of CHUNK bytes as a stream (no Content-Length unless given)
    through httpx's ASGI transport, on the event loop the app runs on; the answer and
    how many chunks the app pulled."""
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(chunks):
            pulled += 1
            yield b" " * CHUNK

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.post(path, content=body(), headers=headers)

    response = client.portal.call(post)  # type: ignore[union-attr]
    return response, pulled


@pytest.mark.parametrize("declared", [None, "100"], ids=["chunked", "lying-length"])
def test_a_streamed_body_is_refused_at_the_limit_not_read_in_full(
    make_project: Factory, declared: str | None
) -> None:
    project, _ = make_project(f"[serving]\nmax_request_bytes = {LIMIT}\n")
    headers = {"content-type": "application/json"}
    if declared is not None:
        headers["content-length"] = declared
    with TestClient(serving_app(project)) as client:
        response, pulled = _stream(client, "/invocations", headers, chunks=2000)  # 32 MB
        assert response.status_code == 413, response.text
        assert response.headers["connection"] == "close"  # the unread rest is not reused
        assert f"{LIMIT}-byte" in response.json()["error"]
        assert "max_request_bytes" in response.json()["error"]
        assert pulled <= LIMIT // CHUNK + 1  # at most one chunk past the limit
        small = client.post("/invocations", json={"dataframe_records": [row(1)]})
        assert small.status_code == 200, small.text


def test_a_declared_length_over_the_limit_is_refused_unread(make_project: Factory) -> None:
    project, _ = make_project(f"[serving]\nmax_request_bytes = {LIMIT}\n")
    with TestClient(serving_app(project)) as client:
        headers = {"content-type": "application/json", "content-length": str(10 * LIMIT)}
        response, pulled = _stream(
            client, "/v2/models/lr/infer", headers, chunks=10 * LIMIT // CHUNK
        )
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert pulled == 0


# -- 5. the row limit on every protocol, before the rows are decoded --------------------

ROWS = 100_000
BIG = "[serving]\nmax_request_bytes = 134217728\n"  # 128 MiB: the row limit answers first


class Spy:
    """Stands in for a decoding step; counts the calls it should never get."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise AssertionError("decoded a request over the row limit")


def _assert_row_limit(response: httpx.Response, limit: int = 10_000) -> None:
    assert response.status_code == 413, response.text
    body = response.json()
    assert str(limit) in body["error"]
    assert "max_batch_rows" in body["error"]
    assert str(ROWS) not in response.text  # the client's count is not echoed


def test_v2_json_over_the_row_limit_is_refused_before_decoding(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = make_project(BIG)
    column = b"[" + b",".join([b"0.5"] * ROWS) + b"]"
    inputs = b",".join(
        b'{"name":"%s","shape":[%d],"datatype":"FP64","data":%s}' % (n.encode(), ROWS, column)
        for n in FEATURES
    )
    spies = {"_tensor": Spy(), "check_columns": Spy()}
    for name, spy in spies.items():
        monkeypatch.setattr(_v2, name, spy)
    with TestClient(serving_app(project)) as client:
        response = client.post(
            "/v2/models/lr/infer",
            content=b'{"inputs":[' + inputs + b"]}",
            headers={"content-type": "application/json"},
        )
        _assert_row_limit(response)
        # a tensor whose shape says one row but whose data holds more is counted by its data
        lying = {"name": "input-0", "shape": [1, 20], "datatype": "FP64", "data": [0.5] * 20 * ROWS}
        response = client.post("/v2/models/lr/infer", json={"inputs": [lying]})
        _assert_row_limit(response)
    assert [spy.calls for spy in spies.values()] == [0, 0]
    assert logged(project) == []


def test_v2_binary_over_the_row_limit_is_refused_before_decoding(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = make_project(BIG)
    grid = np.zeros((ROWS, len(FEATURES)), dtype="<f8").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [ROWS, len(FEATURES)],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(grid)},
                }
            ]
        }
    )
    spy = Spy()
    monkeypatch.setattr(_v2, "_from_binary", spy)
    with TestClient(serving_app(project)) as client:
        response = client.post(
            "/v2/models/lr/infer",
            content=header + grid,
            headers={
                "content-type": "application/octet-stream",
                "inference-header-content-length": str(len(header)),
            },
        )
    _assert_row_limit(response)
    assert spy.calls == 0


def test_mlflow_csv_over_the_row_limit_is_refused_before_pandas_reads_it(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = make_project(BIG)
    csv = ",".join(FEATURES).encode() + b"\n" + (",".join(["0.5"] * 20).encode() + b"\n") * ROWS
    spy = Spy()
    monkeypatch.setattr(_mlflow_wire, "_read_table", spy)
    with TestClient(serving_app(project)) as client:
        response = client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
        _assert_row_limit(response)
    assert spy.calls == 0


def test_mlflow_csv_at_the_row_limit_is_answered(make_project: Factory) -> None:
    project, _ = make_project("[serving]\nmax_batch_rows = 3\n")
    header = ",".join(FEATURES).encode() + b"\n"
    lines = [",".join(str(v) for v in row(i).values()).encode() + b"\n" for i in range(4)]
    with TestClient(serving_app(project)) as client:
        ok = client.post("/invocations", content=header + b"".join(lines[:3]),
                         headers={"content-type": "text/csv"})  # fmt: skip
        unterminated = header + b"".join(lines[:3]).rstrip(b"\n")
        also_ok = client.post("/invocations", content=unterminated,
                              headers={"content-type": "text/csv"})  # fmt: skip
        over = client.post("/invocations", content=header + b"".join(lines),
                           headers={"content-type": "text/csv"})  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["predictions"]) == 3
    assert also_ok.status_code == 200, also_ok.text
    assert over.status_code == 413
    assert "max_batch_rows" in over.json()["error"]


def test_mlflow_parquet_over_the_row_limit_is_refused_before_pandas_reads_it(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = make_project(BIG)
    frame = pd.DataFrame(np.zeros((ROWS, len(FEATURES))), columns=FEATURES)
    data = frame.to_parquet()
    spy = Spy()
    monkeypatch.setattr(_mlflow_wire, "_read_table", spy)
    with TestClient(serving_app(project)) as client:
        response = client.post(
            "/invocations", content=data, headers={"content-type": "application/vnd.apache.parquet"}
        )
    _assert_row_limit(response)
    assert spy.calls == 0


@pytest.mark.parametrize("layout", ["dataframe_split", "dataframe_records", "instances", "inputs"])
def test_mlflow_json_over_the_row_limit_is_refused_before_a_frame_is_built(
    make_project: Factory, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    project, _ = make_project(BIG)
    values = b"[" + b",".join([b"0.5"] * len(FEATURES)) + b"]"
    record = orjson.dumps(dict.fromkeys(FEATURES, 0.5))
    rows = b"[" + b",".join([values] * ROWS) + b"]"
    body = {
        "dataframe_split": b'{"dataframe_split":{"columns":%s,"data":%s}}'
        % (orjson.dumps(FEATURES), rows),
        "dataframe_records": b'{"dataframe_records":[' + b",".join([record] * ROWS) + b"]}",
        "instances": b'{"instances":' + rows + b"}",
        "inputs": b'{"inputs":{'
        + b",".join(b'"%s":[%s]' % (n.encode(), b",".join([b"0.5"] * ROWS)) for n in FEATURES)
        + b"}}",
    }[layout]
    spies = {"_columns": Spy(), "check_columns": Spy()}
    for name, spy in spies.items():
        monkeypatch.setattr(_mlflow_wire, name, spy)
    with TestClient(serving_app(project)) as client:
        response = client.post(
            "/invocations", content=body, headers={"content-type": "application/json"}
        )
    _assert_row_limit(response)
    assert [spy.calls for spy in spies.values()] == [0, 0]


def test_a_large_allowed_batch_is_answered_on_every_protocol(make_project: Factory) -> None:
    """10,000 rows (the default limit) decode off the event loop and are answered."""
    project, _ = make_project(BIG)
    rows = [row(i % 50) for i in range(10_000)]
    frame = pd.DataFrame(rows, columns=FEATURES)
    inputs = [
        {"name": n, "shape": [len(frame)], "datatype": "FP64", "data": frame[n].tolist()}
        for n in FEATURES
    ]
    with TestClient(serving_app(project)) as client:
        v2 = client.post("/v2/models/lr/infer", json={"inputs": inputs})
        csv = client.post(
            "/invocations", content=frame.to_csv(index=False), headers={"content-type": "text/csv"}
        )
        split = client.post("/invocations", json={"dataframe_split": frame.to_dict("split")})
    assert v2.status_code == 200, v2.text
    assert len(v2.json()["outputs"][0]["data"]) == 10_000
    assert csv.status_code == 200, csv.text
    assert split.status_code == 200, split.text
    assert csv.json() == split.json()
    assert len(split.json()["predictions"]) == 10_000


# -- 6. idempotency: bounded by bytes, keyed by the header only -------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_store_is_bounded_by_bytes_oldest_out_first() -> None:
    clock = FakeClock()
    value = b"x" * 1000
    store = MemoryIdempotencyStore(clock, max_bytes=10_000)
    for i in range(30):
        assert store.put(f"k{i}", value, ttl_s=60)
        clock.now += 1
        assert store.size_bytes <= 10_000
    kept = [i for i in range(30) if store.get(f"k{i}") is not None]
    assert kept == list(range(30 - len(kept), 30))  # the newest, in a row
    assert 5 <= len(kept) < 10  # each entry costs its value, its key and some overhead
    assert not store.put("huge", b"x" * 10_001, ttl_s=60)  # larger than the cap: not stored
    assert store.get("huge") is None
    assert store.get("k29") == value  # and nothing was evicted for it


def test_memory_store_frees_the_bytes_of_expired_entries() -> None:
    clock = FakeClock()
    store = MemoryIdempotencyStore(clock, max_bytes=10_000)
    for i in range(5):
        store.put(f"k{i}", b"x" * 1000, ttl_s=10)
    full = store.size_bytes
    clock.now += 10
    assert store.put("fresh", b"y" * 1000, ttl_s=10)
    assert store.size_bytes < full
    assert [store.get(f"k{i}") for i in range(5)] == [None] * 5


def test_memory_store_rejects_a_bad_byte_cap() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryIdempotencyStore(max_bytes=0)


def test_a_body_id_is_not_an_idempotency_key_by_default(make_project: Factory) -> None:
    project, _ = make_project()
    with TestClient(serving_app(project)) as client:
        server = client.app.state.server  # type: ignore[attr-defined]
        body = v2_body(row(5), id="req-42")
        first = client.post("/v2/models/lr/infer", json=body)
        again = client.post("/v2/models/lr/infer", json=body)
        assert len(server.idempotency) == 0  # nothing kept for a correlation id
        keyed = {"Idempotency-Key": "k-1"}
        by_key = client.post("/v2/models/lr/infer", json=body, headers=keyed)
        replay = client.post("/v2/models/lr/infer", json=body, headers=keyed)
        assert len(server.idempotency) == 1
    assert first.status_code == again.status_code == 200
    assert "Idempotent-Replayed" not in again.headers
    assert first.json()["id"] == again.json()["id"] == "req-42"
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == by_key.content
    assert [r["request_id"] for r in logged(project)].count("req-42") == 3


def test_a_body_id_is_a_key_when_opted_in(make_project: Factory) -> None:
    project, _ = make_project("[serving]\nidempotency_from_body_id = true\n")
    with TestClient(serving_app(project)) as client:
        body = v2_body(row(5), id="req-42")
        first = client.post("/v2/models/lr/infer", json=body)
        again = client.post("/v2/models/lr/infer", json=body)
        other = client.post("/v2/models/lr/infer", json=v2_body(row(6), id="req-42"))
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert "Idempotent-Replayed" not in other.headers  # a body id only replays its own body
    assert [r["request_id"] for r in logged(project)].count("req-42") == 2


def test_the_server_store_takes_its_byte_cap_from_the_config(make_project: Factory) -> None:
    project, _ = make_project("[serving]\nidempotency_max_bytes = 4096\n")
    with TestClient(serving_app(project)) as client:
        server = client.app.state.server  # type: ignore[attr-defined]
        for i in range(20):
            response = client.post(
                "/invocations",
                json={"dataframe_records": [row(i)]},
                headers={"Idempotency-Key": f"k-{i}"},
            )
            assert response.status_code == 200
        assert server.idempotency.size_bytes <= 4096
        assert 0 < len(server.idempotency) < 20


# -- 13. JSON routes read JSON only --------------------------------------------------------

ADMIN_TOKEN = TOKEN["admin"]
TOKENS = "\n[serving]\n" + tokens_toml("admin")


def _feedback() -> bytes:
    return orjson.dumps({"endpoint": "lr", "request_id": "r-1", "label": 1})


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_json_routes_refuse_other_content_types(make_project: Factory, content_type: str) -> None:
    project, _ = make_project(TOKENS)
    native = orjson.dumps({"entities": {"id": 1}})
    v2 = orjson.dumps(v2_body(row(1)))
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}", "content-type": content_type}
    with TestClient(serving_app(project)) as client:
        answers = {
            "native": client.post(
                "/v1/endpoints/lr/predict", content=native, headers={"content-type": content_type}
            ),
            "feedback": client.post(
                "/v1/feedback", content=_feedback(), headers={"content-type": content_type}
            ),
            "v2": client.post(
                "/v2/models/lr/infer", content=v2, headers={"content-type": content_type}
            ),
            "mlflow": client.post(
                "/invocations",
                content=orjson.dumps({"dataframe_records": [row(1)]}),
                headers={"content-type": content_type},
            ),
            "weights": client.post(
                "/v1/admin/deployments/lr/weights",
                content=orjson.dumps({"weights": {"champion": 1.0}}),
                headers=admin,
            ),
            "pause": client.post(
                "/v1/admin/deployments/lr/pause", content=b'{"reason": "x"}', headers=admin
            ),
            "deploy": client.put("/v1/admin/deployments/lr", content=b"{}", headers=admin),
        }
    for route, response in answers.items():
        assert response.status_code == 415, (route, response.text)
        error = response.json()["error"]
        assert "application/json" in error, route
        assert content_type.split(";")[0] not in error, route  # names what is expected only
    assert logged(project) == []


def test_json_routes_take_json_with_parameters_in_any_case(make_project: Factory) -> None:
    project, _ = make_project()
    with TestClient(serving_app(project)) as client:
        v2 = client.post(
            "/v2/models/lr/infer",
            content=orjson.dumps(v2_body(row(1))),
            headers={"content-type": "Application/JSON; charset=UTF-8"},
        )
        feedback = client.post(
            "/v1/feedback",
            content=_feedback(),
            headers={"content-type": "application/json; charset=utf-8"},
        )
        latin = client.post(
            "/v1/feedback",
            content=_feedback(),
            headers={"content-type": "application/json; charset=latin-1"},
        )
    assert v2.status_code == 200, v2.text
    assert feedback.status_code == 200, feedback.text
    assert latin.status_code == 415


def test_a_missing_content_type(make_project: Factory) -> None:
    """tritonclient sends none on V2: read as JSON there; prodml's own JSON routes and
    /invocations (whose body could be CSV or Parquet) need one."""
    project, _ = make_project()
    with TestClient(serving_app(project)) as client:
        v2 = client.post("/v2/models/lr/infer", content=orjson.dumps(v2_body(row(1))))
        feedback = client.post("/v1/feedback", content=_feedback())
        native = client.post("/v1/endpoints/lr/predict", content=b'{"entities": {"id": 1}}')
        mlflow = client.post("/invocations", content=orjson.dumps({"dataframe_records": [row(1)]}))
    assert v2.status_code == 200, v2.text
    for response in (feedback, native, mlflow):
        assert response.status_code == 415, response.text


def test_415_is_declared_in_the_openapi_document(make_project: Factory) -> None:
    project, _ = make_project(TOKENS)
    with TestClient(serving_app(project)) as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path, method in [
        ("/v1/endpoints/{name}/predict", "post"),
        ("/v1/feedback", "post"),
        ("/v2/models/{model_name}/infer", "post"),
        ("/invocations", "post"),
        ("/v1/admin/deployments/{endpoint}", "put"),
        ("/v1/admin/deployments/{endpoint}/weights", "post"),
        ("/v1/admin/deployments/{endpoint}/pause", "post"),
    ]:
        assert "415" in paths[path][method]["responses"], (path, method)
    assert "415" not in paths["/v1/admin/deployments"]["get"]["responses"]
