"""``prodml backup`` and ``prodml restore``: a verified, incremental snapshot of the
whole project, and its restore into a fresh directory (every checksum checked first)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prodml.cli._options import JsonOption, ProjectOption
from prodml.cli._output import emit, guarded, stdout, styled
from prodml.core import ConfigError

__all__ = ["dr_app", "register_commands", "replicate_app"]


def register_commands(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)


def _destination(root: Path, to: Path | None) -> Path:
    """``--to``, or the default: PROJECT-backups beside the project."""
    return to if to is not None else root.parent / f"{root.name}-backups"


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def backup(
    to: Annotated[
        str | None,
        typer.Option(
            help="Backup destination: a directory (default: PROJECT-backups beside the "
            "project), or s3://BUCKET/PREFIX for an off-site copy of the local one."
        ),
    ] = None,
    local: Annotated[
        Path | None,
        typer.Option(help="With --to s3://…: the local destination (default as without --to)."),
    ] = None,
    keep_last: Annotated[
        int | None, typer.Option(help="After the backup, keep the newest N snapshots …")
    ] = None,
    keep_daily: Annotated[int | None, typer.Option(help="… the newest of each of N days …")] = None,
    keep_weekly: Annotated[int | None, typer.Option(help="… and of N ISO weeks.")] = None,
    rescan: Annotated[
        bool,
        typer.Option(
            help="Read every file again instead of trusting what the last backup into the "
            "destination found (for log files changed by hand)."
        ),
    ] = False,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Snapshot the whole project (metadata DB, artifacts, tables, logs, config) with a
    SHA-256 manifest; incremental, safe while servers and controllers run. With
    --to s3://BUCKET/PREFIX the snapshot is also copied to the bucket (only the blobs it
    lacks)."""
    from prodml.ops import backup_project, is_s3_url, prune_offsite, prune_snapshots, push
    from prodml.project import progress_bar
    from prodml.project._project import find_root

    with guarded(as_json):
        for flag, value in (("--keep-last", keep_last), ("--keep-daily", keep_daily),
                            ("--keep-weekly", keep_weekly)):  # fmt: skip
            if value is not None and value < 0:  # refused before a snapshot is taken
                raise ConfigError(f"{flag} {value}: expected a count >= 0")
        root = find_root(project.resolve())
        offsite = to if to is not None and is_s3_url(to) else None
        dest = _destination(root, local if offsite else (None if to is None else Path(to)))
        with progress_bar(not as_json) as bar:
            result = backup_project(
                root, dest, progress=lambda d, t: bar("backup", d, t), rescan=rescan
            )
        pruned = pushed = None
        retention = any(v is not None for v in (keep_last, keep_daily, keep_weekly))
        policy = {"keep_last": keep_last or 1, "keep_daily": keep_daily or 0,
                  "keep_weekly": keep_weekly or 0}  # fmt: skip
        if retention:
            pruned = prune_snapshots(dest, **policy, keep=(result.id,))
        if offsite is not None:
            with progress_bar(not as_json) as bar:
                pushed = push(dest, offsite, progress=lambda d, t: bar("upload", d, t))
            if retention:
                prune_offsite(offsite, **policy)

    def human() -> None:
        stdout.print(
            styled(
                "[bold green]snapshot[/] {id} in {dest}: {files} files, {size}; {new} new "
                "blobs ({new_size}) in {s:.1f} s",
                id=result.id, dest=dest, files=f"{result.files:,}", size=_mib(result.bytes),
                new=f"{result.new_blobs:,}", new_size=_mib(result.new_bytes), s=result.seconds,
            ),
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        if pruned is not None and pruned.removed:
            stdout.print(f"pruned {len(pruned.removed)} snapshot(s), {pruned.blobs_removed} "
                         f"blob(s), {_mib(pruned.bytes_removed)}")  # fmt: skip
        if pushed is not None:
            stdout.print(f"copied to {pushed.url}/snapshots/{result.id}: "
                         f"{pushed.blobs_uploaded:,} new blobs ({_mib(pushed.bytes_uploaded)}) "
                         f"in {pushed.seconds:.1f} s", highlight=False, soft_wrap=True)  # fmt: skip

    out = {"snapshot": result.to_dict(), "pruned": None if pruned is None else pruned.to_dict(),
           "offsite": None if pushed is None else pushed.to_dict()}  # fmt: skip
    emit(out, as_json=as_json, human=human)


def restore(
    snapshot: Annotated[
        str, typer.Argument(help="The snapshot directory (…/snapshots/ID), or its s3:// URL.")
    ],
    target: Annotated[Path, typer.Argument(help="A new (or empty) directory to restore into.")],
    as_json: JsonOption = False,
) -> None:
    """Restore a snapshot into a fresh directory, refusing (and naming the file) on any
    checksum that does not match."""
    import tempfile

    from prodml.ops import is_s3_url, pull, restore_snapshot

    with guarded(as_json):
        if is_s3_url(snapshot):
            target.resolve().parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(
                prefix=".prodml-pull-", dir=target.resolve().parent
            ) as tmp:
                result = restore_snapshot(pull(snapshot, Path(tmp)), target)
        else:
            result = restore_snapshot(Path(snapshot), target)

    def human() -> None:
        stdout.print(
            styled("[bold green]restored[/] {id} into {target}: {files} files, {size} in {s:.1f} s",
                   id=result.snapshot, target=result.target, files=f"{result.files:,}",
                   size=_mib(result.bytes), s=result.seconds),
            highlight=False, soft_wrap=True,
        )  # fmt: skip

    emit(result.to_dict(), as_json=as_json, human=human)


dr_app = typer.Typer(help="Disaster recovery: drills that prove the backups restore.",
                     no_args_is_help=True)  # fmt: skip


@dr_app.command("drill")
def drill(
    to: Annotated[
        Path | None,
        typer.Option(help="Backup destination (default: PROJECT-backups beside the project)."),
    ] = None,
    snapshot: Annotated[
        Path | None, typer.Option(help="Drill this snapshot instead of taking a new one.")
    ] = None,
    sample: Annotated[int, typer.Option(help="Logged requests to replay.", min=1)] = 10_000,
    keep: Annotated[
        Path | None, typer.Option(help="Restore into this new directory and keep it.")
    ] = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Backup, restore into a fresh directory, serve it, replay logged requests and
    compare the predictions bit for bit; report RTO and RPO; exit non-zero on failure."""
    from prodml.ops import run_drill
    from prodml.project._project import find_root

    with guarded(as_json):
        if to is not None and str(to).startswith("s3:"):
            raise ConfigError(
                f"--to {to}: a drill restores from a local destination; pull the snapshot "
                "with `prodml restore s3://…/snapshots/ID DIR` or drill the local copy"
            )
        root = find_root(project.resolve())
        dest = _destination(root, to)
        say = None if as_json else (lambda text: stdout.print(text, highlight=False))
        result = run_drill(root, dest, snapshot=snapshot, sample=sample, keep=keep, say=say)

    def human() -> None:
        verdict = "[bold green]PASSED[/]" if result.passed else "[bold red]FAILED[/]"
        stdout.print(
            styled(
                verdict + " drill of {snap}: {n} requests replayed, {m} mismatched; "
                "RTO {rto:.1f} s (restore → serving), RPO {rpo:.0f} s (snapshot age)",
                snap=result.snapshot, n=f"{result.replayed:,}", m=f"{result.mismatches:,}",
                rto=result.rto_s, rpo=result.rpo_s,
            ),
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        if result.problem:
            stdout.print(f"problem: {result.problem}", highlight=False, soft_wrap=True)
        for example in result.examples:
            stdout.print(f"  mismatch: {example}", highlight=False, soft_wrap=True)

    emit(result.to_dict(), as_json=as_json, human=human)
    if not result.passed:
        raise typer.Exit(1)


replicate_app = typer.Typer(
    help="Continuous replication of the SQLite databases (Litestream): point-in-time recovery.",
    no_args_is_help=True,
)


@replicate_app.command("run")
def replicate_run(
    to: Annotated[str, typer.Option(help="Replica directory, or an s3:// URL.")],
    interval: Annotated[
        float, typer.Option(help="Seconds between syncs: the most a crash loses.", min=0.01)
    ] = 0.1,
    project: ProjectOption = Path("."),
) -> None:
    """Stream the metadata DB (and a SQLite online store) to a replica until stopped."""
    import signal

    from prodml.ops import start_replication
    from prodml.project._project import find_root

    with guarded(False):
        root = find_root(project.resolve())
        process = start_replication(root, to, interval_s=interval)
    stdout.print(f"replicating {root} to {to} every {interval:g} s (Ctrl-C stops)")
    previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        code = process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(0 if code in (0, -15) else code)


@replicate_app.command("restore")
def replicate_restore(
    replica: Annotated[str, typer.Argument(help="A database's replica (…/meta.db), or its URL.")],
    out: Annotated[Path, typer.Argument(help="The new database file to write.")],
    timestamp: Annotated[
        str | None, typer.Option(help="Restore the state at this time (ISO 8601), not the latest.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Restore a replicated database into a new file (latest point, or a chosen time) and
    check its integrity."""
    from datetime import datetime

    from prodml.core import ConfigError
    from prodml.ops import restore_replica

    with guarded(as_json):
        when = None
        if timestamp is not None:
            try:
                when = datetime.fromisoformat(timestamp)
            except ValueError:
                raise ConfigError(
                    f"--timestamp {timestamp!r}: expected an ISO 8601 time such as 2026-12-05T22:40:00Z"
                ) from None
        path = restore_replica(replica, out, timestamp=when)
    emit({"restored": str(path), "replica": replica, "timestamp": timestamp}, as_json=as_json,
         human=lambda: stdout.print(f"restored {replica} into {path} (integrity_check ok)"))  # fmt: skip
