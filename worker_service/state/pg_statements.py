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

from . import counting, pg_alerts
from .columns import COMMAND_COLUMNS, DEFINITION_COLUMNS, RUN_COLUMNS, STAT_COLUMNS
from .ddl import cast
from .tables import JOB_STATS, JOBS, SCHEDULER

_FENCED = ("fence AS MATERIALIZED (SELECT 1 FROM {s}.lease WHERE name = 'scheduler' AND epoch = %(epoch)s::bigint"
           " AND (%(holder)s::text IS NULL OR holder_session = %(holder)s::text) FOR SHARE)")
_UNFENCED = "fence AS MATERIALIZED (SELECT 1)"
_ADMITTED = "EXISTS (SELECT 1 FROM fence)"
_ROOMY = "(EXISTS (SELECT 1 FROM fence) AND (SELECT ok FROM room))"  # admitted, and the job has room for one more run

# Each history column's value: this statement's parameters, and what the run's live row (``gone``) knew of it.
_RUN_VALUES = {
    "job_id": "%(job_id)s::text", "at": "%(at)s::float8", "outcome": "%(outcome)s::text",
    "duration": "%(duration)s::float8", "started_at": "coalesce(g.started_at, %(started_at)s::float8)",
    "error_type": "%(error_type)s::text", "error_message": "%(error_message)s::text",
    "trigger": "coalesce(g.trigger, 'scheduled')", "requested_by": "g.requested_by", "command_id": "g.command_id",
    "host": "g.host",
}
_STARTS = ", ".join(f"{counting.postgresql_start(name)} AS {name}"
                    for name in JOB_STATS.column_names if name != "job_id")


def _upsert_stats(rule: dict[str, str], condition: str) -> str:
    """``INSERT ... ON CONFLICT DO UPDATE`` of a job's stats by a counting ``rule``, if ``condition``.

    A job's first count applies the rule to the columns' defaults (the row
    ``d``); a later one to its row (``s``).
    """
    first = ", ".join(counting.postgresql(expression, "d") for expression in rule.values())
    update = ", ".join(
        f"{column} = {counting.postgresql(counting.P95_FROM_PROPOSED_ROW if column == 'duration_p95' else expression, 's')}"
        for column, expression in rule.items())
    return (f"INSERT INTO {{s}}.job_stats AS s (job_id, {', '.join(rule)})\n"
            f"          SELECT %(job_id)s::text, {first} FROM (SELECT {_STARTS}) d WHERE {condition}\n"
            f"          ON CONFLICT (job_id) DO UPDATE SET {update}")


def _count_run(rule: dict[str, str]) -> str:
    """One finished, missed or skipped run: forget its running row, count it, append it, trim the history.

    ``%(claim)s``: count it only if this statement removed its running row (a
    finish that names its run, or a new leader settling an orphan: whichever
    of the run's leader and a settler writes first counts it, once).
    ``%(owner)s``: remove it only while that session holds it (a host's claim:
    the finish of a run a settler gave to nobody, or to another host, writes nothing).
    The trim runs every 16th run of the job and keeps ``%(keep)s`` older runs
    plus this one (the snapshot does not see the row this statement adds).
    A finished run also sets the job's ``duration_p95`` over that same window,
    in this statement: fenced and claimed as the rest.
    """
    return f"""
WITH {{fence}},
gone AS (DELETE FROM {{s}}.job_running WHERE run_id = %(run_id)s::bigint AND {_ADMITTED}
         AND (%(owner)s::text IS NULL OR session = %(owner)s::text)
         RETURNING started_at, trigger, requested_by, command_id, host),
go AS MATERIALIZED (SELECT {_ADMITTED} AND (NOT %(claim)s::boolean OR EXISTS (SELECT 1 FROM gone)) AS ok),
stats AS ({_upsert_stats(rule, "(SELECT ok FROM go)")}
          RETURNING s.success_count + s.error_count + s.missed_count + s.max_instances_count AS recorded),
added AS (INSERT INTO {{s}}.job_runs ({', '.join(RUN_COLUMNS)})
          SELECT {', '.join(_RUN_VALUES[name] for name in RUN_COLUMNS)}
          FROM (SELECT 1) one LEFT JOIN gone g ON true WHERE (SELECT ok FROM go)),
trimmed AS (DELETE FROM {{s}}.job_runs WHERE job_id = %(job_id)s::text AND (SELECT recorded FROM stats) %% 16 = 0
            AND seq <= coalesce((SELECT seq FROM {{s}}.job_runs WHERE job_id = %(job_id)s::text
                                 ORDER BY seq DESC OFFSET %(keep)s::bigint LIMIT 1), -1))
SELECT {_ADMITTED}, (SELECT ok FROM go)"""


