"""``prodml serve``, ``prodml deploy``, ``prodml deployments …`` and ``prodml labels …``
(``import``, ``run``)."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import orjson
import typer

from prodml.cli._options import ActorOption, JsonOption, ProjectOption, ReasonOption
from prodml.cli._output import emit, guarded, stdout, styled, table
from prodml.core import ConfigError
from prodml.project import PROJECT_ENV, Project, progress_bar
from prodml.registry import Arm, BanditSpec, Deployment, DeploymentSpec, Guardrails, default_actor

__all__ = ["deployments_app", "labels_app", "register_serving"]

deployments_app = typer.Typer(
    help="Deployments: which model versions serve each endpoint.", no_args_is_help=True
)
labels_app = typer.Typer(help="The label log: labels from label jobs.", no_args_is_help=True)

EndpointArgument = Annotated[str, typer.Argument(help="Endpoint name.")]


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise ConfigError(f"--{what} {value!r}: expected NAME=VALUE")
        out[name] = rest
    return out


def _weights(values: list[str]) -> dict[str, float]:
    """``NAME=WEIGHT`` pairs as numbers; :class:`ConfigError` naming a bad one."""
    out: dict[str, float] = {}
    for name, text in _pairs(values, "weight").items():
        try:
            out[name] = float(text)
        except ValueError:
            raise ConfigError(f"--weight {name}={text!r}: expected a number") from None
    return out


def build_spec(
    *,
    policy: str,
    models: list[str],
    arms: list[str],
    weights: list[str],
    shadow_fraction: float,
    unit: str | None,
    stratify_by: str | None,
    default_response: str | None,
    timeout_ms: float,
    guardrails: Guardrails,
    bandit: BanditSpec | None,
    on_missing_entity: str | None = None,
) -> DeploymentSpec:
    """A spec from command-line options (roles follow arm names: champion, challenger and
    shadow are roles; any other name is a plain arm)."""
    named = _pairs(arms, "arm")
    if models:
        if named:
            raise ConfigError("give --model (one champion) or --arm NAME=MODEL, not both")
        named = {"champion": models[0]}
        if len(models) > 1:
            raise ConfigError("--model takes one model; use --arm NAME=MODEL for more arms")
    if not named:
        raise ConfigError("no model: give --model MODEL or --arm NAME=MODEL")
    weight_of = _weights(weights)
    unknown = sorted(set(weight_of) - set(named))
    if unknown:
        raise ConfigError(f"--weight names unknown arm(s) {unknown}: arms are {sorted(named)}")
    if policy == "canary" and "challenger" in weight_of and "champion" not in weight_of:
        weight_of["champion"] = 1.0 - weight_of["challenger"]
    specs = []
    for name, model in named.items():
        role = name if name in ("champion", "challenger", "shadow") else "arm"
        default = 0.0 if role == "shadow" else 1.0
        specs.append(Arm(name, model, role, weight_of.get(name, default)))  # type: ignore[arg-type]
    try:
        response = None if default_response is None else orjson.loads(default_response)
    except orjson.JSONDecodeError:
        raise ConfigError(f"--default-response {default_response!r} is not JSON") from None
    return DeploymentSpec(
        policy,  # type: ignore[arg-type]
        tuple(specs),
        shadow_fraction=shadow_fraction,
        unit=unit,
        stratify_by=stratify_by,
        bandit=bandit,
        guardrails=guardrails,
        default_response=response,
        timeout_ms=timeout_ms,
        on_missing_entity=on_missing_entity,  # type: ignore[arg-type]
    )


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """uvicorn drains and shuts down on SIGTERM, then re-raises the signal to the handler
    installed before it: a server that stopped gracefully exits 0, not killed by it."""
    raise SystemExit(0)


def _show(deployment: Deployment) -> None:
    spec = deployment.spec
    stdout.print(
        styled(
            "[bold]{endpoint}[/] revision {revision}: {policy}{paused}, by {actor} at {time}",
            endpoint=deployment.endpoint,
            revision=deployment.revision,
            policy=spec.policy,
            paused=" (paused)" if spec.paused else "",
            actor=deployment.updated_by,
            time=deployment.updated_at.isoformat()[:19],
        )
    )
    table(
        "Arms",
        ["arm", "role", "model", "weight"],
        [(a.name, a.role, a.model, f"{a.weight:g}") for a in spec.arms],
    )


def register_serving(app: typer.Typer) -> None:
    """Add ``serve`` and ``deploy`` to the top-level app and the two groups."""
    app.add_typer(deployments_app, name="deployments")
    app.add_typer(labels_app, name="labels")

    @app.command()
    def serve(
        project: ProjectOption = Path("."),
        host: Annotated[
            str | None, typer.Option(help="Address to listen on (default: \\[serving] host).")
        ] = None,
        port: Annotated[
            int | None, typer.Option(help="Port to listen on (default: \\[serving] port).")
        ] = None,
        workers: Annotated[
            int | None, typer.Option(help="Server processes (default: \\[serving] workers).")
        ] = None,
        log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    ) -> None:
        """Serve every endpoint deployed in the project (HTTP: OIP V2, MLflow, native),
        the admin API and the dashboard at /ui."""
        _run_server(project, host, port, workers, log_level)

    @app.command()
    def ui(
        project: ProjectOption = Path("."),
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
        log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    ) -> None:
        """The project's dashboard at http://127.0.0.1:8765/ui (and its admin API)."""
        stdout.print(f"Dashboard of {project.resolve()} at http://{host}:{port}/ui")
        _run_server(project, host, port, 1, log_level)

    @app.command()
    def deploy(
        endpoint: EndpointArgument,
        model: Annotated[
            list[str], typer.Option("--model", "-m", help="The champion (policy single).")
        ] = [],  # noqa: B006 - typer reads the default
        arm: Annotated[
            list[str], typer.Option(help="NAME=MODEL; names champion/challenger/shadow are roles.")
        ] = [],  # noqa: B006
        weight: Annotated[list[str], typer.Option(help="NAME=WEIGHT for an arm.")] = [],  # noqa: B006
        policy: Annotated[
            str, typer.Option(help="single, shadow, canary, ab or bandit.")
        ] = "single",
        shadow_fraction: Annotated[float, typer.Option(help="Share mirrored to shadows.")] = 1.0,
        unit: Annotated[str | None, typer.Option(help="Request field: the routing unit.")] = None,
        stratify_by: Annotated[
            str | None, typer.Option(help="Request field to stratify by.")
        ] = None,
        default_response: Annotated[
            str | None, typer.Option(help="JSON answered (degraded) when every arm fails.")
        ] = None,
        timeout_ms: Annotated[float, typer.Option(help="Per-arm timeout.")] = 1000.0,
        max_error_rate: Annotated[float, typer.Option(help="Guardrail: error rate.")] = 0.05,
        max_p99_ms: Annotated[float | None, typer.Option(help="Guardrail: p99 latency.")] = None,
        guard_window_s: Annotated[float, typer.Option(help="Guardrail window.")] = 60.0,
        guard_min_requests: Annotated[int, typer.Option(help="Guardrail minimum.")] = 20,
        reward: Annotated[str, typer.Option(help="Bandit: bernoulli or gaussian.")] = "bernoulli",
        burn_in: Annotated[int, typer.Option(help="Bandit: rewards per arm first.")] = 20,
        floor: Annotated[float, typer.Option(help="Bandit: minimum share per arm.")] = 0.05,
        on_missing_entity: Annotated[
            str | None,
            typer.Option(
                help="Native requests whose entity has no online row: warn, serve or refuse "
                "(default: the server's on_missing_entity setting, itself 'warn')."
            ),
        ] = None,
        reason: ReasonOption = None,
        actor: ActorOption = None,
        project: ProjectOption = Path("."),
        as_json: JsonOption = False,
    ) -> None:
        """Deploy model versions on an endpoint (aliases are resolved now)."""
        with guarded(as_json), Project.open(project) as proj:
            spec = build_spec(
                policy=policy,
                models=model,
                arms=arm,
                weights=weight,
                shadow_fraction=shadow_fraction,
                unit=unit,
                stratify_by=stratify_by,
                default_response=default_response,
                timeout_ms=timeout_ms,
                guardrails=Guardrails(
                    window_s=guard_window_s,
                    min_requests=guard_min_requests,
                    max_error_rate=max_error_rate,
                    max_p99_ms=max_p99_ms,
                ),
                bandit=BanditSpec(reward, burn_in, floor) if policy == "bandit" else None,  # type: ignore[arg-type]
                on_missing_entity=on_missing_entity,
            )
            result = proj.deployments.deploy(
                endpoint, spec, actor=actor or default_actor(), reason=reason
            )
        emit(result.to_dict(), as_json=as_json, human=lambda: _show(result))

    @deployments_app.command("list")
    def list_(project: ProjectOption = Path("."), as_json: JsonOption = False) -> None:
        """Every endpoint's deployment."""
        with guarded(as_json), Project.open(project) as proj:
            items = proj.deployments.list()
        emit(
            {"deployments": [d.to_dict() for d in items]},
            as_json=as_json,
            human=lambda: table(
                "Deployments",
                ["endpoint", "revision", "policy", "arms"],
                [
                    (
                        d.endpoint,
                        d.revision,
                        d.spec.policy + (" (paused)" if d.spec.paused else ""),
                        ", ".join(f"{a.name}={a.model}×{a.weight:g}" for a in d.spec.arms),
                    )
                    for d in items
                ],
            ),
        )

    @deployments_app.command("show")
    def show(
        endpoint: EndpointArgument, project: ProjectOption = Path("."), as_json: JsonOption = False
    ) -> None:
        """One endpoint's deployment."""
        with guarded(as_json), Project.open(project) as proj:
            result = proj.deployments.get(endpoint)
        emit(result.to_dict(), as_json=as_json, human=lambda: _show(result))

    @deployments_app.command("history")
    def history(
        endpoint: EndpointArgument, project: ProjectOption = Path("."), as_json: JsonOption = False
    ) -> None:
        """Every change of an endpoint's deployment, oldest first."""
        with guarded(as_json), Project.open(project) as proj:
            rows = proj.deployments.history(endpoint)
        emit(
            {"endpoint": endpoint, "history": rows},
            as_json=as_json,
            human=lambda: table(
                f"History of {endpoint}",
                ["revision", "action", "actor", "time", "reason"],
                [
                    (r["revision"], r["action"], r["actor"], str(r["time"])[:19], r["reason"] or "")
                    for r in rows
                ],
            ),
        )

    @deployments_app.command("weights")
    def weights(
        endpoint: EndpointArgument,
        weight: Annotated[list[str], typer.Argument(help="NAME=WEIGHT pairs.")],
        reason: ReasonOption = None,
        actor: ActorOption = None,
        project: ProjectOption = Path("."),
        as_json: JsonOption = False,
    ) -> None:
        """Change arms' weights (a canary's champion takes the rest)."""
        with guarded(as_json), Project.open(project) as proj:
            values = _weights(weight)
            result = proj.deployments.set_weights(
                endpoint, values, actor=actor or default_actor(), reason=reason
            )
        emit(result.to_dict(), as_json=as_json, human=lambda: _show(result))

    def _action(name: str, doc: str) -> None:
        def command(
            endpoint: EndpointArgument,
            reason: ReasonOption = None,
            actor: ActorOption = None,
            project: ProjectOption = Path("."),
            as_json: JsonOption = False,
        ) -> None:
            with guarded(as_json), Project.open(project) as proj:
                method = getattr(proj.deployments, name)
                result = method(endpoint, actor=actor or default_actor(), reason=reason)
            if isinstance(result, Deployment):
                emit(result.to_dict(), as_json=as_json, human=lambda: _show(result))
            else:
                emit({"endpoint": endpoint, "deleted": True}, as_json=as_json, human=lambda: None)

        command.__doc__ = doc
        deployments_app.command(name)(command)

    _action("pause", "Send all traffic to the champion until resumed.")
    _action("resume", "Resume the deployed weights.")
    _action(
        "rollback",
        "End an experiment (serve the champion alone), or undo the latest promote: the "
        "revision before it and the registry's champion alias where it was.",
    )
    _action("delete", "Remove the endpoint's deployment.")

    @deployments_app.command("promote")
    def promote(
        endpoint: EndpointArgument,
        arm: Annotated[
            str, typer.Option(help="The arm whose model becomes champion.")
        ] = "challenger",
        reason: ReasonOption = None,
        actor: ActorOption = None,
        project: ProjectOption = Path("."),
        as_json: JsonOption = False,
    ) -> None:
        """Make an arm's model the endpoint's single champion and point the registry's
        MODEL@champion at it, in one transaction (the version must be approved when the
        registry requires approval)."""
        with guarded(as_json), Project.open(project) as proj:
            result = proj.deployments.promote(
                endpoint, arm, actor=actor or default_actor(), reason=reason
            )
        emit(result.to_dict(), as_json=as_json, human=lambda: _show(result))

    @labels_app.command("import")
    def import_(
        path: Annotated[Path, typer.Argument(help="Parquet or CSV with label (or reward).")],
        endpoint: Annotated[str, typer.Option(help="Endpoint the labels belong to.")],
        project: ProjectOption = Path("."),
        as_json: JsonOption = False,
    ) -> None:
        """Append a label job's output to the label log."""
        from prodml.serving import import_labels

        with guarded(as_json), Project.open(project) as proj, progress_bar(not as_json) as bar:
            written = import_labels(
                path,
                endpoint=endpoint,
                store=proj.logs.labels,
                clock=proj.clock,
                progress=lambda done, total: bar("Importing labels", done, total),
            )
        emit(
            {"endpoint": endpoint, "rows": written},
            as_json=as_json,
            human=lambda: stdout.print(f"Imported {written:,} labels for endpoint {endpoint}"),
        )

    @labels_app.command("run")
    def run_jobs(
        job: Annotated[
            str | None,
            typer.Argument(
                help="The job to run (default: every job of \\[labels] in prodml.toml)."
            ),
        ] = None,
        project: ProjectOption = Path("."),
        as_json: JsonOption = False,
    ) -> None:
        """Run label jobs: write the labels known by now that they did not write before."""
        from prodml.serving import run_label_jobs

        with guarded(as_json), Project.open(project) as proj:
            config = proj.config.labels
            jobs = config.jobs if job is None else (config.job(job),)
            runs = run_label_jobs(
                jobs, root=proj.root, state_dir=proj.state_dir, store=proj.logs.labels,
                clock=proj.clock,
            )  # fmt: skip

        def show() -> None:
            if not runs:
                stdout.print("No label jobs: add [[labels.jobs]] sections to prodml.toml")
                return
            rows = [(r.name, f"{r.written:,}", r.to_dict()["watermark"] or "") for r in runs]
            table("Label jobs", ["job", "written", "watermark"], rows)

        emit({"jobs": [r.to_dict() for r in runs]}, as_json=as_json, human=show)


