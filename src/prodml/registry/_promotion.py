"""The registry's ``champion`` alias kept in step with a deployment's promote and rollback.

Promoting an arm makes its model the endpoint's champion *and* points
``<model>@champion`` at that version, in the deployment's transaction; the move is
recorded in the deployment's audit entry (``champion_alias``: alias, before, after) and
in the alias's own entry (which names the deployment revision). A rollback of that
promote reads the record back and moves the alias to where it was — only if it still
points where the promote left it; if someone moved it since, the rollback is refused
(:class:`ConflictError`) rather than guessing which of the two moves should win.

Only the promoted model's alias moves: with arms of different models (``a:3`` champion,
``b:2`` challenger), promoting ``b:2`` moves ``b@champion`` and leaves ``a@champion``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prodml.core import ConflictError, RegistryConfig, parse_ref
from prodml.registry._approvals import CHAMPION, move_alias
from prodml.registry._records import AliasEvent
from prodml.registry._versions import lock_model
from prodml.storage._models import AuditRow, ModelAliasRow

__all__ = ["ChampionMove", "champion_move", "promote_record"]


@dataclass(frozen=True)
class ChampionMove:
    """``name@champion`` moved from version ``before`` to ``after`` (None: no alias)."""

    name: str
    before: int | None
    after: int | None

    @property
    def alias(self) -> str:
        return f"{self.name}@{CHAMPION}"

    def reversed(self) -> ChampionMove:
        return ChampionMove(self.name, self.after, self.before)

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "before": self.before, "after": self.after}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChampionMove:
        name, _, _ = str(data["alias"]).partition("@")
        return cls(name, data.get("before"), data.get("after"))

    def apply(
        self,
        session: Session,
        *,
        action: str,
        endpoint: str,
        revision: int,
        actor: str,
        reason: str | None,
        now: datetime,
        config: RegistryConfig,
    ) -> AliasEvent | None:
        """Move the alias from ``before`` to ``after`` under the model's lock; refuse if
        it no longer points at ``before`` (or if the registry's rules refuse ``after``)."""
        lock_model(session, self.name)
        current = _current(session, self.name)
        if current != self.before:
            back = (
                f"prodml models alias {self.name} {CHAMPION} --delete"
                if self.before is None
                else f"prodml models alias {self._ref(self.before)} {CHAMPION}"
            )
            raise ConflictError(
                f"deployment {endpoint!r}: {action} moves {self.alias} from "
                f"{self._ref(self.before)} to {self._ref(self.after)}, but it now points at "
                f"{self._ref(current)} (moved by someone else since); point it back with "
                f"`{back}` and retry, or deploy the spec you want with `prodml deploy`"
            )
        return move_alias(
            session,
            self.name,
            CHAMPION,
            self.after,
            actor=actor,
            reason=reason,
            now=now,
            config=config,
            origin={"endpoint": endpoint, "revision": revision},
        )

    def _ref(self, version: int | None) -> str:
        return "nothing" if version is None else f"{self.name}:{version}"


def champion_move(session: Session, model: str) -> ChampionMove:
    """The move that makes ``model`` (``name:version``) its name's champion, from where
    the alias points now (read under the model's lock)."""
    ref = parse_ref(model)
    lock_model(session, ref.name)
    return ChampionMove(ref.name, _current(session, ref.name), ref.version)


def promote_record(session: Session, endpoint: str, revision: int) -> ChampionMove | None:
    """The alias move of the promote that wrote ``endpoint``'s ``revision`` (None when
    that promote predates alias moves)."""
    query = (
        select(AuditRow)
        .where(
            AuditRow.object_type == "deployment",
            AuditRow.object_id == endpoint,
            AuditRow.action == "promote",
        )
        .order_by(AuditRow.id.desc())
        .limit(1)
    )
    row = session.scalars(query).first()
    after = None if row is None else row.after
    if not after or after.get("revision") != revision or "champion_alias" not in after:
        return None
    return ChampionMove.from_dict(after["champion_alias"])


def _current(session: Session, name: str) -> int | None:
    row = session.get(ModelAliasRow, (name, CHAMPION))
    return None if row is None else row.version
