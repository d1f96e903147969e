"""The database resource: Supabase, PostgreSQL or an embedded SQLite file.

Which one: ``SUPABASE_URL`` + ``SUPABASE_KEY`` win, then ``DATABASE_URL``,
else SQLite in the state directory. Clients are created once per process, so
nothing opened before gunicorn forks is shared by workers.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from common.helpers.health import ComponentCheck
from common.helpers.health.checks.postgres import PostgresCheck
from common.helpers.health.checks.sqlite import SqliteCheck
from common.helpers.health.checks.supabase import SupabaseCheck

from .state.sqlite_wal import connect_wal

SQLITE_FILE = "worker-data.sqlite3"
NO_ANSWER_GRACE = 1.0  # seconds past a job's statement timeout before a silent server is given up (its cancel first)

log = logging.getLogger(__name__)


class Database(Protocol):
    """What jobs may do with the database."""

    backend: str

    def select(self, table: str, limit: int = 1000) -> list[dict[str, Any]]: ...
    def health_check(self) -> ComponentCheck: ...


class SupabaseDatabase:
    """The official supabase client, one per process and timeout, built by :meth:`prepare` when the app is."""

    backend = "supabase"

    def __init__(self, url: str, key: str, health_table: str, timeout: float, check_timeout: float) -> None:
        self._url, self._key = url, key
        self._health_table = health_table
        self._timeout, self._check_timeout = timeout, check_timeout
        self._clients: dict[tuple[int, float], Any] = {}
        self._lock = threading.Lock()

    def client(self, timeout: float | None = None) -> Any:
        """This process's client whose HTTP timeouts are ``timeout`` seconds."""
        key = (os.getpid(), timeout or self._timeout)
        with self._lock:
            if key not in self._clients:
                import httpx
                from supabase import ClientOptions, create_client

                # An httpx.Timeout, not a float: postgrest-py turns a float into int(),
                # so 0.5 s would become 0 and every check would fail at once.
                options = ClientOptions(postgrest_client_timeout=httpx.Timeout(key[1]), auto_refresh_token=False,
                                        persist_session=False)
                self._clients[key] = create_client(self._url, self._key, options=options)
            return self._clients[key]

    def prepare(self) -> None:
        """Build this process's clients now, so the first health probe does not spend its deadline on them.

        Importing supabase and building a client with its PostgREST session
        takes about 0.7 s on a 2-core machine, more than the default 0.5 s
        HEALTH_CHECK_TIMEOUT. No request is sent.
        """
        for timeout in (self._check_timeout, self._timeout):
            _ = self.client(timeout).postgrest.session

    def select(self, table: str, limit: int = 1000) -> list[dict[str, Any]]:
        return self.client().table(table).select("*").limit(limit).execute().data

    def health_check(self) -> ComponentCheck:
        return SupabaseCheck(lambda: self.client(self._check_timeout), self._health_table)


