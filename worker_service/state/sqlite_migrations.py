"""The SQLite file's versions: ``PRAGMA user_version``, as PostgreSQL keeps ``schema_version``.

A new file is made from the description of the tables (:mod:`.tables`) and
set at :data:`LATEST`. An existing file below it runs the missing steps, in
order, in one ``IMMEDIATE`` transaction that re-reads the version once it holds
the write lock: several workers opening one file at once migrate it once. A
file at :data:`LATEST` is read once and left alone; a newer file (a release
rolled back) is used as it is, as files were before they had versions.

Version 1 is the file as the service left it before versions: ``user_version``
0, with every table and column it may lack added (a file of any earlier
release gains the tables and columns that came later). Its statements are
frozen here as they shipped: never edit a step that shipped, add the next.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .ddl import add_column, create_statements
from .tables import JOB_RUNNING, JOB_RUNS, SQLITE

_UNVERSIONED_TABLES = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, position INTEGER NOT NULL, name TEXT NOT NULL, trigger TEXT NOT NULL,
    next_run_time REAL, misfire_grace_time REAL, max_instances INTEGER NOT NULL, executor TEXT NOT NULL,
    paused INTEGER NOT NULL, critical INTEGER NOT NULL, interval_seconds REAL
);
CREATE TABLE IF NOT EXISTS job_stats (
    job_id TEXT PRIMARY KEY,
    success_count INTEGER NOT NULL DEFAULT 0, error_count INTEGER NOT NULL DEFAULT 0,
    missed_count INTEGER NOT NULL DEFAULT 0, max_instances_count INTEGER NOT NULL DEFAULT 0,
    duration_sum REAL NOT NULL DEFAULT 0, duration_min REAL, duration_max REAL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_run_at REAL, last_outcome TEXT, last_success_at REAL,
    last_error_type TEXT, last_error_message TEXT, last_error_at REAL, runs_since_problem INTEGER
);
CREATE TABLE IF NOT EXISTS job_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, at REAL NOT NULL,
    outcome TEXT NOT NULL, duration REAL
);
CREATE INDEX IF NOT EXISTS job_runs_by_job ON job_runs (job_id, seq);
CREATE TABLE IF NOT EXISTS job_running (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, session TEXT NOT NULL, pid INTEGER NOT NULL,
    scheduled_at REAL NOT NULL, submitted_at REAL NOT NULL, started_at REAL, stopping INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS job_commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, action TEXT NOT NULL, requested_by TEXT NOT NULL,
    requested_at REAL NOT NULL, state TEXT NOT NULL DEFAULT 'pending', status INTEGER, outcome TEXT,
    finished_at REAL, applied_by TEXT, run_id INTEGER
);
CREATE INDEX IF NOT EXISTS job_commands_pending ON job_commands (id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS job_commands_by_job ON job_commands (job_id, id);
CREATE TABLE IF NOT EXISTS operator_pauses (
    job_id TEXT PRIMARY KEY, paused INTEGER NOT NULL, paused_by TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS scheduler (
    id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, hostname TEXT NOT NULL, state TEXT NOT NULL,
    timezone TEXT NOT NULL, started_at REAL NOT NULL, heartbeat_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_states (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, state TEXT NOT NULL, firing INTEGER NOT NULL,
    reason TEXT, since REAL NOT NULL, seq INTEGER NOT NULL, notified_at REAL
);
CREATE TABLE IF NOT EXISTS alert_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, key TEXT NOT NULL, status TEXT NOT NULL,
    channel TEXT NOT NULL, payload TEXT NOT NULL, created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL, claimed_by TEXT, claimed_until REAL, outcome TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT, finished_at REAL
);
CREATE INDEX IF NOT EXISTS alert_outbox_pending ON alert_outbox (next_attempt_at) WHERE outcome = 'pending';
CREATE TABLE IF NOT EXISTS alert_counts (
    channel TEXT NOT NULL, outcome TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (channel, outcome)
)
"""
# The columns added to the first tables over the releases before versions, each added if missing, in this order.
_UNVERSIONED_COLUMNS = {
    "jobs": ("max_runtime REAL",),
    "job_stats": ("last_problem TEXT", "crash_count INTEGER NOT NULL DEFAULT 0",
                  "consecutive_crashes INTEGER NOT NULL DEFAULT 0", "quarantined_at REAL", "quarantine_key TEXT",
                  "held_until REAL", "duration_p95 REAL", "gap_missed INTEGER", "gap_from REAL", "gap_to REAL"),
    "scheduler": ("session TEXT", "clock_jump_seconds REAL", "clock_jump_at REAL"),
    "job_runs": ("started_at REAL", "error_type TEXT", "error_message TEXT",
                 "trigger TEXT NOT NULL DEFAULT 'scheduled'", "requested_by TEXT", "command_id INTEGER"),
    "job_running": ("trigger TEXT NOT NULL DEFAULT 'scheduled'", "requested_by TEXT", "command_id INTEGER",
                    "host TEXT"),
}


