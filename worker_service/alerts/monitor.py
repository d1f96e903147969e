"""The leader's eye: look at every subject each ``ALERT_INTERVAL``, record each change of alert state once.

Deliveries are not its business: every process has a deliverer
(:class:`~.deliverer.Deliverer`, started by the scheduler's leadership), and
claims are exclusive, so whichever process is free sends a row; the monitor
pokes its own process's deliverer after a change, so that it is usually the one.

At each look (and at once after a run ends: :meth:`AlertMonitor.poke`) the
monitor reads the jobs and the alert states from the store, judges every
subject (:mod:`.rules`) and, for each that changed (firing to resolved or
back), writes the change and its notifications in one write of the leader's
fenced store view (``record_alert``, compared and set on the state's ``seq``).
So a change is recorded once across the fleet: a former leader's write is
refused by the fence, and of two writers of the same change one wins.

Memory the store does not hold: how long a metric rule has been over (or back
under) its threshold (``ALERT_HOLD``), and the state each subject was seen in
last, the ``previous_state`` of the next change. A new leader starts without
it: a rule's hold starts again, and nothing already recorded is sent again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping

from common.helpers.health import HealthEngine, Status, redact

from ..state import StoreUnavailable
from ..state.alert_records import AlertChange, AlertState
from ..state.faults import FencedOut
from ..state.protocol import FleetLedger
from ..state.records import JobRecord, RunRecord
from . import payload as payloads
from .channels import Channel
from .deliverer import Deliverer
from .rules import (
    JobAlerting,
    Judge,
    Observation,
    host_observations,
    job_metric_observations,
    job_observations,
    lease_observation,
    orphaned_job_observations,
    scheduler_observation,
)
from .settings import AlertSettings

log = logging.getLogger(__name__)
MIN_GAP = 0.25  # seconds between two looks, however often runs end: a look reads the job list (as /status does)


class AlertMonitor:
    """Looks at the subjects in a thread of its own while this process leads; pokes this process's deliverer."""

    def __init__(self, settings: AlertSettings, store, channels: list[Channel], judge: Judge,  # noqa: ANN001
                 options: Mapping[str, JobAlerting], host: str, engine: HealthEngine | None = None,
                 deliverer: Deliverer | None = None, ledger: FleetLedger | None = None) -> None:
        self.settings = settings
        self._store = store  # the leader's (fenced) view
        self._ledger = ledger  # the fleet's lease, read from the shared store (None on one host)
        self._channels = [channel.id for channel in channels]
        self._judge = judge
        self._options = dict(options)
        self._host = host
        self._engine = engine
        # This process's deliverer (every process has one: SchedulerLeadership); poked after each change.
        self.deliverer = deliverer or Deliverer(store, channels, settings.retry_for, settings.timeout)
        self._seen: dict[str, str] = {}  # key -> state word seen at the last look
        self._pending: dict[str, float] = {}  # key -> monotonic time a held rule's change was first seen
        self._runs: dict[str, tuple[int, list[RunRecord]]] = {}  # job id -> (runs counted, its last runs)
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store_down_since: float | None = None  # when the store failed, while its resolved is not recorded
        self._store_back_at: float | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alert-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def poke(self, *_: object) -> None:
        """A run ended (an APScheduler listener): look now rather than at the next interval."""
        self._poke.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poke.wait(self.settings.interval)
            if self._stop.wait(MIN_GAP):  # runs ending together make one look
                return
            self._poke.clear()
            try:
                if self.look(time.time()):
                    self.deliverer.poke()
            except FencedOut as error:
                log.info("alerts: not recorded, another host leads now (%s)", error)
            except StoreUnavailable as error:
                log.debug("alerts: the state store cannot be read: %s", error)
            except Exception:  # noqa: BLE001 - the thread must outlive any one fault
                log.exception("alerts: a look failed; the next one comes in %.1f s", self.settings.interval)

    # -- one look ----------------------------------------------------------------------------------------
    def look(self, now: float) -> int:
        """Judge every subject and record each change; how many changes were recorded."""
        records = self._store.jobs()
        states = self._store.alert_states()
        observed = job_observations(self.settings, records, self._options, self._judge, now)
        observed += self._components()
        observed += host_observations(self.settings)
        observed += job_metric_observations(self.settings, records, self._options, self._runs_of)
        observed += orphaned_job_observations(states, records, self._options)
        observed.append(scheduler_observation())
        lease = (lease_observation(self.settings, self._ledger.lease())
                 if self.settings.fleet and self._ledger is not None else None)
        if lease is not None:
            observed.append(lease)
        recorded = self._record_store_back()
        for observation in observed:
            recorded += self._consider(observation, states.get(observation.key), now)
        return recorded

    def _components(self) -> list[Observation]:
        if self._engine is None:
            return []
        observed = []
        for name, result in self._engine.run().items():
            firing = result.status is Status.UNAVAILABLE
            observed.append(Observation(f"component:{name}", "component", name, result.status.value, firing,
                                        result.reason))
        return observed

    def _runs_of(self, record: JobRecord) -> list[RunRecord]:
        """The job's last runs, read again only when it has run since (one read per run, not per look)."""
        counted = record.runs + record.missed_count + record.max_instances_count
        cached = self._runs.get(record.definition.id)
        if cached is None or cached[0] != counted:
            cached = (counted, self._store.runs(record.definition.id, 20))
            self._runs[record.definition.id] = cached
        return cached[1]

    def _consider(self, seen: Observation, current: AlertState | None, now: float) -> int:
        previous = self._seen.get(seen.key, current.state if current is not None else None)
        self._seen[seen.key] = seen.state
        firing_now = current is not None and current.firing
        if seen.firing == firing_now:
            self._pending.pop(seen.key, None)
            if firing_now and self._due_repeat(current, now):
                return self._record(seen, current, previous, now, repeat=True)
            return 0
        if not seen.firing and current is None:
            return 0  # never fired: nothing to resolve
        if not seen.firing and seen.recoveries_seen is not None and seen.recoveries_seen < seen.recoveries_needed:
            return 0  # alert_after_recoveries: not enough good runs yet
        if seen.held and self.settings.hold > 0:
            first = self._pending.setdefault(seen.key, time.monotonic())
            if time.monotonic() - first < self.settings.hold:
                return 0
        self._pending.pop(seen.key, None)
        return self._record(seen, current, previous if previous != seen.state else
                            (current.state if current else None), now)

    def _due_repeat(self, current: AlertState, now: float) -> bool:
        # notified_at is the store's clock (the database's, in a fleet): within SCHEDULER_MAX_CLOCK_SKEW of this
        # host's, which a repeat every ALERT_REPEAT seconds (minutes, in practice) can live with.
        return (self.settings.repeat > 0 and current.notified_at is not None
                and now - current.notified_at >= self.settings.repeat)

    def _record(self, seen: Observation, current: AlertState | None, previous: str | None, now: float,
                repeat: bool = False) -> int:
        since = current.since if repeat and current is not None else now
        event_id = uuid.uuid4().hex
        body = payloads.build(self.settings, key=seen.key, kind=seen.kind, subject=seen.subject, firing=seen.firing,
                              state=seen.state, previous_state=previous, reason=seen.reason, host=self._host, at=now,
                              since=since, repeat=repeat, event_id=event_id)
        change = AlertChange(key=seen.key, kind=seen.kind, subject=seen.subject, state=seen.state, firing=seen.firing,
                             reason=body["reason"], since=since, expected_seq=current.seq if current else 0,
                             event_id=event_id, payload=payloads.encode(body))
        if not self._store.record_alert(change, self._channels):
            return 0  # another writer recorded it first
        log.warning("alert %s %s: %s is %s (%s)", seen.key, body["status"] + (" (repeat)" if repeat else ""),
                    seen.subject, seen.state, body["reason"] or "no reason")
        return 1

    # -- the state store failing: the outbox cannot hold it --------------------------------------------------
    def store_failed(self, reason: str) -> None:
        """The leader's store writes fail: notify at once, around the outbox (retried in memory)."""
        if self._store_down_since is not None and self._store_back_at is None:
            return  # told already
        now = self._store_down_since = time.time()
        self._store_back_at = None
        body = payloads.build(self.settings, key="store", kind="store", subject="state store", firing=True,
                              state="unavailable", previous_state="available", reason=redact(reason),
                              host=self._host, at=now, since=now)
        self.deliverer.send_direct(payloads.encode(body))

    def store_recovered(self) -> None:
        """The store records again: the next look records the resolved notification (through the outbox, once)."""
        if self._store_down_since is not None:
            self._store_back_at = time.time()
            self._poke.set()

    def _record_store_back(self) -> int:
        """Record the store's resolved alert; kept for the next look until the store takes it."""
        since, back = self._store_down_since, self._store_back_at
        if since is None or back is None:
            return 0
        seen = Observation("store", "store", "state store", "available", False,
                           f"the state store records again after {back - since:.0f} s")
        recorded = self._record(seen, self._store.alert_states().get("store"), "unavailable", back)
        self._store_down_since = self._store_back_at = None
        return recorded


def judge_with(policy_judge: Callable[[JobRecord, float, int, float], object], overdue_grace: float) -> Judge:
    """Adapt :func:`worker_service.scheduler.job_health.judge` (a layer above) to the rules' :data:`Judge`."""

    def judge(record: JobRecord, now: float, threshold: int) -> tuple[str, str | None]:
        verdict = policy_judge(record, now, threshold, overdue_grace)
        return str(verdict.state.value if hasattr(verdict.state, "value") else verdict.state), verdict.reason  # type: ignore[attr-defined]

    return judge
