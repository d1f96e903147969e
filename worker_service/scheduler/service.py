"""One running scheduler: APScheduler with the jobs file's jobs, tracked and published.

The leader publishes its heartbeat and the job list to the shared store, so
every worker can answer for the scheduler without running one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import zoneinfo
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING

from ..state.records import JobDefinition
from .jobs_file import JobSpec
from .tracking import TRACKED_EVENTS, ExecutionTracker

log = logging.getLogger(__name__)
STATE_NAMES = {STATE_RUNNING: "running", STATE_PAUSED: "paused"}


class SchedulerService:
    """Build, start and stop the BackgroundScheduler for a list of :class:`JobSpec`."""

    def __init__(self, specs: list[JobSpec], store: Any, timezone: str, heartbeat_interval: float,
                 executor_threads: int = 10) -> None:
        self.specs = specs
        self.store = store
        self.timezone = timezone
        self.heartbeat_interval = heartbeat_interval
        self.scheduler = BackgroundScheduler(
            timezone=zoneinfo.ZoneInfo(timezone),
            executors={"default": ThreadPoolExecutor(max_workers=executor_threads)},
        )
        self.tracker = ExecutionTracker(store, self._next_run_of)
        self.started_at = 0.0
        self._stop_beating = threading.Event()
        self._beater: threading.Thread | None = None
        self._published: dict[str, tuple[float | None, bool]] = {}
        self._stopping = False

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        """Add the jobs (resuming published next run times), start, publish, and beat.

        If anything after the scheduler started fails (the store is unwritable),
        the scheduler is shut down again before the error propagates: a
        scheduler must never run without its lock and heartbeat.
        """
        self.started_at = time.time()
        for spec in self.specs:
            self._add(spec)
        self.scheduler.add_listener(self.tracker.listener, TRACKED_EVENTS)
        self.scheduler.start()
        try:
            self._publish_all()
            self._beat()
        except BaseException:
            self.scheduler.shutdown(wait=False)
            raise
        self._beater = threading.Thread(target=self._beat_forever, name="scheduler-heartbeat", daemon=True)
        self._beater.start()
        log.info("scheduler started in pid %d with %d jobs (timezone %s)", os.getpid(), len(self.specs),
                 self.timezone)

    def shutdown(self, wait: bool) -> None:
        """Stop the scheduler; with ``wait``, running jobs finish first.

        The heartbeat goes on (as ``stopping``) while running jobs finish, so a
        long job during a reload does not make the scheduler look gone.
        """
        self._stopping = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        self._stop_beating.set()
        try:
            self.store.clear_heartbeat(os.getpid())
        except Exception:
            log.exception("could not mark the scheduler stopped in the state store")
        log.info("scheduler stopped in pid %d", os.getpid())

    # -- jobs -----------------------------------------------------------------
    def _add(self, spec: JobSpec) -> None:
        options: dict[str, Any] = dict(
            trigger=spec.trigger, id=spec.id, name=spec.name, args=spec.args, kwargs=spec.kwargs,
            misfire_grace_time=spec.misfire_grace_time, max_instances=spec.max_instances, coalesce=spec.coalesce,
            executor=spec.executor, replace_existing=True,
        )
        if self._already_done(spec):
            return
        if spec.paused:
            options["next_run_time"] = None
        else:
            resumed = self._resume_time(spec)
            if resumed is not None:
                options["next_run_time"] = resumed
        self.scheduler.add_job(self.tracker.wrap(spec.id, spec.func), **options)

    def _already_done(self, spec: JobSpec) -> bool:
        """A one-off (date) job whose time has passed and that ran, or was missed, before this leader."""
        run_date = getattr(spec.trigger, "run_date", None)
        if spec.trigger_kind != "date" or run_date is None or run_date.timestamp() > time.time():
            return False
        published = self.store.definition(spec.id)
        late = time.time() - run_date.timestamp() > (spec.misfire_grace_time or 0)
        return late or (published is not None and published.next_run_time is None)

    def _resume_time(self, spec: JobSpec) -> dt.datetime | None:
        """The next run time the previous leader published, if the job is unchanged.

        Without this, every restart or reload would re-anchor interval jobs
        and a 30-minute job could be postponed for ever by frequent reloads.
        """
        published = self.store.definition(spec.id)
        if published is None or published.paused or published.next_run_time is None:
            return None
        if published.trigger != str(spec.trigger):
            return None
        return dt.datetime.fromtimestamp(published.next_run_time, zoneinfo.ZoneInfo(self.timezone))

    def _next_run_of(self, job_id: str) -> tuple[float | None, bool]:
        """``(next run time, paused)``; a job APScheduler removed (its trigger is done) has neither."""
        job = self.scheduler.get_job(job_id)
        if job is None:
            return None, False
        next_run = job.next_run_time.timestamp() if job.next_run_time else None
        return next_run, job.next_run_time is None

    def definitions(self) -> list[JobDefinition]:
        """The job list as it is now, for publishing: every job of the file, finished ones included."""
        result = []
        for spec in self.specs:
            job = self.scheduler.get_job(spec.id)
            next_run = job.next_run_time if job is not None else None
            result.append(JobDefinition(
                id=spec.id, name=spec.name, trigger=str(spec.trigger),
                next_run_time=next_run.timestamp() if next_run else None,
                misfire_grace_time=spec.misfire_grace_time, max_instances=spec.max_instances, executor=spec.executor,
                paused=job is not None and next_run is None, critical=spec.critical,
                interval_seconds=spec.interval_seconds,
            ))
        return result

    def _publish_all(self) -> None:
        definitions = self.definitions()
        self.store.publish_jobs(definitions)
        self._published = {d.id: (d.next_run_time, d.paused) for d in definitions}

    def _publish_changes(self) -> None:
        """Publish next run times that changed without an event (pause, resume, a trigger that ended)."""
        for spec in self.specs:
            state = self._next_run_of(spec.id)
            if self._published.get(spec.id) != state:
                self.store.update_next_run(spec.id, *state)
                self._published[spec.id] = state

    # -- heartbeat --------------------------------------------------------------
    def _beat(self) -> None:
        state = "stopping" if self._stopping else STATE_NAMES.get(self.scheduler.state, "stopped")
        self.store.beat(os.getpid(), socket.gethostname(), state, self.timezone, self.started_at)

    def _beat_forever(self) -> None:
        while not self._stop_beating.wait(self.heartbeat_interval):
            try:
                self._beat()
                # APScheduler's shutdown holds its job-store lock while running jobs
                # finish; reading jobs then would block this thread and stop the beat.
                if not self._stopping:
                    self._publish_changes()
            except Exception:
                log.exception("scheduler heartbeat failed")
