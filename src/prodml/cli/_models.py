"""``prodml models …``: list, show, lineage, approve, reject, alias, compare, audit, import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from prodml.cli._options import ActorOption, JsonOption, ProjectOption, ReasonOption
from prodml.cli._output import emit, guarded, stdout, styled, table
from prodml.core import ConfigError
from prodml.project import Project

__all__ = ["models_app"]

models_app = typer.Typer(
    help="The model registry: versions, approvals, aliases, lineage.", no_args_is_help=True
)

RefArgument = Annotated[str, typer.Argument(help="name:3, name@alias, or name (its latest).")]


@models_app.command("list")
def list_(project: ProjectOption = Path("."), as_json: JsonOption = False) -> None:
    """Every registered model with its latest version and aliases."""
    with guarded(as_json), Project.open(project) as proj:
        models = proj.registry.models()
    emit(
        {"models": models},
        as_json=as_json,
        human=lambda: table(
            "Models",
            ["name", "latest", "status", "aliases"],
            [
                (
                    m["name"],
                    m["latest"],
                    m["latest_status"],
                    ", ".join(f"{a}→{v}" for a, v in sorted(m["aliases"].items())),
                )
                for m in models
            ],
        ),
    )


@models_app.command("show")
def show(
    ref: RefArgument,
    full: Annotated[bool, typer.Option(help="Include the evaluation report and profile.")] = False,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """A version's metrics, gate, approval and aliases (a bare name lists its versions)."""
    with guarded(as_json), Project.open(project) as proj:
        if ":" in ref or "@" in ref:
            data: dict[str, Any] = proj.registry.get(ref).to_dict(full=full)
        else:
            data = {
                "name": ref,
                "versions": [v.to_dict() for v in proj.registry.versions(ref)],
                "aliases": proj.registry.aliases(ref),
            }
    emit(data, as_json=as_json, human=lambda: _show(data))


def _show(data: dict[str, Any]) -> None:
    if "versions" in data:
        table(
            f"Versions of {data['name']}",
            ["version", "created", "status", "gate", "aliases", "run"],
            [
                (
                    v["version"],
                    v["created_at"][:19],
                    v["status"],
                    v["gate_status"] or "—",
                    ", ".join(v["aliases"]),
                    v["run_id"] or v["source"] or "—",
                )
                for v in data["versions"]
            ],
        )
        return
    stdout.print(
        styled(
            "[bold]{ref}[/] {status}{by}; gate {gate}; aliases {aliases}",
            ref=data["ref"],
            status=data["status"],
            by=(
                f" by {data['status_actor']} ({data['status_reason'] or 'no reason'})"
                if data["status_actor"]
                else ""
            ),
            gate=data["gate_status"] or "—",
            aliases=", ".join(data["aliases"]) or "none",
        )
    )
    stdout.print(
        f"artifact sha256 {data['artifact_digest']} ({data['artifact_size']:,} bytes, {data['format']}); "
        f"run {data['run_id']}; registered by {data['created_by']} at {data['created_at']}"
    )
    table("Metrics", ["metric", "value"], [(k, v) for k, v in data["metrics"].items()])
    inputs = data["signature"].get("inputs", [])
    table("Signature", ["input", "dtype"], [(c["name"], c["dtype"]) for c in inputs])
    if data["gate"]:
        table(
            f"Gate {data['gate']['status']}",
            ["check", "passed", "detail"],
            [
                (c["name"], "yes" if c["passed"] else "NO", c["detail"])
                for c in data["gate"]["checks"]
            ],
        )
        for warning in data["gate"].get("warnings", []):
            stdout.print(f"warning: {warning}", style="yellow", markup=False, soft_wrap=True)


