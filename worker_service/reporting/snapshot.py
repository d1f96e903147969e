"""One read of the shared store, judged at one ``now``: the rows /status and /metrics report on.

Everything /status shows about the scheduler and the jobs (the scheduler
component, its reason, each job's state and counts) comes from one snapshot,
read when the report is built. Before, the scheduler component came from the
health engine's cache, read earlier than the job list, so one table could
show a job at 21 consecutive failures in the scheduler's reason and at 26 in
its own row.

The snapshot holds every row the reports and the scheduler rule look at
(heartbeat, jobs, quarantined jobs, the runs in flight and, in fleet mode,
the executing hosts; in fleet mode the lease, read first, and on request the
last changes of leader), and nothing else: it is no store and forwards no
read to one.

A store read may fail (``StoreUnavailable`` from ``worker_service.state``, or
any error of the store's driver): the snapshot then holds no records and the
reason (:func:`~.reading.take_reading` judges the scheduler unreachable); the
report is still made.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from common.helpers.health import redact

from ..health.scheduler_observer import read_lease
from ..scheduler.heartbeat import judging_now
from ..scheduler.job_health import JobHealth, JobPolicy
from ..state import StateReader, StoreUnavailable
from ..state.records import HostRecord, JobRecord, LeadershipChange, LeaseRecord, RunInFlight, SchedulerRecord

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StoreSnapshot:
    """The leader's heartbeat and every job with its stats and verdict, as read at ``now`` (epoch seconds)."""

    now: float
    leader: SchedulerRecord | None
    records: tuple[JobRecord, ...]
    verdicts: tuple[JobHealth, ...]
    error: str | None = None  # why the store could not be read
    fleet: bool = False  # a store shared by several hosts (STATE_DATABASE_URL)
    lease: LeaseRecord | None = None  # the fleet's scheduler lease (fleet mode only)
    lease_answered: float = 0.0  # this host's wall clock when the lease read returned (for its clock skew)
    changes: tuple[LeadershipChange, ...] = ()  # newest first, if asked for
    quarantined: tuple[str, ...] = ()  # jobs quarantined for killing their worker
    quarantine_error: str | None = None  # why they could not be read (the jobs could): only the scheduler's business
    hosts: tuple[HostRecord, ...] = ()  # the fleet's executing processes (none on one host)
    in_flight: tuple[RunInFlight, ...] = ()  # every run not finished yet, oldest first
    work_error: str | None = None  # why those two could not be read (the jobs could)
    took: float | None = None  # seconds the scheduler component's reads took

    @property
    def beat_now(self) -> float:
        """The clock the heartbeat's age is judged by: the database's at the lease read, else ``now``."""
        return judging_now(self.lease, self.now)

    @property
    def critical(self) -> tuple[JobRecord, ...]:
        """The critical jobs' records."""
        return tuple(record for record in self.records if record.definition.critical)


def take_snapshot(store: StateReader, policy: JobPolicy, fleet: bool = False, changes: int = 0) -> StoreSnapshot:
    """Read the heartbeat and the jobs once, and judge every job by ``policy`` at one ``now``.

    With ``fleet``, the lease is read first, and the last ``changes`` changes
    of leader after the jobs.
    """
    now = time.time()
    started = time.perf_counter()
    try:
        lease = read_lease(store) if fleet else None
        answered = time.time()
        leader, records = store.scheduler(), store.jobs()
        history = store.leadership_changes(changes) if fleet and changes else []
    except Exception as error:  # StoreUnavailable, or a raw driver error until every store wraps them
        reason = _unreadable(error)
        log.warning("status: the state store cannot be read: %s", reason)
        return StoreSnapshot(now=now, leader=None, records=(), verdicts=(), error=reason, fleet=fleet)
    # The quarantines only feed the scheduler's verdict: their read failing must not blank the jobs /status shows.
    quarantined, quarantine_error = (), None
    try:
        quarantined = tuple(store.quarantined_jobs())
    except Exception as error:  # noqa: BLE001 - as above
        quarantine_error = _unreadable(error)
    took = time.perf_counter() - started  # the scheduler component's reads (its latency), as before the two below
    # Who runs what: shown beside the jobs, never a reason to blank them.
    hosts, in_flight, work_error = (), (), None
    try:
        hosts, in_flight = tuple(store.hosts()), tuple(store.runs_in_flight())
    except Exception as error:  # noqa: BLE001 - as above
        work_error = _unreadable(error)
    return StoreSnapshot(now=now, leader=leader, records=tuple(records),
                         verdicts=tuple(policy.judge_all(records, judging_now(lease, now))), fleet=fleet, lease=lease,
                         lease_answered=answered, changes=tuple(history), quarantined=quarantined,
                         quarantine_error=quarantine_error, hosts=hosts, in_flight=in_flight, work_error=work_error,
                         took=took)


def _unreadable(error: Exception) -> str:
    """The one-line, redacted reason a read failed."""
    reason = str(error) if isinstance(error, StoreUnavailable) else f"{type(error).__name__}: {error}"
    return redact(reason if reason.startswith(("state store", "state database")) else f"state store: {reason}")[:300]
