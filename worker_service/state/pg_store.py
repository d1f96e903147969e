"""The fleet's state store: PostgreSQL shared by every host, in its own schema.

Same behaviour as :class:`~.sqlite_store.SqliteStateStore` (the contract tests
run on both), with what several hosts need on top:

* the times the store stamps (the heartbeat, a run's submission, a
  quarantine) come from the database's clock, so no host's clock matters;
* :meth:`fenced` gives the leader a view whose every write checks, in the same
  statement, that its lease epoch (and its lease session) still holds
  (:mod:`.pg_statements`);
* every call is one statement on a pooled connection, bounded by the timeout
  (:mod:`.pg_pool`), and raises :class:`StoreUnavailable` when it cannot be
  served. The store never fails to build: it migrates its schema at first use
  (the start-up check, ``check_state_database``, migrates it before any
  worker starts) and recovers by itself. While the schema cannot be
  migrated, one caller at a time tries, each waits at most the store's
  timeout for that, and a failed migration is reported at once to every
  caller for :data:`MIGRATE_RETRY` seconds, as the pool reports its last
  connect failure: a hung database never queues callers behind each other.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from .columns import COMMANDS_KEPT, DEFINITION_COLUMNS, STAT_COLUMNS, record_from
from .faults import FencedOut, StoreUnavailable
from .pg_alerts import PostgresAlerts
from .pg_pool import PREFIX, StatePool
from .pg_schema import migrate, quoted
from .pg_statements import Statements, render
from .records import (
    ClaimedRun,
    ClaimStats,
    Command,
    CrashState,
    HostRecord,
    JobDefinition,
    JobRecord,
    LeadershipChange,
    LeaseRecord,
    MissedSlots,
    OperatorPause,
    OrphanedRun,
    RunInFlight,
    RunRecord,
    SchedulerRecord,
)
from .tables import COMMANDS, JOB_RUNS, JOBS, SCHEDULER

if TYPE_CHECKING:
    from .protocol import LeaderWriter

T = TypeVar("T")
_RECORD_COLUMNS = STAT_COLUMNS + ("running_count", "running_since")
_MIGRATION_TIMEOUT = 5.0  # at least: a first migration runs a few DDL statements
MIGRATE_RETRY = 1.0  # seconds a failed migration is reported to every caller before the next one tries again


class _SchemaState:
    """Whether this store's schema was found up to date, and its last failed migration; shared with the fenced views."""

    def __init__(self) -> None:
        self.ready = False
        self.lock = threading.Lock()
        self.failure: tuple[float, str] | None = None  # (monotonic time, reason) of the last failed migration

    def recent_failure(self) -> str | None:
        """The reason the last migration failed, if it failed less than :data:`MIGRATE_RETRY` seconds ago."""
        failure = self.failure
        if failure is not None and time.monotonic() - failure[0] < MIGRATE_RETRY:
            return failure[1]
        return None