@models_app.command("lineage")
def lineage(
    ref: Annotated[str | None, typer.Argument(help="A version: trace what it came from.")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="A training-set fingerprint: which versions used it.")
    ] = None,
    feature_view: Annotated[
        str | None,
        typer.Option(help="NAME or NAME:VERSION-PREFIX: which versions used the feature view."),
    ] = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Version → run → training sets → feature views → sources, or the reverse."""
    with guarded(as_json), Project.open(project) as proj:
        if ref is not None:
            data = proj.registry.lineage(ref)
        else:
            data = proj.registry.used_by(dataset=dataset, feature_view=feature_view)
    emit(data, as_json=as_json, human=lambda: _show_lineage(data))


def _show_lineage(data: dict[str, Any]) -> None:
    if "versions" in data:
        what = data.get("dataset") or data.get("feature_view")
        stdout.print(f"Used by: {', '.join(data['versions']) or 'no model version'} ({what})")
        for fingerprint in data.get("datasets", []):
            stdout.print(f"  training set {fingerprint}")
        return
    stdout.print(
        styled("[bold]{version}[/] artifact {artifact}", version=data["version"],
               artifact=data["artifact"][:12])
    )  # fmt: skip
    run = data["run"]
    if run is None:
        stdout.print(f"  no run (source {data['source']})")
        return
    code = run["code"] or {}
    stdout.print(
        f"  run {run['id']} ({run['status']}), seed {run['seed']}, service {run['service']} "
        f"{(run['service_version'] or '')[:12]}, commit {(code.get('commit') or '—')[:12]}"
        f"{' (dirty)' if code.get('dirty') else ''}"
    )
    for ds in data["datasets"]:
        if not ds.get("recorded", True):
            stdout.print(
                f"  {ds['role']} set {ds['fingerprint'][:16]}… (not recorded in this project)"
            )
            continue
        stdout.print(
            f"  {ds['role']} set {ds['fingerprint'][:16]}… {ds.get('rows', '?'):,} rows "
            f"{ds.get('start_time')} → {ds.get('end_time')}"
        )
        for view in ds.get("feature_views", []):
            source = view["source"] or {}
            where = source.get("path") or source.get("query") or source.get("type") or "—"
            stdout.print(
                f"    {view['kind']} {view['name']} {view['version'][:12]} ← "
                + " ".join(str(where).split())[:80]
            )


@models_app.command("approve")
def approve(
    ref: RefArgument,
    reason: ReasonOption = None,
    actor: ActorOption = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Approve a pending version (it may then take production traffic)."""
    _decide(ref, "approved", reason, actor, project, as_json)


