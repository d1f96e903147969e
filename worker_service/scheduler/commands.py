"""Apply operators' commands on the leader: run a job now, pause it, resume it.

Any worker of any host queues a command in the state store; the leader's
:class:`CommandApplier` polls the pending ones (every ``POLL_INTERVAL``, one
indexed read), applies each once, and finishes it with an HTTP status and a
short outcome, so whichever worker is asked answers the same. Each command is
logged once, here, when it is applied: who asked, what, and how it went.

* ``run``: the job APScheduler holds goes through its executor
  (:meth:`~.executor.TrackedThreadPoolExecutor.run_now`), not the request's
  thread and not a new job: ``max_instances`` holds (409), the run is
  recorded like any other (``manual``, who asked, which command), and the
  job's next run time does not move. A paused job can be run; a quarantined
  one cannot (409).
* ``pause`` / ``resume``: recorded with ``set_operator_pause`` before
  APScheduler is touched, so the operator's word outlives this leader and
  wins over the jobs file's ``paused`` when the next one adds its jobs
  (see :class:`JobRoster`).
* A command older than ``EXPIRY`` when the leader first sees it is failed
  (503), never applied: a new leader must not run a stale run-now minutes
  after it was asked for. Its age is the store's: the store stamped it when
  it was queued and measures it when the leader reads it, with one clock
  (:attr:`~worker_service.state.records.Command.age`). The receiving
  worker's host and the leader's may disagree by any amount; neither clock
  is used.

Once only: an applied command whose finish the store could not record is
kept here and only its finish is retried. A new leader that finds a run-now
pending whose run an earlier leader already recorded (it died between the
two writes) finishes it without running the job again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from apscheduler.executors.base import MaxInstancesReachedError
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.base import BaseScheduler

from ..state import StateStore, StoreUnavailable
from ..state.records import Command, OperatorPause
from .executor import TrackedThreadPoolExecutor

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.1  # seconds between two reads of the pending commands: most of a command's round trip
EXPIRY = 30.0  # seconds: a command older than this (by the store's clock) when the leader first sees it is failed
ACTION_WORDS = {"run": "run now", "pause": "pause", "resume": "resume"}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How applying a command went: an HTTP status, a short sentence, and the run a run-now started."""

    status: int
    text: str
    run_id: int | None = None

    @property
    def state(self) -> str:
        """``done`` when applied (200), else ``failed``."""
        return "done" if self.status == 200 else "failed"


@dataclasses.dataclass
class JobRoster:
    """What the leader knows of its jobs besides APScheduler's plan.

    ``known``: the jobs file's job ids (a one-off already done is known, but
    not in APScheduler). ``quarantined``: why each quarantined job is.
    ``operator_pauses``: the operators' last word per job, as the store has it.
    """

    known: frozenset[str]
    quarantined: dict[str, str] = dataclasses.field(default_factory=dict)
    operator_pauses: dict[str, OperatorPause] = dataclasses.field(default_factory=dict)

    def paused(self, job_id: str, in_jobs_file: bool) -> bool:
        """Whether the job starts paused: the operator's last word, else the jobs file's ``paused``."""
        pause = self.operator_pauses.get(job_id)
        return in_jobs_file if pause is None else pause.paused


