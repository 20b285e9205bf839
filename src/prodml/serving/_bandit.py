"""A bandit endpoint's view of its shared posterior.

Each replica chooses from the last merged state it pulled, records its own rewards in a
zero-evidence delta, and every ``bandit_sync_s`` pushes the delta into the shared state
(one locked read-merge-write in the metadata DB) and pulls the result back; decisions
(request id → arm) are written in the same sync so that a reward reaching any replica
finds the arm that served its request.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from prodml.registry import BanditSpec, DeploymentStore
from prodml.stats import BanditState, Decision, choose

__all__ = ["BanditRouter"]

_DRAWS = 500  # posterior draws per decision: enough for a propensity to ±2%


class BanditRouter:
    """Thompson sampling over an endpoint's live arms with a shared, mergeable state."""

    def __init__(
        self, endpoint: str, arms: Sequence[str], spec: BanditSpec, store: DeploymentStore
    ) -> None:
        self.endpoint = endpoint
        self.arms = sorted(arms)
        self.spec = spec
        self._store = store
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._rng = np.random.default_rng()
        stored = store.bandit_state(endpoint)
        state = BanditState.new(spec.reward, self.arms)
        if stored is not None:
            loaded = BanditState.from_dict(stored)
            if sorted(loaded.arms) == self.arms and loaded.kind == spec.reward:
                state = loaded
        self._state = state
        self._delta = state.empty()
        self._decisions: list[tuple[str, str, str, datetime]] = []

    @property
    def state(self) -> BanditState:
        """The local view: the last shared state plus this replica's unsynced rewards."""
        with self._lock:
            return self._state.merge(self._delta)

    def choose(self, request_id: str, now: datetime) -> Decision:
        with self._lock:
            state = self._state.merge(self._delta)
            decision = choose(
                state,
                self._rng,
                burn_in=self.spec.burn_in,
                floor=min(self.spec.floor, 1.0 / len(self.arms)),
                draws=_DRAWS,
            )
            self._decisions.append((request_id, self.endpoint, decision.arm, now))
        return decision

    def pending(self, request_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Decisions of this replica not yet written to the shared store."""
        wanted = set(request_ids)
        with self._lock:
            return {rid: (ep, arm) for rid, ep, arm, _ in self._decisions if rid in wanted}

    def reward(self, arm: str, value: float) -> None:
        with self._lock:
            self._delta = self._delta.update(arm, value)

    def sync(self) -> None:
        """Push decisions and the reward delta, pull the merged shared state. Decisions
        stay in :meth:`pending` until they are written, so that a reward arriving during
        the sync still finds its arm."""
        with self._sync_lock:  # one sync at a time (the shutdown sync may meet the loop's)
            with self._lock:
                delta, self._delta = self._delta, self._delta.empty()
                decisions = list(self._decisions)
            try:
                if decisions:
                    self._store.record_decisions(decisions)
                merged = self._store.merge_bandit(
                    self.endpoint, delta.to_dict(), kind=self.spec.reward, arms=self.arms
                )
            except Exception:
                with self._lock:  # keep the delta for the next sync (decisions stay queued)
                    self._delta = delta.merge(self._delta)
                raise
            with self._lock:
                del self._decisions[: len(decisions)]  # written; later ones were appended
                self._state = BanditState.from_dict(merged)