@models_app.command("reject")
def reject(
    ref: RefArgument,
    reason: ReasonOption = None,
    actor: ActorOption = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Reject a pending version (it loses its aliases and can hold none)."""
    _decide(ref, "rejected", reason, actor, project, as_json)


def _decide(
    ref: str, status: str, reason: str | None, actor: str | None, project: Path, as_json: bool
) -> None:
    with guarded(as_json), Project.open(project) as proj:
        change = proj.registry.approve if status == "approved" else proj.registry.reject
        version = change(ref, actor=actor, reason=reason).to_dict()
    emit(version, as_json=as_json, human=lambda: stdout.print(f"{version['ref']} {status}"))


@models_app.command("alias")
def alias(
    ref: Annotated[str, typer.Argument(help="The version (name:3) to point the alias at.")],
    name: Annotated[str, typer.Argument(help="The alias, e.g. champion or challenger.")],
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias instead.")] = False,
    reason: ReasonOption = None,
    actor: ActorOption = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Point an alias at a version (`models alias flight_delay:2 challenger`), or remove it."""
    with guarded(as_json), Project.open(project) as proj:
        if delete:
            model = ref.partition("@")[0].partition(":")[0]
            proj.registry.delete_alias(model, name, actor=actor, reason=reason)
            data: dict[str, Any] = {"model": model, "alias": name, "deleted": True}
        else:
            target = proj.registry.get(ref)
            version = proj.registry.set_alias(
                target.name, name, target.version, actor=actor, reason=reason
            )
            data = {"model": version.name, "alias": name, "version": version.version}
    emit(
        data,
        as_json=as_json,
        human=lambda: stdout.print(
            f"{data['model']}@{name} removed"
            if delete
            else f"{data['model']}@{name} → {data['model']}:{data['version']}"
        ),
    )


@models_app.command("compare")
def compare(
    first: Annotated[str, typer.Argument(help="A version, e.g. flight_delay@champion.")],
    second: Annotated[str, typer.Argument(help="Another version, e.g. flight_delay:2.")],
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Two versions' metrics side by side, overall and per slice, from their evaluations."""
    with guarded(as_json), Project.open(project) as proj:
        a, b = proj.registry.get(first), proj.registry.get(second)
        data = _comparison(a.to_dict(full=True), b.to_dict(full=True))
    emit(data, as_json=as_json, human=lambda: _show_comparison(data))


def _comparison(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    def delta(x: Any, y: Any) -> float | None:
        return None if x is None or y is None else float(y) - float(x)

    metrics = {
        name: {"a": a["metrics"].get(name), "b": b["metrics"].get(name)}
        for name in dict.fromkeys([*a["metrics"], *b["metrics"]])
    }
    for values in metrics.values():
        values["delta"] = delta(values["a"], values["b"])
    slices: dict[str, Any] = {}
    a_test = ((a.get("evaluation") or {}).get("test") or {}).get("slices", {})
    b_test = ((b.get("evaluation") or {}).get("test") or {}).get("slices", {})
    for column in sorted(set(a_test) & set(b_test)):
        for value in sorted(set(a_test[column]) & set(b_test[column])):
            for name, x in a_test[column][value]["metrics"].items():
                y = b_test[column][value]["metrics"].get(name)
                slices.setdefault(f"{column}={value}", {})[name] = {
                    "a": x,
                    "b": y,
                    "delta": delta(x, y),
                }
    same_data = (a.get("evaluation") or {}).get("split") == (b.get("evaluation") or {}).get("split")
    return {
        "a": a["ref"],
        "b": b["ref"],
        "same_test_data": same_data,
        "metrics": metrics,
        "slices": slices,
    }


def _show_comparison(data: dict[str, Any]) -> None:
    def f(x: Any) -> str:
        return "—" if x is None else f"{x:,.4f}"

    table(
        f"{data['a']} vs {data['b']}"
        + ("" if data["same_test_data"] else " (evaluated on different test splits)"),
        ["metric", data["a"], data["b"], "Δ"],
        [(k, f(v["a"]), f(v["b"]), f(v["delta"])) for k, v in data["metrics"].items()],
    )
    rows = [
        (s, f(v["a"]), f(v["b"]), f(v["delta"]))
        for s, metrics in data["slices"].items()
        for name, v in metrics.items()
        if name == "roc_auc"
    ]
    if rows:
        table("ROC-AUC per slice", ["slice", data["a"], data["b"], "Δ"], rows)


@models_app.command("audit")
def audit(
    object_id: Annotated[
        str | None, typer.Argument(help="Only this object (name:3 or name@alias).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many entries.")] = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """The audit log of registry state changes, oldest first."""
    with guarded(as_json), Project.open(project) as proj:
        entries = [e.to_dict() for e in proj.registry.audit_log(object_id, limit=limit)]
    emit(
        {"audit": entries},
        as_json=as_json,
        human=lambda: table(
            "Audit log",
            ["time", "actor", "action", "object", "before", "after"],
            [
                (e["time"][:19], e["actor"], e["action"], e["object_id"], e["before"], e["after"])
                for e in entries
            ],
        ),
    )


@models_app.command("import")
def import_(
    uri: Annotated[str, typer.Argument(help="An MLflow model URI, e.g. models:/NAME/VERSION.")],
    name: Annotated[str | None, typer.Option(help="prodml model name (default: MLflow's).")] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: \\[mlflow] tracking_uri).")
    ] = None,
    description: Annotated[str, typer.Option(help="Version description.")] = "",
    actor: ActorOption = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Register an MLflow model as a prodml version (artifact hashed, pyfunc adapter)."""
    with guarded(as_json), Project.open(project) as proj:
        tracking = tracking_uri or proj.config.mlflow.tracking_uri
        if tracking is None:
            raise ConfigError(
                "no MLflow tracking URI: pass --tracking-uri or set [mlflow] tracking_uri"
            )
        from prodml.registry.mlflow import import_mlflow_model

        version = import_mlflow_model(
            proj.registry,
            uri,
            name=name,
            tracking_uri=tracking,
            registry_uri=proj.config.mlflow.registry_uri,
            actor=actor,
            description=description,
        ).to_dict()
    emit(
        version,
        as_json=as_json,
        human=lambda: stdout.print(
            styled(
                "Imported {uri} as [bold]{ref}[/] (sha256 {digest})",
                uri=uri,
                ref=version["ref"],
                digest=version["artifact_digest"][:12],
            )
        ),
    )