class PostgresStateStore(PostgresAlerts):
    """Job stats, run history, published jobs, heartbeat, lease and commands, in one PostgreSQL schema."""

    def __init__(self, url: str, schema: str = "worker_service", history_size: int = 50, timeout: float = 2.0,
                 *, pool: StatePool | None = None) -> None:
        self.schema = schema
        self.history_size = history_size
        self.timeout = timeout
        self.pool = pool or StatePool(url, timeout)
        self.epoch: int | None = None  # the lease epoch this view's writes carry; None: unfenced
        self.holder: str | None = None  # the lease session this view's writes check, if known
        self._plain = render(quoted(schema), fenced=False)
        self._fenced = render(quoted(schema), fenced=True)
        self._sql: Statements = self._plain
        self._schema = _SchemaState()

    # -- plumbing ------------------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Create or upgrade the schema now (the start-up check); return its version. Raises StoreUnavailable."""
        try:
            version = migrate(self.pool, self.schema, max(self.timeout, _MIGRATION_TIMEOUT))
        except StoreUnavailable as error:
            self._schema.failure = (time.monotonic(), error.reason)
            raise
        self._schema.failure = None
        self._schema.ready = True
        return version

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work`` on a pooled connection of the store, its schema migrated; bounded, faults StoreUnavailable."""
        if not self._schema.ready:
            self._migrate_once()
        return self.pool.run(lambda db: self._noticing_a_dropped_schema(db, work))

    def _migrate_once(self) -> None:
        """Migrate unless another caller just did or just failed to; never wait longer than the store's timeout for it.

        A caller that finds a migration under way waits for it at most
        ``timeout`` (it could not have been served within that anyway); one
        that finds a migration failed less than :data:`MIGRATE_RETRY` ago fails
        at once with its reason. So however many threads call while the
        database hangs, one of them at a time waits for it.
        """
        reason = self._schema.recent_failure()
        if reason is not None:
            raise StoreUnavailable(reason)
        if not self._schema.lock.acquire(timeout=self.timeout):
            reason = self._schema.recent_failure()
            raise StoreUnavailable(reason or f"{PREFIX}timed out after {self.timeout:g} s waiting for the schema"
                                              f" migration of {self.schema} (another call is migrating it)")
        try:
            if self._schema.ready:
                return
            reason = self._schema.recent_failure()
            if reason is not None:
                raise StoreUnavailable(reason)
            self.migrate()
        finally:
            self._schema.lock.release()

    def _noticing_a_dropped_schema(self, db: psycopg.Connection, work: Callable[[psycopg.Connection], T]) -> T:
        """A schema dropped under the store (a reset by hand) is made again at the next call, as SQLite rebuilds a file."""
        try:
            return work(db)
        except psycopg.errors.UndefinedTable:
            self._schema.ready = False
            raise

    def close(self) -> None:
        """Close this process's connections (tests, shutdown); the next call opens them again."""
        self.pool.close()

    def _write(self, statement: str, /, **params: Any) -> tuple:
        """Run write ``statement`` with this view's epoch; raise FencedOut (nothing written) if the epoch lost the lease."""
        params["epoch"], params["holder"] = self.epoch, self.holder
        sql = self._sql.writes[statement]
        row = self.run(lambda db: db.execute(sql, params).fetchone())
        if not row[0]:
            raise self._fenced_out()
        return row

    def _fenced_out(self) -> FencedOut:
        try:
            lease = self.lease()
            if lease is None:
                holder = "nobody does"
            elif lease.epoch == self.epoch:
                holder = f"epoch {lease.epoch} of another holder does"
            else:
                holder = f"epoch {lease.epoch} does"
        except Exception:  # noqa: BLE001 - the refusal is the news; who holds it now is a detail
            holder = "its holder is unknown"
        return FencedOut(f"{PREFIX}fenced out: epoch {self.epoch} no longer holds the scheduler lease ({holder})")

    def _one(self, statement: str, /, **params: Any) -> tuple | None:
        sql = self._sql.reads[statement]
        return self.run(lambda db: db.execute(sql, params).fetchone())

    def _all(self, statement: str, /, **params: Any) -> list[tuple]:
        sql = self._sql.reads[statement]
        return self.run(lambda db: db.execute(sql, params).fetchall())

    # -- fencing ---------------------------------------------------------------------------------------------
    def fenced(self, epoch: int, session: str | None = None) -> LeaderWriter:
        """This store as the leader holding lease ``epoch`` writes it: same pool, every write checks the epoch
        (and, given ``session``, that the lease's holder is that session)."""
        view = copy.copy(self)
        view.epoch, view.holder, view._sql = epoch, session, self._fenced
        return view

    # -- a run's steps: the tracker ------------------------------------------------------------------------
    def record_submitted(self, job_id: str, session: str, pid: int, scheduled_at: float,
                         next_run_time: float | None, trigger: str = "scheduled", requested_by: str | None = None,
                         command_id: int | None = None, host: str | None = None,
                         missed: MissedSlots | None = None, max_instances: int | None = None,
                         run_on: str | None = None, for_host: str | None = None, avoid_host: str | None = None,
                         retry_of: int | None = None, keep_next_run: bool = False) -> int | None:
        """Note a run handed to the executor (by ``host``), or planned for a host to claim (``run_on``), and the
        job's next run time, in one statement; its id, or ``None`` (nothing written) when the job already has
        ``max_instances`` live runs in the fleet.

        ``missed`` (the slots folded into this run) is counted in that same statement.
        """
        gap = missed if missed is not None and missed.count > 0 else MissedSlots(0, 0.0, 0.0)
        slots = list(gap.recent[-self.history_size:]) if self.history_size > 0 else []
        if run_on is not None:
            session, pid, host = "", 0, None  # planned: no owner until a host claims it
        row = self._write("record_submitted", job_id=job_id, session=session, pid=pid, scheduled_at=scheduled_at,
                          next_run_time=next_run_time, trigger=trigger, requested_by=requested_by,
                          command_id=command_id, host=host, gap_count=gap.count, gap_from=gap.first,
                          gap_to=gap.last, gap_slots=slots, gap_keep=max(self.history_size - len(slots), 0),
                          max_instances=max_instances, run_on=run_on, for_host=for_host, avoid_host=avoid_host,
                          retry_of=retry_of, keep_next_run=keep_next_run)
        return None if row[1] is None else int(row[1])

    def record_started(self, run_id: int, at: float) -> bool:
        """The submitted run is entering the job's own code; ``False`` (nothing written) if its live row is gone."""
        return bool(self._write("record_started", run_id=run_id, at=at)[1])

    def forget_run(self, run_id: int) -> None:
        """The executor is done with a run (whatever it recorded)."""
        self._write("forget_run", run_id=run_id)

    def forget_runs_except(self, session: str, live: Iterable[int]) -> int:
        """Forget ``session``'s runs whose ids are not in ``live`` (finishes the store could not record); how many."""
        return int(self._write("forget_runs_except", session=session, live=sorted(set(live)))[1])

    def record_run(self, job_id: str, outcome: str, at: float, duration: float | None, error_type: str | None = None,
                   error_message: str | None = None, run_id: int | None = None, owner: str | None = None) -> bool:
        """Count a finished run (``success`` or ``error``), append it to the history, and forget ``run_id``.

        With ``run_id``, only if this statement removed the run's live row (a
        new leader may have settled it); whether it counted the run.
        """
        kind = "count_success" if outcome == "success" else "count_failure"
        return self._count(kind, job_id, outcome, at, duration, error_type, error_message, run_id,
                           claim=run_id is not None, owner=owner)

    def record_missed(self, job_id: str, at: float, run_id: int | None = None, owner: str | None = None) -> bool:
        """Count a run skipped for being later than its misfire grace time, and forget ``run_id`` (claimed, as above)."""
        return self._count("count_skip", job_id, "missed", at, None, None, None, run_id, claim=run_id is not None,
                           owner=owner)

    def record_max_instances(self, job_id: str, at: float) -> None:
        """Count a run skipped because the job was still running (``max_instances`` reached)."""
        self._count("count_skip", job_id, "max_instances", at, None, None, None, None)

    def _count(self, kind: str, job_id: str, outcome: str, at: float, duration: float | None, error_type: str | None,
               error_message: str | None, run_id: int | None, claim: bool = False,
               started_at: float | None = None, owner: str | None = None) -> bool:
        """One statement: forget the run, count it, append it, trim; with ``claim``, only if it removed the run
        (and, with ``owner``, only while that session held it)."""
        row = self._write(kind, job_id=job_id, outcome=outcome, at=at, duration=duration, error_type=error_type,
                          error_message=error_message, run_id=run_id, claim=claim, started_at=started_at,
                          keep=max(self.history_size - 1, 0), owner=owner)
        return bool(row[1])

    # -- leading: the scheduler service --------------------------------------------------------------------
    def mark_stopping(self, session: str) -> None:
        """The leader is stopping: a run of ``session`` still going when its process dies was killed at the stop."""
        self._write("mark_stopping", session=session)

    def settle_orphans(self, session: str, lost: Callable[[OrphanedRun], bool | None] | None = None,
                       planned_age: float = 0.0) -> list[OrphanedRun]:
        """Record and forget every unfinished run of another owner; return them, as recorded.

        ``lost`` judges each run first (see the protocol); a run it keeps
        (``None``: its owner is alive) is left alone. One statement per
        orphan, each counting its run only if it removed the run's row: never
        a transaction held across round trips, and a run is settled once even
        if two settlers raced.
        """
        settled = []
        for (run_id, job_id, pid, scheduled_at, started_at, stopping, host, owner, for_host, trigger,
             retry_of, held_since) in self._all("orphans", session=session, planned_age=planned_age):
            if owner == "" and lost is None:
                continue  # planned, for a host to claim: only a caller that judges settles it
            orphan = OrphanedRun(job_id, pid, scheduled_at, started_at, stopping, host, run_id=run_id, session=owner,
                                 for_host=for_host, trigger=trigger, retry_of=retry_of,
                                 held_since=held_since).judged(lost)
            if orphan is None:
                continue
            error = orphan.error
            # Only while the row is still held by the owner the judge saw: a host may have claimed it since the read.
            if error is None:
                done = self._count("count_skip", job_id, "missed", scheduled_at, None, None, None, run_id, claim=True,
                                   owner=owner)
            else:
                done = self._count("count_failure", job_id, orphan.outcome, started_at or scheduled_at, None, *error,
                                   run_id, claim=True, started_at=started_at, owner=owner)
            if done:
                settled.append(orphan)
                if orphan.lost and owner:
                    self.run(lambda db, owner=owner: db.execute(self._sql.writes["note_lost"], {"session": owner}))
        return settled

    # -- claims: any live host of the fleet (never fenced by the lease) -----------------------------------------
    def renew_host(self, session: str, host: str, pid: int, threads: int, ttl: float, stopping: bool = False,
                   claims: ClaimStats | None = None) -> float:
        """Register or renew this process as an executing host for ``ttl`` s (the database's clock); seconds left."""
        stats = claims or ClaimStats()
        params = {"session": session, "host": host, "pid": pid, "threads": threads, "ttl": ttl, "stopping": stopping,
                  "claims": stats.claims, "wait_sum": stats.wait_sum, "wait_max": stats.wait_max}
        row = self.run(lambda db: db.execute(self._sql.writes["renew_host"], params).fetchone())
        return float(row[0])

    def release_claim(self, run_id: int, session: str) -> None:
        """Give a claimed run back to be claimed by another host (this one cannot run its job)."""
        self.run(lambda db: db.execute(self._sql.writes["release_claim"], {"run_id": run_id, "session": session}))

    def mark_host_gone(self, session: str) -> None:
        """Another process of the same machine saw ``session``'s process dead: its runs died with it."""
        self.run(lambda db: db.execute(self._sql.writes["mark_host_gone"], {"session": session}))

    def leave_host(self, session: str) -> None:
        """This process executes nothing any more: its row goes (its runs are all recorded)."""
        self.run(lambda db: db.execute(self._sql.writes["leave_host"], {"session": session}))

    def claim_runs(self, session: str, host: str, pid: int, limit: int, skip_jobs: Sequence[str],
                   at: float) -> list[ClaimedRun]:
        """Claim up to ``limit`` planned runs, none of ``skip_jobs``, for this host, oldest slot first (the protocol)."""
        if limit <= 0:
            return []
        params = {"session": session, "host": host, "pid": pid, "limit": limit, "skip_jobs": list(skip_jobs),
                  "at": at}
        rows = self.run(lambda db: db.execute(self._sql.writes["claim_runs"], params).fetchall())
        return [ClaimedRun(int(r[0]), r[1], float(r[2]), r[3], r[4], r[5], r[6], float(r[7] or 0.0), r[8])
                for r in rows]

    def hosts(self) -> list[HostRecord]:
        """Every executing process of the fleet with a row (live, stopping, or expired within the hour)."""
        return [HostRecord(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), float(r[5]), float(r[6]), float(r[7]),
                           bool(r[8]), int(r[9]), float(r[10]), r[11], int(r[12]), bool(r[13]))
                for r in self._all("hosts")]

    def runs_in_flight(self) -> list[RunInFlight]:
        """Every run not finished yet, planned or held, oldest first."""
        return [RunInFlight(int(r[0]), r[1], r[2], int(r[3]), r[4], float(r[5]), float(r[6]), r[7], r[8], r[9], r[10],
                            bool(r[11])) for r in self._all("runs_in_flight")]

    def crash_state(self, job_id: str) -> CrashState:
        """How often in a row the job crashed its worker, and whether it is quarantined."""
        row = self._one("crash_state", job_id=job_id)
        return CrashState(int(row[0]), row[1], row[2]) if row else CrashState()

    def set_crash_hold(self, job_id: str, held_until: float | None, quarantine_key: str | None = None) -> None:
        """Hold a job back until ``held_until``; with ``quarantine_key``, quarantine it (until its definition changes)."""
        self._write("set_crash_hold", job_id=job_id, held_until=held_until, key=quarantine_key)

    def release_quarantine(self, job_id: str) -> None:
        """Lift a quarantine and forget the crashes in a row (the job was changed)."""
        self._write("release_quarantine", job_id=job_id)

    def publish_jobs(self, definitions: Iterable[JobDefinition]) -> None:
        """Replace the published job list with ``definitions``, in that order; the stats of every job are kept."""
        listed = list(definitions)
        columns: dict[str, list[Any]] = {name: [getattr(d, name) for d in listed] for name in DEFINITION_COLUMNS}
        self._write("publish_jobs", **columns)

    def update_next_run(self, job_id: str, next_run_time: float | None, paused: bool) -> None:
        """Publish one job's next run time (after it ran, was paused or resumed)."""
        self._write("update_next_run", job_id=job_id, next_run_time=next_run_time, paused=paused)

    def beat(self, pid: int, hostname: str, state: str, timezone: str, started_at: float, session: str = "",
             clock_jump: tuple[float, float] | None = None) -> None:
        """Write the leader's heartbeat, stamped by the database's clock, with the last wall-clock jump it saw."""
        jump_seconds, jump_at = clock_jump or (None, None)
        self._write("beat", pid=pid, hostname=hostname, state=state, timezone=timezone, started_at=started_at,
                    session=session, jump_seconds=jump_seconds, jump_at=jump_at)

    def clear_heartbeat(self, pid: int) -> None:
        """Mark the scheduler stopped, if ``pid`` is still the one that beats."""
        self._write("clear_heartbeat", pid=pid)

    # -- operators' commands: any worker submits, the leader applies ----------------------------------------
    def submit_command(self, job_id: str, action: str, requested_by: str) -> Command:
        """Queue a command for the leader (any worker, not fenced), stamped by the database's clock; return it."""
        row = self._one("submit_command", job_id=job_id, action=action, requested_by=requested_by,
                        older_kept=COMMANDS_KEPT - 1)
        return record_from(COMMANDS, Command, row)

    def pending_commands(self) -> list[Command]:
        """Commands not yet applied, oldest first (the leader polls this), each with its age by the database's clock."""
        return [record_from(COMMANDS, Command, row[:-1], age=row[-1]) for row in self._all("pending_commands")]

    def finish_command(self, command_id: int, state: str, status: int, outcome: str, at: float,
                       applied_by: str, run_id: int | None = None) -> None:
        """The leader applied (``done``) or could not apply (``failed``) a pending command (fenced); once."""
        self._write("finish_command", command_id=command_id, state=state, status=status, outcome=outcome, at=at,
                    applied_by=applied_by, run_id=run_id)

    def set_operator_pause(self, job_id: str, paused: bool, by: str, at: float) -> None:
        """Record an operator's pause or resume; it survives leaders and restarts (fenced)."""
        self._write("set_operator_pause", job_id=job_id, paused=paused, by=by, at=at)

    # -- reads: every worker ------------------------------------------------------------------------------
    def scheduler(self) -> SchedulerRecord | None:
        """The last heartbeat, or ``None`` if no scheduler ever ran on this database."""
        row = self._one("scheduler")
        return record_from(SCHEDULER, SchedulerRecord, row) if row else None

    def jobs(self, critical_only: bool = False) -> list[JobRecord]:
        """The published jobs (or only the critical ones), in the order published, each with its stats: one query."""
        split = len(DEFINITION_COLUMNS)
        records = []
        for row in self._all("critical_jobs" if critical_only else "jobs"):
            stats = {name: value for name, value in zip(_RECORD_COLUMNS, row[split:], strict=True) if value is not None}
            records.append(JobRecord(definition=record_from(JOBS, JobDefinition, row[:split]), **stats))
        return records

    def job_count(self) -> int:
        """How many jobs are published."""
        return int(self._one("job_count")[0])

    def quarantined_jobs(self) -> list[str]:
        """Ids of the jobs in quarantine for crashing their worker, sorted."""
        return [job_id for (job_id,) in self._all("quarantined_jobs")]

    def definition(self, job_id: str) -> JobDefinition | None:
        """One published job's definition, or ``None``."""
        row = self._one("definition", job_id=job_id)
        return record_from(JOBS, JobDefinition, row) if row else None

    def runs(self, job_id: str, limit: int | None = None) -> list[RunRecord]:
        """The job's most recent runs, newest first; ``limit`` defaults to the store's history size."""
        rows = self._all("runs", job_id=job_id, limit=limit or self.history_size)
        return [record_from(JOB_RUNS, RunRecord, row) for row in rows]

    def recent_runs(self, job_ids: Sequence[str], limit: int) -> dict[str, list[RunRecord]]:
        """Each job's ``limit`` most recent runs, newest first, in one read."""
        if not job_ids or limit <= 0:
            return {}
        found: dict[str, list[RunRecord]] = {}
        for row in self._all("recent_runs", job_ids=list(job_ids), limit=limit):
            found.setdefault(row[0], []).append(record_from(JOB_RUNS, RunRecord, row))
        return found

    def run_counts(self, since: float) -> list[tuple[int, str, int]]:
        """``(minute, outcome, runs)`` of the kept runs finished at ``since`` or later."""
        return [(int(minute), outcome, int(runs)) for minute, outcome, runs in self._all("run_counts", since=since)]

    def lease(self) -> LeaseRecord | None:
        """The fleet's scheduler lease as the database sees it now (its clock), or ``None`` if never taken."""
        row = self._one("lease")
        return LeaseRecord(*row) if row else None

    def leadership_changes(self, limit: int = 10) -> list[LeadershipChange]:
        """The last changes of the fleet's leader, newest first."""
        return [LeadershipChange(*row) for row in self._all("leadership_changes", limit=limit)]

    def command(self, command_id: int) -> Command | None:
        """One command, or ``None``."""
        row = self._one("command", command_id=command_id)
        return record_from(COMMANDS, Command, row) if row else None

    def commands(self, job_id: str, limit: int = 20) -> list[Command]:
        """The job's last commands, newest first."""
        return [record_from(COMMANDS, Command, row) for row in self._all("commands", job_id=job_id, limit=limit)]

    def operator_pauses(self) -> dict[str, OperatorPause]:
        """Every job an operator paused or resumed (the last word for each), by job id."""
        return {job_id: OperatorPause(job_id, paused, by, at) for job_id, paused, by, at in self._all("operator_pauses")}
