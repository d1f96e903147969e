"""Record every execution in the shared store, from APScheduler's events.

APScheduler's events carry no duration, EXECUTED can arrive before
SUBMITTED, and SUBMITTED does not mean the job started. So each job's
callable is wrapped: the wrapper times the job's own run and hands the
duration to the EXECUTED/ERROR listener through a per-job queue. Listeners
are wrapped too, because APScheduler only logs what a listener raises.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)

from common.helpers.health import redact

log = logging.getLogger(__name__)

TRACKED_EVENTS = EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_SUBMITTED
MAX_ERROR_MESSAGE = 300


class ExecutionTracker:
    """Wraps job callables and turns job events into store writes.

    :param store: the shared state store (``record_run``, ``record_missed``,
        ``record_max_instances``, ``update_next_run``).
    :param next_run_of: returns ``(next_run_time epoch or None, paused)`` for a job id.
    """

    def __init__(self, store: Any, next_run_of: Callable[[str], tuple[float | None, bool]]) -> None:
        self._store = store
        self._next_run_of = next_run_of
        self._handoff: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def wrap(self, job_id: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``func`` timed around its own run."""

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started_at, started = time.time(), time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                with self._lock:
                    self._handoff[job_id].append((started_at, time.perf_counter() - started))

        return timed

    def listener(self, event: JobEvent) -> None:
        """The APScheduler listener; never raises (APScheduler would only log it)."""
        try:
            self._handle(event)
        except Exception:
            log.exception("tracking failed for job %s (event code %s)", getattr(event, "job_id", "?"), event.code)

    def _handle(self, event: JobEvent) -> None:
        job_id = event.job_id
        if event.code in (EVENT_JOB_EXECUTED, EVENT_JOB_ERROR):
            started_at, duration = self._take(job_id, event)
            if event.code == EVENT_JOB_EXECUTED:
                self._store.record_run(job_id, "success", started_at, duration)
            else:
                error = event.exception
                message = redact(str(error))[:MAX_ERROR_MESSAGE]
                self._store.record_run(job_id, "error", started_at, duration, type(error).__name__, message)
                log.warning("job %s failed after %.3f s: %s: %s", job_id, duration or 0, type(error).__name__, message)
        elif event.code == EVENT_JOB_MISSED:
            self._store.record_missed(job_id, event.scheduled_run_time.timestamp())
            log.warning("job %s missed its run at %s (later than its misfire grace time)", job_id,
                        event.scheduled_run_time.isoformat())
            self._publish_next_run(job_id)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self._store.record_max_instances(job_id, time.time())
            log.warning("job %s skipped a run: still running (max_instances reached)", job_id)
            self._publish_next_run(job_id)
        elif event.code == EVENT_JOB_SUBMITTED:
            # The scheduler has moved next_run_time on: publish it now, so a new
            # leader resumes from it instead of running this one again.
            self._publish_next_run(job_id)

    def _take(self, job_id: str, event: JobEvent) -> tuple[float, float | None]:
        with self._lock:
            queue = self._handoff.get(job_id)
            if queue:
                return queue.popleft()
        # The job never entered its wrapper (e.g. it failed to start): no duration.
        return event.scheduled_run_time.timestamp(), None

    def _publish_next_run(self, job_id: str) -> None:
        self._store.update_next_run(job_id, *self._next_run_of(job_id))
