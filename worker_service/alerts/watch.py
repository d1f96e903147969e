"""Who tells that no scheduler runs: every process that does not lead watches the leader's heartbeat.

The leader's monitor cannot report its own absence. So every other scheduler
candidate (each worker of a host; in a fleet, each host's) looks at the
heartbeat (and, in a fleet, the lease) every ``ALERT_INTERVAL``; once no live
scheduler has been seen for ``3 x SCHEDULER_HEARTBEAT_INTERVAL``, it records
the ``scheduler`` alert as firing. Many watchers may see it at once: the
change is compared and set on the subject's ``seq`` (``record_alert``), so one
of them records it and the others write nothing. The write is not fenced: a
watcher leads nothing. Whichever process leads next resolves it (its
monitor sees the scheduler running: itself), through the outbox as always.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from ..state import StoreUnavailable
from ..state.alert_records import AlertChange
from ..state.records import HEARTBEATS_BEFORE_STALE
from . import payload as payloads
from .settings import AlertSettings

log = logging.getLogger(__name__)
KEY = "scheduler"


class SchedulerWatch:
    """A thread that records the ``scheduler`` alert when no scheduler has beaten for a while; idle while leading."""

    def __init__(self, settings: AlertSettings, store, channels: list[str], heartbeat_interval: float,  # noqa: ANN001
                 fleet: bool, leading: Callable[[], bool], host: str) -> None:
        self._settings = settings
        self._store = store
        self._channels = channels
        self._stale_after = HEARTBEATS_BEFORE_STALE * heartbeat_interval
        self._fleet = fleet
        self._leading = leading
        self._host = host
        self._missing_since: float | None = None  # monotonic: when no live scheduler was first seen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alert-scheduler-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        # Two reads per look, in every process that does not lead: half a heartbeat apart is soon enough for a
        # verdict that takes three heartbeats.
        period = max(self._settings.interval, self._stale_after / HEARTBEATS_BEFORE_STALE / 2)
        while not self._stop.wait(period):
            try:
                self.look()
            except StoreUnavailable:
                self._missing_since = None  # the store's own alert (and the leader's) covers it
            except Exception:  # noqa: BLE001 - the thread must outlive any one fault
                log.exception("alerts: the scheduler watch failed; it goes on")

    def look(self) -> bool:
        """Record the alert if no scheduler has been seen for long enough; whether this look recorded it."""
        if self._leading():
            self._missing_since = None
            return False
        reason = self._absence()
        if reason is None:
            self._missing_since = None
            return False
        first = self._missing_since = self._missing_since or time.monotonic()
        if time.monotonic() - first < self._stale_after:
            return False
        current = self._store.alert_states().get(KEY)
        if current is not None and current.firing:
            return False
        now = time.time()
        event_id = uuid.uuid4().hex
        body = payloads.build(self._settings, key=KEY, kind="scheduler", subject="scheduler", firing=True,
                              state="unavailable", previous_state=current.state if current else "available",
                              reason=reason, host=self._host, at=now, since=now, event_id=event_id)
        change = AlertChange(key=KEY, kind="scheduler", subject="scheduler", state="unavailable", firing=True,
                             reason=body["reason"], since=now, expected_seq=current.seq if current else 0,
                             event_id=event_id, payload=payloads.encode(body))
        recorded = self._store.record_alert(change, self._channels)
        if recorded:
            log.warning("alert scheduler firing: %s", reason)
        return recorded

    def _absence(self) -> str | None:
        """Why no scheduler runs now, or ``None`` if one does."""
        if self._fleet:
            lease = self._store.lease()
            if lease is None or not lease.live:
                return "no host of the fleet holds the scheduler lease"
        beat = self._store.scheduler()
        if beat is None or not beat.has_beaten:
            return "no scheduler runs (it stopped, or never started: see the log, `worker-service check-config`)"
        if not self._fleet and time.time() - beat.heartbeat_at > self._stale_after:
            return f"the scheduler's last heartbeat is {time.time() - beat.heartbeat_at:.0f} s old (pid {beat.pid})"
        return None
