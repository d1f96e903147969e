"""APScheduler's thread pool, with each run recorded in the store before it is handed to the pool.

The one place that knows a run is about to start *and* which slot it is:
``BaseExecutor.submit_job`` calls ``_do_submit_job(job, run_times)`` in the
scheduler thread, under the executor's lock, after the ``max_instances``
check. Recording there (see :mod:`.tracking`) is what makes a run that kills
its process visible, and what keeps a run the store cannot record from
running at all. Mirrors APScheduler 3.11's ``BasePoolExecutor._do_submit_job``.

An operator's run-now (:meth:`TrackedThreadPoolExecutor.run_now`) goes
through the same ``submit_job``, with the job APScheduler holds: its
``max_instances`` holds against scheduled runs and other run-nows alike, and
it is recorded and finished like any run.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

from apscheduler.executors.base import MaxInstancesReachedError, run_job
from apscheduler.executors.pool import ThreadPoolExecutor

from .jobs_file import RUN_ON_EVERY_HOST, RUN_ON_LEADER
from .tracking import CurrentRun, ExecutionTracker, ManualRequest


class TrackedThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose every submission is recorded first.

    In a fleet, a job that may run on any host (or on every host) is not run
    here at all: its submission plans a run for the hosts to claim
    (:mod:`.host_runner`), one per live host for ``every-host``. ``placement``
    says where a job runs; ``hosts`` lists the live hosts.
    """

    def __init__(self, tracker: ExecutionTracker, max_workers: int = 10,
                 placement: Callable[[str], str] | None = None,
                 hosts: Callable[[], list[str]] | None = None,
                 planned: Callable[[int], None] | None = None) -> None:
        super().__init__(max_workers=max_workers)
        self._tracker = tracker
        self._asking = threading.local()  # .request: the run-now this thread is submitting, if any
        self._placement = placement or (lambda job_id: RUN_ON_LEADER)
        self._hosts = hosts or (lambda: [])
        self._planned = planned or (lambda hosts: None)  # wakes this host's runner for its share of the new runs

    def submit_job(self, job: Any, run_times: list) -> None:
        """Run ``job`` here (APScheduler's own path), or plan it for the fleet's hosts to claim."""
        placement = self._placement(job.id)
        if placement == RUN_ON_LEADER:
            super().submit_job(job, run_times)
            return
        request: ManualRequest | None = getattr(self._asking, "request", None)
        with self._lock:
            if placement == RUN_ON_EVERY_HOST:
                runs = []
                for host in self._hosts():
                    try:
                        runs.append(self._tracker.submitted(job, run_times, request, placement, for_host=host,
                                                            count_gap=not runs))
                    except MaxInstancesReachedError:
                        continue  # that host still runs it: its own max_instances holds
                if not runs:
                    raise MaxInstancesReachedError(job)
                run = runs[0]
            else:
                run = self._tracker.submitted(job, run_times, request, placement)
        self._planned(len(self._hosts()))
        if request is not None:
            request.run = run

    def run_now(self, job: Any, requested_by: str, command_id: int | None) -> CurrentRun:
        """Submit ``job`` once, now, for an operator, without touching its schedule; return the run.

        Raises APScheduler's ``MaxInstancesReachedError`` when the job already
        runs ``max_instances`` times, or the store's error when the run cannot
        be recorded (nothing is submitted then).
        """
        request = ManualRequest(requested_by, command_id)
        self._asking.request = request
        try:
            self.submit_job(job, [dt.datetime.now(dt.UTC)])
        finally:
            self._asking.request = None
        if request.run is None:  # submit_job returned without calling _do_submit_job: never, in APScheduler 3
            raise RuntimeError(f"job {job.id}: the run-now was not submitted")
        return request.run

    def _do_submit_job(self, job: Any, run_times: list) -> None:
        request: ManualRequest | None = getattr(self._asking, "request", None)
        run = self._tracker.submitted(job, run_times, request)  # raises: not submitted, max_instances not counted
        if request is not None:
            request.run = run

        def execute() -> list:
            with self._tracker.executing(run):
                return run_job(job, job._jobstore_alias, run_times, self._logger.name)

        def finished(future: Any) -> None:
            # Events (MISSED among them) are dispatched here, in the pool thread: they see the run id.
            with self._tracker.executing(run):
                try:
                    error = future.exception()
                    if error is not None:
                        self._run_job_error(job.id, error, error.__traceback__)
                    else:
                        self._run_job_success(job.id, future.result())
                finally:
                    self._tracker.done(run.run_id)

        self._pool.submit(execute).add_done_callback(finished)
