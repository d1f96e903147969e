"""Server-side bounds of one transaction, set with ``SET LOCAL`` so that they work through transaction poolers.

A startup parameter (``options=-c lock_timeout=…``) is refused by a stock
PgBouncer, and a session ``SET`` would stay on whichever server connection a
transaction pooler lent, for its next client. ``set_config(…, true)`` lasts
exactly the transaction it runs in, on every pooler.

What they bound: ``lock_timeout`` how long a statement waits for a lock;
``statement_timeout`` how long one runs; ``idle_in_transaction_session_timeout``
how long the server keeps a session that sits inside a transaction between two
statements, such as a client cut off mid-transaction: the server ends that
session and its locks are released, whatever the network does. The server's
TCP keepalives for the session are shortened for the transaction too (a dead
peer on a real network is noticed sooner; a proxy that stays up but forwards
nothing is only caught by the idle timeout).
"""

from __future__ import annotations

import psycopg

BOUNDS_SQL = """
SELECT set_config('idle_in_transaction_session_timeout', %(idle)s, true),
       set_config('lock_timeout', %(lock)s, true),
       set_config('statement_timeout', %(statement)s, true),
       set_config('tcp_keepalives_idle', %(keepalive)s, true),
       set_config('tcp_keepalives_interval', '1', true),
       set_config('tcp_keepalives_count', '3', true)"""


def _milliseconds(seconds: float | None) -> str:
    """PostgreSQL's milliseconds for a bound; ``None`` or ``0`` is no bound (PostgreSQL's own 0)."""
    return "0" if not seconds else str(max(int(seconds * 1000), 1))


def bounds(*, idle: float, lock: float, statement: float | None = None) -> dict[str, str]:
    """The parameters of :data:`BOUNDS_SQL` for these bounds, in seconds (``statement=None``: no bound)."""
    return {"idle": _milliseconds(idle), "lock": _milliseconds(lock), "statement": _milliseconds(statement),
            "keepalive": str(max(int(idle / 3), 1))}



def bound_transaction(connection: psycopg.Connection, *, idle: float, lock: float,
                      statement: float | None = None) -> None:
    """Bound the transaction open on ``connection`` at the server (see the module docstring); seconds."""
    connection.execute(BOUNDS_SQL, bounds(idle=idle, lock=lock, statement=statement))
