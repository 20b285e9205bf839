"""The CLI end to end: a project made by `prodml init`, driven by `prodml features …`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from featurekit import entity_rows, make_project
from prodml.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def test_init_creates_a_working_project(tmp_path: Path) -> None:
    code, out = run("init", str(tmp_path / "p"), "--json")
    assert code == 0, out
    assert json.loads(out)["name"] == "p"
    for name in ("prodml.toml", ".gitignore", "features.py", ".prodml"):
        assert (tmp_path / "p" / name).exists()
    # the example definitions apply and build out of the box
    code, out = run("features", "apply", "-p", str(tmp_path / "p"), "--json")
    assert code == 0, out
    assert {d["name"] for d in json.loads(out)["applied"]} >= {"customer_stats", "churn"}
    code, out = run(
        "features", "get", "churn", "--entity", "customer_id=1", "-p", str(tmp_path / "p"), "--json"
    )
    assert code == 0, out
    assert set(json.loads(out)["values"]) == {"orders_30d", "spend_30d", "spend_per_order"}
    code, _ = run("init", str(tmp_path / "p"))
    assert code == 10


def test_features_pipeline_through_cli(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    make_project(root).close()
    p = ["-p", str(root)]
    code, out = run("features", "apply", *p, "--json")
    assert code == 0, out
    code, out = run("features", "list", "--kind", "feature_view", *p, "--json")
    assert [d["name"] for d in json.loads(out)["definitions"]] == ["planes", "weather"]
    rows_path = tmp_path / "rows.parquet"
    pq.write_table(entity_rows(30), rows_path)
    out_path = tmp_path / "ts.parquet"
    code, out = run(
        "features",
        "build-training-set",
        str(rows_path),
        "--service",
        "flight_delay",
        "--timestamp",
        "sched_dep",
        "--label",
        "late",
        "-o",
        str(out_path),
        *p,
        "--json",
    )
    assert code == 0, out
    summary = json.loads(out)
    assert summary["rows"] == 30
    assert pq.read_table(out_path).num_rows == 30
    code, out = run("features", "materialize", "--end", "2013-01-05T00:00:00", *p, "--json")
    assert code == 0, out
    assert {m["view"] for m in json.loads(out)["materialized"]} == {"weather", "planes"}
    get = ["features", "get", "flight_delay", "-e", "origin=EWR", "-e", "tailnum=N1"]
    get += ["-r", "sched_dep_time=830", *p]
    code, out = run(*get, "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["values"]["dep_hour"] == [8]
    assert result["values"]["year"] == [2001]
    code, out = run(*get, "--at", "2013-01-04T12:00:00")
    assert code == 0, out
    assert "fresh" in out
    code, out = run("features", "list", *p)
    assert code == 0
    assert "weather" in out


def test_errors_have_exit_codes_and_messages(tmp_path: Path) -> None:
    code, out = run("features", "list", "-p", str(tmp_path), "--json")
    assert code == 3
    assert "no prodml.toml" in json.loads(out)["error"]
    root = tmp_path / "proj"
    make_project(root).close()
    run("features", "apply", "-p", str(root))
    rows_path = tmp_path / "rows.parquet"
    pq.write_table(entity_rows(5), rows_path)
    code, out = run(
        "features",
        "build-training-set",
        str(rows_path),
        "-s",
        "nope",
        "--timestamp",
        "sched_dep",
        "-p",
        str(root),
        "--json",
    )
    assert code == 4
    assert "unknown feature service 'nope'" in json.loads(out)["error"]
    code, out = run(
        "features",
        "build-training-set",
        str(rows_path),
        "-s",
        "flight_delay",
        "-p",
        str(root),
        "--json",
    )
    assert code == 7
    assert "no timestamp column 'event_timestamp'" in json.loads(out)["error"]


@pytest.mark.parametrize("args", [["--help"], ["features", "--help"], ["demo", "--help"]])
def test_help(args: list[str]) -> None:
    code, out = run(*args)
    assert code == 0
    assert "Usage" in out


def _applied_project(tmp_path: Path) -> list[str]:
    root = tmp_path / "proj"
    make_project(root).close()
    code, out = run("features", "apply", "-p", str(root), "--json")
    assert code == 0, out
    return ["-p", str(root)]


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty (0 bytes)"), (b"id,origin\n1,EWR\n", "is not a Parquet file")],
)
def test_unreadable_entity_rows_file_is_a_source_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    p = _applied_project(tmp_path)
    rows = tmp_path / "rows.parquet"
    rows.write_bytes(content)
    args = ["features", "build-training-set", str(rows), "-s", "flight_delay"]
    result = runner.invoke(app, [*args, "--timestamp", "sched_dep", *p, "--json"])
    assert result.exit_code == 9, result.output
    error = json.loads(result.stdout)["error"]
    assert message in error
    assert str(rows) in error
    result = runner.invoke(app, [*args, "--timestamp", "sched_dep", *p])
    assert result.exit_code == 9
    assert "Traceback" not in result.output
    assert message in " ".join(result.stderr.split())


def test_empty_entity_rows_exit_with_the_data_validation_code(tmp_path: Path) -> None:
    p = _applied_project(tmp_path)
    rows = tmp_path / "rows.parquet"
    pq.write_table(entity_rows(5).slice(0, 0), rows)
    args = ["features", "build-training-set", str(rows), "-s", "flight_delay"]
    code, out = run(*args, "--timestamp", "sched_dep", *p, "--json")
    assert code == 8
    assert "holds no rows" in json.loads(out)["error"]


def test_unmatched_view_is_printed_with_counts_and_strict_fails(tmp_path: Path) -> None:
    import pyarrow as pa

    p = _applied_project(tmp_path)
    table = entity_rows(20)
    rows = tmp_path / "rows.parquet"
    pq.write_table(table.set_column(1, "origin", pa.array(["XXX"] * 20)), rows)
    args = ["features", "build-training-set", str(rows), "-s", "flight_delay"]
    args += ["--timestamp", "sched_dep", *p]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert "warning:" in warning
    assert "feature view 'weather': 0 of 20 entity rows" in warning
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["coverage"]["weather"] == {
        "rows": 20,
        "matched": 0,
        "picked": 0,
        "exact_time": 0,
        "exact_time_share": 0.0,
    }
    result = runner.invoke(app, [*args, "--strict", "--json"])
    assert result.exit_code == 8
    assert "0 of 20" in json.loads(result.stdout)["error"]


def test_timestamp_hint_names_the_cli_flag(tmp_path: Path) -> None:
    p = _applied_project(tmp_path)
    rows = tmp_path / "rows.parquet"
    pq.write_table(entity_rows(5), rows)
    code, out = run("features", "build-training-set", str(rows), "-s", "flight_delay", *p, "--json")
    assert code == 7
    assert "--timestamp" in json.loads(out)["error"]


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--start", "2013-02-01", "--end", "2013-01-01"],
        ["train", "--start", "2013-01-01", "--end", "2013-01-01"],
        ["features", "materialize", "--start", "2013-02-01", "--end", "2013-01-01"],
    ],
)
def test_start_not_before_end_is_a_usage_error(tmp_path: Path, command: list[str]) -> None:
    # checked before the project is opened: the directory is not even a project
    result = runner.invoke(app, [*command, "-p", str(tmp_path)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "--start" in text
    assert "--end" in text
