"""Liveness and readiness: /readyz is 200 only with models loaded and every store the
request path needs answering; /metrics exports the queue gauges."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from prodml.core import StorageError
from prodml.project import serving_app
from servingkit import FEATURES, serving_project


def test_readyz_reports_models_and_stores_and_fails_when_the_database_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = serving_project(tmp_path / "p")
    with TestClient(serving_app(project)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["ready"] is True
        assert body["models_loaded"] is True
        assert body["stores"] == {"metadata": "ok"}
        assert body["endpoints"] == {"lr": 1}

        def down() -> dict[str, int]:
            raise StorageError("metadata DB sqlite:///meta.db is unreachable")

        monkeypatch.setattr(project.deployments, "revisions", down)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "unreachable" in ready.json()["stores"]["metadata"]
        assert client.get("/v2/health/live").json() == {"live": True}
        metrics = client.get("/metrics").text
        assert 'prodml_batch_queue_depth{model="lr:1"} 0.0' in metrics
        assert 'prodml_log_queue_depth{log="predictions"}' in metrics
    project.close()


def test_readyz_is_503_without_any_deployment(tmp_path: Path) -> None:
    from prodml import Project

    project = Project.init(tmp_path / "empty")
    with TestClient(serving_app(project)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["models_loaded"] is False
        assert client.get("/v2/health/ready").status_code == 503
    project.close()


def test_non_finite_output_for_out_of_range_inputs_is_the_requests_fault(tmp_path: Path) -> None:
    """NaN scores for inputs outside the training range: a 422 naming the columns, and no
    breaker failure; the same model's NaN for in-range inputs stays a model failure."""
    from prodml import Project
    from prodml.registry import DeploymentSpec
    from servingkit import FEATURES, OverflowModel, lr_model, register, row

    project = Project.init(tmp_path / "p")
    _, X = lr_model()
    version = register(project, OverflowModel(), X, name="wild", format="cloudpickle")
    project.deployments.deploy("wild", DeploymentSpec.single(version.ref), actor="test")
    with TestClient(serving_app(project)) as client:

        def body(values: dict[str, float]) -> dict[str, object]:
            data = [values[name] for name in FEATURES]
            return {"inputs": [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": data}]}

        infer = "/v2/models/wild/infer"
        normal = body(row(1))
        assert client.post(infer, json=normal).status_code == 200
        wild = body({**row(2), "f3": 1e6})
        for _ in range(8):  # more than breaker_failures (5)
            response = client.post(infer, json=wild)
            assert response.status_code == 422, response.text
            assert response.json()["details"][0]["field"] == "f3"
            assert "1000000" not in response.text
        assert client.post(infer, json=normal).status_code == 200  # breaker still closed
        metrics = client.get("/metrics").text
        assert 'prodml_breaker_open{arm="champion",endpoint="wild"} 1.0' not in metrics
    project.close()


def test_a_null_the_model_cannot_take_is_the_requests_fault_and_fails_alone(
    tmp_path: Path,
) -> None:
    """A null in a float input the training data never had null, which the model refuses
    (scikit-learn raises on NaN): a 422 naming the column, no breaker failure, and the
    requests batched with it are answered."""
    import asyncio

    import httpx

    from servingkit import row

    project, _ = serving_project(tmp_path / "p")

    def body(values: dict[str, float | None]) -> dict[str, object]:
        return {"dataframe_split": {"columns": FEATURES, "data": [[values[n] for n in FEATURES]]}}

    null = body({**row(2), "f3": None})
    with TestClient(serving_app(project)) as client:
        for _ in range(8):  # more than breaker_failures (5)
            response = client.post("/invocations", json=null)
            assert response.status_code == 422, response.text
            assert response.json()["details"][0]["field"] == "f3"
        assert client.post("/invocations", json=body(row(1))).status_code == 200
        metrics = client.get("/metrics").text
        assert 'prodml_breaker_open{arm="champion",endpoint="lr"} 1.0' not in metrics

        async def together() -> list[int]:  # the null in the middle of concurrent requests
            transport = httpx.ASGITransport(app=client.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                bodies = [body(row(i)) for i in range(6)] + [null] + [body(row(9))] * 6
                answers = await asyncio.gather(*(http.post("/invocations", json=b) for b in bodies))
                return [a.status_code for a in answers]

        statuses = client.portal.call(together)  # on the app's own event loop
        assert statuses == [200] * 6 + [422] + [200] * 6
    project.close()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/invocations", {"dataframe_split": {"columns": FEATURES, "data": []}}),
        ("/invocations", {"dataframe_records": []}),
        (
            "/v2/models/lr/infer",
            {"inputs": [{"name": "x", "shape": [0, 20], "datatype": "FP64", "data": []}]},
        ),
    ],
    ids=["split", "records", "v2"],
)
def test_a_request_without_rows_is_refused_and_costs_the_arm_nothing(
    tmp_path: Path, path: str, body: dict[str, object]
) -> None:
    from servingkit import row

    project, _ = serving_project(tmp_path / "p")
    with TestClient(serving_app(project)) as client:
        for _ in range(8):  # more than breaker_failures (5)
            response = client.post(path, json=body)
            assert response.status_code == 422, response.text
        good = {"dataframe_split": {"columns": FEATURES, "data": [list(row(1).values())]}}
        assert client.post("/invocations", json=good).status_code == 200
        assert (
            'prodml_breaker_open{arm="champion",endpoint="lr"} 1.0'
            not in client.get("/metrics").text
        )
    project.close()
