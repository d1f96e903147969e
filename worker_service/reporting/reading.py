"""One reading of the service for /status and /metrics: the store's rows, the health report, the scheduler's verdict.

Also the alerts' outbox, read once for both, and who runs what (:mod:`.work_view`).

Both reporters take a :class:`Reading` and only render it, so they cannot
tell different stories of one moment, and neither calls back into a lower
layer while it renders. The scheduler component in it is judged from the
snapshot's rows by the rule /health uses (:mod:`worker_service.health.scheduler_verdict`);
cache and database come from the health engine's cache.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from common.helpers.health import CheckError, CheckResult, HealthEngine, ServiceDegraded, Status, redact, utc_now

from ..config import EXECUTOR_THREADS_DEFAULT
from ..health.report import HealthReport, build_health_report
from ..health.scheduler_check import SchedulerCheck
from ..health.scheduler_observer import SchedulerObserver
from ..health.scheduler_verdict import SchedulerRules, decided_by_leader, scheduler_verdict
from ..scheduler.job_health import JobPolicy
from ..state import StateReader
from .alerts_view import RECENT, AlertsRead, channels, read_alerts
from .fleet_view import FleetView, view_fleet
from .scheduler_view import SchedulerView, view_scheduler
from .snapshot import StoreSnapshot, take_snapshot
from .work_view import WorkView, view_work

if TYPE_CHECKING:
    from flask import Flask


@dataclasses.dataclass(frozen=True)
class Reading:
    """What /status and /metrics report: the rows read, the components judged with them, the scheduler and fleet."""

    snapshot: StoreSnapshot
    health: HealthReport
    scheduler: SchedulerView | None  # None when the store could not be read
    fleet: FleetView
    alerts: AlertsRead
    work: WorkView  # the hosts and the runs in flight


class Reader:
    """Takes readings of one app's store and health engine (one per app, shared by /status and /metrics)."""

    def __init__(self, store: StateReader, engine: HealthEngine, settings: Mapping[str, Any],
                 policy: JobPolicy | None = None) -> None:
        self._store = store
        self._engine = engine
        self._critical: list[str] = settings["HEALTH_CRITICAL_COMPONENTS"]
        self.policy = policy or JobPolicy.from_settings(settings)
        self._channels = channels(settings)  # the alert channels, masked
        self._threads = int(settings.get("JOB_EXECUTOR_THREADS") or EXECUTOR_THREADS_DEFAULT)  # one host's threads
        self._observer = SchedulerObserver(SchedulerRules.from_settings(settings, self.policy),
                                           settings.get("WORKER_STATE_DIR") or "")

    @property
    def fleet(self) -> bool:
        """Whether the store is the fleet's (``STATE_DATABASE_URL``)."""
        return self._observer.rules.fleet

    def snapshot(self, changes: int = 0) -> StoreSnapshot:
        """The store's rows alone, every job judged at one ``now`` (the status page's job pages)."""
        return take_snapshot(self._store, self.policy, fleet=self.fleet, changes=changes)

    def take(self, changes: int = 0, snapshot: StoreSnapshot | None = None, deliveries: int = RECENT) -> Reading:
        """A reading around ``snapshot`` (by default a new one, with the last ``changes`` changes of leader).

        ``deliveries``: the recent alert deliveries to read (0 for none: /metrics shows none).
        """
        snapshot = snapshot or self.snapshot(changes)
        health = build_health_report(self._engine, self._critical, judged={"scheduler": self._scheduler(snapshot)})
        view = None
        if snapshot.error is None:
            view = view_scheduler(snapshot.leader, self._observer.rules.heartbeat_interval, snapshot.beat_now)
        return Reading(snapshot=snapshot, health=health, scheduler=view, fleet=view_fleet(snapshot, view),
                       alerts=read_alerts(self._store, self._channels, deliveries),
                       work=view_work(snapshot, view, self._threads))

    def _scheduler(self, snapshot: StoreSnapshot) -> CheckResult:
        """The scheduler component, judged from ``snapshot``'s rows (unreachable when they could not be read)."""
        if snapshot.error is not None:
            return _result(self._observer.unreachable(snapshot.error), None)
        leading = self._observer.leader_facts(snapshot.leader, snapshot.lease, snapshot.now, snapshot.lease_answered)
        if snapshot.quarantine_error is not None and not decided_by_leader(leading, self._observer.rules):
            return _result(self._observer.unreachable(snapshot.quarantine_error), None)
        facts = self._observer.facts(leading, snapshot.critical, snapshot.quarantined)
        return _result(scheduler_verdict(facts, self._observer.rules), snapshot.took)


def reader_for(app: Flask) -> Reader:
    """The app's one :class:`Reader`, made on first use from its store, health engine and settings."""
    reader = app.extensions.get("reader")
    if reader is None:
        reader = app.extensions["reader"] = Reader(app.extensions["store"], app.extensions["health"], app.config)
    return reader


def take_reading(app: Flask, changes: int = 0) -> Reading:
    """A new reading of ``app``'s store and components (with the last ``changes`` changes of leader)."""
    return reader_for(app).take(changes)


def _result(verdict: CheckError | None, latency: float | None) -> CheckResult:
    """The component's result for ``verdict`` (``None``: available); ``latency``: how long its reads took."""
    status, reason = Status.AVAILABLE, None
    if verdict is not None:
        status = Status.DEGRADED if isinstance(verdict, ServiceDegraded) else Status.UNAVAILABLE
        reason = redact(verdict.reason)[:300]
    return CheckResult(component="scheduler", status=status, backend=SchedulerCheck.backend, latency=latency,
                       checked_at=utc_now(), reason=reason)
