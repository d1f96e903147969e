"""The scheduler component of /health, read from the shared store so every worker agrees.

The heartbeat's age is measured across wall-clock jumps by
:mod:`.heartbeat`; each job is judged by the one :class:`~.job_health.JobPolicy`.

In fleet mode (``STATE_DATABASE_URL``: several hosts share one PostgreSQL
store and compete for one scheduler lease) the component is about the fleet's
leader, whichever host it runs on, so every host answers the same:

=========== ==================================================================
available   the lease is live (by the database's clock) and the leader's
            heartbeat is fresh (its age also by the database's clock)
degraded    this host cannot reach the state database, but it read a live
            leader on another host within the last ``SCHEDULER_LEASE_TTL``;
            or any of the degraded rules of one host (re-planning, paused,
            a critical job unhealthy, a job quarantined)
unavailable no live lease (released, expired, never taken), or its holder's
            heartbeat is stale; or the database cannot be reached and no
            live leader on another host was read within the TTL
=========== ==================================================================

A hung database must not turn into the engine's "no answer (timed out)":
the fleet's reads run under a deadline of their own, shorter than
``HEALTH_CHECK_TIMEOUT`` (the store's own ``STATE_DATABASE_TIMEOUT`` may be
longer), and a read that misses it counts as "cannot reach".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from common.helpers.health import CheckError, ComponentCheck, ServiceDegraded, ServiceUnavailable
from common.helpers.health.disk import disk_full

from ..host_identity import host_id, host_label
from ..state import StateReader, StoreUnavailable
from ..state.faults import clock_skew, clock_skew_reason, reason_alone
from ..state.protocol import FleetLedger
from ..state.records import LeaseRecord, SchedulerRecord
from ..vocabulary import SchedulerState
from .heartbeat import (
    LEADERS,
    SIGHTINGS,
    HeartbeatSightings,
    LeaderMemory,
    database_now,
    heartbeat_age,
    heartbeat_is_fresh,
)
from .job_health import JobPolicy, JobState
from .jobs_source import problem_reason

# The heartbeat's names stay importable from here, where they lived before .heartbeat.
__all__ = ["HeartbeatSightings", "SchedulerCheck", "fleet_mode", "heartbeat_age", "heartbeat_is_fresh",
           "read_lease"]

READ_SHARE = 0.8  # of HEALTH_CHECK_TIMEOUT: the fleet's reads must end before the engine's deadline


class SchedulerCheck(ComponentCheck):
    """Available when the leader's scheduler beats, no critical job is unhealthy and no job is quarantined.

    * unavailable: no heartbeat within ``3 × SCHEDULER_HEARTBEAT_INTERVAL``
      (in fleet mode also: no live lease; see the module docstring);
    * degraded: the wall clock jumped and the jobs are not re-planned yet, the
      scheduler is paused, a reload found this host's jobs file broken (the
      last good job set runs, :mod:`.jobs_source`), or a critical job is
      unhealthy (consecutive failures over the threshold, or overdue past its
      grace); in fleet mode also: the database cannot be reached but another
      host led a moment ago.

    A heartbeat gone silent while the state directory's disk is full says so
    first (``state store: disk full (…); no scheduler heartbeat …``): the store
    still reads, and the leader cannot write.

    ``bounded=False`` skips the fleet's read deadline, for a store whose reads
    are already done (a :class:`~worker_service.reporting.snapshot.StoreSnapshot`).
    """

    backend = "apscheduler"

    def __init__(self, store: StateReader, settings: Mapping[str, Any], sightings: HeartbeatSightings | None = None,
                 wall: Callable[[], float] | None = None, policy: JobPolicy | None = None,
                 leaders: LeaderMemory | None = None, hostname: str | None = None, bounded: bool = True) -> None:
        self._store = store
        self._heartbeat_interval: float = settings["SCHEDULER_HEARTBEAT_INTERVAL"]
        self._policy = policy or JobPolicy.from_settings(settings)
        self._sightings = sightings or SIGHTINGS
        self._wall = wall or (lambda: time.time())
        self.fleet = fleet_mode(settings)
        self._lease_ttl = float(settings.get("SCHEDULER_LEASE_TTL") or 10.0)
        self._leaders = leaders or LEADERS
        self._hostname = hostname or host_id()  # compared with the lease holder's identity, whole
        self._max_skew = float(settings.get("SCHEDULER_MAX_CLOCK_SKEW") or 2.0)
        self._skew: float | None = None  # this host's clock skew past the bound, at the last read of the lease
        self._state_dir: str = settings.get("WORKER_STATE_DIR") or ""
        budget = READ_SHARE * float(settings.get("HEALTH_CHECK_TIMEOUT") or 0.5)
        self._deadline = _ReadDeadline(budget) if self.fleet and bounded else None

    def check(self) -> None:
        try:
            if self._deadline is None:
                self._check()
            else:
                self._deadline.call(self._check)
        except StoreUnavailable as error:  # the store's reason says it all; no class name in front
            raise self.unreachable(error.reason) from None

    def unreachable(self, reason: str) -> CheckError:
        """What the component is when the store cannot be read (``reason``): unavailable, unless another host led.

        Fleet mode only: degraded when this process read a live leader on
        another host within the last ``SCHEDULER_LEASE_TTL`` (the jobs most
        likely run); a leader on this host cannot renew its lease either.
        """
        if not self.fleet:
            return ServiceUnavailable(reason)
        cause = f"cannot reach the state database ({reason_alone(reason)})"
        last = self._leaders.last(within=self._lease_ttl)
        if last is None:
            return ServiceUnavailable(f"{cause}; no live leader read in the last {self._lease_ttl:g} s")
        seen, ago = last
        who = f"{host_label(seen.host)} pid {seen.pid} (epoch {seen.epoch})"
        if seen.host == self._hostname:
            return ServiceUnavailable(f"{cause}; the fleet's leader was {who} on this host, "
                                      f"which cannot renew its lease either ({ago:.0f} s ago)")
        return ServiceDegraded(f"{cause}; the fleet's leader was {who} {ago:.0f} s ago")

    def _check(self) -> None:
        now = self._wall()
        if self.fleet:
            leader, beat_now = self._fleet_leader()
        else:
            leader, beat_now = self._host_leader(now), now
        if leader.state == SchedulerState.REPLANNING:
            raise ServiceDegraded("the wall clock jumped; re-planning jobs")
        jump = self._sightings.sight(leader, beat_now).clock_jump
        if jump is not None:
            raise ServiceDegraded(f"wall clock jumped by about {jump:+.0f} s since the last heartbeat; re-planning jobs")
        if leader.state == SchedulerState.PAUSED:
            raise ServiceDegraded("scheduler is paused")
        problems = []
        # A reload found the jobs file broken: the leader keeps the last good job set (.jobs_source).
        jobs_file = problem_reason(self._state_dir, now)
        if jobs_file is not None:
            problems.append(jobs_file)
        failing = []
        for record in self._store.jobs(critical_only=True):
            health = self._policy.judge(record, beat_now)  # in a fleet, the database's clock (as the heartbeat)
            if health.state is JobState.UNHEALTHY:
                failing.append(f"{record.id}: {health.reason}")
        if failing:
            problems.append("critical job unhealthy: " + "; ".join(failing[:3]))
        # Any job, critical or not, that kept killing its worker is a fault of the service itself.
        quarantined = self._store.quarantined_jobs()
        if quarantined:
            problems.append("job quarantined for killing its worker: " + ", ".join(quarantined[:3]))
        if self.fleet and self._skew is not None:  # the fleet runs its jobs; this host could not lead it
            problems.append(clock_skew_reason(self._skew, self._max_skew))
        if problems:
            raise ServiceDegraded("; ".join(problems))

    def _host_leader(self, now: float) -> SchedulerRecord:
        """One host: the heartbeat, if fresh; the reasons are the ones this service always gave."""
        leader = self._store.scheduler()
        if leader is None:
            raise ServiceUnavailable("no scheduler has run on this host")
        if not heartbeat_is_fresh(leader, self._heartbeat_interval, now, self._sightings):
            if leader.state == SchedulerState.STOPPED:
                raise ServiceUnavailable(f"the scheduler stopped (last leader pid {leader.pid})")
            age = heartbeat_age(leader, now, self._sightings)
            silent = f"no scheduler heartbeat for {age:.0f} s (last leader pid {leader.pid})"
            # The store still reads, but the leader cannot write its heartbeat into a full disk: say so first.
            full = disk_full(self._state_dir) if self._state_dir else None
            raise ServiceUnavailable(f"state store: {full}; {silent}" if full else silent)
        return leader

    def _fleet_leader(self) -> tuple[SchedulerRecord, float]:
        """The fleet: a live lease and a fresh heartbeat, judged on the database's clock (returned with the leader).

        Also notes this host's clock skew (:attr:`_skew`), from the database's
        clock at the lease read: a host past ``SCHEDULER_MAX_CLOCK_SKEW`` does
        not lead, and says so.
        """
        before = self._wall()
        lease = read_lease(self._store)
        self._skew = self._skew_past_bound(lease, before)
        leader = self._store.scheduler()
        self._leaders.note(lease)
        if lease is None or not lease.live:
            reason = no_leader_reason(lease, leader)
            if self._skew is not None:
                reason += "; " + clock_skew_reason(self._skew, self._max_skew)
            raise ServiceUnavailable(reason)
        beat_now = database_now(lease)
        if leader is None or not heartbeat_is_fresh(leader, self._heartbeat_interval, beat_now, self._sightings):
            holder = f"{host_label(lease.holder_host)} pid {lease.holder_pid} (epoch {lease.epoch}) holds the scheduler lease"
            if leader is None or leader.heartbeat_at <= 0:
                raise ServiceUnavailable(f"{holder}, but no scheduler heartbeat was written")
            if leader.state == SchedulerState.STOPPED:
                raise ServiceUnavailable(f"{holder}, but the scheduler stopped "
                                         f"(last leader {leader.hostname} pid {leader.pid})")
            age = heartbeat_age(leader, beat_now, self._sightings)
            raise ServiceUnavailable(f"{holder}, but no scheduler heartbeat for {age:.0f} s "
                                     f"(last from {leader.hostname} pid {leader.pid})")
        return leader, beat_now


    def _skew_past_bound(self, lease: LeaseRecord | None, before: float) -> float | None:
        """This host's clock minus the database's, if further apart than the bound (``None`` if within it)."""
        if lease is None:
            return None
        skew = clock_skew(before, self._wall(), database_now(lease))
        return skew if abs(skew) > self._max_skew else None


def fleet_mode(settings: Mapping[str, Any]) -> bool:
    """Whether the hosts share a state database and one scheduler lease (``STATE_DATABASE_URL`` is set)."""
    return bool(settings.get("STATE_DATABASE_URL"))


def read_lease(store: StateReader) -> LeaseRecord | None:
    """``store.lease()``, or ``None`` for a store that keeps no lease (one host: not a :class:`FleetLedger`)."""
    return store.lease() if isinstance(store, FleetLedger) else None


def no_leader_reason(lease: LeaseRecord | None, leader: SchedulerRecord | None) -> str:
    """Why no host leads the fleet: who held the lease last and how long ago (on the database's clock)."""
    if lease is None or lease.holder_session is None:
        if leader is None:
            return "no host has led the fleet yet (the scheduler lease was never taken)"
        return f"no host holds the scheduler lease (the last heartbeat was from {leader.hostname} pid {leader.pid})"
    holder = f"{host_label(lease.holder_host)} pid {lease.holder_pid} (epoch {lease.epoch})"
    if lease.released:
        return f"no host leads the fleet: {holder} released the scheduler lease {_ended_ago(lease):.0f} s ago"
    return f"no host leads the fleet: the scheduler lease of {holder} expired {_ended_ago(lease):.0f} s ago"


def _ended_ago(lease: LeaseRecord) -> float:
    """Seconds since the lease ended: its expiry, or for a release that kept its expiry, its last renewal."""
    if lease.expires_in <= 0:
        return -lease.expires_in
    last = lease.renewed_at if lease.renewed_at is not None else lease.acquired_at
    return max(database_now(lease) - last, 0.0) if last is not None else 0.0


class _ReadDeadline:
    """Runs a read in a helper thread and waits at most ``seconds`` for it; one read in flight at a time.

    While a read hangs (up to the store's own timeout), later calls wait on
    that same read rather than start another, so a hung database holds at
    most one extra thread per check.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._inflight: Future | None = None

    def call(self, read: Callable[[], None]) -> None:
        """Run ``read``; re-raise what it raised; :class:`StoreUnavailable` if it has not ended within the deadline."""
        with self._lock:
            future = self._inflight
            if future is None or future.done():
                future = self._inflight = Future()
                threading.Thread(target=_run, args=(read, future), name="scheduler-check-read", daemon=True).start()
        try:
            error = future.result(timeout=self.seconds)
        except FutureTimeout:
            raise StoreUnavailable(f"no answer within {self.seconds:g} s") from None
        if isinstance(error, (CheckError, StoreUnavailable)):
            raise type(error)(error.reason)  # a copy: several callers may share one read's outcome
        if error is not None:
            raise error


def _run(read: Callable[[], None], future: Future) -> None:
    try:
        read()
    except Exception as error:  # handed to the caller, who raises it
        future.set_result(error)
    else:
        future.set_result(None)
