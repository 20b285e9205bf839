"""``prodml train`` and ``prodml reproduce``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import typer
from rich.text import Text

from prodml.cli._options import ActorOption, JsonOption, ProjectOption, check_window
from prodml.cli._output import emit, guarded, stdout, styled, table, warn
from prodml.core import SchemaError, ensure_utc
from prodml.project import Project
from prodml.training import reproduce as reproduce_version

__all__ = ["register_commands"]


def register_commands(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("reproduce")(reproduce)


@contextmanager
def _steps(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A spinner naming the current step; each finished step stays printed."""
    if not enabled:
        yield lambda _text: None
        return
    with stdout.status(Text("Starting")) as status:
        last: list[str] = []

        def say(text: str) -> None:
            if last:
                stdout.print(styled("[green]✓[/] {step}", step=last[0]))
                last.clear()
            last.append(text)
            status.update(Text(text))

        yield say
    if last:
        stdout.print(styled("[green]✓[/] {step}", step=last[0]))


def train(
    start: Annotated[datetime, typer.Option(help="First label time (UTC), inclusive.")],
    end: Annotated[datetime, typer.Option(help="Last label time (UTC), exclusive.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="KEY=VALUE overriding a trainer param (JSON values)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the trainer's).")] = None,
    parent: Annotated[
        str | None, typer.Option(help="Warm-start from this version (name:3 or name@alias).")
    ] = None,
    register: Annotated[
        bool, typer.Option(help="Register the model as a candidate version.")
    ] = True,
    refit: Annotated[
        Literal["none", "full"] | None,
        typer.Option(
            help="full: after the gate, refit on every row of the window and register that "
            "model (default: \\[training] refit).",
            show_default=False,
        ),
    ] = None,
    calibration: Annotated[
        Literal["none", "isotonic", "sigmoid"] | None,
        typer.Option(
            help="Calibrate a classifier's probabilities on the validation split "
            "(default: \\[training] calibration).",
            show_default=False,
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Fail (exit 8) when a feature view gives no value to any training row, "
            "instead of warning.",
        ),
    ] = False,
    actor: ActorOption = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Train the project's @prodml.trainer on a time window, evaluate, gate and register."""
    check_window(start, end)
    with guarded(as_json), Project.open(project) as proj, _steps(not as_json) as say:
        result = proj.training.train(
            ensure_utc(start),
            ensure_utc(end),
            params=dict(_param(p) for p in param or []),
            seed=seed,
            parent=parent,
            register=register,
            actor=actor,
            say=say,
            on_unmatched_view="error" if strict else None,
            refit=refit,
            calibration=calibration,
        )
        summary = result.to_dict()
    warn(summary["training_set_warnings"])
    emit(summary, as_json=as_json, human=lambda: _show_training(summary))


def _show_training(summary: dict[str, Any]) -> None:
    champion = summary["champion_metrics"] or {}
    rows = [
        (name, _fmt(value), _fmt(champion.get(name)) if champion else "")
        for name, value in {**summary["metrics"], **summary["performance"]}.items()
    ]
    table(
        f"Test split ({summary['split']['test']:,} rows from {summary['split']['test_start']})",
        ["metric", "candidate", f"champion {summary['champion'] or '(none)'}"],
        rows,
    )
    gate = summary["gate"]
    table(
        f"Gate: {gate['status']}",
        ["check", "passed", "detail"],
        [(c["name"], "yes" if c["passed"] else "NO", c["detail"]) for c in gate["checks"]],
    )
    for warning in gate.get("warnings", []):
        stdout.print(f"warning: {warning}", style="yellow", markup=False, soft_wrap=True)
    calibration, refit = summary["calibration"], summary["refit"]
    if calibration:
        stdout.print(styled("Calibrated ({method}) on {rows:,} validation rows", **calibration))
    if refit:
        stdout.print(
            styled(
                "Refitted on all {rows:,} rows: registered {sha256:.12}…, evaluated "
                "{evaluated_sha256:.12}…",
                **refit,
            )
        )
    version = summary["version"] or "(not registered)"
    stdout.print(
        styled(
            "Run {run} → [bold]{version}[/] ({status}); training set {training_set}",
            run=summary["run"], version=version, status=gate["status"],
            training_set=summary["training_set"][:12],
        )
    )  # fmt: skip


def reproduce(
    ref: Annotated[str, typer.Argument(help="The version to reproduce (name:3 or name@alias).")],
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Rebuild a version's training set, rerun its training and compare the results."""
    with guarded(as_json), Project.open(project) as proj, _steps(not as_json) as say:
        report = reproduce_version(proj.training, ref, say=say).to_dict()
    emit(report, as_json=as_json, human=lambda: _show_reproduce(report))
    if not report["match"]:
        raise typer.Exit(1)


def _show_reproduce(report: dict[str, Any]) -> None:
    verdict = "[green]MATCH[/]" if report["match"] else "[red]MISMATCH[/]"
    stdout.print(
        styled(
            "{version} (run {run}) rerun as {rerun}: " + verdict,
            version=report["version"], run=report["run"], rerun=report["rerun"],
        )
    )  # fmt: skip
    rows = [
        (kind, line)
        for kind, lines in report["differences"].items()
        for line in (lines[:20] + ([f"… {len(lines) - 20} more"] if len(lines) > 20 else []))
    ]
    if rows:
        table("Differences", ["kind", "difference"], rows)


def _param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise SchemaError(f"--param expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, orjson.loads(value)
    except orjson.JSONDecodeError:
        return key, value


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