# Slots no process ran, folded into the run being submitted (%(gap_count)s of them, 0 for none): counted as missed,
# one history row each for %(gap_slots)s (the newest, at most history_size), the gap kept for the job's health;
# the history keeps %(gap_keep)s older rows (the snapshot does not see the rows this statement adds).
_GAP = f"""gap AS ({_upsert_stats(counting.GAP, f"%(gap_count)s::bigint > 0 AND {_ADMITTED}")}),
gap_runs AS (INSERT INTO {{s}}.job_runs (job_id, at, outcome)
             SELECT %(job_id)s::text, slot, 'missed' FROM unnest(%(gap_slots)s::float8[]) AS slot WHERE {_ADMITTED}),
gap_trim AS (DELETE FROM {{s}}.job_runs WHERE job_id = %(job_id)s::text AND %(gap_count)s::bigint > 0 AND {_ADMITTED}
             AND seq <= coalesce((SELECT seq FROM {{s}}.job_runs WHERE job_id = %(job_id)s::text
                                  ORDER BY seq DESC OFFSET %(gap_keep)s::bigint LIMIT 1), -1))"""


def _publish_jobs() -> str:
    """Replace the job list: drop the jobs not given, insert or update the given ones at their positions.

    Each column comes as an array parameter named after it (``%(name)s``), in
    the order of :data:`.columns.DEFINITION_COLUMNS`.
    """
    arrays = ", ".join(f"%({name})s::{cast(JOBS.column(name).type)}[]" for name in DEFINITION_COLUMNS)
    columns = ", ".join(DEFINITION_COLUMNS)
    update = ", ".join(f"{name} = EXCLUDED.{name}" for name in ("position", *DEFINITION_COLUMNS[1:]))
    return f"""
WITH {{fence}},
given AS (SELECT * FROM unnest({arrays}) WITH ORDINALITY AS g({columns}, position)),
dropped AS (DELETE FROM {{s}}.jobs WHERE id <> ALL(%(id)s::text[]) AND {_ADMITTED}),
put AS (INSERT INTO {{s}}.jobs (position, {columns})
        SELECT position - 1, {columns} FROM given WHERE {_ADMITTED}
        ON CONFLICT (id) DO UPDATE SET {update})
SELECT {_ADMITTED}"""


