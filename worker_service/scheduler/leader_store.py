"""The store as the fleet's leader writes it during one term: every write fenced, method by method.

Each write of :class:`~worker_service.state.protocol.LeaderWriter` is written
out here, and each goes through one of two gates:

* a *leading* write (it starts, schedules or decides something) is refused
  here (:class:`FencedOut`, nothing sent) once the term is not valid (lost, or
  past its self-fence deadline), and otherwise sent through the database's
  fenced view (``store.fenced(epoch, session)``), which refuses it if another
  epoch holds the lease;
* a *starting* write (``record_started``: a submitted run enters the job's
  code) may still be sent after this host handed the lease over, never once
  the term was lost or ran past its deadline (a cut-off leader starts nothing);
* a *finishing* write (how a run this leader already started ended) is always
  sent: fenced while the term is valid, else unfenced. Runs outlive terms (a
  reload or a stop hands the scheduler over while they finish, and a lost term
  stands down while they finish), and the new leader leaves a run alone while
  its process lives (:meth:`SchedulerService._judge`). It starts nothing, and
  counts a run only if it removes the run's live row, so a run the new leader
  settled meanwhile (its owner gone or out of reach) is not counted twice.

There is no ``__getattr__`` and no list of names: a write added to the
protocol but not here makes this class fail the protocol
(``tests/test_leader_writes_fenced.py`` checks every one, on PostgreSQL), never
an unfenced write. Reads go to the store as they are.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from ..state import StateStore, StoreUnavailable
from ..state.alert_records import AlertChange, AlertState, AlertSummary, Delivery
from ..state.faults import FencedOut
from ..state.protocol import LeaderWriter
from ..state.records import (
    Command,
    CrashState,
    HostRecord,
    JobDefinition,
    JobRecord,
    MissedSlots,
    OperatorPause,
    OrphanedRun,
    RunInFlight,
    RunRecord,
    SchedulerRecord,
)

log = logging.getLogger(__name__)
T = TypeVar("T")



class Term(Protocol):
    """What a store view needs of its term (:class:`~.lease.FleetTerm`)."""

    epoch: int | None
    session: str
    lost: threading.Event

    @property
    def offered(self) -> bool: ...

    def valid(self) -> bool: ...

    def refusal(self, finishing: bool) -> str | None: ...


class LeaderStore:
    """The leader's store for one term (see the module docstring).

    Two additions for a handover between hosts: while a handover is offered,
    each submitted run is marked *stopping* at once (a run the next leader
    finds still going is then counted as killed at a stop, never as a crash);
    and a leader that got the lease by a handover first waits, bounded, for its
    predecessor's runs to finish before it settles what is left.
    """

    def __init__(self, store: StateStore, term: Term) -> None:
        assert term.epoch is not None
        self._base = store
        self._fenced: LeaderWriter = store.fenced(term.epoch, term.session)
        self._term = term

    # -- the two gates ------------------------------------------------------------------------------------------------
    def _leading(self, write: Callable[[LeaderWriter], T]) -> T:
        reason = self._term.refusal(finishing=False)
        if reason is not None:
            raise FencedOut(reason)
        return write(self._fenced)

    def _starting(self, write: Callable[[LeaderWriter], T]) -> T:
        reason = self._term.refusal(finishing=True)
        if reason is not None:
            raise FencedOut(reason)
        if self._term.lost.is_set():  # handed over: the epoch moved on; the run's live row is the guard
            return write(self._base)
        return write(self._fenced)

    def _finishing(self, write: Callable[[LeaderWriter], T]) -> T:
        if self._term.refusal(finishing=False) is None:
            return write(self._fenced)
        return write(self._base)  # the term is over: the run's live row is the guard (see the module docstring)

    # -- a run's steps ------------------------------------------------------------------------------------------------
    def record_submitted(self, job_id: str, session: str, pid: int, scheduled_at: float,
                         next_run_time: float | None, trigger: str = "scheduled", requested_by: str | None = None,
                         command_id: int | None = None, host: str | None = None,
                         missed: MissedSlots | None = None, max_instances: int | None = None,
                         run_on: str | None = None, for_host: str | None = None, avoid_host: str | None = None,
                         retry_of: int | None = None, keep_next_run: bool = False) -> int | None:
        run_id = self._leading(lambda w: w.record_submitted(
            job_id, session, pid, scheduled_at, next_run_time, trigger, requested_by, command_id, host, missed,
            max_instances, run_on, for_host, avoid_host, retry_of, keep_next_run))
        if self._term.offered and run_on is None and run_id is not None:
            try:
                self.mark_stopping(session)
            except StoreUnavailable as error:  # taken meanwhile: the run was recorded under this epoch and goes on
                log.warning("could not mark the run of job %s as stopping: %s", job_id, error)
        return run_id

    def record_started(self, run_id: int, at: float) -> bool:
        return self._starting(lambda w: w.record_started(run_id, at))

    def forget_run(self, run_id: int) -> None:
        self._finishing(lambda w: w.forget_run(run_id))

    def forget_runs_except(self, session: str, live: Iterable[int]) -> int:
        return self._finishing(lambda w: w.forget_runs_except(session, live))

    def record_run(self, job_id: str, outcome: str, at: float, duration: float | None, error_type: str | None = None,
                   error_message: str | None = None, run_id: int | None = None, owner: str | None = None) -> bool:
        return self._finishing(lambda w: w.record_run(job_id, outcome, at, duration, error_type, error_message,
                                                      run_id, owner))

    def record_missed(self, job_id: str, at: float, run_id: int | None = None, owner: str | None = None) -> bool:
        return self._finishing(lambda w: w.record_missed(job_id, at, run_id, owner))

    def record_max_instances(self, job_id: str, at: float) -> None:
        self._leading(lambda w: w.record_max_instances(job_id, at))

    # -- leading ------------------------------------------------------------------------------------------------------
    def mark_stopping(self, session: str) -> None:
        self._leading(lambda w: w.mark_stopping(session))

    def settle_orphans(self, session: str, lost: Callable[[OrphanedRun], bool | None] | None = None,
                       planned_age: float = 0.0) -> list[OrphanedRun]:
        return self._leading(lambda w: w.settle_orphans(session, lost, planned_age))

    def set_crash_hold(self, job_id: str, held_until: float | None, quarantine_key: str | None = None) -> None:
        self._leading(lambda w: w.set_crash_hold(job_id, held_until, quarantine_key))

    def release_quarantine(self, job_id: str) -> None:
        self._leading(lambda w: w.release_quarantine(job_id))

    def publish_jobs(self, definitions: Iterable[JobDefinition]) -> None:
        self._leading(lambda w: w.publish_jobs(definitions))

    def update_next_run(self, job_id: str, next_run_time: float | None, paused: bool) -> None:
        self._leading(lambda w: w.update_next_run(job_id, next_run_time, paused))

    def beat(self, pid: int, hostname: str, state: str, timezone: str, started_at: float, session: str = "",
             clock_jump: tuple[float, float] | None = None) -> None:
        self._leading(lambda w: w.beat(pid, hostname, state, timezone, started_at, session, clock_jump))

    def clear_heartbeat(self, pid: int) -> None:
        self._leading(lambda w: w.clear_heartbeat(pid))

    def finish_command(self, command_id: int, state: str, status: int, outcome: str, at: float,
                       applied_by: str, run_id: int | None = None) -> None:
        self._leading(lambda w: w.finish_command(command_id, state, status, outcome, at, applied_by, run_id))

    def set_operator_pause(self, job_id: str, paused: bool, by: str, at: float) -> None:
        self._leading(lambda w: w.set_operator_pause(job_id, paused, by, at))

    def record_alert(self, change: AlertChange, channels: Sequence[str]) -> bool:
        return self._leading(lambda w: w.record_alert(change, channels))

    # -- the alerts' outbox: claimed, never fenced (a claim keeps two deliverers off one row) ------------------------
    def claim_deliveries(self, claimer: str, hold: float, limit: int = 10) -> list[Delivery]:
        return self._base.claim_deliveries(claimer, hold, limit)

    def finish_delivery(self, delivery_id: int, claimer: str, outcome: str, error: str | None = None,
                        retry_in: float | None = None) -> bool:
        return self._base.finish_delivery(delivery_id, claimer, outcome, error, retry_in)

    # -- reads, as they are -------------------------------------------------------------------------------------------
    def scheduler(self) -> SchedulerRecord | None:
        return self._base.scheduler()

    def jobs(self, critical_only: bool = False) -> list[JobRecord]:
        return self._base.jobs(critical_only)

    def quarantined_jobs(self) -> list[str]:
        return self._base.quarantined_jobs()

    def command(self, command_id: int) -> Command | None:
        return self._base.command(command_id)

    def commands(self, job_id: str, limit: int = 20) -> list[Command]:
        return self._base.commands(job_id, limit)

    def operator_pauses(self) -> dict[str, OperatorPause]:
        return self._base.operator_pauses()

    def pending_commands(self) -> list[Command]:
        return self._base.pending_commands()

    def crash_state(self, job_id: str) -> CrashState:
        return self._base.crash_state(job_id)

    def job_count(self) -> int:
        return self._base.job_count()

    def definition(self, job_id: str) -> JobDefinition | None:
        return self._base.definition(job_id)

    def runs(self, job_id: str, limit: int | None = None) -> list[RunRecord]:
        return self._base.runs(job_id, limit)

    def recent_runs(self, job_ids: Sequence[str], limit: int) -> dict[str, list[RunRecord]]:
        return self._base.recent_runs(job_ids, limit)

    def run_counts(self, since: float) -> list[tuple[int, str, int]]:
        return self._base.run_counts(since)

    def runs_in_flight(self) -> list[RunInFlight]:
        return self._base.runs_in_flight()

    def hosts(self) -> list[HostRecord]:
        return self._base.hosts()

    def alert_states(self) -> dict[str, AlertState]:
        return self._base.alert_states()

    def deliveries(self, limit: int = 20) -> list[Delivery]:
        return self._base.deliveries(limit)

    def alert_summary(self) -> AlertSummary:
        return self._base.alert_summary()
