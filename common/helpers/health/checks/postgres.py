"""PostgreSQL: ``SELECT 1`` with connect and statement timeouts (psycopg 3)."""

from __future__ import annotations

import threading
from typing import Any

from ..check import ComponentCheck
from ..errors import ServiceUnavailable


class PostgresCheck(ComponentCheck):
    """Run ``SELECT 1`` on a reused connection, reconnecting after any failure.

    Both bounds are set in ways a transaction pooler accepts (PgBouncer,
    Supabase's Supavisor). libpq has no connect timeout by default, so
    ``connect_timeout`` is set; it is enforced by the client. The statement
    timeout is not a startup parameter (``options=-c statement_timeout=...``):
    a stock PgBouncer refuses the whole connection for it ("unsupported
    startup parameter: options"), and a pooler that let it through would
    apply it to a server connection other clients share. It is set by
    ``SET LOCAL`` in the same simple-query message as the statement: one round
    trip, one implicit transaction, so it bounds that statement only and ends
    with it (PostgreSQL 13 and later apply it to the statement after it in the
    message; on an older server the caller's own deadline still bounds the check).
    The only startup parameter sent is ``application_name``, which PgBouncer
    tracks by default and Supavisor accepts. Prepared statements are off (a
    transaction pooler has none). A connection in use by a hung check is never
    shared with the next one.

    :param conninfo: a libpq URL or key=value string.
    :param connect_timeout: seconds to connect (libpq rounds it, 2 s at least).
    :param statement_timeout: seconds the server lets the statement run.
    :param application_name: what ``pg_stat_activity`` shows for the check's
        connection, e.g. ``"<service>-health"``, so a DBA can tell it apart.
    """

    backend = "postgresql"
    query = "SELECT 1"  # the statement the check runs; it must return a row

    def __init__(self, conninfo: str, connect_timeout: float = 2.0, statement_timeout: float = 1.0, *,
                 application_name: str = "health-check") -> None:
        self._conninfo = conninfo
        self._application_name = application_name
        self._connect_timeout = max(int(round(connect_timeout)), 2)  # libpq's floor is 2 s
        self._statement_timeout_ms = max(int(statement_timeout * 1000), 1)
        self._idle: Any = None
        self._lock = threading.Lock()

    def connect(self) -> Any:
        """Open a new connection with the check's timeouts."""
        import psycopg

        return psycopg.connect(
            self._conninfo,
            autocommit=True,
            prepare_threshold=None,
            connect_timeout=self._connect_timeout,
            application_name=self._application_name,
            # Notice a peer that vanished (no RST) on a reused connection.
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
        )

    def check(self) -> None:
        import psycopg

        with self._lock:
            connection, self._idle = self._idle, None
        try:
            if connection is None or connection.closed:
                connection = self.connect()
            _probe(connection, f"SET LOCAL statement_timeout = {self._statement_timeout_ms}; {self.query}")
        except psycopg.OperationalError as error:
            _close(connection)
            raise ServiceUnavailable(_short(error)) from None
        except psycopg.Error as error:
            _close(connection)
            raise ServiceUnavailable(f"{type(error).__name__}: {_short(error)}") from None
        with self._lock:
            if self._idle is None:
                self._idle, connection = connection, None
        _close(connection)


def _probe(connection: Any, statements: str) -> None:
    """Run ``SET ...; <query>`` and read the query's row.

    Without parameters psycopg sends the text as one simple-query message,
    which may hold several statements; their results come in order.
    """
    cursor = connection.execute(statements)
    cursor.nextset()  # past the SET
    cursor.fetchone()


def _close(connection: Any) -> None:
    if connection is not None:
        try:
            connection.close()
        except Exception:
            pass


def _short(error: Exception) -> str:
    """The part of a libpq message that says what failed: 'Connection refused', 'FATAL: role ...'."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    first = lines[0]
    if " failed: " in first:
        first = first.rsplit(" failed: ", 1)[1]
    return " ".join(first.replace("FATAL:  ", "").split())