class CommandApplier:
    """Polls the store for operators' commands and applies each once to the running scheduler.

    :param store: the store as the leader writes it (a fenced view in a fleet).
    :param scheduler: the running APScheduler.
    :param executor: its tracked executor, which run-nows go through.
    :param plan_lock: APScheduler's job-store lock, held while a command reads and changes the plan.
    :param roster: the leader's :class:`JobRoster` (its ``operator_pauses`` is kept up to date here).
    :param publish: publishes the next run times that changed (after a pause or resume).
    """

    def __init__(self, store: StateStore, scheduler: BaseScheduler, executor: TrackedThreadPoolExecutor,
                 plan_lock: Any, roster: JobRoster, publish: Callable[[], None],
                 poll_interval: float = POLL_INTERVAL, expiry: float = EXPIRY) -> None:
        self._store = store
        self._scheduler = scheduler
        self._executor = executor
        self._plan_lock = plan_lock
        self._roster = roster
        self._publish = publish
        self.poll_interval = poll_interval
        self.expiry = expiry
        self.applied_by = f"{socket.gethostname()}/{os.getpid()}"
        self._unfinished: dict[int, Outcome] = {}  # applied, but the store has not taken the outcome yet
        self._store_failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        """Poll in a daemon thread until :meth:`stop` (the first poll at once)."""
        self._thread = threading.Thread(target=self._poll_forever, name="scheduler-commands", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling; a command being applied is finished first. Later ones wait for the next leader."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _poll_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # the thread must survive anything: operators' commands stop otherwise
                log.exception("applying operators' commands failed; trying again")
            self._stop.wait(self.poll_interval)

    # -- one poll -------------------------------------------------------------------
    def poll_once(self) -> int:
        """Apply every pending command not applied yet, and finish each; return how many were finished."""
        try:
            pending = self._store.pending_commands()
        except Exception as error:
            if not self._store_failing:
                log.warning("operators' commands wait: the state store cannot list them (%s)", error)
            self._store_failing = True
            return 0
        self._store_failing = False
        finished = 0
        for command in pending:
            if self._stop.is_set():
                break
            outcome = self._unfinished.get(command.id)
            if outcome is None:
                outcome = self._unfinished[command.id] = self._apply(command)
                self._log(command, outcome)
            finished += self._finish(command, outcome)
        return finished

    def _finish(self, command: Command, outcome: Outcome) -> bool:
        try:
            self._store.finish_command(command.id, outcome.state, outcome.status, outcome.text, time.time(),
                                       self.applied_by, outcome.run_id)
        except Exception as error:
            log.error("command %d (%s %s) was applied but the state store cannot record how (%s); retried, never "
                      "applied again", command.id, ACTION_WORDS.get(command.action, command.action), command.job_id,
                      error)
            return False
        del self._unfinished[command.id]
        return True

    def _log(self, command: Command, outcome: Outcome) -> None:
        level = logging.INFO if outcome.status == 200 else logging.WARNING
        log.log(level, "job %s: %s asked by %s (command %d): %d %s", command.job_id,
                ACTION_WORDS.get(command.action, command.action), command.requested_by, command.id, outcome.status,
                outcome.text)

    # -- applying -------------------------------------------------------------------
    def _apply(self, command: Command) -> Outcome:
        if command.age is not None and command.age > self.expiry:  # the store's clock (pending_commands)
            return Outcome(503, f"expired: no scheduler took it within {self.expiry:g} s")
        action = {"run": self._run_now, "pause": self._pause, "resume": self._resume}.get(command.action)
        if action is None:
            return Outcome(400, f"unknown action {command.action!r}: run, pause or resume")
        if command.job_id not in self._roster.known:
            return Outcome(404, "no such job")
        try:
            return action(command)
        except StoreUnavailable as error:
            return Outcome(503, str(error))
        except Exception as error:
            log.exception("command %d (%s %s) failed", command.id, command.action, command.job_id)
            return Outcome(500, f"could not {ACTION_WORDS[command.action]}: {type(error).__name__}")

    def _run_now(self, command: Command) -> Outcome:
        reason = self._roster.quarantined.get(command.job_id)
        if reason is not None:
            return Outcome(409, reason)
        earlier = self._earlier_run(command)
        if earlier is not None:
            return earlier
        with self._plan_lock:  # the run-now publishes the job's next run time: it must be the current one
            job = self._scheduler.get_job(command.job_id)
            if job is None:
                return Outcome(409, "finished: its one-off run is done")
            try:
                run = self._executor.run_now(job, command.requested_by, command.id)
            except MaxInstancesReachedError:
                return Outcome(409, f"already running at max_instances ({job.max_instances})")
        return Outcome(200, f"started (run {run.run_id})", run.run_id)

    def _earlier_run(self, command: Command) -> Outcome | None:
        """The outcome of the run an earlier leader started for this command (it died before finishing it)."""
        for run in self._store.runs(command.job_id):
            if run.command_id == command.id:
                return Outcome(200, f"already started by an earlier scheduler ({run.outcome})")
        return None

    def _pause(self, command: Command) -> Outcome:
        with self._plan_lock:
            job = self._scheduler.get_job(command.job_id)
            if job is None:
                return Outcome(409, "finished: its one-off run is done")
            already = job.next_run_time is None
            self._remember(command, paused=True)
            if not already:
                self._scheduler.pause_job(command.job_id)
            self._publish_now()
        text = "already paused" if already else "paused"
        if command.job_id in self._roster.quarantined:
            text += " (and quarantined)"
        return Outcome(200, text)

    def _resume(self, command: Command) -> Outcome:
        reason = self._roster.quarantined.get(command.job_id)
        if reason is not None:
            return Outcome(409, reason)
        with self._plan_lock:
            job = self._scheduler.get_job(command.job_id)
            if job is None:
                return Outcome(409, "finished: its one-off run is done")
            self._remember(command, paused=False)
            if job.next_run_time is not None:
                return Outcome(200, "already running")
            next_run = self._resume_job(command.job_id)
            self._publish_now()
        if next_run is None:
            return Outcome(200, "resumed: its trigger has no run left")
        return Outcome(200, f"resumed: next run at {next_run.astimezone(dt.UTC).isoformat(timespec='seconds')}")

    def _resume_job(self, job_id: str) -> dt.datetime | None:
        """Resume in APScheduler (which removes a job whose trigger is done); the job's next run time."""
        try:
            self._scheduler.resume_job(job_id)
        except JobLookupError:
            return None
        job = self._scheduler.get_job(job_id)
        return job.next_run_time if job is not None else None

    def _remember(self, command: Command, paused: bool) -> None:
        """Store the operator's word, as of when they asked, before APScheduler changes (raises if it can't).

        Nothing changes in APScheduler when it raises. An operator's word that already says so is kept as it is: who paused
        a job first, and when, is what an operator wants to see.
        """
        current = self._roster.operator_pauses.get(command.job_id)
        if current is not None and current.paused == paused:
            return
        pause = OperatorPause(command.job_id, paused, command.requested_by, command.requested_at)
        self._store.set_operator_pause(pause.job_id, pause.paused, pause.by, pause.at)
        self._roster.operator_pauses[command.job_id] = pause

    def _publish_now(self) -> None:
        """Publish the changed plan at once; if the store fails now, the next heartbeat publishes it."""
        try:
            self._publish()
        except Exception as error:
            log.warning("the new plan is published with the next heartbeat: the state store failed (%s)", error)
