"""Retrain jobs as records: one row per job in ``retrain_jobs``, written when the job
starts and after each step, so a job is visible (and its last step known) while it runs
and after the controller that ran it is gone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from prodml.core import NotFoundError, new_id
from prodml.storage import MetadataDB, RetrainJobRow

__all__ = ["FINISHED", "JobStore", "RetrainJob", "Step"]

#: Statuses of a job that has ended.
FINISHED = ("succeeded", "rejected", "failed", "abandoned")


@dataclass
class Step:
    """One step of a job: its ``name``, when it started, how long it took, how it ended
    (``running``, ``ok``, ``failed``, ``skipped``) and what it found."""

    name: str
    started_at: datetime
    seconds: float | None = None
    status: str = "running"
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "started_at": self.started_at.isoformat(),
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "status": self.status,
            "detail": self.detail,
        }


@dataclass
class RetrainJob:
    """A retrain job of ``policy`` (see :mod:`prodml.retraining`): why it started
    (``trigger``, ``reason``, ``evidence``), its data window, steps, the ``candidate``
    version it registered and how it ended (``status``, ``error``)."""

    id: str
    policy: str
    model: str
    endpoint: str | None
    trigger: str
    reason: str
    evidence: dict[str, Any]
    status: str
    attempt: int
    started_at: datetime
    actor: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    candidate: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "id": self.id, "policy": self.policy, "model": self.model,
            "endpoint": self.endpoint, "trigger": self.trigger, "reason": self.reason,
            "evidence": self.evidence, "status": self.status, "attempt": self.attempt,
            "window_start": iso(self.window_start), "window_end": iso(self.window_end),
            "candidate": self.candidate, "steps": self.steps, "error": self.error,
            "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
            "actor": self.actor,
        }  # fmt: skip


_FIELDS = (
    "policy", "model", "endpoint", "trigger", "reason", "evidence", "status", "attempt",
    "window_start", "window_end", "candidate", "steps", "error", "started_at", "finished_at",
    "actor",
)  # fmt: skip


def _job(row: RetrainJobRow) -> RetrainJob:
    return RetrainJob(
        id=row.id, **{name: getattr(row, name) for name in _FIELDS if name != "steps"},
        steps=list(row.steps),
    )  # fmt: skip


class JobStore:
    """Reads and writes retrain jobs."""

    def __init__(self, db: MetadataDB) -> None:
        self._db = db

    def create(self, job: RetrainJob) -> RetrainJob:
        with self._db.write() as session:
            session.add(RetrainJobRow(id=job.id, **{name: getattr(job, name) for name in _FIELDS}))
        return job

    def save(self, job: RetrainJob) -> None:
        """Write the job's current fields (it must exist)."""
        with self._db.write() as session:
            row = session.get(RetrainJobRow, job.id)
            if row is None:
                raise NotFoundError(f"retrain job {job.id!r} does not exist")
            for name in _FIELDS:
                setattr(row, name, getattr(job, name))

    def get(self, job_id: str) -> RetrainJob:
        with self._db.session() as session:
            row = session.get(RetrainJobRow, job_id)
            if row is None:
                raise NotFoundError(
                    f"retrain job {job_id!r} does not exist: `prodml controller history` "
                    "lists the jobs"
                )
            return _job(row)

    def jobs(
        self,
        *,
        policy: str | None = None,
        status: str | tuple[str, ...] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[RetrainJob]:
        """Jobs, newest first."""
        with self._db.session() as session:
            query = select(RetrainJobRow).order_by(
                RetrainJobRow.started_at.desc(), RetrainJobRow.id.desc()
            )
            if policy is not None:
                query = query.where(RetrainJobRow.policy == policy)
            if status is not None:
                wanted = (status,) if isinstance(status, str) else status
                query = query.where(RetrainJobRow.status.in_(wanted))
            if since is not None:
                query = query.where(RetrainJobRow.started_at >= since)
            if limit is not None:
                query = query.limit(limit)
            return [_job(r) for r in session.scalars(query)]

    @staticmethod
    def new_id() -> str:
        return new_id("job")
