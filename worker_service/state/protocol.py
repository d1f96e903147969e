"""What the rest of the service needs of a state store, whatever keeps the state.

The store is cut by role, each role an interface of its own:

* :class:`StateReader`: every read, made by any worker (``/health``'s
  scheduler component, ``/status``, ``/metrics``, the job-control reads) and
  by the leader;
* :class:`CommandQueue`: the one write any worker makes (an operator's
  command, queued for the leader; not fenced);
* :class:`LeaderWriter`: the leader's writes (a run's steps, leading, the
  commands it finishes). In a fleet every one of them is fenced by the lease's
  epoch (:meth:`StateStore.fenced`); the scheduler writes through
  :class:`worker_service.scheduler.lease.LeaderStore`, which implements this
  interface method by method, and ``tests/test_leader_writes_fenced.py``
  fails for a write added here that is not fenced;
* :class:`AlertOutbox`: the notifications' outbox as a deliverer claims and
  finishes its rows (any worker; a claim, not a fence, keeps two deliverers
  off one row);
* :class:`FleetLedger`: the fleet's lease and leadership log, kept by the
  PostgreSQL store only.

:class:`StateStore` is a whole store: reader, queue and writer. Two implementations keep it:
``SqliteStateStore`` (one host: a file in ``WORKER_STATE_DIR``) and
``PostgresStateStore`` (a fleet of hosts: ``STATE_DATABASE_URL``). Both pass
``tests/test_state_store_contract.py`` and
``tests/test_state_store_control_contract.py`` unchanged; another one slots
in by doing the same.

The contract every implementation keeps:

* Any call that cannot be served raises :class:`~.faults.StoreUnavailable`
  with a short reason for an operator, never a driver's own error, and none
  blocks for long.
* Times are epoch seconds (UTC). The store stamps ``heartbeat_at``, a run's
  ``submitted_at`` and a command's ``requested_at`` with its own clock, and
  measures a pending command's :attr:`~.records.Command.age` with that same
  clock; every other time is the caller's. No host's clock is ever compared
  with a time another host stamped.
* Each job keeps a bounded history of finished, missed and skipped runs: at
  least its ``history_size`` newest, and never more than ``history_size + 16``
  (a store may trim in batches).
* A run is *running* from ``record_started`` until it is recorded or forgotten,
  and only runs of the session in the current heartbeat count (a run an
  earlier leader left behind is settled by ``settle_orphans``, not counted).
* A run is counted once. A write that names a run (``run_id``: ``record_run``,
  ``record_missed``) counts it only if that same write removed the run's live
  row; once the row is gone (a new leader settled the run, or it was
  forgotten) the write counts nothing and returns ``False``. So when a leader
  that lost or handed over the scheduler finishes a run the new leader already
  settled, whichever wrote first is the one record of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

from .alert_records import AlertChange, AlertState, AlertSummary, Delivery
from .records import (
    ClaimedRun,
    ClaimStats,
    Command,
    CrashState,
    HostRecord,
    JobDefinition,
    JobRecord,
    LeadershipChange,
    LeaseRecord,
    MissedSlots,
    OperatorPause,
    OrphanedRun,
    RunInFlight,
    RunRecord,
    SchedulerRecord,
)


@runtime_checkable
class StateReader(Protocol):
    """The reads any worker makes: the leader's heartbeat and the published jobs with their stats."""

    def scheduler(self) -> SchedulerRecord | None:
        """The last heartbeat, or ``None`` if no scheduler ever ran here."""
        ...

    def jobs(self, critical_only: bool = False) -> list[JobRecord]:
        """The published jobs (or only the critical ones), in the order published, each with its stats."""
        ...

    def quarantined_jobs(self) -> list[str]:
        """Ids of the jobs in quarantine for crashing their worker, sorted."""
        ...

    # -- the run history as the status page draws it --
    def recent_runs(self, job_ids: Sequence[str], limit: int) -> dict[str, list[RunRecord]]:
        """Each of ``job_ids``' ``limit`` most recent runs, newest first, in one read (a job with none is absent)."""
        ...

    def runs_in_flight(self) -> list[RunInFlight]:
        """Every run not finished yet, oldest first: planned for a host to claim (no owner yet), or held by one."""
        ...

    def hosts(self) -> list[HostRecord]:
        """The fleet's executing processes (one per host, two while one hands over); ``[]`` on one host."""
        ...

    def run_counts(self, since: float) -> list[tuple[int, str, int]]:
        """``(minute, outcome, runs)`` of the runs in the history finished at ``since`` or later.

        ``minute`` is ``floor(at / 60)`` (epoch minutes). Only the kept history
        counts: a job's runs older than its ``history_size`` newest are gone.
        """
        ...

    # -- operators' commands and pauses (job control) --------------------------
    def command(self, command_id: int) -> Command | None:
        """One command, or ``None``."""
        ...

    def commands(self, job_id: str, limit: int = 20) -> list[Command]:
        """The job's last commands, newest first."""
        ...

    def operator_pauses(self) -> dict[str, OperatorPause]:
        """Every job an operator paused or resumed (the last word for each), by job id."""
        ...

    def pending_commands(self) -> list[Command]:
        """Commands not yet applied, oldest first (the leader polls this), each with its :attr:`~.records.Command.age`.

        The age is measured with the store's clock at this read (the clock that
        stamped ``requested_at``), so the leader never compares its own clock
        with another host's.
        """
        ...

    # -- the leader's reads -----------------------------------------------------
    def crash_state(self, job_id: str) -> CrashState:
        """How often in a row the job crashed its worker, and whether it is quarantined."""
        ...

    def job_count(self) -> int:
        """How many jobs are published."""
        ...

    def definition(self, job_id: str) -> JobDefinition | None:
        """One published job's definition, or ``None``."""
        ...

    def runs(self, job_id: str, limit: int | None = None) -> list[RunRecord]:
        """The job's most recent runs, newest first; ``limit`` defaults to the store's history size."""
        ...

    # -- alerts (worker_service.alerts) ------------------------------------------
    def alert_states(self) -> dict[str, AlertState]:
        """Every subject's alert state (what was last notified for it), by key."""
        ...

    def deliveries(self, limit: int = 20) -> list[Delivery]:
        """The newest notifications (one per change and channel), pending or not, newest first."""
        ...

    def alert_summary(self) -> AlertSummary:
        """Pending notifications, the oldest one's age (the store's clock), the last failure, the counts by outcome."""
        ...


