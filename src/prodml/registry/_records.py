"""What the registry hands out: frozen records of runs, versions, alias moves and audit
entries. They are snapshots; changing one in memory changes nothing stored."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["AliasEvent", "AuditEntry", "ModelVersion", "RunInfo", "iso", "nan_to_none"]


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def nan_to_none(value: float | None) -> float | None:
    """Metrics travel as JSON: NaN becomes ``None``."""
    return None if value is None or math.isnan(value) else value


@dataclass(frozen=True)
class RunInfo:
    """A training run as recorded."""

    id: str
    model_name: str
    status: str
    params: dict[str, Any]
    tags: dict[str, str]
    seed: int | None
    environment: dict[str, Any]
    code: dict[str, Any]
    service_name: str | None
    service_version: str | None
    parent_version: str | None
    job: dict[str, Any]
    artifacts: dict[str, Any]
    error: str | None
    start_time: datetime
    end_time: datetime | None
    metrics: dict[str, float] = field(default_factory=dict)
    datasets: tuple[tuple[str, str], ...] = ()

    def to_dict(self, *, packages: bool = False) -> dict[str, Any]:
        """JSON-ready; the package list (hundreds of entries) only when asked."""
        out = asdict(self)
        out["start_time"], out["end_time"] = iso(self.start_time), iso(self.end_time)
        out["metrics"] = {k: nan_to_none(v) for k, v in self.metrics.items()}
        out["datasets"] = [{"fingerprint": f, "role": r} for f, r in self.datasets]
        if not packages:
            env = dict(self.environment)
            env["packages"] = len(env.get("packages", {}))
            out["environment"] = env
        return out


@dataclass(frozen=True)
class ModelVersion:
    """One registered, immutable model version and its approval state."""

    name: str
    version: int
    artifact_digest: str
    artifact_size: int
    format: str
    signature: dict[str, Any]
    profile: dict[str, Any] | None
    metrics: dict[str, Any]
    evaluation: dict[str, Any] | None
    gate: dict[str, Any] | None
    gate_status: str | None
    run_id: str | None
    source: str | None
    description: str
    created_by: str
    created_at: datetime
    status: str
    status_actor: str | None
    status_reason: str | None
    status_time: datetime | None
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def blessed(self) -> bool:
        return self.gate_status == "BLESSED"

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """JSON-ready; the profile and evaluation report only with ``full``."""
        out = asdict(self)
        out["ref"] = self.ref
        out["created_at"], out["status_time"] = iso(self.created_at), iso(self.status_time)
        out["aliases"] = list(self.aliases)
        if not full:
            out.pop("profile")
            out.pop("evaluation")
        return out


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias (``version`` None: the alias was removed)."""

    name: str
    alias: str
    previous_version: int | None
    version: int | None
    actor: str
    reason: str | None
    time: datetime

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["time"] = iso(self.time)
        return out


@dataclass(frozen=True)
class AuditEntry:
    """One state change in the registry."""

    id: int
    time: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["time"] = iso(self.time)
        return out
