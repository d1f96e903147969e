"""The fleet's scheduler lease: one row in the state schema, each operation ONE statement timed by the database.

Whoever holds the lease runs the scheduler for the whole fleet. Every
operation is a single statement in autocommit, with expiry computed from the
database's ``now()`` (never a host's clock), so it works through any pooler
(transaction mode included: no session state, no session advisory lock) and
no frozen host can hold a lock on the row between two statements.

The ``epoch`` is the fencing token the store's fenced writes check
(:meth:`PostgresStateStore.fenced`, with the holder's session), and the one
jobs pass to the resources they write (the account jobs' Redis fence keeps
the highest epoch that ever wrote). It must never be issued twice, not even
when the lease row itself is lost: a schema dropped and made again (the store
makes a dropped schema again on purpose), or a database restored from a
backup or to a point in time, would otherwise start again from an epoch an old
leader may still hold. So it is a number on the database's clock: a new lease
row starts at the milliseconds since 1970 of ``clock_timestamp()``, and each
change of holder takes ``greatest(epoch + 1, <that clock>)``. It only grows
within the row, and a row made again, or restored, starts above every epoch
issued before (short of the database's clock going back further than the time
since). Renewals keep the epoch. Each
change is logged, in the same statement that makes it, in
``leadership_changes`` with its reason: ``first``, ``released``, ``handover``,
``expired``; and ``lost`` when a former holder notices (:meth:`record_lost`).
The log keeps its newest ``LEADERSHIP_CHANGES_KEPT`` changes (trimmed by the
same statement), so years of reloads never grow it without bound.

The lease has a connection of its own (a pool of one, opened at first use):
the store's pool is shared by request threads, the heartbeat, the leader's
command poll and job writes, and a renewal queued behind them on a slow
database would cost the leader its lease.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from .columns import LEADERSHIP_CHANGES_KEPT
from .faults import ClockSkewed, clock_skew
from .pg_bounds import BOUNDS_SQL, bounds
from .pg_pool import StatePool
from .pg_schema import quoted
from .pg_store import PostgresStateStore
from .records import LeaseRecord

# Takes the lease if free, or renews it for the session that holds it, unless the caller's wall clock (sent as
# host_now, read just before sending: the database's clock may run up to `delay` further while the statement travels
# and waits) is further than max_skew from the database's: a host with a wrong clock would run every job at its own
# wrong times (an hour behind, none at all). The one row says what the database's clock read and whether it was taken. The lease row remembers the holder it
# replaced and why (RETURNING has only the new row), so the change is logged by the same statement. A new epoch is
# the database clock's milliseconds, or the last epoch + 1 if that is larger (see the module docstring).
_ACQUIRE = """
WITH clock AS (
    SELECT extract(epoch FROM clock_timestamp())::float8 AS now,
           %(max_skew)s::float8 IS NULL
           OR extract(epoch FROM clock_timestamp()) - %(host_now)s::float8
              BETWEEN -%(max_skew)s::float8 AND %(max_skew)s::float8 + %(delay)s::float8 AS in_bound
),
taken AS (
    INSERT INTO {s}.lease AS l (name, epoch, holder_host, holder_pid, holder_session, acquired_at, renewed_at,
                                expires_at, released, handover, change_reason)
    SELECT 'scheduler', (extract(epoch FROM clock_timestamp()) * 1000)::bigint, %(host)s::text, %(pid)s::int,
           %(session)s::text, now(), now(), now() + %(ttl)s::float8 * interval '1 second', false, false, 'first'
    FROM clock WHERE clock.in_bound
    ON CONFLICT (name) DO UPDATE SET
        epoch = CASE WHEN {same} THEN l.epoch ELSE greatest(l.epoch + 1, EXCLUDED.epoch) END,
        holder_host = EXCLUDED.holder_host, holder_pid = EXCLUDED.holder_pid,
        holder_session = EXCLUDED.holder_session,
        acquired_at = CASE WHEN {same} THEN l.acquired_at ELSE now() END,
        renewed_at = now(), expires_at = EXCLUDED.expires_at, released = false,
        handover = CASE WHEN {same} THEN l.handover ELSE false END,
        previous_host = CASE WHEN {same} THEN l.previous_host ELSE l.holder_host END,
        previous_pid = CASE WHEN {same} THEN l.previous_pid ELSE l.holder_pid END,
        previous_session = CASE WHEN {same} THEN l.previous_session ELSE l.holder_session END,
        change_reason = CASE WHEN {same} THEN l.change_reason
                             WHEN l.holder_session IS NULL THEN 'first'
                             WHEN l.released THEN 'released'
                             WHEN l.handover THEN 'handover'
                             ELSE 'expired' END
    WHERE {same} OR l.holder_session IS NULL OR l.released OR l.expires_at <= now() OR l.handover
    RETURNING l.epoch, l.acquired_at = now() AS changed, l.change_reason, l.previous_host, l.previous_pid,
              l.previous_session, extract(epoch FROM l.expires_at - clock_timestamp())::float8 AS expires_in
),
logged AS (
    INSERT INTO {s}.leadership_changes (at, epoch, reason, from_host, from_pid, from_session, to_host, to_pid,
                                        to_session)
    SELECT now(), epoch, change_reason, previous_host, previous_pid, previous_session, %(host)s::text,
           %(pid)s::int, %(session)s::text
    FROM taken WHERE changed
),
-- The log keeps its newest %(kept)s changes: this statement's own insert is not visible to it, so keep kept - 1.
trimmed AS (
    DELETE FROM {s}.leadership_changes
    WHERE EXISTS (SELECT 1 FROM taken WHERE changed)
      AND id < (SELECT id FROM {s}.leadership_changes ORDER BY id DESC OFFSET %(kept)s::bigint - 2 LIMIT 1)
),
-- A host refused for its clock leaves a lease row nobody holds if there was none, so that every host reads the
-- database's clock with the lease (and can tell its own skew) even before any host led.
unheld AS (
    INSERT INTO {s}.lease (name, epoch, expires_at)
    SELECT 'scheduler', (extract(epoch FROM clock_timestamp()) * 1000)::bigint, now() FROM clock WHERE NOT clock.in_bound
    ON CONFLICT (name) DO NOTHING
)
SELECT (SELECT epoch FROM taken), (SELECT expires_in FROM taken), clock.now, clock.in_bound FROM clock"""
_SAME = "(l.holder_session = EXCLUDED.holder_session AND NOT l.released)"

_RENEW = """
UPDATE {s}.lease SET renewed_at = now(), expires_at = now() + %(ttl)s::float8 * interval '1 second'
WHERE name = 'scheduler' AND epoch = %(epoch)s::bigint AND holder_session = %(session)s::text AND NOT released
RETURNING epoch, extract(epoch FROM expires_at - clock_timestamp())::float8, extract(epoch FROM clock_timestamp())::float8"""

_RELEASE = """
UPDATE {s}.lease SET released = true, expires_at = least(expires_at, now())
WHERE name = 'scheduler' AND epoch = %(epoch)s::bigint AND holder_session = %(session)s::text AND NOT released"""

_OFFER_HANDOVER = """
UPDATE {s}.lease SET handover = %(offered)s::boolean
WHERE name = 'scheduler' AND epoch = %(epoch)s::bigint AND holder_session = %(session)s::text AND NOT released"""

# One change of leader is one row: the change that took the lease from this session was logged by its taker (as
# "expired" when the lease ran out); the old holder, alive after all (cut off, frozen), marks that row "lost". Only
# if no such row is left (trimmed) is one added, from the lost holder to whoever holds the lease now; once either way.
_RECORD_LOST = """
WITH marked AS (
    UPDATE {s}.leadership_changes SET reason = 'lost', lost_epoch = %(epoch)s::bigint
    WHERE id = (SELECT id FROM {s}.leadership_changes
                WHERE from_session = %(session)s::text AND epoch > %(epoch)s::bigint ORDER BY id LIMIT 1)
      AND reason = 'expired'
      AND NOT EXISTS (SELECT 1 FROM {s}.leadership_changes WHERE lost_epoch = %(epoch)s::bigint AND reason = 'lost')
    RETURNING id
)
INSERT INTO {s}.leadership_changes (at, epoch, reason, from_host, from_pid, from_session, to_host, to_pid, to_session,
                                    lost_epoch)
