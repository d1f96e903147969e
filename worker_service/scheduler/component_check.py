"""The scheduler component of /health, read from the shared store so every worker agrees."""

from __future__ import annotations

import time
from typing import Any

from common.helpers.health import ComponentCheck, ServiceDegraded, ServiceUnavailable

from .job_health import JobState, judge

HEARTBEATS_BEFORE_STALE = 3


class SchedulerCheck(ComponentCheck):
    """Available when a scheduler beats on this host and no critical job is unhealthy.

    * unavailable: no heartbeat within ``3 × SCHEDULER_HEARTBEAT_INTERVAL``;
    * degraded: the scheduler is paused, or a critical job is unhealthy
      (consecutive failures over the threshold, or overdue past its grace).
    """

    backend = "apscheduler"

    def __init__(self, store: Any, settings: dict[str, Any]) -> None:
        self._store = store
        self._settings = settings

    def check(self) -> None:
        now = time.time()
        leader = self._store.scheduler()
        stale_after = HEARTBEATS_BEFORE_STALE * self._settings["SCHEDULER_HEARTBEAT_INTERVAL"]
        if leader is None:
            raise ServiceUnavailable("no scheduler has run on this host")
        age = now - leader.heartbeat_at
        if leader.state == "stopped" or age > stale_after:
            raise ServiceUnavailable(f"no scheduler heartbeat for {age:.0f} s (last leader pid {leader.pid})")
        if leader.state == "paused":
            raise ServiceDegraded("scheduler is paused")
        failing = []
        for record in self._store.jobs(critical_only=True):
            health = judge(record, now, self._settings["JOB_FAILURE_THRESHOLD"], self._settings["JOB_OVERDUE_GRACE"])
            if health.state is JobState.UNHEALTHY:
                failing.append(f"{record.id}: {health.reason}")
        if failing:
            raise ServiceDegraded("critical job unhealthy: " + "; ".join(failing[:3]))
