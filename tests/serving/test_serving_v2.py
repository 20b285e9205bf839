"""The Open Inference Protocol V2 wire format, including bodies built by tritonclient."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import tritonclient.http as triton
from tritonclient.http._utils import _get_inference_request

from prodml.core import BadOutputError, DefinitionError
from prodml.registry import ColumnSpec, Signature
from prodml.serving._v2 import (
    decode_infer,
    dtype_from_v2,
    encode_infer,
    encode_infer_body,
    json_header_length,
    model_metadata,
    split_infer_body,
    v2_datatype,
)
from prodml.serving._wire import RequestInvalid

SECRETS = ("s3cr3t-value", "123456.789")


def sig(*specs: tuple[str, str], output: str = "float64", shape: tuple[int, ...] = ()) -> Signature:
    return Signature(tuple(ColumnSpec(n, d) for n, d in specs), output, shape)


NUMERIC = sig(("x", "float64"), ("n", "int64"), ("y", "float32"))
MIXED = sig(("x", "float64"), ("n", "int32"), ("b", "bool"), ("s", "string"), ("t", "timestamp"))


def tensor(name: str, datatype: str, data: Any, shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "shape": shape or [len(data)], "datatype": datatype, "data": data}


def invalid(body: Any, signature: Signature, status: int, **kwargs: Any) -> RequestInvalid:
    with pytest.raises(RequestInvalid) as info:
        decode_infer(body, signature, model="flights", **kwargs)
    error = info.value
    text = str(error) + repr([p.to_dict() for p in error.details])
    assert all(secret not in text for secret in SECRETS)
    assert error.status == status, error
    assert str(error).startswith("inference request for model 'flights' has")
    return error


def fields(error: RequestInvalid) -> list[str]:
    return [problem.field for problem in error.details]


def test_datatype_mapping_and_inverse() -> None:
    assert [v2_datatype(d) for d in ("bool", "int8", "int64", "float32", "float64")] == [
        "BOOL", "INT8", "INT64", "FP32", "FP64",
    ]  # fmt: skip
    assert {v2_datatype(d) for d in ("string", "binary", "date", "timestamp")} == {"BYTES"}
    for dtype in ("bool", "int8", "int16", "int32", "int64", "float32", "float64", "string"):
        assert dtype_from_v2(v2_datatype(dtype)) == dtype
    assert dtype_from_v2("FP16") == "float32"
    assert dtype_from_v2("UINT64") == "int64"
    with pytest.raises(DefinitionError, match="'complex'"):
        v2_datatype("complex")
    with pytest.raises(DefinitionError, match="'BF16'"):
        dtype_from_v2("BF16")


def test_one_tensor_per_column_with_every_datatype() -> None:
    signature = sig(
        ("f16", "float32"), ("f32", "float32"), ("f64", "float64"), ("fi", "float64"),
        ("i8", "int8"), ("i16", "int16"), ("i32", "int32"), ("i64", "int64"),
        ("u8", "int16"), ("u16", "int32"), ("u32", "int64"), ("u64", "int64"),
        ("b", "bool"), ("s", "string"), ("bin", "binary"), ("d", "date"), ("t", "timestamp"),
    )  # fmt: skip
    inputs = [
        tensor("f16", "FP16", [0.5, 1]), tensor("f32", "FP32", [0.25, 2]),
        tensor("f64", "FP64", [1.5, -2]), tensor("fi", "INT32", [1, 2]),
        tensor("i8", "INT8", [-128, 127]), tensor("i16", "INT16", [1, 2]),
        tensor("i32", "INT32", [3, 4]), tensor("i64", "INT64", [2**62, 5]),
        tensor("u8", "UINT8", [255, 0]), tensor("u16", "UINT16", [1, 2]),
        tensor("u32", "UINT32", [1, 2]), tensor("u64", "UINT64", [1, 2]),
        tensor("b", "BOOL", [True, False]), tensor("s", "BYTES", ["a", "b"]),
        tensor("bin", "BYTES", ["a", "b"]), tensor("d", "BYTES", ["2013-01-01", None]),
        tensor("t", "BYTES", ["2013-01-01T00:00:00Z", "2013-01-01T01:00:00Z"]),
    ]  # fmt: skip
    request = decode_infer({"inputs": inputs[::-1]}, signature)
    frame = request.frame
    assert list(frame.columns) == signature.columns
    assert frame["i64"].tolist() == [2**62, 5]
    assert frame["u8"].dtype == np.int16
    assert frame["t"].dtype == "datetime64[ns, UTC]"
    assert frame["bin"].tolist() == [b"a", b"b"]
    signature.check(frame)
    assert (request.id, request.parameters, request.outputs) == (None, {}, None)


def test_single_2d_tensor_flat_and_nested() -> None:
    flat = {"inputs": [tensor("input-0", "FP64", [0.5, 1, 2.5, 1.5, 2, 3.5], [2, 3])]}
    nested = {"inputs": [tensor("input-0", "FP32", [[0.5, 1, 2.5], [1.5, 2, 3.5]], [2, 3])]}
    expected = pd.DataFrame(
        {"x": [0.5, 1.5], "n": np.array([1, 2]), "y": np.array([2.5, 3.5], dtype=np.float32)}
    )
    for body in (flat, nested):
        pd.testing.assert_frame_equal(decode_infer(body, NUMERIC).frame, expected)
    ints = {"inputs": [tensor("x", "INT64", [1, 2, 3, 4, 5, 6], [2, 3])]}
    assert decode_infer(
        ints, sig(("a", "float64"), ("b", "int8"), ("c", "float32"))
    ).frame.shape == (2, 3)
    one = sig(("x", "float64"))
    assert decode_infer({"inputs": [tensor("input-0", "FP64", [1.0, 2.0])]}, one).frame[
        "x"
    ].tolist() == [1.0, 2.0]
    strings = sig(("a", "string"), ("b", "string"))
    frame = decode_infer(
        {"inputs": [tensor("in", "BYTES", [["p", "q"], ["r", "s"]], [2, 2])]}, strings
    ).frame
    assert frame.to_dict("list") == {"a": ["p", "r"], "b": ["q", "s"]}


def test_nested_column_data_and_n_by_1_shapes() -> None:
    body = {"inputs": [tensor("x", "FP64", [[1.0], [2.0]], [2, 1]), tensor("n", "INT64", [[1], [2]], [2, 1]),
                       tensor("y", "FP32", [0.5, 0.5])]}  # fmt: skip
    assert decode_infer(body, NUMERIC).frame["n"].tolist() == [1, 2]


def test_parameters_id_and_outputs_are_kept() -> None:
    body = {
        "id": "req-1",
        "parameters": {"content_type": "pd", "custom": 1},
        "outputs": [{"name": "predict", "parameters": {"binary_data": False}}],
        "inputs": [
            {**tensor("input-0", "FP64", [1, 2, 3], [1, 3]), "parameters": {"content_type": "np"}}
        ],
    }
    request = decode_infer(body, NUMERIC)
    assert request.id == "req-1"
    assert request.parameters == {"content_type": "pd", "custom": 1}
    assert request.outputs == ["predict"]


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ([1, 2], "body", "is not a JSON object"),
        ({"inputs": []}, "inputs", "is missing or empty"),
        ({"id": 5, "inputs": [tensor("x", "FP64", [1.0])]}, "id", "is not a string"),
        ({"inputs": [tensor("x", "FP64", [1.0])], "parameters": [1]}, "parameters", "is not an object"),
        ({"inputs": [tensor("x", "FP64", [1.0])], "outputs": "predict"}, "outputs", "is malformed"),
        ({"inputs": [tensor("x", "FP64", [1.0]), tensor("x", "FP64", [1.0])]}, "x", "appears more than once"),
        ({"inputs": [{"shape": [1], "datatype": "FP64", "data": [1.0]}]}, "inputs[0]", "is malformed"),
        ({"inputs": [tensor("x", "FP64", [1.0], [-1])]}, "x", "has a malformed shape"),
        ({"inputs": [tensor("x", "FP99", [1.0])]}, "x", "has an unknown datatype"),
        ({"inputs": [tensor("x", ["FP64"], [1.0])]}, "x", "has an unknown datatype"),  # type: ignore[arg-type]
        ({"inputs": [tensor("x", {"a": 1}, [1.0])]}, "x", "has an unknown datatype"),  # type: ignore[arg-type]
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64"}]}, "x", "has no data"),
        ({"inputs": [tensor("x", "FP64", [1.0, 123456.789], [3])]}, "x", "has 2 values"),
        ({"inputs": [tensor("x", "FP64", [1.0, "s3cr3t-value"])]}, "x", "holds a str at position 1"),
        ({"inputs": [tensor("x", "INT64", [1, 123456.789])]}, "x", "holds a float at position 1"),
        ({"inputs": [tensor("x", "BOOL", [1])]}, "x", "holds a int at position 0"),
        ({"inputs": [tensor("x", "BYTES", [123456.789])]}, "x", "holds a float at position 0"),
        ({"inputs": [tensor("x", "FP64", [1.0])], "outputs": [{"name": "proba"}]}, "outputs",
         "has 1 name not among the model's outputs"),
    ],
)  # fmt: skip
def test_malformed_bodies_are_400(body: Any, field: str, problem: str) -> None:
    error = invalid(body, NUMERIC, 400)
    assert field in fields(error)
    assert any(p.problem.startswith(problem) for p in error.details if p.field == field)


@pytest.mark.parametrize(
    ("inputs", "expected_fields"),
    [
        ([tensor("x", "FP64", [1.0]), tensor("n", "INT64", [1])], ["y"]),
        ([tensor("x", "FP64", [1.0]), tensor("n", "INT64", [1]), tensor("y", "FP32", [1.0]),
          tensor("zz", "FP32", [123456.789])], ["request"]),
        ([tensor("x", "BYTES", ["s3cr3t-value"]), tensor("n", "FP64", [1.5]), tensor("y", "BOOL", [True])],
         ["x", "n", "y"]),
        ([tensor("x", "FP64", [1.0, 2.0], [1, 2]), tensor("n", "INT64", [1]), tensor("y", "FP32", [1.0])], ["x"]),
        ([tensor("x", "FP64", [1.0, 2.0]), tensor("n", "INT64", [1]), tensor("y", "FP32", [1.0, 2.0])], ["n"]),
        ([tensor("input-0", "FP64", [1.0, 2.0, 3.0, 4.0], [2, 2])], ["input-0"]),
        ([tensor("input-0", "BYTES", ["a", "b", "c"], [1, 3])], ["input-0"]),
        ([tensor("input-0", "FP64", [1.0, 123456.789, 3.0], [1, 3])], ["n"]),
    ],
)  # fmt: skip
def test_contract_problems_are_422_naming_every_field(
    inputs: list[Any], expected_fields: list[str]
) -> None:
    error = invalid({"inputs": inputs}, NUMERIC, 422)
    assert sorted(fields(error)) == sorted(expected_fields)


def test_422_messages_say_what_was_expected() -> None:
    error = invalid({"inputs": [tensor("x", "FP64", [1.0, 2.0], [1, 2]), tensor("n", "FP64", [1.0]),
                                tensor("y", "FP32", [1.0])]}, NUMERIC, 422)  # fmt: skip
    problems = {p.field: (p.problem, p.expected) for p in error.details}
    assert problems["x"] == ("has shape [1, 2]", "[N] or [N, 1]")
    assert problems["n"] == ("has datatype FP64", "INT64 (or a datatype it holds losslessly)")
    error = invalid({"inputs": [tensor("input-0", "FP64", [1.0, 2.0], [1, 2])]}, NUMERIC, 422)
    assert error.details[0].expected == "[N, 3]: one column per model input, in order (x, n, y)"


def test_encode_every_output_kind() -> None:
    cases = [
        (np.array([0.25, 0.5], dtype=np.float32), "FP64", [0.25, 0.5]),
        (np.array([1, 2], dtype=np.int8), "INT64", [1, 2]),
        (np.array([True, False]), "BOOL", [True, False]),
        (np.array(["a", "b"]), "BYTES", ["a", "b"]),
        (np.array([b"a", b"b"]), "BYTES", ["a", "b"]),
        (np.array(["a", None, 3], dtype=object), "BYTES", ["a", None, "3"]),
        (np.array(["2013-01-01T00:00"], dtype="datetime64[s]"), "BYTES", ["2013-01-01T00:00:00"]),
    ]
    for scores, datatype, data in cases:
        out = encode_infer("m", "1", None, scores, sig(("x", "float64"), output="string"))[
            "outputs"
        ]
        assert out == [
            {"name": "predict", "datatype": datatype, "shape": [len(data)], "data": data}
        ]
    probs = encode_infer("m", None, "r", np.array([[0.1, 0.9], [0.8, 0.2]]), sig(shape=(2,)),
                         outputs=["predict"], parameters={"content_type": "np"})  # fmt: skip
    assert probs == {
        "model_name": "m",
        "id": "r",
        "parameters": {"content_type": "np"},
        "outputs": [
            {"name": "predict", "datatype": "FP64", "shape": [2, 2], "data": [0.1, 0.9, 0.8, 0.2]}
        ],
    }
    casted = encode_infer("m", "1", None, np.array([1, 2.5], dtype=object), sig(output="float32"))
    assert casted["outputs"][0]["datatype"] == "FP64"
    with pytest.raises(BadOutputError, match="'predict' holds values that are not int64"):
        encode_infer("m", "1", None, np.array(["s3cr3t-value"], dtype=object), sig(output="int64"))


def test_encode_rejects_unknown_requested_outputs() -> None:
    with pytest.raises(RequestInvalid) as info:
        encode_infer("m", "1", None, np.array([1.0]), sig(), outputs=["predict", "proba"])
    assert info.value.status == 400
    assert [(p.field, p.expected) for p in info.value.details] == [("outputs", "predict")]
    assert "proba" not in str(info.value)  # a made-up name is counted, not repeated


def test_model_metadata() -> None:
    assert model_metadata("flights", ["1", "2"], MIXED, platform="sklearn") == {
        "name": "flights",
        "versions": ["1", "2"],
        "platform": "sklearn",
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [-1]},
            {"name": "n", "datatype": "INT32", "shape": [-1]},
            {"name": "b", "datatype": "BOOL", "shape": [-1]},
            {"name": "s", "datatype": "BYTES", "shape": [-1]},
            {"name": "t", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}],
    }
    assert model_metadata("m", [], sig(output="int8"))["outputs"][0]["datatype"] == "INT64"
    assert model_metadata("m", [], sig(output="bool"))["outputs"][0]["datatype"] == "BOOL"


# -- compatibility with tritonclient ------------------------------------------------


def triton_body(
    inputs: list[triton.InferInput], outputs: list[Any] | None = None
) -> tuple[bytes, int | None]:
    body, json_size = _get_inference_request(
        inputs=inputs, request_id="req-7", outputs=outputs, sequence_id=0, sequence_start=False,
        sequence_end=False, priority=0, timeout=None, custom_parameters={"tenant": "a"},
    )  # fmt: skip
    return body, json_size


def mixed_inputs(binary: bool) -> list[triton.InferInput]:
    arrays = {
        "x": np.array([0.5, 1.5]), "n": np.array([1, 2], dtype=np.int32),
        "b": np.array([True, False]), "s": np.array(["ab", "ü"], dtype=object),
        "t": np.array([b"2013-01-01T00:00:00Z", b"2013-06-01T12:00:00Z"], dtype=object),
    }  # fmt: skip
    inputs = []
    for name, array in arrays.items():
        datatype = "BYTES" if array.dtype == object else triton.np_to_triton_dtype(array.dtype)
        item = triton.InferInput(name, list(array.shape), datatype)
        item.set_data_from_numpy(array, binary_data=binary)
        inputs.append(item)
    return inputs


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_tensor_per_column(binary: bool) -> None:
    outputs = [triton.InferRequestedOutput("predict", binary_data=binary)]
    raw, json_size = triton_body(mixed_inputs(binary), outputs)
    assert (json_size is not None) == binary
    body, rest = split_infer_body(raw, json_size)
    request = decode_infer(body, MIXED, binary=rest)
    assert request.id == "req-7"
    assert request.outputs == ["predict"]
    assert request.parameters == {"tenant": "a"}
    frame = request.frame
    assert frame["s"].tolist() == ["ab", "ü"]
    assert frame["n"].dtype == np.int32
    assert frame["t"].tolist()[1] == pd.Timestamp("2013-06-01T12:00", tz="UTC")
    MIXED.check(frame)


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_single_2d_tensor(binary: bool) -> None:
    grid = np.array([[0.5, 1, 2.5], [1.5, 2, 3.5]], dtype=np.float32)
    item = triton.InferInput("input-0", list(grid.shape), "FP32")
    item.set_data_from_numpy(grid, binary_data=binary)
    body, rest = split_infer_body(*triton_body([item]))
    frame = decode_infer(body, NUMERIC, binary=rest).frame
    assert frame.to_dict("list") == {"x": [0.5, 1.5], "n": [1, 2], "y": [2.5, 3.5]}
    assert frame.dtypes.astype(str).tolist() == ["float64", "int64", "float32"]


def test_tritonclient_binary_data_problems() -> None:
    raw, json_size = triton_body(mixed_inputs(True))
    body, rest = split_infer_body(raw, json_size)
    error = invalid(body, MIXED, 400, binary=rest[:-3])
    assert "t" in fields(error)
    invalid(body, MIXED, 400, binary=rest + b"\x00")
    with pytest.raises(RequestInvalid) as info:
        split_infer_body(raw, len(raw) + 5)
    assert info.value.status == 400
    with pytest.raises(RequestInvalid):
        split_infer_body(b'{"inputs": s3cr3t-value}')


def test_tritonclient_reads_our_response() -> None:
    scores = np.array([[0.1, 0.9], [0.7, 0.3]])
    response = encode_infer("flights", "3", "req-7", scores, sig(shape=(2,)))
    result = triton.InferResult.from_response_body(orjson.dumps(response))
    np.testing.assert_array_equal(result.as_numpy("predict"), scores)
    assert result.get_response()["id"] == "req-7"
    labels = encode_infer("flights", "3", None, np.array(["late", "on-time"]), sig(output="string"))
    as_bytes = triton.InferResult.from_response_body(orjson.dumps(labels)).as_numpy("predict")
    assert [v.decode() if isinstance(v, bytes) else v for v in as_bytes.tolist()] == [
        "late",
        "on-time",
    ]


# -- binary outputs (Triton's binary tensor data extension) -------------------------------

ONE_INPUT = {"inputs": [tensor("input-0", "FP64", [1, 2, 3], [1, 3])]}


@pytest.mark.parametrize(
    ("parameters", "outputs", "binary"),
    [
        (None, None, set()),
        ({"binary_data_output": True}, None, {"predict"}),
        ({"binary_data_output": False}, None, set()),
        ({"binary_data_output": True}, [{"name": "predict"}], {"predict"}),
        ({"binary_data_output": True}, [{"name": "predict", "parameters": {"binary_data": False}}],
         set()),
        (None, [{"name": "predict", "parameters": {"binary_data": True}}], {"predict"}),
        ({"binary_data_output": False}, [{"name": "predict", "parameters": {"binary_data": True}}],
         {"predict"}),
    ],
)  # fmt: skip
def test_binary_outputs_asked_for(parameters: Any, outputs: Any, binary: set[str]) -> None:
    body = {**ONE_INPUT, **({"parameters": parameters} if parameters else {})}
    if outputs is not None:
        body["outputs"] = outputs
    assert decode_infer(body, NUMERIC).binary_outputs == binary


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({**ONE_INPUT, "parameters": {"binary_data_output": "yes"}},
         "parameters.binary_data_output", "is not a boolean"),
        ({**ONE_INPUT, "outputs": [{"name": "predict", "parameters": {"binary_data": 1}}]},
         "outputs[0].parameters.binary_data", "is not a boolean"),
        ({**ONE_INPUT, "outputs": [{"name": "predict", "parameters": [1]}]},
         "outputs[0].parameters", "is not an object"),
        ({**ONE_INPUT, "outputs": [{"name": "predict", "parameters": {"classification": 2}}]},
         "outputs[0].parameters.classification", "is not supported"),
        ({**ONE_INPUT, "outputs": [{"name": "predict",
                                    "parameters": {"shared_memory_region": "r"}}]},
         "outputs[0].parameters.shared_memory_region", "is not supported"),
    ],
)  # fmt: skip
def test_bad_output_parameters_are_400(body: Any, field: str, problem: str) -> None:
    error = invalid(body, NUMERIC, 400)
    assert [(p.field, p.problem) for p in error.details] == [(field, problem)]


def test_tritonclient_asks_for_binary_outputs() -> None:
    grid = triton.InferInput("input-0", [1, 3], "FP64")
    grid.set_data_from_numpy(np.array([[0.5, 1, 2.5]]), binary_data=False)
    for outputs, binary in [
        (None, {"predict"}),  # tritonclient then sets binary_data_output
        ([triton.InferRequestedOutput("predict", binary_data=True)], {"predict"}),
        ([triton.InferRequestedOutput("predict", binary_data=False)], set()),
    ]:
        body, rest = split_infer_body(*triton_body([grid], outputs))
        assert decode_infer(body, NUMERIC, binary=rest).binary_outputs == binary


@pytest.mark.parametrize(
    ("scores", "output"),
    [
        (np.array([[0.1, 0.9], [0.7, 0.3], [np.nan, 1.0]]), "float64"),
        (np.array([3, -1, 2**40], dtype=np.int64), "int64"),
        (np.array([True, False, True]), "bool"),
        (np.array(["late", "on-time", "ünïcode"], dtype=object), "string"),
        (np.array([], dtype=np.float64), "float64"),
    ],
    ids=["fp64-2d", "int64", "bool", "bytes", "empty"],
)
def test_binary_response_reads_back_in_tritonclient(scores: np.ndarray, output: str) -> None:
    signature = sig(("x", "float64"), output=output, shape=scores.shape[1:])
    as_json, no_header = encode_infer_body("m", "1", "r", scores, signature, binary=())
    assert no_header is None
    assert as_json == orjson.dumps(encode_infer("m", "1", "r", scores, signature))
    body, length = encode_infer_body("m", "1", "r", scores, signature, binary={"predict"})
    assert length is not None
    assert json_header_length(body) == length
    header = orjson.loads(body[:length])
    (tensor_,) = header["outputs"]
    assert "data" not in tensor_
    assert tensor_["parameters"] == {"binary_data_size": len(body) - length}
    assert tensor_["shape"] == list(scores.shape)
    binary = triton.InferResult.from_response_body(body, header_length=length)
    plain = triton.InferResult.from_response_body(as_json)
    got, want = binary.as_numpy("predict"), plain.as_numpy("predict")
    assert got is not None
    assert want is not None
    assert (got.dtype, got.shape) == (want.dtype, want.shape)
    if output == "string":  # binary BYTES come back as bytes, JSON ones as str
        got = np.array([v.decode() for v in got.tolist()], dtype=object)
    np.testing.assert_array_equal(got, want)
    assert binary.get_response()["id"] == "r"


def test_binary_bytes_output_cannot_carry_nulls() -> None:
    scores = np.array(["a", None], dtype=object)
    with pytest.raises(RequestInvalid) as info:
        encode_infer_body("m", "1", None, scores, sig(output="string"), binary={"predict"})
    assert info.value.status == 422
    assert [p.field for p in info.value.details] == ["predict"]
    assert "binary_data false" in info.value.details[0].expected
