"""The monitoring report's retraining section: each retrain job as recorded — why it
started (trigger, reason, evidence), its data window and the time split its training
used, the gate's verdict with the failed checks, the candidate version, what the rollout
did with it (promoted, rolled back, stopped, still rolling out) and every step.

The section renders :class:`RetrainRecord` values, read from the retraining, registry and
rollout records by the layer that may read them (``prodml.project``): monitoring sits
below the control layer, so it is handed the records and recomputes nothing. Every string
from a record is escaped.

>>> from datetime import UTC, datetime
>>> t = datetime(2013, 7, 1, tzinfo=UTC)
>>> job = RetrainRecord("job_1", "perf", "delay", "delay", "failed", 1, "manual",
...                     "started by hand", {}, t, error="<b>disk full</b>")
>>> html = render_retraining([job])
>>> "job_1" in html, "&lt;b&gt;disk full&lt;/b&gt;" in html, "<b>disk" in html
(True, True, False)
>>> "No retrain job" in render_retraining([])
True
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from prodml.core import ensure_utc

__all__ = ["RetrainRecord", "RolloutOutcome", "render_retraining"]

#: A rollout decision that ends a candidate's rollout → how the report says it.
ENDINGS = {"promote": "Promoted", "ship": "Promoted", "rollback": "Rolled back",
           "stop": "Stopped"}  # fmt: skip
_BADGES = {"succeeded": "ok", "rejected": "failed", "failed": "failed", "abandoned": "failed"}


@dataclass(frozen=True)
class RolloutOutcome:
    """What the rollout controller decided about a candidate on ``endpoint``: the rollout
    plan that took it as challenger (``started_at``) and its ending decision — or, while
    it runs, its latest — with the decision's time, actor and reason."""

    endpoint: str
    started_at: datetime
    decision: str
    time: datetime
    actor: str
    reason: str | None

    @property
    def ended(self) -> bool:
        return self.decision in ENDINGS


@dataclass(frozen=True)
class RetrainRecord:
    """One retrain job as stored (see ``prodml.retraining.RetrainJob``), with what other
    records say about its candidate: ``split`` and ``gate`` as the registry holds them
    for the version (``evaluation["split"]``, ``gate``), ``outcome`` from the rollout
    decisions (None: the candidate never reached a rollout)."""

    id: str
    policy: str
    model: str
    endpoint: str | None
    status: str
    attempt: int
    trigger: str
    reason: str
    evidence: Mapping[str, Any]
    started_at: datetime
    actor: str = ""
    finished_at: datetime | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    steps: Sequence[Mapping[str, Any]] = ()
    candidate: str | None = None
    error: str | None = None
    split: Mapping[str, Any] | None = None
    gate: Mapping[str, Any] | None = None
    outcome: RolloutOutcome | None = None


def _full(moment: datetime) -> str:
    return ensure_utc(moment).strftime("%Y-%m-%d %H:%M")


def _moment(value: Any) -> str:
    """A recorded time (a datetime or ISO text) as ``YYYY-MM-DD HH:MM`` UTC text; other
    values as they are, "—" for none."""
    if isinstance(value, datetime):
        return _full(value)
    if isinstance(value, str):
        try:
            return _full(datetime.fromisoformat(value))
        except ValueError:
            return value
    return "—" if value is None else str(value)


def _duration(seconds: Any) -> str:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "—"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _json(value: Any) -> str:
    return "" if not value else json.dumps(value, default=str, sort_keys=True)


def _badge(status: str) -> str:
    return f'<span class="badge {_BADGES.get(status, "pending")}">{escape(status)}</span>'