@runtime_checkable
class FleetLedger(Protocol):
    """The fleet's lease and leadership log: a store shared by several hosts (PostgreSQL) only."""

    def lease(self) -> LeaseRecord | None:
        """The fleet's scheduler lease as the database sees it now, or ``None`` if never taken."""
        ...

    def leadership_changes(self, limit: int = 10) -> list[LeadershipChange]:
        """The last changes of the fleet's leader, newest first."""
        ...


@runtime_checkable
class RunClaims(Protocol):
    """How any host of a fleet takes the runs the leader planned: PostgreSQL only, never fenced by the lease.

    A planned run (``record_submitted`` with ``run_on``) has no owner. A host
    claims it with :meth:`claim_runs`, one statement, ``SKIP LOCKED``: no two
    hosts get the same run, and a host's claim is only granted while its own
    row (:meth:`renew_host`) is alive. The claim is the run's fence: its end is
    recorded with ``owner`` (``record_run``/``record_missed``), and counts only
    if the claim still holds. A host whose row expired (dead, frozen, cut off)
    has its runs settled ``lost`` by the leader (``settle_orphans``).
    """

    def renew_host(self, session: str, host: str, pid: int, threads: int, ttl: float, stopping: bool = False,
                   claims: ClaimStats | None = None) -> float:
        """Register or renew this executing process for ``ttl`` s of the database's clock; the seconds left on it.

        ``claims``: the process's claim counters so far, shown with its row (a claim itself writes no host row)."""
        ...

    def leave_host(self, session: str) -> None:
        """This process executes nothing any more (every run it claimed is recorded): its row goes."""
        ...

    def release_claim(self, run_id: int, session: str) -> None:
        """Give a run this session claimed back, planned again (this host's jobs file lacks the job)."""
        ...

    def mark_host_gone(self, session: str) -> None:
        """A process of the same machine saw ``session``'s process dead: its runs died with it (the leader settles
        them as crashed, killed or missed, not lost)."""
        ...

    def claim_runs(self, session: str, host: str, pid: int, limit: int, skip_jobs: Sequence[str],
                   at: float) -> list[ClaimedRun]:
        """Claim up to ``limit`` planned runs, oldest slot first, none of ``skip_jobs`` (jobs it cannot run).

        The jobs a host cannot run are few (a jobs file that differs), so they
        are named rather than the thousands it can; one it claims anyway is
        given back (:meth:`release_claim`) and skipped from then on.

        An every-host run is claimed only by its host, a retried lost run never
        by the host that lost it; ``at`` (this host's clock) is the run's start.
        """
        ...


@runtime_checkable
class CommandQueue(Protocol):
    """What any worker may write: an operator's command, for the leader to apply (never fenced)."""

    def submit_command(self, job_id: str, action: str, requested_by: str) -> Command:
        """Queue a command for the leader (any worker, not fenced); return it as queued.

        Its ``requested_at`` is stamped with the store's clock, never the
        submitting host's: the leader, on another host, judges its age.
        """
        ...


