"""The Open Inference Protocol V2 (KServe v2 / Triton) REST JSON wire format.

A request carries either one tensor per input column (shape ``[N]`` or ``[N, 1]``) or a
single 2-D tensor ``[N, K]`` whose columns are the signature's, in order; ``data`` is
flat (row-major) or nested. Triton's binary tensor extension is read too: pass the bytes
after the JSON header as ``binary`` (:func:`split_infer_body` splits a raw body). A
malformed or self-inconsistent body raises :class:`RequestInvalid` 400; a well-formed
one that does not fit the model (missing or extra inputs, wrong datatype or rank, bad
values) raises 422. The one output tensor is ``predict``; it is answered in the same
binary extension when the request asks (``parameters.binary_data_output``, or the
output's own ``parameters.binary_data``, which wins): see :func:`encode_infer_body`.
Output parameters of extensions this server lacks (classification, shared memory) are
refused with 400, never ignored.

>>> from prodml.registry import ColumnSpec, Signature
>>> sig = Signature((ColumnSpec("x", "float64"), ColumnSpec("n", "int64")), "float64")
>>> body = {"id": "r1", "inputs": [{"name": "input-0", "shape": [2, 2],
...         "datatype": "FP64", "data": [[0.5, 1], [1.5, 2]]}]}
>>> request = decode_infer(body, sig)
>>> request.id, request.frame.to_dict("list")
('r1', {'x': [0.5, 1.5], 'n': [1, 2]})
>>> encode_infer("m", "1", "r1", np.array([0.25, 0.75]), sig, outputs=None)["outputs"]
[{'name': 'predict', 'datatype': 'FP64', 'shape': [2], 'data': [0.25, 0.75]}]
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from prodml.core.errors import BadOutputError
from prodml.registry import Signature
from prodml.serving._v2_types import (
    DATATYPES,
    NUMPY_DTYPES,
    V2_OF,
    accepts,
    dtype_from_v2,
    family_of,
    v2_datatype,
)
from prodml.serving._wire import (
    FieldProblem,
    RequestInvalid,
    check_columns,
    check_row_limit,
    unknown_fields,
)

__all__ = [
    "BINARY_CONTENT_TYPE",
    "DATATYPES",
    "OUTPUT_NAME",
    "V2Request",
    "check_outputs",
    "decode_infer",
    "dtype_from_v2",
    "encode_infer",
    "encode_infer_body",
    "json_header_length",
    "model_metadata",
    "split_infer_body",
    "v2_datatype",
]

OUTPUT_NAME = "predict"
BINARY_CONTENT_TYPE = "application/octet-stream"
"""The content type of a response with binary outputs (JSON, then the tensor bytes)."""
# Output parameters of Triton extensions this server does not implement: refused, never
# ignored (ignoring them would answer something other than what was asked).
_UNSUPPORTED_OUTPUT_PARAMETERS = (
    "classification",
    "shared_memory_region",
    "shared_memory_byte_size",
    "shared_memory_offset",
)
_NONE = type(None)
_VALUE_TYPES = {
    "BOOL": frozenset({bool, _NONE}),
    "BYTES": frozenset({str, _NONE}),
    "FP": frozenset({int, float, _NONE}),
    "INT": frozenset({int, _NONE}),
}
_OUTPUT_CASTS = {
    "bool": np.bool_, "float32": np.float64, "float64": np.float64,
    "int8": np.int64, "int16": np.int64, "int32": np.int64, "int64": np.int64,
}  # fmt: skip


@dataclass(frozen=True)
class V2Request:
    """A decoded inference request: its id, request-level parameters, the model's input
    frame, the names of the outputs asked for (``None``: all) and of those to answer as
    binary tensor data (``binary_data``, else the request's ``binary_data_output``)."""

    id: str | None
    parameters: dict[str, Any]
    frame: pd.DataFrame
    outputs: list[str] | None
    binary_outputs: frozenset[str] = frozenset()


@dataclass
class _Tensor:
    name: str
    datatype: str
    shape: list[int]
    values: list[Any] | np.ndarray


def split_infer_body(raw: bytes, header_length: int | None = None) -> tuple[Any, bytes]:
    """The JSON part of a raw request body, parsed, and the binary tensor data after it
    (``header_length`` is Triton's ``Inference-Header-Content-Length``)."""
    cut = len(raw) if header_length is None else header_length
    try:
        if not 0 <= cut <= len(raw):
            raise ValueError
        return orjson.loads(raw[:cut]), raw[cut:]
    except (orjson.JSONDecodeError, ValueError):
        expected = "a JSON inference request (its byte length in Inference-Header-Content-Length)"
        raise RequestInvalid.of(
            [FieldProblem("body", "is not valid JSON", expected)], status=400
        ) from None


def decode_infer(
    body: Any,
    signature: Signature,
    *,
    binary: bytes = b"",
    model: str = "model",
    max_rows: int | None = None,
) -> V2Request:
    """The request in ``body`` (a parsed JSON object) checked against ``signature``;
    one of more than ``max_rows`` rows is refused (413) before any value is read."""
    subject = f"inference request for model {model!r}"
    if not isinstance(body, Mapping):
        problem = FieldProblem("body", "is not a JSON object", "an inference request object")
        raise RequestInvalid.of([problem], status=400, subject=subject)
    problems: list[FieldProblem] = []
    request_id, parameters = body.get("id"), body.get("parameters") or {}
    if not isinstance(request_id, str | _NONE):
        problems.append(FieldProblem("id", "is not a string", "a string request id"))
    if not isinstance(parameters, dict):
        problems.append(FieldProblem("parameters", "is not an object", "a JSON object"))
        parameters = {}
    all_binary = parameters.get("binary_data_output", False)
    if not isinstance(all_binary, bool):
        field = "parameters.binary_data_output"
        problems.append(FieldProblem(field, "is not a boolean", "true or false"))
    outputs, binary_outputs = _requested(body.get("outputs"), all_binary is True, problems)
    try:
        check_outputs(outputs, model)
    except RequestInvalid as exc:
        problems += exc.details
    inputs = body.get("inputs")
    tensors: list[_Tensor] = []
    if not isinstance(inputs, list) or not inputs:
        problems.append(FieldProblem("inputs", "is missing or empty", "a list of input tensors"))
    else:
        if max_rows is not None and not problems and all(map(_well_formed, inputs)):
            _check_rows(inputs, max_rows, subject)  # a malformed request: 400 first
        offset = 0
        for position, item in enumerate(inputs):
            tensor, offset = _tensor(item, position, binary, offset, problems)
            tensors += [tensor] if tensor is not None else []
        if offset != len(binary) and not problems:
            size = f"{offset} bytes of binary tensor data"
            problems.append(FieldProblem("binary data", f"has {len(binary)} bytes", size))
    names = [t.name for t in tensors]
    problems += [
        FieldProblem(n, "appears more than once", "each input once")
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    if problems:
        raise RequestInvalid.of(problems, status=400, subject=subject)
    columns, problems = _columns(tensors, signature)
    frame = None
    try:
        frame = check_columns(columns, signature) if columns is not None else None
    except RequestInvalid as exc:
        problems += exc.details
    if problems or frame is None:
        raise RequestInvalid.of(problems, status=422, subject=subject)
    return V2Request(request_id, dict(parameters), frame, outputs, binary_outputs)


def _check_rows(inputs: list[Any], limit: int, subject: str) -> None:
    """Refuse (413) tensors of more than ``limit`` rows, counted from each one's shape
    and the length of its data (flat or nested) or binary data, whichever says more."""
    for position, item in enumerate(inputs):
        shape = item["shape"]
        if not shape:
            continue
        width = max(1, math.prod(shape[1:]))
        rows = shape[0]
        data, params = item.get("data"), item.get("parameters")
        if type(data) is list and data:
            rows = max(rows, len(data) if type(data[0]) is list else len(data) // width)
        elif type(params) is dict and type(size := params.get("binary_data_size")) is int:
            datatype = item.get("datatype")
            if isinstance(datatype, str) and datatype in NUMPY_DTYPES:  # BYTES: lengths vary
                rows = max(rows, size // (np.dtype(NUMPY_DTYPES[datatype]).itemsize * width))
        check_row_limit(rows, limit, f"inputs[{position}]", subject=subject)


def _well_formed(item: Any) -> bool:
    """Whether an input tensor's name, shape and datatype are well formed (else
    :func:`_tensor` reports it)."""
    if type(item) is not dict or not isinstance(item.get("name"), str):
        return False
    shape, datatype = item.get("shape"), item.get("datatype")
    return (
        isinstance(shape, list)
        and all(type(d) is int and d >= 0 for d in shape)
        and isinstance(datatype, str)
        and (datatype in NUMPY_DTYPES or datatype == "BYTES")
    )


def _requested(
    outputs: Any, all_binary: bool, problems: list[FieldProblem]
) -> tuple[list[str] | None, frozenset[str]]:
    """The names of the outputs asked for (``None``: all) and of those to answer in
    binary: an output's ``binary_data`` overrides the request's ``binary_data_output``."""
    if outputs is None:
        return None, frozenset({OUTPUT_NAME} if all_binary else ())
    if not (
        isinstance(outputs, list)
        and all(isinstance(o, Mapping) and isinstance(o.get("name"), str) for o in outputs)
    ):
        problems.append(FieldProblem("outputs", "is malformed", "a list of {name, parameters?}"))
        return None, frozenset()
    binary = set()
    for position, output in enumerate(outputs):
        field = f"outputs[{position}].parameters"
        params = output.get("parameters", {})
        if not isinstance(params, Mapping):
            problems.append(FieldProblem(field, "is not an object", "a JSON object"))
            continue
        for name in _UNSUPPORTED_OUTPUT_PARAMETERS:
            if name in params:
                expected = "no such parameter: this server answers every output in full"
                problems.append(FieldProblem(f"{field}.{name}", "is not supported", expected))
        wanted = params.get("binary_data", all_binary)
        if not isinstance(wanted, bool):
            problems.append(
                FieldProblem(f"{field}.binary_data", "is not a boolean", "true or false")
            )
        elif wanted:
            binary.add(output["name"])
    return [o["name"] for o in outputs], frozenset(binary)


def _tensor(
    item: Any, position: int, binary: bytes, offset: int, problems: list[FieldProblem]
) -> tuple[_Tensor | None, int]:
    """One input tensor with flat values, or ``None`` after appending its problem."""
    name = item.get("name") if type(item) is dict else None
    field = name if isinstance(name, str) else f"inputs[{position}]"
    if not isinstance(name, str):
        problems.append(FieldProblem(field, "is malformed", "{name, shape, datatype, data}"))
        return None, offset
    shape, datatype, params = item.get("shape"), item.get("datatype"), item.get("parameters")
    params = params if type(params) is dict else {}
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        problems.append(FieldProblem(field, "has a malformed shape", "a list of sizes"))
        return None, offset
    if not isinstance(datatype, str) or (datatype not in NUMPY_DTYPES and datatype != "BYTES"):
        expected = f"one of {', '.join([*NUMPY_DTYPES, 'BYTES'])}"
        problems.append(FieldProblem(field, "has an unknown datatype", expected))
        return None, offset
    size = params.get("binary_data_size")
    values: Any
    if "data" not in item and type(size) is int and size >= 0:
        try:
            values = _from_binary(binary[offset : offset + size], datatype)
        except ValueError as exc:
            problems.append(FieldProblem(field, f"has binary data {exc}", f"{datatype} elements"))
            return None, offset + size
        offset += size
    elif type(values := item.get("data")) is list:
        kinds = set(map(type, values))
        if list in kinds:
            values = _flat(values)
            kinds = set(map(type, values))
        allowed = _VALUE_TYPES[family_of(datatype)]
        if not kinds <= allowed:
            at, kind = next((i, type(v)) for i, v in enumerate(values) if type(v) not in allowed)
            problem = f"holds a {kind.__name__} at position {at}"
            problems.append(FieldProblem(field, problem, f"{datatype} values"))
            return None, offset
    else:
        problems.append(FieldProblem(field, "has no data", "a list under 'data'"))
        return None, offset
    if len(values) != math.prod(shape):
        count = f"{math.prod(shape)} values for shape {shape}"
        problems.append(FieldProblem(field, f"has {len(values)} values", count))
        return None, offset
    return _Tensor(name, datatype, shape, values), offset


def _flat(data: list[Any]) -> list[Any]:
    return [leaf for v in data for leaf in (_flat(v) if type(v) is list else (v,))]


def _from_binary(chunk: bytes, datatype: str) -> list[Any] | np.ndarray:
    """Triton's binary tensor data: raw little-endian elements, or for BYTES each element
    prefixed by its 4-byte little-endian length (decoded as UTF-8 where it is text)."""
    if datatype != "BYTES":
        dtype = np.dtype(NUMPY_DTYPES[datatype])
        if len(chunk) % dtype.itemsize:
            raise ValueError(f"of {len(chunk)} bytes, not a whole number of elements")
        return np.frombuffer(chunk, dtype=dtype).astype(dtype.newbyteorder("="))
    values: list[Any] = []
    at = 0
    while at < len(chunk):
        n = struct.unpack_from("<I", chunk, at)[0] if at + 4 <= len(chunk) else len(chunk)
        if at + 4 + n > len(chunk):
            raise ValueError("with a truncated element")
        raw = chunk[at + 4 : at + 4 + n]
        try:
            values.append(raw.decode())
        except UnicodeDecodeError:
            values.append(raw)
        at += 4 + n
    return values


def _columns(
    tensors: list[_Tensor], signature: Signature
) -> tuple[dict[str, Any] | None, list[FieldProblem]]:
    """Columns by name from either layout, with the datatype and rank problems found
    (no columns when a 2-D tensor has one; a bad column tensor's values become nulls so
    that it is reported once)."""
    specs = {spec.name: spec.dtype for spec in signature.inputs}
    problems: list[FieldProblem] = []
    if len(tensors) == 1 and tensors[0].name not in specs:
        tensor, k = tensors[0], len(specs)
        family = family_of(tensor.datatype)
        if tensor.shape[1:] != [k] and not (k == 1 and len(tensor.shape) == 1):
            expected = f"[N, {k}]: one column per model input, in order ({', '.join(specs)})"
            return None, [FieldProblem(tensor.name, f"has shape {tensor.shape}", expected)]
        wrong = [n for n, d in specs.items() if not accepts(d, family, lenient=True)]
        if wrong:
            expected = f"a datatype every input reads (inputs {', '.join(wrong)} cannot)"
            return None, [FieldProblem(tensor.name, f"has datatype {tensor.datatype}", expected)]
        values = tensor.values
        if isinstance(values, np.ndarray):
            grid = values.reshape(-1, k)
            return {n: grid[:, j] for j, n in enumerate(specs)}, problems
        return {n: values[j::k] for j, n in enumerate(specs)}, problems
    columns: dict[str, Any] = {}
    for tensor in tensors:
        columns[tensor.name] = tensor.values
        dtype = specs.get(tensor.name)
        if dtype is None:
            continue
        if len(tensor.shape) not in (1, 2) or tensor.shape[1:] not in ([], [1]):
            problems.append(FieldProblem(tensor.name, f"has shape {tensor.shape}", "[N] or [N, 1]"))
        elif not accepts(dtype, family_of(tensor.datatype), lenient=False):
            expected = f"{V2_OF[dtype]} (or a datatype it holds losslessly)"
            problems.append(FieldProblem(tensor.name, f"has datatype {tensor.datatype}", expected))
    bad = {problem.field for problem in problems}
    rows = next((len(v) for n, v in columns.items() if n not in bad), 0)
    return {n: [None] * rows if n in bad else v for n, v in columns.items()}, problems


def check_outputs(outputs: list[str] | None, model: str = "model") -> None:
    """Raise :class:`RequestInvalid` (400) when a requested output does not exist."""
    unknown = [name for name in outputs or [] if name != OUTPUT_NAME]
    if unknown:
        problem = unknown_fields(len(unknown), "the model's outputs", OUTPUT_NAME, where="outputs")
        raise RequestInvalid.of(
            [problem], status=400, subject=f"inference request for model {model!r}"
        )


def _output(
    scores: np.ndarray, signature: Signature, model: str
) -> tuple[str, np.ndarray | list[Any]]:
    """The output datatype and flat row-major values for ``scores``: an array for numbers
    and booleans, a list of strings (or ``None``) for BYTES."""
    want = signature.output_dtype
    if scores.dtype.kind == "O" and want in _OUTPUT_CASTS:
        try:
            scores = scores.astype(_OUTPUT_CASTS[want])
        except (TypeError, ValueError):
            raise BadOutputError(
                f"model {model!r}: output {OUTPUT_NAME!r} holds values that are not {want}"
            ) from None
    kind = scores.dtype.kind
    flat = scores.ravel()
    if kind == "f":
        return "FP64", flat.astype(np.float64, copy=False)
    if kind in "iu":
        return "INT64", flat
    if kind == "b":
        return "BOOL", flat
    if kind == "M":
        return "BYTES", np.datetime_as_string(flat).tolist()
    text = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in flat.tolist()]
    return "BYTES", [v if v is None or isinstance(v, str) else str(v) for v in text]


def _binary(values: np.ndarray | list[Any], datatype: str) -> bytes:
    """Triton's binary tensor data of flat ``values``: raw little-endian elements, or
    for BYTES each element's UTF-8 prefixed by its 4-byte little-endian length."""
    if datatype != "BYTES":
        return np.asarray(values).astype(NUMPY_DTYPES[datatype], copy=False).tobytes()
    if any(v is None for v in values):
        raise RequestInvalid.of(
            [
                FieldProblem(
                    OUTPUT_NAME,
                    "holds nulls, which binary BYTES data cannot carry",
                    "binary_data false for this output (JSON carries nulls)",
                )
            ],
            status=422,
            subject="inference response",
        )
    encoded = [v.encode() for v in values]
    return b"".join(struct.pack("<I", len(raw)) + raw for raw in encoded)


def _response(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    parameters: Mapping[str, Any] | None,
    tensor: dict[str, Any],
) -> dict[str, Any]:
    response: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        response["model_version"] = model_version
    if request_id is not None:
        response["id"] = request_id
    if parameters:
        response["parameters"] = dict(parameters)
    response["outputs"] = [tensor]
    return response


def encode_infer(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    scores: np.ndarray,
    signature: Signature,
    *,
    outputs: list[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON inference response for ``scores`` (shape ``[N]`` or ``[N, k]``), echoing
    the request id and ``parameters``; RequestInvalid 400 when an unknown output is asked
    for."""
    tensor, values = _output_tensor(model_name, scores, signature, outputs)
    tensor["data"] = values.tolist() if isinstance(values, np.ndarray) else values
    return _response(model_name, model_version, request_id, parameters, tensor)


def _output_tensor(
    model_name: str, scores: np.ndarray, signature: Signature, outputs: list[str] | None
) -> tuple[dict[str, Any], Any]:
    """The output tensor's name, datatype and shape, and its values (as ``_output``
    gives them); RequestInvalid 400 when an unknown output is asked for."""
    check_outputs(outputs, model_name)
    array = np.asarray(scores)
    datatype, values = _output(array, signature, model_name)
    return {"name": OUTPUT_NAME, "datatype": datatype, "shape": list(array.shape)}, values


def encode_infer_body(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    scores: np.ndarray,
    signature: Signature,
    *,
    outputs: list[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    binary: Collection[str] = (),
) -> tuple[bytes, int | None]:
    """The response body for ``scores`` and the byte length of its JSON part, for
    ``Inference-Header-Content-Length`` (``None``: the body is all JSON).

    An output named in ``binary`` travels as Triton's binary tensor data: its JSON has
    ``parameters.binary_data_size`` instead of ``data``, and its raw bytes follow the JSON.

    >>> from prodml.registry import ColumnSpec, Signature
    >>> sig = Signature((ColumnSpec("x", "float64"),), "float64")
    >>> body, length = encode_infer_body("m", "1", None, np.array([0.5]), sig, binary={"predict"})
    >>> body[:length]
    b'{"model_name":"m","model_version":"1","outputs":[{"name":"predict","datatype":"FP64","shape":[1],"parameters":{"binary_data_size":8}}]}'
    >>> np.frombuffer(body[length:], "<f8").tolist()
    [0.5]
    """
    if OUTPUT_NAME not in binary:
        response = encode_infer(
            model_name, model_version, request_id, scores, signature,
            outputs=outputs, parameters=parameters,
        )  # fmt: skip
        return orjson.dumps(response), None
    tensor, values = _output_tensor(model_name, scores, signature, outputs)
    raw = _binary(values, tensor["datatype"])
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = orjson.dumps(_response(model_name, model_version, request_id, parameters, tensor))
    return header + raw, len(header)


def json_header_length(body: bytes) -> int:
    """The byte length of the JSON object that starts ``body`` (a binary response kept
    whole, e.g. replayed for an idempotency key): Latin-1 maps each byte to one character,
    and the bytes of UTF-8 text are all valid inside JSON strings.

    >>> header = '{"model_name": "f\u00fcr"}'.encode()
    >>> json_header_length(header + bytes([0, 255, 123])) == len(header)
    True
    """
    _, end = json.JSONDecoder().raw_decode(body.decode("latin-1"))
    return int(end)


def model_metadata(
    name: str, versions: list[str], signature: Signature, platform: str = "prodml"
) -> dict[str, Any]:
    """The V2 model metadata response for a model reading ``signature``.

    >>> from prodml.registry import ColumnSpec, Signature
    >>> sig = Signature((ColumnSpec("x", "float32"),), "float32", (3,))
    >>> model_metadata("m", ["1"], sig)["outputs"]
    [{'name': 'predict', 'datatype': 'FP64', 'shape': [-1, 3]}]
    """
    inputs = [
        {"name": spec.name, "datatype": v2_datatype(spec.dtype), "shape": [-1]}
        for spec in signature.inputs
    ]
    family = family_of(v2_datatype(signature.output_dtype))
    datatype = {"FP": "FP64", "INT": "INT64"}.get(family, family)
    output = {"name": OUTPUT_NAME, "datatype": datatype, "shape": [-1, *signature.output_shape]}
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": inputs,
        "outputs": [output],
    }