class PostgresDatabase:
    """psycopg 3 connections for the jobs and the health check, each bound set in a way a transaction pooler accepts.

    A job's query is bounded three ways, whatever the server does: libpq's
    ``connect_timeout`` (client side); ``statement_timeout``, set by ``SET
    LOCAL`` inside the query's own transaction and gone with it (never as a
    startup parameter: a stock PgBouncer refuses ``options`` for the whole
    connection, and a session setting would follow the pooled server connection
    to another client); and, for a server that stops answering altogether
    (whose cancel would never arrive), the state store's watchdog, which shuts
    the socket down :data:`NO_ANSWER_GRACE` seconds after the statement timeout.
    An explicit transaction, not the health check's single message: a job's
    query is the one that may run long, and this way the timeout bounds it on
    any server version (before PostgreSQL 13 a multi-statement message kept the
    timeout it arrived with); three more round trips are nothing for a job.
    No startup parameter but ``application_name`` (the health check's)
    is sent. Prepared statements are off (a transaction pooler has none).
    """

    backend = "postgresql"

    def __init__(self, url: str, timeout: float, check_timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        self._check = PostgresCheck(url, connect_timeout=max(check_timeout, 2.0), statement_timeout=check_timeout,
                                    application_name="worker-service-health")

    def select(self, table: str, limit: int = 1000) -> list[dict[str, Any]]:
        import psycopg
        from psycopg import sql
        from psycopg.rows import dict_row

        from .state.pg_pool import shut_down_at

        query = sql.SQL("SELECT * FROM {} LIMIT %s").format(sql.Identifier(table))
        bound = self._timeout + NO_ANSWER_GRACE
        with psycopg.connect(self._url, autocommit=True, prepare_threshold=None,
                             connect_timeout=max(int(self._timeout), 2), row_factory=dict_row) as connection:
            armed = shut_down_at(connection, time.monotonic() + bound)
            try:
                with connection.transaction():
                    connection.execute(f"SET LOCAL statement_timeout = {max(int(self._timeout * 1000), 1)}")
                    return connection.execute(query, (limit,)).fetchall()
            except psycopg.Error:
                if armed.disarm():
                    raise psycopg.OperationalError(f"no answer from the database within {bound:g} s") from None
                raise
            finally:
                armed.disarm()

    def health_check(self) -> ComponentCheck:
        return self._check


class SqliteDatabase:
    """An embedded SQLite file, so that a first ``make run`` needs nothing installed.

    It is created with an empty ``accounts`` table for the built-in jobs.
    """

    backend = "sqlite"

    def __init__(self, path: str, accounts_table: str, timeout: float) -> None:
        self.path = path
        self._timeout = timeout
        self._accounts_table = accounts_table
        self._created = False
        try:
            self._create()
        except (sqlite3.Error, OSError) as error:
            # Never fatal: a worker that cannot open the file (a read-only state dir)
            # still serves /health, where the database check reports why.
            log.error("the embedded database %s cannot be opened now: %s; trying again on its next use", path, error)

    def _create(self) -> None:
        if self._created:
            return
        connection = connect_wal(self.path, timeout=self._timeout)
        try:
            connection.execute(
                f'CREATE TABLE IF NOT EXISTS "{self._accounts_table}" (id TEXT PRIMARY KEY, email TEXT, updated_at TEXT)'
            )
            connection.commit()
        finally:
            connection.close()
        self._created = True

    def select(self, table: str, limit: int = 1000) -> list[dict[str, Any]]:
        self._create()
        connection = sqlite3.connect(self.path, timeout=self._timeout)
        connection.row_factory = sqlite3.Row
        try:
            rows = connection.execute(f'SELECT * FROM "{table}" LIMIT ?', (limit,)).fetchall()
        finally:
            connection.close()
        return [dict(row) for row in rows]

    def health_check(self) -> ComponentCheck:
        return SqliteCheck(self.path, timeout=self._timeout)


def build_database(settings: Mapping[str, Any]) -> Database:
    """Return the database the settings ask for (Supabase, then DATABASE_URL, then SQLite), its clients ready.

    Under gunicorn (without ``--preload``) this runs in each worker at start, outside any probe's deadline.
    """
    check_timeout = settings["HEALTH_CHECK_TIMEOUT"]
    if settings["SUPABASE_URL"]:
        database = SupabaseDatabase(
            settings["SUPABASE_URL"], settings["SUPABASE_KEY"], settings["SUPABASE_HEALTH_TABLE"],
            settings["DATABASE_TIMEOUT"], check_timeout,
        )
        database.prepare()
        return database
    if settings["DATABASE_URL"]:
        return PostgresDatabase(settings["DATABASE_URL"], settings["DATABASE_TIMEOUT"], check_timeout)
    path = os.path.join(settings["WORKER_STATE_DIR"], SQLITE_FILE)
    return SqliteDatabase(path, settings["ACCOUNTS_TABLE"], timeout=max(check_timeout, 1.0))

