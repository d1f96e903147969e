"""The alert state and outbox in the PostgreSQL store (see :mod:`.alert_records`); mixed into ``PostgresStateStore``.

``record_alert`` is one fenced statement, like every leader's write
(:mod:`.pg_statements`): the epoch check, the compare-and-set of the
subject's state on its ``seq`` (``ON CONFLICT ... WHERE seq = expected``, so
two writers of the same change cannot both win) and the outbox rows, together.
A deliverer on any host claims rows with ``FOR UPDATE SKIP LOCKED`` and a
claim that ends by the database's clock, so a claim of a dead process is
taken again and a live one is never shared. Claims and finishes are not
fenced: a leader cut off after it sent a notification must still record that
it did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .alert_records import OUTBOX_KEPT, AlertChange, AlertState, AlertSummary, Delivery

_NOW = "extract(epoch FROM clock_timestamp())::float8"
_DELIVERY = ("id, event_id, key, status, channel, payload, created_at, attempts, outcome, last_error, finished_at, "
             f"greatest({_NOW} - created_at, 0)")

WRITES = {
    "record_alert": f"""
WITH {{fence}},
st AS (INSERT INTO {{s}}.alert_states AS a (key, kind, subject, state, firing, reason, since, seq, notified_at)
       SELECT %(key)s::text, %(kind)s::text, %(subject)s::text, %(state)s::text, %(firing)s::boolean,
              %(reason)s::text, %(since)s::float8, %(expected)s::bigint + 1,
              CASE WHEN cardinality(%(channels)s::text[]) > 0 THEN {_NOW} END
       WHERE EXISTS (SELECT 1 FROM fence)
         AND (%(expected)s::bigint = 0 OR EXISTS (SELECT 1 FROM {{s}}.alert_states WHERE key = %(key)s::text))
       ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, subject = excluded.subject, state = excluded.state,
              firing = excluded.firing, reason = excluded.reason, since = excluded.since, seq = excluded.seq,
              notified_at = excluded.notified_at
       WHERE a.seq = %(expected)s::bigint
       RETURNING seq),
queued AS (INSERT INTO {{s}}.alert_outbox (event_id, key, status, channel, payload, created_at, next_attempt_at)
           SELECT %(event_id)s::text, %(key)s::text, %(status)s::text, c, %(payload)s::text, {_NOW}, {_NOW}
           FROM unnest(%(channels)s::text[]) c WHERE EXISTS (SELECT 1 FROM st)
           RETURNING id),
trimmed AS (DELETE FROM {{s}}.alert_outbox WHERE outcome <> 'pending' AND EXISTS (SELECT 1 FROM queued)
            AND id <= coalesce((SELECT id FROM {{s}}.alert_outbox WHERE outcome <> 'pending'
                                ORDER BY id DESC OFFSET {OUTBOX_KEPT} LIMIT 1), -1))
SELECT EXISTS (SELECT 1 FROM fence), EXISTS (SELECT 1 FROM st)""",
}

READS = {
    "alert_states": "SELECT key, kind, subject, state, firing, reason, since, seq, notified_at FROM {s}.alert_states",
    # Not fenced: any deliverer claims; SKIP LOCKED keeps two claimers off one row, claimed_until a dead one's claim.
    "claim_deliveries": f"""
UPDATE {{s}}.alert_outbox o SET claimed_by = %(claimer)s::text, claimed_until = {_NOW} + %(hold)s::float8,
       attempts = o.attempts + 1
WHERE o.id IN (SELECT id FROM {{s}}.alert_outbox WHERE outcome = 'pending' AND next_attempt_at <= {_NOW}
               AND (claimed_until IS NULL OR claimed_until < {_NOW}) ORDER BY id LIMIT %(limit)s::bigint
               FOR UPDATE SKIP LOCKED)
RETURNING {_DELIVERY}""",
    "finish_delivery": f"""