@runtime_checkable
class LeaderWriter(Protocol):
    """The leader's writes: a run's steps (the tracker), leading (the scheduler service), finishing commands.

    In a fleet each is fenced by the lease's epoch (see :meth:`StateStore.fenced`).
    """

    # -- a run's steps: the tracker ------------------------------------------
    def record_submitted(self, job_id: str, session: str, pid: int, scheduled_at: float,
                         next_run_time: float | None, trigger: str = "scheduled", requested_by: str | None = None,
                         command_id: int | None = None, host: str | None = None,
                         missed: MissedSlots | None = None, max_instances: int | None = None,
                         run_on: str | None = None, for_host: str | None = None, avoid_host: str | None = None,
                         retry_of: int | None = None, keep_next_run: bool = False) -> int | None:
        """Note a run handed to the executor and the job's next run time, in one write; return the run's id.

        With ``max_instances``, only if the job has fewer live runs than that
        (whoever holds them: a process finishing its last runs after a reload,
        another host, a planned run no host claimed yet); else nothing is
        written and the answer is ``None``. With ``run_on`` (``any`` or
        ``every-host``) the run is planned, not handed over: no session, pid or
        host until a host claims it (:class:`RunClaims`); ``for_host`` is the one
        host an every-host run is for, ``avoid_host`` the host a retried lost
        run (``retry_of``) must not go back to. ``keep_next_run``: the job's
        published next run time stays as it is (a retried lost run is no slot of its own).

        ``trigger``, ``requested_by`` and ``command_id`` (an operator's
        run-now) stay with the run and go into its history row when it is
        recorded. ``host`` (the submitting host) stays with the live run, for
        the leader that may have to settle it (:meth:`settle_orphans`).
        ``missed``: slots of the job that no process ran, folded into this run
        (APScheduler's ``coalesce``), counted in the same write: ``missed_count``
        grows by their count, the newest ``history_size`` of them each get a
        ``missed`` history row, and the job's ``last_problem`` becomes
        ``no_scheduler`` with the gap (``gap_missed``, ``gap_from``, ``gap_to``).
        """
        ...

    def record_started(self, run_id: int, at: float) -> bool:
        """The submitted run is entering the job's own code; whether it may.

        ``False``: the run's live row is gone (another leader settled it, or it
        was forgotten), nothing was written, and the job's code must not run:
        the run is already recorded (``missed`` or ``lost``) by whoever settled it.
        """
        ...

    def forget_run(self, run_id: int) -> None:
        """The executor is done with a run (whatever it recorded)."""
        ...

    def forget_runs_except(self, session: str, live: Iterable[int]) -> int:
        """Forget ``session``'s runs whose ids are not in ``live`` (finishes the store could not record); how many.

        Only the runs the session's process ran itself: a run its host claimed (``run_on``) is never one of them."""
        ...

    def record_run(
        self,
        job_id: str,
        outcome: str,
        at: float,
        duration: float | None,
        error_type: str | None = None,
        error_message: str | None = None,
        run_id: int | None = None,
        owner: str | None = None,
    ) -> bool:
        """Count a finished run (``success`` or ``error``), append it to the history, and forget ``run_id``.

        With ``owner`` (a host's claim), only while that session still holds the run.

        With ``run_id``, only if this write removed the run's live row (see the
        module docstring); whether it counted the run. A run with a ``duration``
        also sets the job's ``duration_p95`` in the same write: the nearest-rank
        95th percentile of the timed runs among the job's ``history_size``
        newest (this one included); a run without one leaves it alone.
        """
        ...

    def record_missed(self, job_id: str, at: float, run_id: int | None = None, owner: str | None = None) -> bool:
        """Count a run skipped for being later than its misfire grace time, and forget ``run_id``.

        With ``run_id``, only if this write removed the run's live row; whether it counted the run.
        """
        ...

    def record_max_instances(self, job_id: str, at: float) -> None:
        """Count a run skipped because the job was still running (``max_instances`` reached)."""
        ...

    # -- leading: the scheduler service --------------------------------------
    def mark_stopping(self, session: str) -> None:
        """The leader is stopping: a run of ``session`` still going when its process dies was killed at the stop."""
        ...

    def settle_orphans(self, session: str, lost: Callable[[OrphanedRun], bool | None] | None = None,
                       planned_age: float = 0.0) -> list[OrphanedRun]:
        """Record and forget every unfinished run of another session; return them, as recorded.

        A planned run no host claimed yet (any host may still claim it) is
        judged too, with ``session`` '', once it was planned ``planned_age``
        seconds ago or more (younger ones cannot be stale yet: the leader,
        which looks every second, is spared reading them); without ``lost``
        it is left alone.
        ``lost`` (the caller's judgement; a store cannot look at processes or
        hosts) says of each run whether its owner may still be alive out of
        reach (``True``), is gone (``False``), or is alive and keeps it
        (``None``: left alone, e.g. a process finishing its last runs after a
        reload, or a live host of the fleet). A ``True`` run is recorded as ``lost`` (a failure with its host and pid, that
        neither counts toward the job's crashes in a row nor ends them).
        Every other run is ``crashed``, ``killed`` or ``missed``
        (:attr:`OrphanedRun.outcome`); without ``lost``, every run is.
        """
        ...

    def set_crash_hold(self, job_id: str, held_until: float | None, quarantine_key: str | None = None) -> None:
        """Hold a job back until ``held_until``; with ``quarantine_key``, quarantine it (until its definition changes)."""
        ...

    def release_quarantine(self, job_id: str) -> None:
        """Lift a quarantine and forget the crashes in a row (the job was changed)."""
        ...

    def publish_jobs(self, definitions: Iterable[JobDefinition]) -> None:
        """Replace the published job list with ``definitions``, in that order; the stats of every job are kept."""
        ...

    def update_next_run(self, job_id: str, next_run_time: float | None, paused: bool) -> None:
        """Publish one job's next run time (after it ran, was paused or resumed)."""
        ...

    def beat(self, pid: int, hostname: str, state: str, timezone: str, started_at: float, session: str = "",
             clock_jump: tuple[float, float] | None = None) -> None:
        """Write the leader's heartbeat, stamped now, with the last wall-clock jump it saw (seconds, when)."""
        ...

    def clear_heartbeat(self, pid: int) -> None:
        """Mark the scheduler stopped, if ``pid`` is still the one that beats."""
        ...

    # -- operators' commands: the leader applies them -----------------------------
    def finish_command(self, command_id: int, state: str, status: int, outcome: str, at: float,
                       applied_by: str, run_id: int | None = None) -> None:
        """The leader applied (``done``) or could not apply (``failed``) a pending command (fenced)."""
        ...

    def set_operator_pause(self, job_id: str, paused: bool, by: str, at: float) -> None:
        """Record an operator's pause or resume; it survives leaders and restarts (fenced)."""
        ...

    # -- alerts: the leader records each change of state with its notifications -------
    def record_alert(self, change: AlertChange, channels: Sequence[str]) -> bool:
        """Set a subject's alert state and queue one notification per channel, in one write (fenced); whether it did.

        Written only if the subject's ``seq`` is still ``change.expected_seq``
        (0: no state yet): of two writers of the same change, one wins and
        queues it, the other writes nothing and gets ``False``.
        """
        ...