def _make_unversioned_whole(db: sqlite3.Connection) -> None:
    """Version 1: the tables and columns a file of any release before versions may lack."""
    for statement in _statements(_UNVERSIONED_TABLES):
        db.execute(statement)
    for table, columns in _UNVERSIONED_COLUMNS.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column in columns:
            if column.split()[0] not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def _index_live_runs_by_session(db: sqlite3.Connection) -> None:
    """Version 2: live runs indexed by their leader's session, as PostgreSQL has always had them."""
    db.execute("CREATE INDEX IF NOT EXISTS job_running_by_session ON job_running (session)")


def _add_claim_columns(db: sqlite3.Connection) -> None:
    """Version 3: the claim columns of a live run and the host of a finished one (the fleet's; kept alike here)."""
    for table, names in ((JOB_RUNNING, ("run_on", "for_host", "avoid_host", "retry_of", "claimed_at")),
                         (JOB_RUNS, ("host",))):
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table.name_in(SQLITE)})")}
        for name in names:
            if name not in present:  # a file made whole by version 1 has them already
                db.execute(add_column(table, name, SQLITE))
    db.execute("CREATE INDEX IF NOT EXISTS job_running_by_job ON job_running (job_id)")
    db.execute("CREATE INDEX IF NOT EXISTS job_running_claimable ON job_running (scheduled_at)"
               " WHERE session = '' AND for_host IS NULL")
    db.execute("CREATE INDEX IF NOT EXISTS job_running_claimable_here ON job_running (for_host, scheduled_at)"
               " WHERE session = '' AND for_host IS NOT NULL")


# (version, what it does, the step), in order. Never edit one that shipped: add the next.
MIGRATIONS: tuple[tuple[int, str, Callable[[sqlite3.Connection], None]], ...] = (
    (1, "a file made before versions, made whole", _make_unversioned_whole),
    (2, "live runs indexed by session", _index_live_runs_by_session),
    (3, "claim columns on live runs, the host of each finished run", _add_claim_columns),
)
LATEST = MIGRATIONS[-1][0]
_MIGRATION_BUSY_TIMEOUT = 2.0  # seconds to wait for another worker's migration of the same file


def version(db: sqlite3.Connection) -> int:
    """The file's ``user_version`` (0: made before versions, or new)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection) -> None:
    """Bring the file open on ``db`` (autocommit) to :data:`LATEST`: make it new, or run the steps it lacks."""
    if version(db) >= LATEST:
        return  # the usual case: one read, no lock
    db.execute(f"PRAGMA busy_timeout={int(_MIGRATION_BUSY_TIMEOUT * 1000)}")
    db.execute("BEGIN IMMEDIATE")
    try:
        found = version(db)  # another worker may have migrated it while this one waited for the lock
        if found == 0 and _is_empty(db):
            for statement in create_statements(SQLITE):
                db.execute(statement)
        else:
            for number, _, step in MIGRATIONS:
                if number > found:
                    step(db)
        if found < LATEST:
            db.execute(f"PRAGMA user_version = {LATEST}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _is_empty(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
                      ).fetchone()[0] == 0


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]
