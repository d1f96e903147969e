"""The scheduler component of /health, read from the shared store so every worker agrees."""

from __future__ import annotations

import time
from typing import Any

from common.helpers.health import ComponentCheck, ServiceDegraded, ServiceUnavailable

from .job_health import JobState, judge

HEARTBEATS_BEFORE_STALE = 3


def heartbeat_age(leader: Any, now: float) -> float:
    """Seconds since the leader's last heartbeat (it is 0 once the leader marked itself stopped)."""
    return max(now - leader.heartbeat_at, 0.0)


def heartbeat_is_fresh(leader: Any, heartbeat_interval: float, now: float) -> bool:
    """Whether a scheduler beats on this host: a heartbeat within 3 intervals, and not marked stopped."""
    return (leader.state != "stopped" and leader.heartbeat_at > 0
            and heartbeat_age(leader, now) <= HEARTBEATS_BEFORE_STALE * heartbeat_interval)


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
        if leader is None:
            raise ServiceUnavailable("no scheduler has run on this host")
        if not heartbeat_is_fresh(leader, self._settings["SCHEDULER_HEARTBEAT_INTERVAL"], now):
            if leader.state == "stopped":
                raise ServiceUnavailable(f"the scheduler stopped (last leader pid {leader.pid})")
            raise ServiceUnavailable(
                f"no scheduler heartbeat for {heartbeat_age(leader, now):.0f} s (last leader pid {leader.pid})")
        if leader.state == "paused":
            raise ServiceDegraded("scheduler is paused")
        failing = []
        for record in self._store.jobs(critical_only=True):
            health = judge(record, now, self._settings["JOB_FAILURE_THRESHOLD"], self._settings["JOB_OVERDUE_GRACE"])
            if health.state is JobState.UNHEALTHY:
                failing.append(f"{record.id}: {health.reason}")
        if failing:
            raise ServiceDegraded("critical job unhealthy: " + "; ".join(failing[:3]))
