"""The server against the real clients of its protocols: ``tritonclient.http`` against a
running ``prodml serve`` process, the exact bodies KServe's V2 REST client sends, and
``/invocations`` side by side with MLflow's own scoring server.

KServe itself is not installed: kserve 0.21.0, the latest release, requires
``pandas<3``, ``protobuf<7`` and ``psutil<6``, so installing it would downgrade pandas 3
(and protobuf 7) under prodml. The KServe tests therefore replay byte for byte what
``kserve.InferenceRESTClient`` 0.21.0 sends and reads (see :func:`kserve_infer`); its
client has no version route, so versions are tested with tritonclient only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient
from sklearn.linear_model import Ridge
from tritonclient.utils import InferenceServerException

from prodml import Project
from prodml.project import serving_app
from prodml.registry import DeploymentSpec
from servingkit import (
    FEATURES,
    lr_model,
    numeric_data,
    register,
    row,
    running_server,
    serving_project,
)

pytestmark = [
    # MLflow's pyfunc module warns about an inferred type hint when it is imported.
    pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning"),
]

SECRET = 424242.4242  # an input value that must never come back in an error
SECRET_TEXT = "s3cr3t-value"


def assert_clean_error(response: httpx.Response, status: int | None = None) -> str:
    """A 4xx answer that is ``{"error": ...}`` JSON without a traceback or an input value."""
    assert 400 <= response.status_code < 500, response.text
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("error"), str)
    assert body["error"]
    assert set(body) <= {"error", "details"}
    text = response.text
    assert "Traceback" not in text
    assert 'File "' not in text
    assert "424242" not in text
    assert SECRET_TEXT not in text
    return str(body["error"])


def frame_of(rows: list[dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=FEATURES)


# -- one running server for the module -------------------------------------------------


@dataclass(frozen=True)
class Served:
    url: str
    model: Any  # the fitted LogisticRegression behind lr:1, loaded from the registry

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def expected(self, frame: pd.DataFrame) -> np.ndarray:
        scores: np.ndarray = self.model.predict_proba(frame)[:, 1]
        return scores


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("protocols") / "project"
    project, version = serving_project(root)
    model = project.registry.load(version.ref).model
    project.close()
    with running_server(root) as server:
        yield Served(server.url, model)


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=served.host)
    yield client
    client.close()


@pytest.fixture(scope="module")
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30.0) as client:
        yield client


# -- tritonclient.http -----------------------------------------------------------------


def column_inputs(
    frame: pd.DataFrame, *, datatype: str = "FP64", binary: bool = True
) -> list[triton.InferInput]:
    dtype = np.float32 if datatype == "FP32" else np.float64
    inputs = []
    for name in frame.columns:
        item = triton.InferInput(name, [len(frame)], datatype)
        item.set_data_from_numpy(frame[name].to_numpy(dtype=dtype), binary_data=binary)
        inputs.append(item)
    return inputs


def test_triton_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    server = client.get_server_metadata()
    assert server["name"] == "prodml"
    assert isinstance(server["version"], str)
    assert server["extensions"] == ["binary_tensor_data"]
    metadata = client.get_model_metadata("lr")
    assert metadata["name"] == "lr"
    assert metadata["versions"] == ["1"]
    assert [i["name"] for i in metadata["inputs"]] == FEATURES
    assert {(i["datatype"], tuple(i["shape"])) for i in metadata["inputs"]} == {("FP64", (-1,))}
    assert metadata["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    assert client.get_model_metadata("lr", "1") == metadata
    assert client.is_model_ready("lr") is True
    assert client.is_model_ready("lr", "1") is True
    assert client.is_model_ready("nope") is False
    assert client.is_model_ready("lr", "2") is False


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("rows", [1, 5])
def test_triton_infer_matches_the_model(
    served: Served, client: triton.InferenceServerClient, binary: bool, rows: int
) -> None:
    frame = frame_of([row(seed) for seed in range(rows)])
    result = client.infer(
        "lr",
        inputs=column_inputs(frame, binary=binary),
        outputs=[triton.InferRequestedOutput("predict", binary_data=binary)],
        request_id="r1",
    )
    scores = result.as_numpy("predict")
    assert scores is not None
    assert scores.shape == (rows,)
    np.testing.assert_allclose(scores, served.expected(frame), rtol=0, atol=1e-12)
    response = result.get_response()
    assert (response["id"], response["model_name"], response["model_version"]) == ("r1", "lr", "1")
    (output,) = response["outputs"]
    if binary:  # the scores came as raw FP64 bytes after the JSON, not as JSON data
        assert "data" not in output
        assert output["parameters"] == {"binary_data_size": rows * 8}
    else:
        assert len(output["data"]) == rows


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_triton_fp32_inputs(
    served: Served, client: triton.InferenceServerClient, binary: bool
) -> None:
    frame = frame_of([row(seed) for seed in range(10, 13)])
    result = client.infer("lr", inputs=column_inputs(frame, datatype="FP32", binary=binary))
    # The server widens float32 exactly; the reference sees the same rounded values.
    expected = served.expected(frame.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(result.as_numpy("predict"), expected, rtol=0, atol=1e-12)
    assert not np.array_equal(frame.to_numpy(), frame.astype(np.float32).to_numpy())


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_triton_single_2d_tensor(
    served: Served, client: triton.InferenceServerClient, binary: bool
) -> None:
    frame = frame_of([row(seed) for seed in range(20, 24)])
    grid = triton.InferInput("input-0", [len(frame), len(FEATURES)], "FP64")
    grid.set_data_from_numpy(frame.to_numpy(dtype=np.float64), binary_data=binary)
    result = client.infer("lr", inputs=[grid], request_id="grid")
    np.testing.assert_allclose(result.as_numpy("predict"), served.expected(frame), atol=1e-12)


def test_triton_version_route(served: Served, client: triton.InferenceServerClient) -> None:
    frame = frame_of([row(30), row(31)])
    result = client.infer("lr", inputs=column_inputs(frame), model_version="1", request_id="v")
    np.testing.assert_allclose(result.as_numpy("predict"), served.expected(frame), atol=1e-12)
    assert result.get_response()["model_version"] == "1"
    with pytest.raises(InferenceServerException) as info:
        client.infer("lr", inputs=column_inputs(frame), model_version="2")
    assert info.value.status() == "404"
    assert "no such serving version: expected one of ['1']" in info.value.message()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_triton_missing_input_is_named(client: triton.InferenceServerClient, binary: bool) -> None:
    frame = frame_of([{**row(40), "f3": SECRET}])
    inputs = [i for i in column_inputs(frame, binary=binary) if i.name() != "f7"]
    with pytest.raises(InferenceServerException) as info:
        client.infer("lr", inputs=inputs, request_id="r1")
    error = info.value
    assert error.status() is not None
    assert 400 <= int(error.status()) < 500
    message = error.message()
    assert "'f7'" in message
    assert "missing" in message
    assert "424242" not in message
    assert error.debug_details() is None  # the body was JSON with an "error" string


def test_triton_unknown_model_is_404(client: triton.InferenceServerClient) -> None:
    inputs = column_inputs(frame_of([row(50)]))
    with pytest.raises(InferenceServerException) as info:
        client.infer("nope", inputs=inputs)
    assert info.value.status() == "404"
    assert "no such endpoint is deployed" in info.value.message()
    assert "nope" not in info.value.message()  # a name in the path is client input
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("nope")
    assert info.value.status() == "404"


# -- KServe's V2 REST client, replayed ---------------------------------------------------


def kserve_infer(
    http: httpx.Client,
    model_name: str,
    inputs: list[dict[str, Any]],
    *,
    raw: list[bytes] | None = None,
    outputs: list[str] | None = None,
    request_id: str | None = None,
) -> httpx.Response:
    """``InferenceRESTClient(RESTConfig(protocol="v2")).infer(base_url, InferRequest(...),
    model_name)`` of kserve 0.21.0: ``InferRequest.to_rest`` (kserve/protocol/infer_type.py)
    builds ``{"id", "model_name", "inputs", "outputs"?, "parameters"?}`` where each input is
    ``{"name", "shape", "datatype", "parameters"?, "data"?}``; an input set with
    ``set_data_from_numpy(..., binary_data=True)`` has no ``data`` but
    ``parameters.binary_data_size`` and its raw bytes appended after the JSON, which then
    travels as ``application/octet-stream`` with ``inference-header-content-length``;
    otherwise the body is ``orjson.dumps`` of the dict as ``application/json``. It posts to
    ``{base_url}/v2/models/{model_name}/infer``."""
    body: dict[str, Any] = {
        "id": request_id or str(uuid.uuid4()),
        "model_name": model_name,
        "inputs": inputs,
    }
    if outputs:
        body["outputs"] = [{"name": name} for name in outputs]
    text = orjson.dumps(body)
    headers = {"content-type": "application/json"}
    if raw:
        headers = {
            "inference-header-content-length": str(len(text)),
            "content-type": "application/octet-stream",
        }
        text += b"".join(raw)
    return http.post(f"/v2/models/{model_name}/infer", content=text, headers=headers)


def kserve_outputs(response: httpx.Response) -> dict[str, np.ndarray]:
    """What ``InferResponse.from_bytes`` reads: the JSON up to
    ``inference-header-content-length`` (else the whole body), ``model_name`` and per output
    ``name``, ``shape``, ``datatype`` and ``data`` (no binary outputs were asked for)."""
    length = int(response.headers.get("inference-header-content-length", len(response.content)))
    body = json.loads(response.content[:length])
    assert isinstance(body["model_name"], str)
    found = {}
    for output in body["outputs"]:
        assert output["datatype"] == "FP64"
        found[output["name"]] = np.array(output["data"], dtype=np.float64).reshape(output["shape"])
    return found


def kserve_columns(frame: pd.DataFrame, datatype: str = "FP64") -> list[dict[str, Any]]:
    dtype = np.float32 if datatype == "FP32" else np.float64
    return [
        {
            "name": name,
            "shape": [len(frame)],
            "datatype": datatype,
            "data": [v.item() for v in frame[name].to_numpy(dtype=dtype).flatten()],
        }
        for name in frame.columns
    ]


def test_kserve_health(http: httpx.Client) -> None:
    # is_server_live / is_server_ready / is_model_ready read these keys of these routes
    assert http.get("/v2/health/live").json().get("live") is True
    assert http.get("/v2/health/ready").json().get("ready") is True
    assert http.get("/v2/models/lr/ready").json().get("ready") is True


@pytest.mark.parametrize("rows", [1, 5])
def test_kserve_json_infer(served: Served, http: httpx.Client, rows: int) -> None:
    frame = frame_of([row(seed) for seed in range(60, 60 + rows)])
    response = kserve_infer(http, "lr", kserve_columns(frame), outputs=["predict"], request_id="k1")
    assert response.status_code == 200, response.text
    scores = kserve_outputs(response)["predict"]
    np.testing.assert_allclose(scores, served.expected(frame), rtol=0, atol=1e-12)
    assert response.json()["id"] == "k1"


def test_kserve_binary_fp32_and_2d(served: Served, http: httpx.Client) -> None:
    frame = frame_of([row(seed) for seed in range(70, 73)])
    narrow = frame.astype(np.float32)
    inputs = [
        {"name": n, "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 12}}
        for n in FEATURES
    ]
    response = kserve_infer(
        http, "lr", inputs, raw=[narrow[n].to_numpy().tobytes() for n in FEATURES]
    )
    assert response.status_code == 200, response.text
    expected = served.expected(narrow.astype(np.float64))
    np.testing.assert_allclose(kserve_outputs(response)["predict"], expected, atol=1e-12)
    grid = {
        "name": "input-0",
        "shape": [3, len(FEATURES)],
        "datatype": "FP64",
        "data": frame.to_numpy().flatten().tolist(),
    }
    response = kserve_infer(http, "lr", [grid])
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(
        kserve_outputs(response)["predict"], served.expected(frame), atol=1e-12
    )


def test_kserve_errors(http: httpx.Client) -> None:
    frame = frame_of([{**row(80), "f3": SECRET}])
    columns = kserve_columns(frame)
    missing = kserve_infer(http, "lr", [c for c in columns if c["name"] != "f7"])
    # KServe shows response.json()["error"] only when the content type is exactly JSON
    assert "'f7' is missing" in assert_clean_error(missing, 422)
    assert_clean_error(kserve_infer(http, "nope", columns), 404)
    wrong = [
        {**c, "datatype": "BYTES", "data": [SECRET_TEXT]} if c["name"] == "f3" else c
        for c in columns
    ]
    assert "'f3'" in assert_clean_error(kserve_infer(http, "lr", wrong), 422)
    short = [{**columns[0], "parameters": {"binary_data_size": 8}}, *columns[1:]]
    del short[0]["data"]
    assert_clean_error(kserve_infer(http, "lr", short, raw=[b"\x00" * 4]), 400)


def test_v2_request_id_is_not_an_idempotency_key(served: Served, http: httpx.Client) -> None:
    """A V2 ``id`` is a correlation id that clients reuse freely (tritonclient users pass
    fixed ones): never replayed (unless ``[serving] idempotency_from_body_id``); the
    ``Idempotency-Key`` header replays a byte-identical retry of the same route."""
    first = frame_of([row(85)])
    again = frame_of([row(86), row(87)])
    answers = [
        kserve_infer(http, "lr", kserve_columns(frame), request_id="same-id")
        for frame in (first, first, again)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.headers.get("idempotent-replayed") for a in answers] == [None, None, None]
    assert answers[1].json()["id"] == "same-id"
    scores = kserve_outputs(answers[2])["predict"]
    np.testing.assert_allclose(scores, served.expected(again), rtol=0, atol=1e-12)
    keyed = {"content-type": "application/json", "idempotency-key": "same-key"}
    stored, replayed = (
        http.post("/v2/models/lr/infer", content=answers[0].request.content, headers=keyed)
        for _ in range(2)
    )
    assert replayed.headers.get("idempotent-replayed") == "true"
    assert replayed.content == stored.content
    versioned = http.post(
        "/v2/models/lr/versions/1/infer", content=answers[0].request.content,
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert versioned.status_code == 200
    assert versioned.headers.get("idempotent-replayed") is None


def binary_answer(response: httpx.Response) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the binary tensor bytes of a binary V2 answer."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    return orjson.loads(response.content[:length]), response.content[length:]


def test_v2_binary_data_output_by_hand(served: Served, http: httpx.Client) -> None:
    frame = frame_of([row(seed) for seed in range(88, 91)])
    asked = {"id": "bin-1", "inputs": kserve_columns(frame)}
    plain = http.post("/v2/models/lr/infer", json=asked)
    assert plain.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in plain.headers
    as_json = np.array(plain.json()["outputs"][0]["data"])
    binary = {**asked, "id": "bin-2", "parameters": {"binary_data_output": True}}
    header, data = binary_answer(http.post("/v2/models/lr/infer", json=binary))
    (output,) = header["outputs"]
    assert output == {
        "name": "predict",
        "datatype": "FP64",
        "shape": [3],
        "parameters": {"binary_data_size": 24},
    }
    scores = np.frombuffer(data, dtype="<f8")
    np.testing.assert_array_equal(scores, as_json)
    np.testing.assert_allclose(scores, served.expected(frame), rtol=0, atol=1e-12)
    # An output's own binary_data overrides the request's binary_data_output.
    override = {
        **binary,
        "id": "bin-3",
        "outputs": [{"name": "predict", "parameters": {"binary_data": False}}],
    }
    response = http.post("/v2/models/lr/infer", json=override)
    assert response.headers["content-type"] == "application/json"
    np.testing.assert_array_equal(response.json()["outputs"][0]["data"], as_json)


def test_v2_binary_answer_replays_whole(http: httpx.Client) -> None:
    body = {
        "id": "bin-replay",
        "inputs": kserve_columns(frame_of([row(92), row(93)])),
        "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
    }
    key = {"Idempotency-Key": "bin-replay"}
    first, again = (http.post("/v2/models/lr/infer", json=body, headers=key) for _ in range(2))
    assert again.headers.get("idempotent-replayed") == "true"
    assert binary_answer(again) == binary_answer(first)
    assert len(binary_answer(first)[1]) == 16


def test_v2_binary_output_parameters_are_checked(http: httpx.Client) -> None:
    body = {
        "inputs": kserve_columns(frame_of([row(94)])),
        "outputs": [{"name": "predict", "parameters": {"binary_data": "yes", "classification": 2}}],
    }
    error = assert_clean_error(http.post("/v2/models/lr/infer", json=body), 400)
    assert "'outputs[0].parameters.binary_data' is not a boolean" in error
    assert "'outputs[0].parameters.classification' is not supported" in error


# -- raw error bodies of the V2 routes ----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content", "headers", "status"),
    [
        ("/v2/models/lr/infer", b'{"inputs": [424242.4242', {}, 400),
        ("/v2/models/lr/infer", b'{"inputs": "s3cr3t-value"}', {}, 400),
        ("/v2/models/lr/infer", b"[424242.4242]", {}, 400),
        ("/v2/models/lr/infer", b'{"inputs": []}', {"inference-header-content-length": "x"}, 400),
        ("/v2/models/lr/infer", b'{"inputs": []}', {"inference-header-content-length": "99"}, 400),
        ("/v2/models/lr/infer", b"{}", {"inference-header-content-length": b"\xb2"}, 400),
        ("/v2/models/nope/infer", b"{}", {}, 404),
        ("/v2/models/lr/versions/7/infer", b"{}", {}, 404),
        ("/v2/models/nope", None, {}, 404),
        ("/v2/models/lr/versions/7/ready", None, {}, 404),
    ],
    ids=[
        "truncated",
        "inputs-string",
        "list",
        "bad-length",
        "long-length",
        "superscript-length",
        "model",
        "version",
        "meta",
        "ready",
    ],
)
def test_v2_error_bodies_are_clean(
    http: httpx.Client, path: str, content: bytes | None, headers: dict[str, Any], status: int
) -> None:
    if content is None:
        response = http.get(path)
    else:
        response = http.post(path, content=content, headers=headers)
    assert_clean_error(response, status)


# -- MLflow parity -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """MLflow's scoring app and prodml's, both serving one fitted model."""

    kind: str
    mlflow: TestClient
    prodml: TestClient
    frame: pd.DataFrame


@pytest.fixture(scope="module", params=["classifier", "regressor"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import infer_signature as mlflow_signature
    from mlflow.pyfunc import scoring_server

    root = tmp_path_factory.mktemp(request.param)
    model: Any
    if request.param == "classifier":
        model, X = lr_model()
    else:
        X, _ = numeric_data(seed=3)
        model = Ridge().fit(X, 2 * X["f0"] - X["f5"] + 0.1)
    saved = root / "mlflow-model"
    sample = X.head(5)
    mlflow.sklearn.save_model(
        model,
        str(saved),
        signature=mlflow_signature(sample, model.predict(sample)),
        pip_requirements=[],
    )
    project = Project.init(root / "project", name="parity")
    version = register(project, model, X, name="m")
    project.deployments.deploy("m", DeploymentSpec.single(version.ref), actor="test")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", raising=False)  # init() sets it
        theirs = scoring_server.init(mlflow.pyfunc.load_model(str(saved)))
        with TestClient(theirs) as mlflow_client, TestClient(serving_app(project)) as ours:
            yield Pair(request.param, mlflow_client, ours, X.iloc[100:104].reset_index(drop=True))
    project.close()


def parity_body(kind: str, frame: pd.DataFrame) -> tuple[str, str]:
    records = frame.to_dict(orient="records")
    if kind == "dataframe_split":
        split = {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}
        return "application/json", json.dumps({"dataframe_split": split})
    if kind == "dataframe_split_index":
        return "application/json", json.dumps({"dataframe_split": frame.to_dict(orient="split")})
    if kind == "inputs_columns":
        return "application/json", json.dumps({"inputs": frame.to_dict(orient="list")})
    if kind == "text/csv":
        return "text/csv", frame.to_csv(index=False)
    return "application/json", json.dumps({kind: records})


def both(pair: Pair, content_type: str, body: str) -> tuple[httpx.Response, httpx.Response]:
    headers = {"content-type": content_type}
    return (
        pair.mlflow.post("/invocations", content=body, headers=headers),
        pair.prodml.post("/invocations", content=body, headers=headers),
    )


@pytest.mark.parametrize(
    "kind",
    [
        "dataframe_split",
        "dataframe_split_index",
        "dataframe_records",
        "instances",
        "inputs",
        "inputs_columns",
        "text/csv",
    ],
)
def test_mlflow_parity(pair: Pair, kind: str) -> None:
    theirs, ours = both(pair, *parity_body(kind, pair.frame))
    assert theirs.status_code == 200, theirs.text
    assert ours.status_code == theirs.status_code, ours.text
    assert ours.json() == theirs.json()
    predictions = ours.json()["predictions"]
    assert len(predictions) == len(pair.frame)
    assert len(set(map(type, predictions))) == 1


def test_mlflow_parity_value_types(pair: Pair) -> None:
    _, ours = both(pair, *parity_body("dataframe_records", pair.frame))
    predictions = ours.json()["predictions"]
    if pair.kind == "classifier":
        assert all(type(p) is int for p in predictions)  # labels, as MLflow answers them
        assert set(predictions) <= {0, 1}
    else:
        assert all(type(p) is float for p in predictions)


MALFORMED = {
    "not-json": ("application/json", '{"dataframe_records": [424242.4242'),
    "a-list": ("application/json", "[424242.4242]"),
    "no-format": ("application/json", '{"rows": [424242.4242, "s3cr3t-value"]}'),
    "two-formats": ("application/json", '{"inputs": [], "instances": []}'),
    "bad-csv": ("text/csv", 'f0,f1\n424242.4242,"s3cr3t-value'),
    "content-type": ("text/plain", "424242.4242"),
    "charset": ("application/json; charset=latin-1", "{}"),
    "missing-column": ("application/json", '{"dataframe_records": [{"f0": 424242.4242}]}'),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_mlflow_parity_errors(pair: Pair, case: str) -> None:
    theirs, ours = both(pair, *MALFORMED[case])
    assert 400 <= theirs.status_code < 500, theirs.text
    assert_clean_error(ours)
    if case == "missing-column":
        # MLflow answers 400 for a schema mismatch; prodml's contract violations are 422
        assert (theirs.status_code, ours.status_code) == (400, 422)
    else:
        assert ours.status_code == theirs.status_code


@pytest.mark.parametrize("path", ["/ping", "/health", "/version"])
def test_mlflow_parity_health(pair: Pair, path: str) -> None:
    assert pair.mlflow.get(path).status_code == 200
    assert pair.prodml.get(path).status_code == 200


def test_invocations_against_the_running_server(served: Served, http: httpx.Client) -> None:
    """The same protocol over the real process: labels from the model's own ``predict``."""
    frame = frame_of([row(90), row(91), row(92)])
    response = http.post("/invocations", json={"dataframe_split": frame.to_dict(orient="split")})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": served.model.predict(frame).tolist()}
    bad = http.post("/invocations", json={"dataframe_records": [{"f0": SECRET, "zz": 1.0}]})
    assert_clean_error(bad, 422)