def _run_server(
    project: Path, host: str | None, port: int | None, workers: int | None, log_level: str
) -> None:
    """Run the project's server (serving, admin API, dashboard) until it is stopped."""
    from prodml.cli._server import run  # uvicorn, loaded only to serve
    from prodml.web import ui_app

    with guarded(False):
        proj = Project.open(project)
        config = proj.config.serving
        options: dict[str, Any] = {
            "host": host or config.host,
            "port": config.port if port is None else port,
            "log_level": log_level,
            "http": "httptools",
            "loop": "uvloop" if os.name != "nt" else "asyncio",
            # uvicorn waits with asyncio.wait_for: a float (0.5 s) is honoured as is
            "timeout_graceful_shutdown": config.shutdown_timeout_s,
            "access_log": False,
        }
        count = workers or config.workers
        logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
        if count > 1:
            proj.db.ensure_intact()  # each worker checks too; refuse here, once, clearly
            os.environ[PROJECT_ENV] = str(proj.root)
            proj.close()
            run("prodml.web:app_from_env", factory=True, workers=count, **options)
        else:
            previous = signal.signal(signal.SIGTERM, _exit_cleanly)
            try:
                run(ui_app(proj, close_project=True, own_process=True), **options)
            finally:
                signal.signal(signal.SIGTERM, previous)