WITH done AS (UPDATE {{s}}.alert_outbox SET
                  outcome = CASE WHEN %(outcome)s::text = 'retry' THEN 'pending' ELSE %(outcome)s::text END,
                  last_error = coalesce(%(error)s::text, last_error),
                  next_attempt_at = CASE WHEN %(outcome)s::text = 'retry' THEN {_NOW} + %(retry_in)s::float8
                                         ELSE next_attempt_at END,
                  finished_at = CASE WHEN %(outcome)s::text = 'retry' THEN NULL ELSE {_NOW} END,
                  claimed_by = CASE WHEN %(outcome)s::text = 'retry' THEN NULL ELSE claimed_by END,
                  claimed_until = NULL
              WHERE id = %(id)s::bigint AND claimed_by = %(claimer)s::text AND outcome = 'pending'
              RETURNING channel),
counted AS (INSERT INTO {{s}}.alert_counts (channel, outcome, count)
            SELECT channel, %(outcome)s::text, 1 FROM done WHERE %(outcome)s::text <> 'retry'
            ON CONFLICT (channel, outcome) DO UPDATE SET count = {{s}}.alert_counts.count + 1)
SELECT EXISTS (SELECT 1 FROM done)""",
    "deliveries": f"SELECT {_DELIVERY} FROM {{s}}.alert_outbox ORDER BY id DESC LIMIT %(limit)s::bigint",
    "alert_pending": f"SELECT count(*), {_NOW} - min(created_at) FROM {{s}}.alert_outbox WHERE outcome = 'pending'",
    "alert_last_failure": f"SELECT {_DELIVERY} FROM {{s}}.alert_outbox WHERE last_error IS NOT NULL"
                          " ORDER BY id DESC LIMIT 1",
    "alert_counts": "SELECT channel, outcome, count FROM {s}.alert_counts",
}


def _delivery(row: tuple) -> Delivery:
    return Delivery(*row[:-1], age=float(row[-1]))


class PostgresAlerts:
    """The alert methods of the state store protocol, on the store's statements."""

    # The store's own statement runners (PostgresStateStore): a write with its fence, and reads.
    _write: Callable[..., tuple]
    _one: Callable[..., tuple | None]
    _all: Callable[..., list[tuple]]

    def alert_states(self) -> dict[str, AlertState]:
        """Every subject's alert state, by key."""
        return {row[0]: AlertState(*row) for row in self._all("alert_states")}

    def record_alert(self, change: AlertChange, channels: Sequence[str]) -> bool:
        """Set the subject's state if its ``seq`` is still ``expected_seq``, and queue one row per channel (fenced)."""
        row = self._write("record_alert", key=change.key, kind=change.kind, subject=change.subject,
                          state=change.state, firing=change.firing, reason=change.reason, since=change.since,
                          expected=change.expected_seq, event_id=change.event_id, payload=change.payload,
                          status="firing" if change.firing else "resolved", channels=list(channels))
        return bool(row[1])

    def claim_deliveries(self, claimer: str, hold: float, limit: int = 10) -> list[Delivery]:
        """Claim up to ``limit`` due pending rows for ``hold`` s (the database's clock), oldest first."""
        return sorted((_delivery(row) for row in self._all("claim_deliveries", claimer=claimer, hold=hold,
                                                             limit=limit)), key=lambda d: d.id)

    def finish_delivery(self, delivery_id: int, claimer: str, outcome: str, error: str | None = None,
                        retry_in: float | None = None) -> bool:
        """End a claimed try: ``sent``, ``failed`` or ``retry`` (due again in ``retry_in`` s); whether it held the claim."""
        row = self._one("finish_delivery", id=delivery_id, claimer=claimer, outcome=outcome, error=error,
                        retry_in=retry_in or 0.0)
        return bool(row and row[0])

    def deliveries(self, limit: int = 20) -> list[Delivery]:
        """The newest notifications, newest first."""
        return [_delivery(row) for row in self._all("deliveries", limit=limit)]

    def alert_summary(self) -> AlertSummary:
        """Pending notifications, the oldest one's age, the last failure, and the counts."""
        count, oldest = self._one("alert_pending") or (0, None)
        failure = self._one("alert_last_failure")
        counts = {(channel, outcome): int(n) for channel, outcome, n in self._all("alert_counts")}
        return AlertSummary(pending=int(count), oldest_pending_age=None if oldest is None else max(float(oldest), 0.0),
                            last_failure=None if failure is None else _delivery(failure), counts=counts)
