"""``prodml monitor run | watch | windows | report | metrics | rule-metrics``: monitoring
passes over the prediction log."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer
from prometheus_client import CollectorRegistry, start_http_server

from prodml.cli._options import JsonOption, ProjectOption
from prodml.cli._output import emit, guarded, stdout, styled, table
from prodml.cli._watch import PassesOption, check_interval, repeat, stop_signals
from prodml.core._monitor_metrics import MONITOR_METRICS
from prodml.core.errors import StorageError
from prodml.monitoring import (
    MonitorCollector,
    MonitorRun,
    exposition,
)
from prodml.project import Project, progress_bar, write_project_report

__all__ = ["monitor_app"]

monitor_app = typer.Typer(
    help="Monitoring: drift, data quality, performance and alerts per window.", no_args_is_help=True
)

EndpointOption = Annotated[
    str | None, typer.Option("--endpoint", "-e", help="Only this endpoint (default: all).")
]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"
    return str(value)


def _value(found: dict[tuple[str, str, str], Any], check: str, metric: str, column: str) -> str:
    result = found.get((check, metric, column))
    return "–" if result is None else _fmt(result.value)


def _summary(outcome: MonitorRun, empty: str | None = None) -> None:
    """The windows of a pass as a table, then what waits on each endpoint and why."""
    reports = [*outcome.computed, *outcome.refreshed]
    _quarantined(outcome)
    if not reports:
        if empty is not None:
            stdout.print(empty)
        elif outcome.waiting:
            stdout.print("No window to compute:")
        else:
            stdout.print("No records in the prediction log: no endpoint has logged a prediction.")
        for backlog in outcome.waiting:
            stdout.print(backlog.message, highlight=False)
        return
    rows = []
    for report in reports:
        w = report.window
        found = {(r.check, r.metric, r.column): r for r in report.results}
        drifted = sorted(
            (r for r in report.results if r.check == "drift" and r.status == "drift" and r.column),
            key=lambda r: -(r.value or 0.0),
        )
        arm = f"{w.endpoint}/{w.arm or '–'}" + (" (shadow)" if w.shadow else "")
        rows.append(
            [
                f"{w.start:%Y-%m-%d %H:%M}",
                arm,
                w.model_version or "–",
                f"{w.rows:,}",
                _value(found, "drift", "share", ""),
                f"{_value(found, 'estimated', 'roc_auc', '')} / {_value(found, 'performance', 'roc_auc', '')}",
                _value(found, "performance", "label_coverage", ""),
                ", ".join(r.column for r in drifted[:3]) or "–",
            ]
        )
    table(
        f"Monitoring: {len(outcome.computed)} window(s) computed, {len(outcome.refreshed)} refreshed",
        [
            "window",
            "endpoint/arm",
            "model",
            "rows",
            "drift share",
            "AUC est./real",
            "labels",
            "most drifted",
        ],
        rows,
    )
    for backlog in outcome.waiting:
        stdout.print(backlog.message, style="dim", highlight=False)
    for note in outcome.notifications:
        stdout.print(
            styled(
                "[bold]ALERT[/bold] {rule} {state} {scope}",
                rule=note.get("rule"), state=note.get("state"), scope=note.get("scope"),
            )
        )  # fmt: skip


def _quarantined(outcome: MonitorRun) -> None:
    """The unreadable log files the pass moved aside, one line each."""
    for moved in outcome.quarantined:
        stdout.print(
            styled(
                "[bold]QUARANTINED[/bold] unreadable {log} log file {path} moved to "
                "{target}: {reason}",
                log=moved["log"], path=moved["path"], target=moved["quarantined_to"],
                reason=moved["reason"],
            ),
            soft_wrap=True,
        )  # fmt: skip


@monitor_app.command("run")
def run(
    endpoint: EndpointOption = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """One incremental pass: compute every closed, new window; refresh label results."""
    with guarded(as_json), Project.open(project) as proj, progress_bar(not as_json) as bar:
        outcome = proj.monitor.run(endpoint=endpoint, progress=bar)
    emit(outcome.to_dict(), as_json=as_json, human=lambda: _summary(outcome))


@monitor_app.command("watch")
def watch(
    endpoint: EndpointOption = None,
    interval: Annotated[
        float | None,
        typer.Option(help="Seconds between passes (default: \\[monitoring] watch_interval_s)."),
    ] = None,
    passes: PassesOption = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="Serve the monitoring gauges for Prometheus on this port."
        ),
    ] = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Run passes in a loop until interrupted (SIGINT/SIGTERM finish the current pass)."""
    if interval is not None:
        check_interval(interval)
    with stop_signals() as stop, guarded(as_json), Project.open(project) as proj:
        proj.db.ensure_intact()  # a controller starts only on a consistent metadata DB
        if metrics_port is not None:
            registry = CollectorRegistry()
            registry.register(MonitorCollector(proj.monitor.store))
            try:
                start_http_server(metrics_port, registry=registry)
            except OSError as exc:
                raise typer.BadParameter(
                    f"port {metrics_port} cannot serve the gauges ({exc.strerror or exc}); "
                    "expected a free port",
                    param_hint="'--metrics-port'",
                ) from None
        wait = interval if interval is not None else proj.config.monitoring.watch_interval_s

        def one_pass() -> None:
            outcome = proj.monitor.run(endpoint=endpoint)
            emit(outcome.to_dict(), as_json=as_json, human=functools.partial(_summary, outcome))

        repeat(stop, wait, passes, one_pass)


