"""The scheduler component's rule: a pure function of what was read (leader, lease, critical jobs, quarantines, now).

Nothing here reads a store, a clock or a disk. The readers read, then ask:
:class:`~.scheduler_check.SchedulerCheck` (/health), :class:`~.leader_status.LeaderStatus`
(a job-control POST) and :func:`worker_service.reporting.take_reading` (/status,
/metrics), so all three judge by one rule and the rule is tested without processes.

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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from common.helpers.health import CheckError, ServiceDegraded, ServiceUnavailable

from ..config import LEASE_TTL_DEFAULT, MAX_CLOCK_SKEW_DEFAULT, fleet_mode
from ..host_identity import host_label
from ..scheduler.heartbeat import LeaderSeen, Sighting, database_now
from ..scheduler.job_health import JobPolicy, JobState
from ..state.faults import clock_skew, clock_skew_reason, reason_alone
from ..state.records import JobRecord, LeaseRecord, SchedulerRecord
from ..vocabulary import SchedulerState


@dataclasses.dataclass(frozen=True)
class SchedulerRules:
    """The settings the rule reads: the heartbeat interval, the clock-skew bound, the lease TTL, the job policy."""

    heartbeat_interval: float
    policy: JobPolicy
    fleet: bool = False
    max_skew: float = 2.0
    lease_ttl: float = 10.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], policy: JobPolicy | None = None) -> SchedulerRules:
        """The rules of validated ``settings`` (``policy`` if given, else the settings' own)."""
        return cls(heartbeat_interval=settings["SCHEDULER_HEARTBEAT_INTERVAL"],
                   policy=policy or JobPolicy.from_settings(settings), fleet=fleet_mode(settings),
                   max_skew=float(settings.get("SCHEDULER_MAX_CLOCK_SKEW") or MAX_CLOCK_SKEW_DEFAULT),
                   lease_ttl=float(settings.get("SCHEDULER_LEASE_TTL") or LEASE_TTL_DEFAULT))


@dataclasses.dataclass(frozen=True)
class LeaderFacts:
    """What was read of who leads: enough to say whether a scheduler beats.

    ``now`` is the clock the heartbeat and the jobs are judged by: the
    database's at the lease read in a fleet, else this host's.
    """

    leader: SchedulerRecord | None
    now: float
    lease: LeaseRecord | None = None  # fleet mode only
    heartbeat: Sighting | None = None  # the heartbeat's age and any clock jump as this process sees them
    skew: float | None = None  # this host's clock minus the database's, when past the bound (fleet mode)
    disk_full: str | None = None  # the state directory's disk, when full (one host)

    def heartbeat_age(self) -> float:
        """The heartbeat's age: as sighted, else by the wall clock (never negative)."""
        if self.heartbeat is not None:
            return self.heartbeat.age
        return max(self.now - self.leader.heartbeat_at, 0.0) if self.leader is not None else 0.0


@dataclasses.dataclass(frozen=True)
class SchedulerFacts:
    """Everything the component is judged from: who leads, the critical jobs, the quarantined ones."""

    leading: LeaderFacts
    critical: Sequence[JobRecord] = ()
    quarantined: Sequence[str] = ()
    jobs_file_problem: str | None = None  # a reload found this host's jobs file broken (:mod:`..scheduler.jobs_source`)


def leader_problem(facts: LeaderFacts, rules: SchedulerRules) -> str | None:
    """Why no scheduler leads (the component's ``unavailable`` reason), or ``None`` when one beats."""
    return _fleet_problem(facts, rules) if rules.fleet else _host_problem(facts, rules)


def leader_verdict(leading: LeaderFacts, rules: SchedulerRules) -> CheckError | None:
    """The verdict that who leads settles alone (no leader, re-planning, a clock jump, paused), else ``None``.

    When it settles it, the jobs and quarantines need not be read: a failed
    read of them must not hide a dead leader (:class:`~.scheduler_observer.SchedulerObserver`).
    """
    problem = leader_problem(leading, rules)
    if problem is not None:
        return ServiceUnavailable(problem)
    leader = leading.leader
    assert leader is not None  # a leader that beats was read
    if leader.state == SchedulerState.REPLANNING:
        return ServiceDegraded("the wall clock jumped; re-planning jobs")
    jump = leading.heartbeat.clock_jump if leading.heartbeat is not None else None
    if jump is not None:
        return ServiceDegraded(f"wall clock jumped by about {jump:+.0f} s since the last heartbeat; re-planning jobs")
    if leader.state == SchedulerState.PAUSED:
        return ServiceDegraded("scheduler is paused")
    return None


def decided_by_leader(leading: LeaderFacts, rules: SchedulerRules) -> bool:
    """Whether :func:`leader_verdict` settles the component (the jobs are then not read)."""
    return leader_verdict(leading, rules) is not None


def scheduler_verdict(facts: SchedulerFacts, rules: SchedulerRules) -> CheckError | None:
    """The component: ``None`` when available, else the :class:`CheckError` that says unavailable or degraded."""
    leading = facts.leading
    settled = leader_verdict(leading, rules)
    if settled is not None:
        return settled
    problems = [facts.jobs_file_problem] if facts.jobs_file_problem is not None else []
    failing = []
    for record in facts.critical:
        health = rules.policy.judge(record, leading.now)  # in a fleet, the database's clock (as the heartbeat)
        if health.state is JobState.UNHEALTHY:
            failing.append(f"{record.id}: {health.reason}")
    if failing:
        problems.append("critical job unhealthy: " + "; ".join(failing[:3]))
    # Any job, critical or not, that kept killing its worker is a fault of the service itself.
    if facts.quarantined:
        problems.append("job quarantined for killing its worker: " + ", ".join(facts.quarantined[:3]))
    if rules.fleet and leading.skew is not None:  # the fleet runs its jobs; this host could not lead it
        problems.append(clock_skew_reason(leading.skew, rules.max_skew))
    return ServiceDegraded("; ".join(problems)) if problems else None


def unreachable(reason: str, rules: SchedulerRules, last_leader: tuple[LeaderSeen, float] | None,
                hostname: str) -> CheckError:
    """What the component is when the store cannot be read (``reason``): unavailable, unless another host led.

    Fleet mode only: degraded when this process read a live leader on
    another host (``last_leader``: whom, how many seconds ago) within the
    last ``SCHEDULER_LEASE_TTL`` (the jobs most likely run); a leader on this
    host (``hostname``) cannot renew its lease either.
    """
    if not rules.fleet:
        return ServiceUnavailable(reason)
    cause = f"cannot reach the state database ({reason_alone(reason)})"
    if last_leader is None:
        return ServiceUnavailable(f"{cause}; no live leader read in the last {rules.lease_ttl:g} s")
    seen, ago = last_leader
    who = f"{host_label(seen.host)} pid {seen.pid} (epoch {seen.epoch})"
    if seen.host == hostname:
        return ServiceUnavailable(f"{cause}; the fleet's leader was {who} on this host, "
                                  f"which cannot renew its lease either ({ago:.0f} s ago)")
    return ServiceDegraded(f"{cause}; the fleet's leader was {who} {ago:.0f} s ago")


def skew_past_bound(lease: LeaseRecord | None, sent: float, answered: float, max_skew: float) -> float | None:
    """This host's clock minus the database's at the lease read, if further apart than ``max_skew`` (else ``None``)."""
    if lease is None:
        return None
    skew = clock_skew(sent, answered, database_now(lease))
    return skew if abs(skew) > max_skew else None


def _host_problem(facts: LeaderFacts, rules: SchedulerRules) -> str | None:
    """One host: the heartbeat, if fresh; the reasons are the ones this service always gave."""
    leader = facts.leader
    if leader is None:
        return "no scheduler has run on this host"
    if leader.is_fresh(rules.heartbeat_interval, facts.heartbeat_age()):
        return None
    if leader.state == SchedulerState.STOPPED:
        return f"the scheduler stopped (last leader pid {leader.pid})"
    silent = f"no scheduler heartbeat for {facts.heartbeat_age():.0f} s (last leader pid {leader.pid})"
    # The store still reads, but the leader cannot write its heartbeat into a full disk: say so first.
    return f"state store: {facts.disk_full}; {silent}" if facts.disk_full else silent


def _fleet_problem(facts: LeaderFacts, rules: SchedulerRules) -> str | None:
    """The fleet: a live lease and a fresh heartbeat, judged on the database's clock."""
    lease, leader = facts.lease, facts.leader
    if lease is None or not lease.live:
        reason = no_leader_reason(lease, leader)
        if facts.skew is not None:
            reason += "; " + clock_skew_reason(facts.skew, rules.max_skew)
        return reason
    if leader is not None and leader.is_fresh(rules.heartbeat_interval, facts.heartbeat_age()):
        return None
    holder = f"{host_label(lease.holder_host)} pid {lease.holder_pid} (epoch {lease.epoch}) holds the scheduler lease"
    if leader is None or leader.heartbeat_at <= 0:
        return f"{holder}, but no scheduler heartbeat was written"
    if leader.state == SchedulerState.STOPPED:
        return f"{holder}, but the scheduler stopped (last leader {leader.hostname} pid {leader.pid})"
    return (f"{holder}, but no scheduler heartbeat for {facts.heartbeat_age():.0f} s "
            f"(last from {leader.hostname} pid {leader.pid})")


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
