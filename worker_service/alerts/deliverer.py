"""Send what the outbox holds, each row once per channel, in a thread of its own.

Every scheduler candidate process runs one (any worker, any host: a
leader that hangs or stops does not hold up what is queued), and claims are
exclusive. A deliverer claims a due row (a claim ends by the store's clock,
so the row of a process that died is claimed again by another), sends it
through its channel, and finishes it: ``sent``; ``failed`` for good (a 4xx other than 408/429, or retried for
``ALERT_RETRY_FOR`` seconds); or due again after an exponential backoff with
full jitter. Only this thread ever waits on a receiver: a hung one costs
``ALERT_TIMEOUT`` per try here, never a run, a probe or a command.

Exactly once: a row is claimed by one deliverer at a time and finished once.
A process killed after the receiver accepted a row but before it recorded
that sends it again when the claim ends: receivers dedupe on the payload's
``id`` (at least once in that window, as every outbox is).

A notification the outbox cannot hold (the state store itself failing) is
handed over directly (:meth:`Deliverer.send_direct`) and retried in memory.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import threading
import time
import uuid

from common.helpers.health import redact

from ..state import StoreUnavailable
from ..state.alert_records import Delivery
from .channels import Channel, SendResult

log = logging.getLogger(__name__)
RETRY_FIRST = 1.0  # seconds before the second try; doubles with each try
RETRY_CAP = 300.0  # seconds between tries, at most
POLL = 1.0  # seconds between looks at the outbox when nothing pokes
BATCH = 1  # rows claimed at a time: a claim then only has to outlive one try
CLAIM_MARGIN = 2.0  # seconds a claim outlives the try's own bound (2 x ALERT_TIMEOUT: connect, then answer)
APPRISE_BOUND = 8.0  # Apprise's own default timeouts (connect 4 s, read 4 s) bound its tries, not ALERT_TIMEOUT


def backoff(attempts: int, rng: random.Random = random._inst) -> float:  # type: ignore[attr-defined]
    """Seconds before the next try after ``attempts`` tries: exponential, capped, with full jitter (½ to 1×)."""
    ceiling = min(RETRY_FIRST * 2 ** max(attempts - 1, 0), RETRY_CAP)
    return ceiling * rng.uniform(0.5, 1.0)


class Deliverer:
    """One thread that empties the outbox through ``channels``."""

    def __init__(self, store, channels: list[Channel], retry_for: float, timeout: float) -> None:  # noqa: ANN001
        self._store = store
        self._channels = {channel.id: channel for channel in channels}
        self._retry_for = retry_for
        # A claim outlives its try: only then may another deliverer take the row.
        apprise = any(channel.id.startswith("apprise") for channel in channels)
        self._hold = max(2 * timeout, APPRISE_BOUND if apprise else 0.0) + CLAIM_MARGIN
        self._claimer = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._direct: collections.deque[tuple[float, int, str, str]] = collections.deque()  # (due, tries, channel, payload)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alert-deliverer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop after the try in progress (bounded); what is pending stays for the next leader."""
        self._stop.set()
        self._poke.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def poke(self) -> None:
        """Something was queued: look now."""
        self._poke.set()

    def send_direct(self, payload: str) -> None:
        """Send ``payload`` through every channel without the outbox (it is the store that fails), retried in memory."""
        for channel_id in self._channels:
            self._direct.append((0.0, 0, channel_id, payload))
        self._poke.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poke.wait(POLL)
            self._poke.clear()
            if self._stop.is_set():
                return
            self._send_direct()
            try:
                while self.deliver_due() == BATCH and not self._stop.is_set():
                    pass
            except StoreUnavailable as error:
                log.warning("alerts: cannot read the outbox: %s", error)
            except Exception:  # noqa: BLE001 - the thread must outlive any one fault
                log.exception("alerts: the deliverer failed; it goes on")

    def deliver_due(self) -> int:
        """Claim the due rows, send each, record how it went; how many were claimed."""
        claimed = self._store.claim_deliveries(self._claimer, self._hold, BATCH)
        for delivery in claimed:
            self._deliver(delivery)
        return len(claimed)

    def _deliver(self, delivery: Delivery) -> None:
        channel = self._channels.get(delivery.channel)
        if channel is None:  # configured on another host of the fleet, not here: leave it to a leader that has it
            self._store.finish_delivery(delivery.id, self._claimer, "retry", "channel not configured on this host", 60.0)
            return
        started = time.monotonic()
        result = _safe_send(channel, delivery.payload)
        took = time.monotonic() - started
        if result.accepted:
            self._store.finish_delivery(delivery.id, self._claimer, "sent")
            log.info("alert %s %s sent to %s in %.2f s (try %d)", delivery.key, delivery.status, channel.label, took,
                     delivery.attempts)
            return
        wait = backoff(delivery.attempts)
        if result.permanent or delivery.age + wait > self._retry_for:
            why = result.detail if result.permanent else f"{result.detail}; given up after {delivery.attempts} tries"
            self._store.finish_delivery(delivery.id, self._claimer, "failed", why)
            log.error("alert %s %s to %s failed for good: %s", delivery.key, delivery.status, channel.label, why)
            return
        self._store.finish_delivery(delivery.id, self._claimer, "retry", result.detail, wait)
        log.warning("alert %s %s to %s failed (try %d: %s); next try in %.1f s", delivery.key, delivery.status,
                    channel.label, delivery.attempts, result.detail, wait)

    def _send_direct(self) -> None:
        now = time.monotonic()
        for _ in range(len(self._direct)):
            due, tries, channel_id, payload = self._direct.popleft()
            if due > now:
                self._direct.append((due, tries, channel_id, payload))
                continue
            channel = self._channels[channel_id]
            result = _safe_send(channel, payload)
            if result.accepted:
                log.info("alert (store) sent to %s directly", channel.label)
            elif not result.permanent and tries < 20:
                self._direct.append((now + backoff(tries + 1), tries + 1, channel_id, payload))
            else:
                log.error("alert (store) to %s failed for good: %s", channel.label, result.detail)


def _safe_send(channel: Channel, payload: str) -> SendResult:
    try:
        return channel.send(payload)
    except Exception as error:  # noqa: BLE001 - a channel's bug is a failed try, never a dead deliverer
        return SendResult(False, False, redact(f"{type(error).__name__}: {error}"))
