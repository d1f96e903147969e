"""The alert records the state store keeps: each subject's alert state, and the outbox of notifications.

An alert's change of state and its notifications are written together, in one
write of the leader (:meth:`~.protocol.StateStore.record_alert`): the state row
is compared and set on its ``seq``, so whichever leader or worker writes a
change first is the one that queues it, and the outbox holds one row per
channel. A deliverer claims rows (``claim_deliveries``: a claim is a lease on
the row, by the store's clock), sends them and finishes each once
(``finish_delivery``). Times are epoch seconds (UTC).
"""

from __future__ import annotations

import dataclasses

OUTBOX_KEPT = 500  # finished deliveries kept (pending ones always)


@dataclasses.dataclass(frozen=True)
class AlertState:
    """Where one subject's alert stands: what was last notified for it."""

    key: str  # "job:<id>", "component:<name>", "metric:<rule>[:<job id>]", "store", "scheduler"
    kind: str
    subject: str
    state: str
    firing: bool
    reason: str | None
    since: float
    seq: int  # grows at each change: the compare-and-set of record_alert
    notified_at: float | None = None  # when the last notification (or repeat) was queued, by the store's clock


@dataclasses.dataclass(frozen=True)
class AlertChange:
    """A change of one subject's alert state, and the payload its notifications carry (JSON text)."""

    key: str
    kind: str
    subject: str
    state: str
    firing: bool
    reason: str | None
    since: float
    expected_seq: int  # the seq read before: the change is written only if it still holds
    event_id: str
    payload: str


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One notification for one channel: pending, sent or failed."""

    id: int
    event_id: str
    key: str
    status: str  # firing | resolved
    channel: str
    payload: str
    created_at: float
    attempts: int
    outcome: str  # pending | sent | failed
    last_error: str | None
    finished_at: float | None
    age: float = 0.0  # seconds since created_at, by the store's clock, when it was read


@dataclasses.dataclass(frozen=True)
class AlertSummary:
    """What /status and /metrics show of the outbox."""

    pending: int
    oldest_pending_age: float | None
    last_failure: Delivery | None
    counts: dict[tuple[str, str], int]  # (channel, outcome) -> notifications ended so