_TEMPLATES = {
    # -- a run's steps ---------------------------------------------------------------------------------
    # One run, handed to its submitter's executor (session, pid, host given) or planned for a host to claim
    # (run_on given: no owner yet, session ''), with the job's next run time, if the job has fewer than
    # %(max_instances)s live runs in the fleet (any owner, planned ones included; NULL: no limit).
    "record_submitted": f"""
WITH {{fence}},
room AS MATERIALIZED (SELECT %(max_instances)s::int IS NULL OR (SELECT count(*) FROM {{s}}.job_running
                      WHERE job_id = %(job_id)s::text AND for_host IS NOT DISTINCT FROM %(for_host)s::text)
                      < %(max_instances)s::int AS ok),
run AS (INSERT INTO {{s}}.job_running (job_id, session, pid, scheduled_at, submitted_at, trigger, requested_by, command_id,
                                     host, run_on, for_host, avoid_host, retry_of)
        SELECT %(job_id)s::text, %(session)s::text, %(pid)s::int, %(scheduled_at)s::float8,
               extract(epoch FROM clock_timestamp())::float8, %(trigger)s::text, %(requested_by)s::text,
               %(command_id)s::bigint, %(host)s::text, %(run_on)s::text, %(for_host)s::text, %(avoid_host)s::text,
               %(retry_of)s::bigint
        WHERE {_ROOMY} RETURNING run_id),
nxt AS (UPDATE {{s}}.jobs SET next_run_time = %(next_run_time)s::float8 WHERE id = %(job_id)s::text AND {_ROOMY}
        AND NOT %(keep_next_run)s::boolean),
{_GAP.replace(_ADMITTED, _ROOMY)}
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
      AND run_on IS NULL AND {_ADMITTED} RETURNING 1)
SELECT {_ADMITTED}, (SELECT count(*) FROM d)""",
    "mark_stopping": f"""
WITH {{fence}},
u AS (UPDATE {{s}}.job_running SET stopping = true WHERE session = %(session)s::text AND {_ADMITTED})
SELECT {_ADMITTED}""",
    **{f"count_{kind}": _count_run(rule) for kind, rule in counting.KINDS.items()},
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
    "publish_jobs": _publish_jobs(),
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

# -- claims: any live host, never fenced by the lease (the claim is the fence of the run's own writes) -----------------
_NOW = "extract(epoch FROM clock_timestamp())::float8"
CLAIMS = {
    # A host's process registers and renews its row; expired rows are forgotten an hour after they expired.
    # The claim counters are the process's own (kept in memory, written with each renewal): a claim writes no row
    # of its host's, only the runs it takes.
    "renew_host": """
WITH up AS (INSERT INTO {s}.hosts (session, host, pid, threads, started_at, renewed_at, expires_at, stopping, claims,
                                   claim_wait_sum, claim_wait_max)
            VALUES (%(session)s::text, %(host)s::text, %(pid)s::int, %(threads)s::int, clock_timestamp(),
                    clock_timestamp(), clock_timestamp() + make_interval(secs => %(ttl)s::float8), %(stopping)s::boolean,
                    %(claims)s::bigint, %(wait_sum)s::float8, %(wait_max)s::float8)
            ON CONFLICT (session) DO UPDATE SET renewed_at = EXCLUDED.renewed_at, expires_at = EXCLUDED.expires_at,
               threads = EXCLUDED.threads, stopping = EXCLUDED.stopping, claims = EXCLUDED.claims,
               claim_wait_sum = EXCLUDED.claim_wait_sum, claim_wait_max = EXCLUDED.claim_wait_max
            RETURNING extract(epoch FROM expires_at - clock_timestamp())::float8),
old AS (DELETE FROM {s}.hosts WHERE expires_at < clock_timestamp() - interval '1 hour')
SELECT (SELECT * FROM up)""",
    "leave_host": "DELETE FROM {s}.hosts WHERE session = %(session)s::text",
    "note_lost": "UPDATE {s}.hosts SET lost = lost + 1 WHERE session = %(session)s::text",
    # A run claimed by a host that cannot run it (its jobs file lacks the job): planned again, for another host.
    "release_claim": "UPDATE {s}.job_running SET session = '', pid = 0, host = NULL, claimed_at = NULL,"
                     " started_at = NULL WHERE run_id = %(run_id)s::bigint AND session = %(session)s::text",
    "mark_host_gone": "UPDATE {s}.hosts SET gone = true WHERE session = %(session)s::text",
    # Up to %(limit)s planned runs this host may run, its own every-host runs first (no other host can take them),
    # then oldest slot first, each taken by one host only (SKIP LOCKED: hosts claiming at once take different rows,
    # none waits); only while the host's own row is alive.
    "claim_runs": f"""
WITH me AS MATERIALIZED (SELECT 1 FROM {{s}}.hosts WHERE session = %(session)s::text AND NOT stopping
                         AND expires_at > clock_timestamp()),
own AS (SELECT run_id FROM {{s}}.job_running
        WHERE session = '' AND for_host = %(host)s::text AND job_id <> ALL(%(skip_jobs)s::text[])
          AND EXISTS (SELECT 1 FROM me)
        ORDER BY scheduled_at LIMIT %(limit)s::int FOR UPDATE SKIP LOCKED),
anyone AS (SELECT run_id FROM {{s}}.job_running
           WHERE session = '' AND for_host IS NULL AND job_id <> ALL(%(skip_jobs)s::text[])
             AND avoid_host IS DISTINCT FROM %(host)s::text AND EXISTS (SELECT 1 FROM me)
           ORDER BY scheduled_at LIMIT greatest(%(limit)s::int - (SELECT count(*) FROM own), 0)
           FOR UPDATE SKIP LOCKED),
picked AS (SELECT run_id FROM own UNION ALL SELECT run_id FROM anyone),
claimed AS (UPDATE {{s}}.job_running r SET session = %(session)s::text, pid = %(pid)s::int, host = %(host)s::text,
               claimed_at = {_NOW}, started_at = %(at)s::float8
            FROM picked WHERE r.run_id = picked.run_id
            RETURNING r.run_id, r.job_id, r.scheduled_at, r.trigger, r.requested_by, r.command_id, r.retry_of,
                      greatest(r.claimed_at - r.submitted_at, 0) AS waited,
                      (SELECT epoch FROM {{s}}.lease WHERE name = 'scheduler') AS epoch)
SELECT * FROM claimed ORDER BY scheduled_at, run_id""",
}

# Runs that entered the job's code and have not finished, held by the leader in the heartbeat, by a live host of the
# fleet, or by a process finishing its last runs at a stop (an orphan of a dead process is not counted).
_RUNNING = (
    "SELECT job_id, count(*) AS running_count, min(started_at) AS running_since FROM {s}.job_running"
    " WHERE started_at IS NOT NULL AND (stopping OR session = (SELECT session FROM {s}.scheduler WHERE id = 1)"
    " OR session IN (SELECT session FROM {s}.hosts WHERE expires_at > clock_timestamp())) GROUP BY job_id"
)
_JOBS = (
    "SELECT " + ", ".join(f"j.{c}" for c in DEFINITION_COLUMNS) + ", " + ", ".join(f"s.{c}" for c in STAT_COLUMNS)
    + ", r.running_count, r.running_since FROM {s}.jobs j LEFT JOIN {s}.job_stats s ON s.job_id = j.id"
    " LEFT JOIN (" + _RUNNING + ") r ON r.job_id = j.id"
)
_COMMAND_COLUMNS = ", ".join(COMMAND_COLUMNS)
_RUN_COLUMNS = ", ".join(RUN_COLUMNS)
_LEASE_COLUMNS = (
    "epoch, holder_host, holder_pid, holder_session, extract(epoch FROM acquired_at)::float8,"
    " extract(epoch FROM renewed_at)::float8, extract(epoch FROM expires_at)::float8,"
    " extract(epoch FROM expires_at - clock_timestamp())::float8, released"
)

_READS = {
    "scheduler": "SELECT " + ", ".join(SCHEDULER.record_columns) + " FROM {s}.scheduler WHERE id = 1",
    "jobs": _JOBS + " ORDER BY j.position",
    "critical_jobs": _JOBS + " WHERE j.critical ORDER BY j.position",
    "job_count": "SELECT count(*) FROM {s}.jobs",
    "quarantined_jobs": "SELECT job_id FROM {s}.job_stats WHERE quarantined_at IS NOT NULL ORDER BY job_id",
    "definition": "SELECT " + ", ".join(DEFINITION_COLUMNS) + " FROM {s}.jobs WHERE id = %(job_id)s::text",
    "runs": "SELECT " + _RUN_COLUMNS + " FROM {s}.job_runs WHERE job_id = %(job_id)s::text"
            " ORDER BY seq DESC LIMIT %(limit)s::bigint",
    "recent_runs": "SELECT " + _RUN_COLUMNS + " FROM (SELECT *, row_number() OVER (PARTITION BY job_id ORDER BY seq DESC) AS n"
                   " FROM {s}.job_runs WHERE job_id = ANY(%(job_ids)s::text[])) AS recent"
                   " WHERE n <= %(limit)s::bigint ORDER BY job_id, seq DESC",
    "run_counts": "SELECT floor(at / 60)::bigint, outcome, count(*) FROM {s}.job_runs WHERE at >= %(since)s::float8"
                  " GROUP BY 1, 2 ORDER BY 1, 2",
    "crash_state": "SELECT consecutive_crashes, quarantined_at, quarantine_key FROM {s}.job_stats"
                   " WHERE job_id = %(job_id)s::text",
    # Every live run of another owner, and every planned run no host claimed yet (session ''): the caller judges.
    "orphans": "SELECT run_id, job_id, pid, scheduled_at, started_at, stopping, host, session, for_host, trigger,"
               " retry_of, coalesce(claimed_at, submitted_at) FROM {s}.job_running WHERE session <> %(session)s::text"
               " AND (session <> '' OR submitted_at < extract(epoch FROM clock_timestamp()) - %(planned_age)s::float8)"
               " ORDER BY run_id",
    # claimed: the runs it took by claims (its threads'); a leader's own runs (run_on "leader") use another pool.
    "hosts": "SELECT h.session, h.host, h.pid, h.threads, (SELECT count(*) FROM {s}.job_running r"
             " WHERE r.session = h.session AND r.run_on IS NOT NULL), extract(epoch FROM h.started_at)::float8,"
             " extract(epoch FROM clock_timestamp() - h.renewed_at)::float8,"
             " extract(epoch FROM h.expires_at - clock_timestamp())::float8, h.stopping, h.claims, h.claim_wait_sum,"
             " h.claim_wait_max, h.lost, h.gone FROM {s}.hosts h ORDER BY h.host, h.started_at",
    "runs_in_flight": "SELECT run_id, job_id, session, pid, host, scheduled_at, submitted_at, started_at, trigger,"
                      " run_on, for_host, stopping FROM {s}.job_running ORDER BY run_id",
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
    writes.update({name: sql.format(s=quoted_schema) for name, sql in CLAIMS.items()})
    reads = {name: sql.format(s=quoted_schema) for name, sql in {**_READS, **pg_alerts.READS}.items()}
    return Statements(writes, reads)
