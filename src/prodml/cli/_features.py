"""``prodml features …``: apply, list, materialize, build-training-set, get."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer

from prodml.cli._options import JsonOption, ProjectOption
from prodml.cli._output import emit, guarded, stdout, table
from prodml.core import SchemaError, ensure_utc
from prodml.project import Project, progress_bar

__all__ = ["features_app"]

features_app = typer.Typer(
    help="Feature definitions, training sets and the online store.", no_args_is_help=True
)


@features_app.command("apply")
def apply_(project: ProjectOption = Path("."), as_json: JsonOption = False) -> None:
    """Store the definitions of features.py in the registry (new versions for changes)."""
    with guarded(as_json), Project.open(project) as proj:
        applied = proj.features.apply()
    rows = [d.to_dict() for d in applied]
    for row in rows:
        row.pop("spec")
    emit(
        {"applied": rows},
        as_json=as_json,
        human=lambda: table(
            "Applied definitions",
            ["kind", "name", "version", "status"],
            [(r["kind"], r["name"], r["version"][:12], r["status"]) for r in rows],
        ),
    )


@features_app.command("list")
def list_(
    kind: Annotated[
        str | None, typer.Option(help="entity | feature_view | on_demand_feature | feature_service")
    ] = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """List the current version of every applied definition."""
    with guarded(as_json), Project.open(project) as proj:
        rows = [d.to_dict() for d in proj.features.list(kind)]
    emit(
        {"definitions": rows},
        as_json=as_json,
        human=lambda: table(
            "Feature definitions",
            ["kind", "name", "version", "applied"],
            [(r["kind"], r["name"], r["version"][:12], r["created_at"]) for r in rows],
        ),
    )


@features_app.command("materialize")
def materialize(
    start: Annotated[
        datetime | None,
        typer.Option(help="Start (UTC) when no watermark exists; default: all history."),
    ] = None,
    end: Annotated[datetime | None, typer.Option(help="End (UTC); default: now.")] = None,
    view: Annotated[
        list[str] | None, typer.Option("--view", help="Only these views (repeatable).")
    ] = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Load feature rows into the online store, incrementally from each view's watermark."""
    with guarded(as_json), Project.open(project) as proj, progress_bar(not as_json) as bar:
        results = proj.features.materialize(
            None if start is None else ensure_utc(start),
            None if end is None else ensure_utc(end),
            views=view or None,
            progress=bar,
        )
    rows = [r.to_dict() for r in results]
    emit(
        {"materialized": rows},
        as_json=as_json,
        human=lambda: table(
            "Materialized",
            ["view", "chunks", "rows read", "rows written", "watermark"],
            [
                (r["view"], r["chunks"], r["rows_read"], r["rows_written"], r["watermark"])
                for r in rows
            ],
        ),
    )


@features_app.command("build-training-set")
def build_training_set(
    entity_rows: Annotated[Path, typer.Argument(help="Entity rows: a Parquet or CSV file.")],
    service: Annotated[str, typer.Option("--service", "-s", help="Feature service name.")],
    timestamp: Annotated[
        str, typer.Option(help="Timestamp column of the entity rows.")
    ] = "event_timestamp",
    label: Annotated[
        str | None, typer.Option(help="Label column, recorded with the snapshot.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the table here (Parquet).")
    ] = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Join features point-in-time to entity rows and store the training-set snapshot."""
    with guarded(as_json), Project.open(project) as proj:
        rows = _read_rows(entity_rows, timestamp)
        result = proj.features.build_training_set(rows, service, timestamp=timestamp, label=label)
        if output is not None:
            pq.write_table(result.table, output)
        summary = result.summary()
    emit(
        summary,
        as_json=as_json,
        human=lambda: stdout.print(
            f"Training set [bold]{summary['fingerprint'][:12]}[/]: {summary['rows']} rows, "
            f"{len(summary['columns'])} columns → {summary['path']}"
        ),
    )


@features_app.command("get")
def get(
    service: Annotated[str, typer.Argument(help="Feature service name.")],
    entity: Annotated[
        list[str], typer.Option("--entity", "-e", help="KEY=VALUE join key (repeatable).")
    ],
    request: Annotated[
        list[str] | None,
        typer.Option("--request", "-r", help="KEY=VALUE request field (JSON; ISO times parsed)."),
    ] = None,
    at: Annotated[
        datetime | None,
        typer.Option(
            "--at",
            help="Measure ages and TTLs from this time (UTC; default now). The store holds only the latest values.",
        ),
    ] = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Read one entity's online features (values, versions and freshness)."""
    with guarded(as_json), Project.open(project) as proj:
        entities = {k: [v] for k, v in (_pair(e, parse_json=False) for e in entity)}
        request_data = {k: [v] for k, v in (_pair(r, parse_json=True) for r in request or [])}
        online = proj.features.get_online(
            service, entities, request_data or None, now=None if at is None else ensure_utc(at)
        )
        result = online.to_dict()
    emit(result, as_json=as_json, human=lambda: _show_online(service, result))


def _show_online(service: str, result: dict[str, Any]) -> None:
    table(
        f"Online features of {service}",
        ["feature", "value"],
        [(name, values[0]) for name, values in result["values"].items()],
    )
    rows = []
    for view, fresh in result["freshness"].items():
        age = fresh["ages_s"][0]
        state = (
            "missing"
            if not fresh["found"][0]
            else "stale (past TTL)"
            if fresh["stale"][0]
            else "fresh"
        )
        rows.append(
            (view, result["versions"][view][:12], state, "" if age is None else f"{age:,.0f} s")
        )
    table("Freshness", ["view", "version", "state", "age"], rows)


def _pair(text: str, *, parse_json: bool) -> tuple[str, Any]:
    if "=" not in text:
        raise SchemaError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    if not parse_json:
        return key, _coerce(value)
    try:
        parsed: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        parsed = value
    if isinstance(parsed, str):
        try:
            return key, ensure_utc(datetime.fromisoformat(parsed))
        except ValueError:
            return key, parsed
    return key, parsed


def _coerce(value: str) -> Any:
    """Join keys typed on the command line: integers stay integers."""
    return int(value) if value.lstrip("-").isdigit() else value


def _read_rows(path: Path, timestamp: str) -> pa.Table:
    if not path.exists():
        raise SchemaError(f"entity rows file {str(path)!r} does not exist")
    if path.suffix.lower() in {".parquet", ".pq"}:
        return pq.read_table(path)
    if path.suffix.lower() == ".csv":
        table = pacsv.read_csv(path)
        if timestamp in table.column_names and not pa.types.is_timestamp(
            table.schema.field(timestamp).type
        ):
            try:
                column = table.column(timestamp).cast(pa.timestamp("us", tz="UTC"))
            except pa.ArrowInvalid as exc:
                raise SchemaError(
                    f"entity rows file {str(path)!r}: column {timestamp!r} is not a timestamp: {exc}"
                ) from None
            table = table.set_column(table.schema.get_field_index(timestamp), timestamp, column)
        return table
    raise SchemaError(f"entity rows file {str(path)!r}: expected a .parquet or .csv file")
