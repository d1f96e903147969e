"""What the scheduler rule (:mod:`.scheduler_verdict`) is judged from, read by this process: the one impure half.

Everything the rule needs beyond the store's rows is noted here, the same way
for /health, a job-control POST and /status and /metrics: the heartbeat's age
as this process sees it across wall-clock jumps (:class:`HeartbeatSightings`),
the last live leader read (:class:`LeaderMemory`, for when the database cannot
be reached), this host's clock skew at the lease read, a full disk under the
state directory, and a jobs file a reload found broken.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from common.helpers.health import CheckError
from common.helpers.health.disk import disk_full

from ..host_identity import host_id
from ..scheduler.heartbeat import LEADERS, SIGHTINGS, HeartbeatSightings, LeaderMemory, judging_now
from ..scheduler.jobs_source import problem_reason
from ..state import StateReader
from ..state.protocol import FleetLedger
from ..state.records import JobRecord, LeaseRecord, SchedulerRecord
from ..vocabulary import SchedulerState
from .scheduler_verdict import (
    LeaderFacts,
    SchedulerFacts,
    SchedulerRules,
    decided_by_leader,
    skew_past_bound,
    unreachable,
)


class SchedulerObserver:
    """Turns what was read of the store into the rule's facts, noting what this process remembers between reads."""

    def __init__(self, rules: SchedulerRules, state_dir: str = "", sightings: HeartbeatSightings | None = None,
                 leaders: LeaderMemory | None = None, wall: Callable[[], float] | None = None,
                 hostname: str | None = None) -> None:
        self.rules = rules
        self._state_dir = state_dir
        self._sightings = sightings or SIGHTINGS
        self._leaders = leaders or LEADERS
        self.wall = wall or (lambda: time.time())
        self._hostname = hostname or host_id()  # compared with the lease holder's identity, whole

    def read_leader(self, store: StateReader) -> LeaderFacts:
        """Read the lease (fleet mode) and the heartbeat; may raise what the store raises."""
        sent = self.wall()
        lease = read_lease(store) if self.rules.fleet else None
        answered = self.wall()
        return self.leader_facts(store.scheduler(), lease, sent, answered)

    def read(self, store: StateReader) -> SchedulerFacts:
        """Read everything the component is judged from; may raise what the store raises."""
        leading = self.read_leader(store)
        if decided_by_leader(leading, self.rules):  # a later read that fails must not hide who (does not) lead(s)
            return SchedulerFacts(leading)
        return self.facts(leading, store.jobs(critical_only=True), store.quarantined_jobs())

    def leader_facts(self, leader: SchedulerRecord | None, lease: LeaseRecord | None, sent: float,
                     answered: float) -> LeaderFacts:
        """The facts of who leads, from a heartbeat and a lease read between ``sent`` and ``answered`` (wall clock)."""
        if self.rules.fleet:
            self._leaders.note(lease)
        now = judging_now(lease, sent)
        facts = LeaderFacts(
            leader=leader, now=now, lease=lease,
            heartbeat=self._sightings.sight(leader, now) if self._judges_heartbeat(leader, lease) else None,
            skew=skew_past_bound(lease, sent, answered, self.rules.max_skew) if self.rules.fleet else None,
        )
        # One host: only a heartbeat gone silent asks whether the disk is full (the reason it names first).
        silent = leader is not None and not leader.is_fresh(self.rules.heartbeat_interval, facts.heartbeat_age())
        if silent and self._state_dir and not self.rules.fleet:
            facts = dataclasses.replace(facts, disk_full=disk_full(self._state_dir))
        return facts

    def _judges_heartbeat(self, leader: SchedulerRecord | None, lease: LeaseRecord | None) -> bool:
        """Whether the rule looks at the heartbeat's age: a stopped one, or one under no live lease, is not sighted."""
        if leader is None or leader.state == SchedulerState.STOPPED:
            return False
        return not self.rules.fleet or (lease is not None and lease.live)

    def facts(self, leading: LeaderFacts, critical: Sequence[JobRecord], quarantined: Sequence[str]) -> SchedulerFacts:
        """All the facts: who leads, the critical jobs, the quarantined ones, and this host's jobs file."""
        return SchedulerFacts(leading, critical, quarantined, problem_reason(self._state_dir, self.wall()))

    def unreachable(self, reason: str) -> CheckError:
        """The component while the store cannot be read: see :func:`.scheduler_verdict.unreachable`."""
        return unreachable(reason, self.rules, self._leaders.last(within=self.rules.lease_ttl), self._hostname)


def read_lease(store: StateReader) -> LeaseRecord | None:
    """``store.lease()``, or ``None`` for a store that keeps no lease (one host: not a :class:`FleetLedger`)."""
    return store.lease() if isinstance(store, FleetLedger) else None