def render_retraining(records: Sequence[RetrainRecord], *, anchor: str = "retraining") -> str:
    """The section: a summary row per job, newest first as given, then each job; a note
    when no job has run."""
    head = f'<section class="endpoint" id="{anchor}"><h2>Retraining</h2>'
    if not records:
        return head + (
            '<p class="note">No retrain job has run: no retraining policy has triggered '
            "and none was started by hand.</p></section>"
        )
    counts = Counter(r.status for r in records)
    meta = (
        f'<p class="meta">{len(records)} job{"s" * (len(records) != 1)}, newest first · '
        + escape(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
        + "</p>"
    )
    anchors = [f"{anchor}-job-{k}" for k in range(1, len(records) + 1)]
    return "".join([
        head, meta, _summary(records, anchors),
        *(_job(a, r) for a, r in zip(anchors, records, strict=True)), "</section>",
    ])  # fmt: skip


def _outcome_text(outcome: RolloutOutcome | None) -> str:
    if outcome is None:
        return "not rolled out"
    if outcome.ended:
        return f"{ENDINGS[outcome.decision].lower()} {_full(outcome.time)}"
    return f"rolling out ({outcome.decision} {_full(outcome.time)})"


def _summary(records: Sequence[RetrainRecord], anchors: Sequence[str]) -> str:
    rows = []
    for a, r in zip(anchors, records, strict=True):
        gate = str((r.gate or {}).get("status", "—"))
        cells = (_full(r.started_at), r.policy, r.trigger, r.candidate or "—", gate,
                 _outcome_text(r.outcome))  # fmt: skip
        rows.append(f'<tr><td><a href="#{a}">{escape(r.id)}</a></td>'
                    + "".join(f"<td>{escape(c)}</td>" for c in cells[:4])
                    + f"<td>{_badge(r.status)}</td>"
                    + "".join(f"<td>{escape(c)}</td>" for c in cells[4:]) + "</tr>")  # fmt: skip
    head = "".join(f"<th>{h}</th>" for h in ("Job", "Started (UTC)", "Policy", "Trigger",
                                               "Candidate", "Status", "Gate", "Rollout"))  # fmt: skip
    return (f'<div class="scroll"><table class="retrain-jobs"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")  # fmt: skip


def _job(anchor: str, r: RetrainRecord) -> str:
    where = f" · endpoint <code>{escape(r.endpoint)}</code>" if r.endpoint else ""
    ended = f", ended {_full(r.finished_at)}" if r.finished_at else ", still running"
    facts = {
        "Policy": f"<code>{escape(r.policy)}</code> · model <code>{escape(r.model)}</code>{where}",
        "Started": f"{_full(r.started_at)} UTC{ended} · attempt {r.attempt}"
        + (f" · by {escape(r.actor)}" if r.actor else ""),
        "Trigger": f"<b>{escape(r.trigger)}</b>: {escape(r.reason)}",
    }
    if r.evidence:
        facts["Evidence"] = f"<code>{escape(_json(r.evidence))}</code>"
    facts["Training window"] = (
        f"{_full(r.window_start)} → {_full(r.window_end)} UTC"
        if r.window_start is not None and r.window_end is not None
        else "— (the job ended before choosing it)"
    )
    facts["Test split"] = _split(r.split)
    facts["Candidate"] = (
        f"<code>{escape(r.candidate)}</code>" if r.candidate else "— (no version registered)"
    )
    facts["Gate"] = _gate(r.gate)
    facts["Rollout"] = _rollout(r)
    if r.error:
        facts["Error"] = f'<span class="bad job-error">{escape(r.error)}</span>'
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts.items())
    return "".join([
        f'<section class="arm" id="{anchor}"><h3>Job <code>{escape(r.id)}</code> '
        f"{_badge(r.status)}</h3>", f'<dl class="facts">{dl}</dl>',
        _failed_checks(r.gate), _steps(r.steps), "</section>",
    ])  # fmt: skip


def _split(split: Mapping[str, Any] | None) -> str:
    if not split:
        return "— (no registered candidate records one)"
    text = f"test rows from {escape(_moment(split.get('test_start')))} UTC"
    text += f" · basis <b>{escape(str(split.get('basis', '—')))}</b>"
    sizes = [f"{split[k]:,} {k}" for k in ("train", "validation", "test")
             if isinstance(split.get(k), int)]  # fmt: skip
    if sizes:
        text += " · rows " + escape(", ".join(sizes))
    if split.get("note"):
        text += f' <span class="note">({escape(str(split["note"]))})</span>'
    return text


def _checks(gate: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    checks = (gate or {}).get("checks") or []
    return [c for c in checks if isinstance(c, Mapping)]


def _gate(gate: Mapping[str, Any] | None) -> str:
    if not gate:
        return "— (not evaluated)"
    status = str(gate.get("status", "—"))
    checks = _checks(gate)
    failed = sum(not c.get("passed") for c in checks)
    mark = "" if status == "BLESSED" else ' class="bad"'
    text = f"<b{mark}>{escape(status)}</b>"
    if gate.get("champion"):
        text += f" against <code>{escape(str(gate['champion']))}</code>"
    text += f" · {failed} of {len(checks)} checks failed"
    warnings = [str(w) for w in gate.get("warnings") or ()]
    if warnings:
        text += " · warnings: " + escape("; ".join(warnings))
    return text


def _failed_checks(gate: Mapping[str, Any] | None) -> str:
    failed = [c for c in _checks(gate) if not c.get("passed")]
    if not failed:
        return ""
    rows = "".join(f"<tr><td>{escape(str(c.get('name', '')))}</td>"
                   f'<td class="details">{escape(str(c.get("detail", "")))}</td></tr>'
                   for c in failed)  # fmt: skip
    return ('<h4>Failed gate checks</h4><div class="scroll"><table class="results gate-failed">'
            f"<thead><tr><th>Check</th><th>Detail</th></tr></thead><tbody>{rows}</tbody>"
            "</table></div>")  # fmt: skip


def _rollout(r: RetrainRecord) -> str:
    o = r.outcome
    if o is None:
        return "— (the candidate was not handed to a rollout)" if r.candidate else "—"
    reason = f" — {escape(o.reason)}" if o.reason else ""
    where = f"on <code>{escape(o.endpoint)}</code>"
    if o.ended:
        return (f'<b class="outcome">{ENDINGS[o.decision]}</b> {_full(o.time)} UTC by '
                f"{escape(o.actor)} {where} (rollout started {_full(o.started_at)}){reason}")  # fmt: skip
    return (f'<b class="outcome">Rolling out</b> {where} since {_full(o.started_at)} UTC; '
            f"latest decision <b>{escape(o.decision)}</b> {_full(o.time)} by "
            f"{escape(o.actor)}{reason}")  # fmt: skip


def _steps(steps: Sequence[Mapping[str, Any]]) -> str:
    if not steps:
        return '<p class="note">No step was recorded.</p>'
    rows = []
    for s in steps:
        status = str(s.get("status", ""))
        mark = ' class="bad"' if status in ("failed", "abandoned") else ""
        cells = (f"<td>{escape(str(s.get('name', '')))}</td><td{mark}>{escape(status)}</td>"
                 f"<td>{escape(_moment(s.get('started_at')))}</td>"
                 f"<td>{escape(_duration(s.get('seconds')))}</td>")  # fmt: skip
        rows.append(f'<tr>{cells}<td class="details">{escape(_json(s.get("detail")))}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("Step", "Status", "Started (UTC)", "Duration",
                                               "Detail"))  # fmt: skip
    return (f'<h4>Steps</h4><div class="scroll"><table class="results retrain-steps"><thead>'
            f"<tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")  # fmt: skip
