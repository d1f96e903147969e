"""Judge a job's health against its schedule, the way cron monitors do.

Like healthchecks.io, a job whose next run time is past by more than a grace
period is overdue; like Sentry's cron monitors, it is unhealthy only after a
number of consecutive failures. ``now`` is read once by the caller.

=========== ==================================================================
state       when (first rule that matches wins)
=========== ==================================================================
paused      the job is paused
unhealthy   ``JOB_FAILURE_THRESHOLD`` consecutive failures, or overdue: its
            next run time is past by more than ``JOB_OVERDUE_GRACE`` (or its
            ``misfire_grace_time``, if longer)
pending     it has not run yet
warning     its last run failed (fewer failures than the threshold), or an
            error, miss or max-instances skip happened in its last
            ``WARNING_WINDOW_RUNS`` runs
healthy     otherwise
=========== ==================================================================
"""

from __future__ import annotations

import dataclasses
import enum

from ..state.records import JobRecord

WARNING_WINDOW_RUNS = 10


class JobState(enum.StrEnum):
    HEALTHY = "healthy"
    PENDING = "pending"
    WARNING = "warning"
    UNHEALTHY = "unhealthy"
    PAUSED = "paused"


@dataclasses.dataclass(frozen=True)
class JobHealth:
    state: JobState
    reason: str | None = None


def judge(record: JobRecord, now: float, failure_threshold: int, overdue_grace: float) -> JobHealth:
    """Return the job's state and, unless healthy, why."""
    definition = record.definition
    if definition.paused:
        return JobHealth(JobState.PAUSED, "paused")
    if record.consecutive_failures >= failure_threshold:
        return JobHealth(JobState.UNHEALTHY, f"{record.consecutive_failures} consecutive failures")
    grace = max(overdue_grace, definition.misfire_grace_time or 0.0)
    if definition.next_run_time is not None and now - definition.next_run_time > grace:
        late = now - definition.next_run_time
        return JobHealth(JobState.UNHEALTHY, f"overdue: next run was due {late:.0f} s ago")
    if record.runs == 0 and record.missed_count == 0 and record.max_instances_count == 0:
        return JobHealth(JobState.PENDING, "not run yet")
    if record.last_outcome == "error":
        return JobHealth(JobState.WARNING, f"last run failed ({record.consecutive_failures} in a row)")
    if record.runs_since_problem is not None and record.runs_since_problem < WARNING_WINDOW_RUNS:
        return JobHealth(JobState.WARNING, f"an error or missed run within the last {WARNING_WINDOW_RUNS} runs")
    return JobHealth(JobState.HEALTHY)
