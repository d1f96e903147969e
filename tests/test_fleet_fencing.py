"""Jobs that fence their own writes as README says can neither delay a lease renewal nor block a takeover.

Real gunicorn hosts on one PostgreSQL schema, each through its own TcpProxy (tests/support/fleet.py). Besides the
1 s tick, a long job writes into a table of its own through :func:`worker_service.fencing.fenced_transaction`: once
holding its transaction open at work for 5 TTLs, once sitting idle in it while its host is cut off (silently).
The lease row is never locked by a job, so neither changes the lease.
"""

from __future__ import annotations

import contextlib
import time

import psycopg
import pytest

from tests.support.fleet import Fleet, check
from tests.support.pg import DATABASE_URL, admin
from tests.support.servers import wait_until
from worker_service.fencing import APPLICATION_NAME, fence
from worker_service.state.faults import FencedOut
from worker_service.state.pg_bounds import bound_transaction

TTL = 3.0
TAKEOVER = TTL + TTL / 3 + 1.5  # the promised bound, plus a new leader's start on a loaded 2-core machine
TICK = 1.0

LONG_JOB = """
[jobs.long]
name = "Long fenced transaction"
func = "tests.support.sample_jobs:fleet_tick"
trigger = "interval"
seconds = 1
max_instances = 1
misfire_grace_time = 30
kwargs = {{ table = "{table}", resource = "long", hold = {hold}, idle = {idle}, idle_timeout = {idle_timeout} }}
"""


def _long_fleet(tmp_path, hold: float, idle: float, idle_timeout: float) -> Fleet:
    made = Fleet(tmp_path, names=("a", "b"), ttl=TTL, timeout=TTL / 4, workers=2, tick=TICK,
                 jobs=LONG_JOB.format(table="__LONG__", hold=hold, idle=idle, idle_timeout=idle_timeout))
    table = f'"{made.tick_schema}".long_runs'
    with admin(made.database_url) as db:
        db.execute(f'CREATE TABLE {table} (LIKE "{made.tick_schema}".ticks INCLUDING DEFAULTS)')
    jobs_file = tmp_path / "fleet-jobs.toml"
    jobs_file.write_text(jobs_file.read_text().replace("__LONG__", f"{made.tick_schema}.long_runs"))
    return made


def _long_transactions(fleet: Fleet, state: str) -> list[int]:
    """Backends of the long job's fenced transactions in ``state`` ('active' or 'idle in transaction').

    Its last statement is its insert into long_runs, or one of its pg_sleep()s while at work.
    """
    with admin(fleet.database_url) as db:
        rows = db.execute("SELECT pid FROM pg_stat_activity WHERE state = %s AND application_name = %s"
                          " AND (query ILIKE %s OR query ILIKE %s)",
                          (state, APPLICATION_NAME, f"%{fleet.tick_schema}%long_runs%", "%pg_sleep%")).fetchall()
    return [row[0] for row in rows]


def test_a_fenced_transaction_neither_moves_the_lease_nor_blocks_a_takeover_when_its_leader_is_cut_off(tmp_path):
    """One long run on the leader: 5 TTLs at work in its fenced transaction, then idle in it while its host is cut off.

    The old pattern (FOR SHARE on the lease row) failed both halves: the held transaction blocked the leader's own
    renewals (it fenced itself; gaps of 7-11 s), and the cut-off one kept the lease row locked until the server gave
    the session up (~2 h of TCP keepalive): no run on any host for 60 s.
    """
    fleet = _long_fleet(tmp_path, hold=5 * TTL, idle=40, idle_timeout=60)
    try:
        fleet.start()
        leader = fleet.wait_for_leader(timeout=15)
        epoch = fleet.lease().epoch
        wait_until(lambda: _long_transactions(fleet, "active"), timeout=10, what="the long job at work")
        started = fleet.db_now()
        changes_before = len(fleet.changes())
        # 1. The long run holds its transaction at work for 15 s: the lease must not move meanwhile.
        deadline = time.monotonic() + 4 * TTL
        while time.monotonic() < deadline:
            lease = fleet.lease()
            assert lease.epoch == epoch and lease.live, f"the lease moved while a job held its transaction: {lease}"
            time.sleep(0.2)  # sampling the lease through the window, bounded by the deadline
        assert fleet.leader() is leader and len(fleet.changes()) == changes_before
        ticks = [tick for tick in fleet.ticks() if tick.db_time > started]
        assert len(ticks) >= 4 * TTL / TICK - 3, f"the tick did not keep going: {len(ticks)} ticks"

        # 2. Its transaction goes idle (the server keeps it: idle_timeout 60 s); the leader's host is cut off.
        wait_until(lambda: _long_transactions(fleet, "idle in transaction"), timeout=5 * TTL,
                   what="the long job idle in its transaction")
        cut_at = time.monotonic()
        before = fleet.db_now()
        leader.proxy.freeze()  # silent: the server keeps the session, and its fence row lock, as its bounds allow
        new = fleet.wait_for_leader(timeout=TAKEOVER + 5, other_than=leader)
        took = time.monotonic() - cut_at
        assert took <= TAKEOVER, f"a new leader took {took:.2f} s after the partition (bound {TAKEOVER:.2f} s)"
        assert _long_transactions(fleet, "idle in transaction"), "the cut-off job's session should still be there"
        fleet.wait_for_ticks(3, timeout=10, host=new, after=before)
        leader.proxy.restore()
        result = check(fleet.ticks(), TICK)
        assert not result["duplicates"] and not result["stale"] and not result["overlaps"], result
    finally:
        with admin(fleet.database_url) as db:  # the cut-off session would hold its locks up to its 60 s idle bound
            for pid in _long_transactions(fleet, "idle in transaction"):
                db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        fleet.close()


