"""Fencing a job's own writes in the fleet's state database: a fence row per resource, never the lease row.

A job that runs on the leader may outlive its leadership (its host frozen or
cut off past the TTL) while another host leads and starts the next run. Its
writes must then be refused *by the database*, in the same transaction as the
write (Kleppmann's fencing token). The token is the lease epoch
(:func:`worker_service.runtime.fencing_token`). A run a host of the fleet
claimed (it may run on any host) writes with the lease's epoch of the moment,
and what must still hold is its claim (the run's live row, held by the
claiming host), not the lease: it fences on a host that does not lead just as
on the leader, and a run settled ``lost`` writes nothing any more.

The check is a compare-and-set on a row of its own, ``<schema>.fences``, one
per resource the job names, never a lock on the lease row:

* the statement writes the epoch into the resource's fence row only if the
  row holds no newer epoch (highest epoch wins) **and** the epoch still holds
  the lease (a plain read of the lease row: MVCC, no lock taken, none waited
  for). Otherwise it writes nothing and :class:`FencedOut` is raised;
* the fence row stays locked by the job's transaction until it commits, so a
  newer epoch's write to the same resource waits for it: writes to a resource
  are ordered by epoch, and an older epoch can never write after a newer one;
* the lease never waits for a job: renewals and takeovers touch only the lease
  row, which no job locks. A job can hold its transaction for minutes, or be
  cut off in the middle of it, without delaying a renewal or a takeover;
* a job cut off mid-transaction holds its fence row until the server ends its
  session: ``idle_in_transaction_session_timeout`` (the TTL by default, set
  with ``SET LOCAL`` so that it works through transaction poolers) ends it at
  the server, whatever the network does. Until then only the same resource's
  next writes wait (for at most ``lock_timeout``), never the fleet.

The old pattern (``SELECT … FROM <schema>.lease … FOR SHARE`` in the job's
transaction) is unsafe: the lease row stays locked for as long as the job's
transaction, and a renewal or takeover waits for it (README, "Several hosts").
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from . import runtime
from .scheduler.tracking import current_run
from .state.faults import FencedOut
from .state.pg_bounds import bound_transaction
from .state.pg_schema import quoted

FENCES_TABLE = "fences"
APPLICATION_NAME = "worker-service-fenced"  # pg_stat_activity tells a job's fenced transactions apart

# One statement: the resource's fence row moves up to this epoch, or nothing happens. The lease is only read.
_FENCE = """
INSERT INTO {s}.fences AS f (resource, epoch, written_at)
SELECT %(resource)s::text, %(epoch)s::bigint, now()
WHERE %(epoch)s::bigint >= (SELECT epoch FROM {s}.lease WHERE name = 'scheduler')
ON CONFLICT (resource) DO UPDATE SET epoch = EXCLUDED.epoch, written_at = EXCLUDED.written_at
WHERE f.epoch <= EXCLUDED.epoch
RETURNING epoch"""

# A run a host of the fleet claimed (any host may run it): it writes with the lease's epoch of now (a plain read), and
# instead of holding the lease it must still hold its claim (the run's live row, held by this session: a plain read,
# no lock). A run settled lost (its host's row expired) writes nothing from then on.
_FENCE_CLAIMED = """
INSERT INTO {s}.fences AS f (resource, epoch, written_at)
SELECT %(resource)s::text, l.epoch, now() FROM {s}.lease l
WHERE l.name = 'scheduler' AND EXISTS (SELECT 1 FROM {s}.job_running WHERE run_id = %(run_id)s::bigint AND session = %(session)s::text)
ON CONFLICT (resource) DO UPDATE SET epoch = EXCLUDED.epoch, written_at = EXCLUDED.written_at
WHERE f.epoch <= EXCLUDED.epoch
RETURNING epoch"""

def fence(connection: psycopg.Connection, resource: str, epoch: int | None, schema: str) -> int:
    """Claim ``resource`` for ``epoch`` inside the open transaction on ``connection``; return the epoch.

    Call it first in the transaction that writes the resource, on a connection
    to ``STATE_DATABASE_URL`` (``schema``: ``STATE_DATABASE_SCHEMA``), with
    ``runtime.fencing_token()``. Raises :class:`FencedOut` (and writes nothing)
    when ``epoch`` is ``None`` (this process does not lead), another epoch
    holds the lease, or a newer epoch already wrote ``resource``. The caller's
    transaction then must not write (:func:`fenced_transaction` rolls it back).
    """
    if epoch is None:
        raise FencedOut("fenced out: this process does not lead the fleet's scheduler; the job writes nothing")
    if connection.info.transaction_status != TransactionStatus.INTRANS:
        # In autocommit the fence row's lock would end with the statement: writes would no longer wait for it.
        raise ValueError("fence() must run inside the transaction that writes the resource")
    run = current_run()
    if run is not None and run.claim_session is not None and run.run_id is not None and epoch == run.claim_epoch:
        # A run a host claimed: the claim is the lease of this run (a settler took it once its host's row expired).
        row = connection.execute(_FENCE_CLAIMED.format(s=quoted(schema)), {
            "resource": resource, "run_id": run.run_id, "session": run.claim_session}).fetchone()
        if row is None:
            raise FencedOut(f"fenced out: run {run.run_id} is no longer this host's (settled as lost), or a newer "
                            f"epoch already wrote {resource!r}")
        return int(row[0])
    row = connection.execute(_FENCE.format(s=quoted(schema)), {"resource": resource, "epoch": epoch}).fetchone()
    if row is None:
        raise FencedOut(f"fenced out: epoch {epoch} no longer leads, or a newer epoch already wrote {resource!r}")
    return int(row[0])


@contextlib.contextmanager
def fenced_transaction(resource: str, *, timeout: float | None = None, idle_timeout: float | None = None,
                       lock_timeout: float | None = None, statement_timeout: float | None = None,
                       **connect: Any) -> Iterator[psycopg.Connection]:
    """A transaction on the state database in which ``resource`` is fenced by this process's lease epoch.

    Write the resource's data inside the ``with`` block; it commits when the
    block ends, or rolls back on an exception. Raises :class:`FencedOut` if the
    epoch is stale (nothing is written). Defaults, from the settings:
    ``idle_timeout`` the lease TTL (the server ends a session idle that long
    inside the transaction, e.g. cut off), ``lock_timeout`` the TTL,
    ``statement_timeout`` none. ``timeout`` bounds the whole transaction on
    this side too (libpq has no read timeout: the socket is shut down at the
    deadline), for a network path that goes silent. Connections are made as the
    state store makes its own: no startup options, no prepared statements, TCP
    keepalives, so they work through PgBouncer or Supavisor in transaction mode.
    """
    settings = runtime.settings()
    if not settings["STATE_DATABASE_URL"]:
        raise ValueError("fenced_transaction needs a fleet's state database (STATE_DATABASE_URL); on one host the "
                         "scheduler lock is the whole election and no fence is needed")
    ttl = float(settings["SCHEDULER_LEASE_TTL"])
    options: dict[str, Any] = {
        "connect_timeout": max(2, int(float(settings["STATE_DATABASE_TIMEOUT"]) + 0.999)),
        "autocommit": True, "prepare_threshold": None, "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
        "keepalives_count": 3, "tcp_user_timeout": int(ttl * 1000),  # unacknowledged sends end the connection
        "application_name": APPLICATION_NAME, **connect,
    }
    with psycopg.connect(settings["STATE_DATABASE_URL"], **options) as connection:
        watchdog = _deadline(connection, timeout) if timeout else None
        try:
            with connection.transaction():
                bound_transaction(connection, idle=ttl if idle_timeout is None else idle_timeout,
                                  lock=ttl if lock_timeout is None else lock_timeout, statement=statement_timeout)
                fence(connection, resource, runtime.fencing_token(), settings["STATE_DATABASE_SCHEMA"])
                yield connection
        finally:
            if watchdog is not None:
                watchdog.cancel()


def _deadline(connection: psycopg.Connection, seconds: float) -> threading.Timer:
    """Shut the connection's socket down after ``seconds``: a blocked read then fails at once."""
    descriptor = connection.fileno()

    def cut() -> None:
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(descriptor)) as sock:
            sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    return timer
