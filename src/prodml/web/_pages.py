"""What each dashboard page shows, read from the project's records (the same calls the
CLI makes): plain dicts and lists that the templates render. Nothing here writes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prodml.core.errors import NotFoundError, ProdMLError, StateError, StorageError
from prodml.monitoring import render_endpoint_section, render_retraining
from prodml.monitoring._sinks import parse_scope
from prodml.ops import OpsEvents
from prodml.project import retrain_records
from prodml.rollout import ACTIVE_STATUSES, render_rollout_analysis
from prodml.web._cache import Memo
from prodml.web._traffic import Traffic, recent_traffic

if TYPE_CHECKING:
    from prodml.project import Project
    from prodml.registry import Deployment

__all__ = [
    "endpoint_page",
    "features_page",
    "lineage_page",
    "model_page",
    "monitoring_page",
    "overview_page",
    "retraining_page",
]

#: The rollout commands a plan in each status takes (others are refused): name → role.
ROLLOUT_ACTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "active": (("advance", "operator"), ("pause", "operator"), ("rollback", "operator"),
               ("promote", "admin")),
    "paused": (("resume", "operator"), ("rollback", "operator")),
    "awaiting_approval": (("approve", "operator"), ("rollback", "operator"),
                          ("promote", "admin")),
    "promoted": (("rollback", "operator"),),
}  # fmt: skip


def deployment_actions(
    project: Project, deployment: Deployment, latest_action: str | None
) -> list[tuple[str, str, str]]:
    """The deployment commands its state takes, as ``(route, role, label)``: the ones the
    store would refuse (a rollback with nothing to undo, pausing a paused deployment)
    are not offered."""
    spec = deployment.spec
    out = [("resume", "operator", "Resume")] if spec.paused else [("pause", "operator", "Pause")]
    champion = spec.champion
    if latest_action == "promote" or (spec.policy != "single" and champion is not None):
        out.append(("rollback", "operator", "Rollback"))
    elif champion is not None:
        model = champion.model.partition(":")[0]
        if "previous" in project.registry.aliases(model):
            out.append(("restore_previous", "operator", "Restore previous"))
    if any(arm.role != "champion" for arm in spec.arms):
        out.append(("promote", "admin", "Promote"))
    return out


def _last_decision(project: Project, endpoint: str) -> dict[str, Any] | None:
    try:
        return project.rollout.store.last_decision(endpoint)
    except ProdMLError:
        return None


def _firing(project: Project) -> list[dict[str, Any]]:
    """The alerts whose debounced state is firing."""
    return [a for a in project.monitor.store.alert_states() if a.get("state") == "firing"]


def _alerts_of(firing: list[dict[str, Any]], endpoint: str) -> list[dict[str, Any]]:
    """The firing alerts scoped to ``endpoint`` (``endpoint=…/arm=…`` scopes)."""
    return [a for a in firing if parse_scope(str(a.get("scope", ""))).get("endpoint") == endpoint]


def _traffic(project: Project, endpoint: str) -> dict[str, Any]:
    """``traffic``: the endpoint's recent traffic (None: no records), and
    ``traffic_error``: why it could not be read (a corrupt log file), else None — the
    page still shows the deployment and its buttons (a rollback is most needed then)."""
    try:
        return {"traffic": recent_traffic(project.logs.predictions, endpoint),
                "traffic_error": None}  # fmt: skip
    except StorageError as exc:
        return {"traffic": None, "traffic_error": str(exc)}


def _retrain_by_endpoint(project: Project) -> dict[str, dict[str, Any]]:
    status = project.retraining.status()
    out: dict[str, dict[str, Any]] = {}
    for policy in status.get("policies", []):
        if policy.get("last_job") is not None:
            out.setdefault(policy["endpoint"], policy)
    return out


def overview_page(project: Project) -> dict[str, Any]:
    """Every endpoint: deployment, recent traffic, firing alerts, the last retrain job and
    rollout decision."""
    firing = _firing(project)
    retrains = _retrain_by_endpoint(project)
    rows = []
    for deployment in project.deployments.list():
        name = deployment.endpoint
        rows.append({
            "endpoint": name,
            "deployment": deployment.to_dict(),
            **_traffic(project, name),
            "alerts": _alerts_of(firing, name),
            "retrain": retrains.get(name),
            "decision": _last_decision(project, name),
        })  # fmt: skip
    events = OpsEvents(project.db)
    return {"endpoints": rows, "firing": firing, "backup": events.last("backup"),
            "drill": events.last("drill")}  # fmt: skip


def endpoint_page(project: Project, endpoint: str, memo: Memo | None = None) -> dict[str, Any]:
    """One endpoint: its deployment and history, traffic by arm and over time, the
    rollout with its decisions and, while it is in progress, its experiment analysis
    (kept ``memo``'s time for a deployment revision: it reads the logs)."""
    deployment = project.deployments.get(endpoint)
    rollout = None
    try:
        rollout = project.rollout.status(endpoint)
    except (NotFoundError, StateError):  # no rollout plan on this endpoint
        rollout = None
    analysis = None
    if rollout is not None and rollout.get("status") in (*ACTIVE_STATUSES, "paused"):

        def analyse() -> str:
            try:
                found = project.rollout.analyze(endpoint).to_dict()
            except NotFoundError:
                found = None
            return render_rollout_analysis(found)

        key = ("analysis", endpoint, deployment.revision)
        analysis = memo.get(key, analyse) if memo is not None else analyse()
    history = list(reversed(project.deployments.history(endpoint)))[:30]
    latest = str(history[0].get("action")) if history else None
    read = _traffic(project, endpoint)
    traffic = read["traffic"]
    return {
        "endpoint": endpoint,
        "deployment": deployment.to_dict(),
        "history": history,
        **read,
        "split": _split_rows(traffic),
        "rollout": rollout,
        "analysis": analysis,
        "deployment_actions": deployment_actions(project, deployment, latest),
        "rollout_actions": ROLLOUT_ACTIONS.get(str((rollout or {}).get("status")), ()),
    }


def _split_rows(traffic: Traffic | None) -> dict[str, Any]:
    """The hourly split as shares per arm (for the stacked bars)."""
    if traffic is None or not traffic.split:
        return {"arms": [], "hours": []}
    arms = sorted({arm for _, counts in traffic.split for arm in counts})
    hours = []
    for when, counts in traffic.split:
        total = sum(counts.values())
        hours.append({"hour": when, "total": total,
                      "shares": [(arm, counts.get(arm, 0) / total) for arm in arms]})  # fmt: skip
    return {"arms": arms, "hours": hours}


def model_page(project: Project, name: str, compare: Sequence[int] = ()) -> dict[str, Any]:
    """A model's versions with gates, metrics, approval status and aliases; two of them
    side by side when ``compare`` names them."""
    versions = project.registry.versions(name)
    if not versions:
        raise NotFoundError(f"model {name!r}: no versions registered")
    aliases = project.registry.aliases(name)
    by_version = {v.version: v for v in versions}
    compared = [by_version[v].to_dict() for v in compare if v in by_version]
    metric_names = sorted({k for v in compared for k in (v.get("metrics") or {})})
    return {
        "model": name,
        "versions": [v.to_dict() for v in sorted(versions, key=lambda v: -v.version)],
        "aliases": aliases,
        "compared": compared,
        "metric_names": metric_names,
    }


def lineage_page(project: Project, name: str, version: int) -> dict[str, Any]:
    """A version's lineage as a graph of four columns — its run, the training sets it
    learned from, their feature-view versions, and those views' sources — and, forward,
    the deployments that serve it now."""
    ref = f"{name}:{version}"
    lineage = project.registry.lineage(ref)
    views: dict[tuple[str, str], dict[str, Any]] = {}
    sources: dict[str, dict[str, Any]] = {}
    for dataset in lineage.get("datasets") or []:
        for view in dataset.get("feature_views") or []:
            key = (str(view.get("name")), str(view.get("version")))
            source = view.get("source") or {}
            label = _source_label(source)
            views.setdefault(key, {"name": key[0], "version": key[1], "kind": view.get("kind"),
                                   "source": label, "datasets": []})["datasets"].append(
                dataset.get("role"))  # fmt: skip
            sources.setdefault(label, {"label": label, "type": source.get("type"), "views": []})
            sources[label]["views"].append(key[0])
    serving = []
    for deployment in project.deployments.list():
        for arm in deployment.spec.arms:
            if arm.model == ref:
                serving.append({"endpoint": deployment.endpoint, "arm": arm.name,
                                "weight": arm.weight})  # fmt: skip
    return {"model": name, "version": version, "ref": ref, "lineage": lineage,
            "run": lineage.get("run") or {}, "datasets": lineage.get("datasets") or [],
            "views": sorted(views.values(), key=lambda v: v["name"]),
            "sources": sorted(sources.values(), key=lambda v: v["label"]),
            "serving": serving}  # fmt: skip


def _source_label(source: dict[str, Any]) -> str:
    """A source in one line: a file path, a table, the files a query reads, or an
    on-demand feature's inputs."""
    kind = str(source.get("type") or "source")
    if kind == "on_demand":
        return "request inputs: " + ", ".join(str(i) for i in source.get("inputs") or [])
    for field in ("path", "table", "uri"):
        if source.get(field):
            return f"{kind}: {source[field]}"
    query = str(source.get("query") or "")
    found = re.findall(r"read_parquet\('([^']+)'", query)
    if found:
        return f"{kind}: " + ", ".join(sorted(set(found)))
    return f"{kind}: " + " ".join(query.split())[:80]


def monitoring_page(project: Project, endpoint: str) -> dict[str, Any]:
    """The endpoint's stored monitoring windows, as the HTML report shows them."""
    stored = project.monitor.stored(endpoint=endpoint)
    html = render_endpoint_section(
        endpoint, [r.window for r in stored], {r.window.id: r.results for r in stored}
    )
    alerts = _alerts_of(_firing(project), endpoint)
    return {"endpoint": endpoint, "windows": len(stored), "section": html, "alerts": alerts}


def features_page(project: Project) -> dict[str, Any]:
    """Applied definitions with their versions, and each view's materialization
    watermark (how fresh its online rows are)."""
    applied = project.features.list()
    try:
        marks = project.features.watermarks()
    except ProdMLError:
        marks = {}
    now = project.clock.now()
    rows = []
    for item in applied:
        mark = marks.get(item.name) if item.kind == "feature_view" else None
        rows.append({"kind": item.kind, "name": item.name, "version": item.version,
                     "status": item.status, "created_at": item.created_at, "watermark": mark,
                     "lag_h": None if mark is None else _hours(now, mark)})  # fmt: skip
    return {"definitions": rows}


def _hours(now: datetime, then: datetime) -> float:
    return (now - then).total_seconds() / 3600.0


def retraining_page(project: Project) -> dict[str, Any]:
    """Policies with their triggers and last job, then every job with its steps."""
    status = project.retraining.status()
    records = retrain_records(project.retraining, project.registry, project.rollout.store)
    return {"status": status, "section": render_retraining(records)}
