"""The registry's ``champion`` and ``previous`` aliases kept in step with a deployment's
promote and rollback, and the gates a promote may require.

Promoting an arm makes its model the endpoint's champion *and* points
``<model>@champion`` at that version, in the deployment's transaction; the old champion's
``<name>@previous`` points at the version it replaces, so that one command can restore
it later. Each move is recorded in the deployment's audit entry (``champion_alias``,
``previous_alias``: alias, before, after) and in the alias's own entry (which names the
deployment revision). A rollback of that promote reads the record back and moves each
alias to where it was — only if it still points where the promote left it; if someone
moved it since, the rollback is refused (:class:`ConflictError`) rather than guessing
which of the two moves should win.

Only the promoted model's ``champion`` alias moves: with arms of different models
(``a:3`` champion, ``b:2`` challenger), promoting ``b:2`` moves ``b@champion`` (and
``a@previous`` to 3) and leaves ``a@champion``.

>>> move = AliasMove("m", 1, 2)
>>> move.alias, move.to_dict(), move.reversed().to_dict()["after"]
('m@champion', {'alias': 'm@champion', 'before': 1, 'after': 2}, 1)
>>> AliasMove.from_dict({"alias": "m@previous", "before": None, "after": 1}).label
'previous'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prodml.core import ConflictError, RegistryConfig, StateError, parse_ref
from prodml.registry._approvals import CHAMPION, move_alias
from prodml.registry._records import AliasEvent
from prodml.registry._versions import lock_model, resolve_ref
from prodml.storage._models import AuditRow, DeploymentHistoryRow, ModelAliasRow

__all__ = [
    "PREVIOUS",
    "AliasMove",
    "champion_move",
    "check_promotable",
    "previous_move",
    "promote_moves",
    "promoted_from",
    "restore_moves",
]

PREVIOUS = "previous"
"""The alias a promote leaves on the champion it replaced (``prodml rollout rollback``)."""


@dataclass(frozen=True)
class AliasMove:
    """``name@label`` moved from version ``before`` to ``after`` (None: no alias)."""

    name: str
    before: int | None
    after: int | None
    label: str = CHAMPION

    @property
    def alias(self) -> str:
        return f"{self.name}@{self.label}"

    @property
    def key(self) -> str:
        """Where the deployment's audit entry records it: ``champion_alias``, …"""
        return f"{self.label}_alias"

    def reversed(self) -> AliasMove:
        return AliasMove(self.name, self.after, self.before, self.label)

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "before": self.before, "after": self.after}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AliasMove:
        name, _, label = str(data["alias"]).partition("@")
        return cls(name, data.get("before"), data.get("after"), label or CHAMPION)

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
        current = _current(session, self.name, self.label)
        if current != self.before:
            back = (
                f"prodml models alias {self.name} {self.label} --delete"
                if self.before is None
                else f"prodml models alias {self._ref(self.before)} {self.label}"
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
            self.label,
            self.after,
            actor=actor,
            reason=reason,
            now=now,
            config=config,
            origin={"endpoint": endpoint, "revision": revision},
        )

    def _ref(self, version: int | None) -> str:
        return "nothing" if version is None else f"{self.name}:{version}"


def champion_move(session: Session, model: str) -> AliasMove:
    """The move that makes ``model`` (``name:version``) its name's champion, from where
    the alias points now (read under the model's lock)."""
    ref = parse_ref(model)
    lock_model(session, ref.name)
    return AliasMove(ref.name, _current(session, ref.name, CHAMPION), ref.version)


def previous_move(session: Session, old: str | None, new: str) -> AliasMove | None:
    """The move that points the old champion's ``<name>@previous`` at ``old`` as
    ``new`` replaces it (None: no old champion, or the same version). A rejected old
    version holds no alias: ``previous`` is removed instead."""
    if old is None or old == new:
        return None
    ref = parse_ref(old)
    lock_model(session, ref.name)
    row = resolve_ref(session, ref)
    after = None if row.status == "rejected" else row.version
    return AliasMove(ref.name, _current(session, ref.name, PREVIOUS), after, PREVIOUS)


def check_promotable(
    session: Session, model: str, *, require_blessed: bool, require_approved: bool
) -> None:
    """Refuse (:class:`StateError`) to promote ``model`` when a required gate is not
    passed: ``gate_status`` BLESSED, approval ``status`` approved."""
    row = resolve_ref(session, model)
    ref = f"{row.name}:{row.version}"
    if require_blessed and row.gate_status != "BLESSED":
        raise StateError(
            f"model version {ref}: gate_status is {row.gate_status or 'not evaluated'}, "
            "expected BLESSED to promote it (the promote requires a blessed version)"
        )
    if require_approved and row.status != "approved":
        raise StateError(
            f"model version {ref}: status is {row.status}, expected approved to promote it "
            f"(approve it with `prodml models approve {ref}`)"
        )


def promote_moves(session: Session, endpoint: str, revision: int) -> list[AliasMove]:
    """The alias moves of the promote that wrote ``endpoint``'s ``revision`` (champion
    first; empty when that promote predates alias moves)."""
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
    if not after or after.get("revision") != revision:
        return []
    keys: Sequence[str] = (f"{CHAMPION}_alias", f"{PREVIOUS}_alias")
    return [AliasMove.from_dict(after[key]) for key in keys if key in after]


def restore_moves(session: Session, endpoint: str, champion: str) -> list[AliasMove]:
    """The moves that restore ``<name>@previous`` (P) in place of ``champion`` (V,
    ``name:version``): ``champion`` to P, then ``previous`` to V. Refused
    (:class:`StateError`) when there is no previous alias, or it names V itself."""
    ref = parse_ref(champion)
    lock_model(session, ref.name)
    previous = _current(session, ref.name, PREVIOUS)
    if previous is None or previous == ref.version:
        found = "none" if previous is None else f"{champion} itself"
        raise StateError(
            f"deployment {endpoint!r}: {ref.name}@{PREVIOUS} is {found}, expected the version "
            f"{champion} replaced as champion; deploy the version you want with `prodml deploy`"
        )
    return [
        AliasMove(ref.name, _current(session, ref.name, CHAMPION), previous),
        AliasMove(ref.name, previous, ref.version, PREVIOUS),
    ]


def promoted_from(
    session: Session, endpoint: str, revision: int
) -> tuple[str, dict[str, Any] | None]:
    """The action that wrote ``endpoint``'s ``revision`` and, when it is a promote, the
    spec (dict form) that the promote replaced, for a rollback to restore."""
    rows = session.scalars(
        select(DeploymentHistoryRow)
        .where(
            DeploymentHistoryRow.endpoint == endpoint,
            DeploymentHistoryRow.revision.in_([revision - 1, revision]),
        )
        .order_by(DeploymentHistoryRow.revision)
    ).all()
    latest = rows[-1]
    if latest.action != "promote" or len(rows) < 2 or rows[0].spec is None:
        return latest.action, None
    return latest.action, dict(rows[0].spec)


def _current(session: Session, name: str, label: str) -> int | None:
    row = session.get(ModelAliasRow, (name, label))
    return None if row is None else row.version
