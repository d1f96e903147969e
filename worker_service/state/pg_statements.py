"""The SQL of the PostgreSQL state store: one statement per call, each write carrying its fence.

Every write is ONE statement (data-modifying CTEs), run in autocommit, so no
transaction is ever held open across a round trip: a leader frozen (SIGSTOP)
between two statements holds no lock that could block another host.

Fencing: a write of the leader holding lease ``epoch`` starts with

    fence AS MATERIALIZED (SELECT 1 FROM lease WHERE name = 'scheduler' AND epoch = %(epoch)s
                           AND (%(holder)s IS NULL OR holder_session = %(holder)s) FOR SHARE)

and every change in it is conditioned on ``EXISTS (SELECT 1 FROM fence)``.
``holder`` is the lease session the leader holds it with, when the view knows
it: an epoch is never issued twice (:mod:`.pg_lease`), and the session makes
the check about the holder, not only a number.
``FOR SHARE`` makes an acquire (an ``UPDATE`` of the lease row) wait for the
write to commit, and a write that waited for an acquire re-reads the row and
finds the new epoch: either the write lands before the new epoch exists, or it
writes nothing. The statement returns ``admitted`` so the caller can raise
:class:`FencedOut`. The unfenced variant's fence is one constant row.

Parameters are cast in the SQL (``%(x)s::float8``): ``None`` has no type of its
own, and an untyped parameter in ``INSERT ... SELECT`` would be taken as text.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import pg_alerts
from .columns import COMMAND_COLUMNS, DEFINITION_COLUMNS, STAT_COLUMNS

_FENCED = ("fence AS MATERIALIZED (SELECT 1 FROM {s}.lease WHERE name = 'scheduler' AND epoch = %(epoch)s::bigint"
           " AND (%(holder)s::text IS NULL OR holder_session = %(holder)s::text) FOR SHARE)")
_UNFENCED = "fence AS MATERIALIZED (SELECT 1)"
_ADMITTED = "EXISTS (SELECT 1 FROM fence)"

_DEFAULTS = {
    "success_count": "0::bigint", "error_count": "0::bigint", "missed_count": "0::bigint",
    "max_instances_count": "0::bigint", "duration_sum": "0::float8", "duration_min": "NULL::float8",
    "duration_max": "NULL::float8", "consecutive_failures": "0::bigint", "last_run_at": "NULL::float8",
    "last_outcome": "NULL::text", "last_success_at": "NULL::float8", "last_error_type": "NULL::text",
    "last_error_message": "NULL::text", "last_error_at": "NULL::float8", "runs_since_problem": "NULL::bigint",
    "last_problem": "NULL::text", "crash_count": "0::bigint", "consecutive_crashes": "0::bigint",
    "quarantined_at": "NULL::float8", "quarantine_key": "NULL::text", "held_until": "NULL::float8",
    "duration_p95": "NULL::float8", "gap_missed": "NULL::bigint", "gap_from": "NULL::float8", "gap_to": "NULL::float8",
}
_DURATION = {  # least/greatest ignore NULLs: a run without a duration leaves min and max alone
    "duration_sum": "{o}.duration_sum + coalesce(%(duration)s::float8, 0)",
    "duration_min": "least({o}.duration_min, %(duration)s::float8)",
    "duration_max": "greatest({o}.duration_max, %(duration)s::float8)",
    # a timed run: the p95 of the job's history with it (the window CTE); an untimed one leaves it alone
    "duration_p95": "CASE WHEN %(duration)s::float8 IS NULL THEN {o}.duration_p95 ELSE (SELECT p95 FROM window_p95) END",
}
# The p95 duration (nearest rank: percentile_disc) over the job's history as it is after this run: its %(keep)s
# newest runs (history_size - 1; the snapshot does not see the row this statement adds) and this one, the timed ones.
_WINDOW_P95 = """
window_p95 AS (SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY w.duration) AS p95
               FROM ((SELECT duration FROM {s}.job_runs WHERE job_id = %(job_id)s::text
                      ORDER BY seq DESC LIMIT %(keep)s::bigint)
                     UNION ALL SELECT %(duration)s::float8) w WHERE w.duration IS NOT NULL),"""
# How each kind of run changes a job's stats, in terms of the old row {o}.
_SUCCESS = {
    "success_count": "{o}.success_count + 1", **_DURATION,
    "consecutive_failures": "0", "consecutive_crashes": "0", "last_run_at": "%(at)s::float8",
    "last_outcome": "'success'", "last_success_at": "%(at)s::float8",
    "runs_since_problem": "{o}.runs_since_problem + 1",
}
_FAILURE = {  # an error, a run whose process died under it (crashed, or killed at a stop), or one lost with its leader
    "error_count": "{o}.error_count + 1", **_DURATION,
    "consecutive_failures": "{o}.consecutive_failures + 1", "last_run_at": "%(at)s::float8",
    "last_outcome": "'error'", "last_error_type": "%(error_type)s::text",
    "last_error_message": "%(error_message)s::text", "last_error_at": "%(at)s::float8",
    "runs_since_problem": "0", "last_problem": "%(outcome)s::text",
    "crash_count": "{o}.crash_count + (%(outcome)s::text = 'crashed')::int",
    # a lost run (its leader lost the scheduler) neither counts toward the crashes in a row nor ends them
    "consecutive_crashes": "CASE %(outcome)s::text WHEN 'crashed' THEN {o}.consecutive_crashes + 1"
                           " WHEN 'lost' THEN {o}.consecutive_crashes ELSE 0 END",
}
_SKIP = {  # missed (later than its grace time) or max_instances (still running): a problem, not a run
    "missed_count": "{o}.missed_count + (%(outcome)s::text = 'missed')::int",
    "max_instances_count": "{o}.max_instances_count + (%(outcome)s::text = 'max_instances')::int",
    "runs_since_problem": "0", "last_problem": "%(outcome)s::text",
}
KINDS = {"success": _SUCCESS, "failure": _FAILURE, "skip": _SKIP}


def _count_run(changes: dict[str, str]) -> str:
    """One finished, missed or skipped run: forget its running row, count it, append it, trim the history.

    ``%(claim)s``: count it only if this statement removed its running row (a
    finish that names its run, or a new leader settling an orphan: whichever
    of the run's leader and a settler writes first counts it, once).
    The trim runs every 16th run of the job and keeps ``%(keep)s`` older runs
    plus this one (the snapshot does not see the row this statement adds).
    A finished run also sets the job's ``duration_p95`` over that same window
    (``_WINDOW_P95``), in this statement: fenced and claimed as the rest.
    """
    columns = ", ".join(changes)
    first = ", ".join(template.format(o="d") for template in changes.values())
    update = ", ".join(f"{column} = {template.format(o='s')}" for column, template in changes.items())
    defaults = ", ".join(f"{value} AS {column}" for column, value in _DEFAULTS.items())
    window = _WINDOW_P95 if "duration_p95" in changes else ""
    return f"""
WITH {{fence}},{window}
gone AS (DELETE FROM {{s}}.job_running WHERE run_id = %(run_id)s::bigint AND {_ADMITTED}
         RETURNING started_at, trigger, requested_by, command_id),
go AS MATERIALIZED (SELECT {_ADMITTED} AND (NOT %(claim)s::boolean OR EXISTS (SELECT 1 FROM gone)) AS ok),
stats AS (INSERT INTO {{s}}.job_stats AS s (job_id, {columns})
          SELECT %(job_id)s::text, {first} FROM (SELECT {defaults}) d WHERE (SELECT ok FROM go)
          ON CONFLICT (job_id) DO UPDATE SET {update}
          RETURNING s.success_count + s.error_count + s.missed_count + s.max_instances_count AS recorded),
added AS (INSERT INTO {{s}}.job_runs (job_id, at, outcome, duration, started_at, error_type, error_message, trigger,
                                      requested_by, command_id)
          SELECT %(job_id)s::text, %(at)s::float8, %(outcome)s::text, %(duration)s::float8,
                 coalesce(g.started_at, %(started_at)s::float8), %(error_type)s::text, %(error_message)s::text,
                 coalesce(g.trigger, 'scheduled'), g.requested_by, g.command_id
          FROM (SELECT 1) one LEFT JOIN gone g ON true WHERE (SELECT ok FROM go)),
trimmed AS (DELETE FROM {{s}}.job_runs WHERE job_id = %(job_id)s::text AND (SELECT recorded FROM stats) %% 16 = 0
            AND seq <= coalesce((SELECT seq FROM {{s}}.job_runs WHERE job_id = %(job_id)s::text
                                 ORDER BY seq DESC OFFSET %(keep)s::bigint LIMIT 1), -1))
SELECT {_ADMITTED}, (SELECT ok FROM go)"""


# Slots no process ran, folded into the run being submitted (%(gap_count)s of them, 0 for none): counted as missed,
# one history row each for %(gap_slots)s (the newest, at most history_size), the gap kept for the job's health;
# the history keeps %(gap_keep)s older rows (the snapshot does not see the rows this statement adds).
_GAP = f"""gap AS (INSERT INTO {{s}}.job_stats AS s (job_id, missed_count, runs_since_problem, last_problem, gap_missed,
                                          gap_from, gap_to)
        SELECT %(job_id)s::text, %(gap_count)s::bigint, 0, 'no_scheduler', %(gap_count)s::bigint,
               %(gap_from)s::float8, %(gap_to)s::float8
        WHERE %(gap_count)s::bigint > 0 AND {_ADMITTED}
        ON CONFLICT (job_id) DO UPDATE SET missed_count = s.missed_count + EXCLUDED.missed_count,
           runs_since_problem = 0, last_problem = 'no_scheduler', gap_missed = EXCLUDED.gap_missed,
           gap_from = EXCLUDED.gap_from, gap_to = EXCLUDED.gap_to),
gap_runs AS (INSERT INTO {{s}}.job_runs (job_id, at, outcome)
             SELECT %(job_id)s::text, slot, 'missed' FROM unnest(%(gap_slots)s::float8[]) AS slot WHERE {_ADMITTED}),
gap_trim AS (DELETE FROM {{s}}.job_runs WHERE job_id = %(job_id)s::text AND %(gap_count)s::bigint > 0 AND {_ADMITTED}
             AND seq <= coalesce((SELECT seq FROM {{s}}.job_runs WHERE job_id = %(job_id)s::text
                                  ORDER BY seq DESC OFFSET %(gap_keep)s::bigint LIMIT 1), -1))"""

_TEMPLATES = {
    # -- a run's steps ---------------------------------------------------------------------------------
    "record_submitted": f"""
WITH {{fence}},
run AS (INSERT INTO {{s}}.job_running (job_id, session, pid, scheduled_at, submitted_at, trigger, requested_by, command_id,
                                     host)
        SELECT %(job_id)s::text, %(session)s::text, %(pid)s::int, %(scheduled_at)s::float8,
               extract(epoch FROM clock_timestamp())::float8, %(trigger)s::text, %(requested_by)s::text,
               %(command_id)s::bigint, %(host)s::text
        WHERE {_ADMITTED} RETURNING run_id),
nxt AS (UPDATE {{s}}.jobs SET next_run_time = %(next_run_time)s::float8 WHERE id = %(job_id)s::text AND {_ADMITTED}),
{_GAP}
SELECT {_ADMITTED}, (SELECT run_id FROM run)""",
    "record_started": f"""
WITH {{fence}},
u AS (UPDATE {{s}}.job_running SET started_at = %(at)s::float8 WHERE run_id = %(run_id)s::bigint AND {_ADMITTED}
      RETURNING 1)
SELECT {_ADMITTED}, EXISTS (SELECT 1 FROM u)""",
    "forget_run": f"""
WITH {{fence}},
d AS (DELETE FROM {{s}}.job_running WHERE run_id = %(run_id)s::bigint AND {_ADMITTED})
SELECT {_ADMITTED}""",
    "forget_runs_except": f"""
WITH {{fence}},
d AS (DELETE FROM {{s}}.job_running WHERE session = %(session)s::text AND run_id <> ALL(%(live)s::bigint[])
      AND {_ADMITTED} RETURNING 1)
SELECT {_ADMITTED}, (SELECT count(*) FROM d)""",
    "mark_stopping": f"""
WITH {{fence}},
u AS (UPDATE {{s}}.job_running SET stopping = true WHERE session = %(session)s::text AND {_ADMITTED})
SELECT {_ADMITTED}""",
    "count_success": _count_run(_SUCCESS),
    "count_failure": _count_run(_FAILURE),
    "count_skip": _count_run(_SKIP),
    # -- leading -----------------------------------------------------------------------------------------
    "set_crash_hold": f"""
WITH {{fence}},
u AS (INSERT INTO {{s}}.job_stats AS s (job_id, held_until, quarantine_key, quarantined_at)
      SELECT %(job_id)s::text, %(held_until)s::float8, %(key)s::text,
             CASE WHEN %(key)s::text IS NULL THEN NULL ELSE extract(epoch FROM clock_timestamp())::float8 END
      WHERE {_ADMITTED}
      ON CONFLICT (job_id) DO UPDATE SET held_until = EXCLUDED.held_until, quarantine_key = EXCLUDED.quarantine_key,
         quarantined_at = CASE WHEN EXCLUDED.quarantine_key IS NULL THEN NULL
                               ELSE coalesce(s.quarantined_at, EXCLUDED.quarantined_at) END)
SELECT {_ADMITTED}""",
    "release_quarantine": f"""
WITH {{fence}},
u AS (UPDATE {{s}}.job_stats SET quarantined_at = NULL, quarantine_key = NULL, held_until = NULL,
      consecutive_crashes = 0 WHERE job_id = %(job_id)s::text AND {_ADMITTED})
SELECT {_ADMITTED}""",
    "publish_jobs": f"""
WITH {{fence}},
given AS (SELECT * FROM unnest(%(id)s::text[], %(name)s::text[], %(trigger)s::text[], %(next_run_time)s::float8[],
                               %(misfire_grace_time)s::float8[], %(max_instances)s::int[], %(executor)s::text[],
                               %(paused)s::boolean[], %(critical)s::boolean[], %(interval_seconds)s::float8[],
                               %(max_runtime)s::float8[])
          WITH ORDINALITY AS g(id, name, trigger, next_run_time, misfire_grace_time, max_instances, executor, paused,
                               critical, interval_seconds, max_runtime, position)),
dropped AS (DELETE FROM {{s}}.jobs WHERE id <> ALL(%(id)s::text[]) AND {_ADMITTED}),
put AS (INSERT INTO {{s}}.jobs (id, position, name, trigger, next_run_time, misfire_grace_time, max_instances, executor,
                                paused, critical, interval_seconds, max_runtime)
        SELECT id, position - 1, name, trigger, next_run_time, misfire_grace_time, max_instances, executor, paused,
               critical, interval_seconds, max_runtime FROM given WHERE {_ADMITTED}
        ON CONFLICT (id) DO UPDATE SET position = EXCLUDED.position, name = EXCLUDED.name,
           trigger = EXCLUDED.trigger, next_run_time = EXCLUDED.next_run_time,
           misfire_grace_time = EXCLUDED.misfire_grace_time, max_instances = EXCLUDED.max_instances,
           executor = EXCLUDED.executor, paused = EXCLUDED.paused, critical = EXCLUDED.critical,
           interval_seconds = EXCLUDED.interval_seconds, max_runtime = EXCLUDED.max_runtime)
SELECT {_ADMITTED}""",
    "update_next_run": f"""
WITH {{fence}},
u AS (UPDATE {{s}}.jobs SET next_run_time = %(next_run_time)s::float8, paused = %(paused)s::boolean
      WHERE id = %(job_id)s::text AND {_ADMITTED})
SELECT {_ADMITTED}""",
    "beat": f"""
WITH {{fence}},
u AS (INSERT INTO {{s}}.scheduler (id, pid, hostname, state, timezone, started_at, heartbeat_at, session,
                                   clock_jump_seconds, clock_jump_at)
      SELECT 1, %(pid)s::int, %(hostname)s::text, %(state)s::text, %(timezone)s::text, %(started_at)s::float8,
             extract(epoch FROM clock_timestamp())::float8, %(session)s::text, %(jump_seconds)s::float8,
             %(jump_at)s::float8
      WHERE {_ADMITTED}
      ON CONFLICT (id) DO UPDATE SET pid = EXCLUDED.pid, hostname = EXCLUDED.hostname, state = EXCLUDED.state,
         timezone = EXCLUDED.timezone, started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at,
         session = EXCLUDED.session, clock_jump_seconds = EXCLUDED.clock_jump_seconds,
         clock_jump_at = EXCLUDED.clock_jump_at)
SELECT {_ADMITTED}""",
    "clear_heartbeat": f"""
WITH {{fence}},
u AS (UPDATE {{s}}.scheduler SET state = 'stopped', heartbeat_at = 0 WHERE id = 1 AND pid = %(pid)s::int
      AND {_ADMITTED})
SELECT {_ADMITTED}""",
    # -- operators' commands and pauses ------------------------------------------------------------------
    "finish_command": f"""
WITH {{fence}},
u AS (UPDATE {{s}}.commands SET state = %(state)s::text, status = %(status)s::int, outcome = %(outcome)s::text,
      finished_at = %(at)s::float8, applied_by = %(applied_by)s::text, run_id = %(run_id)s::bigint
      WHERE id = %(command_id)s::bigint AND state = 'pending' AND {_ADMITTED})
SELECT {_ADMITTED}""",
    "set_operator_pause": f"""
WITH {{fence}},
u AS (INSERT INTO {{s}}.operator_pauses (job_id, paused, paused_by, at)
      SELECT %(job_id)s::text, %(paused)s::boolean, %(by)s::text, %(at)s::float8 WHERE {_ADMITTED}
      ON CONFLICT (job_id) DO UPDATE SET paused = EXCLUDED.paused, paused_by = EXCLUDED.paused_by, at = EXCLUDED.at)
SELECT {_ADMITTED}""",
}

_RUNNING = (  # runs of the leader in the heartbeat that entered the job's code and have not finished
    "SELECT job_id, count(*) AS running_count, min(started_at) AS running_since FROM {s}.job_running"
    " WHERE started_at IS NOT NULL AND session = (SELECT session FROM {s}.scheduler WHERE id = 1) GROUP BY job_id"
)
_JOBS = (
    "SELECT " + ", ".join(f"j.{c}" for c in DEFINITION_COLUMNS) + ", " + ", ".join(f"s.{c}" for c in STAT_COLUMNS)
    + ", r.running_count, r.running_since FROM {s}.jobs j LEFT JOIN {s}.job_stats s ON s.job_id = j.id"
    " LEFT JOIN (" + _RUNNING + ") r ON r.job_id = j.id"
)
_COMMAND_COLUMNS = ", ".join(COMMAND_COLUMNS)
_LEASE_COLUMNS = (
    "epoch, holder_host, holder_pid, holder_session, extract(epoch FROM acquired_at)::float8,"
    " extract(epoch FROM renewed_at)::float8, extract(epoch FROM expires_at)::float8,"
    " extract(epoch FROM expires_at - clock_timestamp())::float8, released"
)

_READS = {
    "scheduler": "SELECT pid, hostname, state, timezone, started_at, heartbeat_at, session, clock_jump_seconds,"
                 " clock_jump_at FROM {s}.scheduler WHERE id = 1",
    "jobs": _JOBS + " ORDER BY j.position",
    "critical_jobs": _JOBS + " WHERE j.critical ORDER BY j.position",
    "job_count": "SELECT count(*) FROM {s}.jobs",
    "quarantined_jobs": "SELECT job_id FROM {s}.job_stats WHERE quarantined_at IS NOT NULL ORDER BY job_id",
    "definition": "SELECT " + ", ".join(DEFINITION_COLUMNS) + " FROM {s}.jobs WHERE id = %(job_id)s::text",
    "runs": "SELECT job_id, at, outcome, duration, started_at, error_type, error_message, trigger, requested_by,"
            " command_id FROM {s}.job_runs WHERE job_id = %(job_id)s::text ORDER BY seq DESC LIMIT %(limit)s::bigint",
    "recent_runs": "SELECT job_id, at, outcome, duration, started_at, error_type, error_message, trigger, requested_by,"
                   " command_id FROM (SELECT *, row_number() OVER (PARTITION BY job_id ORDER BY seq DESC) AS n"
                   " FROM {s}.job_runs WHERE job_id = ANY(%(job_ids)s::text[])) AS recent"
                   " WHERE n <= %(limit)s::bigint ORDER BY job_id, seq DESC",
    "run_counts": "SELECT floor(at / 60)::bigint, outcome, count(*) FROM {s}.job_runs WHERE at >= %(since)s::float8"
                  " GROUP BY 1, 2 ORDER BY 1, 2",
    "crash_state": "SELECT consecutive_crashes, quarantined_at, quarantine_key FROM {s}.job_stats"
                   " WHERE job_id = %(job_id)s::text",
    "orphans": "SELECT run_id, job_id, pid, scheduled_at, started_at, stopping, host FROM {s}.job_running"
               " WHERE session <> %(session)s::text ORDER BY run_id",
    "lease": "SELECT " + _LEASE_COLUMNS + " FROM {s}.lease WHERE name = 'scheduler'",
    "leadership_changes": "SELECT extract(epoch FROM at)::float8, epoch, reason, from_host, from_pid, to_host, to_pid"
                          " FROM {s}.leadership_changes ORDER BY id DESC LIMIT %(limit)s::bigint",
    "command": "SELECT " + _COMMAND_COLUMNS + " FROM {s}.commands WHERE id = %(command_id)s::bigint",
    "commands": "SELECT " + _COMMAND_COLUMNS + " FROM {s}.commands WHERE job_id = %(job_id)s::text"
                " ORDER BY id DESC LIMIT %(limit)s::bigint",
    # Each with its age by the database's clock, the clock that stamped requested_at.
    "pending_commands": "SELECT " + _COMMAND_COLUMNS + ", extract(epoch FROM clock_timestamp())::float8 - requested_at"
                        " FROM {s}.commands WHERE state = 'pending' ORDER BY id",
    # Any worker queues a command (never fenced), stamped by the database's clock; each job keeps its last
    # COMMANDS_KEPT (pending ones always). The snapshot does not see the new row: keep COMMANDS_KEPT - 1 older ones.
    "submit_command": "WITH added AS (INSERT INTO {s}.commands (job_id, action, requested_by, requested_at)"
                      " VALUES (%(job_id)s::text, %(action)s::text, %(requested_by)s::text,"
                      " extract(epoch FROM clock_timestamp())::float8)"
                      " RETURNING " + _COMMAND_COLUMNS + "),"
                      " trimmed AS (DELETE FROM {s}.commands WHERE job_id = %(job_id)s::text AND state <> 'pending'"
                      " AND id <= coalesce((SELECT id FROM {s}.commands WHERE job_id = %(job_id)s::text"
                      " ORDER BY id DESC OFFSET %(older_kept)s::bigint LIMIT 1), -1))"
                      " SELECT * FROM added",
    "operator_pauses": "SELECT job_id, paused, paused_by, at FROM {s}.operator_pauses ORDER BY job_id",
}


@dataclass(frozen=True)
class Statements:
    """The store's SQL for one schema; ``writes`` fenced or not, ``reads`` never."""

    writes: dict[str, str]
    reads: dict[str, str]


def render(quoted_schema: str, fenced: bool) -> Statements:
    """The statements for ``quoted_schema``, the writes with the epoch check (``fenced``) or without."""
    fence = (_FENCED if fenced else _UNFENCED).format(s=quoted_schema)
    writes = {name: sql.format(s=quoted_schema, fence=fence) for name, sql in {**_TEMPLATES, **pg_alerts.WRITES}.items()}
    reads = {name: sql.format(s=quoted_schema) for name, sql in {**_READS, **pg_alerts.READS}.items()}
    return Statements(writes, reads)
