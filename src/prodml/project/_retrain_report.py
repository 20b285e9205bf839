"""The monitoring report's retraining section, read from the records: each retrain job,
its candidate's gate result and time split as the registry holds them, and what the
rollout decisions on the policy's endpoint say about the candidate.

The report is rendered in ``monitoring`` (layer 5), which may not read the control
layer's records; the facade, which may, reads them here and hands them in. Nothing is
recomputed: the page shows what the training job, the gate and the controllers wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prodml.monitoring import ReportSection, render_report
from prodml.monitoring._report_retraining import ENDINGS, RetrainRecord, RolloutOutcome
from prodml.storage import atomic_write

if TYPE_CHECKING:
    from prodml.project._project import Project
    from prodml.registry import ModelRegistry
    from prodml.retraining import Retraining, RetrainJob
    from prodml.rollout import RolloutStore

__all__ = ["retrain_records", "rollout_outcome", "write_project_report"]


def write_project_report(
    project: Project,
    path: Path,
    *,
    title: str,
    endpoint: str | None = None,
    sections: Sequence[ReportSection] = (),
) -> dict[str, int]:
    """Write the project's HTML report to ``path`` (atomically: the old page stays until
    the new one is whole): the caller's ``sections``, the stored monitoring windows and
    the retrain jobs (``endpoint``'s only when given). Counts of what it shows."""
    stored = project.monitor.stored(endpoint=endpoint)
    records = retrain_records(
        project.retraining, project.registry, project.rollout.store, endpoint=endpoint
    )
    html = render_report(
        [r.window for r in stored], {r.window.id: r.results for r in stored},
        title=title, generated_at=project.clock.now(), retraining=records, sections=sections,
    )  # fmt: skip
    data = html.encode()
    with atomic_write(path, mode=0o644) as handle:  # a page to open and share
        handle.write(data)
    return {"windows": len(stored), "retrain_jobs": len(records), "bytes": len(data)}


def retrain_records(
    retraining: Retraining,
    registry: ModelRegistry,
    rollouts: RolloutStore,
    *,
    endpoint: str | None = None,
    limit: int = 50,
) -> list[RetrainRecord]:
    """The newest ``limit`` retrain jobs (only ``endpoint``'s policies' when given),
    newest first, each with its candidate's records."""
    jobs = [j for j in retraining.jobs.jobs() if endpoint in (None, j.endpoint)][:limit]
    decisions: dict[str, list[dict[str, Any]]] = {}
    out = []
    for job in jobs:
        version = None if job.candidate is None else registry.get(job.candidate)
        outcome = None
        if job.candidate is not None and job.endpoint is not None:
            if job.endpoint not in decisions:
                decisions[job.endpoint] = rollouts.decisions(job.endpoint)
            outcome = rollout_outcome(job.endpoint, job.candidate, decisions[job.endpoint])
        out.append(
            _record(
                job,
                split=None if version is None else (version.evaluation or {}).get("split"),
                gate=None if version is None else version.gate,
                outcome=outcome,
            )
        )
    return out


def rollout_outcome(
    endpoint: str, candidate: str, decisions: Sequence[Mapping[str, Any]]
) -> RolloutOutcome | None:
    """The latest rollout plan on ``endpoint`` that started with ``candidate`` as its
    challenger, and its last ending decision (promote, ship, rollback, stop) before the
    next plan started — or its latest decision while it runs; None if no plan took it.

    ``decisions`` are the endpoint's, oldest first (``RolloutStore.decisions``).

    >>> from datetime import datetime
    >>> def d(action, day, challenger=None, reason=None):
    ...     plan = {"plan": {"challenger": challenger}} if action == "start" else {}
    ...     return {"decision": action, "time": datetime(2013, 7, day), "actor": "ctl",
    ...             "reason": reason, "evidence": plan}
    >>> history = [d("start", 1, "m:2"), d("rollback", 2, reason="guardrail"),
    ...            d("start", 3, "m:3"), d("advance", 4)]
    >>> o = rollout_outcome("e", "m:2", history)
    >>> o.decision, o.time.day, o.reason, o.ended
    ('rollback', 2, 'guardrail', True)
    >>> rollout_outcome("e", "m:3", history).decision
    'advance'
    >>> rollout_outcome("e", "m:4", history) is None
    True
    """
    starts = [
        i
        for i, d in enumerate(decisions)
        if d.get("decision") == "start"
        and ((d.get("evidence") or {}).get("plan") or {}).get("challenger") == candidate
    ]
    if not starts:
        return None
    first = starts[-1]
    later = (i for i in range(first + 1, len(decisions)) if decisions[i].get("decision") == "start")
    segment = decisions[first : next(later, len(decisions))]
    endings = [d for d in segment if d.get("decision") in ENDINGS]
    chosen = endings[-1] if endings else segment[-1]
    return RolloutOutcome(
        endpoint=endpoint,
        started_at=segment[0]["time"],
        decision=str(chosen["decision"]),
        time=chosen["time"],
        actor=str(chosen.get("actor") or ""),
        reason=chosen.get("reason"),
    )


def _record(
    job: RetrainJob,
    *,
    split: Mapping[str, Any] | None,
    gate: Mapping[str, Any] | None,
    outcome: RolloutOutcome | None,
) -> RetrainRecord:
    return RetrainRecord(
        id=job.id, policy=job.policy, model=job.model, endpoint=job.endpoint,
        status=job.status, attempt=job.attempt, trigger=job.trigger, reason=job.reason,
        evidence=job.evidence, started_at=job.started_at, actor=job.actor,
        finished_at=job.finished_at, window_start=job.window_start, window_end=job.window_end,
        steps=job.steps, candidate=job.candidate, error=job.error, split=split, gate=gate,
        outcome=outcome,
    )  # fmt: skip
