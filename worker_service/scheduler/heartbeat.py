"""How old the leader's heartbeat is, as this process sees it, immune to wall-clock jumps.

The heartbeat carries the leader's wall-clock time. A wall-clock jump must
not make it look fresh for ever (a heartbeat an hour in the future after a
backward jump) nor stale (an hour old after a forward jump, while the leader
beats fine). So its age is the wall-clock age until the wall clock disagrees
with this process's monotonic clock by more than the jump threshold since it
first saw that heartbeat; from then on it is measured on the monotonic clock.
Whether that age is fresh is the record's own rule
(:meth:`~worker_service.state.records.SchedulerRecord.is_fresh`).

In fleet mode the heartbeat row is shared by every host: it is the fleet's
leader's, wherever it runs, and nothing here compares it with this host.
:class:`LeaderMemory` keeps the last live lease holder this process read, for
when this host cannot reach the state database.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from ..state.records import LeaseRecord, SchedulerRecord
from .clock_watch import JUMP_THRESHOLD


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

    def sight(self, leader: SchedulerRecord, now: float) -> Sighting:
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


def heartbeat_age(leader: SchedulerRecord, now: float, sightings: HeartbeatSightings | None = None) -> float:
    """Seconds since the leader's last heartbeat, never negative, immune to wall-clock jumps (see module doc)."""
    return (sightings or SIGHTINGS).sight(leader, now).age


def heartbeat_is_fresh(leader: SchedulerRecord, heartbeat_interval: float, now: float,
                       sightings: HeartbeatSightings | None = None) -> bool:
    """Whether the leader's scheduler beats (wherever it runs): the record's rule, applied to the age this process sees."""
    # has_beaten first: a stopped or never-written heartbeat is not sighted (its age is not asked for).
    return leader.has_beaten and leader.is_fresh(heartbeat_interval, heartbeat_age(leader, now, sightings))


@dataclasses.dataclass(frozen=True)
class LeaderSeen:
    """The fleet's leader as this process last saw it hold a live lease; ``seen_at`` is on the monotonic clock."""

    host: str
    pid: int | None
    epoch: int
    seen_at: float


class LeaderMemory:
    """The last live lease holder this process read from the shared store.

    When this host cannot reach the state database, the scheduler component
    says who led the fleet at the last successful read, and how long ago,
    instead of pretending to know nothing (or that nobody leads).
    """

    def __init__(self, monotonic: Callable[[], float] | None = None) -> None:
        self._monotonic = monotonic or (lambda: time.monotonic())
        self._lock = threading.Lock()
        self._seen: LeaderSeen | None = None

    def note(self, lease: LeaseRecord | None) -> None:
        """Remember ``lease``'s holder if the lease is live; a read that shows no live lease forgets it."""
        with self._lock:
            if lease is None or not lease.live:
                self._seen = None
            else:
                self._seen = LeaderSeen(lease.holder_host or "?", lease.holder_pid, lease.epoch, self._monotonic())

    def last(self, within: float) -> tuple[LeaderSeen, float] | None:
        """The leader seen at most ``within`` seconds ago and how many seconds ago, or ``None``."""
        with self._lock:
            seen = self._seen
        if seen is None:
            return None
        ago = self._monotonic() - seen.seen_at
        return (seen, ago) if ago <= within else None


# One per process, so /health, /status and /metrics of a worker remember the same leader.
LEADERS = LeaderMemory()


def database_now(lease: LeaseRecord) -> float:
    """The state database's clock at the read of ``lease`` (epoch seconds): ``expires_at - expires_in``.

    In fleet mode the store stamps the heartbeat with the database's clock;
    judging its age against that clock, not this host's, keeps a host whose
    clock is off from calling a beating leader stale (or a silent one fresh),
    so every host tells the same story.
    """
    return lease.expires_at - lease.expires_in


def judging_now(lease: LeaseRecord | None, wall: float) -> float:
    """The time jobs and heartbeats are judged at: the database's clock at the lease read in a fleet, else ``wall``.

    Every host judges the fleet's jobs (overdue, running too long) against the
    same clock the leader's writes were stamped with, so a host whose clock is
    off tells the same story as the others.
    """
    return database_now(lease) if lease is not None else wall
