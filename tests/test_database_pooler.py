"""DATABASE_URL through a transaction pooler, as the README promises: a stock PgBouncer (``pool_mode = transaction``,
nothing else changed) serves the health check and the jobs' queries, and every bound the service sets still holds.

A pooler shares one server connection among clients, one transaction at a time, and refuses a startup parameter it
does not track: ``options=-c statement_timeout=…`` made PgBouncer answer "unsupported startup parameter: options" to
every probe and every job. The timeout now travels inside each transaction (``SET LOCAL``), so it must also never
outlive it on the shared server connection. Real PgBouncer, real PostgreSQL, a real TCP proxy for a silent server.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from common.helpers.health import ServiceUnavailable
from common.helpers.health.checks.postgres import PostgresCheck
from tests.conftest import DATABASE_URL
from tests.support import pg
from tests.support.pg import schema  # noqa: F401 - the fixture
from tests.support.pgbouncer import PgBouncer, available
from tests.support.servers import BIN, base_env, wait_until
from tests.support.tcp_proxy import TcpProxy
from worker_service.database import PostgresDatabase

pytestmark = pytest.mark.skipif(not available(), reason="pgbouncer (Debian package pgbouncer) is not installed")

NO_SCHEDULER = {"HEALTH_CRITICAL_COMPONENTS": "database"}  # no scheduler runs in-process here
REFUSED = "unsupported startup parameter"


@pytest.fixture
def bouncer(tmp_path: Path) -> Iterator[PgBouncer]:
    """A stock PgBouncer in transaction mode with ONE server connection, so every client shares the same backend."""
    with PgBouncer(tmp_path / "bouncer", pool_mode="transaction", pool_size=1) as bouncer:
        yield bouncer
        assert REFUSED not in bouncer.log(), bouncer.log()[-2000:]


@pytest.fixture
def accounts_table() -> Iterator[str]:
    table = f"accounts_{uuid.uuid4().hex[:8]}"
    with pg.admin() as db:
        db.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, email text)")
        db.execute(f"INSERT INTO {table} VALUES ('a1', 'a@example.org'), ('a2', 'b@example.org')")
    yield table
    with pg.admin() as db:
        db.execute(f"DROP TABLE IF EXISTS {table}")


def settings_seen_by_the_next_client(bouncer: PgBouncer) -> tuple[str, str]:
    """statement_timeout and the backend's pid, as the next client of the pooler's one server connection sees them."""
    with psycopg.connect(bouncer.url(), autocommit=True, prepare_threshold=None) as other:
        return other.execute("SELECT current_setting('statement_timeout'), pg_backend_pid()::text").fetchone()


# -- what a user sees -------------------------------------------------------------------------------------------
def test_health_is_available_with_database_url_on_a_stock_pgbouncer(make_app, bouncer):
    app = make_app(DATABASE_URL=bouncer.url(), HEALTH_CACHE_TTL="0", **NO_SCHEDULER)
    client = app.test_client()
    for _ in range(3):  # every probe, on the check's reused connection
        response = client.get("/health")
        assert response.status_code == 200, response.json
        assert response.json["components"]["database"] == "available"


def test_the_accounts_jobs_read_their_table_through_a_stock_pgbouncer(make_app, bouncer, accounts_table):
    make_app(DATABASE_URL=bouncer.url(), ACCOUNTS_TABLE=accounts_table, **NO_SCHEDULER)
    from worker_service.jobs.accounts import reconcile_database, sync_accounts

    assert sync_accounts() == 2
    assert reconcile_database() == 0


def test_check_config_and_the_state_store_work_through_a_stock_pgbouncer(bouncer, state_dir, schema):  # noqa: F811
    """check-config opens the fleet's state store (its pool sends application_name only) and migrates it there."""
    done = subprocess.run([str(BIN / "worker-service"), "check-config"], capture_output=True, text=True, timeout=60,
                          env=base_env(state_dir, STATE_DATABASE_URL=bouncer.url(), STATE_DATABASE_SCHEMA=schema,
                                       DATABASE_URL=bouncer.url()))
    assert done.returncode == 0, done.stderr
    assert pg.rows(schema, "SELECT count(*) FROM {s}.schema_version")[0][0] > 0


def test_the_checks_application_name_is_a_parameter_pgbouncer_tracks(bouncer):
    """The one startup parameter the service sends: a stock PgBouncer takes it and sets it on the server connection."""
    check = PostgresDatabase(bouncer.url(), timeout=4.0, check_timeout=0.5).health_check()
    with check.connect() as connection:
        assert connection.execute("SHOW application_name").fetchone()[0] == "worker-service-health"


# -- the bounds hold, and stay inside their transaction --------------------------------------------------------
def test_the_statement_timeout_the_check_and_a_job_set_never_reaches_the_next_client(bouncer, accounts_table):
    database = PostgresDatabase(bouncer.url(), timeout=4.0, check_timeout=0.5)
    database.health_check().check()
    assert len(database.select(accounts_table)) == 2
    before = settings_seen_by_the_next_client(bouncer)
    database.health_check().check()  # again, on its reused client connection
    after = settings_seen_by_the_next_client(bouncer)
    assert before[0] == after[0] == "0"  # the server's default: nothing leaked out of SET LOCAL
    assert before[1] == after[1]  # one server connection for everyone: the check's was the one looked at


def test_the_check_is_still_cancelled_by_its_statement_timeout_through_the_pooler(bouncer):
    class SlowCheck(PostgresCheck):
        query = "SELECT pg_sleep(30)"

    with pytest.raises(ServiceUnavailable, match="canceling statement due to statement timeout"):
        SlowCheck(bouncer.url(), statement_timeout=0.2).check()


def test_a_jobs_query_is_still_cancelled_by_its_statement_timeout_through_the_pooler(bouncer, accounts_table):
    with pg.admin() as holder, holder.transaction():
        holder.execute(f"LOCK TABLE {accounts_table} IN ACCESS EXCLUSIVE MODE")  # the job's SELECT waits on it
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            PostgresDatabase(bouncer.url(), timeout=0.2, check_timeout=0.5).select(accounts_table)


def test_a_jobs_query_to_a_server_that_stops_answering_ends_at_its_bound(accounts_table):
    """No byte comes back once the query is sent: the server's timeout cannot help, the client's own deadline does."""
    outcome: list[BaseException | None] = []
    with TcpProxy("127.0.0.1", 5432) as proxy, pg.admin() as holder, holder.transaction():
        holder.execute(f"LOCK TABLE {accounts_table} IN ACCESS EXCLUSIVE MODE")
        database = PostgresDatabase(DATABASE_URL.replace(":5432/", f":{proxy.port}/"), timeout=3.0, check_timeout=0.5)

        def job() -> None:
            try:
                database.select(accounts_table)
                outcome.append(None)
            except BaseException as error:  # noqa: BLE001 - the test reads it
                outcome.append(error)

        runner = threading.Thread(target=job, daemon=True)
        runner.start()
        with pg.admin() as watcher:  # not the holder: a transaction sees one snapshot of pg_stat_activity
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s"
            wait_until(lambda: watcher.execute(waiting, (f'SELECT * FROM "{accounts_table}"%',)).fetchone()[0] == 1,
                       timeout=10, interval=0.02, what="the job's query to wait on the lock")
        proxy.freeze()  # the server's own cancel (at 3 s) will never reach the client
        runner.join(timeout=15)
        assert not runner.is_alive(), "the job's query is still waiting for a server that never answers"
    assert isinstance(outcome[0], psycopg.OperationalError), outcome
    assert "no answer from the database within" in str(outcome[0])
