"""The scheduler component of /health, read from the shared store so every worker agrees.

The heartbeat's age is measured across wall-clock jumps by
:mod:`.heartbeat`; each job is judged by the one :class:`~.job_health.JobPolicy`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from common.helpers.health import ComponentCheck, ServiceDegraded, ServiceUnavailable

from ..state import StateReader, StoreUnavailable
from .heartbeat import SIGHTINGS, HeartbeatSightings, heartbeat_age, heartbeat_is_fresh
from .job_health import JobPolicy, JobState

# The heartbeat's names stay importable from here, where they lived before .heartbeat.
__all__ = ["REPLANNING", "HeartbeatSightings", "SchedulerCheck", "heartbeat_age", "heartbeat_is_fresh"]

REPLANNING = "replanning"  # the leader's heartbeat state while it re-plans its jobs after a clock jump


class SchedulerCheck(ComponentCheck):
    """Available when a scheduler beats on this host, no critical job is unhealthy and no job is quarantined.

    * unavailable: no heartbeat within ``3 × SCHEDULER_HEARTBEAT_INTERVAL``;
    * degraded: the wall clock jumped and the jobs are not re-planned yet, the
      scheduler is paused, or a critical job is unhealthy (consecutive
      failures over the threshold, or overdue past its grace).
    """

    backend = "apscheduler"

    def __init__(self, store: StateReader, settings: Mapping[str, Any], sightings: HeartbeatSightings | None = None,
                 wall: Callable[[], float] | None = None, policy: JobPolicy | None = None) -> None:
        self._store = store
        self._heartbeat_interval: float = settings["SCHEDULER_HEARTBEAT_INTERVAL"]
        self._policy = policy or JobPolicy.from_settings(settings)
        self._sightings = sightings or SIGHTINGS
        self._wall = wall or (lambda: time.time())

    def check(self) -> None:
        try:
            self._check()
        except StoreUnavailable as error:  # the store's reason says it all; no class name in front
            raise ServiceUnavailable(error.reason) from None

    def _check(self) -> None:
        now = self._wall()
        leader = self._store.scheduler()
        if leader is None:
            raise ServiceUnavailable("no scheduler has run on this host")
        if not heartbeat_is_fresh(leader, self._heartbeat_interval, now, self._sightings):
            if leader.state == "stopped":
                raise ServiceUnavailable(f"the scheduler stopped (last leader pid {leader.pid})")
            age = heartbeat_age(leader, now, self._sightings)
            raise ServiceUnavailable(f"no scheduler heartbeat for {age:.0f} s (last leader pid {leader.pid})")
        if leader.state == REPLANNING:
            raise ServiceDegraded("the wall clock jumped; re-planning jobs")
        jump = self._sightings.sight(leader, now).clock_jump
        if jump is not None:
            raise ServiceDegraded(f"wall clock jumped by about {jump:+.0f} s since the last heartbeat; re-planning jobs")
        if leader.state == "paused":
            raise ServiceDegraded("scheduler is paused")
        failing = []
        for record in self._store.jobs(critical_only=True):
            health = self._policy.judge(record, now)
            if health.state is JobState.UNHEALTHY:
                failing.append(f"{record.id}: {health.reason}")
        if failing:
            raise ServiceDegraded("critical job unhealthy: " + "; ".join(failing[:3]))
        # Any job, critical or not, that kept killing its worker is a fault of the service itself.
        quarantined = self._store.quarantined_jobs()
        if quarantined:
            raise ServiceDegraded("job quarantined for killing its worker: " + ", ".join(quarantined[:3]))
