"""How each kind of run changes a job's stats: the counting rules of both stores, written once in plain SQL.

A rule maps a column of ``job_stats`` to its new value, in terms of the old
row ``{o}`` and named parameters (``:duration``). The SQL is what SQLite and
PostgreSQL both understand; :func:`sqlite` and :func:`postgresql` render it for
each: SQLite binds ``:name`` itself, PostgreSQL gets ``%(name)s`` cast to the
parameter's type (an untyped ``None`` has no type of its own). Each store
applies a rule in the same write that appends the run to the history, so the
p95 is over the history as it is after the run; the statement does not see the
row it adds, so the window is the job's ``:keep`` newest runs plus this one.
"""

from __future__ import annotations

import re

from .ddl import cast
from .tables import COUNT, JOB_STATS, REAL, TEXT

# The parameters a rule may name, with their types (PostgreSQL casts them).
PARAMETERS = {"job_id": TEXT, "at": REAL, "outcome": TEXT, "duration": REAL, "error_type": TEXT,
              "error_message": TEXT, "keep": COUNT, "gap_count": COUNT, "gap_from": REAL, "gap_to": REAL}

# The nearest-rank p95 (the ceil(0.95 n)-th smallest, as percentile_disc) of the timed runs among the job's
# :keep newest runs and this one. Its offset ceil(0.95 n) - 1 in integers, (95 n - 1) / 100, has no float to round
# (and is 0, never negative, for no timed run: both databases truncate the division towards zero).
_P95 = """(WITH timed AS (SELECT duration FROM (SELECT duration FROM (SELECT duration FROM {runs} WHERE job_id = :job_id
                                                                ORDER BY seq DESC LIMIT :keep) AS newest
                                          UNION ALL SELECT :duration) AS history
                       WHERE duration IS NOT NULL)
           SELECT duration FROM timed ORDER BY duration
           LIMIT 1 OFFSET (SELECT (95 * count(*) - 1) / 100 FROM timed))"""
# A run without a duration (its process died) leaves the durations alone.
_DURATIONS = {
    "duration_sum": "{o}.duration_sum + coalesce(:duration, 0)",
    "duration_min": "CASE WHEN {o}.duration_min IS NULL OR :duration < {o}.duration_min THEN :duration"
                    " ELSE {o}.duration_min END",
    "duration_max": "CASE WHEN {o}.duration_max IS NULL OR :duration > {o}.duration_max THEN :duration"
                    " ELSE {o}.duration_max END",
    "duration_p95": "CASE WHEN :duration IS NULL THEN {o}.duration_p95 ELSE " + _P95 + " END",
}
SUCCESS = {
    "success_count": "{o}.success_count + 1", **_DURATIONS,
    "consecutive_failures": "0", "consecutive_crashes": "0", "last_run_at": ":at",
    "last_outcome": "'success'", "last_success_at": ":at",
    "runs_since_problem": "{o}.runs_since_problem + 1",  # still NULL if the job never had a problem
}
FAILURE = {  # an error, a run whose process died under it (crashed, or killed at a stop), or one lost with its leader
    "error_count": "{o}.error_count + 1", **_DURATIONS,
    "consecutive_failures": "{o}.consecutive_failures + 1", "last_run_at": ":at",
    "last_outcome": "'error'", "last_error_type": ":error_type", "last_error_message": ":error_message",
    "last_error_at": ":at", "runs_since_problem": "0", "last_problem": ":outcome",
    "crash_count": "{o}.crash_count + CASE WHEN :outcome = 'crashed' THEN 1 ELSE 0 END",
    # a lost run (its leader lost the scheduler) neither counts toward the crashes in a row nor ends them
    "consecutive_crashes": "CASE :outcome WHEN 'crashed' THEN {o}.consecutive_crashes + 1"
                           " WHEN 'lost' THEN {o}.consecutive_crashes ELSE 0 END",
}
SKIP = {  # missed (later than its grace time) or max_instances (still running): a problem, not a run
    "missed_count": "{o}.missed_count + CASE WHEN :outcome = 'missed' THEN 1 ELSE 0 END",
    "max_instances_count": "{o}.max_instances_count + CASE WHEN :outcome = 'max_instances' THEN 1 ELSE 0 END",
    "runs_since_problem": "0", "last_problem": ":outcome",
}
GAP = {  # slots no process ran (folded into the run being submitted): counted as missed, the gap kept
    "missed_count": "{o}.missed_count + :gap_count", "runs_since_problem": "0", "last_problem": "'no_scheduler'",
    "gap_missed": ":gap_count", "gap_from": ":gap_from", "gap_to": ":gap_to",
}
# PostgreSQL works out an upsert's proposed row whether or not it conflicts: its update takes the p95 from that row
# (EXCLUDED) rather than reading the window a second time (twice the cost at a long JOB_HISTORY_SIZE).
P95_FROM_PROPOSED_ROW = "CASE WHEN :duration IS NULL THEN {o}.duration_p95 ELSE EXCLUDED.duration_p95 END"
KINDS = {"success": SUCCESS, "failure": FAILURE, "skip": SKIP}

_PARAMETER = re.compile(r"(?<![:\w]):([a-z_]+)\b")


def sqlite(rule: dict[str, str]) -> str:
    """``col = expression, ...`` for an ``UPDATE job_stats`` in SQLite (parameters bound by name)."""
    return ", ".join(f"{column} = {expression.format(o='job_stats', runs='job_runs')}"
                     for column, expression in rule.items())


def postgresql(expression: str, old_row: str) -> str:
    """``expression`` for PostgreSQL, the old row called ``old_row``; ``{s}`` is left for the schema."""
    text = expression.format(o=old_row, runs="{s}.job_runs")
    return _PARAMETER.sub(lambda match: f"%({match[1]})s::{cast(PARAMETERS[match[1]])}", text)


def postgresql_start(column: str) -> str:
    """A stats column's value before a job's first count (its default), cast for PostgreSQL."""
    described = JOB_STATS.column(column)
    value = "NULL" if described.default is None else str(described.default)
    return f"{value}::{cast(described.type)}"
