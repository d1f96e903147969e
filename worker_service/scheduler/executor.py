"""APScheduler's thread pool, with each run recorded in the store before it is handed to the pool.

The one place that knows a run is about to start *and* which slot it is:
``BaseExecutor.submit_job`` calls ``_do_submit_job(job, run_times)`` in the
scheduler thread, under the executor's lock, after the ``max_instances``
check. Recording there (see :mod:`.tracking`) is what makes a run that kills
its process visible, and what keeps a run the store cannot record from
running at all. Mirrors APScheduler 3.11's ``BasePoolExecutor._do_submit_job``.
"""

from __future__ import annotations

from typing import Any

from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor

from .tracking import ExecutionTracker


class TrackedThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose every submission is recorded first."""

    def __init__(self, tracker: ExecutionTracker, max_workers: int = 10) -> None:
        super().__init__(max_workers=max_workers)
        self._tracker = tracker

    def _do_submit_job(self, job: Any, run_times: list) -> None:
        run_id = self._tracker.submitted(job, run_times)  # raises: not submitted, max_instances not counted

        def execute() -> list:
            with self._tracker.executing(run_id):
                return run_job(job, job._jobstore_alias, run_times, self._logger.name)

        def finished(future: Any) -> None:
            # Events (MISSED among them) are dispatched here, in the pool thread: they see the run id.
            with self._tracker.executing(run_id):
                try:
                    error = future.exception()
                    if error is not None:
                        self._run_job_error(job.id, error, error.__traceback__)
                    else:
                        self._run_job_success(job.id, future.result())
                finally:
                    self._tracker.done(run_id)

        self._pool.submit(execute).add_done_callback(finished)
