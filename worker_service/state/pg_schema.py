"""The state store's schema in PostgreSQL and its versioned migrations.

Every host migrates at start-up (or at its store's first use). Several hosts
starting at the same instant on an empty database must not race, so a
migration is ONE transaction that first takes a transaction-scoped advisory
lock (``pg_advisory_xact_lock``: it works through a transaction pooler, where
a session advisory lock would stay stranded on whichever server connection
the pooler picked), then creates the schema and applies what is missing. The
transaction is short and bounded (``lock_timeout``, ``statement_timeout``,
``idle_in_transaction_session_timeout``, all ``SET LOCAL``) and never touches
the lease row. A database whose schema is newer than this code is refused with
a clear reason: an older service must not write a newer layout.
"""

from __future__ import annotations

import psycopg

from . import pg_alerts
from .faults import StoreUnavailable
from .pg_pool import PREFIX, StatePool

_V1 = """
CREATE TABLE {s}.jobs (
    id text PRIMARY KEY, position integer NOT NULL, name text NOT NULL, trigger text NOT NULL,
    next_run_time double precision, misfire_grace_time double precision, max_instances integer NOT NULL,
    executor text NOT NULL, paused boolean NOT NULL, critical boolean NOT NULL, interval_seconds double precision,
    max_runtime double precision
);
CREATE TABLE {s}.job_stats (
    job_id text PRIMARY KEY,
    success_count bigint NOT NULL DEFAULT 0, error_count bigint NOT NULL DEFAULT 0,
    missed_count bigint NOT NULL DEFAULT 0, max_instances_count bigint NOT NULL DEFAULT 0,
    duration_sum double precision NOT NULL DEFAULT 0, duration_min double precision, duration_max double precision,
    consecutive_failures bigint NOT NULL DEFAULT 0,
    last_run_at double precision, last_outcome text, last_success_at double precision,
    last_error_type text, last_error_message text, last_error_at double precision,
    runs_since_problem bigint, last_problem text,
    crash_count bigint NOT NULL DEFAULT 0, consecutive_crashes bigint NOT NULL DEFAULT 0,
    quarantined_at double precision, quarantine_key text, held_until double precision
);
CREATE TABLE {s}.job_runs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, job_id text NOT NULL, at double precision NOT NULL,
    outcome text NOT NULL, duration double precision, started_at double precision, error_type text,
    error_message text, trigger text NOT NULL DEFAULT 'scheduled', requested_by text, command_id bigint
);
CREATE INDEX job_runs_by_job ON {s}.job_runs (job_id, seq);
CREATE TABLE {s}.job_running (
    run_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, job_id text NOT NULL, session text NOT NULL,
    pid integer NOT NULL, scheduled_at double precision NOT NULL, submitted_at double precision NOT NULL,
    started_at double precision, stopping boolean NOT NULL DEFAULT false,
    trigger text NOT NULL DEFAULT 'scheduled', requested_by text, command_id bigint
);
CREATE INDEX job_running_by_session ON {s}.job_running (session);
CREATE TABLE {s}.scheduler (
    id integer PRIMARY KEY CHECK (id = 1), pid integer NOT NULL, hostname text NOT NULL, state text NOT NULL,
    timezone text NOT NULL, started_at double precision NOT NULL, heartbeat_at double precision NOT NULL,
    session text, clock_jump_seconds double precision, clock_jump_at double precision
);
CREATE TABLE {s}.lease (
    name text PRIMARY KEY, epoch bigint NOT NULL, holder_host text, holder_pid integer, holder_session text,
    acquired_at timestamptz, renewed_at timestamptz, expires_at timestamptz NOT NULL,
    released boolean NOT NULL DEFAULT false, handover boolean NOT NULL DEFAULT false,
    previous_host text, previous_pid integer, previous_session text, change_reason text
);
CREATE TABLE {s}.leadership_changes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz NOT NULL, epoch bigint NOT NULL,
    reason text NOT NULL, from_host text, from_pid integer, from_session text,
    to_host text, to_pid integer, to_session text, lost_epoch bigint
);
CREATE UNIQUE INDEX leadership_changes_lost_once ON {s}.leadership_changes (lost_epoch) WHERE reason = 'lost';
CREATE TABLE {s}.commands (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, job_id text NOT NULL, action text NOT NULL,
    requested_by text NOT NULL, requested_at double precision NOT NULL, state text NOT NULL DEFAULT 'pending',
    status integer, outcome text, finished_at double precision, applied_by text, run_id bigint
);
CREATE INDEX commands_pending ON {s}.commands (id) WHERE state = 'pending';
CREATE INDEX commands_by_job ON {s}.commands (job_id, id);
CREATE TABLE {s}.operator_pauses (
    job_id text PRIMARY KEY, paused boolean NOT NULL, paused_by text NOT NULL, at double precision NOT NULL
);
"""

