"""Plain records the state store returns. Times are epoch seconds (UTC)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..host_identity import host_label
from ..vocabulary import SchedulerState

HEARTBEATS_BEFORE_STALE = 3  # a scheduler is gone after this many missed heartbeats


@dataclasses.dataclass(frozen=True)
class JobDefinition:
    """A job as the leader publishes it: what any worker needs to report on it."""

    id: str
    name: str
    trigger: str
    next_run_time: float | None
    misfire_grace_time: float | None
    max_instances: int
    executor: str
    paused: bool
    critical: bool
    interval_seconds: float | None = None
    max_runtime: float | None = None


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """A published job joined with its execution stats."""

    definition: JobDefinition
    success_count: int = 0
    error_count: int = 0
    missed_count: int = 0
    max_instances_count: int = 0
    duration_sum: float = 0.0
    duration_min: float | None = None
    duration_max: float | None = None
    duration_p95: float | None = None  # nearest rank, over the timed runs among the job's history_size newest
    consecutive_failures: int = 0
    last_run_at: float | None = None
    last_outcome: str | None = None
    last_success_at: float | None = None
    last_error_type: str | None = None
    last_error_message: str | None = None
    last_error_at: float | None = None
    runs_since_problem: int | None = None
    last_problem: str | None = None
    crash_count: int = 0
    consecutive_crashes: int = 0
    quarantined_at: float | None = None
    held_until: float | None = None
    running_count: int = 0
    running_since: float | None = None
    # The last gap of slots no process ran (last_problem "no_scheduler"): how many, the first and the last slot.
    gap_missed: int | None = None
    gap_from: float | None = None
    gap_to: float | None = None

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def runs(self) -> int:
        """Finished runs (successes and errors)."""
        return self.success_count + self.error_count

    @property
    def avg_duration(self) -> float | None:
        return self.duration_sum / self.runs if self.runs else None


@dataclasses.dataclass(frozen=True)
class MissedSlots:
    """Slots of a job that no process ran, found when the run of a later slot is submitted.

    APScheduler folds every slot due while no scheduler could run it (a freeze,
    a failover, a store outage) into one run (``coalesce``); the slots before
    the one that runs are these. ``count`` of them, from ``first`` to ``last``
    (epoch seconds); ``recent`` holds the newest slot times (oldest first, at
    most a history's worth) for the history rows.
    """

    count: int
    first: float
    last: float
    recent: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One finished (or missed) run in a job's bounded history.

    ``at`` is when it finished (or was found missed); ``started_at`` when it
    entered the job's code, if it did. ``trigger`` is ``scheduled`` or
    ``manual`` (an operator's run-now: ``requested_by`` and ``command_id``
    say who and which command). ``error_message`` is already redacted.
    """

    job_id: str
    at: float
    outcome: str
    duration: float | None
    started_at: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    trigger: str = "scheduled"
    requested_by: str | None = None
    command_id: int | None = None
    host: str | None = None  # the host identity that ran it (fleet: the claiming host), if known


@dataclasses.dataclass(frozen=True)
class CrashState:
    """How a job has treated its worker: crashes in a row, and its quarantine if any."""

    consecutive: int = 0
    quarantined_at: float | None = None
    quarantine_key: str | None = None


@dataclasses.dataclass(frozen=True)
class OrphanedRun:
    """A run an earlier leader submitted and never finished, as a new leader finds it.

    ``host`` is the host that submitted it (``None``: recorded by a version
    that did not keep it). ``lost`` is the new leader's finding that the run's
    leader may still be alive: it was on another host, or its process on this
    host still exists (a host cut off from the database or frozen past its
    lease). Such a run was not seen to die; it may have finished where it ran.
    """

    job_id: str
    pid: int
    scheduled_at: float
    started_at: float | None
    stopping: bool
    host: str | None = None
    lost: bool = False
    run_id: int | None = None
    session: str | None = None  # the owner's session ('' for a planned run no host claimed yet)
    for_host: str | None = None  # an every-host run's host
    trigger: str = "scheduled"
    retry_of: int | None = None
    held_since: float | None = None  # when its owner took it (claimed, or submitted), or it was planned; store's clock

    @property
    def outcome(self) -> str:
        """``lost`` (its leader lost the scheduler, see above), else ``missed`` (never started), ``killed`` (it
        was running at a stop) or ``crashed`` (it was running when its process died)."""
        if self.lost:
            return "lost"
        if self.started_at is None:
            return "missed"
        return "killed" if self.stopping else "crashed"

    def judged(self, lost: Callable[[OrphanedRun], bool | None] | None) -> OrphanedRun | None:
        """This run, found :attr:`lost` if the caller's ``lost`` says its owner may still be alive somewhere out of
        reach; ``None`` if ``lost`` says its owner is alive and keeps it (it is not an orphan: leave it alone)."""
        if lost is None:
            return self
        verdict = lost(self)
        if verdict is None:
            return None
        return dataclasses.replace(self, lost=True) if verdict else self

    @property
    def error(self) -> tuple[str, str] | None:
        """``(error type, message)`` its history row carries; ``None`` for a missed run (a skip, not a failure)."""
        outcome = self.outcome
        if outcome == "lost":
            where = f"host {host_label(self.host)}" if self.host else "another host"
            if self.started_at is None:
                return "LeaderLost", (f"its leader lost the scheduler after handing it to its worker on {where}"
                                      f" (pid {self.pid}); it may have run there")
            return "LeaderLost", (f"its leader lost the scheduler while it ran on {where} (pid {self.pid});"
                                  " it may have finished there")
        if outcome == "crashed":
            return "WorkerDied", f"its worker (pid {self.pid}) died while it ran"
        if outcome == "killed":
            return "KilledAtStop", (f"still running when the service stopped; killed at the graceful timeout"
                                    f" (pid {self.pid})")
        return None


@dataclasses.dataclass(frozen=True)
class SchedulerRecord:
    """The leader's last heartbeat."""

    pid: int
    hostname: str
    state: str
    timezone: str
    started_at: float
    heartbeat_at: float
    session: str | None = None
    clock_jump_seconds: float | None = None
    clock_jump_at: float | None = None

    @property
    def has_beaten(self) -> bool:
        """A heartbeat was written, and the leader has not marked itself stopped."""
        return self.state != SchedulerState.STOPPED and self.heartbeat_at > 0

    def is_fresh(self, heartbeat_interval: float, age: float) -> bool:
        """Whether a scheduler still beats: :attr:`has_beaten`, and ``age`` is within 3 heartbeat intervals.

        ``age`` is the heartbeat's age as the reader measures it; the service's
        readers measure it on their monotonic clock across wall-clock jumps
        (:mod:`worker_service.scheduler.heartbeat`).
        """
        return self.has_beaten and age <= HEARTBEATS_BEFORE_STALE * heartbeat_interval


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    """The fleet's scheduler lease (PostgreSQL store only), read with the database's clock.

    ``epoch`` is the fencing token: it grows at every change of holder and is
    never issued twice, even across a schema dropped and made again or a
    database restored from a backup: a new lease row starts at the database
    clock's milliseconds since 1970, and a change of holder takes the larger of
    the last epoch + 1 and that clock (:mod:`.pg_lease`). ``expires_in`` is ``expires_at - now()`` on the database's clock at the
    read (negative once expired), so no host's clock is ever compared with it.
    """

    epoch: int
    holder_host: str | None
    holder_pid: int | None
    holder_session: str | None
    acquired_at: float | None
    renewed_at: float | None
    expires_at: float
    expires_in: float
    released: bool = False

    @property
    def live(self) -> bool:
        """A holder has it and it has not run out or been released."""
        return self.holder_session is not None and not self.released and self.expires_in > 0


@dataclasses.dataclass(frozen=True)
class LeadershipChange:
    """One change of the fleet's leader: when, from whom to whom, and why.

    ``reason``: ``first`` (no holder before), ``released`` (a graceful stop or
    reload gave it up), ``handover`` (the holder asked another host to take
    over before it stopped), ``expired`` (its holder stopped renewing) or
    ``lost`` (a holder found it had been taken while it could not renew).
    """

    at: float
    epoch: int
    reason: str
    from_host: str | None = None
    from_pid: int | None = None
    to_host: str | None = None
    to_pid: int | None = None


@dataclasses.dataclass(frozen=True)
class Command:
    """An operator's command on a job (``run``, ``pause``, ``resume``), as workers submit it and the leader applies it.

    ``requested_at`` is stamped by the store's clock when the command is
    queued. ``state`` is ``pending`` until the leader takes it, then ``done``
    or ``failed``; ``status`` is the HTTP status the outcome maps to (200, 404,
    409, ...) and ``outcome`` a short sentence (``"started"``, ``"already
    running at max_instances (1)"``). ``run_id`` is the run a run-now started.
    ``age`` is how old the command was at the read, by the store's clock
    (``pending_commands`` sets it, for the leader's expiry; other reads leave
    it ``None``). It is a fact of the read, not of the command: two reads of
    one command compare equal.
    """

    id: int
    job_id: str
    action: str
    requested_by: str
    requested_at: float
    state: str = "pending"
    status: int | None = None
    outcome: str | None = None
    finished_at: float | None = None
    applied_by: str | None = None
    run_id: int | None = None
    age: float | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class OperatorPause:
    """An operator's pause (``paused``) or resume (not ``paused``) of a job; it wins over the jobs file's ``paused``."""

    job_id: str
    paused: bool
    by: str
    at: float


@dataclasses.dataclass(frozen=True)
class HostRecord:
    """One executing process of the fleet (a host's candidate), as its row in the store says.

    ``host`` is the host identity (``hostname#boot.instance``); ``claimed`` the
    runs it holds now; ``age`` the seconds since its last renewal and
    ``expires_in`` the seconds left on it, both by the store's clock. A row
    that has expired is kept for a while (``alive`` False): its runs were, or
    are about to be, settled ``lost``. ``claim_wait_*`` measure how long its
    claimed runs waited between being planned and claimed (the database's clock).
    """

    session: str
    host: str
    pid: int
    threads: int
    claimed: int
    started_at: float
    age: float
    expires_in: float
    stopping: bool
    claims: int = 0
    claim_wait_sum: float = 0.0
    claim_wait_max: float | None = None
    lost: int = 0
    gone: bool = False  # a process of its machine saw it dead

    @property
    def alive(self) -> bool:
        """Its row has not expired, and its process was not seen dead."""
        return self.expires_in > 0 and not self.gone

    @property
    def free(self) -> int:
        """Threads it could claim with now (none while it stops)."""
        return 0 if self.stopping or not self.alive else max(self.threads - self.claimed, 0)


@dataclasses.dataclass(frozen=True)
class RunInFlight:
    """A run not finished yet: planned and waiting for a host (``session`` ''), or held by a process of ``host``."""

    run_id: int
    job_id: str
    session: str
    pid: int
    host: str | None
    scheduled_at: float
    submitted_at: float
    started_at: float | None
    trigger: str = "scheduled"
    run_on: str | None = None
    for_host: str | None = None
    stopping: bool = False

    @property
    def claimed(self) -> bool:
        """A process holds it (it ran from the start on the leader, or a host claimed it)."""
        return self.session != ""


@dataclasses.dataclass(frozen=True)
class ClaimedRun:
    """A planned run this host just claimed: it runs it now, and records its end fenced by the claim."""

    run_id: int
    job_id: str
    scheduled_at: float
    trigger: str
    requested_by: str | None
    command_id: int | None
    retry_of: int | None
    waited: float  # seconds between planned and claimed, by the database's clock
    epoch: int | None = None  # the lease epoch at the claim: the fencing token of the run's own writes