@pytest.fixture
def fences_schema():
    from tests.support.pg import drop_schema, new_schema_name
    from worker_service.state.pg_store import PostgresStateStore

    name = new_schema_name()
    store = PostgresStateStore(DATABASE_URL, name, 10, 2.0)
    store.migrate()
    yield name
    store.close()
    drop_schema(name)


def _set_lease(schema: str, epoch: int) -> None:
    with admin(DATABASE_URL) as db:
        db.execute(f'INSERT INTO "{schema}".lease (name, epoch, expires_at) VALUES (\'scheduler\', %s, now())'
                   " ON CONFLICT (name) DO UPDATE SET epoch = EXCLUDED.epoch", (epoch,))


def test_fence_refuses_a_stale_epoch_and_orders_writes_by_epoch(fences_schema):
    schema = fences_schema
    _set_lease(schema, 33)
    with psycopg.connect(DATABASE_URL, autocommit=True) as db:
        with db.transaction():
            assert fence(db, "invoices", 33, schema) == 33
        _set_lease(schema, 34)
        with pytest.raises(FencedOut, match="no longer leads"), db.transaction():
            fence(db, "invoices", 33, schema)  # another epoch leads: refused, though 33 wrote last
        with db.transaction():
            assert fence(db, "invoices", 34, schema) == 34
        _set_lease(schema, 33)  # even were the lease read stale: a newer epoch already wrote the resource
        with pytest.raises(FencedOut), db.transaction():
            fence(db, "invoices", 33, schema)
        with pytest.raises(FencedOut, match="does not lead"), db.transaction():
            fence(db, "invoices", NOT_LEADING, schema)


NOT_LEADING = None  # what runtime.fencing_token() returns in a process that does not lead


def test_a_fence_never_waits_for_the_lease_and_the_lease_never_waits_for_a_fence(fences_schema):
    """A fenced transaction left open locks its fence row only: the lease row stays free to update at once."""
    schema = fences_schema
    _set_lease(schema, 40)
    with psycopg.connect(DATABASE_URL, autocommit=True) as job, psycopg.connect(DATABASE_URL, autocommit=True) as lease:
        with job.transaction():
            bound_transaction(job, idle=30, lock=1)
            fence(job, "ledger", 40, schema)
            with lease.transaction():
                bound_transaction(lease, idle=1, lock=0.2)  # a lock wait would fail in 0.2 s
                lease.execute(f"UPDATE \"{schema}\".lease SET epoch = 41 WHERE name = 'scheduler'")
            # The newer epoch's write to the same resource waits for the older one to end (ordered by epoch).
            with pytest.raises(psycopg.errors.LockNotAvailable), lease.transaction():
                bound_transaction(lease, idle=1, lock=0.2)
                fence(lease, "ledger", 41, schema)
        with lease.transaction():
            assert fence(lease, "ledger", 41, schema) == 41


def test_a_session_cut_off_inside_a_bounded_transaction_is_ended_by_the_server(fences_schema):
    """idle_in_transaction_session_timeout set with SET LOCAL: the server frees the fence row of a silent client."""
    schema = fences_schema
    _set_lease(schema, 50)
    job = psycopg.connect(DATABASE_URL, autocommit=True)
    with contextlib.closing(job), psycopg.connect(DATABASE_URL, autocommit=True) as other:
        job.execute("BEGIN")
        bound_transaction(job, idle=0.5, lock=1)
        fence(job, "ledger", 50, schema)
        backend = job.info.backend_pid
        # The job goes silent inside its transaction; the server ends the session after the idle bound.
        wait_until(lambda: other.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                         (backend,)).fetchone()[0] == 0, timeout=5, what="the session ended")
        _set_lease(schema, 51)
        with other.transaction():
            bound_transaction(other, idle=1, lock=0.5)
            assert fence(other, "ledger", 51, schema) == 51
