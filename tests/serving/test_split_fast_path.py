"""The ``dataframe_split`` fast path (``_split_frame``) reads exactly what the general
path reads: the same frame (values, dtypes, columns) or, where it steps aside, the
general path's own answer — for payloads of every shape around the one it takes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml.registry import ColumnSpec, Signature
from prodml.serving import _mlflow_wire
from prodml.serving._mlflow_wire import decode_invocations
from prodml.serving._wire import RequestInvalid

NAMES = ("a", "b", "c")

values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-(2**70), 2**70),
    st.none(),
    st.booleans(),
    st.sampled_from(["1.5", "x"]),
    st.floats(min_value=1e39, max_value=1e300),  # too large for float32
)


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    width = draw(st.sampled_from([3, 3, 3, 2, 4]))  # mostly the signature's width
    rows = draw(st.lists(st.lists(values, min_size=width, max_size=width), max_size=4))
    if rows and draw(st.booleans()):
        rows[-1] = rows[-1][: draw(st.integers(0, width))]  # a ragged row
    split: dict[str, Any] = {"data": rows}
    columns = draw(
        st.sampled_from(
            [None, list(NAMES), ["b", "a", "c"], ["a", "b"], ["a", "b", "c", "d"], ["a", "a", "c"]]
        )
    )
    if columns is not None:
        split["columns"] = columns
    if draw(st.booleans()):
        split["index"] = list(range(len(rows)))
    if draw(st.integers(0, 9)) == 0:
        split["extra"] = 1
    return {"dataframe_split": split}


def _read(body: bytes, signature: Signature) -> pd.DataFrame | tuple[str, Any]:
    try:
        return decode_invocations(body, "application/json", signature, max_rows=10)
    except RequestInvalid as error:
        return ("refused", (error.status, str(error)))


@settings(max_examples=400, deadline=None)
@given(payload=payloads(), dtype=st.sampled_from(["float64", "float32"]))
def test_the_fast_path_reads_what_the_general_path_reads(
    payload: dict[str, Any], dtype: str
) -> None:
    signature = Signature(tuple(ColumnSpec(n, dtype) for n in NAMES), "float64")
    body = json.dumps(payload).encode()
    fast = _read(body, signature)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_mlflow_wire, "_split_frame", lambda *_: None)
        general = _read(body, signature)
    if isinstance(general, pd.DataFrame):
        assert isinstance(fast, pd.DataFrame)
        pd.testing.assert_frame_equal(fast, general, check_exact=True)
        layouts = [(f.to_numpy().flags.c_contiguous, f.to_numpy().flags.f_contiguous) for f in (fast, general)]  # fmt: skip
        assert layouts[0] == layouts[1]  # the same memory layout: sums in the same order
        assert list(fast.columns) == list(NAMES)
    else:
        assert fast == general


def test_the_common_request_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    signature = Signature(tuple(ColumnSpec(n, "float64") for n in NAMES), "float64")
    taken: list[bool] = []
    real = _mlflow_wire._split_frame

    def spy(*args: Any) -> Any:
        frame = real(*args)
        taken.append(frame is not None)
        return frame

    monkeypatch.setattr(_mlflow_wire, "_split_frame", spy)
    body = orjson.dumps({"dataframe_split": {"columns": list(NAMES), "data": [[1, 2.5, None]]}})
    frame = decode_invocations(body, "application/json", signature)
    assert taken == [True]
    assert frame.dtypes.tolist() == [np.float64] * 3
    assert frame.iloc[0, :2].tolist() == [1.0, 2.5]
    assert np.isnan(frame.iloc[0, 2])


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"a": [1.5, -0.0], "b": [2.0, 1e300]}),  # all float64: the fast path
        pd.DataFrame({"a": [1.5, np.nan], "b": [2.0, 3.0]}),  # a NaN: the general path
        pd.DataFrame({"a": np.array([1.5, 2.5], np.float32), "b": np.array([0.1, 2], np.float32)}),
        pd.DataFrame({"a": [1, 2], "b": [3, 4]}),
        pd.DataFrame({"a": [1.5, 2.5], "b": [3, 4]}),
    ],
)
def test_frame_rows_are_the_frames_records(frame: pd.DataFrame) -> None:
    from prodml.serving._predlog import frame_rows

    expected = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in record.items()}
        for record in frame.astype(object).to_dict("records")
    ]
    rows = frame_rows(frame, list(frame.columns))
    assert rows == expected
    assert [list(map(type, r.values())) for r in rows] == [
        list(map(type, r.values())) for r in expected
    ]