@runtime_checkable
class AlertOutbox(Protocol):
    """The notifications' outbox as a deliverer works it: any worker may claim and finish a row (never fenced)."""

    def claim_deliveries(self, claimer: str, hold: float, limit: int = 10) -> list[Delivery]:
        """Claim due pending notifications for ``hold`` seconds (the store's clock), oldest first; not fenced.

        A row claimed by another claim that has not ended is never returned,
        so no two deliverers hold one row; a claim whose holder died ends by
        itself and the row is claimed again.
        """
        ...

    def finish_delivery(self, delivery_id: int, claimer: str, outcome: str, error: str | None = None,
                        retry_in: float | None = None) -> bool:
        """End ``claimer``'s try: ``sent``, ``failed`` (for good), or ``retry`` in ``retry_in`` s; whether it held the claim."""
        ...


@runtime_checkable
class LeaderView(StateReader, LeaderWriter, Protocol):
    """What the scheduler's leader uses during its term: every read and its own writes (fenced in a fleet)."""


@runtime_checkable
class StateStore(StateReader, CommandQueue, AlertOutbox, LeaderWriter, Protocol):
    """A whole store: every read, the command queue and the leader's writes, shared by every worker of the host.

    A fleet's store (PostgreSQL) is also a :class:`FleetLedger`.
    """

    def fenced(self, epoch: int, session: str | None = None) -> LeaderWriter:
        """This store as the leader holding lease ``epoch`` (with lease session ``session``, if given) writes it.

        Every write of the returned view (the run steps, leading, finishing
        commands) checks in the same statement that ``epoch`` still holds the
        fleet's lease, and that ``session`` is its holder, and raises
        :class:`~.faults.FencedOut` (writing nothing) otherwise. A host-local
        store, whose election is a lock the kernel frees, returns itself.
        """
        ...
