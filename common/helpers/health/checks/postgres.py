"""PostgreSQL: ``SELECT 1`` with connect and statement timeouts (psycopg 3)."""

from __future__ import annotations

import threading
from typing import Any

from ..check import ComponentCheck
from ..errors import ServiceUnavailable


class PostgresCheck(ComponentCheck):
    """Run ``SELECT 1`` on a reused connection, reconnecting after any failure.

    libpq has no connect timeout by default and ``statement_timeout`` is
    enforced by the server, so both are set here. Prepared statements are off
    so that transaction-mode poolers (PgBouncer, Supabase's pooler) work.
    A connection in use by a hung check is never shared with the next one.

    :param conninfo: a libpq URL or key=value string.
    :param connect_timeout: seconds to connect (libpq rounds it, 2 s at least).
    :param statement_timeout: seconds the server lets ``SELECT 1`` run.
    :param application_name: what ``pg_stat_activity`` shows for the check's
        connection, e.g. ``"<service>-health"``, so a DBA can tell it apart.
    """

    backend = "postgresql"

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
            options=f"-c statement_timeout={self._statement_timeout_ms}",
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
            connection.execute("SELECT 1").fetchone()
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
