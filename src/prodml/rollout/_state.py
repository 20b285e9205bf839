"""Where one endpoint's rollout stands: its phase and step, when they began, the arms
and versions it compares, the deployment revision it last wrote, and approval.

Stored as JSON next to the plan; a plan's *status* (``active``, ``paused``,
``awaiting_approval``, ``promoted``, ``completed``, ``rolled_back``, ``stopped``) is
kept beside it so listing active plans needs no JSON.

>>> from datetime import UTC, datetime
>>> t = datetime(2013, 6, 1, tzinfo=UTC)
>>> state = RolloutState(t, t, 3, "flight_delay:1", "flight_delay:2")
>>> RolloutState.from_dict(state.to_dict()) == state
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from prodml.core import DefinitionError

__all__ = ["ACTIVE_STATUSES", "STATUSES", "RolloutState"]

STATUSES = (
    "active",
    "paused",
    "awaiting_approval",
    "promoted",
    "completed",
    "rolled_back",
    "stopped",
)
#: Statuses a controller pass acts on (``promoted``: waiting to decommission).
ACTIVE_STATUSES = ("active", "awaiting_approval", "promoted")
_TIMES = ("started_at", "step_started_at", "approved_at", "promoted_at")


@dataclass(frozen=True)
class RolloutState:
    """See the module docstring. ``revision`` is the deployment revision the plan last
    wrote or accepted: a different one means someone else changed the deployment."""

    started_at: datetime
    step_started_at: datetime
    revision: int
    champion_model: str
    challenger_model: str | None
    step: int = 0
    champion_arm: str = "champion"
    challenger_arm: str = "challenger"
    approved_by: str | None = None
    approved_at: datetime | None = None
    approval_reason: str | None = None
    promoted_at: datetime | None = None
    previous_arm: str | None = None
    passes: int = 0
    last_code: str | None = None

    def with_(self, **changes: Any) -> RolloutState:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in _TIMES:
            value = out[name]
            out[name] = None if value is None else value.isoformat()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutState:
        values = dict(data)
        try:
            for name in _TIMES:
                if values.get(name) is not None:
                    values[name] = datetime.fromisoformat(values[name])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise DefinitionError(f"rollout state is malformed: {exc}") from None
