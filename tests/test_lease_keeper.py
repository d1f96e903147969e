"""The scheduler side of the fleet's lease, in-process against the real PostgreSQL: renewing, self-fencing, handover.

Two or three "hosts" are FleetLease objects with their own store (own pool), one of them reaching PostgreSQL through
a TcpProxy the test cuts or freezes. TTL 2 s keeps each test to a few seconds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
import traceback
import uuid

import pytest
import redis

from tests.conftest import REDIS_URL
from tests.support.pg import DATABASE_URL, schema  # noqa: F401 (schema is a fixture)
from tests.support.servers import wait_until
from tests.support.tcp_proxy import TcpProxy
from worker_service import resources, runtime
from worker_service.scheduler.lease import FleetLease, FleetTerm, HostOnlyLease, LeaseTiming
from worker_service.scheduler.tracking import CurrentRun, ExecutionTracker
from worker_service.state.faults import FencedOut
from worker_service.state.pg_lease import PostgresLease
from worker_service.state.pg_store import PostgresStateStore

TTL, TIMEOUT = 2.0, 0.5
TIMING = LeaseTiming(TTL, TIMEOUT)


class Host:
    """One candidate: its own store and pool, its FleetLease, and the term it holds."""

    def __init__(self, name: str, schema_name: str, port: int = 5432, clock=time.monotonic) -> None:
        self.store = PostgresStateStore(f"postgresql://postgres@127.0.0.1:{port}/test", schema_name, 50, TIMEOUT)
        self.backend = PostgresLease(self.store, TTL)
        self.lease = FleetLease(self.backend, self.store, TIMING, host=name, clock=clock)
        self.stopping = threading.Event()
        self.lost_at: float | None = None
        self.term: FleetTerm | None = None
        self.got_at: float | None = None

    def _lost(self) -> None:
        self.lost_at = time.monotonic()

    def take(self) -> FleetTerm:
        term = self.lease.wait_for_term(self.stopping, self._lost)
        self.got_at = time.monotonic()  # before term: a test that waits for term reads got_at at once
        self.term = term
        return term

    def take_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.take, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.stopping.set()
        if self.term is not None:
            self.term.end(release=True)
        self.backend.close()
        self.store.close()


@pytest.fixture
def hosts(schema):  # noqa: F811
    made: list[Host] = []

    def make(name: str, port: int = 5432, clock=time.monotonic) -> Host:
        host = Host(name, schema, port, clock)
        made.append(host)
        return host

    yield make
    for host in made:
        host.close()


def watch_validity(term: FleetTerm) -> dict[str, float]:
    """Note (monotonic) when ``term`` stops being valid, from a thread polling every 10 ms."""
    seen: dict[str, float] = {}

    def watch() -> None:
        deadline = time.monotonic() + 3 * TTL
        while time.monotonic() < deadline and "invalid_at" not in seen:
            if not term.valid():
                seen["invalid_at"] = time.monotonic()
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()
    return seen


def test_a_standby_takes_a_lease_nobody_renews_within_ttl_plus_one_poll_and_not_before(hosts):
    a, b, c = hosts("a"), hosts("b"), hosts("c")
    first = a.take()
    assert a.lease.fencing_token == first.epoch
    assert abs(first.epoch - time.time() * 1000) < 60_000  # a new lease row starts at the database clock's ms
    for host in (b, c):
        host.lease._backend = CountingBackend(host.lease._backend)
        host.take_in_background()
    a.lease._backend = first._backend = CountingBackend(first._backend)
    time.sleep(TTL * 1.5)  # a renews meanwhile: no standby may take it (the wait itself is what is tested)
    assert b.term is None and c.term is None, "a standby took a lease that was being renewed"
    calls = sum(host.lease._backend.calls for host in (a, b, c))
    # a renews every TTL/3, each standby polls every 0.8-1.0 x TTL/3: about 3 statements per TTL per host
    assert calls <= 3 * 3.75 * 1.5 + 3, f"{calls} lease statements in {1.5 * TTL} s from three hosts"
    first.ended.set()  # a's process is gone: no more renewals, no release
    gone = time.monotonic()
    wait_until(lambda: b.term is not None or c.term is not None, timeout=TTL + TIMING.poll_every + 3.0,
               what="a standby to take over")
    taker = b if b.term is not None else c
    assert taker.term.epoch > first.epoch
    # TTL and one poll, plus a renewal in flight at `gone`, the acquire, a query and a thread start on a loaded
    # machine; a standby that waited a second TTL (or a poll per TTL) for a lease nobody renews is over it.
    took_over = taker.got_at - gone
    assert took_over <= TTL + TIMING.poll_every + 1.0, f"a standby took the lease {took_over:.2f} s after a stopped"
    assert taker.store.leadership_changes(1)[0].reason == "expired"


class CountingBackend:
    """The real PostgresLease, counting the statements sent through it."""

    def __init__(self, backend) -> None:
        self.backend, self.calls = backend, 0

    def __getattr__(self, name: str):
        method = getattr(self.backend, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return method(*args, **kwargs)

        return counted


def test_a_leader_cut_off_stops_submitting_before_its_lease_runs_out_and_the_next_leads_only_after(hosts):
    """A silent path (every renewal hangs to its timeout): the refused one is tested with real hosts (test_fleet)."""
    with TcpProxy("127.0.0.1", 5432) as proxy:
        a, b = hosts("a", port=proxy.port), hosts("b")
        term = a.take()
        view = term.guard(a.store)
        view.record_submitted("tick", "session-a", 1, time.time(), None)  # admitted while it leads
        b.take_in_background()
        taken = b.store.lease()
        wait_until(lambda: b.store.lease().renewed_at > taken.renewed_at, timeout=TIMING.renew_every + 2,
                   what="a renewal through the proxy")  # renewals work before the cut
        seen = watch_validity(term)
        proxy.freeze()
        faulted = time.monotonic()
        wait_until(lambda: b.term is not None, timeout=TTL + TIMING.poll_every + 2.0, what="b to take over")
        assert "invalid_at" in seen, "the cut-off leader never fenced itself"
        assert seen["invalid_at"] < b.got_at - 0.2, "two leaders at once"
        # The self-fence deadline itself, not when a 10 ms watcher thread got to see it pass (it may be late on a
        # loaded machine): set from the last renewal sent before the cut, it is at most TTL - margin after it.
        assert hasattr(term, "_deadline"), "FleetTerm keeps its self-fence deadline elsewhere now: update this test"
        assert term._deadline - faulted <= TTL - TIMING.margin, (term._deadline - faulted, TTL - TIMING.margin)
        started = time.monotonic()
        with pytest.raises(FencedOut, match="not renewed in time"):
            view.record_submitted("tick", "session-a", 1, time.time(), None)
        # Asking the frozen database would take the store's timeout (0.5 s); the refusal is local.
        assert time.monotonic() - started < TIMEOUT / 2, "the refusal waited for the database"
        proxy.restore()
        wait_until(lambda: a.lost_at is not None, timeout=TTL + 2 * TIMEOUT + 1, what="a to find its lease taken")
        with pytest.raises(FencedOut, match="held by another host"):
            view.beat(1, "a", "running", "UTC", time.time())
        term.end(release=False)
        assert a.lease.fencing_token is None
        lost = [change for change in b.store.leadership_changes(5) if change.reason == "lost"]
        assert [change.epoch for change in lost] == [b.term.epoch]


class FaultyBackend:
    """The real PostgresLease, whose ``renew`` raises an unexpected error (a bug, not the store's fault) while told to."""

    def __init__(self, backend) -> None:
        self.backend, self.raising, self.failures = backend, True, 0

    def renew(self, grant):
        if self.raising:
            self.failures += 1
            raise RuntimeError("a bug in renewing")
        return self.backend.renew(grant)

    def __getattr__(self, name: str):
        return getattr(self.backend, name)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_unexpected_renewal_error_is_a_failed_renewal_logged_once_and_the_keeper_lives_on(hosts):
    skew = [0.0]
    a, b = hosts("a", clock=lambda: time.monotonic() + skew[0]), hosts("b")
    term = a.take()
    records = Records()  # listening before the first faulty renewal (the keeper may renew at any moment)
    logger = logging.getLogger("worker_service.scheduler.lease")
    logger.addHandler(records)
    faulty = term._backend = FaultyBackend(term._backend)
    try:
        term._wake.set()  # renew now, and retry every retry_every after it failed
        wait_until(lambda: faulty.failures >= 3, timeout=2, interval=0.01, what="three failed renewals")
        assert term._keeper.is_alive() and not term.lost.is_set()
        # The traceback: exc_info, or once the service's redacting log filter ran (a test of this process configured
        # logging), the redacted exc_text it leaves in its place.
        tracebacks = [r for r in records.records if (r.exc_info or r.exc_text) and "failed unexpectedly" in r.getMessage()]
        assert len(tracebacks) == 1, records.records
        assert "RuntimeError: a bug in renewing" in (tracebacks[0].exc_text or "".join(
            traceback.format_exception(*tracebacks[0].exc_info)))
        skew[0] = TTL  # no renewal worked since the term began: the self-fence deadline still applies
        assert not term.valid()
        with pytest.raises(FencedOut, match="not renewed in time"):
            term.guard(a.store).beat(1, "a", "running", "UTC", time.time())

        faulty.backend.release(term._grant)  # another host takes the lease meanwhile
        assert b.take().epoch > term.epoch
        faulty.raising = False
        term._wake.set()
        wait_until(lambda: a.lost_at is not None, timeout=2, interval=0.01, what="a to find its lease taken")
        assert term.lost.is_set() and not term.handed_over
    finally:
        logger.removeHandler(records)


def test_a_leader_woken_after_a_stop_longer_than_its_lease_refuses_every_write_at_once(hosts):
    skew = [0.0]
    a = hosts("a", clock=lambda: time.monotonic() + skew[0])
    term = a.take()
    view = term.guard(a.store)
    skew[0] = TTL + 5  # SIGSTOP for TTL + 5 s: the monotonic clock ran on while the process slept
    for write in (lambda: view.record_submitted("tick", "s", 1, time.time(), None),
                  lambda: view.beat(1, "a", "running", "UTC", time.time()),
                  lambda: view.publish_jobs([])):
        with pytest.raises(FencedOut):
            write()
    assert view.jobs() == []  # reads go on


def test_a_graceful_handover_is_taken_at_the_next_poll_and_the_old_leader_may_only_record_its_last_runs(hosts):
    a, b = hosts("a"), hosts("b")
    term = a.take()
    view = term.guard(a.store)
    run = view.record_submitted("tick", "session-a", 1, time.time(), None)
    taking = b.take_in_background()
    started = time.monotonic()
    assert term.hand_over(TIMING.handover_wait)
    assert time.monotonic() - started <= TIMING.poll_every + 0.5
    # a sees the lease taken in the database as soon as b's statement commits; b's thread may still be on its way back
    taking.join(timeout=TIMING.poll_every + 1)
    assert not taking.is_alive(), "b took the lease but its wait_for_term never returned"
    assert term.handed_over and b.term.epoch > term.epoch
    with pytest.raises(FencedOut):
        view.record_submitted("tick", "session-a", 1, time.time(), None)  # no new run from the old leader
    view.record_run("tick", "success", time.time(), 0.01, run_id=run)  # how its last run ended still counts
    assert a.store.runs("tick")[0].outcome == "success"
    term.end(release=True)  # nothing to release: it is b's now
    assert b.store.lease().epoch == b.term.epoch and b.store.leadership_changes(1)[0].reason == "handover"


def old_leaders_tracker(view, failures: list) -> ExecutionTracker:
    return ExecutionTracker(view, "session-a", lambda job_id: (None, False), failures.append, host="a")


def test_after_a_handover_a_run_the_new_leader_settled_first_is_counted_once_and_a_queued_one_never_starts(hosts):
    """The new leader's bounded wait ran out (a long run) or never waited (a run not started): it settles both."""
    a, b = hosts("a"), hosts("b")
    term = a.take()
    view = term.guard(a.store)
    now = time.time()
    running = view.record_submitted("tick", "session-a", 1, now, None, host="a")
    assert view.record_started(running, now) is True
    queued = view.record_submitted("tick", "session-a", 1, now, None, host="a")  # in the pool, not started yet
    taking = b.take_in_background()
    assert term.hand_over(TIMING.handover_wait)
    taking.join(timeout=TIMING.poll_every + 1)
    settled = b.term.guard(b.store).settle_orphans("session-b", lost=lambda orphan: True)
    assert [orphan.outcome for orphan in settled] == ["lost", "lost"]

    ran, failures = [], []
    tracker = old_leaders_tracker(view, failures)
    with tracker.executing(CurrentRun("tick", queued, now)):
        assert tracker.wrap("tick", lambda: ran.append("queued"))() is None
    assert ran == [] and failures == []  # settled by the new leader: its code never ran here
    assert view.record_run("tick", "success", time.time(), 5.0, run_id=running) is False  # it ended after all
    assert [run.outcome for run in b.store.runs("tick")] == ["lost", "lost"]  # once each, as the new leader said
    assert b.store.jobs() == [] and a.store.runs("tick")[0].duration is None


def test_a_leader_past_its_lease_does_not_start_a_run_it_had_already_submitted(hosts):
    skew = [0.0]
    a = hosts("a", clock=lambda: time.monotonic() + skew[0])
    term = a.take()
    view = term.guard(a.store)
    run_id = view.record_submitted("tick", "session-a", 1, time.time(), None, host="a")
    skew[0] = TTL + 5  # frozen past its lease between the submission and the start: another host may lead now
    ran, failures = [], []
    tracker = old_leaders_tracker(view, failures)
    with tracker.executing(CurrentRun("tick", run_id, time.time())):
        tracker.wrap("tick", lambda: ran.append("late"))()
    assert ran == [] and len(failures) == 1 and isinstance(failures[0], FencedOut)
    # Not run, and not dropped: recorded missed, once (its live row is the guard: had the next leader settled it
    # first, this would count nothing).
    assert [run.outcome for run in a.store.runs("tick")] == ["missed"]
    assert a.store.runs_in_flight() == []


def test_a_released_lease_is_taken_by_the_next_candidate_at_once(hosts):
    a, b = hosts("a"), hosts("b")
    term = a.take()
    term.end(release=True)
    started = time.monotonic()
    assert b.take().epoch > term.epoch
    assert time.monotonic() - started < 0.5
    assert b.store.leadership_changes(1)[0].reason == "released"


def test_single_host_mode_grants_at_once_with_no_fencing_token():
    lease = HostOnlyLease()
    term = lease.wait_for_term(threading.Event(), lambda: None)
    store = object()
    assert term.epoch is None and term.guard(store) is store and not term.can_be_lost
    assert lease.fencing_token is None


# -- the example jobs write the cache fenced by the epoch ------------------------------------------------------------
@dataclasses.dataclass
class TokenOnly:
    """The process's lease as a job sees it: just its fencing token."""

    fencing_token: int | None
    fleet: bool = True


def with_lease(current: resources.Resources, lease: object) -> resources.Resources:
    """``current`` with its fleet lease swapped for ``lease`` (what the jobs' fencing token reads)."""
    return dataclasses.replace(current, coordination=dataclasses.replace(current.coordination, lease=lease))


def test_the_account_jobs_refuse_to_write_after_a_newer_epoch_did(make_app, schema):  # noqa: F811
    service = f"fence-test-{uuid.uuid4().hex[:6]}"
    make_app(STATE_DATABASE_URL=DATABASE_URL, STATE_DATABASE_SCHEMA=schema, REDIS_URL=REDIS_URL,
             SERVICE_NAME=service, STATE_DATABASE_TIMEOUT="0.5")
    from worker_service.jobs import accounts

    current = resources.current()
    with sqlite3.connect(current.database.path) as db:
        db.execute("INSERT INTO accounts VALUES ('a1', 'a@example.org', '2026-01-01')")
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        with pytest.raises(FencedOut, match="does not lead"):
            accounts.sync_accounts()  # fleet mode, not leading: no write at all
        assert client.get(f"{service}:account:a1") is None
        resources.install(with_lease(current, TokenOnly(7)))
        assert runtime.fencing_token() == 7 and accounts.sync_accounts() == 1
        assert json.loads(client.get(f"{service}:account:a1"))["email"] == "a@example.org"
        assert client.get(accounts.fence_key()) == "7"
        client.delete(f"{service}:account:a1")
        resources.install(with_lease(current, TokenOnly(6)))  # a stale leader wakes up
        with pytest.raises(FencedOut, match="newer scheduler lease"):
            accounts.sync_accounts()
        assert client.get(f"{service}:account:a1") is None and client.get(accounts.fence_key()) == "7"
        client.set(f"{service}:account:gone", "{}")
        with pytest.raises(FencedOut):
            accounts.reconcile_database()
        assert client.get(f"{service}:account:gone") == "{}"
        resources.install(with_lease(current, TokenOnly(8)))
        assert accounts.reconcile_database() == 1 and client.get(f"{service}:account:gone") is None
    finally:
        client.delete(*client.keys(f"{service}:*") or ["-"])
        current.store.close()


def test_a_store_fault_while_standing_by_is_retried_not_raised(hosts):
    with TcpProxy("127.0.0.1", 5432) as proxy:
        a = hosts("a", port=proxy.port)
        proxy.cut()
        a.lease._backend = counting = CountingBackend(a.lease._backend)
        a.take_in_background()
        wait_until(lambda: counting.calls >= 2, timeout=TIMING.poll_every * 2 + 2, what="two failed attempts")
        assert a.term is None
        proxy.restore()
        wait_until(lambda: a.term is not None, timeout=TIMING.poll_every + 2, what="a to take the lease")
