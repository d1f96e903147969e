"""Plain records the state store returns. Times are epoch seconds (UTC)."""

from __future__ import annotations

import dataclasses

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
class RunRecord:
    """One finished (or missed) run in a job's bounded history."""

    job_id: str
    at: float
    outcome: str
    duration: float | None


@dataclasses.dataclass(frozen=True)
class CrashState:
    """How a job has treated its worker: crashes in a row, and its quarantine if any."""

    consecutive: int = 0
    quarantined_at: float | None = None
    quarantine_key: str | None = None


@dataclasses.dataclass(frozen=True)
class OrphanedRun:
    """A run a previous leader submitted and never finished: its process died (or was killed at a stop)."""

    job_id: str
    pid: int
    scheduled_at: float
    started_at: float | None
    stopping: bool

    @property
    def outcome(self) -> str:
        """``crashed`` (it was running when its process died), ``killed`` (at a stop), or ``missed`` (never started)."""
        if self.started_at is None:
            return "missed"
        return "killed" if self.stopping else "crashed"


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
        return self.state != "stopped" and self.heartbeat_at > 0

    def is_fresh(self, heartbeat_interval: float, age: float) -> bool:
        """Whether a scheduler still beats: :attr:`has_beaten`, and ``age`` is within 3 heartbeat intervals.

        ``age`` is the heartbeat's age as the reader measures it; the service's
        readers measure it on their monotonic clock across wall-clock jumps
        (:mod:`worker_service.scheduler.heartbeat`).
        """
        return self.has_beaten and age <= HEARTBEATS_BEFORE_STALE * heartbeat_interval
