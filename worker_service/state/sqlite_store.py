"""The default state store: one SQLite file in WAL mode under the state directory.

WAL lets every worker read while the leader writes, and the file survives a
change of leader and a restart. Connections are per thread and per process
(a connection must not cross a fork). Faults of the file (full, not
writable, corrupt, deleted, locked) are handled in :mod:`.sqlite_file`: every
call that cannot be served raises :class:`StoreUnavailable`, and none blocks
for long.

Operators' commands (``job_commands``) and pauses (``operator_pauses``) live in
the same file: any worker queues a command, the leader polls the pending ones
(a partial index keeps that one cheap read) and finishes each once. A file
made by an older version is migrated when it is opened (:mod:`.sqlite_migrations`).
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from . import counting
from .columns import COMMAND_COLUMNS, COMMANDS_KEPT, DEFINITION_COLUMNS, RUN_COLUMNS, STAT_COLUMNS, record_from
from .faults import StoreUnavailable
from .records import (
    Command,
    CrashState,
    HostRecord,
    JobDefinition,
    JobRecord,
    MissedSlots,
    OperatorPause,
    OrphanedRun,
    RunInFlight,
    RunRecord,
    SchedulerRecord,
)
from .sqlite_alerts import SqliteAlerts
from .sqlite_file import SqliteFile, WriteTransaction
from .sqlite_migrations import migrate
from .tables import COMMANDS, JOB_RUNS, JOBS, SCHEDULER

if TYPE_CHECKING:
    from .protocol import LeaderWriter

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _RunOrigin:
    """What the live run row knows of a run and its history row carries: when it started, and who asked for it."""

    started_at: float | None = None
    trigger: str = "scheduled"
    requested_by: str | None = None
    command_id: int | None = None
    host: str | None = None


_SCHEDULED = _RunOrigin()
_STATS_UPDATES = {kind: f"UPDATE job_stats SET {counting.sqlite(rule)} WHERE job_id = :job_id"
                  for kind, rule in {**counting.KINDS, "gap": counting.GAP}.items()}
_PUBLISH = (f"INSERT INTO jobs (position, {', '.join(DEFINITION_COLUMNS)})"
            f" VALUES ({', '.join('?' * (len(DEFINITION_COLUMNS) + 1))})")
_RUNNING_COLUMNS = ("running_count", "running_since")
# Runs that entered the job's code and have not finished: the current leader's, and a stopping process's last ones.
_RUNNING = (
    "SELECT job_id, count(*) AS running_count, min(started_at) AS running_since FROM job_running"
    " WHERE started_at IS NOT NULL AND (stopping OR session = (SELECT session FROM scheduler WHERE id = 1))"
    " GROUP BY job_id"
)


class SqliteStateStore(SqliteAlerts):
    """Job stats, run history, the published job list, the heartbeat and operators' commands, in one SQLite file."""

    def __init__(self, path: str, history_size: int = 50) -> None:
        self.path = path
        self.history_size = history_size
        self.file = SqliteFile(path, prepare=migrate)
        try:
            self.file.connection()
        except StoreUnavailable as error:  # never fatal: a worker without its store still answers /health
            log.error("%s; it is opened again on its next use", error)

    def _connection(self) -> WriteTransaction:
        """``with self._connection() as db``: one write transaction; ``.raw``: this thread's connection."""
        return WriteTransaction(self.file)

    # -- writes: the leader -----------------------------------------------
    def record_submitted(self, job_id: str, session: str, pid: int, scheduled_at: float,
                         next_run_time: float | None, trigger: str = "scheduled", requested_by: str | None = None,
                         command_id: int | None = None, host: str | None = None,
                         missed: MissedSlots | None = None, max_instances: int | None = None,
                         run_on: str | None = None, for_host: str | None = None, avoid_host: str | None = None,
                         retry_of: int | None = None, keep_next_run: bool = False) -> int | None:
        """Note a run handed to the executor and the job's next run time, before the run can start.

        Both in one transaction, so a job that kills its process is known to
        have started, and a new leader resumes after it instead of running the
        same slot again. ``trigger``, ``requested_by`` and ``command_id`` stay
        on the run's row until its history row is written; ``host`` until the
        run is done (or settled by a new leader). ``missed``: the slots folded
        into this run, counted in the same transaction. Returns the run's id, or ``None`` (nothing written) when the
        job already has ``max_instances`` live runs (a process finishing its last runs at a reload counts too).
        ``run_on`` plans it for a host to claim instead (the fleet's; kept alike here).
        """
        if run_on is not None:
            session, pid, host = "", 0, None
        with self._connection() as db:
            if max_instances is not None and db.execute(
                    "SELECT count(*) FROM job_running WHERE job_id = ? AND for_host IS ?", (job_id, for_host)
            ).fetchone()[0] >= max_instances:
                return None
            cursor = db.execute(
                "INSERT INTO job_running (job_id, session, pid, scheduled_at, submitted_at, trigger, requested_by,"
                " command_id, host, run_on, for_host, avoid_host, retry_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, session, pid, scheduled_at, time.time(), trigger, requested_by, command_id, host, run_on,
                 for_host, avoid_host, retry_of),
            )
            if not keep_next_run:
                db.execute("UPDATE jobs SET next_run_time = ? WHERE id = ?", (next_run_time, job_id))
            if missed is not None and missed.count > 0:
                self._count_gap(db, job_id, missed)
            return int(cursor.lastrowid)

    def _count_gap(self, db: sqlite3.Connection, job_id: str, missed: MissedSlots) -> None:
        """Slots no process ran: counted as missed, one history row each (the newest ``history_size``), the gap kept."""
        self._update_stats(db, "gap", job_id=job_id, gap_count=missed.count, gap_from=missed.first,
                           gap_to=missed.last)
        slots = missed.recent[-self.history_size:] if self.history_size > 0 else ()
        db.executemany("INSERT INTO job_runs (job_id, at, outcome, duration) VALUES (?, ?, 'missed', NULL)",
                       [(job_id, slot) for slot in slots])
        db.execute(
            """DELETE FROM job_runs WHERE job_id = ? AND seq <= coalesce((SELECT seq FROM job_runs
               WHERE job_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?), -1)""",
            (job_id, job_id, self.history_size),
        )

    def record_started(self, run_id: int, at: float) -> bool:
        """The submitted run is entering the job's own code; ``False`` (nothing written) if its live row is gone."""
        with self._connection() as db:
            return db.execute("UPDATE job_running SET started_at = ? WHERE run_id = ?", (at, run_id)).rowcount > 0

    def forget_run(self, run_id: int) -> None:
        """The executor is done with a run (whatever it recorded)."""
        with self._connection() as db:
            db.execute("DELETE FROM job_running WHERE run_id = ?", (run_id,))

    def forget_runs_except(self, session: str, live: Iterable[int]) -> int:
        """Forget ``session``'s runs whose ids are not in ``live``: their finish could not be recorded.

        Without this a run whose "finished" write failed (the store failed for a
        moment) stayed "running" for as long as this leader lived, and turned
        "running too long".
        """
        keep = set(live)
        with self._connection() as db:
            stale = [(run_id,) for (run_id,) in db.execute(
                "SELECT run_id FROM job_running WHERE session = ? AND run_on IS NULL", (session,)).fetchall()
                if run_id not in keep]
            db.executemany("DELETE FROM job_running WHERE run_id = ?", stale)
        return len(stale)

    def mark_stopping(self, session: str) -> None:
        """The leader is stopping: a run still going when its process is killed was killed at the stop."""
        with self._connection() as db:
            db.execute("UPDATE job_running SET stopping = 1 WHERE session = ?", (session,))

    def record_run(
        self,
        job_id: str,
        outcome: str,
        at: float,
        duration: float | None,
        error_type: str | None = None,
        error_message: str | None = None,
        run_id: int | None = None,
        owner: str | None = None,
    ) -> bool:
        """Count a finished run (``success`` or ``error``) and append it to the bounded history; whether it counted.

        The history row takes when the run started and who asked for it from
        the run's live row (``run_id``), which it deletes in the same
        transaction. A run whose live row is gone (a new leader settled it) is
        not counted again.
        """
        with self._connection() as db:
            origin = _claim(db, run_id, owner)
            if origin is None:
                return False
            kind = "success" if outcome == "success" else "failure"
            self._count(db, kind, job_id, at, outcome, origin, duration, error_type, error_message)
            return True

    def _count(self, db: sqlite3.Connection, kind: str, job_id: str, at: float, outcome: str,
               origin: _RunOrigin = _SCHEDULED, duration: float | None = None, error_type: str | None = None,
               error_message: str | None = None) -> None:
        """Count a run of ``kind`` (:data:`.counting.KINDS`: success, failure or skip) and append it to the history.

        The stats change before the history row is added: the p95 window is
        the job's ``history_size - 1`` newest runs and this one, as in
        PostgreSQL, whose statement cannot see the row it adds.
        """
        self._update_stats(db, kind, job_id=job_id, at=at, outcome=outcome, duration=duration,
                           error_type=error_type, error_message=error_message, keep=max(self.history_size - 1, 0))
        self._append_run(db, job_id, at, outcome, duration, origin, error_type, error_message)

    @staticmethod
    def _update_stats(db: sqlite3.Connection, kind: str, **params: object) -> None:
        db.execute("INSERT OR IGNORE INTO job_stats (job_id) VALUES (:job_id)", params)
        db.execute(_STATS_UPDATES[kind], params)

    def record_missed(self, job_id: str, at: float, run_id: int | None = None, owner: str | None = None) -> bool:
        """Count a run that APScheduler skipped for being later than its misfire grace time; whether it counted.

        As :meth:`record_run`: a run whose live row is gone is not counted again.
        """
        with self._connection() as db:
            origin = _claim(db, run_id, owner)
            if origin is None:
                return False
            self._count(db, "skip", job_id, at, "missed", origin)
            return True

    def record_max_instances(self, job_id: str, at: float) -> None:
        """Count a run skipped because the job was still running (``max_instances`` reached)."""
        with self._connection() as db:
            self._count(db, "skip", job_id, at, "max_instances")

    def settle_orphans(self, session: str, lost: Callable[[OrphanedRun], bool | None] | None = None,
                       planned_age: float = 0.0) -> list[OrphanedRun]:
        """Record every run an earlier leader left unfinished, forget them, and return them.

        Called by a new leader before it submits anything, and again on every
        heartbeat. A run ``lost`` keeps (``None``: its process is alive, finishing
        its last runs after a reload) is left alone until its process is gone.
        Otherwise, on one host, a process gone means its runs can only have
        died with it (``crashed``), been killed at a stop (``killed``), or
        never started (``missed``); a run ``lost`` says may still be alive is
        recorded as ``lost`` (see the protocol).
        """
        query = ("SELECT run_id, job_id, pid, scheduled_at, started_at, stopping, host, trigger, requested_by,"
                 " command_id, session, for_host, retry_of, coalesce(claimed_at, submitted_at) FROM job_running"
                 " WHERE session != ? AND (session != '' OR submitted_at < ?) ORDER BY run_id")
        params = (session, time.time() - planned_age)
        # The leader looks on every heartbeat and there is mostly nothing: a read, and the file's write lock only
        # when there is something to settle (a process frozen inside a write transaction blocks every writer).
        if not self.file.read(lambda db: db.execute(query, params).fetchone()):
            return []
        with self._connection() as db:
            rows = db.execute(query, params).fetchall()
            orphans = []
            for (run_id, job_id, pid, scheduled, started, stopping, host, trigger, requested_by, command_id, owner,
                 for_host, retry_of, held_since) in rows:
                if owner == "" and lost is None:
                    continue  # planned, for a host to claim: only a caller that judges settles it
                orphan = OrphanedRun(job_id, pid, scheduled, started, bool(stopping), host, run_id=run_id,
                                     session=owner, for_host=for_host, trigger=trigger, retry_of=retry_of,
                                     held_since=held_since).judged(lost)
                if orphan is None:
                    continue
                origin = _RunOrigin(orphan.started_at, trigger, requested_by, command_id, host)
                error = orphan.error
                if error is None:
                    self._count(db, "skip", orphan.job_id, orphan.scheduled_at, "missed", origin)
                else:
                    self._count(db, "failure", orphan.job_id, orphan.started_at or orphan.scheduled_at,
                                orphan.outcome, origin, None, *error)
                db.execute("DELETE FROM job_running WHERE run_id = ?", (run_id,))
                orphans.append(orphan)
        return orphans

    def hosts(self) -> list[HostRecord]:
        """One host: no fleet of executing hosts to list."""
        return []

    def runs_in_flight(self) -> list[RunInFlight]:
        """Every run not finished yet, oldest first."""
        rows = self.file.read(lambda db: db.execute(
            "SELECT run_id, job_id, session, pid, host, scheduled_at, submitted_at, started_at, trigger, run_on,"
            " for_host, stopping FROM job_running ORDER BY run_id").fetchall())
        return [RunInFlight(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], bool(r[11]))
                for r in rows]

    def crash_state(self, job_id: str) -> CrashState:
        """How often in a row the job crashed its worker, and whether it is quarantined."""
        row = self.file.read(lambda db: db.execute(
            "SELECT consecutive_crashes, quarantined_at, quarantine_key FROM job_stats WHERE job_id = ?", (job_id,)
        ).fetchone())
        return CrashState(*row) if row else CrashState()

    def set_crash_hold(self, job_id: str, held_until: float | None, quarantine_key: str | None = None) -> None:
        """Hold a job back until ``held_until``; with ``quarantine_key``, quarantine it (until its definition changes)."""
        with self._connection() as db:
            db.execute("INSERT OR IGNORE INTO job_stats (job_id) VALUES (?)", (job_id,))
            db.execute(
                "UPDATE job_stats SET held_until = ?, quarantine_key = ?,"
                " quarantined_at = CASE WHEN ? IS NULL THEN NULL ELSE coalesce(quarantined_at, ?) END WHERE job_id = ?",
                (held_until, quarantine_key, quarantine_key, time.time(), job_id),
            )

    def release_quarantine(self, job_id: str) -> None:
        """Lift a quarantine and forget the crashes (the job was changed)."""
        with self._connection() as db:
            db.execute(
                "UPDATE job_stats SET quarantined_at = NULL, quarantine_key = NULL, held_until = NULL,"
                " consecutive_crashes = 0 WHERE job_id = ?", (job_id,),
            )

    def _append_run(self, db: sqlite3.Connection, job_id: str, at: float, outcome: str, duration: float | None,
                    origin: _RunOrigin, error_type: str | None = None, error_message: str | None = None) -> None:
        db.execute(
            f"INSERT INTO job_runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})",
            (job_id, at, outcome, duration, origin.started_at, error_type, error_message, origin.trigger,
             origin.requested_by, origin.command_id, origin.host),
        )
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
        rows = [(position, *(getattr(d, name) for name in DEFINITION_COLUMNS)) for position, d in enumerate(definitions)]
        with self._connection() as db:
            db.execute("DELETE FROM jobs")
            db.executemany(_PUBLISH, rows)

    def update_next_run(self, job_id: str, next_run_time: float | None, paused: bool) -> None:
        """Publish one job's next run time (after it ran, was paused or resumed)."""
        with self._connection() as db:
            db.execute(
                "UPDATE jobs SET next_run_time = ?, paused = ? WHERE id = ?", (next_run_time, int(paused), job_id)
            )

    def beat(self, pid: int, hostname: str, state: str, timezone: str, started_at: float, session: str = "",
             clock_jump: tuple[float, float] | None = None) -> None:
        """Write the leader's heartbeat (with the last wall-clock jump it saw: seconds, when)."""
        jump_seconds, jump_at = clock_jump or (None, None)
        with self._connection() as db:
            db.execute(
                "INSERT OR REPLACE INTO scheduler (id, pid, hostname, state, timezone, started_at, heartbeat_at, session,"
                " clock_jump_seconds, clock_jump_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (pid, hostname, state, timezone, started_at, time.time(), session, jump_seconds, jump_at),
            )

    def clear_heartbeat(self, pid: int) -> None:
        """Mark the scheduler stopped, if ``pid`` is still the one that beats."""
        with self._connection() as db:
            db.execute("UPDATE scheduler SET state = 'stopped', heartbeat_at = 0 WHERE id = 1 AND pid = ?", (pid,))

    # -- reads: every worker ----------------------------------------------
    def scheduler(self) -> SchedulerRecord | None:
        """The last heartbeat, or ``None`` if no scheduler ever ran here."""
        row = self.file.read(lambda db: db.execute(
            f"SELECT {', '.join(SCHEDULER.record_columns)} FROM scheduler WHERE id = 1").fetchone())
        return record_from(SCHEDULER, SchedulerRecord, row) if row else None

    def jobs(self, critical_only: bool = False) -> list[JobRecord]:
        """The published jobs (or only the critical ones), in file order, each with its stats."""
        columns = ", ".join(f"j.{c}" for c in DEFINITION_COLUMNS) + ", " + ", ".join(f"s.{c}" for c in STAT_COLUMNS)
        where = "WHERE j.critical = 1" if critical_only else ""
        rows = self.file.read(lambda db: db.execute(
            f"SELECT {columns}, r.running_count, r.running_since FROM jobs j LEFT JOIN job_stats s ON s.job_id = j.id"
            f" LEFT JOIN ({_RUNNING}) r ON r.job_id = j.id {where} ORDER BY j.position"
        ).fetchall())
        split = len(DEFINITION_COLUMNS)
        records = []
        for row in rows:
            stats = {name: value for name, value in zip(STAT_COLUMNS + _RUNNING_COLUMNS, row[split:], strict=True) if value is not None}
            records.append(JobRecord(definition=record_from(JOBS, JobDefinition, row[:split]), **stats))
        return records

    def job_count(self) -> int:
        """How many jobs are published."""
        return self.file.read(lambda db: db.execute("SELECT count(*) FROM jobs").fetchone()[0])

    def quarantined_jobs(self) -> list[str]:
        """Ids of the jobs in quarantine for crashing their worker."""
        return [row[0] for row in self.file.read(lambda db: db.execute(
            "SELECT job_id FROM job_stats WHERE quarantined_at IS NOT NULL ORDER BY job_id"
        ).fetchall())]

    def definition(self, job_id: str) -> JobDefinition | None:
        """One published job's definition."""
        row = self.file.read(lambda db: db.execute(
            f"SELECT {', '.join(DEFINITION_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone())
        return None if row is None else record_from(JOBS, JobDefinition, row)

    def runs(self, job_id: str, limit: int | None = None) -> list[RunRecord]:
        """The job's most recent runs, newest first."""
        rows = self.file.read(lambda db: db.execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM job_runs WHERE job_id = ? ORDER BY seq DESC LIMIT ?",
            (job_id, limit or self.history_size),
        ).fetchall())
        return [record_from(JOB_RUNS, RunRecord, row) for row in rows]

    def recent_runs(self, job_ids: Sequence[str], limit: int) -> dict[str, list[RunRecord]]:
        """Each job's ``limit`` most recent runs, newest first, in one read."""
        if not job_ids or limit <= 0:
            return {}
        columns = ", ".join(RUN_COLUMNS)
        marks = ", ".join("?" * len(job_ids))
        rows = self.file.read(lambda db: db.execute(
            f"SELECT {columns} FROM (SELECT {columns}, seq, row_number() OVER (PARTITION BY job_id ORDER BY seq DESC)"
            f" AS n FROM job_runs WHERE job_id IN ({marks})) WHERE n <= ? ORDER BY job_id, seq DESC",
            (*job_ids, limit),
        ).fetchall())
        found: dict[str, list[RunRecord]] = {}
        for row in rows:
            found.setdefault(row[0], []).append(record_from(JOB_RUNS, RunRecord, row))
        return found

    def run_counts(self, since: float) -> list[tuple[int, str, int]]:
        """``(minute, outcome, runs)`` of the kept runs finished at ``since`` or later."""
        rows = self.file.read(lambda db: db.execute(
            "SELECT CAST(at / 60 AS INTEGER), outcome, count(*) FROM job_runs WHERE at >= ? GROUP BY 1, 2 ORDER BY 1, 2",
            (since,),
        ).fetchall())
        return [(int(minute), outcome, int(runs)) for minute, outcome, runs in rows]

    # -- the fleet: a host-local store has no lease (it is no FleetLedger) ----
    def fenced(self, epoch: int, session: str | None = None) -> LeaderWriter:
        """This store itself: its election is a lock the kernel frees, so no stale leader can write."""
        return self

    # -- operators' commands: any worker submits, the leader applies -----------
    def submit_command(self, job_id: str, action: str, requested_by: str) -> Command:
        """Queue a command for the leader, stamped now; return it. The job keeps its last ``COMMANDS_KEPT`` finished ones.

        The store's clock is this host's: the file serves one host, whose
        leader judges the command's age with the same clock.
        """
        requested_at = time.time()
        with self._connection() as db:
            cursor = db.execute(
                "INSERT INTO job_commands (job_id, action, requested_by, requested_at) VALUES (?, ?, ?, ?)",
                (job_id, action, requested_by, requested_at),
            )
            db.execute(
                """DELETE FROM job_commands WHERE job_id = ? AND state != 'pending' AND id <= coalesce((SELECT id
                   FROM job_commands WHERE job_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?), -1)""",
                (job_id, job_id, COMMANDS_KEPT),
            )
            return Command(int(cursor.lastrowid), job_id, action, requested_by, requested_at)

    def pending_commands(self) -> list[Command]:
        """Commands not yet applied, oldest first, each with its age (this host's clock): one read of a partial index."""
        rows = self.file.read(lambda db: db.execute(
            f"SELECT {', '.join(COMMAND_COLUMNS)} FROM job_commands WHERE state = 'pending' ORDER BY id"
        ).fetchall())
        now = time.time()
        return [record_from(COMMANDS, Command, row, age=now - row[4]) for row in rows]

    def finish_command(self, command_id: int, state: str, status: int, outcome: str, at: float,
                       applied_by: str, run_id: int | None = None) -> None:
        """The leader applied (``done``) or could not apply (``failed``) a command; a finished one is left as it is."""
        with self._connection() as db:
            db.execute(
                "UPDATE job_commands SET state = ?, status = ?, outcome = ?, finished_at = ?, applied_by = ?,"
                " run_id = ? WHERE id = ? AND state = 'pending'",
                (state, status, outcome, at, applied_by, run_id, command_id),
            )

    def command(self, command_id: int) -> Command | None:
        """One command, or ``None``."""
        row = self.file.read(lambda db: db.execute(
            f"SELECT {', '.join(COMMAND_COLUMNS)} FROM job_commands WHERE id = ?", (command_id,)
        ).fetchone())
        return record_from(COMMANDS, Command, row) if row else None

    def commands(self, job_id: str, limit: int = 20) -> list[Command]:
        """The job's last commands, newest first."""
        rows = self.file.read(lambda db: db.execute(
            f"SELECT {', '.join(COMMAND_COLUMNS)} FROM job_commands WHERE job_id = ? ORDER BY id DESC LIMIT ?",
            (job_id, limit),
        ).fetchall())
        return [record_from(COMMANDS, Command, row) for row in rows]

    def set_operator_pause(self, job_id: str, paused: bool, by: str, at: float) -> None:
        """Record an operator's pause or resume of a job (the last word wins); it outlives leaders and restarts."""
        with self._connection() as db:
            db.execute(
                "INSERT OR REPLACE INTO operator_pauses (job_id, paused, paused_by, at) VALUES (?, ?, ?, ?)",
                (job_id, int(paused), by, at),
            )

    def operator_pauses(self) -> dict[str, OperatorPause]:
        """Every job an operator paused or resumed, by job id."""
        rows = self.file.read(lambda db: db.execute(
            "SELECT job_id, paused, paused_by, at FROM operator_pauses ORDER BY job_id"
        ).fetchall())
        return {job_id: OperatorPause(job_id, bool(paused), by, at) for job_id, paused, by, at in rows}


def _claim(db: sqlite3.Connection, run_id: int | None, owner: str | None = None) -> _RunOrigin | None:
    """Remove ``run_id``'s live row and return its start and trigger; ``None`` if the row is gone (already settled).

    A run recorded without an id was a scheduled run, and is always counted. With ``owner``, the row is removed only
    while that session holds it.
    """
    if run_id is None:
        return _SCHEDULED
    rows = db.execute(  # fetchall: the statement is done before the transaction commits
        "DELETE FROM job_running WHERE run_id = ? AND (? IS NULL OR session = ?)"
        " RETURNING started_at, trigger, requested_by, command_id, host", (run_id, owner, owner)
    ).fetchall()
    return _RunOrigin(*rows[0]) if rows else None