SELECT now(), l.epoch, 'lost', given.to_host, given.to_pid, %(session)s::text, l.holder_host, l.holder_pid,
       l.holder_session, %(epoch)s::bigint
FROM {s}.lease l
LEFT JOIN LATERAL (SELECT to_host, to_pid FROM {s}.leadership_changes
                   WHERE epoch = %(epoch)s::bigint AND to_session = %(session)s::text AND reason <> 'lost'
                   ORDER BY id DESC LIMIT 1) given ON true
WHERE l.name = 'scheduler' AND l.epoch <> %(epoch)s::bigint
  AND NOT EXISTS (SELECT 1 FROM marked)
  AND NOT EXISTS (SELECT 1 FROM {s}.leadership_changes
                  WHERE from_session = %(session)s::text AND epoch > %(epoch)s::bigint)
ON CONFLICT (lost_epoch) WHERE reason = 'lost' DO NOTHING"""


@dataclasses.dataclass(frozen=True)
class LeaseGrant:
    """What a holder knows of its lease: the epoch (fencing token), its session, the TTL and the time left.

    ``expires_in`` is measured by the database's clock at the acquire or renew;
    a holder adds it to its own monotonic clock, never to its wall clock.
    """

    epoch: int
    session: str
    ttl: float
    expires_in: float
    clock_skew: float = 0.0  # this host's wall clock minus the database's at the statement, seconds


APPLICATION_NAME = "worker-service-lease"  # pg_stat_activity tells the lease's connection from the store's


class PostgresLease:
    """The lease operations of the scheduler side, in the store's schema. Faults: StoreUnavailable.

    Every statement goes through a pool of its own with one connection (the
    store's URL and timeout), so a renewal never waits for a connection the
    store's callers hold. :meth:`current` is a read like any other and uses
    the store.
    """

    def __init__(self, store: PostgresStateStore, ttl: float, changes_kept: int = LEADERSHIP_CHANGES_KEPT,
                 max_skew: float | None = None, wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ttl = ttl
        self.max_skew = max_skew  # None: no bound on this host's clock (tests of the lease alone)
        self._wall = wall
        self.changes_kept = max(2, changes_kept)
        self.pool = StatePool(store.pool.url, store.timeout, min_size=1, max_size=1,
                              application_name=APPLICATION_NAME)
        # The store's schema on that one connection: it is migrated (or made again if dropped) as the store's is.
        self._db = PostgresStateStore(store.pool.url, store.schema, store.history_size, store.timeout,
                                      pool=self.pool)
        schema = quoted(store.schema)
        self._acquire = _ACQUIRE.format(s=schema, same=_SAME)
        self._renew = _RENEW.format(s=schema)
        self._release = _RELEASE.format(s=schema)
        self._offer = _OFFER_HANDOVER.format(s=schema)
        self._lost = _RECORD_LOST.format(s=schema)
        # Every statement runs in a transaction of its own bounded at the server (module docstring): a lease
        # statement never waits long for a lock, and a session cut off inside one never keeps the row locked.
        # Shorter than the client's own deadline (which also counts the checkout): a lock wait ends at the server with
        # its own reason ("waited too long for a row another transaction holds locked") rather than a bare timeout.
        self._bounds = bounds(idle=store.timeout, lock=0.7 * store.timeout, statement=0.7 * store.timeout)

    def _execute(self, statement: str, params: Mapping[str, Any]) -> tuple | None:
        """Run ``statement`` in one bounded transaction, in one round trip (a pipeline); its first row, if any."""
        return self._timed(statement, params)[0]

    def _timed(self, statement: str, params: Mapping[str, Any]) -> tuple[tuple | None, float, float]:
        """:meth:`_execute`, with this host's wall clock just before the statement is sent and just after its answer.

        ``host_now`` in ``params`` is that first reading, taken once the
        connection is checked out (and the schema migrated), so the statement's
        clock check is not thrown off by a slow connect.
        """
        def work(db: psycopg.Connection) -> tuple[tuple | None, float, float]:
            sent = self._wall()
            with db.pipeline(), db.transaction():
                db.execute(BOUNDS_SQL, self._bounds)
                cursor = db.execute(statement, {**params, "host_now": sent})
            row = cursor.fetchone() if cursor.description is not None else None
            return row, sent, self._wall()

        return self._db.run(work)

    def acquire(self, host: str, pid: int, session: str) -> LeaseGrant | None:
        """Take the lease if it is free (never taken, expired, released, or offered), or renew it if ``session`` holds it.

        ``None`` if another session holds it. One statement, which also logs the change.
        """
        params = {"host": host, "pid": pid, "session": session, "ttl": self.ttl, "kept": self.changes_kept,
                  "max_skew": self.max_skew, "delay": self.store.timeout}
        row, sent, answered = self._timed(self._acquire, params)
        epoch, expires_in, db_now, in_bound = row
        skew = clock_skew(sent, answered, db_now)
        if not in_bound:
            if self.max_skew is not None and abs(skew) > self.max_skew:
                raise ClockSkewed(skew, self.max_skew)
            return None  # a slow round trip, not a skewed clock: not taken this time, tried again at the next poll
        return LeaseGrant(int(epoch), session, self.ttl, float(expires_in), skew) if epoch is not None else None


    def renew(self, grant: LeaseGrant) -> LeaseGrant | None:
        """Extend the lease by the TTL; ``None`` if it is no longer this epoch and session (it was lost)."""
        params = {"epoch": grant.epoch, "session": grant.session, "ttl": self.ttl}
        row, sent, answered = self._timed(self._renew, params)
        if row is None:
            return None
        return LeaseGrant(int(row[0]), grant.session, self.ttl, float(row[1]), clock_skew(sent, answered, row[2]))

    def release(self, grant: LeaseGrant) -> None:
        """Give the lease up at once (a graceful stop or reload), if it is still this epoch's."""
        params = {"epoch": grant.epoch, "session": grant.session}
        self._execute(self._release, params)

    def offer_handover(self, grant: LeaseGrant) -> None:
        """Let the next acquire by another session take the lease before it expires; the holder leads until then."""
        self._execute(self._offer, {"epoch": grant.epoch, "session": grant.session, "offered": True})

    def withdraw_handover(self, grant: LeaseGrant) -> None:
        """Take an offer back (the reason for it went away before another host took the lease)."""
        self._execute(self._offer, {"epoch": grant.epoch, "session": grant.session, "offered": False})

    def record_lost(self, grant: LeaseGrant) -> None:
        """Log that ``grant``'s holder found its lease taken (from it to the current holder); once per epoch."""
        params = {"epoch": grant.epoch, "session": grant.session}
        self._execute(self._lost, params)

    def current(self) -> LeaseRecord | None:
        """The lease as the database sees it now, or ``None`` if it was never taken."""
        return self.store.lease()

    def close(self) -> None:
        """Close the lease's connection (tests, shutdown); the next statement opens it again."""
        self.pool.close()
