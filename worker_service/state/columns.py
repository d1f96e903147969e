"""The columns both stores keep, in the order their reads map them onto the records (records.py).

One list for SQLite and PostgreSQL: a field added to a record is added here once,
and both stores' reads and writes follow.
"""

from __future__ import annotations

STAT_COLUMNS = (
    "success_count", "error_count", "missed_count", "max_instances_count", "duration_sum", "duration_min",
    "duration_max", "consecutive_failures", "last_run_at", "last_outcome", "last_success_at", "last_error_type",
    "last_error_message", "last_error_at", "runs_since_problem", "last_problem", "crash_count",
    "consecutive_crashes", "quarantined_at", "held_until", "duration_p95", "gap_missed", "gap_from", "gap_to",
)
DEFINITION_COLUMNS = (
    "id", "name", "trigger", "next_run_time", "misfire_grace_time", "max_instances", "executor", "paused",
    "critical", "interval_seconds", "max_runtime",
)
RUN_COLUMNS = ("job_id", "at", "outcome", "duration", "started_at", "error_type", "error_message", "trigger",
               "requested_by", "command_id")
COMMAND_COLUMNS = ("id", "job_id", "action", "requested_by", "requested_at", "state", "status", "outcome",
                   "finished_at", "applied_by", "run_id")
COMMANDS_KEPT = 100  # finished commands kept per job (pending ones are never trimmed)
LEADERSHIP_CHANGES_KEPT = 1000  # the fleet's leadership log keeps its newest changes (a handful a day: years)
