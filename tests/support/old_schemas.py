"""Stores as earlier releases left them, for the tests of their migrations.

PostgreSQL: :func:`postgresql_schema_at` makes a schema at an older version,
as that release made it: the first release's DDL (kept here: the service
makes a new schema from its description of the tables, so it no longer needs
it) and then the shipped migrations up to the version.
"""

from __future__ import annotations

from tests.support import pg
from worker_service.state import pg_schema

# The schema at version 1, as the first release made it.
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


def postgresql_schema_at(schema: str, version: int) -> None:
    """Make ``schema`` as the release at ``version`` made it, its ``schema_version`` rows included."""
    name = pg_schema.quoted(schema)
    with pg.admin() as db, db.transaction():
        db.execute(f"CREATE SCHEMA {name}")
        db.execute(f"CREATE TABLE {name}.schema_version (version integer PRIMARY KEY, description text NOT NULL,"
                   " applied_at timestamptz NOT NULL DEFAULT now())")
        for number, description, ddl in pg_schema.MIGRATIONS[:version]:
            db.execute((_V1 if number == 1 else ddl).format(s=name))
            db.execute(f"INSERT INTO {name}.schema_version (version, description) VALUES (%s, %s)",
                       (number, description))