@monitor_app.command("report")
def report(
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path(
        "monitoring-report.html"
    ),
    endpoint: EndpointOption = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Write one self-contained HTML report of the stored windows (opens offline)."""
    if output.is_dir():
        raise typer.BadParameter(
            f"{output} is a directory; expected the path of the HTML file to write",
            param_hint="'--output'",
        )
    with guarded(as_json), Project.open(project) as proj:
        try:
            counts = write_project_report(
                proj, output, title=f"prodml monitoring: {proj.name}", endpoint=endpoint
            )
        except OSError as exc:
            raise StorageError(
                f"monitoring report --output {str(output)!r} cannot be written "
                f"({exc.strerror or exc}); expected a writable file path"
            ) from None
    emit(
        {"path": str(output), **counts},
        as_json=as_json,
        human=lambda: stdout.print(f"Wrote {output} ({counts['windows']} windows)"),
    )


@monitor_app.command("metrics")
def metrics(project: ProjectOption = Path(".")) -> None:
    """Print the monitoring gauges in Prometheus text format (for a textfile collector)."""
    with guarded(False), Project.open(project) as proj:
        text = exposition(proj.monitor.store)
    typer.echo(text.decode(), nl=False)


@monitor_app.command("rule-metrics")
def rule_metrics(as_json: JsonOption = False) -> None:
    """The metric names alert rules may use (`metric = "<check>.<metric>"`), with their
    scope: per window (no `column`) or per column (`column` = a name or "*")."""
    listed = [m.to_dict() for m in MONITOR_METRICS.values()]

    def human() -> None:
        for m in listed:
            scope = f"per column ({m['column']})" if m["scope"] == "column" else "per window"
            labels = "; waits for final labels" if m["waits_for_labels"] else ""
            stdout.print(
                f"{m['name']:<34} {scope}{labels}: {m['description']}",
                markup=False, highlight=False, soft_wrap=True,
            )  # fmt: skip

    emit(listed, as_json=as_json, human=human)


@monitor_app.command("windows")
def list_windows(
    endpoint: EndpointOption = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """The computed windows and their headline results."""
    with guarded(as_json), Project.open(project) as proj:
        outcome = MonitorRun(computed=proj.monitor.stored(endpoint=endpoint))
    emit(
        outcome.to_dict()["computed"],
        as_json=as_json,
        human=lambda: _summary(outcome, "No window computed yet: run `prodml monitor run`."),
    )
