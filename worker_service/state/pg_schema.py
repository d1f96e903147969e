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

A new schema is made from the description of the tables (:mod:`.tables`,
rendered by :mod:`.ddl`) and stamped with every version at once; a schema at an
older version runs the migrations it lacks. So a field added to the
description needs one migration here, for the schemas made before it.
"""

from __future__ import annotations

import psycopg

from .ddl import add_column, create_statements, create_table
from .faults import StoreUnavailable
from .pg_pool import PREFIX, StatePool
from .tables import HOSTS, JOB_RUNNING, JOB_RUNS, POSTGRESQL

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

# Alerts: each subject's alert state, and the outbox of notifications (worker_service.alerts).
_V6 = """
CREATE TABLE {s}.alert_states (
    key text PRIMARY KEY, kind text NOT NULL, subject text NOT NULL, state text NOT NULL, firing boolean NOT NULL,
    reason text, since double precision NOT NULL, seq bigint NOT NULL, notified_at double precision
);
CREATE TABLE {s}.alert_outbox (
    id bigserial PRIMARY KEY, event_id text NOT NULL, key text NOT NULL, status text NOT NULL, channel text NOT NULL,
    payload text NOT NULL, created_at double precision NOT NULL, attempts integer NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL, claimed_by text, claimed_until double precision,
    outcome text NOT NULL DEFAULT 'pending', last_error text, finished_at double precision
);
CREATE INDEX alert_outbox_pending ON {s}.alert_outbox (next_attempt_at) WHERE outcome = 'pending';
CREATE TABLE {s}.alert_counts (
    channel text NOT NULL, outcome text NOT NULL, count bigint NOT NULL, PRIMARY KEY (channel, outcome)
);
"""


def _v7() -> str:
    """Runs any host claims (fleet work sharing): the live run's claim columns, the run history's host, the hosts."""
    added = [add_column(JOB_RUNNING, name, POSTGRESQL) for name in
             ("run_on", "for_host", "avoid_host", "retry_of", "claimed_at")]
    added.append(add_column(JOB_RUNS, "host", POSTGRESQL))
    made = [statement for table in (HOSTS,) for statement in create_table(table, POSTGRESQL)]
    indexes = ["CREATE INDEX job_running_by_job ON {s}.job_running (job_id)",
               "CREATE INDEX job_running_claimable ON {s}.job_running (scheduled_at)"
               " WHERE session = '' AND for_host IS NULL",
               "CREATE INDEX job_running_claimable_here ON {s}.job_running (for_host, scheduled_at)"
               " WHERE session = '' AND for_host IS NOT NULL"]
    return ";\n".join(added + made + indexes)


# (version, what it does, the DDL that brings a schema at the version before to it, with {s} for the quoted
# schema), in order. Never edit one that shipped: add the next. Version 1 has no DDL here: no schema is at
# version 0 but a new one, and a new one is made from the description.
MIGRATIONS: tuple[tuple[int, str, str | None], ...] = (
    (1, "job state, run history, heartbeat, the scheduler lease, operators' commands and pauses", None),
    (2, "the host that submitted each live run", _V2),
    (3, "each job's p95 duration over its history", _V3),
    (4, "the fence rows jobs write through (worker_service.fencing)", _V4),
    (5, "each job's last gap of slots no process ran", _V5),
    (6, "alerts: each subject's alert state and the outbox of notifications (worker_service.alerts)", _V6),
    (7, "runs any host claims: claim columns on live runs, the host of each finished run, the hosts", _v7()),
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
        if version == 0:
            _create_from_description(connection, name)  # at LATEST: the migrations' DDL is for older schemas
        for number, description, ddl in MIGRATIONS:
            if number > version:
                if version > 0 and ddl is not None:
                    connection.execute(ddl.format(s=name))
                connection.execute(f"INSERT INTO {name}.schema_version (version, description) VALUES (%s, %s)",
                                   (number, description))
        return max(version, LATEST)


def _create_from_description(connection: psycopg.Connection, name: str) -> None:
    """A new schema: every table as described, at :data:`LATEST` (every migration's row is written all the same)."""
    for statement in create_statements(POSTGRESQL):
        connection.execute(statement.format(s=name))


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
