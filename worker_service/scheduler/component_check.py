"""The scheduler component of /health, read from the shared store so every worker agrees.

The heartbeat carries the leader's wall-clock time. A wall-clock jump must
not make it look fresh for ever (a heartbeat an hour in the future after a
backward jump) nor stale (an hour old after a forward jump, while the leader
beats fine). So its age is the wall-clock age until the wall clock disagrees
with this process's monotonic clock by more than the jump threshold since it
first saw that heartbeat; from then on it is measured on the monotonic clock.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from common.helpers.health import ComponentCheck, ServiceDegraded, ServiceUnavailable

from ..state import StoreUnavailable
from .clock_watch import JUMP_THRESHOLD
from .job_health import JobState, judge

HEARTBEATS_BEFORE_STALE = 3
REPLANNING = "replanning"  # the leader's heartbeat state while it re-plans its jobs after a clock jump


@dataclasses.dataclass(frozen=True)
class Sighting:
    """A heartbeat's age in seconds (never negative) and the wall-clock jump seen since it was written, if any."""

    age: float
    clock_jump: float | None


class HeartbeatSightings:
    """Remembers when this process first saw the current heartbeat, on its monotonic clock."""

    def __init__(self, monotonic: Callable[[], float] | None = None) -> None:
        self._monotonic = monotonic or (lambda: time.monotonic())
        self._lock = threading.Lock()
        self._key: tuple[int, float] | None = None
        self._first = (0.0, 0.0)  # (age when first seen, monotonic time then)

    def sight(self, leader: Any, now: float) -> Sighting:
        """The heartbeat's age and any jump, judged against the monotonic clock since the first sighting.

        A heartbeat first seen in the future (the wall clock went back after it
        was written) counts as just written: its age then grows on the
        monotonic clock, so it goes stale after 3 intervals if no beat follows.
        """
        wall_age = now - leader.heartbeat_at
        mono = self._monotonic()
        key = (leader.pid, leader.heartbeat_at)
        with self._lock:
            if key != self._key:
                self._key, self._first = key, (max(wall_age, 0.0), mono)
                return Sighting(max(wall_age, 0.0), wall_age if wall_age < -JUMP_THRESHOLD else None)
            first_age, first_mono = self._first
        mono_age = first_age + (mono - first_mono)
        if abs(wall_age - mono_age) > JUMP_THRESHOLD:
            return Sighting(mono_age, wall_age - mono_age)
        return Sighting(max(wall_age, 0.0), None)


# One per process, so /health, /status and /metrics of a worker agree on the age.
SIGHTINGS = HeartbeatSightings()


def heartbeat_age(leader: Any, now: float, sightings: HeartbeatSightings | None = None) -> float:
    """Seconds since the leader's last heartbeat, never negative, immune to wall-clock jumps (see module doc)."""
    return (sightings or SIGHTINGS).sight(leader, now).age


def heartbeat_is_fresh(leader: Any, heartbeat_interval: float, now: float,
                       sightings: HeartbeatSightings | None = None) -> bool:
    """Whether a scheduler beats on this host: a heartbeat within 3 intervals, and not marked stopped."""
    return (leader.state != "stopped" and leader.heartbeat_at > 0
            and heartbeat_age(leader, now, sightings) <= HEARTBEATS_BEFORE_STALE * heartbeat_interval)


class SchedulerCheck(ComponentCheck):
    """Available when a scheduler beats on this host, no critical job is unhealthy and no job is quarantined.

    * unavailable: no heartbeat within ``3 × SCHEDULER_HEARTBEAT_INTERVAL``;
    * degraded: the wall clock jumped and the jobs are not re-planned yet, the
      scheduler is paused, or a critical job is unhealthy (consecutive
      failures over the threshold, or overdue past its grace).
    """

    backend = "apscheduler"

    def __init__(self, store: Any, settings: dict[str, Any], sightings: HeartbeatSightings | None = None,
                 wall: Callable[[], float] | None = None) -> None:
        self._store = store
        self._settings = settings
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
        if not heartbeat_is_fresh(leader, self._settings["SCHEDULER_HEARTBEAT_INTERVAL"], now, self._sightings):
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
            health = judge(record, now, self._settings["JOB_FAILURE_THRESHOLD"], self._settings["JOB_OVERDUE_GRACE"])
            if health.state is JobState.UNHEALTHY:
                failing.append(f"{record.id}: {health.reason}")
        if failing:
            raise ServiceDegraded("critical job unhealthy: " + "; ".join(failing[:3]))
        # Any job, critical or not, that kept killing its worker is a fault of the service itself.
        quarantined = self._store.quarantined_jobs()
        if quarantined:
            raise ServiceDegraded("job quarantined for killing its worker: " + ", ".join(quarantined[:3]))
