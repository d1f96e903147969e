"""Faults of the fleet's state database: refused, frozen, bad credentials, a newer schema, racing migrations, a fork,
and PgBouncer in transaction mode. Every call comes back within its timeout as StoreUnavailable with a short reason
(never a password), and the store recovers by itself. Real PostgreSQL, a real TCP proxy, a real PgBouncer."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import pg
from tests.support.pg import schema  # noqa: F401 - the fixture
from tests.support.pgbouncer import PgBouncer, available
from tests.support.servers import free_port, wait_until
from tests.support.tcp_proxy import TcpProxy
from worker_service.state import FencedOut, PostgresLease, PostgresStateStore, StoreUnavailable, pg_store
from worker_service.state.pg_schema import LATEST, MIGRATIONS, SchemaTooNew
from worker_service.state.records import JobDefinition
from worker_service.state.setup import build_store, check_state_store

TIMEOUT = 1.0
BOUND = TIMEOUT + 1.5  # what a call may take at most, whatever the database does
PASSWORD = "correct-horse-battery-staple"
APPLIED = [(version,) for version, _, _ in MIGRATIONS]  # one row per migration, each applied once


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 5432) as proxy:
        yield proxy


@pytest.fixture
def proxied_store(proxy: TcpProxy, schema: str) -> Iterator[PostgresStateStore]:  # noqa: F811
    store = PostgresStateStore(f"postgresql://postgres@127.0.0.1:{proxy.port}/test", schema, timeout=TIMEOUT)
    store.migrate()
    store.publish_jobs([JobDefinition("a", "A", "interval[0:01:00]", 1000.0, 30.0, 1, "default", False, True, 60.0)])
    yield store
    store.close()


def failure(call: Callable[[], Any]) -> tuple[str, float]:
    """The reason ``call`` raised StoreUnavailable with, and how long it took."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        call()
    return str(raised.value), time.monotonic() - started


def calls(store: PostgresStateStore) -> dict[str, Callable[[], Any]]:
    """A read of every worker, the leader's writes, and the lease."""
    return {
        "jobs": store.jobs,
        "beat": lambda: store.beat(1, "host", "running", "UTC", 1.0, "s"),
        "record_run": lambda: store.record_run("a", "success", 1.0, 0.1),
        "acquire": lambda: PostgresLease(store, 10.0).acquire("host", 1, "s"),
    }


def settings(tmp_path: Path, url: str, schema_name: str = "worker_service_check") -> dict[str, Any]:
    return {"WORKER_STATE_DIR": str(tmp_path), "JOB_HISTORY_SIZE": 50, "STATE_DATABASE_URL": url,
            "STATE_DATABASE_SCHEMA": schema_name, "STATE_DATABASE_TIMEOUT": TIMEOUT}


# -- refused, frozen, back ------------------------------------------------------------------------------------
def test_a_refused_database_fails_every_call_within_its_bound_and_the_store_recovers_by_itself(proxied_store, proxy):
    proxy.cut()
    reasons = []
    for name, call in calls(proxied_store).items():
        reason, took = failure(call)
        assert took < BOUND, (name, took)
        reasons.append(reason)
    assert f"state database: connection refused (127.0.0.1:{proxy.port})" in reasons
    assert all(reason.startswith("state database: ") for reason in reasons)

    proxy.restore()
    records = wait_until(proxied_store.jobs, timeout=10, interval=0.1, what="the store to reconnect by itself")
    assert [r.id for r in records] == ["a"]
    proxied_store.record_run("a", "success", 2.0, 0.1)
    assert proxied_store.jobs()[0].success_count == 1


def test_a_refused_database_is_not_a_warning_per_reconnect_attempt(proxied_store, proxy, caplog):
    """psycopg_pool retries in the background and warns at each attempt; the callers' own state-change lines say it."""
    caplog.set_level(logging.INFO)
    proxy.cut()
    failure(proxied_store.jobs)
    pool = proxied_store.pool._current()
    wait_until(lambda: pool.get_stats().get("connections_errors", 0) >= 3, timeout=10, interval=0.05,
               what="three failed reconnect attempts")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="psycopg.pool")  # whoever wants the detail still gets it
    errors = pool.get_stats().get("connections_errors", 0)
    wait_until(lambda: pool.get_stats().get("connections_errors", 0) > errors, timeout=10, interval=0.05,
               what="one more failed attempt")
    wait_until(lambda: any(r.getMessage().startswith("error connecting in") and r.levelno == logging.DEBUG
                           for r in caplog.records), timeout=2, interval=0.05, what="the attempt at DEBUG")
    proxy.restore()


