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

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        """Add the jobs (resuming published next run times), start, publish, and beat."""
        self.started_at = time.time()
        for spec in self.specs:
            self._add(spec)
        self.scheduler.add_listener(self.tracker.listener, TRACKED_EVENTS)
        self.scheduler.start()
        self._publish_all()
        self._beat()
        self._beater = threading.Thread(target=self._beat_forever, name="scheduler-heartbeat", daemon=True)
        self._beater.start()
        log.info("scheduler started in pid %d with %d jobs (timezone %s)", os.getpid(), len(self.specs),
                 self.timezone)

    def shutdown(self, wait: bool) -> None:
        """Stop the scheduler; with ``wait``, running jobs finish first."""
        self._stop_beating.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
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
        if spec.paused:
            options["next_run_time"] = None
        else:
            resumed = self._resume_time(spec)
            if resumed is not None:
                options["next_run_time"] = resumed
        self.scheduler.add_job(self.tracker.wrap(spec.id, spec.func), **options)

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

    def _next_run_of(self, job_id: str) -> tuple[float | None, bool] | None:
        job = self.scheduler.get_job(job_id)
        if job is None:
            return None
        next_run = job.next_run_time.timestamp() if job.next_run_time else None
        return next_run, job.next_run_time is None

    def definitions(self) -> list[JobDefinition]:
        """The job list as it is now, for publishing."""
        critical = {spec.id: spec.critical for spec in self.specs}
        intervals = {spec.id: spec.interval_seconds for spec in self.specs}
        result = []
        for job in self.scheduler.get_jobs():
            result.append(JobDefinition(
                id=job.id, name=job.name, trigger=str(job.trigger),
                next_run_time=job.next_run_time.timestamp() if job.next_run_time else None,
                misfire_grace_time=job.misfire_grace_time, max_instances=job.max_instances, executor=job.executor,
                paused=job.next_run_time is None, critical=critical.get(job.id, False),
                interval_seconds=intervals.get(job.id),
            ))
        return result

    def _publish_all(self) -> None:
        definitions = self.definitions()
        self.store.publish_jobs(definitions)
        self._published = {d.id: (d.next_run_time, d.paused) for d in definitions}

    def _publish_changes(self) -> None:
        """Publish next run times that changed without an event (pause, resume, modify)."""
        for job in self.scheduler.get_jobs():
            state = (job.next_run_time.timestamp() if job.next_run_time else None, job.next_run_time is None)
            if self._published.get(job.id) != state:
                self.store.update_next_run(job.id, *state)
                self._published[job.id] = state

    # -- heartbeat --------------------------------------------------------------
    def _beat(self) -> None:
        state = STATE_NAMES.get(self.scheduler.state, "stopped")
        self.store.beat(os.getpid(), socket.gethostname(), state, self.timezone, self.started_at)

    def _beat_forever(self) -> None:
        while not self._stop_beating.wait(self.heartbeat_interval):
            try:
                self._beat()
                self._publish_changes()
            except Exception:
                log.exception("scheduler heartbeat failed")
