"""``prodml features …``: apply, list, materialize, build-training-set, get."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import typer

from prodml.cli._confirm import confirm
from prodml.cli._options import JsonOption, ProjectOption, check_window
from prodml.cli._output import emit, guarded, stdout, styled, table, warn
from prodml.core import SchemaError, StorageError, ensure_utc
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
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="First drop the online records and watermarks of the views' current "
            "versions (all views by default), then materialize from the start. Asks first.",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Rebuild without asking (needed with no terminal)."),
    ] = False,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Load feature rows into the online store, incrementally from each view's watermark.

    --rebuild starts the views over (to pick up source rows that changed behind the
    watermark); it asks for confirmation, and without standard input it refuses (exit 2)
    unless --yes is given."""
    check_window(start, end)
    with guarded(as_json), Project.open(project) as proj:
        if rebuild and not yes:
            _confirm_rebuild(proj, view, as_json=as_json)
        with progress_bar(not as_json) as bar:
            results = proj.features.materialize(
                None if start is None else ensure_utc(start),
                None if end is None else ensure_utc(end),
                views=view or None,
                progress=bar,
                rebuild=rebuild,
            )
    rows = [r.to_dict() for r in results]
    columns = ["view", "chunks", "rows read", "rows written", "watermark"]
    keys = ["view", "chunks", "rows_read", "rows_written", "watermark"]
    if rebuild:
        columns.insert(1, "removed")
        keys.insert(1, "removed")
    emit(
        {"materialized": rows},
        as_json=as_json,
        human=lambda: table("Materialized", columns, [[r[k] for k in keys] for r in rows]),
    )


def _confirm_rebuild(proj: Project, names: list[str] | None, *, as_json: bool) -> None:
    """Name the view versions a rebuild resets and ask (unknown views fail first)."""
    repo = proj.features.repo
    views = [repo.view(name) for name in names] if names else repo.views()
    named = [f"{v.name} ({v.version[:12]})" for v in views]
    listed = " and ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named)
    what = f"the online records and materialization watermarks of {listed}"
    confirm(
        f"Delete {what}, then materialize again from the start?",
        refusal=f"materialize --rebuild deletes {what}, so it asks first, and there is no "
        "standard input to answer: pass --yes to rebuild without asking",
        as_json=as_json,
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
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Fail (exit 8) when a feature view gives no value to any row, instead of warning.",
        ),
    ] = False,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Join features point-in-time to entity rows and store the training-set snapshot.

    No entity rows (exit 8) or a view whose source has no rows (exit 9) is an error; a
    view that gives no value to any row is a warning with counts (an error, exit 8, with
    --strict or with on_unmatched_view = "error" in the features section of prodml.toml)."""
    if output is not None and not output.parent.is_dir():
        raise typer.BadParameter(
            f"{output}: its directory {str(output.parent)!r} does not exist; expected a path "
            "in an existing directory",
            param_hint="'--output'",
        )
    with guarded(as_json), Project.open(project) as proj:
        result = proj.features.build_training_set(
            entity_rows,
            service,
            timestamp=timestamp,
            label=label,
            on_unmatched_view="error" if strict else None,
        )
        if output is not None:
            _write_output(result.table, output, result.fingerprint)
        summary = result.summary()
    warn(summary["warnings"])
    emit(
        summary,
        as_json=as_json,
        human=lambda: stdout.print(
            styled(
                "Training set [bold]{fingerprint}[/]: {rows} rows, {columns} columns → {path}",
                fingerprint=summary["fingerprint"][:12],
                rows=summary["rows"],
                columns=len(summary["columns"]),
                path=summary["path"],
            )
        ),
    )


def _write_output(table: pa.Table, output: Path, fingerprint: str) -> None:
    """Write the training set to ``--output``; a path that cannot be written is a
    :class:`StorageError` that says the snapshot itself is stored."""
    try:
        pq.write_table(table, output)
    except OSError as exc:
        raise StorageError(
            f"--output {str(output)!r} cannot be written ({exc}); the training set is stored "
            f"as snapshot {fingerprint[:12]}, expected a writable file path"
        ) from None


@features_app.command("get")
def get(
    service: Annotated[str, typer.Argument(help="Feature service name.")],
    entity: Annotated[
        list[str],
        typer.Option(
            "--entity", "-e", help="KEY=VALUE join key (repeatable; KEY='\"VALUE\"': a string)."
        ),
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
        entities = _pairs(entity, parse_json=False, flag="--entity")
        request_data = _pairs(request or [], parse_json=True, flag="--request")
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


def _pairs(texts: list[str], *, parse_json: bool, flag: str) -> dict[str, list[Any]]:
    """``KEY=VALUE`` options as one-row columns; a key given twice is refused (which of
    its values is meant cannot be told)."""
    columns: dict[str, list[Any]] = {}
    for text in texts:
        key, value = _pair(text, parse_json=parse_json, flag=flag)
        if key in columns:
            raise SchemaError(f"{flag} {key!r} is given twice; expected each key once")
        columns[key] = [value]
    return columns


def _pair(text: str, *, parse_json: bool, flag: str) -> tuple[str, Any]:
    if "=" not in text:
        raise SchemaError(f"{flag} expects KEY=VALUE, got {text!r}")
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
    """Join keys typed on the command line: integers written as such (``42``, ``-7``)
    stay integers; a value in double quotes is the string inside them, so digits whose
    text matters stay a string (``"007"``, ``"42"``); anything else is a string as typed.

    >>> _coerce("42"), _coerce("-7"), _coerce("007"), _coerce('"42"'), _coerce("JFK")
    (42, -7, '007', '42', 'JFK')
    """
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if value.isascii() and value.lstrip("-").isdigit() and str(int(value)) == value:
        return int(value)
    return value
