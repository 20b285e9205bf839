"""A window's records split by (arm, model version, shadow) and label values read as
numbers: columnar, and the same as converting each row in Python would give."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from prodml.monitoring._records import RecordGroups, label_values


def _by_rows(table: pa.Table) -> dict[tuple[str, str, bool], list[int]]:
    """The groups as a row-by-row reading defines them: a missing column or a null is
    '' (arm, version) or live (shadow)."""

    def column(name: str, default: Any) -> list[Any]:
        if name not in table.column_names:
            return [default] * table.num_rows
        return [default if v is None else v for v in table[name].to_pylist()]

    out: dict[tuple[str, str, bool], list[int]] = {}
    keys = zip(column("arm", ""), column("model_version", ""), column("shadow", False), strict=True)
    for i, (arm, model, shadow) in enumerate(keys):
        out.setdefault((str(arm), str(model), bool(shadow)), []).append(i)
    return dict(sorted(out.items()))


def _random_table(rng: np.random.Generator) -> pa.Table:
    rows = int(rng.integers(0, 80))

    def pick(choices: list[Any], kind: pa.DataType) -> pa.Array:
        return pa.array([None if rng.random() < 0.1 else choices[rng.integers(len(choices))]
                         for _ in range(rows)], kind)  # fmt: skip

    columns = {"i": pa.array(np.arange(rows))}
    if rng.random() < 0.9:
        columns["arm"] = pick(["champion", "challenger", "b"], pa.string())
    if rng.random() < 0.9:
        columns["model_version"] = pick(["m:1", "m:2", "n:1"], pa.string())
    if rng.random() < 0.9:
        columns["shadow"] = pick([False, True], pa.bool_())
    table = pa.table(columns)
    if rows > 2 and rng.random() < 0.5:  # several chunks, as a read of several files gives
        table = pa.concat_tables([table.slice(0, rows // 2), table.slice(rows // 2)])
    return table


@pytest.mark.parametrize("seed", range(40))
def test_groups_are_the_row_by_row_groups_in_key_order(seed: int) -> None:
    table = _random_table(np.random.default_rng(seed))
    expected = _by_rows(table)
    grouped = RecordGroups(table)
    found = [(arm, model, shadow, part) for arm, model, shadow, part in grouped]
    assert [key[:3] for key in found] == list(expected)
    for arm, model, shadow, part in found:
        assert part.schema == table.schema
        assert part["i"].to_pylist() == expected[(arm, model, shadow)]  # rows in log order
    assert sum(part.num_rows for *_, part in found) == table.num_rows


def test_a_group_is_computed_once_and_a_missing_one_is_empty() -> None:
    table = pa.table({"arm": ["a", "a", "b"], "model_version": ["m:1", "m:1", "m:2"],
                      "shadow": [False, True, False], "x": [1.0, 2.0, 3.0]})  # fmt: skip
    grouped = RecordGroups(table)
    assert grouped.select("a", "m:1", True) is grouped.select("a", "m:1", True)
    assert grouped.select("a", "m:1", True)["x"].to_pylist() == [2.0]
    missing = grouped.select("c", "m:1", False)
    assert (missing.num_rows, missing.schema) == (0, table.schema)
    assert grouped.live_arm("m:2") == ("b", "m:2", False)
    assert grouped.live_arm("m:3") == ("", "m:3", False)


def test_a_dictionary_encoded_arm_column_groups_like_a_plain_one() -> None:
    plain = pa.table({"arm": ["b", "a", "b"], "model_version": ["m:1"] * 3})
    encoded = plain.set_column(0, "arm", plain["arm"].dictionary_encode())
    assert [k[:3] for k in RecordGroups(encoded)] == [k[:3] for k in RecordGroups(plain)]


def _one(value: Any) -> float:
    """A label as a float, one value at a time."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return 1.0 if value.strip().lower() == "true" else 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


@pytest.mark.parametrize(
    "values",
    [
        [True, False, None],
        [0, 1, None, 7],
        [0.5, None, float("inf")],
        ["true", " FALSE ", "True", None],
        ["1", "2.5", " 3 ", "1e3", "nan", "x", "", None],
        ["true", "1_000", "0.25"],  # text only Python reads as a number
        [None, None],
    ],
)
def test_label_values_read_each_value_as_python_would(values: list[Any]) -> None:
    found = label_values(pa.chunked_array([pa.array(values)])).to_numpy(zero_copy_only=False)
    expected = np.asarray([_one(v) for v in values], dtype=np.float64)
    np.testing.assert_array_equal(found, expected)
