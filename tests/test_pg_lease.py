"""The fleet's scheduler lease in PostgreSQL: one holder at a time, epochs that only grow (and are never issued twice,
even across a schema made again), expiry by the database's clock, every change logged, and a stale holder's writes
refused (fencing). Real PostgreSQL, real processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import pg
from tests.support.pg import schema  # noqa: F401 - the fixture
from tests.support.servers import wait_until
from worker_service.state import FencedOut, LeaseGrant, PostgresLease, PostgresStateStore, StoreUnavailable
from worker_service.state.faults import ClockSkewed
from worker_service.state.records import JobDefinition

TTL = 1.0
LONG_TTL = 10.0


@pytest.fixture
def store(schema: str) -> Iterator[PostgresStateStore]:  # noqa: F811
    store = PostgresStateStore(pg.FAST_URL, schema, history_size=5, timeout=5.0)
    yield store
    store.close()


@pytest.fixture
def lease(store: PostgresStateStore) -> Iterator[PostgresLease]:
    lease = PostgresLease(store, TTL)
    yield lease
    lease.close()


@pytest.fixture
def long_lease(store: PostgresStateStore) -> Iterator[PostgresLease]:
    """A lease that outlives several round trips on a loaded machine, for a test that releases it, never waits it out."""
    lease = PostgresLease(store, LONG_TTL)
    yield lease
    lease.close()


def definition(job_id: str) -> JobDefinition:
    return JobDefinition(job_id, job_id.title(), "interval[0:01:00]", 1000.0, 30.0, 1, "default", False, False, 60.0)


def reasons(store: PostgresStateStore) -> list[tuple[int, str, str | None, str | None]]:
    return [(c.epoch, c.reason, c.from_host, c.to_host) for c in store.leadership_changes(limit=50)]


def database_milliseconds() -> int:
    with pg.admin() as db:
        return int(db.execute("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint").fetchone()[0])


# -- one holder, by the database's clock --------------------------------------------------------------------
def test_a_held_lease_is_refused_to_others_until_it_expires_by_the_database_clock(store, lease):
    before = database_milliseconds()
    first = lease.acquire("host-a", 11, "session-a")
    assert first == LeaseGrant(first.epoch, "session-a", TTL, first.expires_in) and 0.5 * TTL < first.expires_in <= TTL
    assert before <= first.epoch <= database_milliseconds()  # a new lease row starts at the database clock's ms
    started = time.monotonic()
    assert lease.acquire("host-b", 22, "session-b") is None
    record = lease.current()
    assert (record.epoch, record.holder_host, record.holder_pid, record.holder_session, record.live) == \
        (first.epoch, "host-a", 11, "session-a", True)

    second = wait_until(lambda: lease.acquire("host-b", 22, "session-b"), timeout=TTL + 3, interval=0.05,
                        what="the lease to expire")
    assert time.monotonic() - started >= TTL * 0.8  # not before it expired
    assert second.epoch > first.epoch and lease.renew(first) is None
    assert reasons(store)[:2] == [(second.epoch, "expired", "host-a", "host-b"), (first.epoch, "first", None, "host-a")]


def test_the_holder_renews_and_acquiring_again_with_its_session_keeps_its_epoch(store, lease):
    grant = lease.acquire("host-a", 11, "session-a")
    renewed = lease.renew(grant)
    assert renewed.epoch == grant.epoch and renewed.expires_in > 0.5 * TTL
    again = lease.acquire("host-a", 11, "session-a")
    assert again.epoch == grant.epoch and lease.current().renewed_at >= lease.current().acquired_at
    assert [reason for _, reason, _, _ in reasons(store)] == ["first"]  # a renewal is no change of leader


def test_the_lease_never_reads_a_hosts_wall_clock(store, long_lease, monkeypatch):
    """Hosts' clocks disagree (skew, a jump): acquire, renew, expiry and reads use only the database's now()."""
    lease = long_lease  # several round trips pass before host-b is refused: the lease must still be held then
    real, wall = time.time(), time.time
    this_test = threading.current_thread()  # other threads (a pool's, an earlier test's) keep the real clock

    def no_host_clock() -> float:
        if threading.current_thread() is this_test:
            raise AssertionError("the lease read the host's wall clock")
        return wall()

    monkeypatch.setattr(time, "time", no_host_clock)
    grant = lease.acquire("host-a", 11, "session-a")
    assert lease.renew(grant).epoch == grant.epoch and lease.acquire("host-b", 22, "session-b") is None
    record = lease.current()
    assert 0 < record.expires_in <= LONG_TTL and abs(record.expires_at - real) < 60  # the database's time, not a host's

    monkeypatch.setattr(time, "time", lambda: real + 86400.0 if threading.current_thread() is this_test else wall())
    # a host a day ahead still cannot take it early
    assert lease.acquire("host-b", 22, "session-b") is None
    lease.release(grant)
    assert lease.acquire("host-b", 22, "session-b").epoch > grant.epoch


def test_a_released_lease_is_taken_at_once_and_a_stale_release_changes_nothing(store, lease):
    old = lease.acquire("host-a", 11, "session-a")
    lease.release(old)
    assert lease.current().released and not lease.current().live
    new = lease.acquire("host-b", 22, "session-b")
    assert new.epoch > old.epoch
    lease.release(old)  # too late: not its epoch any more
    assert lease.current().live and lease.current().holder_session == "session-b"
    assert reasons(store)[0] == (new.epoch, "released", "host-a", "host-b")


def test_a_handover_lets_another_host_take_it_before_expiry_and_is_logged_once(store, lease):
    old = lease.acquire("host-a", 11, "session-a")
    lease.offer_handover(old)
    assert lease.acquire("host-a", 11, "session-a").epoch == old.epoch  # its own holder just renews
    assert lease.renew(old) is not None  # and keeps leading until another host takes it
    new = lease.acquire("host-b", 22, "session-b")
    assert new.epoch > old.epoch and lease.current().expires_in > 0.5 * TTL
    assert lease.renew(old) is None and lease.renew(new).epoch == new.epoch
    lease.record_lost(old)  # the handover's row already says it: one change, one row
    lease.record_lost(old)
    assert reasons(store)[:2] == [(new.epoch, "handover", "host-a", "host-b"), (old.epoch, "first", None, "host-a")]


def test_a_takeover_the_old_holder_finds_is_one_row_marked_lost(store):
    """The taker logs "expired"; the old holder, alive after all, marks that same row "lost" (it was two rows)."""
    lease = PostgresLease(store, 0.5)
    old = lease.acquire("host-a", 11, "session-a")
    new = wait_until(lambda: lease.acquire("host-b", 22, "session-b"), timeout=5, what="the lease to expire")
    assert reasons(store)[0] == (new.epoch, "expired", "host-a", "host-b")
    lease.record_lost(old)
    lease.record_lost(old)
    assert reasons(store)[:2] == [(new.epoch, "lost", "host-a", "host-b"), (old.epoch, "first", None, "host-a")]
    assert [change.epoch for change in store.leadership_changes(10)].count(new.epoch) == 1


def test_epochs_only_grow_through_every_kind_of_change(store, lease):
    epochs = [lease.acquire("host-1", 1, "s1").epoch]
    lease.release(LeaseGrant(epochs[-1], "s1", TTL, 0))
    epochs.append(lease.acquire("host-2", 2, "s2").epoch)
    lease.offer_handover(LeaseGrant(epochs[-1], "s2", TTL, 0))
    epochs.append(lease.acquire("host-3", 3, "s3").epoch)
    epochs.append(wait_until(lambda: lease.acquire("host-1", 1, "s4"), timeout=TTL + 3, what="expiry").epoch)
    assert epochs == sorted(set(epochs)) and len(epochs) == 4
    assert [reason for _, reason, _, _ in reasons(store)] == ["expired", "handover", "released", "first"]
    assert [change.to_pid for change in store.leadership_changes(limit=2)] == [1, 3]


def test_the_leadership_log_keeps_its_newest_changes_and_renewals_trim_nothing(store):
    lease = PostgresLease(store, TTL, changes_kept=3)
    try:
        for n in range(5):
            grant = lease.acquire(f"host-{n}", n, f"s{n}")
            lease.release(grant)
        assert [change.to_host for change in store.leadership_changes(limit=50)] == ["host-4", "host-3", "host-2"]
        grant = lease.acquire("host-5", 5, "s5")
        for _ in range(3):
            assert lease.acquire("host-5", 5, "s5").epoch == grant.epoch  # renewals: no change, nothing trimmed
        assert [change.to_host for change in store.leadership_changes(limit=50)] == ["host-5", "host-4", "host-3"]
    finally:
        lease.close()


def test_the_lease_has_a_connection_of_its_own_and_never_waits_behind_the_stores_callers(schema):  # noqa: F811
    """Every connection of the store's pool is busy (requests, the heartbeat, job writes on a slow database): the
    lease's statements still go at once, on the lease's own connection."""
    store = PostgresStateStore(pg.FAST_URL, schema, timeout=1.0)
    lease = PostgresLease(store, TTL)
    store.migrate()
    # The lease's own connection is opened at its first statement: open it now, so the time measured below is the
    # statements' (whether they wait for the store's pool), not a new backend's start on a loaded machine.
    lease.pool.run(lambda db: db.execute("SELECT 1"))
    release, held = threading.Event(), threading.Semaphore(0)

    def hold_a_connection(db: psycopg.Connection) -> None:
        held.release()
        release.wait(3)

    holders = [threading.Thread(target=lambda: store.run(hold_a_connection)) for _ in range(store.pool.max_size)]
    try:
        for holder in holders:
            holder.start()
        for _ in holders:
            assert held.acquire(timeout=5), "the store's connections were not all taken"
        started = time.monotonic()
        grant = lease.acquire("host-a", 11, "session-a")
        assert grant is not None and lease.renew(grant).epoch == grant.epoch
        lease.offer_handover(grant)
        lease.release(grant)
        # Four statements; waiting for one of the store's connections would take its timeout (1 s) and fail.
        assert time.monotonic() - started < 0.8, "the lease waited for the store's pool"
        release.set()
        for holder in holders:
            holder.join(timeout=5)
        assert reasons(store) == [(grant.epoch, "first", None, "host-a")]
    finally:
        release.set()
        lease.close()
        store.close()


# -- exactly one winner -------------------------------------------------------------------------------------------
def test_many_threads_acquiring_at_once_have_exactly_one_winner(store, lease):
    start = threading.Barrier(12)
    grants: list[LeaseGrant | None] = [None] * 12

    def contend(n: int) -> None:
        start.wait(timeout=10)
        grants[n] = lease.acquire(f"host-{n}", n, f"session-{n}")

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    winners = [grant for grant in grants if grant is not None]
    assert len(winners) == 1 and store.lease().epoch == winners[0].epoch
    assert len(store.leadership_changes()) == 1


def _contend_in_a_process(schema_name: str, n: int, start: Any, results: Any) -> None:
    store = PostgresStateStore(pg.FAST_URL, schema_name, timeout=5.0)  # a host of its own: its own pool
    start.wait(timeout=20)
    grant = PostgresLease(store, 30.0).acquire(f"host-{n}", os.getpid(), f"session-{n}")
    results.put((n, grant.epoch if grant else None))


def test_many_processes_acquiring_at_the_same_instant_have_exactly_one_winner(store, schema):  # noqa: F811
    store.migrate()  # the schema is there: the race is the acquire's, not the migration's (see test_pg_store_faults)
    context = multiprocessing.get_context("fork")  # the pool must survive a fork too: the children build their own
    start, results = context.Barrier(6), context.Queue()
    children = [context.Process(target=_contend_in_a_process, args=(schema, n, start, results)) for n in range(6)]
    for child in children:
        child.start()
    outcomes = sorted(results.get(timeout=20) for _ in children)
    for child in children:
        child.join(timeout=10)
    won = [epoch for _, epoch in outcomes if epoch is not None]
    assert len(won) == 1 and [epoch for _, epoch in outcomes].count(None) == 5
    assert store.lease().epoch == won[0]


# -- fencing ---------------------------------------------------------------------------------------------------
def test_a_stale_epochs_writes_are_refused_and_write_nothing(store, lease):
    old = lease.acquire("host-a", 11, "session-a")
    leader = store.fenced(old.epoch)
    leader.publish_jobs([definition("a")])
    leader.beat(11, "host-a", "running", "UTC", 100.0, "session-a")
    run_id = leader.record_submitted("a", "session-a", 11, 100.0, 160.0)
    lease.offer_handover(old)
    new = lease.acquire("host-b", 22, "session-b")

    writes = {
        "record_run": lambda: leader.record_run("a", "success", 101.0, 1.0, run_id=run_id),
        "record_submitted": lambda: leader.record_submitted("a", "session-a", 11, 160.0, 220.0),
        "beat": lambda: leader.beat(11, "host-a", "running", "UTC", 100.0, "session-a"),
        "publish_jobs": lambda: leader.publish_jobs([]),
        "settle_orphans": lambda: leader.settle_orphans("session-a-2"),
        "set_operator_pause": lambda: leader.set_operator_pause("a", True, "alice", 1.0),
    }
    for name, write in writes.items():
        with pytest.raises(FencedOut) as refused:
            write()
        assert str(refused.value) == (f"state database: fenced out: epoch {old.epoch} no longer holds the scheduler"
                                      f" lease (epoch {new.epoch} does)"), name
    assert pg.rows(store.schema, "SELECT count(*) FROM {s}.job_runs")[0][0] == 0
    assert pg.rows(store.schema, "SELECT run_id FROM {s}.job_running") == [(run_id,)]
    assert [r.id for r in store.jobs()] == ["a"] and store.jobs()[0].success_count == 0
    assert store.definition("a").next_run_time == 160.0 and store.operator_pauses() == {}

    store.submit_command("a", "run", "alice")  # any worker submits: not fenced
    current = store.fenced(new.epoch)
    current.settle_orphans("session-b")
    assert store.jobs()[0].missed_count == 1  # the new leader writes


def test_a_fenced_write_racing_a_new_acquire_waits_for_it_and_is_then_refused(store, lease):
    """The acquire's UPDATE of the lease row is in flight (not committed): the old leader's write waits on the row
    (FOR SHARE), re-reads it once the acquire commits, finds the new epoch, and writes nothing."""
    old = lease.acquire("host-a", 11, "session-a")
    store.fenced(old.epoch).beat(11, "host-a", "running", "UTC", 100.0, "session-a")
    lease.offer_handover(old)
    outcome: list[BaseException | None] = []

    with pg.admin() as acquirer:
        with acquirer.transaction():
            acquirer.execute(lease._acquire, {"host": "host-b", "pid": 22, "session": "session-b", "ttl": TTL,
                                              "kept": lease.changes_kept, "host_now": time.time(), "max_skew": None,
                                              "delay": 1.0})

            def stale_write() -> None:
                try:
                    store.fenced(old.epoch).beat(11, "host-a", "stopping", "UTC", 100.0, "session-a")
                    outcome.append(None)
                except BaseException as error:  # noqa: BLE001 - the test reads it
                    outcome.append(error)

            writer = threading.Thread(target=stale_write)
            writer.start()
            wait_until(lambda: pg.rows(store.schema, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type ="
                                       " 'Lock' AND query LIKE '%%FOR SHARE%%'")[0][0] == 1,
                       timeout=5, what="the stale write to wait on the lease row")
            assert outcome == []
        writer.join(timeout=5)
    assert isinstance(outcome[0], FencedOut) and f"epoch {store.lease().epoch} does" in str(outcome[0])
    assert store.lease().epoch > old.epoch
    assert store.scheduler().state == "running"  # the stale "stopping" was not written


def _hold_the_lease_and_write(schema_name: str, ready: Any, verdict: Any) -> None:
    store = PostgresStateStore(pg.FAST_URL, schema_name, timeout=5.0)
    grant = PostgresLease(store, TTL).acquire("frozen-host", os.getpid(), "frozen-session")
    leader = store.fenced(grant.epoch)
    leader.publish_jobs([definition("a")])
    ready.set()
    while True:  # writes back to back: the SIGSTOP lands mid-call or between two
        try:
            leader.record_run("a", "success", 1.0, 0.001)
        except FencedOut as error:
            verdict.put(str(error))
            return
        except StoreUnavailable:  # the call in flight when it froze may come out timed out: the next one decides
            continue


def test_a_frozen_leader_blocks_nobody_and_is_fenced_out_when_it_wakes(store, lease, schema):  # noqa: F811
    store.migrate()
    context = multiprocessing.get_context("fork")
    ready, verdict = context.Event(), context.Queue()
    holder = context.Process(target=_hold_the_lease_and_write, args=(schema, ready, verdict))
    holder.start()
    try:
        assert ready.wait(timeout=10)
        time.sleep(0.05)  # let it get into its writes (not a wait for a condition: any moment will do)
        os.kill(holder.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        grant = wait_until(lambda: lease.acquire("host-b", 22, "session-b"), timeout=TTL + 5, interval=0.05,
                           what="another host to take the lease from a frozen holder")
        frozen_epoch = store.leadership_changes(limit=50)[-1].epoch
        assert time.monotonic() - frozen_at < TTL + 1.5 and grant.epoch > frozen_epoch
        store.fenced(grant.epoch).beat(22, "host-b", "running", "UTC", 1.0, "session-b")  # nothing holds a lock
        counted = store.jobs()[0].success_count
        os.kill(holder.pid, signal.SIGCONT)
        assert (f"epoch {frozen_epoch} no longer holds the scheduler lease (epoch {grant.epoch} does)"
                in verdict.get(timeout=10))
        assert store.jobs()[0].success_count == counted  # nothing it wrote after waking landed
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.join(timeout=10)
        if holder.is_alive():
            holder.kill()


def test_a_schema_made_again_never_gives_a_new_holder_the_epoch_an_old_leader_still_holds(store, lease, schema):  # noqa: F811
    """A reset by hand drops the schema and the store makes it again: a new lease row, whose epoch must not be one an
    old leader (cut off meanwhile, still running) holds, or its fenced writes would pass."""
    old = lease.acquire("host-a", 11, "session-a")
    stale = store.fenced(old.epoch)  # the number alone: the holder's session is checked below
    stale.beat(11, "host-a", "running", "UTC", 100.0, "session-a")
    pg.drop_schema(schema)
    with pytest.raises(StoreUnavailable):
        lease.acquire("host-b", 22, "session-b")  # the store notices the schema is gone, and makes it again next time
    new = lease.acquire("host-b", 22, "session-b")
    assert new is not None and new.epoch > old.epoch and reasons(store) == [(new.epoch, "first", None, "host-b")]
    store.fenced(new.epoch, new.session).beat(22, "host-b", "running", "UTC", 200.0, "session-b")
    with pytest.raises(FencedOut, match=f"epoch {old.epoch} no longer holds the scheduler lease"):
        stale.beat(11, "host-a", "running", "UTC", 100.0, "session-a")
    assert (store.scheduler().hostname, store.scheduler().session) == ("host-b", "session-b")


def test_a_takeover_after_a_restore_issues_an_epoch_above_every_one_issued_before(store, lease):
    """A database restored from a backup (or to a point in time) has a lease row with an older epoch: the next
    holder must still get a number no leader since the backup ever held."""
    current = lease.acquire("host-a", 11, "session-a")
    with pg.admin() as db:  # as the backup had it: an older epoch, taken by another session
        db.execute(f'UPDATE "{store.schema}".lease SET epoch = 7, holder_session = %s', ("session-x",))
    lease.release(LeaseGrant(7, "session-x", TTL, 0))
    restored = lease.acquire("host-b", 22, "session-b")
    assert restored.epoch > current.epoch and restored.epoch != 8
    assert lease.acquire("host-a", 11, "session-a") is None


def test_a_fenced_write_checks_the_holders_session_not_only_the_epoch(store, lease):
    grant = lease.acquire("host-a", 11, "session-a")
    leader = store.fenced(grant.epoch, grant.session)
    leader.publish_jobs([definition("a")])
    with pg.admin() as db:  # the same number, another holder (what an epoch issued twice would look like)
        db.execute(f'UPDATE "{store.schema}".lease SET holder_session = %s, holder_host = %s', ("session-b", "host-b"))
    with pytest.raises(FencedOut, match=f"epoch {grant.epoch} no longer holds the scheduler lease \\(epoch "
                                        f"{grant.epoch} of another holder does\\)"):
        leader.record_run("a", "success", 1.0, 0.5)
    assert store.jobs()[0].success_count == 0
    store.fenced(grant.epoch, "session-b").record_run("a", "success", 1.0, 0.5)
    assert store.jobs()[0].success_count == 1


def test_the_database_refuses_nothing_to_an_unfenced_store(store, lease):
    """The base store (tests, a single host's tools) writes without an epoch, even while a lease is held."""
    lease.acquire("host-a", 11, "session-a")
    store.publish_jobs([definition("a")])
    store.record_run("a", "success", 1.0, 0.5)
    assert store.jobs()[0].success_count == 1 and store.epoch is None and store.fenced(1).epoch == 1


def test_every_lease_operation_is_one_statement_with_no_transaction_left_open(store, lease, schema):  # noqa: F811
    """What keeps a frozen host harmless: after any operation no session of the store is inside a transaction."""
    grant = lease.acquire("host-a", 11, "session-a")
    lease.renew(grant)
    lease.offer_handover(grant)
    store.fenced(grant.epoch).beat(11, "host-a", "running", "UTC", 1.0, "session-a")
    with psycopg.connect(pg.DATABASE_URL, autocommit=True) as db:
        sessions = db.execute(
            "SELECT state FROM pg_stat_activity WHERE application_name = 'worker-service-state' AND query LIKE %s",
            (f'%"{schema}"%',)).fetchall()
    assert sessions and all(state == "idle" for (state,) in sessions)


# -- a host whose clock is off -------------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [3600.0, -3600.0, 3.5])
def test_a_host_whose_clock_is_off_by_more_than_the_bound_is_refused_and_leaves_only_an_unheld_row(store, offset):
    skewed = PostgresLease(store, LONG_TTL, max_skew=2.0, wall=lambda: time.time() + offset)
    honest = PostgresLease(store, LONG_TTL, max_skew=2.0)
    try:
        with pytest.raises(ClockSkewed) as refused:
            skewed.acquire("host-skewed", 11, "session-skewed")
        assert refused.value.bound == 2.0 and abs(refused.value.skew - offset) < 1.0
        assert "SCHEDULER_MAX_CLOCK_SKEW" in str(refused.value)
        row = skewed.current()  # a row nobody holds, so the refused host can read its skew off the lease
        assert row is not None and row.holder_session is None and not row.live
        assert store.leadership_changes(limit=5) == []  # nobody led: nothing logged
        grant = honest.acquire("host-honest", 22, "session-honest")  # the placeholder blocks nobody
        assert grant is not None and grant.epoch > row.epoch and abs(grant.clock_skew) <= 2.0
        with pytest.raises(ClockSkewed):  # nor does a live lease make the skewed host's refusal quieter
            skewed.acquire("host-skewed", 11, "session-skewed")
        assert skewed.current().holder_session == "session-honest"
    finally:
        skewed.close()
        honest.close()


def test_a_host_within_the_bound_leads_as_any_other(store):
    near = PostgresLease(store, LONG_TTL, max_skew=2.0, wall=lambda: time.time() + 0.5)
    try:
        grant = near.acquire("host-near", 11, "session-near")
        assert grant is not None and 0 < grant.expires_in <= LONG_TTL
        renewed = near.renew(grant)
        assert renewed.epoch == grant.epoch and 0 <= renewed.clock_skew <= 2.0  # measured, and within the bound
    finally:
        near.close()
