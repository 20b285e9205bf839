"""Controller leases: one holder at a time however many race for it (threads on SQLite
and PostgreSQL), taken over only once expired, renewed and released only by their
holder, and checked names — on every metadata dialect."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from prodml.core import DefinitionError, SimulatedClock, StateError
from prodml.storage import Lease, LeaseInfo, MetadataDB

T0 = datetime(2013, 7, 1, 12, 0, tzinfo=UTC)
Target = tuple[str, str | None]


@pytest.fixture
def db(db_target: Target) -> Iterator[MetadataDB]:
    url, schema = db_target
    with MetadataDB.open(url, schema_name=schema) as opened:
        yield opened


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


def _lease(db: MetadataDB, clock: SimulatedClock, holder: str, ttl_s: float = 60) -> Lease:
    return Lease(db, "rollout", holder, ttl_s=ttl_s, clock=clock)


def test_only_one_of_many_racing_threads_gets_the_lease(
    db: MetadataDB, clock: SimulatedClock
) -> None:
    threads = 8
    leases = [_lease(db, clock, f"worker-{i}") for i in range(threads)]
    barrier = threading.Barrier(threads)
    won: list[str] = []
    errors: list[BaseException] = []

    def race(lease: Lease) -> None:
        try:
            barrier.wait()
            if lease.acquire():
                won.append(lease.holder)
        except BaseException as exc:  # reported below: a thread must not swallow it
            errors.append(exc)

    workers = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert len(won) == 1
    info = leases[0].current()
    assert info is not None
    assert info.holder == won[0]


def test_every_round_of_a_race_after_expiry_has_exactly_one_winner(
    db: MetadataDB, clock: SimulatedClock
) -> None:
    leases = [_lease(db, clock, f"worker-{i}", ttl_s=10) for i in range(4)]
    winners = []
    for _ in range(5):
        barrier = threading.Barrier(len(leases))
        results: dict[str, bool] = {}

        def race(lease: Lease, barrier: threading.Barrier, results: dict[str, bool]) -> None:
            barrier.wait()
            results[lease.holder] = lease.acquire()

        workers = [
            threading.Thread(target=race, args=(lease, barrier, results)) for lease in leases
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert sum(results.values()) == 1, results
        winners.append(next(h for h, ok in results.items() if ok))
        clock.advance(timedelta(seconds=11))  # the winner stops renewing: it expires
    assert len(winners) == 5


def test_acquire_is_refused_while_held_and_extends_our_own(
    db: MetadataDB, clock: SimulatedClock
) -> None:
    ours, theirs = _lease(db, clock, "a"), _lease(db, clock, "b")
    assert ours.current() is None
    assert ours.acquire()
    assert ours.current() == LeaseInfo("rollout", "a", T0, T0 + timedelta(seconds=60))
    clock.advance(timedelta(seconds=30))
    assert not theirs.acquire()
    assert ours.acquire()  # ours already: extended, acquired_at kept
    assert ours.current() == LeaseInfo("rollout", "a", T0, clock.now() + timedelta(seconds=60))


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_renew(
    db: MetadataDB, clock: SimulatedClock
) -> None:
    ours, theirs = _lease(db, clock, "a"), _lease(db, clock, "b")
    assert ours.acquire()
    clock.advance(timedelta(seconds=60))  # expires_at reached
    assert ours.current() is None
    assert theirs.acquire()
    assert theirs.current() == LeaseInfo("rollout", "b", clock.now(), clock.now() + theirs.ttl)
    assert not ours.renew()
    assert not ours.acquire()


def test_renew_extends_only_a_live_lease_of_ours(db: MetadataDB, clock: SimulatedClock) -> None:
    ours, theirs = _lease(db, clock, "a"), _lease(db, clock, "b")
    assert not ours.renew()  # nobody holds it
    assert ours.acquire()
    clock.advance(timedelta(seconds=50))
    assert ours.renew()
    assert not theirs.renew()
    clock.advance(timedelta(seconds=50))  # 100 s after the acquire, 50 after the renew
    assert not theirs.acquire()
    info = ours.current()
    assert info is not None
    assert (info.acquired_at, info.expires_at) == (T0, T0 + timedelta(seconds=110))
    clock.advance(timedelta(seconds=10))
    assert not ours.renew()  # expired: lost, acquire again
    assert ours.acquire()


def test_release_frees_only_our_own_lease(db: MetadataDB, clock: SimulatedClock) -> None:
    ours, theirs = _lease(db, clock, "a"), _lease(db, clock, "b")
    assert ours.acquire()
    theirs.release()  # not theirs: nothing happens
    assert not theirs.acquire()
    ours.release()
    ours.release()  # twice is fine
    assert ours.current() is None
    assert theirs.acquire()


def test_leases_of_different_names_are_independent(db: MetadataDB, clock: SimulatedClock) -> None:
    rollout = _lease(db, clock, "a")
    retraining = Lease(db, "retraining", "b", ttl_s=60, clock=clock)
    assert rollout.acquire()
    assert retraining.acquire()


def test_as_a_context_manager_it_holds_the_lease_inside_only(
    db: MetadataDB, clock: SimulatedClock
) -> None:
    ours, theirs = _lease(db, clock, "a"), _lease(db, clock, "b")
    with ours, pytest.raises(StateError, match=r"lease 'rollout' is held by a until .*holder 'b'"):
        theirs.__enter__()
    assert ours.current() is None
    with theirs:
        assert theirs.current() is not None


@pytest.mark.parametrize(
    ("name", "holder", "ttl_s", "message"),
    [
        ("bad name", "a", 60, r"lease name is invalid"),
        ("rollout", "", 60, r"lease 'rollout': holder must be a printable string"),
        ("rollout", "x" * 129, 60, r"holder must be a printable string of 1 to 128"),
        ("rollout", " a", 60, r"without surrounding spaces"),
        ("rollout", "a\nb", 60, r"holder must be a printable string"),
        ("rollout", "a", 0, r"ttl_s must be a finite number of seconds > 0, got 0"),
        ("rollout", "a", float("inf"), r"ttl_s must be a finite number"),
        ("rollout", "a", True, r"ttl_s must be a number"),
    ],
)
def test_names_holders_and_ttls_are_checked(
    db: MetadataDB, clock: SimulatedClock, name: str, holder: str, ttl_s: float, message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        Lease(db, name, holder, ttl_s=ttl_s, clock=clock)
