"""The default state store: one SQLite file in WAL mode under the state directory.

WAL lets every worker read while the leader writes, and the file survives a
change of leader and a restart. Connections are per thread and per process
(a connection must not cross a fork). Faults of the file (full, not
writable, corrupt, deleted, locked) are handled in :mod:`.sqlite_file`: every
call that cannot be served raises :class:`StoreUnavailable`, and none blocks
for long.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable

from .faults import StoreUnavailable
from .records import JobDefinition, JobRecord, RunRecord, SchedulerRecord
from .sqlite_file import SqliteFile, WriteTransaction

log = logging.getLogger(__name__)

_SCHEMA = """
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
    last_error_type TEXT, last_error_message TEXT, last_error_at REAL,
    runs_since_problem INTEGER
);
CREATE TABLE IF NOT EXISTS job_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, at REAL NOT NULL,
    outcome TEXT NOT NULL, duration REAL
);
CREATE INDEX IF NOT EXISTS job_runs_by_job ON job_runs (job_id, seq);
CREATE TABLE IF NOT EXISTS scheduler (
    id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, hostname TEXT NOT NULL, state TEXT NOT NULL,
    timezone TEXT NOT NULL, started_at REAL NOT NULL, heartbeat_at REAL NOT NULL
);
"""

_STAT_COLUMNS = (
    "success_count", "error_count", "missed_count", "max_instances_count", "duration_sum", "duration_min",
    "duration_max", "consecutive_failures", "last_run_at", "last_outcome", "last_success_at", "last_error_type",
    "last_error_message", "last_error_at", "runs_since_problem",
)
_DEFINITION_COLUMNS = (
    "id", "name", "trigger", "next_run_time", "misfire_grace_time", "max_instances", "executor", "paused",
    "critical", "interval_seconds",
)


class SqliteStateStore:
    """Job stats, run history, the published job list and the heartbeat, in one SQLite file."""

    def __init__(self, path: str, history_size: int = 50) -> None:
        self.path = path
        self.history_size = history_size
        self.file = SqliteFile(path, _SCHEMA)
        try:
            self.file.connection()
        except StoreUnavailable as error:  # never fatal: a worker without its store still answers /health
            log.error("%s; it is opened again on its next use", error)

    def _connection(self) -> WriteTransaction:
        """``with self._connection() as db``: one write transaction; ``.raw``: this thread's connection."""
        return WriteTransaction(self.file)

    # -- writes: the leader -----------------------------------------------
    def record_run(
        self,
        job_id: str,
        outcome: str,
        at: float,
        duration: float | None,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> None:
        """Count a finished run (``success`` or ``error``) and append it to the bounded history."""
        success = outcome == "success"
        with self._connection() as db:
            db.execute("INSERT OR IGNORE INTO job_stats (job_id) VALUES (?)", (job_id,))
            if success:
                db.execute(
                    """UPDATE job_stats SET success_count = success_count + 1,
                       duration_sum = duration_sum + coalesce(?, 0),
                       duration_min = min(coalesce(duration_min, ?), ?), duration_max = max(coalesce(duration_max, ?), ?),
                       consecutive_failures = 0, last_run_at = ?, last_outcome = 'success', last_success_at = ?,
                       runs_since_problem = CASE WHEN runs_since_problem IS NULL THEN NULL ELSE runs_since_problem + 1 END
                       WHERE job_id = ?""",
                    (duration, duration, duration, duration, duration, at, at, job_id),
                )
            else:
                db.execute(
                    """UPDATE job_stats SET error_count = error_count + 1,
                       duration_sum = duration_sum + coalesce(?, 0),
                       duration_min = min(coalesce(duration_min, ?), ?), duration_max = max(coalesce(duration_max, ?), ?),
                       consecutive_failures = consecutive_failures + 1, last_run_at = ?, last_outcome = 'error',
                       last_error_type = ?, last_error_message = ?, last_error_at = ?, runs_since_problem = 0
                       WHERE job_id = ?""",
                    (duration, duration, duration, duration, duration, at, error_type, error_message, at, job_id),
                )
            self._append_run(db, job_id, at, outcome, duration)

    def record_missed(self, job_id: str, at: float) -> None:
        """Count a run that APScheduler skipped because it was later than its misfire grace time."""
        with self._connection() as db:
            db.execute("INSERT OR IGNORE INTO job_stats (job_id) VALUES (?)", (job_id,))
            db.execute(
                "UPDATE job_stats SET missed_count = missed_count + 1, runs_since_problem = 0 WHERE job_id = ?",
                (job_id,),
            )
            self._append_run(db, job_id, at, "missed", None)

    def record_max_instances(self, job_id: str, at: float) -> None:
        """Count a run skipped because the job was still running (``max_instances`` reached)."""
        with self._connection() as db:
            db.execute("INSERT OR IGNORE INTO job_stats (job_id) VALUES (?)", (job_id,))
            db.execute(
                "UPDATE job_stats SET max_instances_count = max_instances_count + 1, runs_since_problem = 0"
                " WHERE job_id = ?",
                (job_id,),
            )
            self._append_run(db, job_id, at, "max_instances", None)

    def _append_run(self, db: sqlite3.Connection, job_id: str, at: float, outcome: str, duration: float | None) -> None:
        db.execute("INSERT INTO job_runs (job_id, at, outcome, duration) VALUES (?, ?, ?, ?)", (job_id, at, outcome, duration))
        # Trim each job's history every 16 of its own runs: cheap, and bounded to history_size + 16.
        (recorded,) = db.execute(
            "SELECT success_count + error_count + missed_count + max_instances_count FROM job_stats WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        if recorded % 16 == 0:
            db.execute(
                """DELETE FROM job_runs WHERE job_id = ? AND seq <= coalesce((SELECT seq FROM job_runs
                   WHERE job_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?), -1)""",
                (job_id, job_id, self.history_size),
            )

    def publish_jobs(self, definitions: Iterable[JobDefinition]) -> None:
        """Replace the published job list with ``definitions`` (the complete job set)."""
        rows = [
            (d.id, position, d.name, d.trigger, d.next_run_time, d.misfire_grace_time, d.max_instances, d.executor,
             int(d.paused), int(d.critical), d.interval_seconds)
            for position, d in enumerate(definitions)
        ]
        with self._connection() as db:
            db.execute("DELETE FROM jobs")
            db.executemany(
                "INSERT INTO jobs (id, position, name, trigger, next_run_time, misfire_grace_time, max_instances,"
                " executor, paused, critical, interval_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def update_next_run(self, job_id: str, next_run_time: float | None, paused: bool) -> None:
        """Publish one job's next run time (after it ran, was paused or resumed)."""
        with self._connection() as db:
            db.execute(
                "UPDATE jobs SET next_run_time = ?, paused = ? WHERE id = ?", (next_run_time, int(paused), job_id)
            )

    def beat(self, pid: int, hostname: str, state: str, timezone: str, started_at: float) -> None:
        """Write the leader's heartbeat."""
        with self._connection() as db:
            db.execute(
                "INSERT OR REPLACE INTO scheduler (id, pid, hostname, state, timezone, started_at, heartbeat_at)"
                " VALUES (1, ?, ?, ?, ?, ?, ?)",
                (pid, hostname, state, timezone, started_at, time.time()),
            )

    def clear_heartbeat(self, pid: int) -> None:
        """Mark the scheduler stopped, if ``pid`` is still the one that beats."""
        with self._connection() as db:
            db.execute("UPDATE scheduler SET state = 'stopped', heartbeat_at = 0 WHERE id = 1 AND pid = ?", (pid,))

    # -- reads: every worker ----------------------------------------------
    def scheduler(self) -> SchedulerRecord | None:
        """The last heartbeat, or ``None`` if no scheduler ever ran here."""
        row = self.file.read(lambda db: db.execute(
            "SELECT pid, hostname, state, timezone, started_at, heartbeat_at FROM scheduler WHERE id = 1"
        ).fetchone())
        return SchedulerRecord(*row) if row else None

    def jobs(self, critical_only: bool = False) -> list[JobRecord]:
        """The published jobs (or only the critical ones), in file order, each with its stats."""
        columns = ", ".join(f"j.{c}" for c in _DEFINITION_COLUMNS) + ", " + ", ".join(f"s.{c}" for c in _STAT_COLUMNS)
        where = "WHERE j.critical = 1" if critical_only else ""
        rows = self.file.read(lambda db: db.execute(
            f"SELECT {columns} FROM jobs j LEFT JOIN job_stats s ON s.job_id = j.id {where} ORDER BY j.position"
        ).fetchall())
        split = len(_DEFINITION_COLUMNS)
        records = []
        for row in rows:
            values = list(row[:split])
            values[7], values[8] = bool(values[7]), bool(values[8])
            stats = {name: value for name, value in zip(_STAT_COLUMNS, row[split:], strict=False) if value is not None}
            records.append(JobRecord(definition=JobDefinition(*values), **stats))
        return records

    def definition(self, job_id: str) -> JobDefinition | None:
        """One published job's definition."""
        row = self.file.read(lambda db: db.execute(
            f"SELECT {', '.join(_DEFINITION_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone())
        if row is None:
            return None
        values = list(row)
        values[7], values[8] = bool(values[7]), bool(values[8])
        return JobDefinition(*values)

    def runs(self, job_id: str, limit: int | None = None) -> list[RunRecord]:
        """The job's most recent runs, newest first."""
        rows = self.file.read(lambda db: db.execute(
            "SELECT job_id, at, outcome, duration FROM job_runs WHERE job_id = ? ORDER BY seq DESC LIMIT ?",
            (job_id, limit or self.history_size),
        ).fetchall())
        return [RunRecord(*row) for row in rows]
