"""Judge a job's health against its schedule, the way cron monitors do.

Like healthchecks.io, a job whose next run time is past by more than a grace
period is overdue; like Sentry's cron monitors, it is unhealthy only after a
number of consecutive failures. ``now`` is read once by the caller.

=========== ==================================================================
state       when (first rule that matches wins)
=========== ==================================================================
unhealthy   quarantined: its worker died under it ``JOB_CRASH_LIMIT`` times
            in a row (see :mod:`.crash_policy`)
paused      the job is paused
unhealthy   a run has been going for longer than the job's ``max_runtime``
unhealthy   ``JOB_FAILURE_THRESHOLD`` consecutive failures, or overdue: its
            next run time is past by more than ``JOB_OVERDUE_GRACE`` (or its
            ``misfire_grace_time``, if longer)
pending     it has not run yet
warning     its last run failed or was lost with its leader (fewer failures
            than the threshold), or an error, miss, max-instances skip,
            crash, kill or lost run happened in its last
            ``WARNING_WINDOW_RUNS`` runs; the reason names which (slots no
            process ran, folded into one run: "5 runs missed at
            12:00:03–12:00:08 UTC while no scheduler ran")
healthy     otherwise
=========== ==================================================================

A run a new leader settled counts as a failed run: ``crashed`` (its worker
died under it), ``killed`` (at a stop) or ``lost`` (in a fleet, its leader
lost the scheduler while it ran: it may have finished on the old leader's
host). None is unhealthy on its own, only by the failures in a row or a
quarantine (crashes only).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from ..state.records import JobRecord
from ..vocabulary import JobState

__all__ = ["JobHealth", "JobPolicy", "JobState", "judge"]

WARNING_WINDOW_RUNS = 10


@dataclasses.dataclass(frozen=True)
class JobHealth:
    state: JobState
    reason: str | None = None


# What the last problem was, in the words of a reason.
PROBLEM_WORDS = {
    "error": "a failed run",
    "missed": "a missed run (later than its misfire grace time)",
    "max_instances": "a run skipped at max_instances (the previous one was still running)",
    "crashed": "a run whose worker died under it",
    "killed": "a run killed when the service stopped",
    "lost": "a run lost with its leader (it may have finished on the old leader's host)",
    "no_scheduler": "runs missed while no scheduler ran",
}
LAST_RUN_WORDS = {
    "crashed": "its worker died while it ran",
    "killed": "it was killed when the service stopped",
    "lost": "its leader lost the scheduler while it ran; it may have finished on the old leader's host",
}


@dataclasses.dataclass(frozen=True)
class JobPolicy:
    """The settings the rules above read, picked out of the settings once: one verdict for /health, /status, /metrics."""

    failure_threshold: int
    overdue_grace: float

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> JobPolicy:
        """The policy of ``JOB_FAILURE_THRESHOLD`` and ``JOB_OVERDUE_GRACE``."""
        return cls(failure_threshold=settings["JOB_FAILURE_THRESHOLD"], overdue_grace=settings["JOB_OVERDUE_GRACE"])

    def judge(self, record: JobRecord, now: float) -> JobHealth:
        """Return the job's state and, unless healthy, why (the table in the module docstring)."""
        return judge(record, now, self.failure_threshold, self.overdue_grace)

    def judge_all(self, records: list[JobRecord], now: float) -> list[JobHealth]:
        """Each job's verdict at one ``now``, in order."""
        return [judge(record, now, self.failure_threshold, self.overdue_grace) for record in records]


def judge(record: JobRecord, now: float, failure_threshold: int, overdue_grace: float) -> JobHealth:
    """Return the job's state and, unless healthy, why."""
    definition = record.definition
    if record.quarantined_at is not None:
        return JobHealth(JobState.UNHEALTHY, f"quarantined: its worker died under it {record.consecutive_crashes} "
                                             "times in a row; change the job and reload to release it")
    if definition.paused:
        return JobHealth(JobState.PAUSED, "paused")
    if record.running_since is not None and definition.max_runtime is not None:
        running_for = now - record.running_since
        if running_for > definition.max_runtime:
            return JobHealth(JobState.UNHEALTHY, f"running too long: for {_seconds(running_for)} s, over "
                                                 f"max_runtime {_seconds(definition.max_runtime)} s")
    if record.consecutive_failures >= failure_threshold:
        return JobHealth(JobState.UNHEALTHY, f"{record.consecutive_failures} consecutive failures"
                                             f" (last: {_last_failure(record)})")
    grace = max(overdue_grace, definition.misfire_grace_time or 0.0)
    if definition.next_run_time is not None and now - definition.next_run_time > grace:
        late = now - definition.next_run_time
        return JobHealth(JobState.UNHEALTHY, f"overdue: next run was due {late:.0f} s ago")
    if record.runs == 0 and record.missed_count == 0 and record.max_instances_count == 0:
        return JobHealth(JobState.PENDING, "not run yet")
    if record.last_outcome == "error":
        verb = "lost" if record.last_problem == "lost" else "failed"  # a lost run may have succeeded
        return JobHealth(JobState.WARNING, f"last run {verb}: {_last_failure(record)} "
                                           f"({record.consecutive_failures} in a row)")
    if record.runs_since_problem is not None and record.runs_since_problem < WARNING_WINDOW_RUNS:
        if record.last_problem == "no_scheduler" and record.gap_missed and record.gap_from is not None:
            gap = gap_words(record.gap_missed, record.gap_from, record.gap_to or record.gap_from, now)
            return JobHealth(JobState.WARNING, f"{gap} while no scheduler ran")
        problem = PROBLEM_WORDS.get(record.last_problem or "", "a failed, missed or skipped run")
        return JobHealth(JobState.WARNING, f"{problem} within the last {WARNING_WINDOW_RUNS} runs")
    return JobHealth(JobState.HEALTHY)


def gap_words(count: int, first: float, last: float, now: float | None = None) -> str:
    """"5 runs missed at 12:00:03–12:00:08 UTC": slots no process ran (the date too unless it is ``now``'s day)."""
    def moment(epoch: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(epoch, dt.UTC)

    today = moment(now).date() if now is not None else None
    shape = "%H:%M:%S" if moment(first).date() == moment(last).date() == today else "%Y-%m-%d %H:%M:%S"
    span = moment(first).strftime(shape)
    if count > 1:
        same_day = moment(first).date() == moment(last).date()
        span += "–" + moment(last).strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")
    return f"{count:,} run{'s' if count != 1 else ''} missed at {span} UTC"


def _seconds(value: float) -> str:
    """3,600 for long spans, 0.5 for short ones."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.3g}"


def _last_failure(record: JobRecord) -> str:
    if record.last_problem in LAST_RUN_WORDS:
        return LAST_RUN_WORDS[record.last_problem]
    return record.last_error_type or "error"
