"""The alert state and outbox in the SQLite store (see :mod:`.alert_records`); mixed into ``SqliteStateStore``.

One host: the leader writes a change and its outbox rows in one transaction;
the deliverer (in the leader too) claims and finishes rows in transactions of
their own. Times come from this host's clock, the only one there is.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .alert_records import OUTBOX_KEPT, AlertChange, AlertState, AlertSummary, Delivery

if TYPE_CHECKING:
    from .sqlite_file import SqliteFile, WriteTransaction

_DELIVERY = ("id, event_id, key, status, channel, payload, created_at, attempts, outcome, last_error, finished_at")


def _delivery(row: tuple, now: float) -> Delivery:
    return Delivery(*row, age=max(now - row[6], 0.0))


class SqliteAlerts:
    """The alert methods of the state store protocol, on the store's file."""

    file: SqliteFile
    _connection: Callable[[], WriteTransaction]  # the store's write transaction

    def alert_states(self) -> dict[str, AlertState]:
        """Every subject's alert state, by key."""
        rows = self.file.read(lambda db: db.execute(
            "SELECT key, kind, subject, state, firing, reason, since, seq, notified_at FROM alert_states").fetchall())
        return {row[0]: AlertState(*row[:4], bool(row[4]), *row[5:]) for row in rows}

    def record_alert(self, change: AlertChange, channels: Sequence[str]) -> bool:
        """Set the subject's state if its ``seq`` is still ``expected_seq``, and queue one row per channel; whether it did."""
        now = time.time()
        with self._connection() as db:
            row = db.execute("SELECT seq FROM alert_states WHERE key = ?", (change.key,)).fetchone()
            if (row[0] if row else 0) != change.expected_seq:
                return False
            db.execute(
                "INSERT INTO alert_states (key, kind, subject, state, firing, reason, since, seq, notified_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET kind = excluded.kind,"
                " subject = excluded.subject, state = excluded.state, firing = excluded.firing,"
                " reason = excluded.reason, since = excluded.since, seq = excluded.seq,"
                " notified_at = excluded.notified_at",
                (change.key, change.kind, change.subject, change.state, int(change.firing), change.reason,
                 change.since, change.expected_seq + 1, now if channels else None))
            status = "firing" if change.firing else "resolved"
            db.executemany(
                "INSERT INTO alert_outbox (event_id, key, status, channel, payload, created_at, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(change.event_id, change.key, status, channel, change.payload, now, now) for channel in channels])
            if channels:
                db.execute("DELETE FROM alert_outbox WHERE outcome <> 'pending' AND id <= coalesce((SELECT id FROM"
                           " alert_outbox WHERE outcome <> 'pending' ORDER BY id DESC LIMIT 1 OFFSET ?), -1)",
                           (OUTBOX_KEPT,))
        return True

    def claim_deliveries(self, claimer: str, hold: float, limit: int = 10) -> list[Delivery]:
        """Claim up to ``limit`` pending rows that are due and not claimed by another live claim, for ``hold`` s."""
        now = time.time()
        # Every worker's deliverer polls: a read (no lock) first, the write transaction only when a row is due.
        if not self.file.read(lambda db: db.execute(
                "SELECT 1 FROM alert_outbox WHERE outcome = 'pending' AND next_attempt_at <= ?"
                " AND (claimed_until IS NULL OR claimed_until < ?) LIMIT 1", (now, now)).fetchone()):
            return []
        with self._connection() as db:
            rows = db.execute(
                f"SELECT {_DELIVERY} FROM alert_outbox WHERE outcome = 'pending' AND next_attempt_at <= ?"
                " AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY id LIMIT ?", (now, now, limit)).fetchall()
            db.executemany("UPDATE alert_outbox SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1"
                           " WHERE id = ?", [(claimer, now + hold, row[0]) for row in rows])
        return [dataclasses.replace(_delivery(row, now), attempts=row[7] + 1) for row in rows]

    def finish_delivery(self, delivery_id: int, claimer: str, outcome: str, error: str | None = None,
                        retry_in: float | None = None) -> bool:
        """End a claimed try: ``sent``, ``failed`` (for good) or ``retry`` (due again in ``retry_in`` s); whether it held the claim."""
        now = time.time()
        with self._connection() as db:
            row = db.execute("SELECT channel FROM alert_outbox WHERE id = ? AND claimed_by = ? AND outcome = 'pending'",
                             (delivery_id, claimer)).fetchone()
            if row is None:
                return False
            if outcome == "retry":
                db.execute("UPDATE alert_outbox SET claimed_by = NULL, claimed_until = NULL, last_error = ?,"
                           " next_attempt_at = ? WHERE id = ?", (error, now + (retry_in or 0.0), delivery_id))
                return True
            db.execute("UPDATE alert_outbox SET outcome = ?, last_error = coalesce(?, last_error), finished_at = ?,"
                       " claimed_until = NULL WHERE id = ?", (outcome, error, now, delivery_id))
            db.execute("INSERT INTO alert_counts (channel, outcome, count) VALUES (?, ?, 1) ON CONFLICT (channel, outcome)"
                       " DO UPDATE SET count = count + 1", (row[0], outcome))
        return True

    def deliveries(self, limit: int = 20) -> list[Delivery]:
        """The newest notifications, pending or not, newest first."""
        now = time.time()
        rows = self.file.read(lambda db: db.execute(
            f"SELECT {_DELIVERY} FROM alert_outbox ORDER BY id DESC LIMIT ?", (limit,)).fetchall())
        return [_delivery(row, now) for row in rows]

    def alert_summary(self) -> AlertSummary:
        """Pending notifications, the oldest one's age, the last failure (a try or for good), and the counts."""
        now = time.time()

        def read(db):  # noqa: ANN001, ANN202 - one read transaction for the three queries
            pending = db.execute("SELECT count(*), min(created_at) FROM alert_outbox WHERE outcome = 'pending'").fetchone()
            failure = db.execute(f"SELECT {_DELIVERY} FROM alert_outbox WHERE last_error IS NOT NULL"
                                 " ORDER BY id DESC LIMIT 1").fetchone()
            counts = db.execute("SELECT channel, outcome, count FROM alert_counts").fetchall()
            return pending, failure, counts

        (count, oldest), failure, counts = self.file.read(read)
        return AlertSummary(pending=int(count), oldest_pending_age=None if oldest is None else max(now - oldest, 0.0),
                            last_failure=None if failure is None else _delivery(failure, now),
                            counts={(channel, outcome): int(n) for channel, outcome, n in counts})

