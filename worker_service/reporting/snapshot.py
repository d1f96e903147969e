"""One read of the shared store, judged at one ``now``: what /status and /metrics report on.

Everything /status shows about the scheduler and the jobs (the scheduler
component, its reason, each job's state and counts) comes from one snapshot,
read when the report is built. Before, the scheduler component came from the
health engine's cache, read earlier than the job list, so one table could
show a job at 21 consecutive failures in the scheduler's reason and at 26 in
its own row.

The scheduler component's rule stays in :class:`SchedulerCheck`: the snapshot
offers the store's read methods (``scheduler()``, ``jobs()``), so the check
runs against it unchanged. Any other read the check makes (quarantined jobs,
say) goes on to the live store: the snapshot pins what /status shows side by
side (heartbeat, jobs, counts), not every read a rule may add.

In fleet mode (``STATE_DATABASE_URL``) the snapshot also holds the fleet's
scheduler lease, read first, and on request the last changes of leader:
what the heartbeat's age is judged against (the database's clock,
:attr:`StoreSnapshot.beat_now`) and what /status's ``fleet`` block shows.

A store read may fail (``StoreUnavailable`` from ``worker_service.state``, or
any error of the store's driver): the snapshot then holds no records and the
reason, and the scheduler component is unavailable with that reason (in fleet
mode degraded, while another host's leader was read within a lease TTL:
:meth:`SchedulerCheck.unreachable`); the report is still made.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from common.helpers.health import CheckResult, ServiceDegraded, Status, redact, utc_now

from ..scheduler.component_check import SchedulerCheck, read_lease
from ..scheduler.heartbeat import judging_now
from ..scheduler.job_health import JobHealth, JobPolicy
from ..state import StateReader, StoreUnavailable
from ..state.records import JobRecord, LeadershipChange, LeaseRecord, SchedulerRecord

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StoreSnapshot:
    """The leader's heartbeat and every job with its stats and verdict, as read at ``now`` (epoch seconds)."""

    now: float
    leader: SchedulerRecord | None
    records: list[JobRecord]
    verdicts: list[JobHealth]
    error: str | None = None  # why the store could not be read
    store: StateReader | None = dataclasses.field(default=None, repr=False, compare=False)  # for the reads not held here
    fleet: bool = False  # a store shared by several hosts (STATE_DATABASE_URL)
    held_lease: LeaseRecord | None = None  # the fleet's scheduler lease (fleet mode only)
    changes: list[LeadershipChange] = dataclasses.field(default_factory=list)  # newest first, if asked for

    @property
    def beat_now(self) -> float:
        """The clock the heartbeat's age is judged by: the database's at the lease read, else ``now``."""
        return judging_now(self.held_lease, self.now)

    def __getattr__(self, name: str) -> Any:
        """A read the snapshot does not hold, from the live store (only called for unknown attributes)."""
        store = self.__dict__.get("store")
        if store is None or name.startswith("_"):
            raise AttributeError(name)
        return getattr(store, name)

    def scheduler(self) -> SchedulerRecord | None:
        """The heartbeat, as the store's method of that name returns it."""
        return self.leader

    def jobs(self, critical_only: bool = False) -> list[JobRecord]:
        """The jobs, as the store's method of that name returns them."""
        return [r for r in self.records if r.definition.critical] if critical_only else list(self.records)

    def lease(self) -> LeaseRecord | None:
        """The lease, as the store's method of that name returned it."""
        return self.held_lease

    def leadership_changes(self, limit: int = 10) -> list[LeadershipChange]:
        """The changes read with the snapshot (at most as many as were asked for then)."""
        return self.changes[:limit]


def take_snapshot(store: StateReader, policy: JobPolicy, fleet: bool = False, changes: int = 0) -> StoreSnapshot:
    """Read the heartbeat and the jobs once, and judge every job by ``policy`` at one ``now``.

    With ``fleet``, the lease is read first, and the last ``changes`` changes
    of leader after the jobs.
    """
    now = time.time()
    try:
        lease = read_lease(store) if fleet else None
        leader, records = store.scheduler(), store.jobs()
        history = store.leadership_changes(changes) if fleet and changes else []
    except Exception as error:  # StoreUnavailable, or a raw driver error until every store wraps them
        reason = str(error) if isinstance(error, StoreUnavailable) else f"{type(error).__name__}: {error}"
        reason = redact(reason if reason.startswith(("state store", "state database")) else f"state store: {reason}")
        log.warning("status: the state store cannot be read: %s", reason)
        return StoreSnapshot(now=now, leader=None, records=[], verdicts=[], error=reason[:300], store=store,
                             fleet=fleet)
    return StoreSnapshot(now=now, leader=leader, records=records,
                         verdicts=policy.judge_all(records, judging_now(lease, now)),
                         store=store, fleet=fleet, held_lease=lease, changes=list(history))


def scheduler_result(snapshot: StoreSnapshot, settings: Any, policy: JobPolicy) -> CheckResult:
    """The scheduler component, judged from ``snapshot`` by :class:`SchedulerCheck`'s rule and ``policy``."""
    check = SchedulerCheck(snapshot, settings, policy=policy, bounded=False)
    if snapshot.error is None:
        return check.run("scheduler")
    status, reason = Status.UNAVAILABLE, snapshot.error
    if check.fleet:  # another host's leader may still run the jobs: the check's rule says
        verdict = check.unreachable(snapshot.error)
        status = Status.DEGRADED if isinstance(verdict, ServiceDegraded) else Status.UNAVAILABLE
        reason = redact(verdict.reason)[:300]
    return CheckResult(component="scheduler", status=status, backend=SchedulerCheck.backend,
                       latency=None, checked_at=utc_now(), reason=reason)