# The host that submitted a live run: a new leader records another host's unfinished run as lost, not crashed.
_V2 = """
ALTER TABLE {s}.job_running ADD COLUMN host text;
"""

# Each job's p95 duration over its history, kept with its stats (a job's next timed run sets it).
_V3 = """
ALTER TABLE {s}.job_stats ADD COLUMN duration_p95 double precision;
"""

# Jobs fence their own writes on a row per resource (worker_service.fencing), never on the lease row: a job's
# transaction, however long or cut off, then never holds a lock that a renewal or a takeover waits for.
_V4 = """
CREATE TABLE {s}.fences (
    resource text PRIMARY KEY, epoch bigint NOT NULL, written_at timestamptz NOT NULL
);
"""

# Each job's last gap of slots no process ran (folded into one run): how many, the first and the last slot.
_V5 = """
ALTER TABLE {s}.job_stats ADD COLUMN gap_missed bigint, ADD COLUMN gap_from double precision,
    ADD COLUMN gap_to double precision;
"""

# (version, what it does, DDL with {s} for the quoted schema), in order. Never edit one that shipped: add the next.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "job state, run history, heartbeat, the scheduler lease, operators' commands and pauses", _V1),
    (2, "the host that submitted each live run", _V2),
    (3, "each job's p95 duration over its history", _V3),
    (4, "the fence rows jobs write through (worker_service.fencing)", _V4),
    (5, "each job's last gap of slots no process ran", _V5),
    (6, "alerts: each subject's alert state and the outbox of notifications (worker_service.alerts)", pg_alerts.MIGRATION),
)
LATEST = MIGRATIONS[-1][0]
_LOCK_WAIT = 0.8  # of the migration's budget, the part it may wait for another host's migration


class SchemaTooNew(StoreUnavailable):
    """The database's schema is newer than this code: refused rather than written in a layout it does not know."""


def quoted(schema: str) -> str:
    """The schema as an SQL identifier (settings allow only ``[a-z_][a-z0-9_]*``; quoted all the same)."""
    return '"' + schema.replace('"', '""') + '"'


def migrate(pool: StatePool, schema: str, timeout: float) -> int:
    """Bring ``schema`` to :data:`LATEST` (creating it if missing); return the version. Raises StoreUnavailable."""
    return pool.run(lambda connection: _migrate(connection, schema, timeout), timeout)


def _migrate(connection: psycopg.Connection, schema: str, timeout: float) -> int:
    version = _current_version(connection, schema)
    if version == LATEST:
        return version  # the usual case: one read, no lock
    _refuse_newer(schema, version)
    milliseconds = max(int(timeout * 1000), 100)
    with connection.transaction():
        connection.execute(f"SET LOCAL lock_timeout = {int(milliseconds * _LOCK_WAIT)}")
        connection.execute(f"SET LOCAL statement_timeout = {milliseconds}")
        connection.execute(f"SET LOCAL idle_in_transaction_session_timeout = {milliseconds}")
        connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"worker-service migrate {schema}",))
        name = quoted(schema)
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {name}")
        connection.execute(f"CREATE TABLE IF NOT EXISTS {name}.schema_version (version integer PRIMARY KEY,"
                           " description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        (version,) = connection.execute(f"SELECT coalesce(max(version), 0) FROM {name}.schema_version").fetchone()
        _refuse_newer(schema, version)
        for number, description, ddl in MIGRATIONS:
            if number > version:
                connection.execute(ddl.format(s=name))
                connection.execute(f"INSERT INTO {name}.schema_version (version, description) VALUES (%s, %s)",
                                   (number, description))
        return max(version, LATEST)


def _current_version(connection: psycopg.Connection, schema: str) -> int:
    """The schema's version, 0 if it has none yet (no schema, or no version table)."""
    try:
        (version,) = connection.execute(f"SELECT coalesce(max(version), 0) FROM {quoted(schema)}.schema_version").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(version)


def _refuse_newer(schema: str, version: int) -> None:
    if version > LATEST:
        raise SchemaTooNew(f"{PREFIX}schema {schema} is at version {version}, newer than this service knows ({LATEST}):"
                           " run a newer release of the service, or another STATE_DATABASE_SCHEMA")
