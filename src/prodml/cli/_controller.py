"""``prodml controller …``: the retraining controller — one pass (``run``), passes in a
loop (``watch``), what it watches (``status``) and the jobs it ran (``history``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from prodml.cli._options import JsonOption, ProjectOption, ReasonOption
from prodml.cli._output import emit, exit_code, guarded, stderr, stdout, styled, table
from prodml.cli._watch import (
    PassesOption,
    Standby,
    check_interval,
    repeat,
    stop_signals,
    write_json_line,
)
from prodml.core import ConflictError
from prodml.project import Project

__all__ = ["controller_app"]

controller_app = typer.Typer(
    help="The retraining controller: triggers, recorded retrain jobs, hand-over to rollouts.",
    no_args_is_help=True,
)

PolicyOption = Annotated[
    str | None, typer.Option("--policy", help="Only this policy (default: every policy).")
]


def _show_jobs(jobs: Sequence[Mapping[str, Any]], title: str) -> None:
    """One line per job, then why it ran and how it ended."""
    if not jobs:
        stdout.print(f"{title}: none")
        return
    stdout.print(f"{title}:")
    for job in jobs:
        seconds = sum(s.get("seconds") or 0.0 for s in job["steps"])
        failed = next((s["name"] for s in job["steps"] if s.get("status") == "failed"), None)
        ended = job["status"] + (f" at step {failed}" if failed else "")
        candidate = f" → {job['candidate']}" if job["candidate"] else ""
        stdout.print(
            f"  {job['started_at'][:16]}  {job['policy']}  {job['id']}  {ended}{candidate} "
            f"({seconds:.1f} s)", soft_wrap=True,
        )  # fmt: skip
        stdout.print(f"      why: {job['trigger']}: {job['reason']}", soft_wrap=True)
        if job["error"]:
            stdout.print(f"      error: {job['error']}", soft_wrap=True)


@controller_app.command("run")
def run(
    policy: PolicyOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Start a job now, without waiting for a trigger.")
    ] = False,
    reason: ReasonOption = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """One pass over the retraining policies (refused while another controller holds
    the project's lease); a forced job records ``--reason``. A policy whose pass failed
    outside a job is listed under ``failures`` and sets the exit code (of its error)."""
    with guarded(as_json), Project.open(project) as proj:
        retraining = proj.retraining
        try:
            ran = retraining.run_once(policy, force=force, reason=reason)
            jobs = [j.to_dict() for j in ran]
            failed = list(retraining.failures)
        finally:
            retraining.release()
    failures = [f.to_dict() for f in failed]
    emit({"jobs": jobs, "failures": failures}, as_json=as_json,
         human=lambda: _show_jobs(jobs, "Retrain jobs of this pass"))  # fmt: skip
    if failed:
        if not as_json:
            for f in failures:
                stderr.print(styled("[bold red]error:[/] policy {policy}: {error}", **f),
                             highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(exit_code(failed[0].error))


@controller_app.command("status")
def status(project: ProjectOption = Path("."), as_json: JsonOption = False) -> None:
    """Each policy's served champion, last job and triggers' debounce states."""
    with guarded(as_json), Project.open(project) as proj:
        found = proj.retraining.status()

    def human() -> None:
        lease = found["lease"]
        holder = "nobody" if lease is None else f"{lease['holder']} until {lease['expires_at']}"
        stdout.print(f"Controller lease: {holder}")
        rows = []
        for p in found["policies"]:
            last = p["last_job"] or {}
            triggers = ", ".join(f"{t['kind']}:{t['state'] or '-'}" for t in p["triggers"])
            rows.append([p["policy"], p["model"], p["endpoint"] or "", p["champion"] or "",
                         last.get("status", ""), last.get("started_at", "")[:16], triggers])  # fmt: skip
        if not rows:
            stdout.print("No retraining policies: add [[retraining.policies]] to prodml.toml")
            return
        table("Retraining policies",
              ("policy", "model", "endpoint", "champion", "last job", "started", "triggers"), rows)  # fmt: skip

    emit(found, as_json=as_json, human=human)


@controller_app.command("history")
def history(
    policy: PolicyOption = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many jobs.")] = 50,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """The retrain jobs, newest first, with their steps, durations and reasons."""
    with guarded(as_json), Project.open(project) as proj:
        jobs = [j.to_dict() for j in proj.retraining.history(policy, limit=limit)]
    emit({"jobs": jobs}, as_json=as_json, human=lambda: _show_jobs(jobs, "Retrain jobs"))


def _line(event: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        write_json_line(event)
    else:
        stdout.print(event["message"])


@controller_app.command("watch")
def watch(
    policy: PolicyOption = None,
    interval: Annotated[float, typer.Option(help="Seconds between passes.")] = 300.0,
    passes: PassesOption = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Run passes until interrupted (SIGINT/SIGTERM end it cleanly and release the
    lease); while another controller holds the lease, stand by and retry."""
    check_interval(interval)
    with stop_signals() as stop, guarded(as_json), Project.open(project) as proj:
        proj.db.ensure_intact()
        retraining = proj.retraining
        if not as_json:
            stdout.print(f"Watching retraining policies: a pass every {interval:g} s (Ctrl-C stops)")  # fmt: skip
        standby = Standby(lambda event: _line(event, as_json))

        def one_pass() -> None:
            try:
                jobs = retraining.run_once(policy)
            except ConflictError as exc:
                standby.conflict(f"standing by: {exc}")
                return
            for job in jobs:
                message = (f"job {job.id} ({job.trigger}): {job.status}"
                           f"{' → ' + job.candidate if job.candidate else ''}"
                           f"{': ' + job.error if job.error else ''}")  # fmt: skip
                _line({"event": "job", "message": message, **job.to_dict()}, as_json)
            for failure in retraining.failures:
                message = f"policy {failure.policy}: the pass failed: {failure.error}"
                _line({"event": "policy_failed", "message": message, **failure.to_dict()}, as_json)  # fmt: skip
            standby.acting()

        try:
            repeat(stop, interval, passes, one_pass)
        finally:
            retraining.release()