def test_a_frozen_database_times_every_call_out_within_its_bound_and_the_store_recovers(proxied_store, proxy):
    """The proxy accepts and never answers (a hung server, a dead path): libpq would wait forever without the store's
    own deadline; the calls in flight, in parallel, each come back at the timeout."""
    proxied_store.jobs()  # a pooled connection, idle, that will not answer
    proxy.freeze()
    reason, took = failure(proxied_store.jobs)  # sent on the pooled connection: cut at the deadline
    assert reason == "state database: timed out after 1 s" and TIMEOUT * 0.8 <= took < BOUND
    for name, call in calls(proxied_store).items():  # new connections hang too (or fail fast once one timed out)
        reason, took = failure(call)
        assert took < BOUND, (name, took)
        assert reason in ("state database: timed out after 1 s",
                          f"state database: timed out connecting (127.0.0.1:{proxy.port})"), reason

    outcomes: list[tuple[str, float]] = []
    threads = [threading.Thread(target=lambda: outcomes.append(failure(proxied_store.jobs))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=BOUND + 2)
    assert len(outcomes) == 6 and all(took < BOUND for _, took in outcomes)

    proxy.restore()
    wait_until(proxied_store.jobs, timeout=10, interval=0.1, what="the store to recover after the freeze")
    proxied_store.beat(1, "host", "running", "UTC", 1.0, "s")
    assert proxied_store.scheduler().state == "running"


def test_while_the_database_hangs_no_caller_waits_behind_another_callers_migration(proxy, schema, monkeypatch):  # noqa: F811
    """The schema is not known to be migrated yet (a new worker) and the database hangs: one caller tries to migrate,
    every other one waits at most the store's timeout for it, and a failed migration fails each call at once for a
    moment (as the pool does with its last connect failure), instead of each caller running its own, in turn."""
    # The migration's budget (5 s in service), short here; still long enough that two migrations in a row (1.2 s)
    # are told from one (0.6 s) with room for a loaded machine's overhead.
    monkeypatch.setattr(pg_store, "_MIGRATION_TIMEOUT", 0.6)
    # As in service: the failure must still be remembered when this thread asks again, however late it is scheduled.
    monkeypatch.setattr(pg_store, "MIGRATE_RETRY", 1.0)
    store = PostgresStateStore(f"postgresql://postgres@127.0.0.1:{proxy.port}/test", schema, timeout=0.2)
    try:
        store.pool.run(lambda db: db.execute("SELECT 1"))  # a pooled connection, not yet migrated
        proxy.freeze()
        outcomes: list[tuple[str, float]] = []
        callers = [threading.Thread(target=lambda: outcomes.append(failure(store.jobs))) for _ in range(7)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=5)
        assert len(outcomes) == 7
        assert max(took for _, took in outcomes) < 1.0, outcomes  # one migration's budget (0.6 s), not two or seven
        assert "state database: timed out after 0.6 s" in [reason for reason, _ in outcomes]
        reason, took = failure(store.jobs)  # the failed migration is reported at once, not tried again (0.6 s)
        assert reason == "state database: timed out after 0.6 s" and took < 0.3

        proxy.restore()
        wait_until(lambda: store.jobs() == [], timeout=5, interval=0.05, what="the store to migrate once it answers")
    finally:
        store.close()


def test_a_call_never_opens_a_connection_of_its_own(proxied_store):
    backends = {proxied_store.run(lambda db: db.info.backend_pid) for _ in range(30)}
    assert len(backends) <= proxied_store.pool.max_size  # the pool's few connections, again and again


# -- what an operator is told -------------------------------------------------------------------------------
@pytest.mark.skipif(not available(), reason="pgbouncer (Debian package pgbouncer) is not installed")
def test_bad_credentials_give_a_clear_reason_without_the_password(tmp_path, schema):  # noqa: F811
    with PgBouncer(tmp_path / "bouncer", auth_type="plain", users={"app": "the-right-one"}) as bouncer:
        url = bouncer.url("app", PASSWORD)
        store = PostgresStateStore(url, schema, timeout=TIMEOUT)
        reason, took = failure(store.jobs)
        store.close()
        assert reason == f"state database: password authentication failed (127.0.0.1:{bouncer.port})"
        assert took < BOUND
        problem = check_state_store(settings(tmp_path, url, schema))
    assert problem == ("configuration error: STATE_DATABASE_URL: cannot connect: password authentication failed"
                       f" (127.0.0.1:{bouncer.port})")
    assert PASSWORD not in problem and PASSWORD not in reason

    unknown = PostgresStateStore(f"postgresql://nobody:{PASSWORD}@127.0.0.1:5432/test", schema, timeout=TIMEOUT)
    reason, _ = failure(unknown.jobs)
    unknown.close()
    assert reason == 'state database: role "nobody" does not exist (127.0.0.1:5432)' and PASSWORD not in reason


def test_a_password_with_an_unencoded_at_never_shows_its_tail_in_a_reason(tmp_path, schema):  # noqa: F811
    """libpq takes the host from the password's first "@": a store built past the settings' check never quotes it."""
    store = PostgresStateStore("postgresql://app:Db@Canary_22@127.0.0.1:5432/test", schema, timeout=TIMEOUT)
    reason, took = failure(store.jobs)
    store.close()
    assert reason == "state database: unknown host (127.0.0.1:5432)"
    assert took < BOUND


def test_check_config_names_a_refused_database_in_one_line_and_migrates_a_good_one(tmp_path, schema):  # noqa: F811
    port = free_port()
    problem = check_state_store(settings(tmp_path, f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/test"))
    assert problem == f"configuration error: STATE_DATABASE_URL: cannot connect: connection refused (127.0.0.1:{port})"

    assert check_state_store(settings(tmp_path, pg.DATABASE_URL, schema)) is None
    assert pg.rows(schema, "SELECT version FROM {s}.schema_version ORDER BY version") == APPLIED


def test_a_store_that_cannot_connect_is_still_built_and_serves_once_the_database_is_back(tmp_path, schema):  # noqa: F811
    with TcpProxy("127.0.0.1", 5432) as proxy:
        proxy.cut()
        store = build_store(settings(tmp_path, f"postgresql://postgres@127.0.0.1:{proxy.port}/test", schema))
        assert isinstance(store, PostgresStateStore)
        reason, took = failure(store.job_count)
        assert reason == f"state database: connection refused (127.0.0.1:{proxy.port})" and took < BOUND
        proxy.restore()
        assert wait_until(lambda: store.job_count() == 0, timeout=10, interval=0.1, what="the store to migrate")
        store.close()


def test_a_schema_newer_than_the_code_is_refused_with_a_clear_reason(tmp_path, schema):  # noqa: F811
    PostgresStateStore(pg.FAST_URL, schema).migrate()
    with pg.admin() as db:
        db.execute(f'INSERT INTO "{schema}".schema_version (version, description) VALUES (%s, %s)',
                   (LATEST + 1, "from the future"))
    newer = (f"state database: schema {schema} is at version {LATEST + 1}, newer than this service knows ({LATEST}):"
             " run a newer release of the service, or another STATE_DATABASE_SCHEMA")
    store = PostgresStateStore(pg.FAST_URL, schema)
    with pytest.raises(SchemaTooNew, match="newer than this service knows"):
        store.migrate()
    assert failure(store.jobs)[0] == newer
    store.close()
    problem = check_state_store(settings(tmp_path, pg.DATABASE_URL, schema))
    assert problem == f"configuration error: STATE_DATABASE_SCHEMA={schema!r}: " + newer.removeprefix("state database: ")


def test_a_schema_dropped_under_a_running_store_is_made_again_at_its_next_call(schema):  # noqa: F811
    store = PostgresStateStore(pg.FAST_URL, schema, timeout=TIMEOUT)
    store.beat(1, "host", "running", "UTC", 1.0, "s")
    pg.drop_schema(schema)
    reason, _ = failure(store.scheduler)
    assert reason.startswith("state database: UndefinedTable: relation")
    assert store.scheduler() is None  # an empty state again, as a deleted SQLite file is rebuilt
    store.beat(1, "host", "running", "UTC", 1.0, "s")
    assert store.scheduler().state == "running"
    store.close()


# -- several hosts at once ----------------------------------------------------------------------------------
def _migrate_in_a_process(url: str, schema_name: str, start: Any, results: Any) -> None:
    store = PostgresStateStore(url, schema_name, timeout=5.0)
    start.wait(timeout=20)
    try:
        results.put(store.migrate())
    except StoreUnavailable as error:
        results.put(str(error))


def test_four_hosts_migrating_an_empty_database_at_the_same_instant_all_succeed_with_one_version_row(schema):  # noqa: F811
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(4), context.Queue()
    hosts = [context.Process(target=_migrate_in_a_process, args=(pg.DATABASE_URL, schema, start, results))
             for _ in range(4)]
    for host in hosts:
        host.start()
    outcomes = [results.get(timeout=30) for _ in hosts]
    for host in hosts:
        host.join(timeout=10)
    assert outcomes == [LATEST] * 4
    assert pg.rows(schema, "SELECT version FROM {s}.schema_version ORDER BY version") == APPLIED


def _backend_in_a_child(store: PostgresStateStore, inherited: Any, results: Any) -> None:
    inherited.close()  # the worst a child can do with a parent's connection (a worker's exit collects them)
    results.put((store.run(lambda db: db.info.backend_pid), store.job_count()))


def test_a_store_built_before_a_fork_opens_its_own_connections_in_the_child(schema):  # noqa: F811
    """gunicorn --preload: the master's store must work in each worker and never touch the master's connections."""
    store = PostgresStateStore(pg.FAST_URL, schema, timeout=5.0)
    parents = {store.run(lambda db: db.info.backend_pid) for _ in range(5)}
    inherited = store.run(lambda db: db)  # one of the pool's connections, idle now
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_backend_in_a_child, args=(store, inherited, results))
    child.start()
    child_backend, count = results.get(timeout=15)
    child.join(timeout=10)
    assert child.exitcode == 0 and count == 0 and child_backend not in parents
    alive = pg.rows(schema, "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (list(parents),))
    assert {pid for (pid,) in alive} == parents  # the child's exit closed none of the parent's connections
    assert {store.run(lambda db: db.info.backend_pid) for _ in range(5)} <= parents  # and they all still work
    store.close()


# -- PgBouncer in transaction pooling -----------------------------------------------------------------------
@pytest.mark.skipif(not available(), reason="pgbouncer (Debian package pgbouncer) is not installed")
def test_through_pgbouncer_in_transaction_mode_the_migration_lease_and_fencing_hold(tmp_path, schema):  # noqa: F811
    """No session state survives a transaction there (no session advisory lock, no prepared statement, no SET):
    the migration's transaction-scoped lock, the one-statement lease and the fenced writes need none."""
    with PgBouncer(tmp_path / "bouncer", pool_mode="transaction", pool_size=3) as bouncer:
        hosts = [PostgresStateStore(bouncer.url(), schema, timeout=2.0) for _ in range(3)]
        migrated: list[Any] = []
        racers = [threading.Thread(target=lambda h=host: migrated.append(h.migrate())) for host in hosts]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=15)
        assert migrated == [LATEST] * 3
        assert pg.rows(schema, "SELECT version FROM {s}.schema_version ORDER BY version") == APPLIED

        first, second, reader = hosts
        lease_a, lease_b = PostgresLease(first, 10.0), PostgresLease(second, 10.0)
        grant = lease_a.acquire("host-a", 1, "session-a")
        assert grant is not None and lease_b.acquire("host-b", 2, "session-b") is None
        assert lease_a.renew(grant).epoch == grant.epoch
        leader = first.fenced(grant.epoch, grant.session)
        leader.publish_jobs([JobDefinition("a", "A", "interval[0:01:00]", 1000.0, 30.0, 1, "default", False, True,
                                           60.0)])

        backends: set[int] = set()

        def busy_worker() -> None:  # several clients at once, so PgBouncer spreads them over its server connections
            for _ in range(15):
                leader.record_run("a", "success", 1.0, 0.01)
                backends.add(reader.run(lambda db: db.execute("SELECT pg_backend_pid()").fetchone()[0]))

        workers = [threading.Thread(target=busy_worker) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
        assert reader.jobs()[0].success_count == 90 and len(backends) >= 2

        lease_a.offer_handover(grant)
        taken = lease_b.acquire("host-b", 2, "session-b")
        assert taken.epoch > grant.epoch and lease_a.renew(grant) is None
        with pytest.raises(FencedOut, match=f"epoch {grant.epoch} no longer holds the scheduler lease"):
            leader.record_run("a", "success", 2.0, 0.01)
        second.fenced(taken.epoch, taken.session).record_run("a", "success", 2.0, 0.01)
        lease_b.release(taken)
        assert reader.jobs()[0].success_count == 91 and not reader.lease().live
        assert [c.reason for c in reader.leadership_changes()] == ["handover", "first"]
        for host in hosts:
            host.close()
